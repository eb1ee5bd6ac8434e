#!/usr/bin/env bash
# The hard sources of issue 12 at full size, with the release build: 200,000
# entries in one folder, a chain of 3,000 folders (~9,000 bytes of path), a
# 1 TiB sparse file with 10 MiB of data, modes applied last (0555 and 0000
# folders with content, set-id and sticky bits), 1,000 hard links, times
# before 1970 and after 2262, hostile names, default and access ACLs, xattrs.
# Each case is built, backed up (`strata create`), verified, listed and
# extracted, and the extraction compared with its source field by field: the
# cases of cli/tests/hard_sources.rs, which CI runs at a reduced size.
#
# Prints each step's wall time and peak RSS (strata steps under
# /usr/bin/time; build, manifest, json and compare are in the test process,
# whose peak is printed at the end of each case), and fails on any difference.
#
# A file's digest hashes its data ranges, never its holes (FORMAT.md 8.3):
# the 1 TiB sparse file costs what its few MiB of data cost to create, verify
# and extract. Times are recorded exactly, years past 2262 included.
#
# Environment:
#   HARD_DIR                  where the trees are built (default /var/tmp; a
#                             tmpfs works too, and holds any time after 2262)
#   STRATA_HARD_SPARSE_BYTES  the sparse file's apparent size, with K, M, G or
#                             T (default 1T; 16G or less is checked in full;
#                             0 leaves it out)
#   HARD_CASES                the tests to run, space separated (default: all;
#                             names as `cargo test -- --list` gives them)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
bash scripts/ensure-tools.sh

export STRATA_HARD_SIZE=full STRATA_HARD_TIMING=1
export STRATA_HARD_SPARSE_BYTES=${STRATA_HARD_SPARSE_BYTES:-1T}
HARD_DIR=${HARD_DIR:-/var/tmp}
TMPDIR=$(mktemp -d "$HARD_DIR/strata-hard.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
echo "hard sources at full size in $TMPDIR ($(df -T "$TMPDIR" | awk 'NR == 2 {print $2}')), sparse file ${STRATA_HARD_SPARSE_BYTES}"

run_tests() {
  cargo test --release -q -p strata-cli --test hard_sources -- "$@"
}
cargo test --release -p strata-cli --test hard_sources --no-run
cases=${HARD_CASES:-$(run_tests --list | sed -n 's/: test$//p')}

passed=0
failed=()
for case in $cases; do
  echo
  echo "=== $case"
  start=$SECONDS
  if run_tests --exact "$case" --nocapture --test-threads=1; then
    passed=$((passed + 1))
  else
    failed+=("$case")
  fi
  echo "=== $case took $((SECONDS - start)) s"
done

echo
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}"
fi
echo "hard sources took $SECONDS s"
echo "hard sources: ${passed} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
