"""Retry hints: a RESOURCE_EXHAUSTED or UNAVAILABLE that a retry can cure
carries a google.rpc.RetryInfo (in grpc-status-details-bin for a call's
status, in the result's Status for one record of a batch or stream); a
failure no retry cures carries none."""

import json

import grpc
import pytest

import harness


def stub(pb, svc):
    ch = grpc.insecure_channel(svc.target)
    grpc.channel_ready_future(ch).result(timeout=10)
    return pb.ingest_grpc.IngestServiceStub(ch), ch


def rec(pb, i, payload=None):
    return pb.ingest.Record(id=f"h-{i}", type="order.created",
                            payload=payload or json.dumps({"n": i}).encode())


def retry_delay_ms(status_bytes):
    """The RetryInfo delay of a serialized google.rpc.Status, or None."""
    from google.rpc import error_details_pb2, status_pb2
    st = status_pb2.Status.FromString(status_bytes)
    for any_ in st.details:
        if any_.type_url == "type.googleapis.com/google.rpc.RetryInfo":
            info = error_details_pb2.RetryInfo.FromString(any_.value)
            return info.retry_delay.seconds * 1000 + info.retry_delay.nanos // 1000000
    return None


def details_bin(err):
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return value
    return None


def test_unavailable_carries_retry_info(pb, nats_server):
    svc = harness.Ingest(nats_server.url).start()
    try:
        s, ch = stub(pb, svc)
        nats_server.stop()
        with pytest.raises(grpc.RpcError) as e:
            s.Ingest(pb.ingest.IngestRequest(record=rec(pb, 1)), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        raw = details_bin(e.value)
        assert raw is not None
        assert retry_delay_ms(raw) == 1000
        from google.rpc import status_pb2
        st = status_pb2.Status.FromString(raw)
        assert st.code == grpc.StatusCode.UNAVAILABLE.value[0] and st.message == e.value.details()
        ch.close()
    finally:
        svc.stop()


def test_in_flight_limit_per_record_retry_info(pb, nats_server):
    svc = harness.Ingest(nats_server.url, "--max-in-flight=1").start()
    try:
        s, ch = stub(pb, svc)
        resp = s.IngestBatch(pb.ingest.IngestBatchRequest(records=[rec(pb, i) for i in range(50)]),
                             timeout=30)
        limited = [r for r in resp.results if r.WhichOneof("outcome") == "error"]
        assert limited, "the in-flight limit of 1 was never reached"
        for r in limited:
            assert r.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert retry_delay_ms(r.error.SerializeToString()) == 250
        ch.close()
    finally:
        assert svc.stop() == 0


def test_no_retry_info_when_a_retry_cannot_help(pb, ingest):
    s, ch = stub(pb, ingest)
    with pytest.raises(grpc.RpcError) as e:
        s.Ingest(pb.ingest.IngestRequest(record=rec(pb, 2, payload=b"[1]")), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_bin(e.value) is None
    big = json.dumps({"x": "y" * (2 << 20)}).encode()
    with pytest.raises(grpc.RpcError) as e:
        s.Ingest(pb.ingest.IngestRequest(record=rec(pb, 3, payload=big)), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details_bin(e.value) is None
    ch.close()
