"""The fault suite: an OK from sluice-ingest means the record reaches
`records` and `audit` exactly once, on a 3-node JetStream cluster, while
nodes, services and the store are killed, paused and restarted under load.

SLUICE_FAULTS picks the runs (docs/faults.md):
  short (default)  one run, every fault once in a fixed order, at least
                   5,000 records (the stage of `make test`, about two minutes)
  full             one run per fault, then one run of every fault twice
                   (the second round in a shuffled order), at least 20,000
                   records (`make test-faults`)
  a,b,...          one run of the named faults, in that order
SLUICE_FAULTS_SEED fixes the random choices (victims, order) of a run; each
summary line names the seed it used.

A run: start the stack, start the writers (every RPC shape, spread over the
ingest processes), inject the faults one after the other while they write,
keep writing until the run's record count is reached, stop the writers
(they settle what they hold), wait until both durable consumers have
nothing pending or unacknowledged, then read everything back and check
(checker.py)."""

import dataclasses
import os
import random
import time

import pytest

import checker
import harness
from faults import FAULTS, wait_progress
from stack import Stack
from writers import Writers

# Writers: (RPC shape, new records per second). Spread over the ingest
# processes in turn, so with two each one serves every shape.
WRITERS = [("unary", 12), ("unary", 12), ("batch", 25), ("batch", 25),
           ("stream", 30), ("stream", 30)]
GIVE_UP_S = 100.0      # per record; below the duplicate window (stack.py)
DRAIN_TIMEOUT = 300
SHORT = list(FAULTS)  # every fault once, in the order of docs/faults.md


@dataclasses.dataclass
class Run:
    name: str
    faults: list
    min_records: int
    ingests: int = 2
    shuffle_from: int = None  # faults from this index on in a random order


def runs(mode):
    if mode == "short":
        return [Run("short", SHORT, 5000)]
    if mode == "full":
        everything = list(FAULTS)
        return [Run(name, [name], 2000) for name in everything] + \
            [Run("sequence", everything + everything, 20000, shuffle_from=len(everything))]
    names = [n.strip() for n in mode.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise pytest.UsageError(f"SLUICE_FAULTS: unknown faults {unknown}; "
                                f"known: short, full, {', '.join(FAULTS)}")
    return [Run("+".join(names), names, 2000)]


RUNS = runs(os.environ.get("SLUICE_FAULTS", "short"))


def utc_now():
    """Wall-clock time as the services' logs write it, for reading them."""
    return time.strftime("%H:%M:%SZ", time.gmtime())


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_acknowledged_means_stored_once(pb, run):
    seed = int(os.environ.get("SLUICE_FAULTS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    faults = list(run.faults)
    if run.shuffle_from is not None:
        tail = faults[run.shuffle_from:]
        rng.shuffle(tail)
        faults[run.shuffle_from:] = tail

    t0 = time.monotonic()
    stack = Stack(ingests=run.ingests)
    writers = None
    notes = []
    try:
        stack.start()
        writers = Writers(pb, stack.targets, WRITERS, "w", GIVE_UP_S).start()
        wait_progress(writers, each=10, what="every writer acknowledged")
        for name in faults:
            t, at = time.monotonic(), utc_now()
            note = FAULTS[name](stack, writers, rng)
            notes.append(f"{at} {name} {time.monotonic() - t:.0f}s: {note}")
        harness.wait_until(lambda: writers.check() and writers.acked() >= run.min_records,
                           timeout=run.min_records / 20, interval=0.2,
                           what=f"{run.min_records} records acknowledged")
        writers.finish(timeout=GIVE_UP_S + 60)
        stack.wait_drained(timeout=DRAIN_TIMEOUT)
        for svc in stack.services:
            assert svc.running(), f"{svc.name} exited\n{svc.log()[-3000:]}"
        back = checker.Readback(stack)
    except BaseException as e:
        if writers is not None:
            writers.kill()
        stack.stop()
        raise AssertionError(f"run {run.name} (seed {seed}) failed after "
                             f"{time.monotonic() - t0:.0f}s; faults so far:\n  " +
                             "\n  ".join(notes)) from e
    stack.stop()

    verdict = checker.Verdict(checker.Ledgers(writers.writers), back, run.min_records)
    bad_exits = {k: v for k, v in stack.exit_codes.items() if v != 0}
    if bad_exits:
        verdict.problems["exit status on SIGTERM"] = [f"{k}: {v}" for k, v in bad_exits.items()]
    line = verdict.summary(run.name, time.monotonic() - t0, f" seed={seed}")
    checker.SUMMARIES.append(line)
    print(line)
    print("  " + verdict.details())
    if back.api_errors:
        print(f"  reading back, JetStream's API failed {len(back.api_errors)} times before it "
              f"answered: {back.api_errors}")
    for note in notes:
        print("  " + note)
    if verdict.problems:
        suspects = verdict.lost | verdict.doubled
        pytest.fail(f"{line}\n{verdict.report()}\n"
                    f"faults:\n  " + "\n  ".join(notes) + "\n" +
                    (f"log lines of the first ids concerned:\n{checker.evidence(stack, suspects)}"
                     if suspects else ""), pytrace=False)
