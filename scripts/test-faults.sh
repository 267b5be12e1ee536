#!/usr/bin/env bash
# make test-faults: the fault suite (test/faults, docs/faults.md) in full: a
# 3-node JetStream cluster, FerretDB, two sluice-ingest, sluice-transform and
# sluice-audit, with writers over every RPC shape while each fault is
# injected on its own, then every fault twice in one run. Installs what is
# missing and builds first, like scripts/test.sh. Takes about 8 minutes.
#   SLUICE_FAULTS=short|full|<fault>,<fault>...   which runs (default full)
#   SLUICE_FAULTS_SEED=N                          the victims and order of a run
#   SLUICE_KEEP_TMP=1                             keep the servers' logs and data
# Extra arguments go to pytest, e.g. -k leader_kill.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

export SLUICE_FAULTS="${SLUICE_FAULTS:-full}"
exec "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/test/faults" "$@"
