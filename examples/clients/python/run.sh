#!/usr/bin/env bash
# Generates the stubs when proto/ changed, then runs the client:
#   examples/clients/python/run.sh [--addr HOST:PORT] [--count N] [--prefix P] ...
# Python: $PYTHON, else the repository's .venv, else python3 (needs grpcio and
# grpcio-tools: pip install grpcio grpcio-tools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x "$root/.venv/bin/python" ] && PYTHON="$root/.venv/bin/python"
fi
export PYTHON
stamp="$here/gen/.stamp"
want=$( (echo "$PYTHON"; cat "$root/proto/sluice/v1/ingest.proto" "$root/proto/google/rpc/status.proto" \
  "$root/proto/google/rpc/error_details.proto" "$here/generate.sh") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$here/generate.sh"
  echo "$want" > "$stamp"
fi
exec "$PYTHON" "$here/ingest_client.py" "$@"
