"""What a newcomer does first, end to end: `make up` (scripts/run-local.sh)
brings nats-server, FerretDB and the three services up; `make demo`
(scripts/demo.sh) sends records with grpcurl through reflection and finds
them in `records` and `audit`; grpc-health-probe says SERVING; every
/readyz answers; SIGTERM stops the whole stack. Once open (the default), once
with the shipped least-privilege NATS users (SLUICE_NATS_AUTH=1). Run on
free loopback ports and a temporary directory, so it never meets a
developer's own `make up`."""

import json
import os
import signal
import socket
import subprocess

import pytest

import harness


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


@pytest.mark.parametrize("nats_auth", [False, True], ids=["open", "nats-users"])
def test_make_up_then_demo(tmp_path, nats_auth):
    grpc_port, nats_port, mongo_port = (harness.free_port() for _ in range(3))
    metrics = free_block(3)
    env = dict(os.environ, SLUICE_RUN_DIR=str(tmp_path / "run"),
               SLUICE_LISTEN=f"127.0.0.1:{grpc_port}", SLUICE_NATS_PORT=str(nats_port),
               SLUICE_MONGO_PORT=str(mongo_port), SLUICE_METRICS_BASE=str(metrics),
               SLUICE_NATS_AUTH="1" if nats_auth else "0")
    env["SLUICE_BUILD_DIR"] = str(harness.BUILD)
    out = open(tmp_path / "up.log", "w+")
    up = subprocess.Popen(["bash", str(harness.ROOT / "scripts" / "run-local.sh")], env=env,
                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        harness.wait_until(lambda: "Sluice is up." in (tmp_path / "up.log").read_text(),
                           timeout=120, what="make up")
        for port in (metrics, metrics + 1, metrics + 2):
            harness.wait_until(lambda: harness.http_get(port, "/readyz")[0] == 200, timeout=60,
                               what=f"readyz on {port}")
        probe = subprocess.run([str(harness.ROOT / ".tools" / "bin" / "grpc-health-probe"),
                                f"-addr=127.0.0.1:{grpc_port}"],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0 and "status: SERVING" in probe.stdout + probe.stderr, probe.stderr

        demo = subprocess.run(["bash", str(harness.ROOT / "scripts" / "demo.sh")],
                              env=dict(env, SLUICE_ADDR=f"127.0.0.1:{grpc_port}",
                                       MONGODB_URI=f"mongodb://127.0.0.1:{mongo_port}/sluice"),
                              capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "sluice.v1.IngestService" in demo.stdout
        assert "records (3):" in demo.stdout and "audit (3):" in demo.stdout, demo.stdout
        assert '"duplicate":true' in demo.stdout  # the repeated id
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
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
        code = up.wait(timeout=60)
    log = (tmp_path / "up.log").read_text()
    assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), log
    assert "stopped;" in log and "a process exited" not in log, log
    # Nothing of the stack is left running.
    left = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def nats_access(log):
    """The service's start line on how it connects to NATS."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg", "").startswith("NATS: "):
            return json.loads(line)["msg"]
    return ""
