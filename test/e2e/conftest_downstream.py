"""Fixtures and helpers for the downstream end-to-end tests (sluice-transform
and sluice-audit): a FerretDB, the two consumers started on demand, pymongo to
read what they stored, grpcio to write through sluice-ingest, nats-py to read
the streams. test_downstream.py imports what it uses from here.

Everything is real: nats-server with JetStream, FerretDB on SQLite, the three
Sluice binaries. Loads are sent with IngestStream so that 20,000 records take
seconds, not minutes."""

import asyncio
import json
import threading
import time

import grpc
import nats
import pymongo
import pytest

import harness

STREAM = "SLUICE"
DLQ = "SLUICE_DLQ"


# ---- servers -----------------------------------------------------------------

@pytest.fixture
def ferretdb():
    db = harness.FerretDB().start()
    yield db
    db.stop()


@pytest.fixture
def mongo(ferretdb):
    """The `sluice` database, read with pymongo."""
    client = pymongo.MongoClient(ferretdb.uri(), serverSelectionTimeoutMS=20000,
                                 connectTimeoutMS=2000, socketTimeoutMS=20000)
    yield client.sluice
    client.close()


class Downstream(harness.Service):
    """sluice-transform or sluice-audit, debug-logging, on the test's servers.
    The short fetch wait keeps tests quick; the ack wait is short so that
    what a killed process held comes back within seconds."""

    def __init__(self, name, nats_url, mongo_uri, *extra, ack_wait="3s", env=None,
                 metrics_port=None):
        self.metrics_port = metrics_port or harness.free_port()
        args = [f"--metrics-listen=127.0.0.1:{self.metrics_port}", "--log-level=debug",
                "--fetch-wait=100ms", f"--ack-wait={ack_wait}"]
        # None leaves the URL or URI to extra flags or to env.
        if nats_url is not None:
            args.append(f"--nats-url={nats_url}")
        if mongo_uri is not None:
            args.append(f"--mongodb-uri={mongo_uri}")
        super().__init__(name, args + list(extra), env_extra=env)

    def final_stats(self):
        """The counters of the "stopped" line written on a clean exit."""
        ev = self.events("stopped")
        assert ev, f"{self.name} wrote no final stats\n{self.log()[-3000:]}"
        return ev[-1]

    def wait_consuming(self, timeout=20):
        harness.wait_until(lambda: self.events("MongoDB reachable") and self.events("consuming "),
                           timeout=timeout, what=f"{self.name} consuming")
        return self


@pytest.fixture
def downstream(nats_server, ferretdb, tmp_path):
    """start(name, *flags, rules=None) -> a running Downstream; every process
    still running at the end must stop on SIGTERM with exit status 0."""
    started = []

    def start(name, *extra, rules=None, wait=True, **kw):
        if rules is not None:
            path = tmp_path / f"rules-{len(started)}.json"
            path.write_text(rules if isinstance(rules, str) else json.dumps(rules))
            extra = extra + (f"--transform-rules={path}",)
        svc = Downstream(name, nats_server.url, ferretdb.uri(), *extra, **kw).start()
        started.append(svc)
        if wait:
            svc.wait_consuming()
        return svc

    yield start
    failures = []
    for svc in started:
        if svc.running():
            code = svc.stop()
            if code != 0:
                failures.append(f"{svc.name} exited with {code}\n{svc.log()[-3000:]}")
    assert not failures, "\n".join(failures)


# ---- writing through ingest ----------------------------------------------------

def ingest_stub(pb, ingest):
    channel = grpc.insecure_channel(ingest.target)
    grpc.channel_ready_future(channel).result(timeout=10)
    return pb.ingest_grpc.IngestServiceStub(channel), channel


