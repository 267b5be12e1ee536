"""The faults, each a function fault(stack, writers, rng) -> a one-line note
of what it did.

A fault is injected while the writers run and returns once the deployment
is whole again (Stack.wait_whole) and every writer has had records
acknowledged since the recovery, so the next fault starts from a working
system and a fault that leaves something broken fails the run at once
instead of hiding behind the next one. Where a fault keeps something down
for a while, it waits for evidence that the rest carries on (a new stream
leader, acknowledgements, the services' log lines), not for a fixed time;
the one deliberate sleep is the length of a SIGSTOP.

FAULTS maps each name to its function; the names are what SLUICE_FAULTS
and `-k` select (see docs/faults.md)."""

import time

import harness
from stack import STREAM

PAUSE_S = 6.0          # SIGSTOP length: longer than a JetStream election
PROGRESS = 3           # acknowledgements per writer that show it carries on
DOWN_PROGRESS = 20     # the same while something is down: a couple of seconds of load
PROGRESS_TIMEOUT = 120
ELECTION_TIMEOUT = 60


def wait_progress(writers, each=PROGRESS, timeout=PROGRESS_TIMEOUT, what="writers progressing"):
    """Until every writer has each more records acknowledged than now."""
    start = writers.acked_counts()

    def moved():
        writers.check()
        now = writers.acked_counts()
        return all(n >= s + each for n, s in zip(now, start))
    harness.wait_until(moved, timeout=timeout, interval=0.1, what=what)


def recovered(stack, writers):
    stack.wait_whole()
    wait_progress(writers, what="writers progressing after recovery")


def wait_events(procs, prefixes, since, timeout=60, what="log lines"):
    """Until every process in procs logged a line whose msg starts with one
    of prefixes after its mark in since (a dict proc -> log_mark())."""
    def seen():
        return all(any(p.events(pre, since=since[p]) for pre in prefixes) for p in procs)
    harness.wait_until(seen, timeout=timeout, interval=0.2, what=what)


def marks(procs):
    return {p: p.log_mark() for p in procs}


# ---- NATS ------------------------------------------------------------------------

def leader_kill(stack, writers, rng):
    """kill -9 the stream leader; a new one is elected and serves; the old
    one restarts on its ports and store and catches up."""
    cluster = stack.cluster
    leader = cluster.stream_leader(STREAM)
    leader.kill()
    new = cluster.stream_leader(STREAM, timeout=ELECTION_TIMEOUT, other_than=leader)
    wait_progress(writers, each=DOWN_PROGRESS, what="writers progressing on two nodes")
    leader.start()
    recovered(stack, writers)
    return f"killed leader {leader.name}, {new.name} elected"


def leader_pause(stack, writers, rng):
    """SIGSTOP the stream leader for PAUSE_S seconds (its sockets stay open,
    it answers nothing), then SIGCONT: it comes back believing it leads."""
    cluster = stack.cluster
    leader = cluster.stream_leader(STREAM)
    t0 = time.monotonic()
    leader.pause()
    new = cluster.stream_leader(STREAM, timeout=ELECTION_TIMEOUT, other_than=leader)
    elected = time.monotonic() - t0
    time.sleep(max(0.0, PAUSE_S - elected))  # the deliberate length of the pause
    leader.resume()
    paused = time.monotonic() - t0
    recovered(stack, writers)
    return f"paused leader {leader.name} {paused:.1f}s, {new.name} elected after {elected:.1f}s"


def consumer_leader_kill(stack, writers, rng):
    """kill -9 the member that leads a durable consumer's replicas (its
    delivery and ack state; not always the stream's leader); restart it."""
    name = rng.choice(["transform", "audit"])

    def leader_of():
        ci = stack.consumer_info(name)
        return ci.cluster.leader if ci is not None and ci.cluster else None
    first = harness.wait_until(leader_of, timeout=ELECTION_TIMEOUT, interval=0.2,
                               what=f"a leader for consumer {name}")
    node = stack.cluster.node(first)
    stream_leader = stack.cluster.stream_leader(STREAM)
    node.kill()

    def other_leader():
        now = leader_of()
        return now if now and now != first else None
    new = harness.wait_until(other_leader, timeout=ELECTION_TIMEOUT, interval=0.2,
                             what=f"a new leader for consumer {name}")
    wait_progress(writers, each=DOWN_PROGRESS, what="writers progressing on two nodes")
    node.start()
    recovered(stack, writers)
    return f"killed {node.name}, leader of consumer {name} (stream leader {stream_leader.name}), " \
           f"{new} elected"


def follower_kill(stack, writers, rng):
    """kill -9 a replica that does not lead; restart it."""
    cluster = stack.cluster
    leader = cluster.stream_leader(STREAM)
    follower = rng.choice([n for n in cluster.nodes if n is not leader])
    follower.kill()
    wait_progress(writers, each=DOWN_PROGRESS, what="writers progressing without a follower")
    follower.start()
    recovered(stack, writers)
    return f"killed follower {follower.name} (leader {leader.name})"


def connected_node(svc):
    """The cluster member svc last said it (re)connected to, from its log."""
    ev = [e for e in svc.events() if e.get("msg", "").startswith(("connected to NATS at",
                                                                 "reconnected to NATS at"))]
    assert ev, f"{svc.name} never said where it connected\n{svc.log()[-2000:]}"
    return int(ev[-1]["msg"].rsplit(":", 1)[1])


