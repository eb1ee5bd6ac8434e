#!/usr/bin/env python3
"""Metadata walk of a folder, to prove a backup round trip exact.

Prints one line per entry (sorted by path): type, mode, uid, gid, size,
nanosecond mtime, xattrs, link target, hard-link group (first path of the
inode), and the BLAKE3 of regular files' content (SHA-256 if the blake3
module is missing). `manifest.py DIR > a; manifest.py OTHER > b; diff a b`.
"""
import hashlib
import os
import stat
import sys

try:
    from blake3 import blake3 as content_hash
except ImportError:  # pragma: no cover - the venv has blake3
    content_hash = hashlib.sha256


def digest(path):
    h = content_hash()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def walk(root):
    root = os.fsencode(root)
    first_of_inode = {}
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            try:
                names = sorted(os.listxattr(path, follow_symlinks=False))
                xattrs = ",".join(
                    f"{n}={os.getxattr(path, n, follow_symlinks=False).hex()}" for n in names
                )
            except OSError:
                xattrs = "?"
            target = os.readlink(path).hex() if stat.S_ISLNK(st.st_mode) else ""
            group = ""
            content = ""
            if stat.S_ISREG(st.st_mode):
                group = first_of_inode.setdefault((st.st_dev, st.st_ino), rel).hex()
                content = digest(path)
            size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
            rows.append(
                f"{rel.hex()} {kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid} {size} "
                f"{st.st_mtime_ns} {rdev} [{xattrs}] {target} {group} {content}"
            )
    rows.sort()
    return rows


if __name__ == "__main__":
    for row in walk(sys.argv[1]):
        print(row)
