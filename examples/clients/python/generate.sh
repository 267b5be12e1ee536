#!/usr/bin/env bash
# Compiles the Sluice API (proto/) into Python modules in gen/ with grpcio-tools.
# Only sluice/v1/ingest.proto, the google.rpc.Status it imports and the
# google.rpc.RetryInfo a Status's details carry (the server's retry hints): the
# well-known types come with the protobuf package, and grpc/health is left out
# on purpose (a generated `grpc` package would shadow grpcio itself).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../../proto" && pwd)
python=${PYTHON:-python3}
out="$here/gen"
rm -rf "$out" && mkdir -p "$out"
wkt=$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
"$python" -m grpc_tools.protoc -I "$proto" -I "$wkt" \
  --python_out="$out" --grpc_python_out="$out" \
  sluice/v1/ingest.proto google/rpc/status.proto google/rpc/error_details.proto
