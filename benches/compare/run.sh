#!/usr/bin/env bash
# benches/compare/run.sh: Strata beside the tools people use today for images and
# backups, on the same corpus, in one run, with the same page-cache state for all
# (inputs read once before every measured run). Prints a markdown table and
# writes it to benches/RESULTS.md.
#
#   CORPUS=DIR   the corpus (built by benches/compare/corpus.sh when missing)
#   RUNS=3       runs per measurement; the table shows medians
#   WORK=DIR     scratch space (default /var/tmp/strata-compare, about 12 GB)
#   OUT=FILE     where the table goes (default benches/RESULTS.md; with ONLY,
#                $WORK/results-ONLY.md, to be merged by hand)
#   ONLY=LIST    run only these sections (comma-separated; default all):
#                images, nbd, trees, smalltrees, mount, incremental. What a section reads and another
#                section makes (an archive, a repository) is made unmeasured, and
#                nbd and mount measure their reference rows (strata restore,
#                strata extract) themselves: ONLY=nbd,mount runs issue 18's rows,
#                ONLY=incremental issue 17's (which make all they need).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORPUS=${CORPUS:-/var/tmp/strata-corpus}
RUNS=${RUNS:-3}
WORK=${WORK:-/var/tmp/strata-compare}
ONLY=${ONLY:-}
if [[ -n $ONLY ]]; then OUT=${OUT:-$WORK/results-${ONLY//,/-}.md}; else OUT=${OUT:-$ROOT/benches/RESULTS.md}; fi
# want SECTION: whether this run includes SECTION.
want() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }
export RESTIC_PASSWORD=strata-compare BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- tools -------------------------------------------------------------------
need=()
for pair in zstd:zstd qemu-img:qemu-utils partclone.ext4:partclone 7zz:7zip bsdtar:libarchive-tools \
  mksquashfs:squashfs-tools borg:borgbackup restic:restic /usr/bin/time:time hyperfine:hyperfine \
  squashfuse:squashfuse fusermount3:fuse3 nbdinfo:libnbd-bin qemu-nbd:qemu-utils; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[[ -f $CORPUS/image-clean.raw && -d $CORPUS/tree ]] || CORPUS=$CORPUS bash "$HERE/corpus.sh"
# shellcheck disable=SC1091
. "$CORPUS/meta.env"
DEEP_OFF=${DEEP_OFF:-${image_clean_DEEP_OFF:?meta.env has no DEEP_OFF}}
(cd "$ROOT" && cargo build --release --quiet --bin strata)
STRATA=$ROOT/target/release/strata
rm -rf "$WORK" && mkdir -p "$WORK"
W=$WORK C=$CORPUS

# --- measuring -----------------------------------------------------------------
# measure WORK TOOL OUTPUT PREPARE COMMAND: RUNS runs of COMMAND (after PREPARE
# and warming the inputs), recording median wall time, median peak RSS and the
# size of OUTPUT (a file or folder; "-" for none).
ROWS=()
# Rows whose work starts with "incremental:" get a table of their own, their
# ratios against the tool INC_REF[work] names.
declare -A INC_REF=()
# Rows whose work starts with "small tree:" get a table of sizes, their ratio
# against the tool SIZE_REF[work] names.
declare -A SIZE_REF=()
warm() { cat "$C/image-clean.raw" "$C/image-dirty.raw" >/dev/null; tar -C "$C/tree" -cf - . >/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
  local work=$1 tool=$2 output=$3 prepare=$4 command=$5 times=() rss=() i
  for ((i = 0; i < RUNS; i++)); do
    # Inputs first, then the tool's own preparation (which may read its archive
    # into the page cache: a read benchmark measures the read, not the disk).
    warm
    bash -c "$prepare" >/dev/null 2>&1 || true
    # The previous tool's output is written back now, not during this run.
    sync
    local stats start
    start=$EPOCHREALTIME
    if ! /usr/bin/time -f '%M' -o "$W/time.txt" bash -c "$command" >/dev/null 2>"$W/stderr"; then
      log "$tool $work failed: $(tail -3 "$W/stderr")"
      ROWS+=("$work|$tool|failed|-|-")
      return
    fi
    # Wall time with microseconds (one-file reads take milliseconds); RSS in KiB.
    times+=("$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')")
    stats=$(tail -1 "$W/time.txt")
    rss+=("$stats")
  done
  local t r size="-"
  t=$(printf '%s\n' "${times[@]}" | median)
  r=$(printf '%s\n' "${rss[@]}" | median)
  [[ $output != - ]] && size=$(du -sb "$output" | cut -f1)
  log "$work $tool: ${t}s, $((r / 1024)) MiB RSS, size $size"
  ROWS+=("$work|$tool|$t|$size|$((r / 1024))")
}

# measure_set WORK TOOL OUTPUT PREPARE COMMAND [TOOL OUTPUT PREPARE COMMAND]...:
# measure for several tools doing the same work, their runs taken in turn (the
# first run of each, then the second of each, ...), so that a change in the
# machine's load falls on all of them alike. Each run is warmed, prepared, synced
# and timed as in measure; the log shows every run's time.
measure_set() {
  local work=$1 i j t r start size
  shift
  local -a tools=() outputs=() prepares=() commands=() times=() rss=() failed=()
  while (($# >= 4)); do
    tools+=("$1") outputs+=("$2") prepares+=("$3") commands+=("$4")
    shift 4
  done
  for ((i = 0; i < RUNS; i++)); do
    for j in "${!tools[@]}"; do
      [[ -n ${failed[j]:-} ]] && continue
      warm
      bash -c "${prepares[j]}" >/dev/null 2>&1 || true
      sync
      start=$EPOCHREALTIME
      if ! /usr/bin/time -f '%M' -o "$W/time.txt" bash -c "${commands[j]}" >/dev/null 2>"$W/stderr"; then
        log "${tools[j]} $work failed: $(tail -3 "$W/stderr")"
        failed[j]=1
        continue
      fi
      times[j]+="$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }') "
      rss[j]+="$(tail -1 "$W/time.txt") "
    done
  done
  for j in "${!tools[@]}"; do
    if [[ -n ${failed[j]:-} ]]; then
      ROWS+=("$work|${tools[j]}|failed|-|-")
      continue
    fi
    # shellcheck disable=SC2086 # the runs' figures, one per word
    t=$(printf '%s\n' ${times[j]} | median)
    # shellcheck disable=SC2086
    r=$(printf '%s\n' ${rss[j]} | median)
    size=-
    [[ ${outputs[j]} != - ]] && size=$(du -sb "${outputs[j]}" | cut -f1)
    log "$work ${tools[j]}: ${t}s (runs: ${times[j]% }), $((r / 1024)) MiB RSS, size $size"
    ROWS+=("$work|${tools[j]}|$t|$size|$((r / 1024))")
  done
}

# measure_quick WORK TOOL PREPARE COMMAND: for the one-file reads, which take
# milliseconds. "For the whole process" means the tool's own process: hyperfine
# starts it directly (no shell, whose start-up would be most of the figure), or,
# for a pipeline, through a shell whose start-up it measures and subtracts. At
# least 10 runs after 3 warm-up runs (which also read the archive into the page
# cache); the median is kept. Peak RSS comes from one more run under time(1).
measure_quick() {
  local work=$1 tool=$2 prepare=$3 command=$4 shell=(-N) t r
  warm
  bash -c "$prepare" >/dev/null 2>&1 || true
  sync
  [[ $command == *'|'* ]] && shell=()
  if ! hyperfine "${shell[@]}" --warmup 3 --min-runs 10 --style none --export-json "$W/quick.json" \
    "$command" >/dev/null 2>"$W/stderr" ||
    ! /usr/bin/time -f '%M' -o "$W/time.txt" bash -c "$command" >/dev/null 2>>"$W/stderr"; then
    log "$tool $work failed: $(tail -3 "$W/stderr")"
    ROWS+=("$work|$tool|failed|-|-")
    return
  fi
  t=$(python3 -c 'import json, sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$W/quick.json")
  r=$(tail -1 "$W/time.txt")
  log "$work $tool: ${t}s, $((r / 1024)) MiB RSS"
  ROWS+=("$work|$tool|$t|-|$((r / 1024))")
}

# The Python that runs manifest.py (BLAKE3 with the venv, else SHA-256).
if [[ -x $ROOT/.venv/bin/python ]] && "$ROOT/.venv/bin/python" -c 'import blake3' 2>/dev/null; then
  py=$ROOT/.venv/bin/python
else
  py=python3
fi

# --- images --------------------------------------------------------------------
IMG=$C/image-clean.raw
if want images; then
for kind in clean dirty; do
  IMG=$C/image-$kind.raw
  measure "image-$kind create" strata "$W/$kind.strata" "rm -f $W/$kind.strata" "$STRATA create $W/$kind.strata --image disk=$IMG --quiet"
  measure "image-$kind create" "zstd -3 -T2" "$W/$kind.zst" "rm -f $W/$kind.zst" "zstd -3 -T2 -q -f $IMG -o $W/$kind.zst"
  measure "image-$kind create" "qemu-img qcow2 zstd" "$W/$kind.qcow2" "rm -f $W/$kind.qcow2" \
    "qemu-img convert -c -O qcow2 -o compression_type=zstd $IMG $W/$kind.qcow2"
  measure "image-$kind create" "partclone.ext4 + zstd (used blocks only)" "$W/$kind.pc.zst" "rm -f $W/$kind.pc.zst" \
    "partclone.ext4 -c -s $IMG -o - 2>/dev/null | zstd -3 -T2 -q > $W/$kind.pc.zst"
  # Issue 16: used blocks only, beside partclone (the row above).
  measure "image-$kind create" "strata --used-blocks" "$W/$kind.ub.strata" "rm -f $W/$kind.ub.strata" \
    "$STRATA create $W/$kind.ub.strata --image disk=$IMG --used-blocks --quiet"
done
# The used-blocks archive restores to a disk whose file system checks clean and
# holds the source's files (issue 16, acceptance 2): checked, not timed.
$STRATA restore "$W/dirty.ub.strata" --image disk "$W/ub.img" --quiet
e2fsck -fn "$W/ub.img" >/dev/null 2>&1 || { log "the used-blocks restore does not pass e2fsck -fn"; exit 1; }
mkdir -p "$W/ub-src" "$W/ub-back"
mount -o loop,ro "$C/image-dirty.raw" "$W/ub-src" && mount -o loop,ro "$W/ub.img" "$W/ub-back"
same=0; diff -r --no-dereference "$W/ub-src" "$W/ub-back" >/dev/null 2>&1 || same=1
umount "$W/ub-src" "$W/ub-back"; rm -f "$W/ub.img"
((same == 0)) || { log "the used-blocks restore holds other files than the source image"; exit 1; }
log "used-blocks restore of image-dirty: e2fsck -fn clean, every file identical"
# One file out of the image section (issue 16, acceptance 3), whole process,
# beside 7-Zip extracting the same file from the raw image.
# The image is mke2fs -d of the tree: the deep file has the same path in it.
if command -v 7zz >/dev/null; then
  measure_quick "one file out of an image section" strata "cat $W/clean.strata" \
    "$STRATA cat $W/clean.strata --image disk $DEEP_REL"
  # The same from the used-blocks archive of the same image (its file
  # system's metadata begins chunks of its own: a lookup decodes little).
  measure_quick "one file out of an image section" "strata, --used-blocks archive" "cat $W/clean.ub.strata" \
    "$STRATA cat $W/clean.ub.strata --image disk $DEEP_REL"
  measure_quick "one file out of an image section" "7zz e (raw image)" "cat $C/image-clean.raw" \
    "7zz e -so $C/image-clean.raw $DEEP_REL"
fi
# The dirty outputs (11 GB) are not read again: free their page cache for the rest.
rm -f "$W"/dirty.*
IMG=$C/image-clean.raw
measure "image-clean restore" strata - "rm -f $W/r.img; cat $W/clean.strata" "$STRATA restore $W/clean.strata --image disk $W/r.img --quiet"
cmp "$W/r.img" "$IMG" || { log "strata restore is not bit-identical"; exit 1; }
measure "image-clean restore" "zstd -d" - "rm -f $W/r.img; cat $W/clean.zst" "zstd -d -q -f $W/clean.zst -o $W/r.img"
measure "image-clean restore" "qemu-img qcow2" - "rm -f $W/r.img; cat $W/clean.qcow2" "qemu-img convert -O raw $W/clean.qcow2 $W/r.img"
fi
if want nbd; then
if ! want images; then
  # What the images section makes, unmeasured; and the reference row of the
  # convert (issue 18: at least 0.8x the speed of strata restore).
  log "nbd: making clean.strata and clean.qcow2 (unmeasured)"
  $STRATA create "$W/clean.strata" --image "disk=$IMG" --quiet
  qemu-img convert -c -O qcow2 -o compression_type=zstd "$IMG" "$W/clean.qcow2"
  measure "image-clean restore" strata - "rm -f $W/r.img; cat $W/clean.strata" "$STRATA restore $W/clean.strata --image disk $W/r.img --quiet"
fi
# qemu-img convert reading over NBD (issue 18): from `strata serve` on the archive,
# and from qemu-nbd on the qcow2 of the same image, both on a Unix socket. Each
# server starts and stops inside the measured command; starting takes milliseconds.
# The previous run's output is removed before, unmeasured, as for strata restore.
over_nbd() { # SERVER_COMMAND URI: the measured command
  printf '%s' "$1 & pid=\$!; for i in \$(seq 1000); do [[ -S $W/nbd.sock ]] && break; sleep 0.01; done; sleep 0.02; qemu-img convert -O raw '$2' $W/r.img; status=\$?; kill \$pid; wait \$pid; exit \$status"
}
measure "image-clean convert over NBD" strata - "rm -f $W/nbd.sock $W/r.img; cat $W/clean.strata" \
  "$(over_nbd "$STRATA serve $W/clean.strata --image disk --unix $W/nbd.sock --quiet" "nbd+unix:///disk?socket=$W/nbd.sock")"
cmp "$W/r.img" "$IMG" || { log "qemu-img convert from strata serve is not bit-identical"; exit 1; }
measure "image-clean convert over NBD" "qemu-nbd qcow2" - "rm -f $W/nbd.sock $W/r.img; cat $W/clean.qcow2" \
  "$(over_nbd "qemu-nbd -r -f qcow2 -k $W/nbd.sock $W/clean.qcow2" "nbd+unix:///?socket=$W/nbd.sock")"
rm -f "$W/r.img"
# Holes as the server reports them (base:allocation), beside the image's own.
rm -f "$W/nbd.sock"
$STRATA serve "$W/clean.strata" --image disk --unix "$W/nbd.sock" --quiet &
serve_pid=$!
for _ in $(seq 1000); do [[ -S $W/nbd.sock ]] && break; sleep 0.01; done
if nbdinfo --map "nbd+unix:///disk?socket=$W/nbd.sock" >"$W/map.txt" 2>"$W/stderr"; then
  log "nbdinfo --map of strata serve: $(awk '$3 != 0 {n++; b += $2} END {printf "%d hole or zero extents, %.1f MB", n, b / 1e6}' "$W/map.txt") (the image: $(du -B1 "$IMG" | cut -f1) of $(stat -c %s "$IMG") bytes allocated)"
else
  log "nbdinfo --map of strata serve failed: $(tail -3 "$W/stderr")"
fi
kill $serve_pid; wait $serve_pid || true
fi
if want images; then
measure_quick "16 KiB read at an image offset" strata "cat $W/clean.strata" \
  "$STRATA cat $W/clean.strata --image disk --offset $DEEP_OFF --length 16384"
measure_quick "16 KiB read at an image offset" "qemu-io qcow2" "cat $W/clean.qcow2" \
  "qemu-io -r -c 'read $DEEP_OFF 16k' $W/clean.qcow2"
measure_quick "16 KiB read at an image offset" "zstd -d (stream to the offset)" "cat $W/clean.zst" \
  "zstd -dc $W/clean.zst | tail -c +$((DEEP_OFF + 1)) | head -c 16384"
fi

# --- trees ---------------------------------------------------------------------
T=$C/tree
if want trees; then
# Strata and the tools that compete on speed are taken in turn (measure_set),
# so that a change in this machine's load falls on all of them alike.
measure_set "tree create" \
  strata "$W/tree.strata" "rm -f $W/tree.strata" "$STRATA create $W/tree.strata --files tree=$T --quiet" \
  "tar + zstd -3 -T2" "$W/tree.tar.zst" "rm -f $W/tree.tar.zst" "tar -C $T -cf - . | zstd -3 -T2 -q > $W/tree.tar.zst" \
  "bsdtar --zstd threads=2" "$W/tree.bsdtar" "rm -f $W/tree.bsdtar" \
  "bsdtar --zstd --options zstd:threads=2 -cf $W/tree.bsdtar -C $T ." \
  "mksquashfs zstd" "$W/tree.sqfs" "rm -f $W/tree.sqfs" \
  "mksquashfs $T $W/tree.sqfs -comp zstd -Xcompression-level 3 -processors 2 -noappend -quiet"
# The physical bound of issue 14 (acceptance 1): zstd -3's single-core speed on
# the tree's bytes (as one tar), times the cores, is the least time any tool
# that compresses them at level 3 can take.
tar -C "$T" -cf "$W/tree.tar" .
tar_bytes=$(stat -c %s "$W/tree.tar")
speed=$(zstd -b3 -i3 "$W/tree.tar" 2>&1 | tr '\r' '\n' | grep -o '[0-9.]* MB/s' | tail -2 | head -1 | cut -d' ' -f1)
rm -f "$W/tree.tar"
bound=$(awk -v b="$tar_bytes" -v s="$speed" -v c="$(nproc)" 'BEGIN { printf "%.3f", b / (s * 1e6 * c) }')
log "tree create: zstd -b3 compresses the tree's $tar_bytes bytes at $speed MB/s on one core: ${bound}s on $(nproc) cores"
ROWS+=("tree create|bound: zstd -b3 speed x $(nproc) cores|$bound|-|-")
measure "tree create" "borg" "$W/borg" "rm -rf $W/borg && borg init -e none $W/borg" \
  "borg create --compression zstd,3 $W/borg::a $T"
measure "tree create" "restic" "$W/restic" "rm -rf $W/restic && restic init -q --repo $W/restic" \
  "restic -q -r $W/restic backup $T"
X=$W/x
rm -rf "$X" && "$STRATA" extract "$W/tree.strata" --files tree "$X" --quiet
"$py" "$HERE/manifest.py" "$T" >"$W/want.txt"
"$py" "$HERE/manifest.py" "$X" >"$W/got.txt"
cmp -s "$W/want.txt" "$W/got.txt" || { log "strata extract differs from the tree"; exit 1; }
measure_set "tree extract" \
  strata - "rm -rf $X; cat $W/tree.strata" "$STRATA extract $W/tree.strata --files tree $X --quiet" \
  "tar + zstd" - "rm -rf $X && mkdir -p $X; cat $W/tree.tar.zst" "zstd -dc $W/tree.tar.zst | tar -C $X -xf -" \
  "bsdtar" - "rm -rf $X && mkdir -p $X; cat $W/tree.bsdtar" "bsdtar -xf $W/tree.bsdtar -C $X" \
  "unsquashfs" - "rm -rf $X; cat $W/tree.sqfs" "unsquashfs -q -n -d $X -processors 2 $W/tree.sqfs"
measure "tree extract" "borg" - "rm -rf $X && mkdir -p $X; tar -C $W/borg -cf - ." "cd $X && borg extract $W/borg::a"
measure "tree extract" "restic" - "rm -rf $X; tar -C $W/restic -cf - ." "restic -q -r $W/restic restore latest --target $X"
rm -rf "$X"
measure_quick "one deep file out of the tree archive" strata "cat $W/tree.strata" "$STRATA cat $W/tree.strata --files tree $DEEP_REL"
measure_quick "one deep file out of the tree archive" "tar + zstd" "cat $W/tree.tar.zst" "zstd -dc $W/tree.tar.zst | tar -xOf - ./$DEEP_REL"
measure_quick "one deep file out of the tree archive" "unsquashfs -cat" "cat $W/tree.sqfs" "unsquashfs -cat $W/tree.sqfs $DEEP_REL"
measure_quick "one deep file out of the tree archive" "borg" "tar -C $W/borg -cf - ." "borg extract --stdout $W/borg::a ${T#/}/$DEEP_REL"
measure_quick "one deep file out of the tree archive" "restic dump" "tar -C $W/restic -cf - ." "restic -q -r $W/restic dump latest $T/$DEEP_REL"
fi

# --- small-file trees (issue 14, acceptance 3) ------------------------------------
# Trees of small files, built the same way on every run: the project's own
# dependencies as `cargo vendor --versioned-dirs` gives them, /usr/include and
# the system Python's standard library (copied with their metadata), and
# 200,000 empty files in 100 folders (names and times fixed).
if want smalltrees; then
S=$W/small
rm -rf "$S" && mkdir -p "$S"
log "smalltrees: building the trees in $S"
(cd "$ROOT" && cargo vendor --versioned-dirs --locked -q "$S/src-vendor" >/dev/null)
cp -a /usr/include "$S/src-include"
cp -a "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" "$S/src-python"
python3 - "$S/src-empty" <<'PY'
import os, sys
top = sys.argv[1]
for d in range(100):
    folder = os.path.join(top, "d%03d" % d)
    os.makedirs(folder)
    for f in range(2000):
        path = os.path.join(folder, "f%05d" % f)
        open(path, "w").close()
        os.utime(path, (1700000000, 1700000000))
    os.utime(folder, (1700000000, 1700000000))
os.utime(top, (1700000000, 1700000000))
PY
for name in vendor include python empty; do
  src=$S/src-$name
  w="small tree: $name ($(find "$src" | wc -l) entries)"
  SIZE_REF[$w]="tar + zstd -3 -T2"
  measure_set "$w" \
    strata "$S/$name.strata" "rm -f $S/$name.strata" "$STRATA create $S/$name.strata --files t=$src --quiet" \
    "tar + zstd -3 -T2" "$S/$name.tar.zst" "rm -f $S/$name.tar.zst" "tar -C $src -cf - . | zstd -3 -T2 -q > $S/$name.tar.zst"
done
fi

# --- mounts (issue 18) ---------------------------------------------------------
# The tree archive mounted, beside squashfuse on the squashfs of the same tree and
# borg mount and restic mount on their repositories: (1) from starting the mount
# until the first `ls` of the mount root answers; on a fresh mount each time,
# (2) `find DIR | wc -l` and (3) reading every file, `tar -cf - -C DIR . | wc -c`,
# DIR being the tree's folder in the mount (restic's root holds the snapshot
# several times: ids/, hosts/, snapshots/). Every mount runs in the foreground in
# the background of this shell; peak RSS is the mount process's. `strata extract`
# is the reference for (3).
if want mount; then
if ! want trees; then
  log "mount: making the tree archive, the squashfs and the borg and restic repositories (unmeasured)"
  $STRATA create "$W/tree.strata" --files "tree=$T" --quiet
  mksquashfs "$T" "$W/tree.sqfs" -comp zstd -Xcompression-level 3 -processors 2 -noappend -quiet >/dev/null
  borg init -e none "$W/borg" && borg create --compression zstd,3 "$W/borg::a" "$T"
  restic init -q --repo "$W/restic" && restic -q -r "$W/restic" backup "$T" >/dev/null
fi
MNT=$W/mnt
mkdir -p "$MNT"
MOUNT_PID=
# unmount: ends the mount at $MNT and its process, whatever state they are in.
unmount() {
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 0.5; fusermount3 -u -z "$MNT" 2>/dev/null; } || true
  fi
  if [[ -n $MOUNT_PID ]]; then
    for _ in $(seq 200); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$MOUNT_PID" 2>/dev/null; then pkill -P "$MOUNT_PID" || true; kill "$MOUNT_PID" 2>/dev/null || true; fi
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
  fi
}
trap 'unmount' EXIT
trap 'exit 130' INT TERM
# mounted_run MOUNT_COMMAND STEP: mounts (MOUNT_COMMAND in the background under
# time(1)), waits for the first `ls` of $MNT to answer, runs STEP ("-" for none),
# unmounts. Sets ls_s, step_s, step_out and rss_k; fails when the mount does not
# answer within 60 s or STEP fails.
mounted_run() {
  local start t1 t2 ok=1
  start=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$W/mtime.txt" bash -c "exec $1" >/dev/null 2>"$W/mstderr" &
  MOUNT_PID=$!
  for _ in $(seq 30000); do
    [[ -n $(ls -A "$MNT" 2>/dev/null) ]] && break
    kill -0 "$MOUNT_PID" 2>/dev/null || { ok=0; break; }
    sleep 0.002
  done
  t1=$EPOCHREALTIME
  [[ -n $(ls -A "$MNT" 2>/dev/null) ]] || ok=0
  ls_s=$(awk -v a="$start" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  step_s=- step_out=-
  if ((ok)) && [[ $2 != - ]]; then
    t1=$EPOCHREALTIME
    if step_out=$(bash -c "$2" 2>>"$W/mstderr"); then
      t2=$EPOCHREALTIME
      step_s=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
    else
      ok=0
    fi
  fi
  unmount
  rss_k=$(tail -1 "$W/mtime.txt" 2>/dev/null)
  [[ $rss_k =~ ^[0-9]+$ ]] || rss_k=0
  ((ok))
}
# measure_mount TOOL PREPARE MOUNT_COMMAND DIR: the three rows for one tool,
# each the median of RUNS runs on a fresh mount, inputs warmed, PREPARE run and
# earlier output synced first (as measure does).
measure_mount() {
  local tool=$1 prepare=$2 mount=$3 dir=$4 work step i times rss out
  # (Row names hold no "|": it separates the fields of ROWS.)
  for work in "first ls of the root" "find, wc -l" "every file read: tar, wc -c"; do
    case $work in
      first*) step=- ;;
      find*) step="find $dir | wc -l" ;;
      *) step="tar -cf - -C $dir . | wc -c" ;;
    esac
    times=() rss=() out=-
    for ((i = 0; i < RUNS; i++)); do
      warm
      bash -c "$prepare" >/dev/null 2>&1 || true
      sync
      if ! mounted_run "$mount" "$step"; then
        log "$tool tree mount: $work failed: $(tail -3 "$W/mstderr")"
        times=()
        break
      fi
      if [[ $step == - ]]; then times+=("$ls_s"); else times+=("$step_s"); fi
      rss+=("$rss_k") out=$step_out
    done
    if ((${#times[@]} == 0)); then
      ROWS+=("tree mount: $work|$tool|failed|-|-")
      continue
    fi
    local t r
    t=$(printf '%s\n' "${times[@]}" | median)
    r=$(printf '%s\n' "${rss[@]}" | median)
    log "tree mount: $work $tool: ${t}s, $((r / 1024)) MiB RSS (mount process), output $out"
    ROWS+=("tree mount: $work|$tool|$t|-|$((r / 1024))")
  done
}
measure_mount strata "cat $W/tree.strata" "$STRATA mount -f $W/tree.strata $MNT --quiet" "$MNT/tree"
measure_mount squashfuse "cat $W/tree.sqfs" "squashfuse -f $W/tree.sqfs $MNT" "$MNT"
measure_mount "borg mount" "tar -C $W/borg -cf - ." "borg mount -f $W/borg::a $MNT" "$MNT/${T#/}"
measure_mount "restic mount" "tar -C $W/restic -cf - ." "restic -q -r $W/restic mount $MNT" "$MNT/snapshots/latest/${T#/}"
X=$W/x
measure "tree mount: every file read: tar, wc -c" "strata extract" - "rm -rf $X; cat $W/tree.strata" \
  "$STRATA extract $W/tree.strata --files tree $X --quiet"
rm -rf "$X"
fi


# --- incremental archives (issue 17) ---------------------------------------------
# Daily backups beside borg 1.2 (`--encryption none`, `--compression zstd,3` as in
# the tree rows: the compression closest to Strata's zstd level 3 rather than
# borg's default lz4; borg has no threads) and restic 0.14 (repository version 2,
# its default `--compression auto`; threads as many as cores), on a copy of the
# corpus tree in $WORK, then on a copy of the clean image. Repositories, archives
# and borg's and restic's caches (BORG_BASE_DIR, RESTIC_CACHE_DIR) are in $WORK
# too. Rows:
#  1. the first backup, and the second of the unchanged tree: time and bytes
#     added (Strata: the size of the child archive; borg and restic: the growth
#     of the repository);
#  2. the third, after change-tree.sh (seed 1); every Strata generation extracts
#     identical to its source (manifest.py), and borg's and restic's third too;
#  3. the clean image after change-image.sh (1% of its 4 KiB blocks, seed 1),
#     beside "the changed data compressed" (the new contents of the changed
#     blocks concatenated, zstd -3); the child restores bit-identical;
#  4. extraction (tree) and restore (image) from the tip of a 10-deep chain
#     beside its flattened copy (`strata flatten`); the tree chain continues the
#     three generations above with change-tree.sh seeds 2 to 9, the image chain
#     the two with change-image.sh 0.1% seeds 2 to 10.
# The tools' runs are taken in turn (measure_set). Every run of a backup starts
# from the same state: Strata writes a new child of the same parent; borg's and
# restic's repository and cache are copied back from a snapshot taken after the
# previous generation (unmeasured).
if want incremental; then
I=$W/inc
rm -rf "$I" && mkdir -p "$I"
export BORG_BASE_DIR=$I/borg-home RESTIC_CACHE_DIR=$I/restic-cache
SRC=$I/tree X=$I/x
BORG="borg create --compression zstd,3"
# added WORK TOOL BASE: the size of TOOL's row becomes its growth over BASE (the
# copy of the repository as it was before the run).
added() {
  local i work tool t size rss
  for i in "${!ROWS[@]}"; do
    IFS='|' read -r work tool t size rss <<<"${ROWS[i]}"
    [[ $work == "$1" && $tool == "$2" && $t != failed ]] || continue
    size=$((size - $(du -sb "$3" | cut -f1)))
    log "$work $tool: $size bytes added"
    ROWS[i]="$work|$tool|$t|$size|$rss"
  done
}
# snap NAME: copies borg's and restic's repositories and caches as they are now.
# from NAME TOOL: the command that puts TOOL's back as they were at snap NAME.
snap() {
  rm -rf "$I/snap-$1" && mkdir -p "$I/snap-$1"
  cp -a "$I/borg" "$I/borg-home" "$I/restic" "$I/restic-cache" "$I/snap-$1/"
}
from() {
  if [[ $2 == borg ]]; then
    printf '%s' "rm -rf $I/borg $I/borg-home && cp -a $I/snap-$1/borg $I/snap-$1/borg-home $I/"
  else
    printf '%s' "rm -rf $I/restic $I/restic-cache && cp -a $I/snap-$1/restic $I/snap-$1/restic-cache $I/"
  fi
}
# same_tree DIR WANT WHAT: whether DIR's manifest is WANT (logged either way).
same_tree() {
  local diffs=$W/${3//[^a-z0-9]/-}.diff
  "$py" "$HERE/manifest.py" "$1" >"$I/got.txt"
  if cmp -s "$2" "$I/got.txt"; then
    log "$3: identical to its source (manifest.py: types, modes, owners, sizes, mtimes, xattrs, links, content)"
    return 0
  fi
  diff "$2" "$I/got.txt" >"$diffs" || true
  log "$3 differs from its source: $(grep -c '^[<>]' "$diffs") manifest lines differ (in $diffs)"
  return 1
}

# 1. The first and second backups of the tree.
log "incremental: copying the tree to $SRC"
cp -a "$T" "$SRC"
bash "$HERE/change-tree.sh" --prepare "$SRC"
"$py" "$HERE/manifest.py" "$SRC" >"$I/want-1.txt"
# Strata's files cache trusts a file only if its ctime is at least 1 s older than
# the parent; borg's and restic's are no stricter. A backup of the tree just as
# it was copied would read some files again.
sleep 2
w="incremental: tree, 1st backup (full)"
INC_REF[$w]=borg
measure_set "$w" \
  strata "$I/t1.strata" "rm -f $I/t1.strata" "$STRATA create $I/t1.strata --files tree=$SRC --quiet" \
  borg "$I/borg" "rm -rf $I/borg $I/borg-home && borg init -e none $I/borg" "$BORG $I/borg::g1 $SRC" \
  restic "$I/restic" "rm -rf $I/restic $I/restic-cache && restic init -q --repo $I/restic" \
  "restic -q -r $I/restic backup $SRC"
snap 1
w="incremental: tree, 2nd backup, nothing changed"
INC_REF[$w]=borg
measure_set "$w" \
  strata "$I/t2.strata" "rm -f $I/t2.strata" "$STRATA create $I/t2.strata --parent $I/t1.strata --files tree=$SRC --quiet" \
  "strata --reread" "$I/t2r.strata" "rm -f $I/t2r.strata" \
  "$STRATA create $I/t2r.strata --parent $I/t1.strata --reread --files tree=$SRC --quiet" \
  borg "$I/borg" "$(from 1 borg)" "$BORG $I/borg::g2 $SRC" \
  restic "$I/restic" "$(from 1 restic)" "restic -q -r $I/restic backup $SRC"
added "$w" borg "$I/snap-1/borg"
added "$w" restic "$I/snap-1/restic"
rm -f "$I/t2r.strata"
snap 2
rm -rf "$I/snap-1"

# 2. The third backup, after a day's changes.
bash "$HERE/change-tree.sh" "$SRC" 1
"$py" "$HERE/manifest.py" "$SRC" >"$I/want-3.txt"
w="incremental: tree, 3rd backup, after change-tree.sh seed 1"
INC_REF[$w]=borg
measure_set "$w" \
  strata "$I/t3.strata" "rm -f $I/t3.strata" "$STRATA create $I/t3.strata --parent $I/t2.strata --files tree=$SRC --quiet" \
  borg "$I/borg" "$(from 2 borg)" "$BORG $I/borg::g3 $SRC" \
  restic "$I/restic" "$(from 2 restic)" "restic -q -r $I/restic backup $SRC"
added "$w" borg "$I/snap-2/borg"
added "$w" restic "$I/snap-2/restic"
rm -rf "$I/snap-2"
for g in 1 2 3; do
  rm -rf "$X"
  $STRATA extract "$I/t$g.strata" "$X" --quiet
  want=$I/want-$g.txt
  [[ $g == 2 ]] && want=$I/want-1.txt
  same_tree "$X" "$want" "strata extract of tree generation $g" || exit 1
done
rm -rf "$X" && mkdir -p "$X"
(cd "$X" && borg extract "$I/borg::g3") && same_tree "$X/${SRC#/}" "$I/want-3.txt" "borg extract of its 3rd backup" || true
rm -rf "$X"
restic -q -r "$I/restic" restore latest --target "$X" >/dev/null &&
  same_tree "$X/${SRC#/}" "$I/want-3.txt" "restic restore of its 3rd backup" || true
rm -rf "$X" "$I/borg" "$I/borg-home" "$I/restic" "$I/restic-cache"

# 4a. Extraction from the tip of a 10-deep chain of trees, beside its flattened copy.
log "incremental: tree generations 4 to 11 (change-tree.sh seeds 2 to 9), each a child of the one before"
for g in $(seq 4 11); do
  bash "$HERE/change-tree.sh" "$SRC" $((g - 2)) 2>/dev/null
  $STRATA create "$I/t$g.strata" --parent "$I/t$((g - 1)).strata" --files "tree=$SRC" --quiet
done
log "tree chain: $(cd "$I" && stat -c '%n %s' t{1..11}.strata | tr '\n' ' ')"
"$py" "$HERE/manifest.py" "$SRC" >"$I/want-11.txt"
$STRATA flatten "$I/t11.strata" "$I/t11-flat.strata" --quiet
for g in $(seq 1 11); do
  $STRATA verify "$I/t$g.strata" --quiet || { log "strata verify of tree generation $g failed"; exit 1; }
done
for a in t11-flat t11; do
  rm -rf "$X"
  $STRATA extract "$I/$a.strata" "$X" --quiet
  same_tree "$X" "$I/want-11.txt" "strata extract of $a.strata (tree generation 11)" || exit 1
done
w="incremental: tree extract, tip of a 10-deep chain (vs its flattened copy)"
INC_REF[$w]="strata, flattened copy"
measure_set "$w" \
  "strata, flattened copy" - "rm -rf $X; cat $I/t11-flat.strata" "$STRATA extract $I/t11-flat.strata $X --quiet" \
  strata - "rm -rf $X; cat $I/t{1..11}.strata" "$STRATA extract $I/t11.strata $X --quiet"
rm -rf "$X" "$SRC" "$I"/t*.strata

# 3. The image, 1% of its blocks rewritten.
IMGW=$I/disk.raw
cp --sparse=always "$IMG" "$IMGW"
log "incremental: first backups of the image (unmeasured)"
$STRATA create "$I/c00.strata" --image "disk=$IMGW" --quiet
borg init -e none "$I/borg" && $BORG "$I/borg::i0" "$IMGW"
restic init -q --repo "$I/restic" && restic -q -r "$I/restic" backup "$IMGW" >/dev/null
snap i0
bash "$HERE/change-image.sh" "$IMGW" 1 0.01 "$I/changed.bin"
w="incremental: image, 2nd backup, after change-image.sh seed 1 (1% of the 4 KiB blocks)"
INC_REF[$w]=borg
ROWS+=("$w|the changed blocks concatenated, zstd -3|-|$(zstd -3 -q -c "$I/changed.bin" | wc -c)|-")
rm -f "$I/changed.bin"
measure_set "$w" \
  strata "$I/c01.strata" "rm -f $I/c01.strata" \
  "$STRATA create $I/c01.strata --parent $I/c00.strata --image disk=$IMGW --quiet" \
  borg "$I/borg" "$(from i0 borg)" "$BORG $I/borg::i1 $IMGW" \
  restic "$I/restic" "$(from i0 restic)" "restic -q -r $I/restic backup $IMGW"
added "$w" borg "$I/snap-i0/borg"
added "$w" restic "$I/snap-i0/restic"
rm -rf "$I/snap-i0" "$I/borg" "$I/borg-home" "$I/restic" "$I/restic-cache"
measure "incremental: image restore of that child" strata - "rm -f $I/r.img; cat $I/c0*.strata" \
  "$STRATA restore $I/c01.strata --image disk $I/r.img --quiet"
cmp "$I/r.img" "$IMGW" || { log "strata restore of the image child is not bit-identical"; exit 1; }
log "strata restore of the image child: bit-identical"
rm -f "$I/r.img"

# 4b. Restore from the tip of a 10-deep chain of images, beside its flattened copy.
log "incremental: image generations 2 to 10 (change-image.sh 0.1%, seeds 2 to 10), each a child of the one before"
for g in $(seq 2 10); do
  bash "$HERE/change-image.sh" "$IMGW" "$g" 0.001 2>/dev/null
  $STRATA create "$I/c$(printf %02d "$g").strata" --parent "$I/c$(printf %02d $((g - 1))).strata" --image "disk=$IMGW" --quiet
done
log "image chain: $(cd "$I" && stat -c '%n %s' c*.strata | tr '\n' ' ')"
$STRATA flatten "$I/c10.strata" "$I/c10-flat.strata" --quiet
for a in "$I"/c*.strata; do
  $STRATA verify "$a" --quiet || { log "strata verify of $a failed"; exit 1; }
done
w="incremental: image restore, tip of a 10-deep chain (vs its flattened copy)"
INC_REF[$w]="strata, flattened copy"
measure_set "$w" \
  "strata, flattened copy" - "rm -f $I/r.img; cat $I/c10-flat.strata" \
  "$STRATA restore $I/c10-flat.strata --image disk $I/r.img --quiet" \
  strata - "rm -f $I/r.img; cat $I/c{00..10}.strata" "$STRATA restore $I/c10.strata --image disk $I/r.img --quiet"
cmp "$I/r.img" "$IMGW" || { log "strata restore of the tip of the image chain is not bit-identical"; exit 1; }
rm -f "$I/r.img"
$STRATA restore "$I/c10-flat.strata" --image disk "$I/r.img" --quiet
cmp "$I/r.img" "$IMGW" || { log "strata restore of the flattened tip of the image chain is not bit-identical"; exit 1; }
log "strata restore of the tip of the image chain and of its flattened copy: bit-identical"
rm -rf "$I"
fi

# --- the table -----------------------------------------------------------------
{
  echo "# Strata beside the tools people use today"
  echo
  echo "Measured by \`benches/compare/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB of memory."
  echo "Corpus: $(du -sh "$T" | cut -f1) tree (${TREE_ENTRIES:-$(find "$T" | wc -l)} entries), $(du -h --apparent-size "$C/image-clean.raw" | cut -f1) ext4 images of it"
  echo "(clean: free space zero; dirty: free space random). Median of $RUNS runs, inputs (for reads, the"
  echo "archive too) in the page cache for every tool and earlier output synced first. The one-file reads (milliseconds) are"
  echo "the median of at least 10 hyperfine runs after 3 warm-up runs (which read the archive into"
  echo "the page cache), timing the tool's own process: no shell, or for a pipeline the shell's"
  echo "start-up subtracted. Ratio: Strata's time over the tool's (below 1: Strata faster)."
  echo "Sizes in MB (10^6 bytes); RSS is the peak resident set of the whole command."
  echo "Scratch space (outputs, archives, repositories): $WORK, on $(findmnt -no FSTYPE -T "$WORK" | head -1)."
  declare -A strata_time
  plain=0
  for row in "${ROWS[@]}"; do
    IFS='|' read -r work tool t size rss <<<"$row"
    [[ $tool == strata ]] && strata_time[$work]=$t
    [[ $work == incremental:* || $work == "small tree:"* ]] || plain=1
  done
  if ((plain)); then
    echo
    echo "| work | tool | median s | Strata / tool | size MB | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|"
  fi
  for row in "${ROWS[@]}"; do
    IFS='|' read -r work tool t size rss <<<"$row"
    [[ $work == incremental:* || $work == "small tree:"* ]] && continue
    ratio="-"
    if [[ $tool != strata && $t != failed && -n ${strata_time[$work]:-} ]]; then
      ratio=$(awk -v s="${strata_time[$work]}" -v p="$t" 'BEGIN { if (p > 0) printf "%.2f", s / p; else print "-" }')
    fi
    [[ $size != - ]] && size=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }')
    echo "| $work | $tool | $t | $ratio | $size | ${rss:--} |"
  done
  if ((${#SIZE_REF[@]})); then
    echo
    echo "Small-file trees (issue 14, acceptance 3: Strata's archive at most 0.95x the size of"
    echo "\`tar | zstd -3\`, 0.5x for the empty files). \"size / ref\": the row's size over the"
    echo "reference tool's (\`tar | zstd -3 -T2\`, whose output is that of \`zstd -3\`)."
    echo
    echo "| work | tool | size MB | size / ref | median s |"
    echo "|---|---|---:|---:|---:|"
    declare -A ref_bytes
    for row in "${ROWS[@]}"; do
      IFS='|' read -r work tool t size rss <<<"$row"
      [[ ${SIZE_REF[$work]:-} == "$tool" ]] && ref_bytes[$work]=$size
    done
    for row in "${ROWS[@]}"; do
      IFS='|' read -r work tool t size rss <<<"$row"
      [[ -n ${SIZE_REF[$work]:-} ]] || continue
      sr=$(awk -v a="$size" -v b="${ref_bytes[$work]:--}" 'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && b > 0) printf "%.3f", a / b; else print "-" }')
      echo "| ${work#small tree: } | $tool | $(awk -v b="$size" 'BEGIN { printf "%.3f", b / 1e6 }') | $sr | $t |"
    done
  fi
  if ((${#INC_REF[@]})); then
    echo
    echo "Incremental archives (issue 17). \"added MB\": for Strata the size of the new archive,"
    echo "for borg and restic the growth of the repository (the first backup: the whole archive or"
    echo "repository). Each ratio is the row's figure over that of the work's reference row"
    echo "(borg's, or for the chain rows the flattened copy's)."
    echo
    echo "| work | tool | median s | time / ref | added MB | added / ref | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    declare -A ref_t ref_size
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else print "-" }'; }
    for row in "${ROWS[@]}"; do
      IFS='|' read -r work tool t size rss <<<"$row"
      [[ ${INC_REF[$work]:-} == "$tool" ]] && ref_t[$work]=$t ref_size[$work]=$size
    done
    for row in "${ROWS[@]}"; do
      IFS='|' read -r work tool t size rss <<<"$row"
      [[ $work == incremental:* ]] || continue
      tr=- sr=-
      if [[ ${INC_REF[$work]:-} != "$tool" ]]; then
        tr=$(ratio "$t" "${ref_t[$work]:--}") sr=$(ratio "$size" "${ref_size[$work]:--}")
      fi
      [[ $size != - ]] && size=$(awk -v b="$size" 'BEGIN { printf "%.3f", b / 1e6 }')
      echo "| ${work#incremental: } | $tool | $t | $tr | $size | $sr | ${rss:--} |"
    done
  fi
  echo
  echo "Tool versions: strata $("$STRATA" --version | cut -d' ' -f2), $(zstd --version | head -1),"
  echo "$(qemu-img --version | head -1), partclone $(dpkg-query -W -f='${Version}' partclone),"
  echo "$(bsdtar --version | head -1), mksquashfs $(dpkg-query -W -f='${Version}' squashfs-tools),"
  echo "$(borg --version), $(restic version | cut -d' ' -f1-2), $(tar --version | head -1),"
  echo "squashfuse $(dpkg-query -W -f='${Version}' squashfuse), fuse3 $(dpkg-query -W -f='${Version}' fuse3)."
  [[ -n $ONLY ]] && echo && echo "Sections run: $ONLY (ONLY=$ONLY)."
  if want images; then
    echo
    echo "partclone stores used blocks only: its image is not bit-identical (shown for context)."
  fi
} >"$OUT"
cat "$OUT"
