"""The checker checked: made-up ledgers and read-backs, each with one kind
of damage, must each be caught, and a clean one must pass. No servers; it
runs in milliseconds, in every mode."""

import types

import pytest

import checker

STREAM = "SLUICE"


def ledgers(acked, attempted=None, gave_up=()):
    """A Ledgers as Ledgers() builds it from writers, from plain data."""
    led = checker.Ledgers([])
    led.acked = dict(acked)
    led.attempted = set(attempted if attempted is not None else acked)
    led.gave_up = set(gave_up)
    return led


def readback(stream, records=None, audit=None, dlq=0):
    """stream: [(seq, id)]; records: {id: seq}; audit: [(seq, id)]; by
    default both collections hold exactly what the stream holds."""
    seqs = [s for s, _ in stream]
    back = types.SimpleNamespace()
    back.state = types.SimpleNamespace(messages=len(stream), first_seq=min(seqs, default=0),
                                       last_seq=max(seqs, default=0))
    back.stream = list(stream)
    back.records = list((records if records is not None else
                         {i: s for s, i in stream}).items())
    back.audit = [(f"{STREAM}:{s}:2026-01-01T00:00:00.000000000Z", STREAM, s, i)
                  for s, i in (audit if audit is not None else stream)]
    back.dlq, back.dlq_heads = dlq, []
    return back


CLEAN = [(1, "a"), (2, "b"), (3, "c")]
ACKED = {"a": 1, "b": 2, "c": 3}


def kinds(verdict):
    return set(verdict.problems)


def test_clean_run_passes():
    v = checker.Verdict(ledgers(ACKED), readback(CLEAN), min_records=3)
    assert v.problems == {} and not v.lost and not v.doubled
    assert "lost=0 doubled=0 dlq=0" in v.summary("t", 1.0)


def test_stored_without_ack_is_allowed_when_downstream_once():
    v = checker.Verdict(ledgers({"a": 1, "b": 2}, attempted={"a", "b", "c"}),
                        readback(CLEAN), min_records=2)
    assert v.problems == {}


@pytest.mark.parametrize("damage, kind", [
    (lambda: readback(CLEAN[:2], records={"a": 1, "b": 2}, audit=CLEAN[:2]),
     "lost (acknowledged)"),
    (lambda: readback(CLEAN, records={"a": 1, "b": 2}), "lost (acknowledged)"),
    (lambda: readback(CLEAN, audit=CLEAN[:2]), "lost (acknowledged)"),
    (lambda: readback(CLEAN + [(4, "c")], records={"a": 1, "b": 2, "c": 3},
                      audit=CLEAN), "doubled in the stream"),
    (lambda: readback(CLEAN, audit=CLEAN + [(3, "c")]), "doubled in audit"),
    (lambda: readback([(1, "a"), (2, "c"), (3, "b")]), "acknowledged at another sequence"),
    (lambda: readback(CLEAN, records={"a": 1, "b": 2, "c": 7}), "records.stream_seq wrong"),
    (lambda: readback(CLEAN, audit=[(1, "a"), (2, "b"), (9, "c")]),
     "audit entry names another message"),
    (lambda: readback(CLEAN + [(4, "zz")]), "never sent, in stream"),
    (lambda: readback(CLEAN, dlq=1), "dead-lettered"),
])
def test_each_damage_is_caught(damage, kind):
    v = checker.Verdict(ledgers(ACKED), damage(), min_records=3)
    assert kind in kinds(v), v.report()


def test_unacknowledged_in_records_but_not_in_the_stream():
    back = readback(CLEAN, records={"a": 1, "b": 2, "c": 3, "d": 4})
    v = checker.Verdict(ledgers(ACKED, attempted={"a", "b", "c", "d"}), back, min_records=3)
    assert "not in the stream, in records" in kinds(v)


def test_stored_unacknowledged_missing_downstream_is_lost():
    back = readback(CLEAN, records={"a": 1, "b": 2}, audit=CLEAN[:2])
    v = checker.Verdict(ledgers({"a": 1, "b": 2}, attempted={"a", "b", "c"}), back,
                        min_records=2)
    assert "lost (stored, not acknowledged)" in kinds(v) and v.lost == {"c"}


def test_give_ups_and_short_runs_fail():
    v = checker.Verdict(ledgers({"a": 1}, attempted={"a", "b"}, gave_up={"b"}),
                        readback(CLEAN[:1]), min_records=2)
    assert any(k.startswith("gave up") for k in kinds(v))
    assert "too few records" in kinds(v)
