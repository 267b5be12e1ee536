"""gRPC health of sluice-ingest through grpcio's health stubs and the real
grpc-health-probe: SERVING only while JetStream is reachable and the stream
exists, NOT_SERVING while NATS is down and while draining."""

import signal
import subprocess
import threading

import grpc
import pytest

import harness

PROBE = str(harness.TOOLS / "grpc-health-probe")


def probe(target, service=""):
    args = [PROBE, f"-addr={target}", "-connect-timeout=2s", "-rpc-timeout=2s"]
    if service:
        args.append(f"-service={service}")
    return subprocess.run(args, capture_output=True, text=True, timeout=10)


def check(pb, target, service=""):
    with grpc.insecure_channel(target) as ch:
        stub = pb.health_grpc.HealthStub(ch)
        return stub.Check(pb.health.HealthCheckRequest(service=service), timeout=5).status


def test_serving_with_probe(pb, ingest):
    out = probe(ingest.target)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "status: SERVING" in out.stdout + out.stderr
    assert probe(ingest.target, "sluice.v1.IngestService").returncode == 0
    serving = pb.health.HealthCheckResponse.SERVING
    assert check(pb, ingest.target) == serving
    assert check(pb, ingest.target, "sluice.v1.IngestService") == serving


def test_unknown_service_not_found(pb, ingest):
    with pytest.raises(grpc.RpcError) as err:
        check(pb, ingest.target, "no.such.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_not_serving_while_nats_down(pb, nats_server):
    svc = harness.Ingest(nats_server.url).start()
    try:
        serving = pb.health.HealthCheckResponse.SERVING
        assert check(pb, svc.target) == serving
        nats_server.stop()
        harness.wait_until(lambda: check(pb, svc.target) != serving, timeout=10,
                           what="NOT_SERVING")
        out = probe(svc.target)
        assert out.returncode != 0 and "NOT_SERVING" in (out.stdout + out.stderr)
        nats_server.start()
        harness.wait_until(lambda: check(pb, svc.target) == serving, timeout=20,
                           what="SERVING again")
        assert probe(svc.target).returncode == 0
    finally:
        assert svc.stop() == 0


def test_watch_follows_changes_and_drain(pb, nats_server):
    svc = harness.Ingest(nats_server.url).start()
    ch = grpc.insecure_channel(svc.target)
    stub = pb.health_grpc.HealthStub(ch)
    seen, errors = [], []
    H = pb.health.HealthCheckResponse

    def watch():
        try:
            for resp in stub.Watch(pb.health.HealthCheckRequest(), timeout=60):
                seen.append(resp.status)
        except grpc.RpcError as e:
            errors.append(e.code())

    t = threading.Thread(target=watch)
    t.start()
    harness.wait_until(lambda: seen[:1] == [H.SERVING], timeout=10, what="first SERVING")
    nats_server.stop()
    harness.wait_until(lambda: H.NOT_SERVING in seen, timeout=10, what="NOT_SERVING pushed")
    nats_server.start()
    harness.wait_until(lambda: seen[-1] == H.SERVING and len(seen) >= 3, timeout=20,
                       what="SERVING pushed again")
    svc.send_signal(signal.SIGTERM)
    assert svc.wait(timeout=15) == 0
    t.join(timeout=10)
    assert seen[-1] == H.NOT_SERVING  # the drain is announced before the end
    assert errors and errors[0] == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_watch_unknown_service(pb, ingest):
    with grpc.insecure_channel(ingest.target) as ch:
        stub = pb.health_grpc.HealthStub(ch)
        stream = stub.Watch(pb.health.HealthCheckRequest(service="nope"), timeout=5)
        first = next(iter(stream))
        assert first.status == pb.health.HealthCheckResponse.SERVICE_UNKNOWN
        stream.cancel()
