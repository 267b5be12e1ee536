"""Identity and access end to end: sluice-ingest with TLS, mTLS, JWTs, API
keys and a write policy, driven by grpcio, grpcurl and grpc-health-probe
with certificates and tokens made at test time; the principal followed
into the stream and into `audit` and `records`."""

import json
import shutil
import subprocess
import time

import grpc
import pytest

import harness
from conftest_downstream import Downstream, ferretdb, mongo, wait_count  # noqa: F401
from pki import Pki, Tokens

AUD, ISS = "sluice", "https://idp.test"


@pytest.fixture(scope="module")
def pki():
    return Pki()


@pytest.fixture(scope="module")
def tokens(pki):
    return Tokens(pki)


def policy_file(pki, policy):
    return pki._write("policy.json", json.dumps(policy).encode())


def start_ingest(nats_server, *flags):
    return harness.Ingest(nats_server.url, *flags).start()


def channel(svc, pki, cert=None, ca=None):
    """A TLS channel to svc as a client verifying the server with ca (the
    test CA by default), presenting cert (a (crt, key) pair) if given."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=Pki.read(ca or pki.ca),
        private_key=Pki.read(cert[1]) if cert else None,
        certificate_chain=Pki.read(cert[0]) if cert else None)
    return grpc.secure_channel(f"localhost:{svc.port}", creds)


def stub(pb, ch):
    return pb.ingest_grpc.IngestServiceStub(ch)


def rec(pb, i, type_="order.created"):
    """A record whose id is made from i (any text: an ordinal, a name)."""
    ident = "".join(c if c.isalnum() else "-" for c in str(i))
    return pb.ingest.Record(id=f"s-{ident}", type=type_, payload=json.dumps({"n": str(i)}).encode())


def call(pb, ch, record, token=None, extra=()):
    md = [("authorization", f"Bearer {token}")] if token else []
    return stub(pb, ch).Ingest(pb.ingest.IngestRequest(record=record), metadata=md + list(extra),
                               timeout=10)


def refused(fn, code):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == code, (e.value.code(), e.value.details())
    return e.value.details()


async def _stream_headers(url, seq):
    import nats
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().get_msg("SLUICE", seq)).headers
    finally:
        await nc.close()


def headers_at(nats_server, seq):
    return harness.run_coro(_stream_headers(nats_server.url, seq))


# ---- TLS and mTLS -----------------------------------------------------------------

def test_tls_only_port(pb, pki, nats_server):
    crt, key = pki.server()
    svc = start_ingest(nats_server, f"--tls-cert={crt}", f"--tls-key={key}")
    try:
        ack = call(pb, channel(svc, pki), rec(pb, 1))
        assert ack.sequence == 1
        plain = grpc.insecure_channel(svc.target)
        refused(lambda: call(pb, plain, rec(pb, 2)), grpc.StatusCode.UNAVAILABLE)
        # A client that does not trust the server's CA does not get in.
        refused(lambda: call(pb, channel(svc, pki, ca=pki.other_ca), rec(pb, 3)),
                grpc.StatusCode.UNAVAILABLE)
    finally:
        assert svc.stop() == 0


def test_mtls_certificates(pb, pki, nats_server):
    crt, key = pki.server()
    svc = start_ingest(nats_server, f"--tls-cert={crt}", f"--tls-key={key}",
                       f"--tls-client-ca={pki.ca}")
    good = pki.issue("billing", "billing-cn", uris=["spiffe://corp/billing"], dns=["billing.svc"])
    by_dns = pki.issue("dnsonly", "dns-cn", dns=["reports.svc"])
    by_cn = pki.issue("cnonly", "batch-job")
    other = pki.issue("intruder", "intruder", by_other=True)
    expired = pki.issue("old", "old-job", expired=True)
    try:
        for cert, who in ((good, "spiffe://corp/billing"), (by_dns, "reports.svc"),
                          (by_cn, "batch-job")):
            ack = call(pb, channel(svc, pki, cert=cert), rec(pb, who))
            assert headers_at(nats_server, ack.sequence)["Sluice-Principal"] == who
        for cert in (None, other, expired):
            refused(lambda: call(pb, channel(svc, pki, cert=cert), rec(pb, "x")),
                    grpc.StatusCode.UNAVAILABLE)
    finally:
        assert svc.stop() == 0


def test_certificate_rotation_without_restart(pb, pki, nats_server):
    """The server's certificate files are replaced while it runs: new
    connections get the new certificate, and nothing was restarted."""
    import ssl
    first = pki.server("rot-a")
    live_crt, live_key = pki.dir / "live.crt", pki.dir / "live.key"
    shutil.copy(first[0], live_crt)
    shutil.copy(first[1], live_key)
    svc = start_ingest(nats_server, f"--tls-cert={live_crt}", f"--tls-key={live_key}")

    def served_cert():
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.set_alpn_protocols(["h2"])
        import socket
        with socket.create_connection(("127.0.0.1", svc.port)) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                return t.getpeercert(binary_form=True)

    try:
        from cryptography import x509
        before = x509.load_der_x509_certificate(served_cert()).serial_number
        second = pki.server("rot-b")
        # Replace both files as a Secret update does: new files moved in place.
        tmp_c, tmp_k = pki.dir / "live.crt.new", pki.dir / "live.key.new"
        shutil.copy(second[1], tmp_k)
        shutil.copy(second[0], tmp_c)
        tmp_k.replace(live_key)
        tmp_c.replace(live_crt)
        want = x509.load_pem_x509_certificate(Pki.read(second[0])).serial_number
        harness.wait_until(lambda: x509.load_der_x509_certificate(served_cert()).serial_number
                           == want, timeout=10, interval=0.3, what="the new certificate served")
        assert want != before
        assert call(pb, channel(svc, pki), rec(pb, 9)).sequence >= 1
        assert svc.events("TLS certificate files changed: reloaded")
    finally:
        assert svc.stop() == 0


# ---- tokens -------------------------------------------------------------------------

@pytest.fixture
def token_ingest(pb, pki, tokens, nats_server):
    keys = tokens.api_keys({"etl-job": "k-etl-0123456789"})
    crt, key = pki.server()
    svc = start_ingest(nats_server, f"--tls-cert={crt}", f"--tls-key={key}",
                       f"--auth-jwt-public-key={tokens.rsa_pub}", f"--auth-jwt-issuer={ISS}",
                       f"--auth-jwt-audience={AUD}", f"--auth-tokens-file={keys}")
    yield svc
    assert svc.stop() == 0


def test_tokens_accepted(pb, pki, tokens, nats_server, token_ingest):
    ch = channel(token_ingest, pki)
    ack = call(pb, ch, rec(pb, 1), token=tokens.jwt("billing-svc", iss=ISS, aud=AUD))
    assert headers_at(nats_server, ack.sequence)["Sluice-Principal"] == "billing-svc"
    ack = call(pb, ch, rec(pb, 2), token="k-etl-0123456789")
    assert headers_at(nats_server, ack.sequence)["Sluice-Principal"] == "etl-job"


@pytest.mark.parametrize("case,needle", [
    ("missing", "missing credentials"),
    ("bad signature", "signature"),
    ("expired", "expired"),
    ("wrong audience", "audience"),
    ("wrong issuer", "issuer"),
    ("unknown api key", "not a known API key"),
    ("malformed header", "Bearer <token>"),
])
def test_tokens_refused(pb, pki, tokens, token_ingest, case, needle):
    t = {"missing": None,
         "bad signature": tokens.jwt("x", key=tokens.stranger, iss=ISS, aud=AUD),
         "expired": tokens.jwt("x", ttl=-3600, iss=ISS, aud=AUD),
         "wrong audience": tokens.jwt("x", iss=ISS, aud="someone-else"),
         "wrong issuer": tokens.jwt("x", iss="https://evil", aud=AUD),
         "unknown api key": "k-not-a-key",
         "malformed header": None}[case]
    extra = [("authorization", "Basic Zm9vOmJhcg==")] if case == "malformed header" else []
    ch = channel(token_ingest, pki)
    details = refused(lambda: call(pb, ch, rec(pb, case), token=t, extra=extra),
                      grpc.StatusCode.UNAUTHENTICATED)
    assert needle in details
    if t:
        assert t not in details  # never echoes the secret


def test_health_open_reflection_closed(pb, pki, tokens, token_ingest):
    """Probes need no credentials; reflection follows IngestService's rules."""
    ch = channel(token_ingest, pki)
    health = pb.health_grpc.HealthStub(ch).Check(pb.health.HealthCheckRequest(), timeout=10)
    assert health.status == pb.health.HealthCheckResponse.SERVING
    probe = subprocess.run([str(harness.TOOLS / "grpc-health-probe"),
                            f"-addr=localhost:{token_ingest.port}", "-tls",
                            f"-tls-ca-cert={pki.ca}"], capture_output=True, text=True, timeout=20)
    assert probe.returncode == 0, probe.stderr
    grpcurl = str(harness.TOOLS / "grpcurl")
    no = subprocess.run([grpcurl, "-cacert", pki.ca, f"localhost:{token_ingest.port}", "list"],
                        capture_output=True, text=True, timeout=20)
    assert no.returncode != 0 and "Unauthenticated" in (no.stderr + no.stdout)
    token = tokens.jwt("ops", iss=ISS, aud=AUD)
    yes = subprocess.run([grpcurl, "-cacert", pki.ca, "-H", f"authorization: Bearer {token}",
                          f"localhost:{token_ingest.port}", "list"],
                         capture_output=True, text=True, timeout=20)
    assert yes.returncode == 0 and "sluice.v1.IngestService" in yes.stdout, yes.stderr
    payload = "eyJuIjoxfQ=="  # {"n":1}
    sent = subprocess.run([grpcurl, "-cacert", pki.ca, "-H", f"authorization: Bearer {token}",
                           "-d", json.dumps({"record": {"type": "order.created",
                                                        "payload": payload}}),
                           f"localhost:{token_ingest.port}", "sluice.v1.IngestService/Ingest"],
                          capture_output=True, text=True, timeout=20)
    assert sent.returncode == 0 and '"stream": "SLUICE"' in sent.stdout, sent.stderr


