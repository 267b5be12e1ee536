#!/usr/bin/env python3
"""Sluice client example: ingests N records, retrying each with the SAME id.

Record.id is the idempotency key: a retry after UNAVAILABLE (the record may or
may not be stored) is stored once, and the answer then says duplicate=true with
the original sequence. Stubs come from generate.sh (run.sh calls it).

Security, from the environment or flags: SLUICE_CA (--ca) turns TLS on and
verifies the server with that CA (--tls: with the system's roots instead);
SLUICE_CERT / SLUICE_KEY (--cert / --key) present a client certificate (mTLS);
SLUICE_TOKEN (--token) goes as `authorization: Bearer <token>` on every call,
as per-call credentials, which gRPC sends over TLS only.
"""

import argparse
import json
import os
import pathlib
import random
import ssl
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from sluice.v1 import ingest_pb2, ingest_pb2_grpc  # noqa: E402

# UNAVAILABLE: JetStream not reachable or no PubAck in time. RESOURCE_EXHAUSTED:
# too many records in flight, so back off. INVALID_ARGUMENT and the rest: give up.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}

# Final like every code outside RETRYABLE, and said plainly: the same call with
# the same credentials gets the same answer.
FINAL_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED:
        "not retried: the server did not accept this caller's credentials: "
        "check SLUICE_TOKEN, or SLUICE_CERT and SLUICE_KEY",
    grpc.StatusCode.PERMISSION_DENIED:
        "not retried: the server's policy does not let this caller write records of this type",
}


# A pause the server asks for (RetryInfo) is stretched by up to this much, at
# random, so that the callers it turned away do not all come back at once.
HINT_JITTER = 0.2


class UsageError(Exception):
    pass


def retry_delay(err):
    """The pause the server asked for, in seconds: the google.rpc.RetryInfo in
    the google.rpc.Status that gRPC carries in the trailing metadata entry
    grpc-status-details-bin. None when the error holds no (positive) one."""
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):  # False for any other detail type
                    delay = info.retry_delay.ToTimedelta().total_seconds()
                    return delay if delay > 0 else None
        except DecodeError:  # not a Status: no hint
            return None
    return None


def ingest(stub, record, args):
    """One Ingest call per attempt, each with its own deadline. Between
    attempts, the pause the server asked for (RetryInfo) plus a little
    jitter, never less; without one, exponential backoff with jitter. The
    record, id included, never changes."""
    backoff = args.backoff
    for attempt in range(1, args.attempts + 1):
        try:
            return stub.Ingest(ingest_pb2.IngestRequest(record=record), timeout=args.timeout)
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or attempt == args.attempts:
                raise
            asked = retry_delay(err)
            if asked is not None:
                pause = asked * (1 + random.uniform(0, HINT_JITTER))
                hint = f" (server asked {asked:.3f}s)"
            else:
                pause = backoff * random.uniform(0.5, 1.0)
                hint = ""
            print(f"retry id={record.id} attempt={attempt} code={err.code().name} "
                  f"wait={pause:.3f}s{hint}: {err.details()}", file=sys.stderr, flush=True)
            time.sleep(pause)
            backoff = min(backoff * 2, args.max_backoff)


def read(path, what):
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{what}: {path}: {e.strerror}")


def system_roots():
    """The system's CA bundle (OpenSSL's default file, or SSL_CERT_FILE); None
    leaves grpcio to its own default roots."""
    cafile = ssl.get_default_verify_paths().cafile
    return read(cafile, "system roots") if cafile else None


def open_channel(args):
    """A plaintext channel, or with --ca / --tls / a client certificate a TLS one;
    the token rides on every call as per-call credentials."""
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert (SLUICE_CERT) and --key (SLUICE_KEY) go together")
    tls = args.tls or bool(args.ca) or bool(args.cert)
    if not tls:
        if args.token:
            raise UsageError("a token is sent only over TLS: set SLUICE_CA (--ca) to the CA "
                             "of the server's certificate, or --tls for the system roots")
        return grpc.insecure_channel(args.addr)
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca, "--ca") if args.ca else system_roots(),
        private_key=read(args.key, "--key") if args.key else None,
        certificate_chain=read(args.cert, "--cert") if args.cert else None)
    if args.token:  # authorization: Bearer <token>, on every call
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(args.token))
    return grpc.secure_channel(args.addr, creds)


def show(resp):
    print(f"id={resp.id} stream={resp.stream} sequence={resp.sequence} "
          f"duplicate={str(resp.duplicate).lower()}", flush=True)


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default=env("SLUICE_ADDR", "127.0.0.1:50051"))
    p.add_argument("--count", type=int, default=3, help="records to ingest")
    p.add_argument("--prefix", default="order", help="ids are <prefix>-<i>")
    p.add_argument("--type", default="order.created")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline per call, seconds")
    p.add_argument("--attempts", type=int, default=10, help="tries per record")
    p.add_argument("--backoff", type=float, default=0.2, help="first backoff, seconds")
    p.add_argument("--max-backoff", type=float, default=3.0)
    p.add_argument("--ca", default=env("SLUICE_CA", ""),
                   help="PEM of the CA that signed the server's certificate: TLS (env SLUICE_CA)")
    p.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    p.add_argument("--cert", default=env("SLUICE_CERT", ""),
                   help="PEM client certificate, for mTLS (env SLUICE_CERT)")
    p.add_argument("--key", default=env("SLUICE_KEY", ""),
                   help="PEM key of --cert (env SLUICE_KEY)")
    p.add_argument("--token", default=env("SLUICE_TOKEN", ""),
                   help="bearer token (JWT or API key) for every call (env SLUICE_TOKEN)")
    args = p.parse_args()

    records = [
        ingest_pb2.Record(
            id=f"{args.prefix}-{i}", type=args.type, key=f"customer-{i % 2}",
            payload=json.dumps({"order": i, "total": 10.5 * i}).encode(),
            attributes={"source": "python-example"})
        for i in range(1, args.count + 1)
    ]
    try:
        channel = open_channel(args)
    except UsageError as e:
        print(f"ingest_client: {e}", file=sys.stderr)
        return 2
    with channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            for rec in records:
                show(ingest(stub, rec, args))
            if records:  # the same id again: stored once, answered duplicate=true
                show(ingest(stub, records[0], args))
        except grpc.RpcError as err:
            hint = FINAL_HINTS.get(err.code())
            print(f"giving up: {err.code().name}: {err.details()}"
                  + (f" ({hint})" if hint else ""), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
