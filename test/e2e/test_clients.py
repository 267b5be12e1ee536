"""The client examples in examples/clients/ (Python, Go, Node.js) against a live
sluice-ingest and nats-server: each run.sh ingests N records under its own
idempotency keys, re-sends the first one and gets duplicate=true, and retries
through a NATS outage and at the server's in-flight limit without storing
anything twice, waiting as long as the server's RetryInfo asks. What the
clients print is checked against what the stream really holds, read back with
nats-py.

Then with security on, certificates and tokens made at test time (pki.py):
TLS with a JWT per call, mTLS with a client certificate, TLS with the
system's roots; UNAUTHENTICATED and PERMISSION_DENIED are final; a token is
never sent without TLS."""

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import grpc
import pytest

import harness
from pki import Pki, Tokens

CLIENTS = harness.ROOT / "examples" / "clients"
LANGS = ["python", "go", "node"]
STREAM = "SLUICE"
LINE = re.compile(r"^id=(\S+) stream=(\S+) sequence=(\d+) duplicate=(true|false)$")
RETRY = re.compile(r"^retry id=(\S+) attempt=(\d+) code=([A-Z_]+) wait=(\d+\.\d{3})s"
                   r"(?: \(server asked (\d+\.\d{3})s\))?: ")
# What sluice-ingest's RetryInfo asks for (lib/sl_retry.h), by status code.
IN_FLIGHT_DELAY, UNAVAILABLE_DELAY = 0.250, 1.000
HINT_JITTER = 0.2  # the clients wait the delay plus at most this much of it


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