def send(pb, ingest, records, timeout=120):
    """Writes records with IngestStream; returns the acks (IngestResponse),
    in order. Every record must be acknowledged."""
    stub, channel = ingest_stub(pb, ingest)
    try:
        reqs = (pb.ingest.IngestRequest(record=r) for r in records)
        results = list(stub.IngestStream(reqs, timeout=timeout))
    finally:
        channel.close()
    assert len(results) == len(records)
    bad = [r for r in results if r.WhichOneof("outcome") != "ack"]
    assert not bad, f"{len(bad)} records not acknowledged, first: {bad[0]}"
    return [r.ack for r in results]


class Loader(threading.Thread):
    """send() in a thread, so that a test can act while records flow; a
    failure of the load is raised by check() and acks(), not lost."""

    def __init__(self, pb, ingest, records, timeout=300):
        super().__init__(daemon=True)
        self.args = (pb, ingest, records, timeout)
        self.error = None
        self.result = []

    def run(self):
        try:
            self.result = send(*self.args)
        except BaseException as e:  # noqa: B902 - handed to the test thread
            self.error = e

    def check(self):
        """True (for use in wait_until predicates); raises the load's error."""
        if self.error is not None:
            raise AssertionError(f"the load failed: {self.error!r}") from self.error
        return True

    def acks(self, timeout=300):
        self.join(timeout)
        assert not self.is_alive(), "the load did not finish"
        self.check()
        return self.result


def order(pb, i, prefix="r", **kw):
    """A small order.created record with a predictable id and payload."""
    kw.setdefault("type", "order.created")
    payload = kw.pop("payload", None)
    if payload is None:
        payload = json.dumps({"n": i, "items": [{"price": i % 7, "qty": 2}]}).encode()
    return pb.ingest.Record(id=f"{prefix}-{i:06d}", payload=payload, **kw)


# ---- reading the store and the streams -----------------------------------------

def count(coll):
    return coll.count_documents({})


def wait_count(coll, n, timeout=60, what=None):
    """Waits until coll holds exactly n documents; fails fast on more."""
    def at_n():
        c = count(coll)
        assert c <= n, f"{coll.name} holds {c} documents, more than {n}"
        return c == n
    harness.wait_until(at_n, timeout=timeout, interval=0.25,
                       what=what or f"{coll.name} holds {n} documents")


def stays(coll, n, seconds=2.0):
    """coll still holds exactly n documents after a while (nothing late)."""
    time.sleep(seconds)
    assert count(coll) == n


def ids(coll, field="_id"):
    return {d[field] for d in coll.find({}, {field: 1})}


def run_async(coro):
    return asyncio.run(coro)


def stream_msgs(url, stream=STREAM):
    """Every message a stream holds, in order (nats-py RawStreamMsg)."""
    return run_async(harness.stream_messages(url, stream))


async def _stream_msg(url, stream, seq):
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().get_msg(stream, seq)
    finally:
        await nc.close()


def stream_msg(url, seq, stream=STREAM):
    return run_async(_stream_msg(url, stream, seq))


async def _consumer_info(url, name, stream):
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumer_info(stream, name)
    finally:
        await nc.close()


def consumer_info(url, name, stream=STREAM):
    return run_async(_consumer_info(url, name, stream))


def consumer_done(url, name, stream=STREAM):
    """True when the consumer has nothing pending and nothing unacknowledged."""
    ci = consumer_info(url, name, stream)
    return ci.num_pending == 0 and ci.num_ack_pending == 0


async def _stream_exists(url, stream):
    nc = await nats.connect(url)
    try:
        await nc.jetstream().stream_info(stream)
        return True
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


def stream_exists(url, stream):
    return run_async(_stream_exists(url, stream))


def as_ms(dt):
    """A naive-UTC datetime from pymongo as milliseconds since the epoch."""
    import calendar
    return calendar.timegm(dt.timetuple()) * 1000 + dt.microsecond // 1000


def rfc3339_ms(text):
    """Sluice-Received-At ("2026-01-01T00:00:00.123456789Z") in milliseconds."""
    import calendar
    base, frac = text.rstrip("Z").split(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1000 + int(frac[:3])

