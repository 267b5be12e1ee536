#!/usr/bin/env bash
# make bench: installs and builds what is missing (scripts/setup.sh), then runs
# the benchmarks; each starts its own servers on free loopback ports.
#   bash bench/run.sh                 both, with their defaults
#   bash bench/run.sh ingest [args]   bench/ingest_bench.py: nats bench vs Sluice
#                                     ingest, for both fsync policies
#   bash bench/run.sh drain [args]    bench/drain.py: transform and audit drain
#                                     rates vs raw insert_many, end-to-end lag
#   bash bench/run.sh security [args] bench/ingest_bench.py --mode=security: the cost
#                                     of TLS and of JWT checks (plaintext vs TLS vs
#                                     TLS + JWT, interleaved), for both fsync policies
# Arguments after the name go to the script (see its --help), e.g.
#   bash bench/run.sh ingest --policies=default --rounds=1
# Figures: bench/results/ingest.json, drain.json and ingest-security.json (git-ignored).
# `bash bench/run.sh` (make bench) runs ingest and drain; security runs on request.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

build_dir="${SLUICE_BUILD_DIR:-$root/build}"
py="$root/.venv/bin/python"
mkdir -p "$root/bench/results"

ingest() {
  local loadgen="$build_dir/bench/sluice-loadgen"
  [ -x "$loadgen" ] || cmake --build "$build_dir" --target sluice-loadgen >/dev/null
  "$py" "$root/bench/ingest_bench.py" --loadgen "$loadgen" "$@"
}

drain() {
  SLUICE_BUILD_DIR="$build_dir" "$py" "$root/bench/drain.py" "$@"
}

case "${1:-all}" in
  ingest) shift; ingest "$@" ;;
  drain) shift; drain "$@" ;;
  security) shift; ingest --mode=security "$@" ;;
  all) ingest && drain ;;
  *) echo "usage: bench/run.sh [ingest|drain|security] [arguments for the script]" >&2; exit 2 ;;
esac
