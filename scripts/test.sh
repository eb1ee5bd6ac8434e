#!/usr/bin/env bash
# The project's one test command: everything CI checks apart from fmt and clippy.
# Stages print their duration. Environment:
#   FUZZ_SECONDS   seconds per fuzz target in the smoke run (default 15; 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

stage_start=0
stage() { stage_start=$SECONDS; echo; echo "=== $1"; }
done_stage() { echo "=== $1 took $((SECONDS - stage_start)) s"; }

# Every stage's output also goes to a log, from which the last line counts the
# tests of every runner (cargo's "test result" lines and the conformance
# runners' "N passed, N failed"); printed even when a stage fails.
log=$(mktemp)
exec 3>&1 4>&2
exec > >(tee "$log") 2>&1
tee_pid=$!
summary() {
  local status=$?
  # Back to the real outputs, and let tee finish writing the log first.
  exec >&3 2>&4
  wait "$tee_pid" 2>/dev/null || true
  python3 - "$log" "$status" "$SECONDS" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
    passed += int(m[1]); failed += int(m[2])
for m in re.finditer(r"^(\d+) passed, (\d+) failed$", text, re.M):
    passed += int(m[1]); failed += int(m[2])
status = int(sys.argv[2])
if status != 0 and failed == 0:
    failed = 1  # a stage failed outside any runner's count (build, fuzz, a script)
print(f"\n=== scripts/test.sh {'passed' if status == 0 else 'FAILED'} in {sys.argv[3]} s")
print(f"{passed} passed, {failed} failed")
PY
  rm -f "$log"
  exit "$status"
}
trap summary EXIT

stage "tools"
bash scripts/ensure-tools.sh
done_stage "tools"

stage "the reader does not depend on the writer (cargo tree)"
if cargo tree -p strata-reader -e normal,dev,build --prefix none | grep -q '^strata-writer'; then
  echo "strata-reader depends on strata-writer:" >&2
  cargo tree -p strata-reader -e normal,dev,build -i strata-writer >&2
  exit 1
fi
echo "strata-reader: no path to strata-writer"
done_stage "reader independence"

stage "unit, property, vector, damage, CLI tests and each criterion bench once (cargo test --workspace --all-targets)"
# One build for everything: benches, tests and the strata binary the
# conformance stage drives share one feature resolution (building the benches
# or the binary alone would resolve features anew and rebuild dependencies).
cargo test --workspace --all-targets --no-fail-fast
done_stage "cargo test"

if [[ -f spec/conformance/run.py ]]; then
  stage "conformance: the strata CLI and the independent Python reader through every vector"
  if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
  fi
  .venv/bin/pip install --quiet --disable-pip-version-check -r spec/reference-py/requirements.txt
  # Built by cargo test above (integration tests run it).
  [[ -x target/debug/strata ]] || cargo test --workspace --all-targets --no-run
  .venv/bin/python spec/conformance/run.py --impl target/debug/strata
  .venv/bin/python spec/conformance/run.py --impl ".venv/bin/python spec/reference-py/strata_ref.py"
  # Archives the Rust writer makes from generated trees and images: the Python
  # reader must list, verify, extract and restore them exactly as strata does.
  .venv/bin/python spec/conformance/cross_check.py --strata target/debug/strata \
    --impl ".venv/bin/python spec/reference-py/strata_ref.py" --seeds 24
  # Damage beyond the vectors: one byte flipped every 7 bytes and cuts every
  # 97 of a few small archives (plain, compressed tables, images and trees):
  # both verifiers must give the same problems, ranges and totals for each
  # of about 12,000 variants (about a minute).
  .venv/bin/python spec/conformance/sweep.py --strata target/debug/strata --show 5 \
    --vector image-small --vector tree-small --vector image-and-tree --vector two-images-dedup \
    --vector table-zstd-tree --vector table-zstd-image
  done_stage "conformance"
fi

if [[ -d fuzz ]] && [[ "$FUZZ_SECONDS" != 0 ]]; then
  stage "fuzz smoke: every target for ${FUZZ_SECONDS} s"
  bash scripts/fuzz-smoke.sh "$FUZZ_SECONDS"
  done_stage "fuzz smoke"
fi
