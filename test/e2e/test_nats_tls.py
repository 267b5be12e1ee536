"""NATS over TLS, end to end: nats-server with a TLS listener and
certificates made at test time by a private CA (pki.py); the services
connect with NATS_CA, and with a client certificate (NATS_CERT, NATS_KEY)
where the server verifies them. A service without the CA, or without the
client certificate the server asks for, does not get in and says why."""

import pytest

import harness
import pki
from conftest_access import SERVICES, Pipeline, carries_records, stops_cleanly
from conftest_downstream import ferretdb, mongo  # noqa: F401


@pytest.fixture
def certs():
    return pki.Pki()


def tls_server(tmp_path, certs, verify):
    cert, key = certs.server()
    conf = tmp_path / f"tls-{verify}.conf"
    conf.write_text(
        "max_payload: 8MB\njetstream { sync_interval: always }\n"
        f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n'
        f'  ca_file: "{certs.ca}"\n  verify: {"true" if verify else "false"}\n'
        "  timeout: 2\n}\n")
    return harness.NatsServer(conf=conf, scheme="tls").start()


def test_mutual_tls_carries_the_pipeline(pb, tmp_path, certs, ferretdb, mongo):
    srv = tls_server(tmp_path, certs, verify=True)
    env = {}
    for name in SERVICES:
        cert, key = certs.issue(f"client-{name}", f"sluice-{name}")
        env[name] = {"NATS_CA": certs.ca, "NATS_CERT": cert, "NATS_KEY": key}
    p = Pipeline(srv.url, ferretdb.uri(), env=env, tmp=tmp_path)
    try:
        p.start()
        carries_records(pb, p, mongo, n=20)
    finally:
        stops_cleanly(p)
        srv.stop()
    line = p.ingest.events("NATS: ")[0]
    assert line["level"] == "info", line  # a client certificate identifies: no warning
    assert f"TLS (CA {certs.ca}, client certificate " in line["msg"]
    assert "connected to NATS at tls://127.0.0.1" in p.logs()


def test_server_only_tls_with_the_ca_alone(pb, tmp_path, certs, ferretdb, mongo):
    """NATS_CA alone turns TLS on, also with a nats:// URL."""
    srv = tls_server(tmp_path, certs, verify=False)
    url = f"nats://127.0.0.1:{srv.port}"
    env = {name: {"NATS_CA": certs.ca} for name in SERVICES}
    p = Pipeline(url, ferretdb.uri(), env=env, tmp=tmp_path)
    try:
        p.start()
        carries_records(pb, p, mongo, n=10)
    finally:
        stops_cleanly(p)
        srv.stop()
    assert "TLS (CA " in p.transform.events("NATS: ")[0]["msg"]


def not_admitted(svc, want):
    svc.start(ready=False)
    try:
        harness.wait_until(lambda: svc.events("NATS at "), what="the connect error")
        ev = svc.events("NATS at ")[0]
        assert ev["level"] == "error" and want in ev["msg"], ev
        assert harness.http_get(svc.metrics_port, "/readyz")[0] == 503
    finally:
        assert svc.stop() == 0


def test_without_the_client_certificate_or_the_ca_no_entry(tmp_path, certs):
    srv = tls_server(tmp_path, certs, verify=True)
    cert, key = certs.issue("client-ingest", "sluice-ingest")
    try:
        # The server asks for a client certificate this one does not have.
        not_admitted(harness.Ingest(srv.url, f"--nats-ca={certs.ca}"), "TLS failed")
        # The server's certificate is not signed by the CA given.
        not_admitted(harness.Ingest(srv.url, f"--nats-ca={certs.other_ca}", f"--nats-cert={cert}",
                                    f"--nats-key={key}"), "TLS failed")
    finally:
        srv.stop()
