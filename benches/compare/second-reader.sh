#!/usr/bin/env bash
# benches/compare/second-reader.sh: issue 6's check on real data. The Rust writer
# backs up the corpus tree and images the clean corpus image; the independent
# Python reader (spec/reference-py) must list the tree exactly as `strata list`
# does (every field of the conformance protocol), verify both archives as ok,
# extract the tree to a copy with no metadata difference from the source, and
# restore the image bit-identically.
#
#   CORPUS=DIR   the corpus (default /var/tmp/strata-corpus; see corpus.sh)
#   WORK=DIR     scratch space (default /var/tmp/strata-second-reader, ~6 GB)
set -euo pipefail
WORK=${WORK:-/var/tmp/strata-second-reader}
# shellcheck source=checks.sh
. "$(dirname "$0")/checks.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
W=$WORK
log() { printf '[second-reader %(%H:%M:%S)T] %s\n' -1 "$*"; }

"$STRATA" create "$W/tree.strata" --files "tree=$CORPUS/tree" --quiet --force
"$STRATA" create "$W/image.strata" --image "disk=$CORPUS/image-clean.raw" --quiet --force

log "list: every field of every entry, both readers"
"$STRATA" list "$W/tree.strata" --files tree --json >"$W/list.rust.json"
"${REF[@]}" list "$W/tree.strata" --files tree --json >"$W/list.py.json"
"$PY" - "$W/list.rust.json" "$W/list.py.json" <<'EOF'
import json, sys
rust, py = (json.load(open(p))["sections"][0]["entries"] for p in sys.argv[1:3])
fields = ["path", "path_hex", "kind", "mode", "size", "mtime_s", "mtime_nsec", "digest", "target", "link", "rdev",
          "uid", "gid", "user", "group", "xattrs"]
assert len(rust) == len(py), (len(rust), len(py))
for a, b in zip(rust, py):
    for f in fields:
        assert a.get(f) == b.get(f), (a["path"], f, a.get(f), b.get(f))
print(f"{len(rust):,} entries listed identically ({len(fields)} fields each)")
EOF

log "verify: both archives, Python reader"
for a in tree image; do
  "${REF[@]}" verify "$W/$a.strata" --json >"$W/verify.$a.json"
  "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"]=="ok", r["problems"][:3]; print(sys.argv[2], "ok,", r["records"], "records,", r["verified_bytes"], "of", r["archive_size"], "bytes verified")' "$W/verify.$a.json" "$a"
done

log "extract: the tree, Python reader, compared with the source"
"${REF[@]}" extract "$W/tree.strata" --files tree "$W/x" --json >"$W/extract.json"
"$PY" "$HERE/manifest.py" "$CORPUS/tree" >"$W/source.manifest"
"$PY" "$HERE/manifest.py" "$W/x" >"$W/extracted.manifest"
diff "$W/source.manifest" "$W/extracted.manifest" >"$W/manifest.diff" || {
  echo "the Python reader's extraction differs from the source:" >&2
  head -20 "$W/manifest.diff" >&2
  exit 1
}
echo "$(wc -l <"$W/source.manifest") entries extracted with no difference from the source"
rm -rf "$W/x"

log "restore: the image, Python reader, compared with the source"
"${REF[@]}" restore "$W/image.strata" --image disk "$W/restored.img"
cmp "$W/restored.img" "$CORPUS/image-clean.raw"
echo "image restored bit-identically ($(stat -c %s "$W/restored.img") bytes)"
rm -f "$W/restored.img"
log "OK: the Python reader reads the Rust writer's corpus archives exactly as strata does"
