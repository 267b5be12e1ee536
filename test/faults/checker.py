"""The checker: after the writers stopped and both consumers drained, reads
back everything the pipeline holds and holds it against what the writers
were told.

Read back: the stream SLUICE (every message, its sequence and Nats-Msg-Id,
through an ephemeral pull consumer), the collections `records` (`_id`,
`stream_seq`) and `audit` (`_id`, `stream`, `stream_seq`, `record_id`), and
SLUICE_DLQ.

The promise under test: an acknowledged id is stored exactly once in the
stream, at the sequence its acknowledgement named, and lands exactly once in
`records` and once in `audit`. An attempt that was never acknowledged may
still have been stored (UNAVAILABLE says "may or may not"); then it too is
in the stream once and in both collections once. Nothing is there that no
writer sent, nothing is in `records` or `audit` that the stream does not
hold, and no valid record is dead-lettered.

Counts in the summary line:
  acked      ids acknowledged to a writer
  attempted  ids sent at least once
  retried    sends of an id after its first
  gave_up    ids still unacknowledged after the writers' give-up time
  in_stream / in_records / in_audit   what the stream and collections hold
  lost       ids acknowledged (or stored unacknowledged) that are missing
             from the stream, `records` or `audit`
  doubled    ids held more than once by the stream or `audit`
  dlq        messages in SLUICE_DLQ
"""

import collections
import time

import pymongo

import harness
from stack import DLQ, STREAM

SUMMARIES = []  # one line per run, printed at the end of pytest's output


class Ledgers:
    """The writers' ledgers merged."""

    def __init__(self, writers):
        self.acked = {}
        self.attempted = set()
        self.gave_up = set()
        self.refused = {}
        self.anomalies = []
        self.retries = 0
        self.duplicates = 0
        self.broken_calls = 0
        self.codes = collections.Counter()
        self.errors = []
        self.by_shape = collections.Counter()
        for w in writers:
            led = w.ledger
            self.acked.update({i: seq for i, (seq, _dup) in led.acked.items()})
            self.duplicates += sum(1 for _seq, dup in led.acked.values() if dup)
            self.attempted.update(led.attempted)
            self.gave_up |= led.gave_up
            self.refused.update(led.refused)
            self.anomalies += [f"{w.name}: {a}" for a in led.anomalies]
            self.retries += led.retries
            self.broken_calls += led.broken_calls
            self.codes.update(led.codes)
            self.by_shape[w.shape] += len(led.acked)
            if w.error is not None:
                self.errors.append(f"{w.name}: {w.error!r}")


# ---- reading back ----------------------------------------------------------------

async def _read_stream(url, stream):
    """[(sequence, Nats-Msg-Id)] of every message of stream, in order."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(stream)
        want = info.state.messages
        cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                             num_replicas=1, mem_storage=True, inactive_threshold=60.0)
        sub = await js.pull_subscribe(">", stream=stream, config=cfg)
        out = []
        empty = 0
        while len(out) < want and empty < 5:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                empty += 1
                continue
            for m in msgs:
                out.append((m.metadata.sequence.stream, (m.headers or {}).get("Nats-Msg-Id")))
        await sub.unsubscribe()
        return info.state, out
    finally:
        await nc.close()


async def _dlq(url):
    """(count, a few messages' headers) of SLUICE_DLQ; 0 when it does not exist."""
    import nats
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream(timeout=10)
        try:
            info = await js.stream_info(DLQ)
        except nats.js.errors.NotFoundError:
            return 0, []
        heads = []
        if info.state.messages:
            for seq in range(info.state.first_seq,
                             min(info.state.last_seq, info.state.first_seq + 4) + 1):
                heads.append(dict((await js.get_msg(DLQ, seq)).headers or {}))
        return info.state.messages, heads
    finally:
        await nc.close()


def _patiently(fn, *args, attempts=10):
    """fn(*args) run to completion, tried again (bounded) when JetStream's API
    does not answer: reading back must not fail on a passing hiccup of the
    cluster. Returns (result, [the errors met])."""
    import nats
    errors = []
    for _ in range(attempts):
        try:
            return harness.run_coro(fn(*args)), errors
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError,
                nats.errors.NoRespondersError) as e:
            errors.append(repr(e))
            time.sleep(1)
    raise AssertionError(f"JetStream did not answer {fn.__name__}: {errors}")


class Readback:
    def __init__(self, stack):
        url = stack.cluster.url
        (self.state, self.stream), e1 = _patiently(_read_stream, url, STREAM)
        (self.dlq, self.dlq_heads), e2 = _patiently(_dlq, url)
        self.api_errors = e1 + e2
        client = pymongo.MongoClient(stack.ferretdb.uri(), serverSelectionTimeoutMS=30000,
                                     socketTimeoutMS=120000)
        try:
            db = client.sluice
            self.records = [(d["_id"], d.get("stream_seq"))
                            for d in db.records.find({}, {"_id": 1, "stream_seq": 1})]
            self.audit = [(d["_id"], d.get("stream"), d.get("stream_seq"), d.get("record_id"))
                          for d in db.audit.find({}, {"_id": 1, "stream": 1, "stream_seq": 1,
                                                      "record_id": 1})]
        finally:
            client.close()


# ---- holding one against the other ------------------------------------------------

