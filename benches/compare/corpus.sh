#!/usr/bin/env bash
# Builds the comparison corpus (as root): a Debian minbase root file system with
# some of this machine's libraries and documentation beside it (about 1 GB of real
# files), and two 4 GiB ext4 images of that tree: one on zeroed space ("clean")
# and one on space full of random bytes ("dirty", as a used disk is). Writes
# meta.env with the facts the comparison needs. Skips what already exists.
#   CORPUS=DIR (default /var/tmp/strata-corpus)   SUITE=bookworm
set -euo pipefail
CORPUS=${CORPUS:-/var/tmp/strata-corpus}
SUITE=${SUITE:-bookworm}
mkdir -p "$CORPUS"
cd "$CORPUS"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

if [[ ! -d tree ]]; then
  rm -rf tree.part && mkdir -p tree.part
  if ! debootstrap --variant=minbase "$SUITE" tree.part/rootfs >debootstrap.log 2>&1; then
    echo "debootstrap failed (see $CORPUS/debootstrap.log): using copies of this machine's /usr instead" >&2
    rm -rf tree.part/rootfs && mkdir -p tree.part/rootfs/usr && cp -a /usr/share /usr/lib tree.part/rootfs/usr/
  fi
  mkdir -p tree.part/extra
  for d in /usr/share/doc /usr/lib/x86_64-linux-gnu; do
    [[ -d $d ]] && cp -a "$d" "tree.part/extra/$(echo "${d#/}" | tr / -)"
  done
  mv tree.part tree
fi

for kind in clean dirty; do
  img=image-$kind.raw
  [[ -f $img ]] && continue
  rm -f "$img.part"
  if [[ $kind == dirty ]]; then
    # Free space full of old data: a deterministic pseudo-random stream.
    # openssl ends by SIGPIPE when head has its 4 GiB: with pipefail that is a
    # failure, so the size is what is checked.
    openssl enc -aes-128-ctr -nosalt -pass pass:strata-corpus -in /dev/zero 2>/dev/null | head -c 4G >"$img.part" || true
    [[ $(stat -c %s "$img.part") -eq $((4 << 30)) ]] || { echo "corpus.sh: could not fill $img.part" >&2; exit 1; }
  else
    truncate -s 4G "$img.part"
  fi
  mke2fs -q -F -t ext4 -U 5f6a7b8c-0000-4000-8000-000000000001 -E root_owner=0:0 -d tree "$img.part"
  mv "$img.part" "$img"
done

if [[ ! -s meta.env ]]; then
  # A deep, small regular file: the one-file benchmark.
  # sed reads all its input (head would end sort by SIGPIPE, a failure under pipefail).
  deep=$(cd tree && find . -type f -size -64k -size +8k -printf '%d %P\n' | sort -k1,1nr -k2 | sed -n 1p | cut -d' ' -f2-)
  block=$(debugfs -R "bmap /$deep 0" image-clean.raw 2>/dev/null | tail -1)
  {
    echo "DEEP_REL='$deep'"
    echo "DEEP_OFF=$((block * 4096))"
    echo "TREE_BYTES=$(du -sb tree | cut -f1)"
    echo "TREE_ENTRIES=$(find tree | wc -l)"
  } >meta.env.part
  mv meta.env.part meta.env
fi
cat meta.env
