"""sluice-ingest's HTTP endpoint: /metrics in the Prometheus text format with
numbers that move as records flow, /healthz and /readyz."""

import grpc

import harness


get = harness.http_get
metric = harness.metric
scrape = harness.scrape


def test_metrics_move(pb, ingest):
    before = scrape(ingest)
    ch = grpc.insecure_channel(ingest.target)
    stub = pb.ingest_grpc.IngestServiceStub(ch)
    rec = pb.ingest.Record(id="m-1", type="order.created", payload=b'{"a":1}')
    stub.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)
    stub.Ingest(pb.ingest.IngestRequest(record=rec), timeout=10)  # duplicate
    try:
        stub.Ingest(pb.ingest.IngestRequest(record=pb.ingest.Record(type="Bad", payload=b"{}")),
                    timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.IngestBatch(pb.ingest.IngestBatchRequest(records=[
        pb.ingest.Record(type="a.b", payload=b"{}"),
        pb.ingest.Record(type="a.b", payload=b"[]")]), timeout=10)
    after = scrape(ingest)
    ch.close()

    svc = dict(grpc_service="sluice.v1.IngestService")
    assert metric(after, "grpc_server_started_total", grpc_method="Ingest", **svc) - \
        metric(before, "grpc_server_started_total", grpc_method="Ingest", **svc) == 3
    assert metric(after, "grpc_server_handled_total", grpc_method="Ingest", grpc_code="OK", **svc) == 2
    assert metric(after, "grpc_server_handled_total", grpc_method="Ingest",
                  grpc_code="INVALID_ARGUMENT", **svc) == 1
    assert metric(after, "grpc_server_handled_total", grpc_method="IngestBatch", grpc_code="OK", **svc) == 1
    assert metric(after, "sluice_ingest_records_total", outcome="stored") == 2
    assert metric(after, "sluice_ingest_records_total", outcome="duplicate") == 1
    assert metric(after, "sluice_ingest_records_total", outcome="rejected", code="INVALID_ARGUMENT") == 2
    assert metric(after, "sluice_ingest_invalid_records_total", field="type") == 1
    assert metric(after, "sluice_ingest_invalid_records_total", field="payload") == 1
    assert metric(after, "sluice_ingest_publish_seconds_count") == 3
    assert metric(after, "sluice_ingest_publish_seconds_bucket", le="+Inf") == 3
    assert metric(after, "sluice_ingest_records_in_flight") == 0
    assert metric(after, "sluice_ingest_jetstream_ready") == 1
    assert metric(after, "process_resident_memory_bytes") > 0
    assert "# TYPE sluice_ingest_publish_seconds histogram" in after


def test_health_endpoints(pb, nats_server):
    svc = harness.Ingest(nats_server.url).start()
    try:
        assert get(svc.metrics_port, "/healthz")[0] == 200
        # Ready once connected and the stream is there, which may take a moment.
        harness.wait_until(lambda: get(svc.metrics_port, "/readyz")[0] == 200, timeout=20)
        nats_server.stop()
        harness.wait_until(lambda: get(svc.metrics_port, "/readyz")[0] == 503, timeout=10)
        status, body, _ = get(svc.metrics_port, "/readyz")
        assert "JetStream" in body
        assert get(svc.metrics_port, "/healthz")[0] == 200  # alive all the same
        assert metric(scrape(svc), "sluice_ingest_jetstream_ready") == 0
        nats_server.start()
        harness.wait_until(lambda: get(svc.metrics_port, "/readyz")[0] == 200, timeout=20)
    finally:
        assert svc.stop() == 0
