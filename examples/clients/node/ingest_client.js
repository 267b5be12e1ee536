#!/usr/bin/env node
// Sluice client example: ingests N records, retrying each with the SAME id.
//
// Record.id is the idempotency key: a retry after UNAVAILABLE (the record may
// or may not be stored) is stored once, and the answer then says
// duplicate=true with the original sequence. The API is loaded from proto/ at
// run time with @grpc/proto-loader; google.rpc.Status and google.rpc.RetryInfo,
// to read the server's retry hints, with protobufjs.
//
// Security, from the environment or flags: SLUICE_CA (--ca) turns TLS on and
// verifies the server with that CA (--tls: with Node's default roots instead,
// which NODE_EXTRA_CA_CERTS extends and `node --use-openssl-ca` replaces with
// the system's); SLUICE_CERT / SLUICE_KEY (--cert / --key) present a client
// certificate (mTLS); SLUICE_TOKEN (--token) goes as
// `authorization: Bearer <token>` on every call, as per-call credentials,
// which grpc-js combines with TLS credentials only.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { setTimeout: sleep } = require('node:timers/promises');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '../../../proto');

// UNAVAILABLE: JetStream not reachable or no PubAck in time. RESOURCE_EXHAUSTED:
// too many records in flight, so back off. INVALID_ARGUMENT and the rest are final.
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED]);

// Final like every code outside RETRYABLE, and said plainly: the same call with
// the same credentials gets the same answer.
const FINAL_HINTS = {
  [grpc.status.UNAUTHENTICATED]: 'not retried: the server did not accept this caller\'s ' +
    'credentials: check SLUICE_TOKEN, or SLUICE_CERT and SLUICE_KEY',
  [grpc.status.PERMISSION_DENIED]: 'not retried: the server\'s policy does not let this caller ' +
    'write records of this type',
};

// A pause the server asks for (RetryInfo) is stretched by up to this much, at
// random, so that the callers it turned away do not all come back at once.
const HINT_JITTER = 0.2;
const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';

class UsageError extends Error {}

function read(file, what) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${what}: ${file}: ${err.code || err.message}`);
  }
}

// Plaintext, or TLS verified with the CA file (or the default roots) with a
// client certificate when given, and the token on every call.
function channelCredentials(a) {
  if (!a.cert !== !a.key) {
    throw new UsageError('--cert (SLUICE_CERT) and --key (SLUICE_KEY) go together');
  }
  if (!a.tls && !a.ca && !a.cert) {
    if (a.token) {
      throw new UsageError('a token is sent only over TLS: set SLUICE_CA (--ca) to the CA of ' +
        'the server\'s certificate, or --tls for the default roots');
    }
    return grpc.credentials.createInsecure();
  }
  const tls = grpc.credentials.createSsl(a.ca ? read(a.ca, '--ca') : null,
    a.key ? read(a.key, '--key') : null, a.cert ? read(a.cert, '--cert') : null);
  if (!a.token) return tls;
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, done) => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${a.token}`);
    done(null, md);
  });
  return grpc.credentials.combineChannelCredentials(tls, bearer);
}

function loadApi() {
  const def = protoLoader.loadSync('sluice/v1/ingest.proto', {
    includeDirs: [PROTO_DIR], // google/protobuf/* come with proto-loader
    keepCase: true, longs: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(def).sluice.v1;
}

// google.rpc.Status and google.rpc.RetryInfo from proto/ (protobufjs brings
// google/protobuf/any.proto and duration.proto itself).
function loadRetryTypes() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.resolve(PROTO_DIR, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  return { Status: root.lookupType('google.rpc.Status'),
    RetryInfo: root.lookupType('google.rpc.RetryInfo') };
}

// The pause the server asked for, in ms: the google.rpc.RetryInfo in the
// google.rpc.Status that gRPC carries in the trailing metadata entry
// grpc-status-details-bin (grpc-js leaves it in err.metadata). null when the
// error holds no (positive) one.
function retryDelayMs(err, types) {
  const values = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  try {
    for (const raw of values) {
      for (const any of types.Status.decode(raw).details) {
        if (any.type_url !== RETRY_INFO_TYPE) continue;
        const info = types.RetryInfo.toObject(types.RetryInfo.decode(any.value),
          { longs: Number, defaults: true });
        const d = info.retry_delay;
        const ms = d ? d.seconds * 1000 + d.nanos / 1e6 : 0;
        return ms > 0 ? ms : null;
      }
    }
  } catch {
    return null; // not a Status: no hint
  }
  return null;
}

function call(client, record, timeoutMs) {
  return new Promise((resolve, reject) => {
    client.Ingest({ record }, { deadline: Date.now() + timeoutMs },
      (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// One Ingest call per attempt, each under its own deadline. Between attempts,
// the pause the server asked for (RetryInfo) plus a little jitter, never less;
// without one, exponential backoff with jitter. The record, id included, never
// changes.
async function ingest(client, record, opts) {
  let backoff = opts.backoff;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(client, record, opts.timeout);
    } catch (err) {
      if (!RETRYABLE.has(err.code) || attempt >= opts.attempts) throw err;
      const asked = retryDelayMs(err, opts.retryTypes);
      let pause = Math.round(backoff * (0.5 + Math.random() / 2));
      let hint = '';
      if (asked !== null) {
        pause = Math.ceil(asked * (1 + Math.random() * HINT_JITTER)); // whole ms, never less
        hint = ` (server asked ${(asked / 1000).toFixed(3)}s)`;
      }
      console.error(`retry id=${record.id} attempt=${attempt} code=${grpc.status[err.code]} ` +
        `wait=${(pause / 1000).toFixed(3)}s${hint}: ${err.details}`);
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
      ca: { type: 'string', default: process.env.SLUICE_CA || '' },     // CA of the server: TLS
      tls: { type: 'boolean', default: false },                         // TLS, default roots
      cert: { type: 'string', default: process.env.SLUICE_CERT || '' }, // client certificate
      key: { type: 'string', default: process.env.SLUICE_KEY || '' },
      token: { type: 'string', default: process.env.SLUICE_TOKEN || '' }, // bearer token
    },
  });
  const opts = { timeout: a.timeout * 1000, attempts: +a.attempts, backoff: a.backoff * 1000,
    maxBackoff: a['max-backoff'] * 1000 };
  let creds;
  try {
    creds = channelCredentials(a);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`ingest_client: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  const { IngestService } = loadApi();
  opts.retryTypes = loadRetryTypes();
  const client = new IngestService(a.addr, creds);

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
    const hint = FINAL_HINTS[err.code];
    console.error(`giving up: ${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}` +
      (hint ? ` (${hint})` : ''));
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main();
