#!/usr/bin/env bash
# The main job on real data: build strata, image a real ext4 file system made from
# this machine's own files, then inspect, verify and restore it and prove the
# restore is bit-identical. Set SOURCE=/path/to/disk.img (or a block device) to
# image your own instead; WORK=DIR chooses where files go (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh
cargo build --release --bin strata
strata=$PWD/target/release/strata
work=${WORK:-$(mktemp -d /var/tmp/strata-demo.XXXXXX)}
mkdir -p "$work"
source=${SOURCE:-}
if [[ -z "$source" ]]; then
  source=$work/usr-share.ext4
  if [[ ! -e "$source" ]]; then
    echo "== making an ext4 image of /usr/share (real files) at $source"
    mke2fs -q -t ext4 -d /usr/share "$source" 2G
  fi
fi
echo "== strata create"
time "$strata" create "$work/demo.strata" --image "disk=$source"
echo "== strata info"
"$strata" info "$work/demo.strata"
echo "== strata verify"
"$strata" verify "$work/demo.strata"
echo "== strata restore"
time "$strata" restore "$work/demo.strata" --image disk "$work/restored.img"
if cmp "$source" "$work/restored.img"; then
  echo "== restored image is bit-identical to $source"
  echo "   image size:              $(du -h --apparent-size "$work/restored.img" | cut -f1)"
  echo "   allocated (holes kept):  $(du -h "$work/restored.img" | cut -f1)"
  echo "   archive size:            $(du -h --apparent-size "$work/demo.strata" | cut -f1)"
else
  echo "== RESTORED IMAGE DIFFERS" >&2
  exit 1
fi
echo "== the demo's files ($(du -sh "$work" | cut -f1)) are in $work; remove them with: rm -r $work"
