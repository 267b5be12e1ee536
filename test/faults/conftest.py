"""The fault suite's fixtures: the generated gRPC modules, and a section at
the end of pytest's output with each run's summary line (so that CI logs
show the counts of passing runs too, not only of failing ones).

The servers and services come from test/e2e (harness.py,
conftest_downstream.py); this directory adds the faults, the writers and the
checker. See docs/faults.md."""

import importlib
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))
import checker  # noqa: E402
import harness  # noqa: E402


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """pb.ingest (messages) and pb.ingest_grpc (stubs), compiled from proto/."""
    harness.generate_python_stubs(tmp_path_factory.mktemp("pbgen"))

    class Modules:
        ingest = importlib.import_module("sluice.v1.ingest_pb2")
        ingest_grpc = importlib.import_module("sluice.v1.ingest_pb2_grpc")

    return Modules


def pytest_terminal_summary(terminalreporter):
    if checker.SUMMARIES:
        terminalreporter.section("fault suite")
        for line in checker.SUMMARIES:
            terminalreporter.write_line(line)
