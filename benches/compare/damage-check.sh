#!/usr/bin/env bash
# benches/compare/damage-check.sh: issue 4's check on real data. Backs up the
# corpus tree, flips one byte in the body of one CHUNK record that several files
# share, and checks that the files `strata verify` names are exactly the files the
# Python reader's verify names, and exactly the files extraction cannot give
# back (compared with the source tree, independently of both verifiers).
#
#   CORPUS=DIR   the corpus (default /var/tmp/strata-corpus; see corpus.sh)
#   WORK=DIR     scratch space (default /var/tmp/strata-damage)
#   PICK=N       which shared chunk to damage, counted from the middle (default 0)
set -euo pipefail
WORK=${WORK:-/var/tmp/strata-damage}
PICK=${PICK:-0}
# shellcheck source=checks.sh
. "$(dirname "$0")/checks.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
"$STRATA" create "$WORK/tree.strata" --files "tree=$CORPUS/tree" --quiet --force
"$PY" - "$STRATA" "$PY" "$ROOT/spec/reference-py/strata_ref.py" "$WORK" "$CORPUS/tree" "$PICK" <<'EOF'
import json, os, struct, subprocess, sys
strata, py, ref, work, source, pick = sys.argv[1:7]
archive = os.path.join(work, "tree.strata")
data = bytearray(open(archive, "rb").read())

# Walk the record framing (FORMAT.md 5) to find the CHUNK records.
chunks, at = [], struct.unpack_from("<I", data, 12)[0]  # header_length (FORMAT.md 3)
while at + 32 <= len(data):
    rtype, = struct.unpack_from("<H", data, at + 4)
    length, = struct.unpack_from("<Q", data, at + 16)
    if rtype == 0x0001:
        chunks.append((at, length))
    at += 32 + length
print(f"{len(data):,} bytes, {len(chunks):,} chunk records")

def verify(cmd):
    out = subprocess.run(cmd + ["verify", archive, "--json"], capture_output=True)
    report = json.loads(out.stdout)
    named = {a["path"] for p in report["problems"] for a in p.get("affects", []) if "path" in a}
    return out.returncode, report, named

# Damage chunks from the middle on until one is shared by several files.
middle = len(chunks) // 2
candidates = sorted(chunks[middle:], key=lambda c: c[0])
for at, length in candidates:
    data[at + 32 + length // 2] ^= 0x55
    open(archive, "wb").write(data)
    code, report, named = verify([strata])
    if len(named) > 1:
        if pick == "0":
            break
        pick = str(int(pick) - 1)
    data[at + 32 + length // 2] ^= 0x55
else:
    sys.exit("no chunk shared by several files was found")
print(f"damaged the chunk record at byte {at:,} ({length:,} bytes)")
print(f"strata verify: exit {code}, {len(report['problems'])} problem(s), {len(named)} files named")
assert code == 1, code
assert len(report["problems"]) == 1, report["problems"]

pcode, preport, pnamed = verify([py, ref])
print(f"Python reader verify: exit {pcode}, {len(pnamed)} files named")
assert pcode == 1 and pnamed == named, sorted(pnamed ^ named)

# Independent truth: what extraction cannot give back, compared with the source.
dest = os.path.join(work, "x")
out = subprocess.run([strata, "extract", archive, "--files", "tree", dest, "--json"], capture_output=True)
regular = set()
for top, dirs, files in os.walk(source):
    for name in files:
        full = os.path.join(top, name)
        if os.path.isfile(full) and not os.path.islink(full):
            regular.add(os.path.relpath(full, source))
warned = {w["path"] for w in json.loads(out.stdout)["warnings"]} & regular
missing = {path for path in regular if not os.path.lexists(os.path.join(dest, path))}
print(f"extraction: exit {out.returncode}, {len(warned)} files warned about, {len(missing)} missing from DEST")
# Hard links to a damaged file are skipped too: they are missing but not named.
assert named <= missing and warned == missing, (sorted(named ^ missing)[:10], sorted(warned ^ missing)[:10])
for path in sorted(named):
    print("  named:", path)
extra = missing - named
if extra:
    print(f"  and {len(extra)} hard link(s) to them, skipped with a warning:", sorted(extra))
print("OK: both verifiers name exactly the files whose content is lost")
EOF