def log_time(ts):
    """A log line's ts (RFC 3339, UTC, ns) in seconds since the epoch."""
    whole, frac = ts.rstrip("Z").split(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp()
    return seconds + float(f"0.{frac}")


def check_retry_hints(stderr, asked_by_code, svc):
    """Every retry line of a client says what the server asked for
    (asked_by_code: its RetryInfo delay by status code) and waits that long
    plus a little jitter, never less; and the server saw the next attempt of
    that record no sooner (sluice-ingest logs each record it rejects or stores,
    with its time). Returns the parsed lines: (id, attempt, code, wait)."""
    got = []
    for line in stderr.splitlines():
        if not line.startswith("retry "):
            continue
        m = RETRY.match(line)
        assert m, f"unexpected retry line: {line!r}"
        rid, attempt, code, wait = m[1], int(m[2]), m[3], float(m[4])
        asked = float(m[5]) if m[5] else None
        assert code in asked_by_code, line
        assert asked == asked_by_code[code], f"the server's delay is not in {line!r}"
        assert asked <= wait <= asked * (1 + HINT_JITTER) + 0.001, line
        got.append((rid, attempt, code, wait))
    assert got, "no retry line"
    seen = {}  # id -> [(time, code or None when stored)], in the order the server saw them
    for ev in svc.events("record "):
        if ev["msg"] in ("record rejected", "record stored", "record duplicate"):
            seen.setdefault(ev["id"], []).append((log_time(ev["ts"]), ev.get("code")))
    for rid, attempt, code, wait in got:
        attempts = seen.get(rid, [])
        assert len(attempts) > attempt, f"{rid}: the server saw {len(attempts)} attempts"
        (t0, code0), (t1, _) = attempts[attempt - 1], attempts[attempt]
        assert code0 == code, f"{rid} attempt {attempt}: {code} here, {code0} in the server's log"
        # wait is rounded to the ms: allow that much
        assert t1 - t0 >= wait - 0.001, \
            f"{rid}: attempt {attempt + 1} came {t1 - t0:.3f}s after attempt {attempt}, " \
            f"which asked for a wait of {wait}s"
    return got


@pytest.mark.parametrize("lang", LANGS)
def test_client_retries_through_nats_outage(lang, clients, ingest, nats_server, run):
    """Started while nats-server is down, the client gets UNAVAILABLE with a
    RetryInfo of 1 s and retries with the same ids, each time after the
    server's delay (and a little jitter), not its own shorter backoff;
    nats-server comes back once the client has reported its second retry, and
    every record is stored exactly once."""
    nats_server.stop()
    harness.wait_until(lambda: "disconnected from NATS" in ingest.log(),
                       what="ingest noticed that NATS is gone")
    prefix = f"{lang}-retry-{uuid.uuid4().hex[:8]}"
    n = 3
    client = subprocess.Popen(["bash", run_sh(lang), "--count", str(n), "--prefix", prefix],
                              env=client_env(ingest.target), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines, retried, pump = follow(client.stderr, f"retry id={prefix}-1 attempt=2 code=")
    try:
        assert retried.wait(60), "the client never reported a second retry"
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
    assert "unavailable" in err.lower(), err
    got = check_retry_hints(err, {"UNAVAILABLE": UNAVAILABLE_DELAY}, ingest)
    assert [g[:2] for g in got[:2]] == [(f"{prefix}-1", 1), (f"{prefix}-1", 2)], err
    check_output(out, prefix, n)
    assert run(harness.stream_ids(nats_server.url)) == [f"{prefix}-{i}" for i in range(1, n + 1)]


def pause_until_stopped(server):
    """SIGSTOP, and waits until every thread of the process has stopped: the
    kernel stops the others only once the thread it woke has run, and under
    CPU contention they may go on (and answer a publish) meanwhile."""
    server.pause()
    tasks = pathlib.Path(f"/proc/{server.proc.pid}/task")

    def stopped():
        states = []
        for task in tasks.iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:  # a thread that just ended
                continue
            states.append(stat[stat.rindex(")") + 2])
        return bool(states) and all(state == "T" for state in states)

    harness.wait_until(stopped, what=f"{server.name} stopped")


def test_clients_honour_retry_info_at_the_in_flight_limit(clients, pb, nats_server, run):
    """sluice-ingest with --max-in-flight=1, its one slot held by a record
    whose PubAck cannot come yet (nats-server paused): the three clients,
    started together, get RESOURCE_EXHAUSTED with a RetryInfo of 250 ms on
    every call and wait that long (plus a little jitter) between attempts.
    Once each has retried twice nats-server resumes; the three then share the
    one slot, turned away with the same hint whenever another holds it, and
    every record is stored exactly once."""
    svc = harness.Ingest(nats_server.url, "--max-in-flight=1", "--publish-timeout=60s").start()
    channel = grpc.insecure_channel(svc.target)
    procs, follows = {}, {}
    n = 5
    prefixes = {lang: f"{lang}-limit-{uuid.uuid4().hex[:8]}" for lang in LANGS}
    try:
        stub = pb.ingest_grpc.IngestServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)
        pause_until_stopped(nats_server)
        blocker = stub.Ingest.future(pb.ingest.IngestRequest(record=pb.ingest.Record(
            id="limit-blocker", type="order.created", payload=b'{"hold": true}')), timeout=90)
        harness.wait_until(
            lambda: harness.metric(harness.scrape(svc), "sluice_ingest_records_in_flight") == 1,
            what="the one in-flight slot taken")
        for lang in LANGS:
            procs[lang] = subprocess.Popen(
                ["bash", run_sh(lang), "--count", str(n), "--prefix", prefixes[lang],
                 "--attempts", "100"],
                env=client_env(svc.target), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            follows[lang] = follow(procs[lang].stderr,
                                   f"retry id={prefixes[lang]}-1 attempt=2 code=RESOURCE_EXHAUSTED")
        for lang in LANGS:
            assert follows[lang][1].wait(60), \
                f"{lang}: no second retry\n{''.join(follows[lang][0])}"
            assert procs[lang].poll() is None, f"{lang} should still be retrying"
        assert not blocker.done(), "the record holding the slot was answered during the pause"
        nats_server.resume()
        assert blocker.result(timeout=60).sequence == 1
        outs = {lang: procs[lang].communicate(timeout=120)[0] for lang in LANGS}
    finally:
        if nats_server.paused:
            nats_server.resume()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        channel.close()
        code = svc.stop()
    assert code == 0, svc.log()[-3000:]
    for lang in LANGS:
        lines, _, pump = follows[lang]
        pump.join(10)
        err = "".join(lines)
        assert procs[lang].returncode == 0, f"{lang}\n{outs[lang]}\n{err}"
        got = check_retry_hints(err, {"RESOURCE_EXHAUSTED": IN_FLIGHT_DELAY}, svc)
        first = [g[1] for g in got if g[0] == f"{prefixes[lang]}-1"]
        assert first[:2] == [1, 2], err
        assert "too many records in flight" in err, err
        check_output(outs[lang], prefixes[lang], n)
    stored = Counter(run(harness.stream_ids(nats_server.url)))
    want = {"limit-blocker"} | {f"{prefixes[lang]}-{i}" for lang in LANGS
                                for i in range(1, n + 1)}
    assert set(stored) == want and set(stored.values()) == {1}, stored


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
    # No RetryInfo (the handshake failed, no server status): the client's own
    # backoff, 50-100 % of --backoff.
    assert re.search(r"^retry id=\S+ attempt=1 code=UNAVAILABLE wait=0\.0[2-5]\ds: ",
                     r.stderr, re.M) and "server asked" not in r.stderr, r.stderr
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
