"""The HTTP endpoint of sluice-transform and sluice-audit: /metrics with the
consumer's counters moving as records flow (stored, dead-lettered, MongoDB
write latency, JetStream pending), /healthz, and /readyz following MongoDB
going away and coming back while the service is idle."""

import json

import harness
from conftest_downstream import (downstream, ferretdb, mongo, order,  # noqa: F401
                                 send, wait_count)

metric = harness.metric
scrape = harness.scrape


def ready(svc):
    return harness.http_get(svc.metrics_port, "/readyz")


def test_consumer_metrics_move(pb, ingest, downstream, mongo):
    transform = downstream("transform", rules={"order.*": "{total: (.price / .qty)}"})
    audit = downstream("audit")
    for svc in (transform, audit):
        assert harness.http_get(svc.metrics_port, "/healthz")[0] == 200
        harness.wait_until(lambda: ready(svc)[0] == 200, what=f"{svc.name} ready")
        assert metric(scrape(svc), "sluice_consumer_ready") == 1

    n = 30
    recs = [order(pb, i, payload=json.dumps({"price": i, "qty": 2}).encode()) for i in range(n)]
    recs.append(order(pb, n, payload=b'{"price": "ten", "qty": 2}'))  # jq fails on it
    send(pb, ingest, recs)
    wait_count(mongo.records, n)
    wait_count(mongo.audit, n + 1)

    def settled(svc, stored, dlq):
        text = scrape(svc)
        c = dict(consumer=svc.name)
        return (metric(text, "sluice_consumer_messages_total", outcome="stored", **c) == stored
                and metric(text, "sluice_consumer_messages_total", outcome="dlq", **c) == dlq
                and metric(text, "sluice_consumer_pending_messages", **c) == 0
                and metric(text, "sluice_consumer_ack_pending_messages", **c) == 0)

    harness.wait_until(lambda: settled(transform, n, 1), timeout=20, what="transform counted")
    harness.wait_until(lambda: settled(audit, n + 1, 0), timeout=20, what="audit counted")
    for svc, stored in ((transform, n), (audit, n + 1)):
        text = scrape(svc)
        c = dict(consumer=svc.name)
        assert metric(text, "sluice_consumer_delivered_total", **c) == n + 1
        assert metric(text, "sluice_consumer_messages_total", outcome="duplicate", **c) == 0
        assert metric(text, "sluice_consumer_messages_total", outcome="nak", **c) == 0
        assert metric(text, "sluice_consumer_mongo_errors_total", **c) == 0
        writes = metric(text, "sluice_consumer_mongo_write_seconds_count", **c)
        assert 1 <= writes <= stored
        assert metric(text, "sluice_consumer_mongo_write_seconds_bucket", le="+Inf", **c) == writes
        assert metric(text, "sluice_consumer_mongo_write_seconds_sum", **c) > 0
        assert "# TYPE sluice_consumer_mongo_write_seconds histogram" in text
        assert metric(text, "process_resident_memory_bytes") > 0


def test_readyz_follows_mongodb_while_idle(pb, ingest, ferretdb, downstream, mongo):
    transform = downstream("transform")
    audit = downstream("audit")
    for svc in (transform, audit):
        harness.wait_until(lambda: ready(svc)[0] == 200, what=f"{svc.name} ready")

    ferretdb.stop()
    for svc in (transform, audit):
        harness.wait_until(lambda: ready(svc)[0] == 503, timeout=30,
                           what=f"{svc.name} not ready without MongoDB")
        assert "MongoDB" in ready(svc)[1]
        assert harness.http_get(svc.metrics_port, "/healthz")[0] == 200  # alive all the same
        assert metric(scrape(svc), "sluice_consumer_ready") == 0

    ferretdb.start()
    for svc in (transform, audit):
        harness.wait_until(lambda: ready(svc)[0] == 200, timeout=30,
                           what=f"{svc.name} ready again")
    # And it works: a record sent now is stored by both.
    send(pb, ingest, [order(pb, 1)])
    wait_count(mongo.records, 1)
    wait_count(mongo.audit, 1)


def test_record_events_logged_with_id_and_sequence(pb, ingest, downstream, mongo):
    """At debug level each service writes one JSON line per record with its id
    and stream sequence, so a record can be followed through the pipeline."""
    transform = downstream("transform")
    audit = downstream("audit")
    recs = [order(pb, i, prefix="log") for i in range(5)]
    acks = send(pb, ingest, recs)
    wait_count(mongo.records, 5)
    wait_count(mongo.audit, 5)
    want = {(a.id, a.sequence) for a in acks}

    stored = [e for e in ingest.events("record stored") if e["msg"] == "record stored"]
    assert {(e["id"], e["stream_seq"]) for e in stored} == want
    assert all(e["service"] == "sluice-ingest" and e["level"] == "debug" for e in stored)
    for svc in (transform, audit):
        harness.wait_until(lambda: len(svc.events("record stored")) == 5,
                           what=f"{svc.name} logged every record")
        events = svc.events("record stored")
        assert {(e["record_id"], e["stream_seq"]) for e in events} == want
        assert all(e["service"] == f"sluice-{svc.name}" for e in events)
