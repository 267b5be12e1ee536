"""Hostile clients against the services' HTTP endpoint: connections held
open without a request must not starve the probes a kubelet sends."""

import socket
import time
import urllib.request

import pytest

import harness


def idle_connections(host, port, n, source=None):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def probe(port, path="/healthz", host="127.0.0.1", timeout=1.0):
    """GET within timeout seconds (the kubelet's default probe timeout)."""
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
        return r.status


def closed_by_server(s):
    """True when the server has closed s (recv sees the end, or a reset)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_idle_connections_do_not_starve_probes(ingest):
    socks = idle_connections("127.0.0.1", ingest.metrics_port, 300)
    try:
        assert len(socks) == 300
        for _ in range(5):
            assert probe(ingest.metrics_port) == 200
            assert probe(ingest.metrics_port, "/readyz") == 200
        # Idle connections are dropped by the server after a few seconds.
        time.sleep(6)
        dropped = sum(1 for s in socks[:20] if closed_by_server(s))
        assert dropped == 20
    finally:
        for s in socks:
            s.close()


def host_address():
    """An address of this host other than loopback, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_one_address_cannot_take_every_connection(nats_server):
    """From one non-loopback address at most 64 connections are held; the
    rest are refused while the probe (from elsewhere) is answered."""
    addr = host_address()
    if addr is None:
        pytest.skip("no non-loopback address on this host")
    port = harness.free_port()
    svc = harness.Ingest(nats_server.url, metrics_port=port)
    svc.argv = [a if not a.startswith("--metrics-listen=") else f"--metrics-listen=0.0.0.0:{port}"
                for a in svc.argv]
    svc.start()
    socks = idle_connections(addr, port, 200, source=addr)
    try:
        time.sleep(0.5)
        open_ = [s for s in socks if not _closed_now(s)]
        assert len(open_) <= 64, len(open_)
        assert probe(port) == 200
    finally:
        for s in socks:
            s.close()
        assert svc.stop() == 0


def _closed_now(s):
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


# ---- gRPC limits -------------------------------------------------------------------

import json  # noqa: E402
import threading  # noqa: E402

import grpc  # noqa: E402


def ingest_with(nats_server, *flags):
    return harness.Ingest(nats_server.url, *flags).start()


def details_of(err):
    return f"{err.code()} {err.details()}"


def test_open_streams_capped(pb, nats_server):
    svc = ingest_with(nats_server, "--max-open-streams=2")
    chans = [grpc.insecure_channel(svc.target) for _ in range(3)]
    stop = threading.Event()

    def held(ch):
        def reqs():
            stop.wait(20)
            return
            yield  # noqa: unreachable: a generator that sends nothing until stop
        return pb.ingest_grpc.IngestServiceStub(ch).IngestStream(reqs(), timeout=30)

    try:
        open_ = [held(ch) for ch in chans[:2]]
        harness.wait_until(lambda: harness.metric(harness.scrape(svc), "grpc_server_started_total",
                                                  grpc_method="IngestStream") >= 2,
                           timeout=10, what="two streams open")
        third = held(chans[2])
        with pytest.raises(grpc.RpcError) as e:
            list(third)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, details_of(e.value)
        assert "IngestStream calls open (limit 2)" in e.value.details()
        stop.set()
        for call in open_:
            assert list(call) == []
        # Once they ended, a new stream is welcome again.
        stub = pb.ingest_grpc.IngestServiceStub(chans[2])
        rec = pb.ingest.Record(id="after", type="order.created", payload=b'{"n": 1}')
        out = list(stub.IngestStream(iter([pb.ingest.IngestRequest(record=rec)]), timeout=10))
        assert out[0].WhichOneof("outcome") == "ack"
    finally:
        stop.set()
        for ch in chans:
            ch.close()
        assert svc.stop() == 0


