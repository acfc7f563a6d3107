#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named) for SECONDS each, from the
# committed seeds in fuzz/seeds/TARGET plus the growing, uncommitted corpus
# in fuzz/corpus/TARGET, and prints libFuzzer's final statistics
# (executions, coverage `cov:`). A crash stops the run with libFuzzer's
# report; the input is saved under fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh 5                 # what CI runs
#   fuzz/run.sh 60 lang rpm       # a longer run of two targets
#
# Needs the nightly toolchain and `cargo install cargo-fuzz`; installs
# cargo-fuzz if it is missing. Bounds: 2 GB RSS and 10 s per input, so a
# memory or time bomb is reported as a crash instead of taking the
# machine down.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
fi
cargo +nightly fuzz build
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz target $t (${secs}s)"
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
      -max_len=65536 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log"
done