class Verdict:
    """Every problem found, by kind; counts for the summary line."""

    def __init__(self, led, back, min_records):
        self.led, self.back = led, back
        self.problems = collections.defaultdict(list)  # kind -> [detail]
        self.lost = set()
        self.doubled = set()

        in_stream = collections.Counter(i for _seq, i in back.stream)
        seq_of = {i: seq for seq, i in back.stream}
        id_at = dict(back.stream)
        rec_seq = dict(back.records)
        in_audit = collections.Counter(r for _id, _s, _q, r in back.audit)

        if back.state.messages != len(back.stream):
            self.problems["stream unreadable"].append(
                f"stream state says {back.state.messages} messages, read {len(back.stream)}")
        if back.state.messages and back.state.last_seq - back.state.first_seq + 1 != \
                back.state.messages:
            self.problems["stream gaps"].append(
                f"sequences {back.state.first_seq}..{back.state.last_seq} hold "
                f"{back.state.messages} messages")

        # Everything that must be downstream: acknowledged ids, and ids the
        # stream holds although their attempt was not acknowledged.
        must = set(led.acked) | (set(in_stream) & led.attempted)
        for rid in sorted(must):
            where = []
            if in_stream[rid] == 0:
                where.append("stream")
            if rid not in rec_seq:
                where.append("records")
            if in_audit[rid] == 0:
                where.append("audit")
            if where:
                self.lost.add(rid)
                kind = "lost (acknowledged)" if rid in led.acked else \
                    "lost (stored, not acknowledged)"
                self.problems[kind].append(f"{rid} missing from {', '.join(where)}")
        for rid, n in in_stream.items():
            if n > 1:
                self.doubled.add(rid)
                self.problems["doubled in the stream"].append(
                    f"{rid} x{n} at {[s for s, i in back.stream if i == rid]}")
        for rid, n in in_audit.items():
            if n > 1:
                self.doubled.add(rid)
                self.problems["doubled in audit"].append(f"{rid} x{n}")

        # Acknowledgements say where the record is.
        for rid, seq in led.acked.items():
            if in_stream[rid] == 1 and seq_of[rid] != seq:
                self.problems["acknowledged at another sequence"].append(
                    f"{rid} acked at {seq}, stored at {seq_of[rid]} (which holds "
                    f"{id_at.get(seq)!r})")
        # Downstream documents agree with the stream.
        for rid, seq in rec_seq.items():
            if in_stream[rid] == 1 and seq != seq_of[rid]:
                self.problems["records.stream_seq wrong"].append(
                    f"{rid}: {seq}, stream {seq_of[rid]}")
        for aid, stream, seq, rid in back.audit:
            # Keyed by stream, sequence and stored time: "SLUICE:<seq>:<time>".
            if in_stream[rid] == 1 and (stream, seq) != (STREAM, seq_of[rid]) or \
                    not str(aid).startswith(f"{stream}:{seq}:"):
                self.problems["audit entry names another message"].append(
                    f"{rid}: _id {aid}, stream {stream} seq {seq}; the stream holds it at "
                    f"{seq_of.get(rid)}")

        # Nothing that no writer sent; nothing downstream the stream lacks.
        for what, ids in (("stream", in_stream), ("records", rec_seq), ("audit", in_audit)):
            foreign = [i for i in ids if i not in led.attempted]
            if foreign:
                self.problems[f"never sent, in {what}"] += [str(i) for i in foreign]
            if what != "stream":
                orphan = [i for i in ids if i in led.attempted and in_stream[i] == 0 and
                          i not in led.acked]
                if orphan:
                    self.problems[f"not in the stream, in {what}"] += orphan

        if back.dlq:
            self.problems["dead-lettered"].append(f"{back.dlq} messages, first: {back.dlq_heads}")
        if led.gave_up:
            self.problems["gave up (not a loss: ingest refused them for the whole "
                          "give-up time)"] += sorted(led.gave_up)
        for rid, (code, msg) in led.refused.items():
            self.problems["refused for good"].append(f"{rid}: {code} {msg}")
        self.problems["protocol anomalies"] += led.anomalies
        self.problems["writer errors"] += led.errors
        if len(led.acked) < min_records:
            self.problems["too few records"].append(
                f"{len(led.acked)} acknowledged, the run needs {min_records}")
        self.problems = {k: v for k, v in self.problems.items() if v}

    def summary(self, label, duration_s, extra=""):
        led, back = self.led, self.back
        return (f"faults[{label}]: acked={len(led.acked)} attempted={len(led.attempted)} "
                f"retried={led.retries} gave_up={len(led.gave_up)} "
                f"in_stream={len(back.stream)} in_records={len(back.records)} "
                f"in_audit={len(back.audit)} lost={len(self.lost)} "
                f"doubled={len(self.doubled)} dlq={back.dlq} "
                f"duration={duration_s:.0f}s{extra}")

    def details(self):
        """Counters that explain the run: per shape, codes seen, duplicates."""
        led = self.led
        shapes = " ".join(f"{k}={v}" for k, v in sorted(led.by_shape.items()))
        codes = " ".join(f"{k}={v}" for k, v in sorted(led.codes.items())) or "none"
        return (f"acked by shape: {shapes}; retryable answers: {codes}; "
                f"answered duplicate: {led.duplicates}; broken calls: {led.broken_calls}")

    def report(self, limit=20):
        lines = []
        for kind, items in self.problems.items():
            lines.append(f"{kind}: {len(items)}")
            lines += [f"    {x}" for x in items[:limit]]
        return "\n".join(lines)


def evidence(stack, ids, limit=5):
    """The log lines of every process that name one of ids (the first
    limit of them): where a lost record was last seen."""
    out = []
    for rid in sorted(ids)[:limit]:
        out.append(f"--- {rid}")
        for name, proc in stack.logs():
            for line in proc.log().splitlines():
                if rid in line:
                    out.append(f"{name}: {line[:400]}")
    return "\n".join(out)
