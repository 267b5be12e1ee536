"""Fixtures shared by the end-to-end tests: Python stubs compiled from proto/
at test time, a nats-server with JetStream, and a running sluice-ingest."""

import asyncio
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """The generated modules: pb.ingest (messages), pb.ingest_grpc (stubs),
    pb.status, pb.health, pb.health_grpc."""
    out = tmp_path_factory.mktemp("pbgen")
    harness.generate_python_stubs(out)
    import importlib

    class Modules:
        ingest = importlib.import_module("sluice.v1.ingest_pb2")
        ingest_grpc = importlib.import_module("sluice.v1.ingest_pb2_grpc")
        status = importlib.import_module("google.rpc.status_pb2")
        health = importlib.import_module("grpc_health.v1.health_pb2")
        health_grpc = importlib.import_module("grpc_health.v1.health_pb2_grpc")

    return Modules


@pytest.fixture
def nats_server():
    srv = harness.NatsServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def ingest(nats_server):
    svc = harness.Ingest(nats_server.url).start()
    yield svc
    code = svc.stop()
    assert code == 0, f"sluice-ingest exited with {code}\n{svc.log()[-4000:]}"


@pytest.fixture
def run():
    """Runs a coroutine to completion (nats-py is asyncio-only)."""
    def _run(coro):
        return asyncio.run(coro)
    return _run
