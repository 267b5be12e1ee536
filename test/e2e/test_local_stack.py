"""What a newcomer does first, end to end: `make up` (scripts/run-local.sh)
brings nats-server, FerretDB and the three services up; `make demo`
(scripts/demo.sh) sends records with grpcurl through reflection and finds
them in `records` and `audit`; grpc-health-probe says SERVING; every
/readyz answers; SIGTERM stops the whole stack. Once open (the default), once
with the shipped least-privilege NATS users (SLUICE_NATS_AUTH=1). Run on
free loopback ports and a temporary directory, so it never meets a
developer's own `make up`.

The same in secure mode (SLUICE_SECURE=1, and mtls): credentials made by
scripts/local-credentials.sh with openssl, sluice-ingest on TLS with JWTs,
API keys and a policy; the demo, grpcurl, grpc-health-probe and a client
example call it with them."""

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys

import jwt
import pytest

import harness

TOOLS = harness.ROOT / ".tools" / "bin"


def free_block(n):
    """n consecutive free ports (the metrics ports are base, base+1, base+2)."""
    for _ in range(50):
        base = harness.free_port()
        if base + n < 65536 and all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no block of free ports")


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@contextlib.contextmanager
def stack(tmp_path, **extra):
    """scripts/run-local.sh on free ports with its run directory in tmp_path,
    until "Sluice is up" and every /readyz answers; yields (env, grpc port,
    mongo port, metrics base). On leaving: SIGTERM, a clean stop, nothing left."""
    grpc_port, nats_port, mongo_port = (harness.free_port() for _ in range(3))
    metrics = free_block(3)
    env = dict(os.environ, SLUICE_RUN_DIR=str(tmp_path / "run"),
               SLUICE_LISTEN=f"127.0.0.1:{grpc_port}", SLUICE_NATS_PORT=str(nats_port),
               SLUICE_MONGO_PORT=str(mongo_port), SLUICE_METRICS_BASE=str(metrics), **extra)
    env["SLUICE_BUILD_DIR"] = str(harness.BUILD)
    log_path = tmp_path / "up.log"
    out = open(log_path, "w+")
    up = subprocess.Popen(["bash", str(harness.ROOT / "scripts" / "run-local.sh")], env=env,
                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        harness.wait_until(lambda: "Sluice is up" in log_path.read_text(), timeout=120,
                           what="make up")
        for port in (metrics, metrics + 1, metrics + 2):
            harness.wait_until(lambda: harness.http_get(port, "/readyz")[0] == 200, timeout=60,
                               what=f"readyz on {port}")
        yield env, grpc_port, mongo_port, metrics
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
        code = up.wait(timeout=60)
    log = log_path.read_text()
    assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), log
    assert "stopped;" in log and "a process exited" not in log, log
    # Nothing of the stack is left running.
    left = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def demo(env, mongo_port, **extra):
    return subprocess.run(["bash", str(harness.ROOT / "scripts" / "demo.sh")],
                          env=dict(env, MONGODB_URI=f"mongodb://127.0.0.1:{mongo_port}/sluice",
                                   **extra),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("nats_auth", [False, True], ids=["open", "nats-users"])
def test_make_up_then_demo(tmp_path, nats_auth):
    with stack(tmp_path, SLUICE_NATS_AUTH="1" if nats_auth else "0") as \
            (env, grpc_port, mongo_port, metrics):
        probe = subprocess.run([str(TOOLS / "grpc-health-probe"), f"-addr=127.0.0.1:{grpc_port}"],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0 and "status: SERVING" in probe.stdout + probe.stderr, probe.stderr

        d = demo(env, mongo_port, SLUICE_ADDR=f"127.0.0.1:{grpc_port}")
        assert d.returncode == 0, d.stdout + d.stderr
        assert "sluice.v1.IngestService" in d.stdout
        assert "records (3):" in d.stdout and "audit (3):" in d.stdout, d.stdout
        assert '"duplicate":true' in d.stdout  # the repeated id
        assert "refused" not in d.stdout and "audit.principal" not in d.stdout, d.stdout
        text = harness.http_get(metrics + 1, "/metrics")[1]
        assert harness.metric(text, "sluice_consumer_messages_total", outcome="stored") >= 3
        for name in ("sluice-ingest", "sluice-transform", "sluice-audit"):
            access = nats_access(tmp_path / "run" / "logs" / f"{name}.log")
            assert ("NKey U" in access) == nats_auth, (name, access)
        if nats_auth:
            keys = tmp_path / "run" / "nats-keys"
            assert {p.name for p in keys.iterdir()} == {
                "ingest.nk", "transform.nk", "audit.nk", "admin.nk"}
            assert all(p.stat().st_mode & 0o077 == 0 for p in keys.iterdir())
    assert (tmp_path / "run" / "mode").read_text().strip() == "plain"


def nats_access(log):
    """The service's start line on how it connects to NATS."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg", "").startswith("NATS: "):
            return json.loads(line)["msg"]
    return ""


@pytest.mark.parametrize("secure", ["1", "mtls"])
def test_make_up_secure_then_demo(tmp_path, secure):
    """SLUICE_SECURE=1: TLS, a JWT, an API key and a policy; mtls: client
    certificates required as well. Plaintext is refused; the health probe,
    grpcurl, the demo (which finds the mode and the address in the run
    directory) and the Python client example (through client.env) get in."""
    with stack(tmp_path, SLUICE_SECURE=secure) as (env, grpc_port, mongo_port, metrics):
        run = tmp_path / "run"
        creds = run / "secure"
        mode = (run / "mode").read_text().strip()
        assert mode == ("mtls" if secure == "mtls" else "secure")
        ca, token = str(creds / "ca.crt"), (creds / "token").read_text().strip()
        addr = f"127.0.0.1:{grpc_port}"
        cert = ["-tls-client-cert", str(creds / "client.crt"),
                "-tls-client-key", str(creds / "client.key")] if mode == "mtls" else []

        probe = subprocess.run([str(TOOLS / "grpc-health-probe"), f"-addr={addr}", "-tls",
                                f"-tls-ca-cert={ca}"] + cert,
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0 and "status: SERVING" in probe.stdout + probe.stderr, \
            probe.stdout + probe.stderr
        plain = subprocess.run([str(TOOLS / "grpc-health-probe"), f"-addr={addr}",
                                "-connect-timeout=2s"], capture_output=True, text=True, timeout=30)
        assert plain.returncode != 0  # the port speaks TLS only

        grpcurl_cert = ["-cert", str(creds / "client.crt"), "-key", str(creds / "client.key")] \
            if mode == "mtls" else []
        listed = subprocess.run([str(TOOLS / "grpcurl"), "-cacert", ca] + grpcurl_cert +
                                ["-H", f"authorization: Bearer {token}", addr, "list"],
                                capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0 and "sluice.v1.IngestService" in listed.stdout, \
            listed.stderr
        up_log = (tmp_path / "up.log").read_text()
        assert f"-tls-ca-cert={ca}" in up_log and f"-cacert {ca}" in up_log, up_log
        assert token not in up_log  # the token is named by its file, never printed

        d = demo(env, mongo_port)  # no SLUICE_ADDR: the demo reads it from the run directory
        assert d.returncode == 0, d.stdout + d.stderr
        out = d.stdout
        assert "sluice.v1.IngestService" in out and '"duplicate":true' in out, out
        assert "records (3):" in out and "audit (3):" in out, out
        assert 'refused: PermissionDenied: record.type: principal "local-api-client"' in out, out
        assert "-k1 local-api-client" in out and "-o1 local-dev" in out, out
        if mode == "mtls":
            assert "-c1 spiffe://sluice.local/local-client" in out, out
        else:
            assert "refused: Unauthenticated" in out, out
        assert token not in out + d.stderr

        client_env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        for line in (creds / "client.env").read_text().splitlines():
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                client_env[k] = v
        client_env["PYTHON"] = sys.executable
        c = subprocess.run(["bash", str(harness.ROOT / "examples/clients/python/run.sh"),
                            "--count", "1", "--prefix", "stack"], env=client_env,
                           capture_output=True, text=True, timeout=120)
        assert c.returncode == 0 and "id=stack-1 stream=SLUICE" in c.stdout, c.stdout + c.stderr


def test_local_credentials(tmp_path):
    """scripts/local-credentials.sh, with openssl only: a chain that verifies,
    an ES256 JWT that PyJWT accepts, an API key whose hash is in the file,
    private files; a second run keeps the CA and the keys and signs a new
    token."""
    d = tmp_path / "creds"
    script = str(harness.ROOT / "scripts" / "local-credentials.sh")
    subprocess.run(["bash", script, str(d), "127.0.0.1:50999"], check=True, timeout=60)
    for leaf in ("server.crt", "client.crt"):
        v = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / leaf)],
                           capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
    first = (d / "token").read_text().strip()
    claims = jwt.decode(first, (d / "jwt.pub.pem").read_text(), algorithms=["ES256"],
                        audience="sluice", issuer="sluice-local")
    assert claims["sub"] == "local-dev" and claims["exp"] - claims["iat"] == 7 * 24 * 3600
    key = (d / "api-key").read_text().strip()
    assert f"local-api-client {hashlib.sha256(key.encode()).hexdigest()}" in \
        (d / "api-keys.txt").read_text()
    env_file = (d / "client.env").read_text()
    assert "SLUICE_ADDR=127.0.0.1:50999" in env_file and f"SLUICE_TOKEN={first}" in env_file
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in d.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    before = {n: (d / n).read_bytes() for n in ("ca.crt", "ca.key", "server.crt", "jwt.key",
                                                 "api-key")}
    import time
    time.sleep(1.1)  # a new iat
    subprocess.run(["bash", script, str(d)], check=True, timeout=60)
    assert {n: (d / n).read_bytes() for n in before} == before
    second = (d / "token").read_text().strip()
    assert second != first
    jwt.decode(second, (d / "jwt.pub.pem").read_text(), algorithms=["ES256"], audience="sluice",
               issuer="sluice-local")