def test_health_watches_capped(pb, nats_server):
    svc = ingest_with(nats_server, "--max-health-watches=1")
    ch1, ch2 = grpc.insecure_channel(svc.target), grpc.insecure_channel(svc.target)
    try:
        first = pb.health_grpc.HealthStub(ch1).Watch(pb.health.HealthCheckRequest(), timeout=30)
        assert next(first).status == pb.health.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            next(pb.health_grpc.HealthStub(ch2).Watch(pb.health.HealthCheckRequest(), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, details_of(e.value)
        # Check is never limited.
        assert pb.health_grpc.HealthStub(ch2).Check(pb.health.HealthCheckRequest(),
                                                    timeout=10).status == 1
        first.cancel()
    finally:
        ch1.close()
        ch2.close()
        assert svc.stop() == 0


def test_in_flight_bytes_capped(pb, nats_server):
    svc = ingest_with(nats_server, "--max-payload-bytes=64KiB", "--max-in-flight-bytes=128KiB")
    ch = grpc.insecure_channel(svc.target)
    try:
        payload = json.dumps({"pad": "z" * (50 << 10)}).encode()
        recs = [pb.ingest.Record(id=f"b-{i}", type="order.created", payload=payload)
                for i in range(20)]
        resp = pb.ingest_grpc.IngestServiceStub(ch).IngestBatch(
            pb.ingest.IngestBatchRequest(records=recs), timeout=30)
        errors = [r.error for r in resp.results if r.WhichOneof("outcome") == "error"]
        acks = [r for r in resp.results if r.WhichOneof("outcome") == "ack"]
        assert acks and errors, (len(acks), len(errors))
        assert all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and
                   "bytes in flight" in e.message and len(e.details) == 1 for e in errors)
    finally:
        ch.close()
        assert svc.stop() == 0


def test_too_many_pings_closes_the_connection(pb, nats_server):
    svc = ingest_with(nats_server, "--min-client-ping-interval=5s")
    ch = grpc.insecure_channel(svc.target, options=[
        ("grpc.keepalive_time_ms", 500), ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_time_between_pings_ms", 500)])
    stop = threading.Event()

    def reqs():
        stop.wait(30)
        return
        yield  # noqa

    try:
        call = pb.ingest_grpc.IngestServiceStub(ch).IngestStream(reqs(), timeout=30)
        with pytest.raises(grpc.RpcError) as e:
            list(call)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, details_of(e.value)
        assert "ping" in e.value.details().lower(), details_of(e.value)
    finally:
        stop.set()
        ch.close()
        assert svc.stop() == 0


def test_connection_age_ends_old_connections(pb, nats_server):
    """A stream on a connection past --max-connection-age plus its grace is
    ended; every record it sent was answered first."""
    svc = ingest_with(nats_server, "--max-connection-age=2s", "--max-connection-age-grace=1s")
    ch = grpc.insecure_channel(svc.target)
    sent = []

    def reqs():
        for i in range(100):
            rec = pb.ingest.Record(id=f"age-{i}", type="order.created", payload=b'{"n": 1}')
            sent.append(rec.id)
            yield pb.ingest.IngestRequest(record=rec)
            time.sleep(0.1)

    try:
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for r in pb.ingest_grpc.IngestServiceStub(ch).IngestStream(reqs(), timeout=30):
                got.append(r)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), \
            details_of(e.value)
        assert 10 <= len(got) < 100
        assert all(r.WhichOneof("outcome") == "ack" for r in got)
        # A new call reconnects and goes through.
        rec = pb.ingest.Record(id="age-new", type="order.created", payload=b'{"n": 1}')
        assert pb.ingest_grpc.IngestServiceStub(ch).Ingest(
            pb.ingest.IngestRequest(record=rec), timeout=10).sequence > 0
    finally:
        ch.close()
        assert svc.stop() == 0


def vm_hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def sanitized_build():
    cache = harness.BUILD / "CMakeCache.txt"
    return cache.exists() and "SLUICE_SANITIZE:BOOL=ON" in cache.read_text()


def test_memory_bounded_under_large_concurrent_requests(pb, nats_server):
    """32 clients at once, each sending IngestBatch requests of 15 records of
    1000 KiB (15 MiB per request): sluice-ingest's peak resident memory stays
    below the README's bound, 64 MiB + 2 x --grpc-memory +
    --max-in-flight-bytes + --threads x 3 x --max-message-bytes; what does
    not fit is refused RESOURCE_EXHAUSTED (or UNAVAILABLE when gRPC drops a
    connection under memory pressure), and nothing else goes wrong."""
    if sanitized_build():
        pytest.skip("AddressSanitizer's shadow memory and quarantine are not the service's")
    svc = ingest_with(nats_server, "--threads=2", "--grpc-memory=32MiB",
                      "--max-in-flight-bytes=32MiB")
    blob = json.dumps({"b": "x" * (1000 << 10)}).encode()
    codes, lock = {}, threading.Lock()

    def client(k):
        ch = grpc.insecure_channel(svc.target,
                                   options=[("grpc.max_send_message_length", 64 << 20)])
        stub = pb.ingest_grpc.IngestServiceStub(ch)
        for i in range(2):
            recs = [pb.ingest.Record(id=f"m-{k}-{i}-{j}", type="big.one", payload=blob)
                    for j in range(15)]
            try:
                resp = stub.IngestBatch(pb.ingest.IngestBatchRequest(records=recs), timeout=120)
                got = ["OK" if r.WhichOneof("outcome") == "ack" else
                       grpc.StatusCode.RESOURCE_EXHAUSTED.name
                       if r.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
                       else f"code {r.error.code}" for r in resp.results]
            except grpc.RpcError as e:
                got = [e.code().name]
            with lock:
                for c in got:
                    codes[c] = codes.get(c, 0) + 1
        ch.close()

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        peak = vm_hwm_mib(svc.proc.pid)
        bound = 64 + 2 * 32 + 32 + 2 * 3 * 16
        print(f"outcomes {codes}, peak resident {peak:.0f} MiB, bound {bound} MiB")
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, codes
        assert codes.get("OK", 0) > 0
        assert peak < bound, (peak, bound)
    finally:
        assert svc.stop() == 0
