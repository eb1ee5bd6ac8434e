#!/usr/bin/env bash
# benches/compare/change-image.sh: rewrites a fraction of an image's 4 KiB blocks
# at random, the same blocks and bytes for the same SEED (issue 17's rows).
#
#   change-image.sh IMG SEED [FRACTION [CHANGED]]
#
# FRACTION (default 0.01) of the image's whole 4 KiB blocks, chosen uniformly
# without repetition by Python's random.Random seeded with the string SEED, are
# overwritten in place with pseudo-random bytes from the same generator (data
# that does not compress: the least any tool can store for it is its size). With
# CHANGED, the new contents of the changed blocks are also written there,
# concatenated in block order: `zstd -3 < CHANGED | wc -c` is "the changed data
# compressed". Prints what it did on stderr.
set -euo pipefail
if [[ $# -lt 2 || $# -gt 4 || ! -f $1 ]]; then
  echo "usage: change-image.sh IMG SEED [FRACTION [CHANGED]]" >&2
  exit 2
fi
exec python3 - "$1" "$2" "${3:-0.01}" "${4:-}" <<'EOF'
import os
import random
import sys

img, seed, fraction, changed = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
blocks = os.path.getsize(img) // 4096
n = round(blocks * fraction)
rng = random.Random(f"strata-change-image:{seed}")
chosen = sorted(rng.sample(range(blocks), n))
fd = os.open(img, os.O_WRONLY)
out = open(changed, "wb") if changed else None
for block in chosen:
    data = rng.getrandbits(8 * 4096).to_bytes(4096, "little")
    os.pwrite(fd, data, block * 4096)
    if out:
        out.write(data)
os.close(fd)
if out:
    out.close()
print(f"change-image: seed {seed}: {n} of {blocks} 4 KiB blocks rewritten ({n * 4096} bytes)", file=sys.stderr)
EOF
