"""The client examples in examples/clients/ (Python, Go, Node.js) against a live
sluice-ingest and nats-server: each run.sh ingests N records under its own
idempotency keys, re-sends the first one and gets duplicate=true, and retries
through a NATS outage without storing anything twice. What the clients print
is checked against what the stream really holds, read back with nats-py.

Then with security on, certificates and tokens made at test time (pki.py):
TLS with a JWT per call, mTLS with a client certificate, TLS with the
system's roots; UNAUTHENTICATED and PERMISSION_DENIED are final; a token is
never sent without TLS."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest

import harness
from pki import Pki, Tokens

CLIENTS = harness.ROOT / "examples" / "clients"
LANGS = ["python", "go", "node"]
STREAM = "SLUICE"
LINE = re.compile(r"^id=(\S+) stream=(\S+) sequence=(\d+) duplicate=(true|false)$")


def client_env(addr=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["PYTHON"] = sys.executable  # the Python client runs in this interpreter's venv
    if addr:
        env["SLUICE_ADDR"] = addr
    env.update(extra)
    return env


def run_sh(lang):
    return str(CLIENTS / lang / "run.sh")


@pytest.fixture(scope="session")
def clients():
    """Prepares every example once per session (Python stubs, npm ci, buf
    generate + go build): each run.sh with --count 0 prepares and sends
    nothing. The first time on a machine this takes a while; later runs find
    everything in place."""
    for lang in LANGS:
        started = time.monotonic()
        r = subprocess.run(["bash", run_sh(lang), "--count", "0", "--addr", "127.0.0.1:1"],
                           env=client_env(), capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"preparing the {lang} client failed:\n{r.stdout}\n{r.stderr}"
        print(f"{lang} client prepared in {time.monotonic() - started:.1f}s")
    return LANGS


def parse(stdout):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    parsed = []
    for ln in lines:
        m = LINE.match(ln)
        assert m, f"unexpected output line: {ln!r}"
        parsed.append((m[1], m[2], int(m[3]), m[4] == "true"))
    return parsed


def check_output(stdout, prefix, n):
    """n lines with ids <prefix>-1..n, fresh and in increasing sequence order,
    then the first id again with duplicate=true and its original sequence."""
    got = parse(stdout)
    assert len(got) == n + 1, stdout
    first = got[:n]
    assert [g[0] for g in first] == [f"{prefix}-{i}" for i in range(1, n + 1)]
    assert all(stream == STREAM and not dup for _, stream, _, dup in first), stdout
    seqs = [g[2] for g in first]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), seqs
    assert got[n] == (f"{prefix}-1", STREAM, seqs[0], True), stdout
    return seqs


@pytest.mark.parametrize("lang", LANGS)
def test_client_ingests_with_idempotency_keys(lang, clients, ingest, nats_server, run):
    prefix = f"{lang}-{uuid.uuid4().hex[:8]}"
    n = 4
    r = subprocess.run(["bash", run_sh(lang), "--count", str(n), "--prefix", prefix],
                       env=client_env(ingest.target), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{ingest.log()[-3000:]}"
    seqs = check_output(r.stdout, prefix, n)
    assert seqs == list(range(1, n + 1))  # a fresh stream
    assert run(harness.stream_ids(nats_server.url)) == [f"{prefix}-{i}" for i in range(1, n + 1)]

    # The whole program again: every id is already stored, nothing is added.
    again = subprocess.run(["bash", run_sh(lang), "--count", str(n), "--prefix", prefix],
                           env=client_env(ingest.target), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert [g[2:] for g in parse(again.stdout)] == [(s, True) for s in seqs + seqs[:1]]
    assert len(run(harness.stream_ids(nats_server.url))) == n


@pytest.mark.parametrize("lang", LANGS)
def test_client_gives_up_on_invalid_argument(lang, clients, ingest, nats_server):
    """INVALID_ARGUMENT is final: no retry, exit non-zero."""
    r = subprocess.run(["bash", run_sh(lang), "--count", "1", "--type", "Not A Type"],
                       env=client_env(ingest.target), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and r.stdout == ""
    assert "retry" not in r.stderr and "record.type" in r.stderr, r.stderr


def follow(stream, needle):
    """Collects a pipe's lines on a thread; the event is set once a line holds
    needle (or the pipe ends)."""
    lines, seen = [], threading.Event()

    def pump():
        for line in stream:
            lines.append(line)
            if needle in line:
                seen.set()
        seen.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return lines, seen, t


@pytest.mark.parametrize("lang", LANGS)
def test_client_retries_through_nats_outage(lang, clients, ingest, nats_server, run):
    """Started while nats-server is down, the client gets UNAVAILABLE and
    retries with the same ids; nats-server comes back once the client has
    reported its first retry, and every record is stored exactly once."""
    nats_server.stop()
    harness.wait_until(lambda: "disconnected from NATS" in ingest.log(),
                       what="ingest noticed that NATS is gone")
    prefix = f"{lang}-retry-{uuid.uuid4().hex[:8]}"
    n = 3
    client = subprocess.Popen(["bash", run_sh(lang), "--count", str(n), "--prefix", prefix],
                              env=client_env(ingest.target), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines, retried, pump = follow(client.stderr, f"retry id={prefix}-1 attempt=1 code=")
    try:
        assert retried.wait(60), "the client never reported a retry"
        assert client.poll() is None, "the client should still be retrying"
        nats_server.start()
        out, _ = client.communicate(timeout=60)
        pump.join(10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    err = "".join(lines)
    assert client.returncode == 0, f"{out}\n{err}\n{ingest.log()[-3000:]}"
    assert f"retry id={prefix}-1 attempt=1 code=" in err, err
    assert "unavailable" in err.lower(), err
    check_output(out, prefix, n)
    assert run(harness.stream_ids(nats_server.url)) == [f"{prefix}-{i}" for i in range(1, n + 1)]


# ---- security: TLS, mTLS, tokens, policy ------------------------------------------------

ISS, AUD = "https://idp.test", "sluice"
PRINCIPAL = "example-client"  # the sub of the clients' JWTs
CLIENT_URI = "spiffe://sluice.test/example-client"  # the URI SAN of their certificate


@pytest.fixture(scope="module")
def pki():
    return Pki()


@pytest.fixture(scope="module")
def tokens(pki):
    return Tokens(pki)


@pytest.fixture
def tls_jwt_ingest(nats_server, pki, tokens):
    """sluice-ingest with TLS, ES256 JWTs (issuer and audience checked) and a
    policy letting the clients' principal write order.* only."""
    crt, key = pki.server()
    policy = pki._write("clients-policy.json", json.dumps({PRINCIPAL: ["order.*"]}).encode())
    svc = harness.Ingest(nats_server.url, f"--tls-cert={crt}", f"--tls-key={key}",
                         f"--auth-jwt-public-key={tokens.ec_pub}", f"--auth-jwt-issuer={ISS}",
                         f"--auth-jwt-audience={AUD}", f"--auth-policy={policy}").start()
    yield svc
    assert svc.stop() == 0, svc.log()[-3000:]


