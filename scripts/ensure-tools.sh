#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when they are missing.
# Safe to run again: it only installs what is not there.
set -euo pipefail
need=()
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v qemu-img >/dev/null || need+=(qemu-utils)
# Real NBD clients for the `strata serve` tests: nbdinfo, nbdcopy.
{ command -v nbdinfo && command -v nbdcopy; } >/dev/null || need+=(libnbd-bin)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
{ command -v setpriv && command -v prlimit; } >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)
command -v tmux >/dev/null || need+=(tmux)
# The README's examples pipe into xxd (cli/tests/examples.rs runs them).
command -v xxd >/dev/null || need+=(xxd)
{ command -v setfacl && command -v getfacl; } >/dev/null || need+=(acl)
# `strata mount` tests: fusermount3 unmounts, getfattr/setfattr compare xattrs.
command -v fusermount3 >/dev/null || need+=(fuse3)
{ command -v getfattr && command -v setfattr; } >/dev/null || need+=(attr)
# Disks with partitions and file systems for the files-inside-images tests.
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v sgdisk >/dev/null || need+=(gdisk)
command -v sfdisk >/dev/null || need+=(fdisk)
# NTFS volumes for the same tests: mkntfs makes them, ntfs-3g mounts them to
# fill them (FUSE, as root) or ntfscp does, ntfsls/ntfscat/ntfscluster/ntfsinfo
# give the tools' view and ntfsfix checks a restored volume.
{ command -v mkntfs && command -v ntfs-3g && command -v ntfsls && command -v ntfscat && command -v ntfscluster &&
  command -v ntfscp && command -v ntfsinfo && command -v ntfsfix; } >/dev/null || need+=(ntfs-3g)
# GNU time measures the peak memory of each command of the hostile-archive test.
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-tools: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "ensure-tools: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
