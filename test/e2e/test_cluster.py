"""NATS_URL as a server list, and a 3-node JetStream cluster: every service
takes a comma-separated list, starts on any member that answers, and
reconnects to another member when its own goes away."""

import json

import grpc

import harness
from conftest_downstream import (Downstream, count, ferretdb, ids, mongo,  # noqa: F401
                                 order, wait_count)


def stub(pb, target):
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    return pb.ingest_grpc.IngestServiceStub(channel), channel


def ingest_one(pb, target, i, attempts=60):
    """Ingest with retries on UNAVAILABLE, keeping the id: what a client does."""
    import time
    rec = pb.ingest.Record(id=f"c-{i:05d}", type="order.created",
                           payload=json.dumps({"n": i}).encode())
    s, ch = stub(pb, target)
    try:
        for _ in range(attempts):
            try:
                return s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                time.sleep(0.25)
        raise AssertionError(f"record {i} never acknowledged")
    finally:
        ch.close()


def test_first_server_of_the_list_down(pb, nats_server, ferretdb):
    """The list's first member does not answer: every service connects to
    the next one instead of taking the whole list for one URL."""
    dead = f"nats://127.0.0.1:{harness.free_port()}"
    url = f"{dead}, {nats_server.url}"
    ingest = harness.Ingest(url).start()
    transform = Downstream("transform", url, ferretdb.uri()).start().wait_consuming()
    audit = Downstream("audit", url, ferretdb.uri()).start().wait_consuming()
    try:
        acks = [ingest_one(pb, ingest.target, i) for i in range(5)]
        client = harness_mongo(ferretdb)
        wait_count(client.sluice.records, 5)
        wait_count(client.sluice.audit, 5)
        assert ids(client.sluice.records) == {a.id for a in acks}
        client.close()
    finally:
        for svc in (transform, audit, ingest):
            assert svc.stop() == 0, svc.log()[-3000:]
    assert "s3cret" not in ingest.log()


def test_url_list_is_checked_and_redacted():
    """A malformed list stops the service at start with one line, which
    names the entry without its password."""
    for name in ("ingest", "transform", "audit"):
        proc = harness.Service(name, ["--nats-url=nats://bob:s3cret@a:4222 nats://b:4222"])
        proc.start()
        assert proc.wait(timeout=10) == 2
        out = proc.log()
        assert "invalid --nats-url" in out and "s3cret" not in out, out
        assert "nats://bob:***@a:4222" in out, out


def harness_mongo(ferretdb):
    import pymongo
    return pymongo.MongoClient(ferretdb.uri(), serverSelectionTimeoutMS=20000)


def test_cluster_member_lost_services_reconnect(pb, ferretdb, mongo):  # noqa: F811
    """On a 3-node cluster with the stream on 3 replicas, the member each
    service is connected to is killed: they reconnect to another member and
    every acknowledged record lands once in records and audit."""
    cluster = harness.NatsCluster(3).start()
    try:
        ingest = harness.Ingest(cluster.url, "--stream-replicas=3").start()
        transform = Downstream("transform", cluster.url, ferretdb.uri()).start().wait_consuming()
        audit = Downstream("audit", cluster.url, ferretdb.uri()).start().wait_consuming()
        acks = [ingest_one(pb, ingest.target, i) for i in range(50)]
        wait_count(mongo.records, 50)

        connected = [e for e in ingest.events("connected to NATS at")]
        assert connected, ingest.log()[-2000:]
        port = int(connected[-1]["msg"].rsplit(":", 1)[1])
        victim = next(n for n in cluster.nodes if n.port == port)
        victim.kill()
        acks += [ingest_one(pb, ingest.target, i) for i in range(50, 100)]
        victim.start()
        acks += [ingest_one(pb, ingest.target, i) for i in range(100, 150)]

        wait_count(mongo.records, 150, timeout=90)
        wait_count(mongo.audit, 150, timeout=90)
        assert ids(mongo.records) == {a.id for a in acks}
        assert len({a.sequence for a in acks}) == 150
        assert count(mongo.audit) == 150
        for svc in (transform, audit, ingest):
            assert svc.stop() == 0, svc.log()[-3000:]
    finally:
        cluster.stop()
