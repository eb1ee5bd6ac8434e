#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, seeded from spec/vectors, one
# target per core at a time. Uses nightly (with sanitizers) when rustup has it,
# else stable without them. Prints, per target, executions, peak RSS and the
# coverage libFuzzer reached.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 15; CI's smoke run)
#   JOBS=N                                       targets at once (default: cores)
#
# The long run of issue 4 is the same script: `scripts/fuzz-smoke.sh 450` gives
# each of the 10 targets 7.5 minutes (75 minutes of fuzzing in all).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-15}
jobs=${JOBS:-$(nproc)}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly); sanitizer=()
else
  toolchain=(); sanitizer=(-s none)
fi
cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}"
mkdir -p artifacts

# decode_chunk reads one CHUNK body after a byte that picks a prefix length: its
# seeds are the chunk bodies of the vectors, found by walking their records.
chunk_seeds() {
  python3 - "$1" ../spec/vectors/*.strata <<'PY'
import os, struct, sys
out = sys.argv[1]
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    if data[:8] != b"\x89STRATA\n":
        continue
    at = struct.unpack_from("<I", data, 12)[0]
    while at + 32 <= len(data):
        kind, length = struct.unpack_from("<H", data, at + 4)[0], struct.unpack_from("<Q", data, at + 16)[0]
        if kind == 1 and at + 32 + length <= len(data):
            name = f"{os.path.basename(path)}.{at}"
            open(os.path.join(out, name), "wb").write(b"\x40" + data[at + 32:at + 32 + length])
        at += 32 + length
PY
}

# table_body reads one compressed table body after a byte that picks its type:
# its seeds are the compressed tables of the vectors (FORMAT.md 5.2).
table_seeds() {
  python3 - "$1" ../spec/vectors/*.strata <<'PY'
import os, struct, sys
out = sys.argv[1]
selector = {0x11: 0, 0x13: 1, 0x21: 2, 0x22: 3, 0x24: 4, 0x25: 5}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    if data[:8] != b"\x89STRATA\n":
        continue
    at = struct.unpack_from("<I", data, 12)[0]
    while at + 32 <= len(data):
        kind, flags = struct.unpack_from("<HH", data, at + 4)
        length = struct.unpack_from("<Q", data, at + 16)[0]
        if flags & 2 and kind in selector and at + 32 + length <= len(data):
            name = f"{os.path.basename(path)}.{at}"
            open(os.path.join(out, name), "wb").write(bytes([selector[kind]]) + data[at + 32:at + 32 + length])
        at += 32 + length
PY
}

# disk_image reads a whole disk: its seeds are small real images (a GPT disk
# holding ext4 and FAT, each file system alone), made by the tools when present.
disk_seeds() {
  local out=$1 tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/src/etc"
  echo demo >"$tmp/src/etc/hostname"
  seq 1 3000 >"$tmp/src/numbers"
  ln -s etc/hostname "$tmp/src/link"
  if command -v mkfs.ext4 >/dev/null; then
    mkfs.ext4 -q -F -b 1024 -N 16 -d "$tmp/src" "$out/ext4.img" 256K >/dev/null 2>&1 || true
  fi
  if command -v mkfs.vfat >/dev/null; then
    mkfs.vfat -C "$out/fat.img" 64 >/dev/null 2>&1 || true
    command -v mcopy >/dev/null && mcopy -i "$out/fat.img" "$tmp/src/numbers" ::/numbers 2>/dev/null || true
  fi
  if command -v sgdisk >/dev/null && [[ -f $out/ext4.img && -f $out/fat.img ]]; then
    truncate -s 448K "$out/gpt.img"
    sgdisk -o -a 1 -n1:34:161 -n2:162:673 "$out/gpt.img" >/dev/null 2>&1 || true
    dd if="$out/fat.img" of="$out/gpt.img" bs=512 seek=34 conv=notrunc status=none
    dd if="$out/ext4.img" of="$out/gpt.img" bs=512 seek=162 conv=notrunc status=none
  fi
  rm -rf "$tmp"
}

run_target() {
  local target=$1 log="artifacts/$1.run.log"
  mkdir -p "corpus/$target"
  if [[ $target == disk_image ]]; then
    disk_seeds "corpus/$target"
  else
    cp -n ../spec/vectors/*.strata "corpus/$target/" 2>/dev/null || true
  fi
  if [[ $target == decode_chunk ]]; then chunk_seeds "corpus/$target"; fi
  if [[ $target == table_body ]]; then table_seeds "corpus/$target"; fi
  if ! cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" "$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target" >&2
    return 1
  fi
  printf '%-18s %s %s\n' "$target" \
    "$(grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' ')" \
    "$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)"
}

pids=()
failed=0
for target in $(cargo "${toolchain[@]}" fuzz list); do
  run_target "$target" &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
exit "$failed"