# ---- policy -------------------------------------------------------------------------

def test_policy_per_record(pb, pki, tokens, nats_server):
    pol = policy_file(pki, {"billing-svc": ["order.*"], "*": ["public.>"]})
    crt, key = pki.server()
    svc = start_ingest(nats_server, f"--tls-cert={crt}", f"--tls-key={key}",
                       f"--auth-jwt-public-key={tokens.ec_pub}", f"--auth-policy={pol}")
    try:
        ch = channel(svc, pki)
        tok = tokens.jwt("billing-svc", alg="ES256")
        md = [("authorization", f"Bearer {tok}")]
        call(pb, ch, rec(pb, 1), token=tok)
        call(pb, ch, rec(pb, 2, "public.news"), token=tok)
        details = refused(lambda: call(pb, ch, rec(pb, 3, "user.created"), token=tok),
                          grpc.StatusCode.PERMISSION_DENIED)
        assert 'principal "billing-svc"' in details and '"user.created"' in details
        # Batch: per record, in order; the allowed ones are stored.
        batch = stub(pb, ch).IngestBatch(pb.ingest.IngestBatchRequest(records=[
            rec(pb, 10), rec(pb, 11, "user.created"), rec(pb, 12, "order.paid")]),
            metadata=md, timeout=10)
        kinds = [r.WhichOneof("outcome") for r in batch.results]
        assert kinds == ["ack", "error", "ack"]
        assert batch.results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert "records[1].type" in batch.results[1].error.message
        # Stream: the same, one result per record.
        results = list(stub(pb, ch).IngestStream(
            iter([pb.ingest.IngestRequest(record=r) for r in
                  (rec(pb, 20, "user.x"), rec(pb, 21), rec(pb, 22, "admin.y"))]),
            metadata=md, timeout=10))
        assert [r.WhichOneof("outcome") for r in results] == ["error", "ack", "error"]
        # Another principal: only "*" applies.
        other = tokens.jwt("stranger", alg="ES256")
        refused(lambda: call(pb, ch, rec(pb, 30), token=other), grpc.StatusCode.PERMISSION_DENIED)
        call(pb, ch, rec(pb, 31, "public.x"), token=other)
        # The policy file changes: it applies without a restart.
        policy_file(pki, {"billing-svc": ["order.*", "user.>"], "*": ["public.>"]})
        harness.wait_until(lambda: _allowed(pb, ch, tok), timeout=10, interval=0.3,
                           what="the new policy applied")
        assert svc.events("policy")
    finally:
        assert svc.stop() == 0


