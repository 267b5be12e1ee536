"""The deployment under test: a 3-node JetStream cluster, FerretDB, one or
two sluice-ingest (stream SLUICE on 3 replicas), sluice-transform and
sluice-audit, every process on 127.0.0.1 with free ports and its data in the
test's scratch directory.

Every process can be killed and started again on the same ports and data
(harness.Proc keeps both), and the waits here are on state the processes
publish (stream info, /readyz, log lines written after a mark), bounded by
time. Stack.stop() stops everything that is still running and returns the
exit status of each service that was asked to stop, so that a test can
also hold the services to a clean exit."""

import harness
from conftest_downstream import Downstream

STREAM = "SLUICE"
DLQ = "SLUICE_DLQ"
# Every retry a writer makes must fall inside the duplicate window (see
# writers.py); the window is set well above the writers' give-up time.
DUPLICATE_WINDOW = "5m"


class Stack:
    def __init__(self, ingests=1, ack_wait="5s"):
        # Every process is restarted on its ports: harness.restart_port()
        # keeps them out of the range the kernel hands out meanwhile.
        port = harness.restart_port
        self.cluster = harness.NatsCluster(3)
        self.ferretdb = harness.FerretDB(port=port())
        self.ingests = [harness.Ingest(self.cluster.url, "--stream-replicas=3",
                                       f"--duplicate-window={DUPLICATE_WINDOW}",
                                       port=port(), metrics_port=port())
                        for _ in range(ingests)]
        self.transform = Downstream("transform", self.cluster.url, self.ferretdb.uri(),
                                    ack_wait=ack_wait, metrics_port=port())
        self.audit = Downstream("audit", self.cluster.url, self.ferretdb.uri(),
                                ack_wait=ack_wait, metrics_port=port())
        self.exit_codes = {}

    @property
    def services(self):
        return self.ingests + [self.transform, self.audit]

    @property
    def targets(self):
        return [i.target for i in self.ingests]

    def start(self):
        self.cluster.start()
        self.ferretdb.start()
        for ingest in self.ingests:
            ingest.start()
        self.cluster.wait_stream_current(STREAM)
        for svc in (self.transform, self.audit):
            svc.start()
        for svc in (self.transform, self.audit):
            svc.wait_consuming(timeout=60)
        return self

    # ---- restarts ---------------------------------------------------------

    def restart_consumer(self, svc, timeout=60):
        """Starts a stopped transform or audit and waits until it consumes
        again (its own lines, not those of the process before it)."""
        mark = svc.log_mark()
        svc.start()
        harness.wait_until(lambda: svc.events("MongoDB reachable", since=mark) and
                           svc.events("consuming ", since=mark),
                           timeout=timeout, what=f"{svc.name} consuming again")

    # ---- health -----------------------------------------------------------

    def wait_whole(self, timeout=120):
        """Everything up: every node running, the stream's replicas current,
        every ingest ready, both consumers running."""
        for node in self.cluster.nodes:
            assert node.running() and not node.paused, f"{node.name} is down"
        assert self.ferretdb.running(), f"FerretDB exited\n{self.ferretdb.log()[-3000:]}"
        self.cluster.wait_stream_current(STREAM, timeout=timeout)
        for ingest in self.ingests:
            ingest.wait_ready(timeout=timeout)
        for svc in (self.transform, self.audit):
            assert svc.running(), f"{svc.name} exited\n{svc.log()[-3000:]}"

    def consumer_info(self, name):
        for node in self.cluster.live_nodes():
            try:
                return harness.run_coro(_consumer_info(node.url, name))
            except Exception:  # noqa: BLE001 - not answering yet
                continue
        return None

    def wait_drained(self, timeout):
        """Until both durable consumers have nothing pending and nothing
        unacknowledged: every stored message was settled by both services."""
        def drained():
            infos = [self.consumer_info(name) for name in ("transform", "audit")]
            if any(ci is None for ci in infos):
                return False
            return all(ci.num_pending == 0 and ci.num_ack_pending == 0 for ci in infos)
        harness.wait_until(drained, timeout=timeout, interval=0.5,
                           what="transform and audit drained")

    def pending(self):
        """(num_pending, num_ack_pending) per consumer, for messages."""
        out = {}
        for name in ("transform", "audit"):
            ci = self.consumer_info(name)
            out[name] = (ci.num_pending, ci.num_ack_pending) if ci else None
        return out

    # ---- end ----------------------------------------------------------------

    def stop(self):
        """Stops services first (their exit status is kept in exit_codes),
        then FerretDB and the cluster."""
        for name, svc in self.logs()[:len(self.services)]:
            if svc.running():
                self.exit_codes[name] = svc.stop()
        self.ferretdb.stop()
        for node in self.cluster.nodes:
            if node.paused:
                node.resume()
        self.cluster.stop()

    def logs(self):
        """(name, Proc) of every process, for reports."""
        out = [(f"ingest{i}", s) for i, s in enumerate(self.ingests)]
        out += [("transform", self.transform), ("audit", self.audit),
                ("ferretdb", self.ferretdb)]
        out += [(n.name, n) for n in self.cluster.nodes]
        return out


async def _consumer_info(url, name):
    import nats
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    try:
        return await nc.jetstream(timeout=2).consumer_info(STREAM, name)
    finally:
        await nc.close()