@pytest.fixture
def mtls_ingest(nats_server, pki):
    """sluice-ingest requiring client certificates signed by the test CA."""
    crt, key = pki.server()
    svc = harness.Ingest(nats_server.url, f"--tls-cert={crt}", f"--tls-key={key}",
                         f"--tls-client-ca={pki.ca}").start()
    yield svc
    assert svc.stop() == 0, svc.log()[-3000:]


def token(tokens, sub=PRINCIPAL, **claims):
    return tokens.jwt(sub, alg="ES256", iss=ISS, aud=AUD, **claims)


def client(lang, env, *args):
    return subprocess.run(["bash", run_sh(lang)] + list(args), env=env, capture_output=True,
                          text=True, timeout=120)


async def _stored(url):
    """The stream's messages; [] when it holds none."""
    import nats
    nc = await nats.connect(url)
    try:
        empty = (await nc.jetstream().stream_info(STREAM)).state.messages == 0
    finally:
        await nc.close()
    return [] if empty else await harness.stream_messages(url)


def stored_ids(run, nats_server):
    return [m.headers["Nats-Msg-Id"] for m in run(_stored(nats_server.url))]


def principals(run, nats_server):
    return [m.headers.get("Sluice-Principal") for m in run(_stored(nats_server.url))]


def assert_final(r, code, *needles):
    """The client gave up at once: exit 1, nothing on stdout, no retry, the
    code and why on stderr."""
    assert r.returncode == 1 and r.stdout == "", f"{r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "retry" not in r.stderr, r.stderr
    assert f"giving up: {code}: " in r.stderr and "not retried" in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


@pytest.mark.parametrize("lang", LANGS)
def test_client_tls_and_jwt(lang, clients, pki, tokens, tls_jwt_ingest, nats_server, run):
    """SLUICE_CA and SLUICE_TOKEN from the environment: every record stored
    once, under the token's subject."""
    prefix = f"{lang}-jwt-{uuid.uuid4().hex[:8]}"
    env = client_env(f"localhost:{tls_jwt_ingest.port}", SLUICE_CA=pki.ca,
                     SLUICE_TOKEN=token(tokens))
    r = client(lang, env, "--count", "3", "--prefix", prefix)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{tls_jwt_ingest.log()[-3000:]}"
    check_output(r.stdout, prefix, 3)
    assert run(harness.stream_ids(nats_server.url)) == [f"{prefix}-{i}" for i in range(1, 4)]
    assert principals(run, nats_server) == [PRINCIPAL] * 3


