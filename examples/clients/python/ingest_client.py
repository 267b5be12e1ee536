#!/usr/bin/env python3
"""Sluice client example: ingests N records, retrying each with the SAME id.

Record.id is the idempotency key: a retry after UNAVAILABLE (the record may or
may not be stored) is stored once, and the answer then says duplicate=true with
the original sequence. Stubs come from generate.sh (run.sh calls it).
"""

import argparse
import json
import os
import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from sluice.v1 import ingest_pb2, ingest_pb2_grpc  # noqa: E402

# UNAVAILABLE: JetStream not reachable or no PubAck in time. RESOURCE_EXHAUSTED:
# too many records in flight, so back off. INVALID_ARGUMENT and the rest: give up.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}


def ingest(stub, record, args):
    """One Ingest call per attempt, each with its own deadline; exponential
    backoff with jitter between attempts. The record, id included, never changes."""
    backoff = args.backoff
    for attempt in range(1, args.attempts + 1):
        try:
            return stub.Ingest(ingest_pb2.IngestRequest(record=record), timeout=args.timeout)
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or attempt == args.attempts:
                raise
            pause = backoff * random.uniform(0.5, 1.0)
            print(f"retry id={record.id} attempt={attempt} code={err.code().name} "
                  f"wait={pause:.3f}s: {err.details()}", file=sys.stderr)
            time.sleep(pause)
            backoff = min(backoff * 2, args.max_backoff)


def show(resp):
    print(f"id={resp.id} stream={resp.stream} sequence={resp.sequence} "
          f"duplicate={str(resp.duplicate).lower()}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default=os.environ.get("SLUICE_ADDR", "127.0.0.1:50051"))
    p.add_argument("--count", type=int, default=3, help="records to ingest")
    p.add_argument("--prefix", default="order", help="ids are <prefix>-<i>")
    p.add_argument("--type", default="order.created")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline per call, seconds")
    p.add_argument("--attempts", type=int, default=10, help="tries per record")
    p.add_argument("--backoff", type=float, default=0.2, help="first backoff, seconds")
    p.add_argument("--max-backoff", type=float, default=3.0)
    args = p.parse_args()

    records = [
        ingest_pb2.Record(
            id=f"{args.prefix}-{i}", type=args.type, key=f"customer-{i % 2}",
            payload=json.dumps({"order": i, "total": 10.5 * i}).encode(),
            attributes={"source": "python-example"})
        for i in range(1, args.count + 1)
    ]
    with grpc.insecure_channel(args.addr) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            for rec in records:
                show(ingest(stub, rec, args))
            if records:  # the same id again: stored once, answered duplicate=true
                show(ingest(stub, records[0], args))
        except grpc.RpcError as err:
            print(f"giving up: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
