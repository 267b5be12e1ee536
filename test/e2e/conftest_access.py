"""Helpers for the access tests (credentials and TLS towards NATS and
MongoDB): the whole pipeline run with given settings, natscli with a given
identity, and the one-line start errors. test_nats_access.py,
test_nats_tls.py and test_mongo_access.py import what they use from here.

Everything is real: nats-server configured with users, accounts or TLS,
FerretDB with a TLS listener or authentication, the three Sluice binaries,
natscli as an independent client, certificates and NKeys made at test
time."""

import json
import os
import pathlib
import subprocess

import harness
from conftest_downstream import Downstream, order, send, wait_count

ROOT = harness.ROOT
SERVICES = ("ingest", "transform", "audit")


class Pipeline:
    """sluice-ingest, sluice-transform and sluice-audit with per-service
    flags and environment: args[name] and env[name]. nats_url and mongo_uri
    are passed as flags unless None (then args or env carry them)."""

    def __init__(self, nats_url, mongo_uri, args=None, env=None, rules=None, tmp=None):
        args, env = args or {}, env or {}
        extra = list(args.get("transform", ()))
        if rules is not None:
            path = pathlib.Path(tmp) / "rules.json"
            path.write_text(json.dumps(rules))
            extra.append(f"--transform-rules={path}")
        self.ingest = harness.Ingest(nats_url, *args.get("ingest", ()), env=env.get("ingest"))
        self.transform = Downstream("transform", nats_url, mongo_uri, *extra,
                                    env=env.get("transform"))
        self.audit = Downstream("audit", nats_url, mongo_uri, *args.get("audit", ()),
                                env=env.get("audit"))
        self.all = (self.ingest, self.transform, self.audit)

    def start(self):
        try:
            self.ingest.start()
            for svc in (self.transform, self.audit):
                svc.start()
                svc.wait_consuming()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops every running service; returns {name: exit status}."""
        return {svc.name: svc.stop() for svc in self.all if svc.proc is not None}

    def logs(self):
        return "\n".join(svc.log() for svc in self.all)


def carries_records(pb, pipeline, mongo, n=30, prefix="acc"):
    """Sends n records through ingest; both collections must get them all."""
    recs = [order(pb, i, prefix=prefix) for i in range(n)]
    send(pb, pipeline.ingest, recs)
    wait_count(mongo.records, n, timeout=30)
    wait_count(mongo.audit, n, timeout=30)
    return recs


def stops_cleanly(pipeline):
    codes = pipeline.stop()
    assert all(c == 0 for c in codes.values()), (codes, pipeline.logs()[-4000:])


def start_error(name, *args, env=None):
    """Runs a service that must refuse to start: returns its stderr, after
    checking exit status 2 and a single line. libmongoc's shared-memory
    counters are off (MONGOC_DISABLE_SHM): libmongoc sets them up when it is
    loaded, before any Sluice code runs, and says on stderr when a stale
    /dev/shm/mongoc-<pid> of an earlier process with the same pid is in the
    way, which has nothing to do with the line under test."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("SLUICE_") and k not in harness.SERVICE_ENV}
    e["MONGOC_DISABLE_SHM"] = "1"
    e.update(env or {})
    r = subprocess.run([harness.service_binary(name), "--metrics-listen="] + list(args),
                       capture_output=True, text=True, env=e, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"sluice-{name}: "), lines
    return lines[0]


def cli(server, *args, key=None, creds=None, env=None):
    """natscli against server, as the user of an NKey seed or .creds file."""
    ident = []
    if key is not None:
        ident = [f"--nkey={key}"]
    if creds is not None:
        ident = [f"--creds={creds}"]
    return harness.nats_cli(f"--server={server.url}", "--timeout=2s", *ident, *args, env=env)


def stream_messages(server, key, stream="SLUICE"):
    """How many messages stream holds, asked as the user of key."""
    r = cli(server, "stream", "info", stream, "--json", key=key)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["state"]["messages"]
