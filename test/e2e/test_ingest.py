"""sluice-ingest end to end: a real nats-server with JetStream, the real
binary, and Python grpcio stubs compiled from proto/ at test time. What the
service answers is checked against what the stream really holds, read back
with nats-py."""

import json
import signal
import subprocess
import threading
import time

import grpc
import nats
import pytest

import harness
import wire

STREAM = "SLUICE"


def record(pb, payload=None, **kw):
    kw.setdefault("type", "order.created")
    body = payload if payload is not None else json.dumps({"n": 1}).encode()
    return pb.ingest.Record(payload=body, **kw)


def stub(pb, svc):
    channel = grpc.insecure_channel(svc.target)
    grpc.channel_ready_future(channel).result(timeout=10)
    return pb.ingest_grpc.IngestServiceStub(channel), channel


async def stream_msg(url, seq):
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().get_msg(STREAM, seq)
    finally:
        await nc.close()


async def stream_count(url):
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(STREAM)).state.messages
    finally:
        await nc.close()


def check_stored(pb, run, url, rec, ack):
    """The stream holds rec at ack.sequence, with subject, headers and body."""
    msg = run(stream_msg(url, ack.sequence))
    assert msg.subject == f"sluice.rec.{rec.type}"
    assert msg.headers["Nats-Msg-Id"] == ack.id
    assert msg.headers["Sluice-Type"] == rec.type
    if rec.key:
        assert msg.headers["Sluice-Key"] == rec.key
    received = msg.headers["Sluice-Received-At"]
    assert received.endswith("Z") and len(received) == len("2026-01-01T00:00:00.123456789Z")
    stored = pb.ingest.Record.FromString(msg.data)
    expected = pb.ingest.Record()
    expected.CopyFrom(rec)
    expected.id = ack.id
    assert stored == expected
    return msg


# ---- Ingest ------------------------------------------------------------------

