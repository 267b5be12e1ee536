#!/usr/bin/env bash
# The test command (make test, and CI): installs what is missing, builds, then
#   1. C unit tests (CTest) and end-to-end tests (pytest) on the normal build;
#   2. the short fault suite (test/faults, docs/faults.md: a 3-node JetStream
#      cluster, every fault once, at least 5,000 records; about two minutes);
#   3. unit, end-to-end and short fault suite again on an AddressSanitizer +
#      UndefinedBehaviorSanitizer build;
#   4. every libFuzzer harness once over its committed seeds (test/fuzz/corpus:
#      examples, and every input a harness ever failed on; about 20 s);
#   5. the Kubernetes manifests rendered and validated offline;
#   6. buf lint on proto/.
# Every test starts and stops the servers it needs (nats-server, FerretDB) on
# free loopback ports. Exits non-zero on the first failing stage; the last
# line sums up the stages.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

py="$root/.venv/bin/python"
passed=0
failed=0
stage() { # name, command...
  local name=$1; shift
  echo
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "=== $name FAILED"
    echo "stages: $passed passed, $failed failed"
    exit 1
  fi
}

run_suite() { # build dir
  local dir=$1
  ctest --test-dir "$dir" --output-on-failure &&
    SLUICE_BUILD_DIR="$dir" "$py" -m pytest -q -p no:cacheprovider "$root/test/e2e"
}

run_faults() { # build dir
  SLUICE_BUILD_DIR="$1" SLUICE_FAULTS=short "$py" -m pytest -q -p no:cacheprovider \
    "$root/test/faults"
}

stage "unit + end-to-end (build)" run_suite "$root/build"
stage "faults, short (build)" run_faults "$root/build"

if [ "${SLUICE_TEST_SANITIZE:-1}" = 1 ]; then
  SLUICE_BUILD_DIR="$root/build-asan" SLUICE_BUILD_TYPE=Debug SLUICE_SANITIZE=ON \
    bash scripts/setup.sh
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  export LSAN_OPTIONS="suppressions=$root/test/lsan.supp:print_suppressions=0"
  stage "unit + end-to-end (ASan+UBSan build)" run_suite "$root/build-asan"
  stage "faults, short (ASan+UBSan build)" run_faults "$root/build-asan"
fi

if [ "${SLUICE_TEST_FUZZ:-1}" = 1 ]; then
  stage "fuzz harnesses over their seeds" env FUZZ_REGRESSION=1 bash scripts/fuzz.sh
fi

if [ -f deploy/k8s/check.sh ]; then
  stage "kubernetes manifests" bash deploy/k8s/check.sh
fi
stage "buf lint" bash -c "cd proto && '$root/.tools/bin/buf' lint"
stage "buf breaking" bash scripts/buf-breaking.sh

echo
echo "stages: $passed passed, $failed failed"
