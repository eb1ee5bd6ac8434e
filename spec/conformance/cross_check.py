#!/usr/bin/env python3
"""Two readers, one archive: generated trees and images, written by the Strata CLI,
must be listed, verified, extracted and restored identically by a second
implementation, and both must give back the source exactly.

    cross_check.py --strata target/debug/strata --impl 'python3 spec/reference-py/strata_ref.py' [--seeds N]

For each seed it builds a tree on disk (every entry kind the machine lets it
make: files small, large and sparse, folders, symbolic and hard links, fifos,
sockets, devices when run as root; modes with setuid, setgid and sticky bits;
nanosecond times; user xattrs; non-UTF-8 and 255-byte names) and an image with
data, zero runs and holes, archives both with `strata create`, and then checks:

- `list --files t --json`: the same entries in the same order with the same
  fields (those of spec/conformance.md) from both implementations;
- `verify`: both say the archive is sound;
- `extract`: both extractions hold exactly the source tree (kind, mode, owner,
  size, content, mtime, link target, device numbers, xattrs, hard-link groups);
- `restore`: both give back the image byte for byte.

Any difference is a failure: the script prints it and exits 1.
"""

import argparse
import os
import random
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import json

import blake3

FIELDS = ("path_hex", "kind", "mode", "size", "mtime_s", "mtime_nsec", "digest", "target", "link", "rdev",
          "uid", "gid", "user", "group", "xattrs")
CHUNK = 64 << 10


class Mismatch(Exception):
    pass


def name(rnd, taken):
    while True:
        pick = rnd.random()
        if pick < 0.05:
            n = bytes([rnd.choice(b"abcdefghijklmnopqrstuvwxyz")]) * 255
        elif pick < 0.15:
            n = b"caf\xe9-" + str(rnd.randint(0, 999)).encode()  # not UTF-8
        elif pick < 0.2:
            n = "ünï cödé ".encode() + str(rnd.randint(0, 99)).encode()
        else:
            n = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(rnd.randint(1, 12))).encode()
        if n not in (b".", b"..") and n not in taken:
            taken.add(n)
            return n


def content(rnd, size):
    # Half compressible text, half random bytes.
    if rnd.random() < 0.5:
        words = [b"strata ", b"chunk ", b"tree ", b"extent\n"]
        out = bytearray()
        while len(out) < size:
            out += rnd.choice(words)
        return bytes(out[:size])
    return rnd.randbytes(size)


