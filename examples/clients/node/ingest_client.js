#!/usr/bin/env node
// Sluice client example: ingests N records, retrying each with the SAME id.
//
// Record.id is the idempotency key: a retry after UNAVAILABLE (the record may
// or may not be stored) is stored once, and the answer then says
// duplicate=true with the original sequence. The API is loaded from proto/ at
// run time with @grpc/proto-loader.
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const { setTimeout: sleep } = require('node:timers/promises');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = path.resolve(__dirname, '../../../proto');

// UNAVAILABLE: JetStream not reachable or no PubAck in time. RESOURCE_EXHAUSTED:
// too many records in flight, so back off. INVALID_ARGUMENT and the rest are final.
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED]);

function loadApi() {
  const def = protoLoader.loadSync('sluice/v1/ingest.proto', {
    includeDirs: [PROTO_DIR], // google/protobuf/* come with proto-loader
    keepCase: true, longs: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(def).sluice.v1;
}

function call(client, record, timeoutMs) {
  return new Promise((resolve, reject) => {
    client.Ingest({ record }, { deadline: Date.now() + timeoutMs },
      (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// One Ingest call per attempt, each under its own deadline, with exponential
// backoff and jitter in between. The record, id included, never changes.
async function ingest(client, record, opts) {
  let backoff = opts.backoff;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(client, record, opts.timeout);
    } catch (err) {
      if (!RETRYABLE.has(err.code) || attempt >= opts.attempts) throw err;
      const pause = Math.round(backoff * (0.5 + Math.random() / 2));
      console.error(`retry id=${record.id} attempt=${attempt} code=${grpc.status[err.code]} ` +
        `wait=${pause}ms: ${err.details}`);
      await sleep(pause);
      backoff = Math.min(backoff * 2, opts.maxBackoff);
    }
  }
}

function show(r) {
  console.log(`id=${r.id} stream=${r.stream} sequence=${r.sequence} duplicate=${r.duplicate}`);
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      addr: { type: 'string', default: process.env.SLUICE_ADDR || '127.0.0.1:50051' },
      count: { type: 'string', default: '3' },          // records to ingest
      prefix: { type: 'string', default: 'order' },     // ids are <prefix>-<i>
      type: { type: 'string', default: 'order.created' },
      timeout: { type: 'string', default: '5' },        // deadline per call, seconds
      attempts: { type: 'string', default: '10' },      // tries per record
      backoff: { type: 'string', default: '0.2' },      // first backoff, seconds
      'max-backoff': { type: 'string', default: '3' },
    },
  });
  const opts = { timeout: a.timeout * 1000, attempts: +a.attempts, backoff: a.backoff * 1000,
    maxBackoff: a['max-backoff'] * 1000 };
  const { IngestService } = loadApi();
  const client = new IngestService(a.addr, grpc.credentials.createInsecure());

  const records = [];
  for (let i = 1; i <= +a.count; i++) {
    records.push({
      id: `${a.prefix}-${i}`, type: a.type, key: `customer-${i % 2}`,
      payload: Buffer.from(JSON.stringify({ order: i, total: 10.5 * i })),
      attributes: { source: 'node-example' },
    });
  }
  if (records.length) records.push(records[0]); // same id again: answered duplicate=true
  try {
    for (const rec of records) show(await ingest(client, rec, opts));
  } catch (err) {
    console.error(`giving up: ${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main();