def test_ingest_ack_means_stored(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    rec = record(pb, id="order-1", key="customer-7", attributes={"source": "web"},
                 payload=b'{"total": 12.5}')
    rec.event_time.FromSeconds(1700000000)
    resp = s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    assert resp.id == "order-1" and resp.stream == STREAM
    assert resp.sequence == 1 and not resp.duplicate
    check_stored(pb, run, nats_server.url, rec, resp)
    ch.close()


def test_ingest_assigns_uuid7_when_id_empty(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    rec = record(pb)
    a = s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    b = s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    assert a.id != b.id and len(a.id) == 36 and a.id[14] == "7"
    assert b.sequence == a.sequence + 1
    check_stored(pb, run, nats_server.url, rec, a)
    ch.close()


def test_ingest_duplicate_id(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    rec = record(pb, id="dup-1")
    first = s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    again = s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    assert not first.duplicate and again.duplicate
    assert again.sequence == first.sequence and again.id == "dup-1"
    assert run(stream_count(nats_server.url)) == 1
    ch.close()


def test_traceparent_travels_in_headers(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    resp = s.Ingest(pb.ingest.IngestRequest(record=record(pb)), timeout=10,
                    metadata=[("traceparent", tp)])
    msg = run(stream_msg(nats_server.url, resp.sequence))
    assert msg.headers["traceparent"] == tp
    ch.close()


INVALID = [
    ("missing record", None, "record: required"),
    ("missing type", dict(type=""), "record.type: required"),
    ("uppercase type", dict(type="Order.Created"), "record.type: must be"),
    ("empty token", dict(type="order..created"), "record.type: must be"),
    ("wildcard type", dict(type="order.*"), "record.type: must be"),
    ("long type", dict(type="a" * 129), "record.type: must be"),
    ("bad id chars", dict(id="has space"), "record.id: must be"),
    ("long id", dict(id="x" * 129), "record.id: must be"),
    ("missing payload", dict(payload=b""), "record.payload: required"),
    ("array payload", dict(payload=b"[1,2]"), "record.payload: must be a UTF-8 JSON object"),
    ("broken json", dict(payload=b'{"a":'), "record.payload: must be a UTF-8 JSON object"),
    ("two objects", dict(payload=b"{}{}"), "record.payload: must be a UTF-8 JSON object"),
    ("not utf-8", dict(payload=b'{"a":"\xff"}'), "record.payload: must be a UTF-8 JSON object"),
    ("control char in key", dict(key="a\nb"), "record.key: must be"),
    ("empty attribute key", dict(attributes={"": "v"}), "record.attributes: keys must not be empty"),
]


@pytest.mark.parametrize("name,fields,message", INVALID, ids=[c[0] for c in INVALID])
def test_ingest_rejects_invalid(pb, ingest, nats_server, run, name, fields, message):
    s, ch = stub(pb, ingest)
    if fields is None:
        req = pb.ingest.IngestRequest()
    else:
        base = dict(type="order.created", payload=b'{"a":1}')
        base.update(fields)
        req = pb.ingest.IngestRequest(record=pb.ingest.Record(**base))
    with pytest.raises(grpc.RpcError) as err:
        s.Ingest(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(message), err.value.details()
    assert ingest.running()
    ch.close()


BAD_STRINGS = [
    ("nul in id", dict(id=b"a\0b"), "record.id: must not contain NUL bytes"),
    ("nul in type", dict(type=b"order\0.created"), "record.type: must not contain NUL bytes"),
    ("nul in key", dict(key=b"k\0"), "record.key: must not contain NUL bytes"),
    ("nul in attribute key", dict(attributes=[(b"a\0b", b"v")]),
     "record.attributes: a key must not contain NUL bytes"),
    ("nul in attribute value", dict(attributes=[(b"a", b"\0")]),
     "record.attributes: a value must not contain NUL bytes"),
    ("invalid utf-8 key", dict(key=b"\xc3("), "record.key: must be valid UTF-8"),
    ("surrogate in attribute value", dict(attributes=[(b"a", b"\xed\xa0\x80")]),
     "record.attributes: a value must be valid UTF-8"),
]


@pytest.mark.parametrize("name,fields,message", BAD_STRINGS, ids=[c[0] for c in BAD_STRINGS])
def test_ingest_rejects_nul_and_invalid_utf8(pb, ingest, nats_server, run, name, fields, message):
    """C strings end at the first NUL: "a\0b" must not be stored as "a".
    Requests built byte by byte (the Python library refuses such strings)."""
    ch = grpc.insecure_channel(ingest.target)
    with pytest.raises(grpc.RpcError) as err:
        wire.raw_method(ch, "Ingest")(wire.ingest_request(wire.record(**fields)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message
    assert run(stream_count(nats_server.url)) == 0
    ch.close()


def test_batch_rejects_nul_per_record(pb, ingest, nats_server, run):
    ch = grpc.insecure_channel(ingest.target)
    recs = [wire.record(id=b"n-0"), wire.record(id=b"n-1\0x"), wire.record(id=b"n-2"),
            wire.record(id=b"n-3", attributes=[(b"k", b"v\0")]), wire.record(id=b"n-4")]
    raw = wire.raw_method(ch, "IngestBatch")(wire.batch_request(recs), timeout=10)
    res = pb.ingest.IngestBatchResponse.FromString(raw).results
    assert [r.WhichOneof("outcome") for r in res] == ["ack", "error", "ack", "error", "ack"]
    # A record refused for its bytes gets no id back: none of its strings is trusted.
    assert [r.id for r in res] == ["n-0", "", "n-2", "", "n-4"]
    assert res[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert res[1].error.message == "records[1].id: must not contain NUL bytes"
    assert res[3].error.message == "records[3].attributes: a value must not contain NUL bytes"
    assert run(harness.stream_ids(nats_server.url)) == ["n-0", "n-2", "n-4"]
    ch.close()


def test_stream_rejects_nul_per_record(pb, ingest, nats_server, run):
    ch = grpc.insecure_channel(ingest.target)
    reqs = [wire.ingest_request(wire.record(id=b"sn-0")),
            wire.ingest_request(wire.record(id=b"sn-1", type=b"a\0")),
            wire.ingest_request(wire.record(id=b"sn-2"))]
    res = [pb.ingest.IngestResult.FromString(r)
           for r in wire.raw_method(ch, "IngestStream", stream=True)(iter(reqs), timeout=10)]
    assert [r.WhichOneof("outcome") for r in res] == ["ack", "error", "ack"]
    assert res[1].error.message == "record.type: must not contain NUL bytes"
    assert res[1].id == ""
    assert run(harness.stream_ids(nats_server.url)) == ["sn-0", "sn-2"]
    ch.close()


EURO = "\u20ac"  # three bytes in UTF-8: a byte limit can cut it in half


def echo_cases():
    """Records whose error or id could carry invalid UTF-8 back to the
    client, each with the message its result must have."""
    long_key = (EURO * 1400).encode()  # 4200 bytes: over the 4096-byte limit
    return [
        (wire.record(id=b"\xff\xfe-1"), "records[{i}].id: must be valid UTF-8"),
        (wire.record(id=(EURO * 50).encode()),  # 150 bytes: cut at 128 before
         "records[{i}].id: must be 1 to 128 characters of [A-Za-z0-9._:-] (or empty for "
         "a server-assigned id)"),
        (wire.record(id="caf\u00e9".encode()),
         "records[{i}].id: must be 1 to 128 characters of [A-Za-z0-9._:-] (or empty for "
         "a server-assigned id)"),
        (wire.record(id=b"e-3", attributes=[(long_key, b"v")]),
         # the quoted key is cut on a character boundary: 21 euros, 63 bytes
         'records[{i}].attributes["' + EURO * 21 + '"]: key and value must be at most '
         "4096 bytes each"),
        (wire.record(id=b"e-4", attributes=[(b"k\xc3", b"v")]),
         "records[{i}].attributes: a key must be valid UTF-8"),
    ]


def test_batch_never_echoes_invalid_utf8(pb, ingest, nats_server, run):
    """A strict client (Python, Go) cannot parse a response holding invalid
    UTF-8: one bad record must not cost the others their results."""
    ch = grpc.insecure_channel(ingest.target)
    cases = echo_cases()
    recs = [wire.record(id=b"e-ok-0")] + [r for r, _ in cases] + [wire.record(id=b"e-ok-1")]
    raw = wire.raw_method(ch, "IngestBatch")(wire.batch_request(recs), timeout=10)
    res = pb.ingest.IngestBatchResponse.FromString(raw).results  # parses: all valid UTF-8
    assert len(res) == len(recs)
    assert res[0].WhichOneof("outcome") == "ack" and res[0].id == "e-ok-0"
    assert res[-1].WhichOneof("outcome") == "ack" and res[-1].id == "e-ok-1"
    for i, (_, message) in enumerate(cases, start=1):
        assert res[i].WhichOneof("outcome") == "error"
        assert res[i].error.message == message.format(i=i)
        assert res[i].id in ("", "e-3"), res[i].id  # only a valid id comes back
    assert run(harness.stream_ids(nats_server.url)) == ["e-ok-0", "e-ok-1"]
    ch.close()


def test_stream_never_echoes_invalid_utf8(pb, ingest, nats_server, run):
    ch = grpc.insecure_channel(ingest.target)
    cases = echo_cases()
    reqs = [wire.ingest_request(r) for r, _ in cases] + [
        wire.ingest_request(wire.record(id=b"e-ok"))]
    raw = list(wire.raw_method(ch, "IngestStream", stream=True)(iter(reqs), timeout=10))
    res = [pb.ingest.IngestResult.FromString(r) for r in raw]
    assert [r.WhichOneof("outcome") for r in res] == ["error"] * len(cases) + ["ack"]
    for r, (_, message) in zip(res, cases):
        assert r.error.message == message.replace("records[{i}]", "record")
    ch.close()


def test_unary_status_message_is_utf8(pb, ingest):
    ch = grpc.insecure_channel(ingest.target)
    rec, message = echo_cases()[3]
    with pytest.raises(grpc.RpcError) as err:
        wire.raw_method(ch, "Ingest")(wire.ingest_request(rec), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message.replace("records[{i}]", "record")
    ch.close()


def test_ingest_rejects_bad_event_time(pb, ingest):
    s, ch = stub(pb, ingest)
    rec = record(pb)
    rec.event_time.seconds = 1
    rec.event_time.nanos = -5
    with pytest.raises(grpc.RpcError) as err:
        s.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("record.event_time.nanos")
    ch.close()


def test_ingest_rejects_oversized_payload(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    big = b'{"blob":"' + b"x" * (1024 * 1024 + 10) + b'"}'
    with pytest.raises(grpc.RpcError) as err:
        s.Ingest(pb.ingest.IngestRequest(record=record(pb, payload=big)), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details().startswith("record.payload: ")
    assert "exceeds the limit of 1048576 bytes" in err.value.details()
    # A record that fits still goes through on the same process.
    ok = s.Ingest(pb.ingest.IngestRequest(record=record(pb)), timeout=10)
    assert ok.sequence == 1
    ch.close()


def test_ingest_rejects_oversized_message(pb, nats_server):
    svc = harness.Ingest(nats_server.url, "--max-message-bytes=128KiB",
                         "--max-payload-bytes=64KiB").start()
    try:
        s, ch = stub(pb, svc)
        big = b'{"blob":"' + b"x" * (200 * 1024) + b'"}'
        with pytest.raises(grpc.RpcError) as err:
            s.Ingest(pb.ingest.IngestRequest(record=record(pb, payload=big)), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ch.close()
    finally:
        assert svc.stop() == 0


# ---- what is stored: known fields only, within the server's max_payload ----

def test_unknown_fields_are_not_stored(pb, ingest, nats_server, run):
    """protobuf-c keeps the unknown fields of a request and would pack them
    back: the stream gets only the record's known fields, also inside
    event_time and the attribute entries."""
    ch = grpc.insecure_channel(ingest.target)
    call = wire.raw_method(ch, "Ingest")
    rec = wire.record(
        id="unk-1", key="k-1", payload=b'{"a":1}',
        attributes=[wire.ld(1, "source") + wire.ld(2, "web") + wire.ld(7, "entry junk")],
        event_time=wire.uint(1, 1700000000) + wire.uint(2, 5) + wire.ld(9, "time junk"),
        extra=wire.ld(99, b"u" * (6 * 1024 * 1024)) + wire.uint(98, 7))
    resp = pb.ingest.IngestResponse.FromString(call(wire.ingest_request(rec), timeout=30))
    assert resp.id == "unk-1" and not resp.duplicate
    msg = run(stream_msg(nats_server.url, resp.sequence))
    expected = record(pb, id="unk-1", key="k-1", payload=b'{"a":1}',
                      attributes={"source": "web"})
    expected.event_time.seconds = 1700000000
    expected.event_time.nanos = 5
    assert len(msg.data) == expected.ByteSize() < 200, len(msg.data)
    assert pb.ingest.Record.FromString(msg.data) == expected
    ch.close()


def test_message_over_server_max_payload(pb):
    """A server with the default max_payload (1MB) and ingest's default 1 MiB
    payload limit: a valid record whose message cannot fit gets
    RESOURCE_EXHAUSTED naming the limit, never UNAVAILABLE (a retry cannot
    help), and the connection stays up for the records that fit. The start
    log warns about it."""
    srv = harness.NatsServer(config="jetstream {}\n").start()
    svc = harness.Ingest(srv.url).start()
    try:
        s, ch = stub(pb, svc)
        limit = 1024 * 1024
        # The body alone over max_payload (cnats refuses it), then a body that
        # fits with headers that do not (the server would cut the connection).
        for rid, size in (("mp-body", limit), ("mp-hdrs", limit - 25 - 40)):
            payload = b'{"b":"' + b"x" * (size - 8) + b'"}'
            assert len(payload) == size
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                s.Ingest(pb.ingest.IngestRequest(record=record(pb, id=rid, payload=payload)),
                         timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
            assert "max_payload of 1048576 bytes" in err.value.details(), err.value.details()
            assert time.monotonic() - t0 < 2
        ok = s.Ingest(pb.ingest.IngestRequest(record=record(pb, id="mp-ok")), timeout=10)
        assert ok.sequence == 1
        assert not svc.events("disconnected from NATS")
        warned = [e["msg"] for e in svc.events() if e.get("level") == "warn" and
                  "max_payload" in e.get("msg", "")]
        assert warned and "1048576" in warned[0], svc.log()[-3000:]
        ch.close()
    finally:
        assert svc.stop() == 0
        srv.stop()


# ---- IngestBatch -----------------------------------------------------------

def test_batch_partial_success_in_order(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    recs = [
        record(pb, id="b-0"),
        pb.ingest.Record(id="b-1", type="Bad", payload=b"{}"),
        record(pb, id="b-2", type="user.signed_up", key="u1"),
        pb.ingest.Record(id="b-3", type="x.y", payload=b"[]"),
        record(pb, id="b-4"),
    ]
    resp = s.IngestBatch(pb.ingest.IngestBatchRequest(records=recs), timeout=10)
    assert [r.id for r in resp.results] == ["b-0", "b-1", "b-2", "b-3", "b-4"]
    kinds = [r.WhichOneof("outcome") for r in resp.results]
    assert kinds == ["ack", "error", "ack", "error", "ack"]
    assert resp.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.results[1].error.message.startswith("records[1].type: must be")
    assert resp.results[3].error.message.startswith("records[3].payload: must be")
    for i in (0, 2, 4):
        check_stored(pb, run, nats_server.url, recs[i], resp.results[i].ack)
    seqs = [resp.results[i].ack.sequence for i in (0, 2, 4)]
    assert sorted(seqs) == [1, 2, 3]
    assert run(stream_count(nats_server.url)) == 3
    ch.close()


def test_batch_duplicates(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    recs = [record(pb, id=f"bd-{i}") for i in range(20)]
    first = s.IngestBatch(pb.ingest.IngestBatchRequest(records=recs), timeout=10)
    again = s.IngestBatch(pb.ingest.IngestBatchRequest(records=recs), timeout=10)
    for a, b in zip(first.results, again.results):
        assert not a.ack.duplicate and b.ack.duplicate
        assert a.ack.sequence == b.ack.sequence
    assert run(stream_count(nats_server.url)) == 20
    ch.close()


def test_batch_limits(pb, nats_server):
    svc = harness.Ingest(nats_server.url, "--max-batch=10").start()
    try:
        s, ch = stub(pb, svc)
        with pytest.raises(grpc.RpcError) as err:
            s.IngestBatch(pb.ingest.IngestBatchRequest(records=[]), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("records: must hold 1 to 10 records")
        with pytest.raises(grpc.RpcError) as err:
            s.IngestBatch(pb.ingest.IngestBatchRequest(records=[record(pb)] * 11), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "(got 11)" in err.value.details()
        ch.close()
    finally:
        assert svc.stop() == 0


def test_in_flight_bound(pb, nats_server, run):
    svc = harness.Ingest(nats_server.url, "--max-in-flight=1").start()
    try:
        s, ch = stub(pb, svc)
        recs = [record(pb, id=f"f-{i}") for i in range(200)]
        resp = s.IngestBatch(pb.ingest.IngestBatchRequest(records=recs), timeout=30)
        codes = [r.error.code if r.WhichOneof("outcome") == "error" else 0 for r in resp.results]
        exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert set(codes) <= {0, exhausted}
        assert codes.count(exhausted) > 0 and codes.count(0) > 0
        msg = next(r.error.message for r in resp.results if r.WhichOneof("outcome") == "error")
        assert "too many records in flight (limit 1)" in msg
        assert run(stream_count(nats_server.url)) == codes.count(0)
        ch.close()
    finally:
        assert svc.stop() == 0


# ---- IngestStream ------------------------------------------------------------

def test_stream_10000_in_order(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    n = 10000

    def requests():
        for i in range(n):
            yield pb.ingest.IngestRequest(record=record(pb, id=f"s-{i:05d}",
                                                        payload=b'{"i": %d}' % i))

    results = list(s.IngestStream(requests(), timeout=120))
    assert len(results) == n
    assert [r.id for r in results] == [f"s-{i:05d}" for i in range(n)]
    assert all(r.WhichOneof("outcome") == "ack" for r in results)
    seqs = [r.ack.sequence for r in results]
    assert sorted(seqs) == list(range(1, n + 1))
    assert run(stream_count(nats_server.url)) == n
    for i in (0, 4999, n - 1):
        check_stored(pb, run, nats_server.url,
                     record(pb, id=f"s-{i:05d}", payload=b'{"i": %d}' % i), results[i].ack)
    ch.close()


def test_stream_mixed_valid_invalid_and_duplicates(pb, ingest, nats_server, run):
    s, ch = stub(pb, ingest)
    reqs = [
        pb.ingest.IngestRequest(record=record(pb, id="m-0")),
        pb.ingest.IngestRequest(),
        pb.ingest.IngestRequest(record=record(pb, id="m-0")),
        pb.ingest.IngestRequest(record=pb.ingest.Record(id="m-3", type="ok", payload=b"1")),
        pb.ingest.IngestRequest(record=record(pb, id="m-4")),
    ]
    res = list(s.IngestStream(iter(reqs), timeout=30))
    assert [r.WhichOneof("outcome") for r in res] == ["ack", "error", "ack", "error", "ack"]
    assert res[1].error.message == "record: required"
    assert res[2].ack.duplicate and res[2].ack.sequence == res[0].ack.sequence
    assert res[3].error.message.startswith("record.payload: must be a UTF-8 JSON object")
    assert res[3].id == "m-3"
    assert run(stream_count(nats_server.url)) == 2
    ch.close()


# ---- JetStream down and back -----------------------------------------------

def test_nats_down_unavailable_then_recovers(pb, nats_server, run):
    svc = harness.Ingest(nats_server.url, "--publish-timeout=1s").start()
    try:
        s, ch = stub(pb, svc)
        assert s.Ingest(pb.ingest.IngestRequest(record=record(pb, id="before")),
                        timeout=10).sequence == 1
        nats_server.stop()
        for rpc in ("unary", "batch", "stream"):
            t0 = time.monotonic()
            if rpc == "unary":
                with pytest.raises(grpc.RpcError) as err:
                    s.Ingest(pb.ingest.IngestRequest(record=record(pb, id="during")), timeout=10)
                code, details = err.value.code(), err.value.details()
            elif rpc == "batch":
                r = s.IngestBatch(pb.ingest.IngestBatchRequest(records=[record(pb, id="during")]),
                                  timeout=10).results[0]
                code, details = grpc.StatusCode.UNAVAILABLE if r.error.code == 14 else r.error.code, r.error.message
            else:
                r = list(s.IngestStream(iter([pb.ingest.IngestRequest(record=record(pb, id="during"))]),
                                        timeout=10))[0]
                code, details = grpc.StatusCode.UNAVAILABLE if r.error.code == 14 else r.error.code, r.error.message
            assert code == grpc.StatusCode.UNAVAILABLE, (rpc, code, details)
            assert time.monotonic() - t0 < 3.0, rpc  # within the 1 s publish timeout, plus slack
            assert "same id" in details or "JetStream" in details
        assert svc.running()

        nats_server.start()
        def works():
            try:
                return s.Ingest(pb.ingest.IngestRequest(record=record(pb, id="after")),
                                timeout=5)
            except grpc.RpcError:
                return None
        resp = harness.wait_until(works, timeout=20, interval=0.2, what="ingest after restart")
        assert resp.sequence == 2 and not resp.duplicate
        assert run(stream_count(nats_server.url)) == 2
        ch.close()
    finally:
        assert svc.stop() == 0


def test_client_deadline_honoured(pb, nats_server):
    svc = harness.Ingest(nats_server.url, "--publish-timeout=30s").start()
    try:
        s, ch = stub(pb, svc)
        nats_server.stop()
        # With NATS gone the publish cannot complete; the caller's 0.5 s
        # deadline, not the 30 s publish timeout, bounds the wait.
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            s.Ingest(pb.ingest.IngestRequest(record=record(pb)), timeout=0.5)
        assert err.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        assert time.monotonic() - t0 < 2.0
        assert svc.running()
        ch.close()
    finally:
        assert svc.stop() == 0


def test_starts_before_nats_and_catches_up(pb):
    port = harness.free_port()
    svc = harness.Ingest(f"nats://127.0.0.1:{port}").start(ready=False)
    nats_server = harness.NatsServer(port=port)
    try:
        s, ch = stub(pb, svc)
        with pytest.raises(grpc.RpcError) as err:
            s.Ingest(pb.ingest.IngestRequest(record=record(pb)), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        nats_server.start()
        def works():
            try:
                return s.Ingest(pb.ingest.IngestRequest(record=record(pb)), timeout=5)
            except grpc.RpcError:
                return None
        assert harness.wait_until(works, timeout=20, interval=0.2).sequence == 1
        ch.close()
    finally:
        assert svc.stop() == 0
        nats_server.stop()


# ---- graceful shutdown -------------------------------------------------------

def test_sigterm_answers_calls_in_flight(pb, nats_server, run):
    svc = harness.Ingest(nats_server.url, "--shutdown-grace=10s").start()
    s, ch = stub(pb, svc)
    results, lock, stop = [], threading.Lock(), threading.Event()

    def caller(k):
        i = 0
        while not stop.is_set() and i < 5000:
            rid = f"t{k}-{i}"
            try:
                r = s.Ingest(pb.ingest.IngestRequest(record=record(pb, id=rid)), timeout=15)
                out = ("ok", rid, r.sequence)
            except grpc.RpcError as e:
                out = (e.code().name, rid, e.details())
            with lock:
                results.append(out)
            i += 1

    stream_results = []

    def streamer():
        def reqs():
            for i in range(100000):
                if stop.is_set():
                    return
                yield pb.ingest.IngestRequest(record=record(pb, id=f"st-{i}"))
        try:
            for r in s.IngestStream(reqs(), timeout=30):
                stream_results.append(r)
        except grpc.RpcError as e:
            stream_results.append(e.code())

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
    threads.append(threading.Thread(target=streamer))
    for t in threads:
        t.start()
    time.sleep(1.5)
    svc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    code = svc.wait(timeout=15)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert code == 0, svc.log()[-3000:]
    assert time.monotonic() - t0 < 11

    oks = [r for r in results if r[0] == "ok"]
    others = [r for r in results if r[0] != "ok"]
    assert len(oks) > 0
    # Calls not acknowledged were refused as the server went away: UNAVAILABLE,
    # or CANCELLED for a call gRPC core had received but not yet handed to
    # the service when shutdown began. Never anything else, never a hang.
    assert {r[0] for r in others} <= {"UNAVAILABLE", "CANCELLED"}, others[:5]
    # The open stream got a result for every record it sent before the end,
    # then UNAVAILABLE.
    acked_stream = [r for r in stream_results if not isinstance(r, grpc.StatusCode)]
    assert len(acked_stream) > 0
    assert stream_results[-1] == grpc.StatusCode.UNAVAILABLE
    ids = set(run(harness.stream_ids(nats_server.url)))
    for _, rid, _ in oks:
        assert rid in ids
    # ...and none of them had been taken by the service: a record that reached
    # the stream was always answered.
    for _, rid, _ in others:
        assert rid not in ids, rid
    for r in acked_stream:
        assert r.WhichOneof("outcome") == "ack" and r.id in ids
    ch.close()


# ---- configuration -----------------------------------------------------------

def test_help_lists_every_setting():
    out = subprocess.run([harness.service_binary("ingest"), "--help"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0
    for name in ("--listen", "SLUICE_LISTEN", "NATS_URL", "SLUICE_PUBLISH_TIMEOUT",
                 "SLUICE_MAX_IN_FLIGHT", "SLUICE_DUPLICATE_WINDOW", "SLUICE_METRICS_LISTEN",
                 "SLUICE_SHUTDOWN_GRACE", "SLUICE_LOG_LEVEL", "0.0.0.0:50051"):
        assert name in out.stdout


@pytest.mark.parametrize("args,env,needle", [
    (["--publish-timeout=soon"], {}, "--publish-timeout"),
    (["--max-in-flight=0"], {}, "--max-in-flight"),
    ([], {"SLUICE_DUPLICATE_WINDOW": "forever"}, "SLUICE_DUPLICATE_WINDOW"),
    (["--log-level=loud"], {}, "--log-level"),
    (["--bogus"], {}, "--bogus"),
    (["--listen=256.1.1.1:99999"], {}, "cannot listen"),
    (["--metrics-listen=127.0.0.1:99999"], {}, "cannot listen"),
])
def test_invalid_configuration_one_line(args, env, needle):
    import os
    e = dict(os.environ)
    e.update(env)
    out = subprocess.run([harness.service_binary("ingest"), "--nats-url=nats://127.0.0.1:1",
                          "--metrics-listen="] + args,
                         capture_output=True, text=True, timeout=10, env=e)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
