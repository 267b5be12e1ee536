#!/usr/bin/env bash
# Installs the locked dependencies when package-lock.json changed (npm ci), then
# runs the client; the API is loaded from proto/ at run time:
#   examples/clients/node/run.sh [--addr HOST:PORT] [--count N] [--prefix P] ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.sluice-stamp 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > node_modules/.sluice-stamp
fi
exec node ingest_client.js "$@"
