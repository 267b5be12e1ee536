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
