"""The client examples in examples/clients/ (Python, Go, Node.js) against a live
sluice-ingest and nats-server: each run.sh ingests N records under its own
idempotency keys, re-sends the first one and gets duplicate=true, and retries
through a NATS outage without storing anything twice. What the clients print
is checked against what the stream really holds, read back with nats-py."""

import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest

import harness

CLIENTS = harness.ROOT / "examples" / "clients"
LANGS = ["python", "go", "node"]
STREAM = "SLUICE"
LINE = re.compile(r"^id=(\S+) stream=(\S+) sequence=(\d+) duplicate=(true|false)$")


def client_env(addr=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["PYTHON"] = sys.executable  # the Python client runs in this interpreter's venv
    if addr:
        env["SLUICE_ADDR"] = addr
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