def make_tree(root, rnd, as_root):
    os.makedirs(root)
    dirs = [root]
    files = []
    names = {root: set()}
    made = []  # (path, is_dir_or_file)
    for _ in range(rnd.randint(25, 60)):
        parent = rnd.choice(dirs)
        path = os.path.join(parent, name(rnd, names[parent]))
        kind = rnd.choices(
            ["dir", "small", "empty", "big", "sparse", "symlink", "hardlink", "fifo", "socket", "device"],
            weights=[14, 30, 4, 6, 5, 8, 6, 3, 3, 3 if as_root else 0])[0]
        if kind == "dir":
            os.mkdir(path)
            dirs.append(path)
            names[path] = set()
        elif kind in ("small", "empty", "big"):
            size = {"small": rnd.randint(1, 6000), "empty": 0, "big": rnd.randint(CHUNK, 3 * CHUNK + 999)}[kind]
            with open(path, "wb") as f:
                f.write(content(rnd, size))
            files.append(path)
        elif kind == "sparse":
            with open(path, "wb") as f:
                f.truncate(rnd.randint(1, 8) * CHUNK + rnd.randint(0, 5000))
                for _ in range(rnd.randint(0, 3)):
                    f.seek(rnd.randint(0, 6 * CHUNK))
                    f.write(content(rnd, rnd.randint(1, 9000)))
            files.append(path)
        elif kind == "symlink":
            target = rnd.choice([b"../nowhere", os.path.basename(rnd.choice(files)) if files else b"x", b"a/b/c"])
            target = target or b"x"
            os.symlink(target, path)
        elif kind == "hardlink":
            if not files:
                continue
            os.link(rnd.choice(files), path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            s = socket.socket(socket.AF_UNIX)
            try:
                s.bind(path)
            except OSError:
                continue  # a path too long for sun_path
            finally:
                s.close()
        elif kind == "device":
            dev = os.makedev(rnd.randint(1, 4095), rnd.randint(0, 1 << 20))
            os.mknod(path, rnd.choice([stat.S_IFCHR, stat.S_IFBLK]) | 0o600, dev)
        made.append((path, kind))
        if kind in ("small", "big", "dir") and rnd.random() < 0.3:
            try:
                os.setxattr(path, b"user.strata-" + str(rnd.randint(0, 9)).encode(), rnd.randbytes(rnd.randint(0, 40)))
            except OSError:
                pass  # a file system without user xattrs
        if as_root and kind != "symlink" and rnd.random() < 0.3:
            os.lchown(path, rnd.randint(1, 60000), rnd.randint(1, 60000))
    # Modes and times last, deepest first, so filling a folder does not change them.
    for path, kind in reversed(made):
        if kind not in ("symlink", "hardlink"):
            os.chmod(path, rnd.choice([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o400, 0o700]))
        t = rnd.randint(0, 2_000_000_000) * 1_000_000_000 + rnd.randint(0, 999_999_999)
        os.utime(path, ns=(t, t), follow_symlinks=False)
    os.utime(root, ns=(1_700_000_000_123_456_789,) * 2)


def make_image(path, rnd):
    with open(path, "wb") as f:
        for _ in range(rnd.randint(2, 8)):
            n = rnd.randint(1, 3 * CHUNK)
            pick = rnd.random()
            if pick < 0.3:
                f.seek(n, os.SEEK_CUR)  # a hole
            elif pick < 0.5:
                f.write(bytes(n))
            else:
                f.write(content(rnd, n))
        f.write(content(rnd, rnd.randint(1, 5000)))  # not a multiple of the chunk size


def snapshot(top):
    """Everything a restore must bring back, by path relative to `top`."""
    out = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in [None] + dirnames + filenames if dirpath == top else dirnames + filenames:
            p = top if n is None else os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            item = {"kind": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                    "mtime_ns": st.st_mtime_ns}
            if stat.S_ISLNK(st.st_mode):
                del item["mode"]
                item["target"] = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                item["blake3"] = file_blake3(p)
                item["size"] = st.st_size
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
                item["inode"] = (st.st_dev, st.st_ino)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                item["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if not stat.S_ISLNK(st.st_mode) and not stat.S_ISSOCK(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
                try:
                    item["xattrs"] = sorted((x, os.getxattr(p, x, follow_symlinks=False))
                                            for x in os.listxattr(p, follow_symlinks=False))
                except OSError:
                    item["xattrs"] = None
            out[rel] = item
    # Hard links compare as groups of paths, not inode numbers.
    for item in out.values():
        if "inode" in item:
            item["links"] = sorted(inodes[item.pop("inode")])
    return out


def diff_snapshots(a, b, what):
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise Mismatch(f"{what}: paths differ: only in the first {only_a[:5]}, only in the second {only_b[:5]}")
    for rel in sorted(a):
        if a[rel] != b[rel]:
            keys = [k for k in set(a[rel]) | set(b[rel]) if a[rel].get(k) != b[rel].get(k)]
            raise Mismatch(f"{what}: {rel!r} differs in {keys}: {[a[rel].get(k) for k in keys]} vs {[b[rel].get(k) for k in keys]}")


def run(cmd, what):
    p = subprocess.run(cmd, capture_output=True, timeout=3600)
    if p.returncode != 0:
        raise Mismatch(f"{what}: `{shlex.join(cmd)}` exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
    return p.stdout


def listing(cmd, archive):
    out = run(cmd + ["list", archive, "--files", "t", "--json"], f"{cmd[-1]} list")
    secs = json.loads(out)["sections"]
    entries = [s for s in secs if s.get("name") == "t"][0]["entries"]
    return [{k: e.get(k) for k in FIELDS} for e in entries]


def check_seed(seed, strata, other, work):
    rnd = random.Random(seed)
    as_root = os.geteuid() == 0
    base = os.path.join(work, f"seed-{seed}")
    src, image = os.path.join(base, "src"), os.path.join(base, "disk.img")
    make_tree(os.fsencode(src), rnd, as_root)
    make_image(image, rnd)
    return check(src, image, base, strata, other, ["--chunk-size", "64K"])


def check(src, image, base, strata, other, options):
    archive = os.path.join(base, "a.strata")
    run(strata + ["create", archive, "--files", f"t={src}", "--image", f"disk={image}", "--quiet",
                  "--created", "1700000000"] + options, "create")
    # Listings: field for field, entry for entry.
    ours, theirs = listing(strata, archive), listing(other, archive)
    if len(ours) != len(theirs):
        raise Mismatch(f"list: {len(ours)} entries against {len(theirs)}")
    for a, b in zip(ours, theirs):
        if a != b:
            keys = [k for k in FIELDS if a.get(k) != b.get(k)]
            raise Mismatch(f"list: entry {a['path_hex']}: {keys}: {[a[k] for k in keys]} against {[b[k] for k in keys]}")
    for impl in (strata, other):
        run(impl + ["verify", archive], f"{impl[-1]} verify")
    # Extraction: both give back the source exactly.
    source = snapshot(os.fsencode(src))
    for label, impl in (("strata", strata), ("other", other)):
        dest = os.path.join(base, f"x-{label}")
        run(impl + ["extract", archive, "--files", "t", dest], f"{label} extract")
        diff_snapshots(source, snapshot(os.fsencode(dest)), f"{label} extract against the source")
        restored = os.path.join(base, f"r-{label}.img")
        run(impl + ["restore", archive, "--image", "disk", restored], f"{label} restore")
        if file_blake3(image) != file_blake3(restored):
            raise Mismatch(f"{label} restore: the image differs from the source")
        os.unlink(restored)
    return len(ours)


def file_blake3(path):
    h = blake3.blake3()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strata", required=True, help="the Strata CLI that writes the archives")
    ap.add_argument("--impl", required=True, help="the other implementation's command")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--tree", help="check this folder and --image (a real corpus) instead of generated ones")
    ap.add_argument("--image")
    ap.add_argument("--work", help="where to write archives and extractions (default: a temporary folder)")
    args = ap.parse_args()
    strata, other = [os.path.abspath(args.strata)], shlex.split(args.impl)
    failed = 0
    work = tempfile.mkdtemp(prefix="strata-cross-", dir=args.work)
    if args.tree:
        try:
            n = check(args.tree, args.image, work, strata, other, [])
            print(f"PASS {args.tree} and {args.image}: {n} entries listed, extracted and restored alike")
        except (Mismatch, subprocess.TimeoutExpired) as e:
            print(f"FAIL {args.tree}: {e}")
            failed = 1
        finally:
            shutil.rmtree(work, ignore_errors=True)
        sys.exit(failed)
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            try:
                n = check_seed(seed, strata, other, work)
                print(f"PASS seed {seed}: {n} entries listed, extracted and restored alike")
            except (Mismatch, subprocess.TimeoutExpired) as e:
                failed += 1
                print(f"FAIL seed {seed}: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.seeds - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