def _allowed(pb, ch, tok):
    try:
        call(pb, ch, rec(pb, int(time.monotonic() * 1000), "user.created"), token=tok)
        return True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        return False


# ---- the principal, end to end -------------------------------------------------------

def test_principal_reaches_audit_and_cannot_be_forged(pb, pki, tokens, nats_server, ferretdb,
                                                     mongo):
    crt, key = pki.server()
    svc = start_ingest(nats_server, f"--tls-cert={crt}", f"--tls-key={key}",
                       f"--auth-jwt-public-key={tokens.rsa_pub}")
    audit = Downstream("audit", nats_server.url, ferretdb.uri()).start().wait_consuming()
    transform = Downstream("transform", nats_server.url, ferretdb.uri()).start().wait_consuming()
    try:
        ch = channel(svc, pki)
        tok = tokens.jwt("billing-svc")
        forged = [("sluice-principal", "admin"), ("x-sluice-principal", "root")]
        ack = call(pb, ch, rec(pb, 1), token=tok, extra=forged)
        assert headers_at(nats_server, ack.sequence)["Sluice-Principal"] == "billing-svc"
        wait_count(mongo.audit, 1)
        wait_count(mongo.records, 1)
        assert mongo.audit.find_one({"record_id": ack.id})["principal"] == "billing-svc"
        assert mongo.records.find_one({"_id": ack.id})["principal"] == "billing-svc"
    finally:
        for s in (audit, transform, svc):
            assert s.stop() == 0
