#!/usr/bin/env bash
# benches/compare/ab-revisions.sh: two builds of strata side by side on the
# corpus tree, output on tmpfs, medians of RUNS runs: tree create, verify and
# extract. For "no regression beyond noise" between revisions.
#
#   OLD=BINARY NEW=BINARY bash benches/compare/ab-revisions.sh
#   (build one with: git worktree add /tmp/old REV && cd /tmp/old &&
#    CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p strata-cli)
#   CORPUS=DIR (default /var/tmp/strata-corpus)  RUNS=7  WORK=/dev/shm/strata-ab
set -euo pipefail
: "${OLD:?OLD=path of the strata binary to compare against}"
NEW=${NEW:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/strata}
CORPUS=${CORPUS:-/var/tmp/strata-corpus} RUNS=${RUNS:-7} S=${WORK:-/dev/shm/strata-ab}
T=$CORPUS/tree U=0123456789abcdef0123456789abcdef
rm -rf "$S" && mkdir -p "$S"
tar -C "$T" -cf - . >/dev/null # the same page-cache state for both
"$OLD" create "$S/old.strata" --files "tree=$T" --quiet --uuid $U
"$NEW" create "$S/new.strata" --files "tree=$T" --quiet --uuid $U
hyperfine -N --runs "$RUNS" --export-json "$S/create.json" --prepare "rm -f $S/x.strata" \
  -n old "$OLD create $S/x.strata --files tree=$T --quiet --uuid $U" \
  -n new "$NEW create $S/x.strata --files tree=$T --quiet --uuid $U" >/dev/null
hyperfine -N --runs "$RUNS" --export-json "$S/verify.json" \
  -n old "$OLD verify $S/old.strata --quiet" -n new "$NEW verify $S/new.strata --quiet" >/dev/null
hyperfine --runs "$RUNS" --export-json "$S/extract.json" --prepare "rm -rf $S/ex" \
  -n old "$OLD extract $S/old.strata $S/ex --quiet" -n new "$NEW extract $S/new.strata $S/ex --quiet" >/dev/null
for work in create verify extract; do
  python3 - "$S/$work.json" "$work" <<'PY'
import json, sys
median = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
print(f"{sys.argv[2]:8} old {median['old']:.2f} s  new {median['new']:.2f} s  new/old {median['new'] / median['old']:.2f}")
PY
done
echo "archive sizes: old $(stat -c %s "$S/old.strata"), new $(stat -c %s "$S/new.strata") bytes"
rm -rf "$S"
