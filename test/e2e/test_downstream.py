"""sluice-transform and sluice-audit end to end: records written through the
real sluice-ingest with grpcio, stored by the real consumers in a real
FerretDB, read back with pymongo; the streams read with nats-py. Each test
says what it proves in its name; the loads are bounded (at most 20,000
records, sent with IngestStream)."""

import hashlib
import json
import subprocess
import time

import nats
import pytest

import harness
from conftest_downstream import (DLQ, STREAM, Loader, as_ms, consumer_done,  # noqa: F401
                                 consumer_info, count, downstream, ferretdb, ids,
                                 ingest_stub, mongo, order,
                                 rfc3339_ms, run_async, send, stays, stream_exists,
                                 stream_msg, stream_msgs, wait_count)

RULES = {
    "order.created": "{total: (.items | map(.price * .qty) | add), items: (.items | length)}",
    "order.*": "{order: .n, kind: \"other-order\"}",
    "user.>": "{email: (.email | ascii_downcase), tags: [.tags[]? | tostring]}",
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def expected_data(rec):
    p = json.loads(rec.payload)
    if rec.type == "order.created":
        return {"total": sum(i["price"] * i["qty"] for i in p["items"]), "items": len(p["items"])}
    if rec.type.startswith("order."):
        return {"order": p["n"], "kind": "other-order"}
    if rec.type.startswith("user."):
        return {"email": p["email"].lower(), "tags": [str(t) for t in p.get("tags", [])]}
    return p


def mixed_records(pb, n):
    recs = []
    for i in range(n):
        k = i % 4
        if k == 0:
            r = order(pb, i, key=f"cust-{i % 5}", attributes={"source": "web", "app.version": "2"})
        elif k == 1:
            r = order(pb, i, type="order.paid")
        elif k == 2:
            r = pb.ingest.Record(id=f"u-{i}", type="user.signup.v2", payload=json.dumps(
                {"email": f"User{i}@Example.COM", "tags": [i, "x"]}).encode())
        else:
            r = pb.ingest.Record(id=f"m-{i}", type="metrics.cpu", payload=json.dumps(
                {"host": f"h{i}", "load": [0.5, 1.25], "ok": True, "none": None}).encode())
        if i % 3 == 0:
            r.event_time.seconds = 1767225600 + i
            r.event_time.nanos = 123456789
        recs.append(r)
    return recs


# ---- what is stored ----------------------------------------------------------

def test_every_field_of_records_and_audit(pb, ingest, nats_server, downstream, mongo):
    downstream("transform", rules=RULES)
    downstream("audit")
    recs = mixed_records(pb, 40)
    acks = send(pb, ingest, recs)
    # Two more through unary Ingest with a traceparent in the gRPC metadata.
    stub, ch = ingest_stub(pb, ingest)
    traced = [order(pb, 1000 + i, prefix="t") for i in range(2)]
    for r in traced:
        acks.append(stub.Ingest(pb.ingest.IngestRequest(record=r),
                                metadata=[("traceparent", TRACEPARENT)], timeout=10))
    ch.close()
    recs += traced
    n = len(recs)
    wait_count(mongo.records, n)
    wait_count(mongo.audit, n)

    for rec, ack in zip(recs, acks):
        msg = stream_msg(nats_server.url, ack.sequence)
        received_ms = rfc3339_ms(msg.headers["Sluice-Received-At"])
        doc = mongo.records.find_one({"_id": ack.id})
        assert doc is not None, ack.id
        assert doc["type"] == rec.type
        assert doc["key"] == (rec.key or None)
        want_attrs = {k.replace(".", "\uff0e"): v for k, v in rec.attributes.items()}
        assert doc["attributes"] == want_attrs
        if rec.HasField("event_time"):
            assert as_ms(doc["event_time"]) == rec.event_time.seconds * 1000 + 123
        else:
            assert doc["event_time"] is None
        assert as_ms(doc["received_at"]) == received_ms
        assert doc["stream_seq"] == ack.sequence
        assert doc["data"] == expected_data(rec)
        assert as_ms(doc["transformed_at"]) >= received_ms
        assert doc.get("traceparent") == (TRACEPARENT if rec.id.startswith("t-") else None)

        entry = mongo.audit.find_one({"stream_seq": ack.sequence})
        assert entry is not None
        assert set(entry) == {"_id", "stream", "stream_seq", "record_id", "type", "key",
                              "payload_sha256", "payload_bytes", "principal", "received_at",
                              "audited_at", "deliveries"}
        # Keyed by stream, sequence and the time the stream stored it (ns).
        stream, seq, stored = entry["_id"].split(":", 2)
        assert (stream, int(seq), entry["stream"]) == (STREAM, ack.sequence, STREAM)
        assert stored[:26] == msg.time.strftime("%Y-%m-%dT%H:%M:%S.%f") and stored[-1] == "Z"
        assert entry["record_id"] == ack.id
        assert entry["type"] == rec.type
        assert entry["key"] == (rec.key or None)
        assert entry["payload_sha256"] == hashlib.sha256(rec.payload).hexdigest()
        assert entry["payload_bytes"] == len(rec.payload)
        assert entry["principal"] is None
        assert as_ms(entry["received_at"]) == received_ms
        assert as_ms(entry["audited_at"]) >= received_ms
        assert entry["deliveries"] == 1

    # Unknown types are stored as sent; the indexes were provisioned.
    cpu = mongo.records.find_one({"type": "metrics.cpu"})
    assert cpu["data"] == {"host": cpu["data"]["host"], "load": [0.5, 1.25], "ok": True,
                           "none": None}
    rix = {tuple(v["key"]) for v in mongo.records.index_information().values()}
    aix = {tuple(v["key"]) for v in mongo.audit.index_information().values()}
    assert (("type", 1), ("received_at", 1)) in rix
    assert (("record_id", 1),) in aix


# ---- independence --------------------------------------------------------------

def test_each_service_runs_at_its_own_pace(pb, ingest, nats_server, downstream, mongo):
    transform = downstream("transform")
    audit = downstream("audit")
    acks = send(pb, ingest, [order(pb, i) for i in range(200)])
    wait_count(mongo.records, 200)
    wait_count(mongo.audit, 200)

    # transform stops in the middle of a load: ingest keeps acknowledging,
    # audit keeps up, and transform exits cleanly after settling its batch.
    loader = Loader(pb, ingest, [order(pb, i) for i in range(200, 1200)])
    loader.start()
    time.sleep(0.2)
    assert transform.stop() == 0
    acks += loader.acks()
    acks += send(pb, ingest, [order(pb, i) for i in range(1200, 1500)])
    assert len(acks) == 1500
    wait_count(mongo.audit, 1500)
    held = count(mongo.records)
    assert held <= 1200
    stays(mongo.records, held, 1.0)

    # Restarted, it catches up exactly; nothing it had stored comes back to
    # it, because it acknowledged its last batch before exiting.
    transform = downstream("transform")
    wait_count(mongo.records, 1500)
    stays(mongo.records, 1500)
    assert ids(mongo.records) == {a.id for a in acks}
    assert transform.stop() == 0
    assert transform.final_stats()["duplicates"] == 0

    # And the other way round.
    downstream("transform")
    assert audit.stop() == 0
    acks += send(pb, ingest, [order(pb, i) for i in range(1500, 1800)])
    wait_count(mongo.records, 1800)
    assert count(mongo.audit) == 1500
    downstream("audit")
    wait_count(mongo.audit, 1800)
    stays(mongo.audit, 1800)
    assert ids(mongo.audit, "record_id") == {a.id for a in acks}


def test_kill_9_mid_load_then_exactly_once(pb, ingest, nats_server, downstream, mongo):
    n = 20000
    transform = downstream("transform", ack_wait="2s")
    audit = downstream("audit", ack_wait="2s")
    loader = Loader(pb, ingest, [order(pb, i) for i in range(n)])
    loader.start()
    harness.wait_until(lambda: loader.check() and count(mongo.records) >= 3000, timeout=60,
                       what="transform under way")
    transform.kill()
    harness.wait_until(lambda: loader.check() and count(mongo.audit) >= 6000, timeout=60,
                       what="audit under way")
    audit.kill()
    acks = loader.acks()
    assert len(acks) == n
    assert count(mongo.records) < n and count(mongo.audit) < n

    transform = downstream("transform", ack_wait="2s")
    audit = downstream("audit", ack_wait="2s")
    wait_count(mongo.records, n, timeout=120)
    wait_count(mongo.audit, n, timeout=120)
    harness.wait_until(lambda: consumer_done(nats_server.url, "transform") and
                       consumer_done(nats_server.url, "audit"), timeout=30,
                       what="both consumers fully acknowledged")
    stays(mongo.records, n, 1.0)
    assert count(mongo.audit) == n
    want = {a.id for a in acks}
    assert ids(mongo.records) == want
    assert ids(mongo.audit, "record_id") == want
    audit_ids = {d["_id"]: d["stream_seq"] for d in mongo.audit.find({}, {"stream_seq": 1})}
    assert sorted(audit_ids.values()) == sorted(a.sequence for a in acks)
    assert all(k.startswith(f"{STREAM}:{seq}:") for k, seq in audit_ids.items())


def test_ferretdb_down_during_load(pb, ingest, nats_server, ferretdb, downstream, mongo):
    transform = downstream("transform")
    audit = downstream("audit")
    acks = send(pb, ingest, [order(pb, i) for i in range(1000)])
    loader = Loader(pb, ingest, [order(pb, i) for i in range(1000, 4000)])
    loader.start()
    ferretdb.stop()
    acks += loader.acks()
    # Ingest never depended on the store.
    assert len(acks) == 4000
    acks += send(pb, ingest, [order(pb, i) for i in range(4000, 5000)])
    time.sleep(2)

    ferretdb.start()  # same data directory, same port
    wait_count(mongo.records, 5000, timeout=120)
    wait_count(mongo.audit, 5000, timeout=120)
    stays(mongo.records, 5000)
    assert ids(mongo.records) == {a.id for a in acks}
    assert ids(mongo.audit, "record_id") == {a.id for a in acks}
    for svc in (transform, audit):
        assert svc.stop() == 0
        stats = svc.final_stats()
        assert stats["dlq"] == 0
        assert any(e["msg"].startswith(("MongoDB not reachable", "MongoDB write failed"))
                   for e in svc.events()), svc.name


def test_two_replicas_share_one_durable(pb, ingest, nats_server, downstream, mongo):
    a = downstream("transform", "--batch-size=50")
    b = downstream("transform", "--batch-size=50")
    n = 6000
    acks = send(pb, ingest, [order(pb, i) for i in range(n)])
    wait_count(mongo.records, n, timeout=120)
    harness.wait_until(lambda: consumer_done(nats_server.url, "transform"), timeout=30,
                       what="transform fully acknowledged")
    stays(mongo.records, n, 1.0)
    assert ids(mongo.records) == {x.id for x in acks}
    assert a.stop() == 0 and b.stop() == 0
    sa, sb = a.final_stats(), b.final_stats()
    assert sa["stored"] > 0 and sb["stored"] > 0, (sa, sb)
    assert sa["stored"] + sb["stored"] == n
    assert sa["delivered"] + sb["delivered"] == n
    assert sa["consumer"] == sb["consumer"] == "transform"


# ---- failures ---------------------------------------------------------------------

def test_poison_record_goes_to_dlq(pb, ingest, nats_server, downstream, mongo):
    downstream("transform", rules={"order.*": "{total: (.price / .qty)}"})
    downstream("audit")
    recs = [order(pb, i, payload=json.dumps({"price": i, "qty": 2}).encode()) for i in range(10)]
    poison = order(pb, 10, payload=b'{"price": "ten", "qty": 2}', key="p",
                   attributes={"why": "poison"})
    recs += [poison]
    recs += [order(pb, i, payload=json.dumps({"price": i, "qty": 4}).encode())
             for i in range(11, 21)]
    acks = send(pb, ingest, recs)
    wait_count(mongo.records, 20)
    wait_count(mongo.audit, 21)  # audit has no quarrel with it
    assert mongo.records.find_one({"_id": poison.id}) is None
    assert mongo.records.find_one({"_id": recs[9].id})["data"] == {"total": 4.5}
    assert mongo.records.find_one({"_id": recs[11].id})["data"] == {"total": 2.75}

    harness.wait_until(lambda: stream_exists(nats_server.url, DLQ) and
                       len(stream_msgs(nats_server.url, DLQ)) == 1, timeout=10,
                       what="one dead letter")
    dead = stream_msgs(nats_server.url, DLQ)[0]
    original = stream_msg(nats_server.url, acks[10].sequence)
    assert dead.subject == "sluice.dlq.transform.order.created"
    assert 'string ("ten") and number (2) cannot be divided' in dead.headers["Sluice-Error"]
    assert dead.headers["Sluice-Error"].startswith('jq rule "order.*": ')
    assert dead.headers["Sluice-Consumer"] == "transform"
    assert dead.headers["Sluice-Stream-Seq"] == str(acks[10].sequence)
    assert dead.headers["Sluice-Record-Id"] == poison.id
    for h in ("Sluice-Type", "Sluice-Key", "Sluice-Received-At"):
        assert dead.headers[h] == original.headers[h]
    stored = pb.ingest.Record.FromString(dead.data)
    assert stored.payload == poison.payload and stored.id == poison.id
    # Terminated, not waiting for redelivery.
    harness.wait_until(lambda: consumer_done(nats_server.url, "transform"), timeout=10,
                       what="transform settled everything")
    assert consumer_info(nats_server.url, "transform").num_redelivered == 0


def test_last_delivery_failing_goes_to_dlq(pb, ingest, nats_server, ferretdb, downstream, mongo):
    """With MaxDeliver 1, a write that fails on the only delivery cannot be
    retried (the server would never redeliver it): those records go to the
    dead-letter stream instead of vanishing. Whatever the store missed is in
    the DLQ, whatever is stored is not: nothing is lost, nothing doubled."""
    downstream("transform", "--max-deliver=1")
    acks = send(pb, ingest, [order(pb, 0)])
    wait_count(mongo.records, 1)
    ferretdb.stop()
    acks += send(pb, ingest, [order(pb, i) for i in range(1, 6)])
    harness.wait_until(lambda: stream_exists(nats_server.url, DLQ) and
                       len(stream_msgs(nats_server.url, DLQ)) >= 1, timeout=30,
                       what="a dead letter")
    ferretdb.start()
    harness.wait_until(lambda: consumer_done(nats_server.url, "transform"), timeout=60,
                       what="transform settled everything")
    dead = stream_msgs(nats_server.url, DLQ)
    for m in dead:
        assert m.headers["Sluice-Error"].startswith("gave up after 1 deliveries: MongoDB write failed")
    dead_ids = {m.headers["Sluice-Record-Id"] for m in dead}
    stored = ids(mongo.records)
    assert len(dead_ids) == len(dead)
    assert not dead_ids & stored
    assert dead_ids | stored == {a.id for a in acks}


def test_undecodable_message_dead_lettered_by_both(pb, ingest, nats_server, downstream, mongo):
    """A body that is not a sluice.v1.Record (published around ingest) is a
    terminal error for each consumer, dead-lettered once by each."""
    downstream("transform")
    downstream("audit")
    send(pb, ingest, [order(pb, 0)])

    async def publish():
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish("sluice.rec.raw.bytes", b"\xff\x00garbage",
                                         headers={"Nats-Msg-Id": "raw-1"})
        finally:
            await nc.close()
    run_async(publish())
    send(pb, ingest, [order(pb, 2)])
    wait_count(mongo.records, 2)
    wait_count(mongo.audit, 2)
    harness.wait_until(lambda: stream_exists(nats_server.url, DLQ) and
                       len(stream_msgs(nats_server.url, DLQ)) == 2, timeout=10,
                       what="two dead letters")
    dead = {m.subject: m for m in stream_msgs(nats_server.url, DLQ)}
    assert set(dead) == {"sluice.dlq.transform.raw.bytes", "sluice.dlq.audit.raw.bytes"}
    for m in dead.values():
        assert "not a protobuf sluice.v1.Record" in m.headers["Sluice-Error"]
        assert m.headers["Sluice-Stream-Seq"] == "2"
        assert m.headers["Sluice-Record-Id"] == "raw-1"
        assert m.data == b"\xff\x00garbage"


# ---- replay ---------------------------------------------------------------------------

def test_replay_from_seq_rewrites_nothing_twice(pb, ingest, nats_server, downstream, mongo):
    downstream("transform")
    downstream("audit")
    acks = send(pb, ingest, [order(pb, i) for i in range(300)])
    wait_count(mongo.records, 300)
    wait_count(mongo.audit, 300)
    before = {d["_id"]: d for d in mongo.records.find()}
    audit_before = {d["_id"]: d for d in mongo.audit.find()}
    # Lose ten documents from the middle of the replayed range.
    lost = [a.id for a in acks if 150 <= a.sequence < 160]
    assert mongo.records.delete_many({"_id": {"$in": lost}}).deleted_count == 10

    replay = downstream("transform", "--replay-from-seq=101")
    audit_replay = downstream("audit", "--replay-from-time=2000-01-01T00:00:00Z")
    harness.wait_until(lambda: consumer_done(nats_server.url, "transform-replay-seq-101") and
                       consumer_done(nats_server.url, "audit-replay-time-946684800"),
                       timeout=30, what="replays finished")
    wait_count(mongo.records, 300)
    stays(mongo.records, 300, 1.0)
    assert count(mongo.audit) == 300
    assert replay.stop() == 0 and audit_replay.stop() == 0
    rs, ars = replay.final_stats(), audit_replay.final_stats()
    assert rs["consumer"] == "transform-replay-seq-101"
    assert (rs["delivered"], rs["stored"], rs["duplicates"]) == (200, 10, 190)
    assert (ars["delivered"], ars["stored"], ars["duplicates"]) == (300, 0, 300)
    # Everything that was there is untouched; the lost ten are back, once.
    after = {d["_id"]: d for d in mongo.records.find()}
    for _id, doc in before.items():
        if _id in lost:
            assert after[_id]["stream_seq"] == doc["stream_seq"]
            assert after[_id]["data"] == doc["data"]
        else:
            assert after[_id] == doc
    assert {d["_id"]: d for d in mongo.audit.find()} == audit_before
    # The durable consumers were not touched by the replay.
    assert consumer_info(nats_server.url, "transform").delivered.stream_seq == 300


# ---- provisioning and configuration -----------------------------------------------------

def test_existing_index_reported_not_changed(pb, ingest, nats_server, downstream, mongo):
    """An index of the configured name with other keys is reported and kept
    (the consumer's own settings are brought up to date instead: see
    test_loss_paths.py)."""
    send(pb, ingest, [order(pb, 0)])
    mongo.audit.create_index([("type", 1)], name="record_id")
    audit = downstream("audit")
    wait_count(mongo.audit, 1)
    ix = audit.events("index exists with other settings; keeping it")
    assert ix and ix[0]["index"] == "record_id" and "IndexKeySpecsConflict" not in ix[0]["configured"]
    assert mongo.audit.index_information()["record_id"]["key"] == [("type", 1)]


def test_starts_before_the_stream_exists(pb, nats_server, downstream, mongo):
    """Started on an empty server, the consumers wait for the stream; the
    first records ingest writes then reach both."""
    t = downstream("transform", wait=False)
    a = downstream("audit", wait=False)
    harness.wait_until(lambda: t.events("waiting for NATS and stream SLUICE") and
                       a.events("waiting for NATS and stream SLUICE"), timeout=10,
                       what="both waiting for the stream")
    ing = harness.Ingest(nats_server.url).start()
    try:
        send(pb, ing, [order(pb, i) for i in range(5)])
        wait_count(mongo.records, 5, timeout=30)
        wait_count(mongo.audit, 5, timeout=30)
    finally:
        assert ing.stop() == 0


@pytest.mark.parametrize("name,args,needle", [
    ("transform", ["--batch-size=0"], "invalid --batch-size \"0\""),
    ("transform", ["--consumer=a.b"], "invalid --consumer \"a.b\""),
    ("audit", ["--replay-from-seq=5", "--replay-from-time=2026-01-01T00:00:00Z"],
     "exclude each other"),
    ("audit", ["--mongodb-uri=http://x"], "invalid MongoDB URI"),
    ("transform", ["--transform-rules=RULES"], "does not compile"),
])
def test_invalid_configuration_exits_2_with_one_line(tmp_path, name, args, needle):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"order.*": ".", "bad.*": "{total: .n * 2}"}))
    args = [a.replace("RULES", str(rules)) for a in args]
    p = subprocess.run([harness.service_binary(name)] + args, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sluice-{name}: ") and needle in lines[0], \
        p.stderr
    if "compile" in needle:
        assert str(rules) in lines[0] and '"bad.*"' in lines[0]


@pytest.mark.parametrize("name", ["transform", "audit"])
def test_help_lists_every_setting(name):
    p = subprocess.run([harness.service_binary(name), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0
    for flag, env in [("--nats-url", "NATS_URL"), ("--mongodb-uri", "MONGODB_URI"),
                      ("--stream", "SLUICE_STREAM"), ("--consumer", "SLUICE_CONSUMER"),
                      ("--batch-size", "SLUICE_BATCH_SIZE"), ("--fetch-wait", "SLUICE_FETCH_WAIT"),
                      ("--ack-wait", "SLUICE_ACK_WAIT"), ("--max-deliver", "SLUICE_MAX_DELIVER"),
                      ("--replay-from-seq", "SLUICE_REPLAY_FROM_SEQ"),
                      ("--replay-from-time", "SLUICE_REPLAY_FROM_TIME"),
                      ("--metrics-listen", "SLUICE_METRICS_LISTEN"),
                      ("--log-level", "SLUICE_LOG_LEVEL")]:
        assert flag in p.stdout and env in p.stdout
    if name == "transform":
        assert "--transform-rules" in p.stdout and "SLUICE_TRANSFORM_RULES" in p.stdout
    assert ("0.0.0.0:9091" if name == "transform" else "0.0.0.0:9092") in p.stdout
