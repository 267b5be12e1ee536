"""Writers: client threads that ingest records the way a careful client does,
and write down what happened to every id.

Each writer owns one gRPC channel to one sluice-ingest and uses one RPC
shape (Ingest, IngestBatch or IngestStream). Every record has a unique id
(the writer's prefix and a counter). A record answered UNAVAILABLE,
DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED, or left without a result by a
broken call or stream, is sent again with the SAME id until it is
acknowledged or it has been retried for give_up_s seconds; a retry inside
the stream's duplicate window is stored once (DESIGN: "Retrying with the same
id inside the window is safe"), so give_up_s must stay below that window.

A writer paces itself at `rate` new records per second, in bursts of
`burst` records (a stream's window, a batch), so that a run lasts as long
as its faults do without piling up records a 2-core machine cannot drain,
while a burst keeps many records in flight at once; retries do not count
against the pace. Once told to stop it takes no new records but keeps
retrying those it holds: a writer ends only when every record it attempted
was acknowledged, given up, or refused for good.

Threads: each writer's ledger is written by its own thread only; the test
thread reads the counters (len() of a dict is atomic in CPython) to wait for
progress, and reads everything after join()."""

import collections
import json
import queue
import random
import threading
import time

import grpc

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED)
RETRYABLE_CODES = {c.value[0] for c in RETRYABLE}  # as google.rpc.Status.code
CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
CHANNEL_OPTIONS = [
    # A killed ingest comes back within seconds: reconnect quickly rather
    # than after grpc's default back-off (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class Ledger:
    """What one writer knows about its records.

    acked: id -> (sequence, duplicate) of the acknowledgement;
    attempted: every id sent at least once, in order;
    retries: sends of an id after its first;
    gave_up: ids still unacknowledged after give_up_s of retrying;
    refused: id -> (code, message) for answers that are not retryable (a
    valid record should never get one);
    anomalies: answers that break the API's promises (a result for another
    id, a result count that is not the request count);
    codes: how many times each retryable status was answered;
    broken_calls: calls or streams that ended with records left unanswered."""

    def __init__(self):
        self.acked = {}
        self.attempted = []
        self.retries = 0
        self.gave_up = set()
        self.refused = {}
        self.anomalies = []
        self.codes = collections.Counter()
        self.broken_calls = 0


class Writer(threading.Thread):
    """The common part: ids, payloads, pace, retry bookkeeping. Subclasses
    implement work() with one RPC shape."""

    shape = None  # the RPC shape, also the records' type: fault.<shape>
    burst = 1     # records the pace lets go at once

    def __init__(self, pb, target, name, stop, abort, rate, give_up_s=100.0, max_records=100000):
        super().__init__(name=name, daemon=True)
        self.pb = pb
        self.target = target
        self.stop_event = stop    # no new records after it is set
        self.abort_event = abort  # give up at once (a failing test tearing down)
        self.rate = rate
        self.give_up_s = give_up_s
        self.max_records = max_records
        self.ledger = Ledger()
        self.first_try = {}       # id -> monotonic time of its first send
        self.error = None
        self.issued = 0
        self.in_flight = 0        # records sent and not answered yet
        self.started_at = None
        self.rng = random.Random(name)

    # ---- records ----------------------------------------------------------

    def next_record(self):
        """A new record if the pace allows one now, else None."""
        if self.stop_event.is_set() or self.issued >= self.max_records:
            return None
        if self.issued >= self.allowed():
            return None
        n = self.issued
        self.issued += 1
        rid = f"{self.name}-{n:07d}"
        payload = json.dumps({"writer": self.name, "n": n, "shape": self.shape,
                              "items": [{"price": n % 13, "qty": 1 + n % 3}]}).encode()
        rec = self.pb.ingest.Record(id=rid, type=f"fault.{self.shape}", key=self.name,
                                    payload=payload)
        self.ledger.attempted.append(rid)
        self.first_try[rid] = time.monotonic()
        return rec

    def allowed(self):
        """How many records the pace allows by now: a burst at a time."""
        due = self.rate * (time.monotonic() - self.started_at)
        return (int(due) // self.burst + 1) * self.burst

    def wait_pace(self):
        """Sleeps until the pace allows the next record (or stop)."""
        due = self.started_at + (self.issued // self.burst) * self.burst / self.rate
        self.stop_event.wait(max(0.0, min(0.5, due - time.monotonic())))

    def taking_new(self):
        return not self.stop_event.is_set() and self.issued < self.max_records

    # ---- outcomes ---------------------------------------------------------

    def acked(self, rec, result_id, ack):
        if result_id != rec.id or ack.id != rec.id:
            self.ledger.anomalies.append(f"{rec.id} answered as {result_id!r}/{ack.id!r}")
            return
        self.ledger.acked[rec.id] = (ack.sequence, ack.duplicate)

    def should_retry(self, rec, code, message):
        """Notes a failed attempt of rec; True when it is to be sent again."""
        if code not in RETRYABLE_CODES:
            self.ledger.refused[rec.id] = (code, message)
            return False
        self.ledger.codes[CODE_NAMES.get(code, str(code))] += 1
        if self.abort_event.is_set() or \
                time.monotonic() - self.first_try[rec.id] > self.give_up_s:
            self.ledger.gave_up.add(rec.id)
            return False
        self.ledger.retries += 1
        return True

    def backoff(self, attempt):
        """Between retries: 50 ms doubling to 1 s, with jitter."""
        delay = min(1.0, 0.05 * (2 ** min(attempt, 5)))
        self.abort_event.wait(delay * (0.5 + self.rng.random()))

    # ---- thread -----------------------------------------------------------

    def run(self):
        self.started_at = time.monotonic()
        channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        try:
            self.stub = self.pb.ingest_grpc.IngestServiceStub(channel)
            self.work()
        except BaseException as e:  # noqa: B902 - handed to the test thread
            self.error = e
        finally:
            channel.close()

    def work(self):
        raise NotImplementedError


def rpc_code(err):
    """The numeric status code of a grpc.RpcError."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    return code.value[0]


class UnaryWriter(Writer):
    """One record per Ingest call."""

    shape = "unary"

    def work(self):
        while True:
            rec = self.next_record()
            if rec is None:
                if not self.taking_new():
                    return
                self.wait_pace()
                continue
            self.deliver(rec)

    def deliver(self, rec):
        req = self.pb.ingest.IngestRequest(record=rec)
        for attempt in range(100000):
            self.in_flight = 1
            try:
                resp = self.stub.Ingest(req, timeout=15)
            except grpc.RpcError as e:
                self.in_flight = 0
                if not self.should_retry(rec, rpc_code(e), e.details()):
                    return
                self.backoff(attempt)
                continue
            self.in_flight = 0
            self.acked(rec, rec.id, resp)
            return


class BatchWriter(Writer):
    """IngestBatch calls of up to batch_size records; a record answered with
    a retryable error, or every record of a call that failed as a whole,
    goes into the next call again."""

    shape = "batch"

    def __init__(self, *args, batch_size=25, **kw):
        super().__init__(*args, **kw)
        self.batch_size = self.burst = batch_size

    def work(self):
        while True:
            batch = []
            while len(batch) < self.batch_size:
                rec = self.next_record()
                if rec is None:
                    break
                batch.append(rec)
            if not batch:
                if not self.taking_new():
                    return
                self.wait_pace()
                continue
            self.deliver(batch)
            self.wait_pace()

    def deliver(self, batch):
        for attempt in range(100000):
            if not batch:
                return
            req = self.pb.ingest.IngestBatchRequest(records=batch)
            self.in_flight = len(batch)
            try:
                resp = self.stub.IngestBatch(req, timeout=20)
            except grpc.RpcError as e:
                self.in_flight = 0
                batch = [r for r in batch if self.should_retry(r, rpc_code(e), e.details())]
                self.backoff(attempt)
                continue
            self.in_flight = 0
            if len(resp.results) != len(batch):
                self.ledger.anomalies.append(
                    f"{len(resp.results)} results for {len(batch)} records from {batch[0].id}")
                self.ledger.gave_up.update(r.id for r in batch)
                return
            again = []
            for rec, res in zip(batch, resp.results):
                if res.WhichOneof("outcome") == "ack":
                    self.acked(rec, res.id, res.ack)
                elif self.should_retry(rec, res.error.code, res.error.message):
                    again.append(rec)
            batch = again
            if batch:
                self.backoff(attempt)


class _Requests:
    """The request side of one IngestStream: an iterator grpc consumes on its
    own thread, fed through a queue; close() ends it (half-close)."""

    def __init__(self):
        self.q = queue.Queue()

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            yield item

    def send(self, req):
        self.q.put(req)

    def close(self):
        self.q.put(None)


class StreamWriter(Writer):
    """Long-lived IngestStream calls with up to `window` records in flight;
    results come back in request order. A call is half-closed after
    per_call records and a new one opened. A record answered with a
    retryable error is sent again on the same call after a back-off of its
    own; when a call breaks (ingest killed, deadline), every record sent on
    it without a result is sent again, with its id, on the next call."""

    shape = "stream"

    def __init__(self, *args, window=32, per_call=600, **kw):
        super().__init__(*args, **kw)
        self.window = self.burst = window
        self.per_call = per_call
        self.backlog = collections.deque()  # (due, record) to send again, in order
        self.tries = collections.Counter()

    def work(self):
        attempt = 0
        while True:
            if not self.backlog and not self.taking_new():
                return
            if self.one_call():
                attempt = 0
            else:
                self.backoff(attempt)
                attempt += 1

    def take(self):
        """The next record to send now: a retry that is due, else a new one."""
        if self.backlog and self.backlog[0][0] <= time.monotonic():
            return self.backlog.popleft()[1]
        return self.next_record()

    def idle_wait(self):
        """Nothing in flight: sleep until a retry is due or the pace allows."""
        if self.backlog:
            self.abort_event.wait(max(0.0, min(0.5, self.backlog[0][0] - time.monotonic())))
        else:
            self.wait_pace()

    def one_call(self):
        """One stream from open to end; True when it ended normally."""
        reqs = _Requests()
        outstanding = collections.deque()
        sent = 0
        results = self.stub.IngestStream(iter(reqs), timeout=120)
        try:
            while True:
                while len(outstanding) < self.window and sent < self.per_call:
                    rec = self.take()
                    if rec is None:
                        break
                    outstanding.append(rec)
                    reqs.send(self.pb.ingest.IngestRequest(record=rec))
                    sent += 1
                    self.in_flight = len(outstanding)
                if not outstanding:
                    if sent >= self.per_call or (not self.backlog and not self.taking_new()):
                        break
                    self.idle_wait()
                    continue
                res = next(results)
                rec = outstanding.popleft()
                self.in_flight = len(outstanding)
                if res.WhichOneof("outcome") == "ack":
                    self.acked(rec, res.id, res.ack)
                elif self.should_retry(rec, res.error.code, res.error.message):
                    self.tries[rec.id] += 1
                    delay = min(1.0, 0.05 * 2 ** min(self.tries[rec.id], 5))
                    self.backlog.append((time.monotonic() + delay, rec))
            reqs.close()
            for extra in results:  # the server ends the call after our half-close
                self.ledger.anomalies.append(f"a result without a request: {extra.id}")
            return True
        except grpc.RpcError as e:
            self.ledger.broken_calls += 1
            self.requeue(outstanding, rpc_code(e), e.details())
            return False
        except StopIteration:
            self.ledger.broken_calls += 1
            self.requeue(outstanding, grpc.StatusCode.UNAVAILABLE.value[0],
                         "stream ended with records in flight")
            return False
        finally:
            self.in_flight = 0
            reqs.close()
            results.cancel()

    def requeue(self, outstanding, code, message):
        """The records a broken call left without a result go first into the
        next call, in their order."""
        now = time.monotonic()
        again = [(now, r) for r in outstanding if self.should_retry(r, code, message)]
        self.backlog.extendleft(reversed(again))


SHAPES = {"unary": UnaryWriter, "batch": BatchWriter, "stream": StreamWriter}


class Writers:
    """A group of writers spread over the ingest targets: start(), progress
    while they run, finish() to stop them and collect their ledgers."""

    def __init__(self, pb, targets, plan, prefix, give_up_s):
        """plan: list of (shape, rate) pairs, one writer each."""
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.writers = []
        for i, (shape, rate) in enumerate(plan):
            target = targets[i % len(targets)]
            self.writers.append(SHAPES[shape](pb, target, f"{prefix}-{shape[0]}{i}", self.stop,
                                              self.abort, rate, give_up_s=give_up_s))

    def start(self):
        for w in self.writers:
            w.start()
        return self

    def acked_counts(self):
        return [len(w.ledger.acked) for w in self.writers]

    def acked(self):
        return sum(self.acked_counts())

    def check(self):
        """Raises what a writer thread died of; True otherwise."""
        for w in self.writers:
            if w.error is not None:
                raise AssertionError(f"writer {w.name} failed: {w.error!r}") from w.error
        return True

    def finish(self, timeout):
        """Stops new records, waits for every writer to settle what it holds."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for w in self.writers:
            w.join(max(0.1, deadline - time.monotonic()))
        alive = [w.name for w in self.writers if w.is_alive()]
        if alive:
            self.abort.set()
            for w in self.writers:
                w.join(10)
        self.check()
        assert not alive, f"writers still busy after {timeout}s: {alive}"

    def kill(self):
        """A failing test: make every writer return soon."""
        self.stop.set()
        self.abort.set()
        for w in self.writers:
            w.join(15)
