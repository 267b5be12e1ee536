"""Server reflection through the real grpcurl, with no .proto file given:
list, describe, and a call."""

import json
import subprocess

import harness

GRPCURL = str(harness.TOOLS / "grpcurl")


def grpcurl(*args, data=None):
    argv = [GRPCURL, "-plaintext"]
    if data is not None:
        argv += ["-d", data]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=20)


def test_list_services(ingest):
    out = grpcurl(ingest.target, "list")
    assert out.returncode == 0, out.stderr
    services = out.stdout.split()
    for name in ("sluice.v1.IngestService", "grpc.health.v1.Health",
                 "grpc.reflection.v1.ServerReflection"):
        assert name in services
    methods = grpcurl(ingest.target, "list", "sluice.v1.IngestService").stdout.split()
    assert methods == ["sluice.v1.IngestService.Ingest", "sluice.v1.IngestService.IngestBatch",
                       "sluice.v1.IngestService.IngestStream"]


def test_describe(ingest):
    out = grpcurl(ingest.target, "describe", "sluice.v1.IngestService")
    assert out.returncode == 0, out.stderr
    assert "rpc IngestStream ( stream .sluice.v1.IngestRequest ) returns ( stream .sluice.v1.IngestResult );" in out.stdout
    rec = grpcurl(ingest.target, "describe", "sluice.v1.Record")
    assert rec.returncode == 0, rec.stderr
    for field in ("string id = 1;", "string type = 2;", "bytes payload = 4;",
                  "map<string, string> attributes = 5;",
                  ".google.protobuf.Timestamp event_time = 6;"):
        assert field in rec.stdout
    res = grpcurl(ingest.target, "describe", "sluice.v1.IngestResult")
    assert ".google.rpc.Status error = 3;" in res.stdout


def test_unknown_symbol(ingest):
    out = grpcurl(ingest.target, "describe", "sluice.v1.Nope")
    assert out.returncode != 0
    assert "not found" in (out.stderr + out.stdout).lower()


def test_call_without_proto(ingest):
    body = json.dumps({"record": {"id": "gc-1", "type": "order.created",
                                  "payload": "eyJhIjogMX0="}})  # {"a": 1}
    out = grpcurl(ingest.target, "sluice.v1.IngestService/Ingest", data=body)
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    assert resp["id"] == "gc-1" and resp["stream"] == "SLUICE" and resp["sequence"] == "1"
    again = json.loads(grpcurl(ingest.target, "sluice.v1.IngestService/Ingest", data=body).stdout)
    assert again["duplicate"] is True and again["sequence"] == "1"
    bad = grpcurl(ingest.target, "sluice.v1.IngestService/Ingest",
                  data=json.dumps({"record": {"type": "Bad", "payload": "e30="}}))
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr and "record.type: must be" in bad.stderr


def test_v1alpha_still_served(ingest):
    # grpcurl falls back to v1alpha for old servers; ask the alpha service
    # directly with the v1 client's wire format (the two are identical).
    out = grpcurl(ingest.target, "describe", "grpc.reflection.v1alpha.ServerReflection")
    assert out.returncode == 0, out.stderr
    assert "ServerReflectionInfo" in out.stdout