@pytest.mark.parametrize("lang", LANGS)
def test_client_unauthenticated_is_final(lang, clients, pki, tokens, tls_jwt_ingest, nats_server,
                                         run):
    """Without a token, or with an expired one: UNAUTHENTICATED, no retry."""
    env = client_env(f"localhost:{tls_jwt_ingest.port}", SLUICE_CA=pki.ca)
    assert_final(client(lang, env, "--count", "1"), "UNAUTHENTICATED", "missing credentials")
    env["SLUICE_TOKEN"] = token(tokens, ttl=-3600)
    assert_final(client(lang, env, "--count", "1"), "UNAUTHENTICATED", "expired")
    assert env["SLUICE_TOKEN"] not in client(lang, env, "--count", "1").stderr
    assert stored_ids(run, nats_server) == []


@pytest.mark.parametrize("lang", LANGS)
def test_client_permission_denied_is_final(lang, clients, pki, tokens, tls_jwt_ingest,
                                           nats_server, run):
    """A type the policy does not give the principal: PERMISSION_DENIED, no retry."""
    env = client_env(f"localhost:{tls_jwt_ingest.port}", SLUICE_CA=pki.ca,
                     SLUICE_TOKEN=token(tokens))
    assert_final(client(lang, env, "--count", "2", "--type", "user.created"), "PERMISSION_DENIED",
                 f'principal "{PRINCIPAL}"', '"user.created"')
    assert stored_ids(run, nats_server) == []


@pytest.mark.parametrize("lang", LANGS)
def test_client_mtls(lang, clients, pki, mtls_ingest, nats_server, run):
    """--ca, --cert and --key as flags: the certificate's URI SAN is the
    principal. Without a certificate the TLS handshake itself fails, which
    gRPC reports as UNAVAILABLE (retried, like any connection failure)."""
    crt, key = pki.issue(f"client-{lang}", "example-client-cn", uris=[CLIENT_URI])
    prefix = f"{lang}-mtls-{uuid.uuid4().hex[:8]}"
    env = client_env(f"localhost:{mtls_ingest.port}")
    r = client(lang, env, "--count", "2", "--prefix", prefix, "--ca", pki.ca, "--cert", crt,
               "--key", key)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{mtls_ingest.log()[-3000:]}"
    check_output(r.stdout, prefix, 2)
    assert principals(run, nats_server) == [CLIENT_URI] * 2

    pause = "50ms" if lang == "go" else "0.05"
    r = client(lang, env, "--count", "1", "--ca", pki.ca, "--attempts", "2", "--backoff", pause)
    assert r.returncode == 1 and "giving up: UNAVAILABLE" in r.stderr, r.stderr
    assert len(stored_ids(run, nats_server)) == 2


@pytest.mark.parametrize("lang", LANGS)
def test_client_tls_with_system_roots(lang, clients, pki, tokens, tls_jwt_ingest, nats_server,
                                      run):
    """--tls without a CA file verifies the server with the runtime's default
    roots; here the test CA is made one of them the standard way of each
    runtime (SSL_CERT_FILE for Go and Python, NODE_EXTRA_CA_CERTS for Node),
    and gRPC's own override of them (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) is unset."""
    prefix = f"{lang}-roots-{uuid.uuid4().hex[:8]}"
    env = client_env(f"localhost:{tls_jwt_ingest.port}", SSL_CERT_FILE=pki.ca,
                     NODE_EXTRA_CA_CERTS=pki.ca, SLUICE_TOKEN=token(tokens))
    for var in ("SSL_CERT_DIR", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
        env.pop(var, None)
    r = client(lang, env, "--tls", "--count", "1", "--prefix", prefix)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    check_output(r.stdout, prefix, 1)
    assert principals(run, nats_server) == [PRINCIPAL]


@pytest.mark.parametrize("lang", LANGS)
def test_client_sends_no_token_without_tls(lang, clients):
    """A token with a plaintext address: refused before anything is sent."""
    r = client(lang, client_env("127.0.0.1:1", SLUICE_TOKEN="k-secret-0123456789"),
               "--count", "1")
    assert r.returncode == 2 and "only over TLS" in r.stderr, r.stderr
    assert "k-secret" not in r.stderr
