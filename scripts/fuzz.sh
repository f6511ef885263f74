#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a fixed number of
# executions and reports execs and crashes per target. Not part of the normal
# test run. Uses libFuzzer through the libfuzzer-sys crate with the stable
# toolchain: coverage instrumentation (sancov) needs no nightly flag; the
# address sanitizer does, so it is on only with FUZZ_ASAN=1 (which sets
# RUSTC_BOOTSTRAP=1 for -Zsanitizer=address).
#
#   scripts/fuzz.sh                      # every target, FUZZ_RUNS executions each
#   scripts/fuzz.sh webhook form         # some targets
#   FUZZ_RUNS=200000 scripts/fuzz.sh     # default 100000
#   FUZZ_UPDATE_CORPUS=1 scripts/fuzz.sh # merge new coverage into fuzz/corpus (kept small)
#
# Exit status: 0 when no target crashed, 1 otherwise. Crashing inputs are
# written to fuzz/artifacts/<target>/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
runs="${FUZZ_RUNS:-100000}"
target_triple="$(rustc -vV | sed -n 's/^host: //p')"
all_targets=(events webhook form)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  --cfg fuzzing
  -Cdebug-assertions
  -Coverflow-checks
)
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
  export RUSTC_BOOTSTRAP=1
  flags+=(-Zsanitizer=address)
fi
export RUSTFLAGS="${flags[*]}"
export CARGO_TARGET_DIR="$fuzz/target"

echo "building fuzz targets (${targets[*]}) for $target_triple" >&2
# --target keeps RUSTFLAGS off build scripts and proc macros.
(cd "$fuzz" && cargo build --release --target "$target_triple" "${targets[@]/#/--bin=}")

failed=0
printf '%-10s %12s %8s %10s %s\n' target execs crashes seconds corpus
for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$target_triple/release/$t"
  corpus="$fuzz/corpus/$t"
  artifacts="$fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  work="$(mktemp -d)"
  log="$work/log"
  start=$(date +%s)
  status=0
  # New inputs go to the scratch corpus; the repository's is read-only seeds.
  "$bin" "$work" "$corpus" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  seconds=$(( $(date +%s) - start ))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed=1
    echo "--- $t failed (exit $status); last lines:" >&2
    tail -n 30 "$log" >&2
  fi
  if [ "${FUZZ_UPDATE_CORPUS:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    merged="$(mktemp -d)"
    "$bin" -merge=1 "$merged" "$corpus" "$work" >/dev/null 2>&1
    rm -rf "$corpus" && mv "$merged" "$corpus"
  fi
  printf '%-10s %12s %8s %10s %s\n' "$t" "${execs:-?}" "$crashes" "$seconds" "$(find "$corpus" -type f | wc -l) files"
  rm -rf "$work"
done
exit "$failed"
