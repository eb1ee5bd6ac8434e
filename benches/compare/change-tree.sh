#!/usr/bin/env bash
# benches/compare/change-tree.sh: a day's worth of changes to a copy of the
# corpus tree, the same for the same SEED (issue 17's incremental rows).
#
#   change-tree.sh --prepare DIR   before the first backup: makes sure DIR holds
#                                  a file of at least 100 MB (adds big.bin, 100 MB
#                                  of deterministic content, when none exists)
#   change-tree.sh DIR SEED        applies the changes below to DIR
#
# The changes, chosen from DIR's regular files sorted by path, by a generator
# seeded with SEED (Python's random.Random, string seed: the same choices and
# bytes on every machine):
#   - 1% of the non-empty regular files rewritten in place, same length: in every
#     512-byte block one byte is changed (a new version of the file: no chunk of
#     it is left as it was, its compressibility is that of the old version);
#   - 200 files added: each a changed copy (as above) of a chosen file, beside it,
#     named NAME.added-SEED;
#   - 200 files removed;
#   - 1 MiB in the middle of the largest file of at least 100 MB overwritten
#     with pseudo-random bytes;
#   - 50 MB of log lines (pseudo-random fields) appended to the largest file
#     under a var/log folder (var/log/bench.log is made when there is none);
#   - a folder renamed to NAME.renamed-SEED (one holding 2 to 20 MB of files,
#     neither the large file nor the log; renamed last).
# The large file and the log are never among the rewritten, removed or copied
# files. Prints what it did on stderr. File times are those of the moment of
# the change (every tool decides what to read again from them).
set -euo pipefail
if [[ ${1:-} == --prepare && $# -eq 2 ]]; then
  mode=prepare dir=$2 seed=0
elif [[ $# -eq 2 && ${1:-} != -* ]]; then
  mode=change dir=$1 seed=$2
else
  echo "usage: change-tree.sh --prepare DIR | change-tree.sh DIR SEED" >&2
  exit 2
fi
[[ -d $dir ]] || { echo "change-tree.sh: $dir is not a folder" >&2; exit 2; }
exec python3 - "$mode" "$dir" "$seed" <<'EOF'
import os
import random
import stat
import sys

mode, root, seed = sys.argv[1], os.fsencode(sys.argv[2]), sys.argv[3]
BIG = 100_000_000


def log(*a):
    print("change-tree:", *a, file=sys.stderr)


def files_and_dirs():
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            dirs.append(os.path.join(dirpath, name))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                files.append((path, st.st_size))
    files.sort()
    dirs.sort()
    return files, dirs


def stream(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def big_file(files):
    big = [(size, path) for path, size in files if size >= BIG]
    return max(big, key=lambda t: (t[0], t[1]))[1] if big else None


def log_file(files):
    logs = [(size, path) for path, size in files if b"/var/log/" in path]
    return max(logs, key=lambda t: (t[0], t[1]))[1] if logs else None


def mutate(data, rng):
    """One byte changed in every 512-byte block."""
    data = bytearray(data)
    for start in range(0, len(data), 512):
        pos = start + rng.randrange(min(512, len(data) - start))
        data[pos] ^= 1 + rng.randrange(255)
    return bytes(data)


files, dirs = files_and_dirs()
if mode == "prepare":
    big = big_file(files)
    if big is None:
        path = os.path.join(root, b"big.bin")
        rng = random.Random("strata-change-tree:big")
        with open(path, "wb") as f:
            # Half compressible: pseudo-random bytes written as hex digits.
            for _ in range(BIG // (1 << 20)):
                f.write(stream(rng, 1 << 19).hex().encode())
            f.write(stream(rng, (BIG % (1 << 20)) // 2).hex().encode())
        log(f"added {path.decode(errors='replace')} ({os.path.getsize(path)} bytes)")
    else:
        log(f"a file of at least 100 MB exists: {big.decode(errors='replace')}")
    if log_file(files) is None:
        path = os.path.join(root, b"var", b"log", b"bench.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "ab").close()
        log(f"added {path.decode(errors='replace')}")
    sys.exit(0)

rng = random.Random(f"strata-change-tree:{seed}")
big, logf = big_file(files), log_file(files)
if big is None:
    sys.exit("change-tree: no file of at least 100 MB: run change-tree.sh --prepare DIR first")
if logf is None:
    path = os.path.join(root, b"var", b"log", b"bench.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "ab").close()
    logf = path
candidates = [(p, s) for p, s in files if s > 0 and p not in (big, logf)]
n_rewrite = max(1, round(len(candidates) / 100))
picked = rng.sample(range(len(candidates)), n_rewrite + 200 + 200)
rewrite = [candidates[i] for i in picked[:n_rewrite]]
copy = [candidates[i] for i in picked[n_rewrite:n_rewrite + 200]]
remove = [candidates[i] for i in picked[n_rewrite + 200:]]

# The folder to rename: 2 to 20 MB of files below it, neither special file.
sizes = {}
for path, size in files:
    d = os.path.dirname(path)
    while len(d) > len(root):
        sizes[d] = sizes.get(d, 0) + size
        d = os.path.dirname(d)
folders = [d for d in dirs if 2_000_000 <= sizes.get(d, 0) <= 20_000_000
           and not big.startswith(d + b"/") and not logf.startswith(d + b"/")]
folder = folders[rng.randrange(len(folders))]

rewritten = 0
for path, size in rewrite:
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(mutate(data, rng))
    rewritten += size
added = 0
for path, size in copy:
    with open(path, "rb") as f:
        data = mutate(f.read(), rng)
    new = path + f".added-{seed}".encode()
    with open(new, "wb") as f:
        f.write(data)
    os.chmod(new, 0o644)
    added += size
removed = 0
for path, size in remove:
    os.unlink(path)
    removed += size

size = os.path.getsize(big)
offset = size // 2 - (1 << 19)
with open(big, "r+b") as f:
    f.seek(offset)
    f.write(stream(rng, 1 << 20))

levels = ["info", "info", "info", "notice", "warning", "error"]
units = ["cron", "sshd", "systemd", "kernel", "backup", "nginx", "postgres"]
words = ["started", "stopped", "accepted", "closed", "session", "request", "timeout", "retry", "done"]
appended = 0
t = 1_780_000_000 + int(seed) * 86400 if seed.isdigit() else 1_780_000_000
with open(logf, "ab") as f:
    while appended < 50_000_000:
        lines = []
        for _ in range(1000):
            t += rng.randrange(3)
            line = (f"{t} host{rng.randrange(8)} {rng.choice(units)}[{rng.randrange(1, 65536)}]: "
                    f"{rng.choice(levels)} {rng.choice(words)} {rng.choice(words)} "
                    f"id={rng.getrandbits(64):016x} bytes={rng.randrange(1 << 20)} "
                    f"ms={rng.random() * 1000:.3f}\n")
            lines.append(line)
        chunk = "".join(lines).encode()[: 50_000_000 - appended]
        f.write(chunk)
        appended += len(chunk)

renamed = folder + f".renamed-{seed}".encode()
os.rename(folder, renamed)

rel = lambda p: os.path.relpath(p, root).decode(errors="replace")
log(f"seed {seed}: {n_rewrite} files rewritten ({rewritten} bytes), 200 added ({added} bytes), "
    f"200 removed ({removed} bytes); 1 MiB at offset {offset} of {rel(big)} overwritten; "
    f"{appended} bytes appended to {rel(logf)}; {rel(folder)} ({sizes[folder]} bytes) renamed to "
    f"{os.path.basename(renamed).decode(errors='replace')}")
EOF
