#!/usr/bin/env bash
# make fuzz: builds the libFuzzer harnesses of test/fuzz (clang, ASan and
# UBSan, in build-fuzz/) and runs each for FUZZ_SECONDS, then prints one
# line per harness: executions, executions per second, new inputs found,
# and whether it found anything. See docs/fuzzing.md.
#
#   bash scripts/fuzz.sh [harness ...]     (names without fuzz_; default: all)
#
#   FUZZ_SECONDS=60     time per harness
#   FUZZ_JOBS=1         harnesses run side by side (at most one per core)
#   FUZZ_REGRESSION=1   no fuzzing: each harness runs once over its committed
#                       seeds (test/fuzz/corpus/<name>), as make test does
#   FUZZ_ARGS=...       more libFuzzer flags for every harness
#
# Each harness fuzzes build-fuzz/corpus/<name>/ (kept between runs, so a
# second run goes on where the first stopped) on top of its committed seeds
# (test/fuzz/corpus/<name>/, only read), with the LeakSanitizer suppressions
# of test/fuzz/lsan.supp and test/fuzz/fuzz_<name>.supp,
# writes what it finds to build-fuzz/crashes/<name>/ and its output to
# build-fuzz/logs/<name>.log. Exits non-zero when a harness found a crash, a
# sanitizer report, a leak or a broken oracle.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

build="$root/build-fuzz"
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-1}"
regression="${FUZZ_REGRESSION:-0}"
say() { printf '[fuzz] %s\n' "$*"; }

# ---- build ------------------------------------------------------------------
# Both compilers are clang's (lib/ has one C++ file); a build directory
# configured before that had no C++ compiler, and is made anew.
if ! grep -qs 'CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$build" --target fuzz >/dev/null

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for src in test/fuzz/fuzz_*.c; do
    n=$(basename "$src" .c)
    names+=("${n#fuzz_}")
  done
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
mkdir -p "$build/logs"

# run_one NAME: fuzzes (or replays) one harness; its output goes to its log.
run_one() {
  local name=$1 bin="$build/test/fuzz/fuzz_$1" seeds="$root/test/fuzz/corpus/$1"
  local log="$build/logs/$name.log" crashes="$build/crashes/$name" work="$build/corpus/$name"
  local supp="$build/logs/$name.supp"
  mkdir -p "$crashes" "$work" "$seeds"
  # LeakSanitizer: the shared suppressions, and the harness's own if any
  cat "$root/test/fuzz/lsan.supp" > "$supp"
  [ -f "$root/test/fuzz/fuzz_$name.supp" ] && cat "$root/test/fuzz/fuzz_$name.supp" >> "$supp"
  export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0"
  if [ "$regression" = 1 ]; then
    # every committed seed once; -runs=0: no mutation after them
    "$bin" -runs=0 -print_final_stats=1 -timeout=30 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} \
      "$seeds" >"$log" 2>&1
  else
    "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=3072 \
      -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} "$work" "$seeds" >"$log" 2>&1
  fi
}

say "$([ "$regression" = 1 ] && echo "replaying the seeds of" || echo "fuzzing") ${#names[@]} harnesses$([ "$regression" = 1 ] || echo ", ${seconds}s each, $jobs at a time")"
start=$(date +%s)
running=0
declare -A status
for name in "${names[@]}"; do
  if [ ! -x "$build/test/fuzz/fuzz_$name" ]; then
    echo "no harness fuzz_$name (test/fuzz/fuzz_$name.c)" >&2
    exit 2
  fi
  (run_one "$name"; echo $? >"$build/logs/$name.rc") &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
elapsed=$(($(date +%s) - start))

# ---- the table ----------------------------------------------------------------
stat() { # log, name: the value of libFuzzer's "stat::<name>:" line
  sed -n "s/^stat::$2: *//p" "$1" | tail -1
}
failed=0
printf '\n%-18s %14s %10s %8s %6s  %s\n' harness executions "exec/s" seconds new result
for name in "${names[@]}"; do
  log="$build/logs/$name.log"
  rc=$(cat "$build/logs/$name.rc" 2>/dev/null || echo 1)
  execs=$(stat "$log" number_of_executed_units)
  rate=$(stat "$log" average_exec_per_sec)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  new=$(stat "$log" new_units_added)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    failed=$((failed + 1))
    artifact=$(sed -n "s/.*Test unit written to \(.*\)/\1/p" "$log" | tail -1)
    result="FOUND: $(grep -m1 -E 'ERROR: |oracle failed|runtime error' "$log" | sed 's/^==[0-9]*==//' | cut -c1-90)"
    [ -n "$artifact" ] && result="$result -> $artifact"
  fi
  printf '%-18s %14s %10s %8s %6s  %s\n' "$name" "${execs:--}" "${rate:--}" "${secs:--}" \
    "${new:--}" "$result"
done
echo
say "$elapsed s in all; logs in build-fuzz/logs/, findings in build-fuzz/crashes/"
[ "$failed" = 0 ]