def ingest_node_pause(stack, writers, rng):
    """SIGSTOP the member a sluice-ingest is connected to: its TCP
    connection stays open but nothing answers, as with a hung machine.
    Ingest must notice (pings) and go to another member; the node is resumed
    once it has."""
    k = rng.randrange(len(stack.ingests))
    ingest = stack.ingests[k]
    port = connected_node(ingest)
    node = next(n for n in stack.cluster.nodes if n.port == port)
    mark = ingest.log_mark()
    t0 = time.monotonic()
    node.pause()
    harness.wait_until(lambda: ingest.events("reconnected to NATS at", since=mark),
                       timeout=60, interval=0.2, what=f"ingest{k} leaving the paused node")
    away = time.monotonic() - t0
    wait_progress(writers, each=DOWN_PROGRESS, what="writers progressing around the paused node")
    node.resume()
    paused = time.monotonic() - t0
    recovered(stack, writers)
    return f"paused {node.name} under ingest{k} {paused:.1f}s; ingest moved after {away:.1f}s"


def nats_restart_all(stack, writers, rng):
    """Stop all three nodes (SIGTERM), then start them all again on their
    stores: JetStream is away for everyone for a while."""
    cluster = stack.cluster
    cluster.stop()
    harness.wait_until(lambda: all(harness.http_get(i.metrics_port, "/readyz")[0] == 503
                                   for i in stack.ingests),
                       timeout=30, what="ingest not ready without NATS")
    t0 = time.monotonic()
    cluster.start(timeout=ELECTION_TIMEOUT)
    recovered(stack, writers)
    return f"stopped all nodes; whole again {time.monotonic() - t0:.1f}s after the start"


def nats_kill_all(stack, writers, rng):
    """kill -9 all three nodes at once, then start them: nothing any of them
    acknowledged may be missing afterwards (sync_interval: always)."""
    cluster = stack.cluster
    for node in cluster.nodes:
        node.send_signal(9)
    for node in cluster.nodes:
        node.wait(timeout=10)
    t0 = time.monotonic()
    cluster.start(timeout=ELECTION_TIMEOUT)
    recovered(stack, writers)
    return f"killed all nodes; whole again {time.monotonic() - t0:.1f}s after the start"


# ---- the services ------------------------------------------------------------------

def ingest_kill(stack, writers, rng):
    """kill -9 a sluice-ingest while its writers' streams, batches and calls
    are in flight; start it again on its ports. The writers reconnect and
    send again what got no result."""
    k = rng.randrange(len(stack.ingests))
    ingest = stack.ingests[k]
    streams = [w for w in writers.writers if w.target == ingest.target and w.shape == "stream"]
    others = [w for w in writers.writers if w.target == ingest.target and w.shape != "stream"]
    # The moment a stream has records in flight (bursts last some 10 ms).
    harness.wait_until(lambda: any(w.in_flight for w in streams), timeout=30, interval=0.002,
                       what="a stream with records in flight")
    held = [w.in_flight for w in streams + others]
    ingest.kill()
    ingest.start()
    recovered(stack, writers)
    return f"killed ingest{k} with {held} records in flight on its streams, batches, calls"


def _consumer_kill(stack, writers, svc):
    """kill -9 a consumer in the middle of its work; the stream grows while
    it is down; restarted, it settles again (what it held comes back after
    the ack wait)."""
    mark = svc.log_mark()
    harness.wait_until(lambda: svc.events("batch of", since=mark), timeout=60,
                       what=f"{svc.name} settling batches")
    svc.kill()
    wait_progress(writers, each=DOWN_PROGRESS, what=f"writers progressing without {svc.name}")
    mark = svc.log_mark()
    stack.restart_consumer(svc)
    harness.wait_until(lambda: svc.events("batch of", since=mark), timeout=60,
                       what=f"{svc.name} settling again")
    recovered(stack, writers)


def transform_kill(stack, writers, rng):
    _consumer_kill(stack, writers, stack.transform)
    return "killed transform"


def audit_kill(stack, writers, rng):
    _consumer_kill(stack, writers, stack.audit)
    return "killed audit"


def ferretdb_restart(stack, writers, rng):
    """Stop FerretDB while both consumers write; both notice and pause;
    start it on the same port and data; both write again."""
    consumers = [stack.transform, stack.audit]
    since = marks(consumers)
    stack.ferretdb.stop()
    wait_events(consumers, ("MongoDB not reachable", "MongoDB write failed"), since,
                what="both consumers noticing MongoDB away")
    wait_progress(writers, each=DOWN_PROGRESS, what="writers progressing without MongoDB")
    since = marks(consumers)
    stack.ferretdb.start()
    wait_events(consumers, ("MongoDB reachable",), since, what="both consumers reconnected")
    wait_events(consumers, ("batch of",), since, what="both consumers settling again")
    recovered(stack, writers)
    return "restarted FerretDB"


FAULTS = {f.__name__: f for f in (
    leader_kill, leader_pause, follower_kill, consumer_leader_kill, ingest_node_pause, ingest_kill, transform_kill,
    audit_kill, ferretdb_restart, nats_restart_all, nats_kill_all)}
