#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, seeded from spec/vectors.
# Uses nightly (with sanitizers) when rustup has it, else stable without them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-15}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly); sanitizer=()
else
  toolchain=(); sanitizer=(-s none)
fi
cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}"
for target in $(cargo "${toolchain[@]}" fuzz list); do
  mkdir -p "corpus/$target"
  cp -n ../spec/vectors/*.strata "corpus/$target/" 2>/dev/null || true
  echo "--- $target"
  log="artifacts/$target.smoke.log"
  mkdir -p artifacts
  if ! cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" "$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' '; echo
done
