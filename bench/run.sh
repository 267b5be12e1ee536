#!/usr/bin/env bash
# make bench: installs and builds what is missing (scripts/setup.sh), then runs
# bench/ingest_bench.py, which starts its own nats-server and sluice-ingest on
# free loopback ports and prints nats bench vs Sluice figures for both fsync
# policies. Arguments are passed on to ingest_bench.py (see its --help), e.g.
#   bash bench/run.sh --policies=default --rounds=1
# Figures: bench/results/ingest.json (git-ignored).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

build_dir="${SLUICE_BUILD_DIR:-$root/build}"
loadgen="$build_dir/bench/sluice-loadgen"
[ -x "$loadgen" ] || cmake --build "$build_dir" --target sluice-loadgen >/dev/null

mkdir -p "$root/bench/results"
exec "$root/.venv/bin/python" "$root/bench/ingest_bench.py" --loadgen "$loadgen" "$@"
