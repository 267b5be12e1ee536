"""MongoDB TLS and credentials through MONGODB_URI options, end to end,
against FerretDB: its TLS listener with certificates made at test time
(server TLS, then client certificates required), and SCRAM-SHA-256
credentials (FerretDB 1.24 checks them only with its experimental
--test-enable-new-auth; on SQLite without it any credentials are taken).
The URI comes from MONGODB_URI_FILE as a Kubernetes Secret would give it;
its password never reaches a log line or an error."""

import pathlib

import pymongo
import pytest

import harness
import pki
from conftest_access import (Pipeline, carries_records, start_error, stops_cleanly)
from conftest_downstream import Downstream

PASSWORD = "m0ngo-pa55word"


@pytest.fixture
def certs():
    return pki.Pki()


def bundle(certs, name):
    """A client certificate and its key in one PEM file, as MongoDB's
    tlsCertificateKeyFile takes them."""
    cert, key = certs.issue(f"client-{name}", name)
    path = pathlib.Path(cert).with_suffix(".pem")
    path.write_bytes(pki.Pki.read(cert) + pki.Pki.read(key))
    return path


def tls_ferretdb(certs, client_certs):
    """FerretDB with a plain listener (for the test's own reads) and a TLS
    one, .tls_port; client_certs: the TLS listener requires them."""
    tls_port = harness.free_port()
    cert, key = certs.server()
    extra = [f"--listen-tls=127.0.0.1:{tls_port}", f"--listen-tls-cert-file={cert}",
             f"--listen-tls-key-file={key}"]
    if client_certs:
        extra.append(f"--listen-tls-ca-file={certs.ca}")
    db = harness.FerretDB(extra=extra).start()
    harness.wait_port(tls_port)
    db.tls_port = tls_port
    return db


def open_db(uri):
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000)
    return client, client.get_default_database()


def run_pipeline(pb, tmp_path, nats_server, mongo_uri_for, db, n=20):
    """The pipeline with each consumer's URI from mongo_uri_for(name); the
    records read back through db (pymongo)."""
    env = {name: {"MONGODB_URI": mongo_uri_for(name)} for name in ("transform", "audit")}
    p = Pipeline(nats_server.url, None, env=env, tmp=tmp_path)
    try:
        p.start()
        carries_records(pb, p, db, n=n)
    finally:
        stops_cleanly(p)
    return p


def test_tls_to_mongodb(pb, tmp_path, certs, nats_server):
    db = tls_ferretdb(certs, client_certs=False)
    client, sluice = open_db(db.uri())
    try:
        uri = (f"mongodb://127.0.0.1:{db.tls_port}/sluice?tls=true&tlsCAFile={certs.ca}")
        p = run_pipeline(pb, tmp_path, nats_server, lambda name: uri, sluice)
        assert p.transform.events("MongoDB: ")[0]["msg"].endswith("no credentials; TLS")
    finally:
        client.close()
        db.stop()


def test_client_certificates_to_mongodb(pb, tmp_path, certs, nats_server):
    db = tls_ferretdb(certs, client_certs=True)
    client, sluice = open_db(db.uri())
    base = f"mongodb://127.0.0.1:{db.tls_port}/sluice?tls=true&tlsCAFile={certs.ca}"
    try:
        run_pipeline(pb, tmp_path, nats_server,
                     lambda name: f"{base}&tlsCertificateKeyFile={bundle(certs, 'sluice-' + name)}",
                     sluice)
        # Without a client certificate, the store is not reachable: not ready.
        svc = Downstream("audit", nats_server.url, base).start()
        try:
            harness.wait_until(lambda: svc.events("MongoDB not reachable"), timeout=30,
                               what="the store refused")
            status, body, _ = harness.http_get(svc.metrics_port, "/readyz")
            assert status == 503 and "MongoDB" in body, (status, body)
        finally:
            assert svc.stop() == 0
    finally:
        client.close()
        db.stop()


@pytest.fixture
def auth_ferretdb():
    db = harness.FerretDB(extra=["--test-enable-new-auth", "--setup-database=sluice",
                                 "--setup-username=sluice", f"--setup-password={PASSWORD}"])
    db.start()
    yield db
    db.stop()


def test_credentials_from_a_uri_file(pb, tmp_path, nats_server, auth_ferretdb):
    port = auth_ferretdb.port
    uri = f"mongodb://sluice:{PASSWORD}@127.0.0.1:{port}/sluice?authMechanism=SCRAM-SHA-256"
    uri_file = tmp_path / "mongodb-uri"
    uri_file.write_text(uri + "\n")  # as a Secret file: a trailing newline
    client, sluice = open_db(uri)
    try:
        env = {name: {"MONGODB_URI_FILE": str(uri_file)} for name in ("transform", "audit")}
        p = Pipeline(nats_server.url, None, env=env, tmp=tmp_path)
        try:
            p.start()
            carries_records(pb, p, sluice, n=20)
        finally:
            stops_cleanly(p)
        assert PASSWORD not in p.logs()
        line = p.audit.events("MongoDB: ")[0]
        assert line["level"] == "info" and "mongodb://sluice:***@127.0.0.1" in line["msg"], line
        assert "user sluice; no TLS" in line["msg"], line

        # A wrong password: not ready, said so, and neither password shows.
        wrong = tmp_path / "wrong-uri"
        wrong.write_text(uri.replace(PASSWORD, "wrong-" + PASSWORD))
        svc = Downstream("transform", nats_server.url, None, f"--mongodb-uri-file={wrong}")
        svc.start()
        try:
            harness.wait_until(lambda: svc.events("MongoDB not reachable"), timeout=30,
                               what="authentication refused")
            assert "uthentication" in svc.events("MongoDB not reachable")[0]["msg"]
            assert harness.http_get(svc.metrics_port, "/readyz")[0] == 503
        finally:
            assert svc.stop() == 0
        assert PASSWORD not in svc.log()
    finally:
        client.close()


@pytest.mark.parametrize("name", ["transform", "audit"])
def test_bad_mongodb_settings_stop_at_start_masked(name, tmp_path):
    bad = f"mongodb://sluice:{PASSWORD}@127.0.0.1:99999/sluice"
    line = start_error(name, f"--mongodb-uri={bad}")
    assert PASSWORD not in line
    assert 'invalid MongoDB URI "mongodb://sluice:***@127.0.0.1:99999/sluice"' in line
    uri_file = tmp_path / "uri"
    uri_file.write_text(bad + "\n")
    line = start_error(name, env={"MONGODB_URI_FILE": str(uri_file)})
    assert PASSWORD not in line and "sluice:***@" in line
    line = start_error(name, f"--mongodb-uri-file={uri_file}", "--mongodb-uri=mongodb://h/db")
    assert "exclude each other" in line
    line = start_error(name, "--mongodb-uri-file=/nonexistent/uri")
    assert "cannot read --mongodb-uri-file (MONGODB_URI_FILE) /nonexistent/uri:" in line
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "the file is empty" in start_error(name, f"--mongodb-uri-file={empty}")
