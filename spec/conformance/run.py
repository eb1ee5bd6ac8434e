#!/usr/bin/env python3
"""Conformance runner for Strata readers (spec/conformance.md).

Drives any implementation that speaks the command protocol of conformance.md
("The runner and its command protocol") through every vector of
spec/vectors/manifest.json and prints one line per vector, `PASS name` or
`FAIL name: reason`, then `N passed, M failed`; exits 1 if any vector failed.

    python3 spec/conformance/run.py --impl 'COMMAND' [--vectors DIR] [--only NAME]...
    python3 spec/conformance/run.py --impl 'COMMAND' --compare 'OTHER' [--show]

COMMAND is split like a shell command line and the protocol's arguments are
appended. Each vector runs in a fresh temporary directory, which is also the
working directory of the commands (so tokens of COMMAND that name existing
relative paths are made absolute first). Any command that runs over 60 seconds,
dies by a signal, or prints a Python traceback or a Rust panic fails the vector.

Checks, as conformance.md describes them:

valid vector
  * `info ARCHIVE --json` exits 0 and lists exactly the manifest's sections, in
    order: kind and name, and for an image image.logical_size, data_bytes,
    lost_bytes and free_bytes;
  * `restore ARCHIVE --image NAME DEST` of every image exits 0 and DEST hashes
    (BLAKE3) to the manifest's value;
  * `list ARCHIVE --files NAME --json` of every file tree exits 0 and gives the
    manifest's entries in order (the entry fields of conformance.md, `mtime_s`,
    `mtime_nsec` and `digest` included, `blake3` and `ranges` not: a field the
    manifest leaves out must be absent or null);
  * `cat ARCHIVE --files NAME PATH` of every regular file and hard link the
    manifest hashes whole (at most CAT_LIMIT per section) exits 0 and gives
    bytes with the manifest's `blake3`;
  * `extract ARCHIVE --files NAME DEST --json` refuses nothing, warns about
    every one of the section's `warned` paths and about nothing else but the
    entries whose recorded mtime the destination did not keep (and, run
    unprivileged, the devices it cannot make); exits 1 when it warned, else 0;
    creates nothing beside DEST; and DEST then holds exactly the listed entries
    but the `warned` ones: kind, mode (not for symbolic links), mtime (the
    recorded `mtime_s` * 10^9 + `mtime_nsec`, or another time kept by the
    destination when extraction warned about that path, FORMAT.md 8.7),
    content (size, and `blake3` of the whole file, or for a file listed with
    `ranges` the BLAKE3 of each range and zeros in every byte SEEK_DATA finds
    elsewhere, its holes never read), symbolic-link targets, device numbers,
    hard links sharing the inode of their `link`; the root entry is DEST itself;
  * `verify ARCHIVE --json` exits 0 with status `ok`, no problem,
    verified_bytes equal to archive_size, and `lost_entries` naming, in order,
    the entries the manifest marks `lost_in_salvage`.

invalid vector
  * `verify ARCHIVE --json` exits 1 or 2 and reports exactly the manifest's
    `problems`, compared as conformance.md makes them normative: one problem per
    class and offset, with what it affects (for each section and file path, the
    union of the ranges); `what`, `detail` and the order are not compared;
  * with `refused`: every file tree that `info` names is extracted into a fresh
    DEST; the extraction exits 1 and its `refused` holds every listed path, and
    nothing appears beside DEST.

With --compare, the runner instead runs `verify ARCHIVE --json` of both
implementations on every vector and prints `SAME name` or `DIFF name` with what
differs (exit status, status, records, chunks, verified_bytes, the sections'
normative fields, and the problems only one of them reports); --show also prints
the first implementation's whole list. It exits 1 if any vector differs.

For every vector, the `verify --json` object must have the fields and types of
conformance.md ("`verify --json`"), classes from FORMAT.md section 12, `archive`
equal to the path given, `archive_size` equal to the file size, and an exit
status that agrees with `status` (0 ok; 1 damaged or unsupported; 2 unreadable).

Standard library plus `blake3` only.
"""
import argparse
import errno
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import blake3

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 60
# `cat` calls per file-tree section of a valid vector (each starts a process).
CAT_LIMIT = 40
CLASSES = {"not-strata", "unsupported-version", "unsupported-feature", "bad-header", "record-checksum",
           "record-malformed", "unknown-record", "chunk-corrupt", "dangling-reference", "extent-map",
           "truncated", "index-mismatch", "limit-exceeded", "parent-missing", "parent-mismatch"}
STATUS_EXIT = {"ok": 0, "damaged": 1, "unsupported": 1, "unreadable": 2}
ENTRY_FIELDS = ("path", "path_hex", "kind", "mode", "size", "mtime_s", "mtime_nsec", "digest", "target", "link",
                "rdev", "uid", "gid", "user", "group", "xattrs", "lost_in_salvage")
# Data SEEK_DATA finds outside a file's listed `ranges` is read to check it is
# zero; a file system allocates whole blocks around the ranges, but this much
# more means the holes were written as data (FORMAT.md 8: a restore leaves them
# unallocated), which for a 1 TiB file would not end.
OUTSIDE_RANGES_LIMIT = 64 << 20
DEVICE_KINDS = ("char-device", "block-device")
KIND_TEST = {"file": stat.S_ISREG, "directory": stat.S_ISDIR, "symlink": stat.S_ISLNK, "hardlink": stat.S_ISREG,
             "fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK, "char-device": stat.S_ISCHR,
             "block-device": stat.S_ISBLK}
CRASH_MARKS = ("Traceback (most recent call last)", "panicked")
# DEST sits four levels below the vector's folder, so that a relative link that
# climbs four levels out of DEST (as the vectors' "../../../../tmp") still
# lands inside the folder, where the runner sees it.
DEST_PARTS = ("box", "a", "b", "dest")


class Fail(Exception):
    """A check failed; the message says which and how."""


def short(b, n=400):
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


class Impl:
    def __init__(self, command):
        argv = shlex.split(command)
        if not argv:
            raise SystemExit("run.py: --impl is empty")
        out = []
        for i, tok in enumerate(argv):
            if i == 0 and os.sep not in tok:
                out.append(shutil.which(tok) or tok)
            elif not os.path.isabs(tok) and os.path.exists(tok):
                out.append(os.path.abspath(tok))
            else:
                out.append(tok)
        self.argv = out

    def run(self, args, cwd):
        """Run one protocol command; returns (exit status, stdout bytes, stderr text)."""
        shown = " ".join(shlex.quote(a) for a in args)
        try:
            p = subprocess.Popen(self.argv + args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise Fail(f"`{shown}` could not be started: {e}")
        try:
            out, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)    # the process group this runner started
            except ProcessLookupError:
                pass
            p.communicate()
            raise Fail(f"`{shown}` ran over {TIMEOUT} s")
        err = err.decode("utf-8", "replace")
        if p.returncode < 0:
            raise Fail(f"`{shown}` died by signal {signal.Signals(-p.returncode).name}: {short(err)}")
        for mark in CRASH_MARKS:
            if mark in err:
                raise Fail(f"`{shown}` crashed ({mark}): {short(err[err.index(mark):], 600)}")
        return p.returncode, out, err


def load_json(out, shown):
    try:
        obj = json.loads(out)
    except ValueError:
        raise Fail(f"`{shown}` did not print one JSON object: {short(out)}")
    if not isinstance(obj, dict):
        raise Fail(f"`{shown}` printed JSON that is not an object")
    return obj


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def file_blake3(path):
    h = blake3.blake3()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(top, skip):
    """Every path under top (not following links) except the subtree skip, with
    what identifies its content; directories only by their presence."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in list(dirnames) + filenames:
            p = os.path.join(dirpath, n)
            if p == skip:
                continue
            st = os.lstat(p)
            seen[p] = None if stat.S_ISDIR(st.st_mode) else (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != skip]
    return seen


def beside(before, after):
    """What appeared, vanished or changed outside DEST."""
    out = [f"{p} appeared" for p in sorted(set(after) - set(before))]
    out += [f"{p} vanished" for p in sorted(set(before) - set(after))]
    out += [f"{p} changed" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return out


class Vector:
    def __init__(self, impl, vdir, vec):
        self.impl, self.vec = impl, vec
        self.reasons = []
        self.src = os.path.join(vdir, vec["file"])

    def step(self, fn, *args):
        """Run one check; a failure is recorded and the next checks still run."""
        try:
            return fn(*args)
        except Fail as e:
            self.reasons.append(str(e))
        return None

    def run(self):
        self.tmp = tempfile.mkdtemp(prefix="strata-conformance-")
        try:
            self.archive = os.path.join(self.tmp, os.path.basename(self.vec["file"]))
            shutil.copyfile(self.src, self.archive)
            # The ancestors of an incremental vector sit beside it, under the
            # names its CHAIN records (conformance.md, "The vectors").
            for parent in self.vec.get("parents", []):
                shutil.copyfile(os.path.join(os.path.dirname(self.src), parent), os.path.join(self.tmp, parent))
            self.size = os.path.getsize(self.archive)
            if self.vec["valid"]:
                self.valid()
            else:
                self.invalid()
        finally:
            remove_tree(self.tmp)
        return self.reasons

    def cmd(self, *args):
        return self.impl.run(list(args), self.tmp)

    # -- valid vectors ---------------------------------------------------------------
    def valid(self):
        self.step(self.check_info)
        for i, s in enumerate(self.vec["sections"]):
            if s["kind"] == "image":
                self.step(self.check_restore, i, s)
            elif s["kind"] == "files":
                self.step(self.check_list, s)
                self.step(self.check_cat, s)
                self.step(self.check_extract_valid, i, s)
        self.step(self.check_verify_ok)

    def check_info(self):
        shown = "info ARCHIVE --json"
        rc, out, err = self.cmd("info", self.archive, "--json")
        if rc != 0:
            raise Fail(f"`{shown}` exited {rc}: {short(err)}")
        got = load_json(out, shown).get("sections")
        want = self.vec["sections"]
        if not isinstance(got, list) or len(got) != len(want):
            raise Fail(f"`{shown}` lists {short(json.dumps(got), 300)}, expected {len(want)} section(s)")
        for i, (g, w) in enumerate(zip(got, want)):
            if not isinstance(g, dict) or g.get("kind") != w["kind"] or g.get("name") != w["name"]:
                raise Fail(f"`{shown}` section {i}: {short(json.dumps(g), 200)}, expected kind {w['kind']!r} name {w['name']!r}")
            if w["kind"] == "image":
                img = g.get("image") if isinstance(g.get("image"), dict) else {}
                for k in ("logical_size", "data_bytes", "lost_bytes", "free_bytes"):
                    if img.get(k) != w.get(k, 0):
                        raise Fail(f"`{shown}` section {w['name']!r}: image.{k} {img.get(k)!r}, expected {w.get(k, 0)}")

    def check_restore(self, i, s):
        shown = f"restore ARCHIVE --image {s['name']} DEST"
        dest = os.path.join(self.tmp, f"restore-{i}.img")
        rc, out, err = self.cmd("restore", self.archive, "--image", s["name"], dest)
        if rc != 0:
            raise Fail(f"`{shown}` exited {rc}: {short(err)}")
        if not os.path.isfile(dest):
            raise Fail(f"`{shown}` exited 0 but left no file at DEST")
        got = file_blake3(dest)
        if got != s["blake3"]:
            raise Fail(f"`{shown}`: DEST hashes to {got}, expected {s['blake3']}")

    def check_list(self, s):
        shown = f"list ARCHIVE --files {s['name']} --json"
        rc, out, err = self.cmd("list", self.archive, "--files", s["name"], "--json")
        if rc != 0:
            raise Fail(f"`{shown}` exited {rc}: {short(err)}")
        secs = load_json(out, shown).get("sections")
        match = [x for x in secs if isinstance(x, dict) and x.get("name") == s["name"]] if isinstance(secs, list) else []
        if len(match) != 1 or match[0].get("kind") != "files" or not isinstance(match[0].get("entries"), list):
            raise Fail(f"`{shown}` gives no single files section named {s['name']!r}")
        got, want = match[0]["entries"], s["entries"]
        for i, w in enumerate(want):
            if i >= len(got):
                raise Fail(f"`{shown}`: {len(got)} entries, expected {len(want)} (first missing: {w['path']!r})")
            g = got[i] if isinstance(got[i], dict) else {}
            for k in ENTRY_FIELDS:
                if g.get(k) != w.get(k):
                    raise Fail(f"`{shown}` entry {i} ({w['path']!r}): {k} {g.get(k)!r}, expected {w.get(k)!r}")
        if len(got) > len(want):
            raise Fail(f"`{shown}`: {len(got)} entries, expected {len(want)} (first extra: {short(json.dumps(got[len(want)]), 200)})")

    def check_cat(self, s):
        """`cat` of every regular file and hard link whose whole content the
        manifest hashes (at most CAT_LIMIT per section) gives those bytes."""
        done = 0
        for e in s["entries"]:
            if done >= CAT_LIMIT:
                break
            if e["kind"] == "hardlink":
                target = next((t for t in s["entries"] if t["path"] == e.get("link")), None)
            elif e["kind"] == "file":
                target = e
            else:
                continue
            if target is None or "blake3" not in target or target.get("lost_in_salvage") or target.get("unreadable"):
                continue
            path = os.fsdecode(bytes.fromhex(e["path_hex"]))
            shown = f"cat ARCHIVE --files {s['name']} {e['path']!r}"
            rc, out, err = self.cmd("cat", self.archive, "--files", s["name"], path)
            if rc != 0:
                raise Fail(f"`{shown}` exited {rc}: {short(err)}")
            got = blake3.blake3(out).hexdigest()
            if got != target["blake3"]:
                raise Fail(f"`{shown}`: {len(out)} bytes hashing to {got}, expected {target['blake3']}")
            done += 1

    def extract(self, name):
        """Extract one file tree into a fresh DEST; returns (rc, report, dest, what appeared beside DEST)."""
        box = os.path.join(self.tmp, *DEST_PARTS[:-1])
        if os.path.exists(os.path.join(self.tmp, DEST_PARTS[0])):
            remove_tree(os.path.join(self.tmp, DEST_PARTS[0]))
        os.makedirs(box)
        dest = os.path.join(box, DEST_PARTS[-1])
        before = snapshot(self.tmp, dest)
        shown = f"extract ARCHIVE --files {name} DEST --json"
        rc, out, err = self.cmd("extract", self.archive, "--files", name, dest, "--json")
        after = snapshot(self.tmp, dest)
        rep = load_json(out, shown)
        for k in ("refused", "warnings"):
            if not isinstance(rep.get(k), list):
                raise Fail(f"`{shown}` printed no {k} array: {short(out)}")
        for r in rep["refused"]:
            if not (isinstance(r, dict) and isinstance(r.get("path"), str) and isinstance(r.get("path_hex"), str)
                    and isinstance(r.get("reason"), str)):
                raise Fail(f"`{shown}`: a refused item is not {{path, path_hex, reason}}: {short(json.dumps(r), 200)}")
        return rc, rep, dest, beside(before, after), err

    def check_extract_valid(self, i, s):
        shown = f"extract ARCHIVE --files {s['name']} DEST --json"
        rc, rep, dest, outside, err = self.extract(s["name"])
        if outside:
            raise Fail(f"`{shown}` changed things beside DEST: {'; '.join(outside[:5])}")
        # Files lost in salvage are not extracted: every one of them is warned about.
        warned = set(s.get("warned", []))
        got = {w.get("path") if isinstance(w, dict) else None for w in rep["warnings"]}
        by_path = {e["path"]: e for e in s["entries"]}
        # Beyond those: unprivileged, the devices it cannot make; and the entries whose
        # recorded time the destination did not keep (FORMAT.md 8.7), which compare_tree
        # checks against the times found.
        unprivileged = os.geteuid() != 0
        others = {p for p in got - warned
                  if not (unprivileged and p in by_path and by_path[p]["kind"] in DEVICE_KINDS)}
        unknown = sorted(str(p) for p in others if p not in by_path)
        if rep["refused"] or warned - got or unknown:
            raise Fail(f"`{shown}` refused {short(json.dumps(rep['refused']), 300)} and warned "
                       f"{short(json.dumps(rep['warnings']), 300)}; expected warnings for {sorted(warned)}"
                       + (f" (and none for paths the manifest does not list: {unknown[:5]})" if unknown else ""))
        if rc != (1 if rep["warnings"] else 0):
            raise Fail(f"`{shown}` exited {rc} with {len(rep['warnings'])} warnings: {short(err)}")
        for path in warned:
            if os.path.lexists(os.path.join(dest, path)):
                raise Fail(f"`{shown}`: {path!r} was extracted, but its content was lost in salvage")
        compare_tree(dest, [e for e in s["entries"] if e["path"] not in warned], shown, others)

    def check_verify_ok(self):
        shown = "verify ARCHIVE --json"
        rc, rep = self.verify()
        if rc != 0 or rep["status"] != "ok" or rep["problems"]:
            raise Fail(f"`{shown}` exited {rc}, status {rep['status']!r}, problems {short(json.dumps(rep['problems']), 500)}")
        if rep["verified_bytes"] != rep["archive_size"]:
            raise Fail(f"`{shown}`: verified_bytes {rep['verified_bytes']} on a clean archive of {rep['archive_size']} bytes")
        # In archive order, which for one tree is the manifest's walk order.
        lost = [(s["name"], e["path"]) for s in self.vec["sections"] if s["kind"] == "files"
                for e in s["entries"] if e.get("lost_in_salvage")]
        got = [(x.get("section"), x.get("path")) for x in rep["lost_entries"] if isinstance(x, dict)]
        if got != lost:
            raise Fail(f"`{shown}`: lost_entries {short(json.dumps(rep['lost_entries']), 300)}, expected {lost}")

    # -- invalid vectors -----------------------------------------------------------------
    def invalid(self):
        self.step(self.check_verify_problems)
        if self.vec.get("refused"):
            self.step(self.check_refused)

    def check_verify_problems(self):
        rc, rep = self.verify()
        classes = [p["class"] for p in rep["problems"]]
        if rc not in (1, 2):
            raise Fail(f"`verify ARCHIVE --json` exited {rc}, expected 1 or 2 (classes {classes})")
        if self.vec["error"] not in classes:
            raise Fail(f"`verify ARCHIVE --json` reports classes {classes}, expected {self.vec['error']!r}")
        got, want = normal_problems(rep["problems"]), normal_problems(self.vec["problems"])
        extra, missing = diff_problems(got, want)
        if extra or missing:
            raise Fail("`verify ARCHIVE --json` problems differ from the manifest's: "
                       + "; ".join([f"unexpected {show_problem(p)}" for p in extra]
                                   + [f"missing {show_problem(p)}" for p in missing]))

    def check_refused(self):
        rc, out, err = self.cmd("info", self.archive, "--json")
        secs = load_json(out, "info ARCHIVE --json").get("sections") if rc == 0 else None
        names = [x.get("name") for x in secs or [] if isinstance(x, dict) and x.get("kind") == "files"]
        if not names:
            raise Fail(f"`info ARCHIVE --json` (exit {rc}) names no file tree to extract: {short(out or err)}")
        refused, problems = set(), []
        for name in names:
            shown = f"extract ARCHIVE --files {name} DEST --json"
            rc, rep, dest, outside, err = self.extract(name)
            if outside:
                problems.append(f"`{shown}` changed things beside DEST: {'; '.join(outside[:5])}")
            if rep["refused"] and rc != 1:
                problems.append(f"`{shown}` refused {len(rep['refused'])} entries but exited {rc}, expected 1")
            refused |= {r["path"] for r in rep["refused"]}
        missing = [p for p in self.vec["refused"] if p not in refused]
        if missing:
            problems.append(f"extract did not refuse {missing} (refused {sorted(refused)})")
        if problems:
            raise Fail("; ".join(problems))

    # -- verify, for both ----------------------------------------------------------------
    def verify(self):
        shown = "verify ARCHIVE --json"
        rc, out, err = self.cmd("verify", self.archive, "--json")
        rep = load_json(out, shown)
        check_verify_object(rep, rc, self.archive, self.size, shown)
        return rc, rep


def check_verify_object(rep, rc, archive, size, shown):
    """The object of conformance.md "`verify --json`", and its exit status."""
    types = {"archive": str, "status": str, "problems": list, "sections": list,
             "records": int, "chunks": int, "verified_bytes": int, "archive_size": int, "lost_entries": list}
    for k, t in types.items():
        if k not in rep or not isinstance(rep[k], t) or (t is int and not is_int(rep[k])):
            raise Fail(f"`{shown}`: field {k!r} missing or not a {t.__name__}")
    if rep["status"] not in STATUS_EXIT:
        raise Fail(f"`{shown}`: status {rep['status']!r} is not one of {sorted(STATUS_EXIT)}")
    if STATUS_EXIT[rep["status"]] != rc:
        raise Fail(f"`{shown}` exited {rc} with status {rep['status']!r} (expected exit {STATUS_EXIT[rep['status']]})")
    if rep["archive"] != archive:
        raise Fail(f"`{shown}`: archive {rep['archive']!r}, the path given was {archive!r}")
    if rep["archive_size"] != size:
        raise Fail(f"`{shown}`: archive_size {rep['archive_size']}, the file has {size} bytes")
    for p in rep["problems"]:
        if not isinstance(p, dict):
            raise Fail(f"`{shown}`: a problem is not an object")
        if p.get("class") not in CLASSES:
            raise Fail(f"`{shown}`: problem class {p.get('class')!r} is not a class of FORMAT.md section 12")
        if not is_int(p.get("offset")) or not isinstance(p.get("what"), str) or not isinstance(p.get("detail"), str):
            raise Fail(f"`{shown}`: problem {short(json.dumps(p), 200)} lacks offset, what or detail")
        aff = p.get("affects")
        # conformance.md does not say whether `section` is the section's id or its
        # name: either is accepted.
        if not isinstance(aff, list) or not all(
                isinstance(a, dict) and all(is_int(a.get(k)) for k in ("start", "end"))
                and (is_int(a.get("section")) or isinstance(a.get("section"), str))
                and isinstance(a.get("path", ""), str) for a in aff):
            raise Fail(f"`{shown}`: problem affects {short(json.dumps(aff), 200)} is not a list of {{section, [path,] start, end}}")
    for s in rep["sections"]:
        if not isinstance(s, dict) or not isinstance(s.get("kind"), str):
            raise Fail(f"`{shown}`: section {short(json.dumps(s), 200)} has no kind")


def normal_affects(items):
    """`affects` as conformance.md makes it normative: for each section (and file
    path), the union of its byte ranges, as maximal disjoint ranges in increasing
    order (an empty range names nothing). Returns a sorted tuple of (section,
    path, start, end)."""
    by = {}
    for a in items:
        key = (str(a.get("section")), a.get("path"))
        by.setdefault(key, []).append((a.get("start"), a.get("end")))
    out = []
    for key, ranges in by.items():
        spans = sorted((s, e) for s, e in ranges if is_int(s) and is_int(e) and e > s)
        merged = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out += [(key[0], key[1] if key[1] is not None else "", s, e) for s, e in merged]
    return tuple(sorted(out))


def normal_problems(problems):
    """A problem list as conformance.md makes it normative: one problem per (class,
    offset), its `affects` the union of theirs (`what`, `detail` and the order of
    the list are not compared). Returns a sorted list of (class, offset, affects)."""
    by = {}
    for p in problems:
        by.setdefault((p.get("class"), p.get("offset")), []).extend(p.get("affects") or [])
    return sorted((c, o, normal_affects(a)) for (c, o), a in by.items())


def show_problem(p):
    c, o, aff = p
    cut = lambda path: path if len(path) <= 40 else path[:18] + "..." + path[-18:]
    ranges = ", ".join((f"{s}:{cut(path)} " if path else f"{s} ") + f"{a}..{b}" for s, path, a, b in aff)
    return f"{c} @{o}" + (f" [{ranges}]" if ranges else "")


def diff_problems(a, b):
    """The problems of list a that list b lacks, and those of b that a lacks."""
    return [p for p in a if p not in b], [p for p in b if p not in a]


def compare_tree(dest, entries, shown, time_warned=frozenset()):
    """DEST holds exactly the manifest's entries, as conformance.md says. An entry of
    time_warned (warned about for no other reason the runner knows) must be one whose
    mtime the destination did not keep; any other must have its recorded mtime."""
    want = {bytes.fromhex(e["path_hex"]): e for e in entries}
    bdest = os.fsencode(dest)
    found = set()
    for dirpath, dirnames, filenames in os.walk(bdest):
        for n in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, n), bdest))
    extra = sorted(found - set(want) - {b""})
    if extra:
        raise Fail(f"`{shown}`: DEST holds entries not in the manifest: {[x.decode('utf-8', 'replace') for x in extra[:5]]}")
    for rel, e in want.items():
        p = os.path.join(bdest, rel) if rel else bdest
        name = e["path"] or "(the root, DEST)"
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            if e["kind"] in DEVICE_KINDS and os.geteuid() != 0:
                continue  # making a device takes root; the extraction warns instead
            raise Fail(f"`{shown}`: {name!r} was not extracted")
        test = KIND_TEST.get(e["kind"])
        if test and not test(st.st_mode):
            raise Fail(f"`{shown}`: {name!r} is not a {e['kind']} (st_mode 0o{st.st_mode:o})")
        if e["kind"] != "symlink" and stat.S_IMODE(st.st_mode) != e["mode"]:
            raise Fail(f"`{shown}`: {name!r} has mode 0o{stat.S_IMODE(st.st_mode):o}, expected 0o{e['mode']:o}")
        mtime = e["mtime_s"] * 10**9 + e["mtime_nsec"]
        if st.st_mtime_ns != mtime and e["path"] not in time_warned:
            raise Fail(f"`{shown}`: {name!r} has mtime {show_time(st.st_mtime_ns)}, expected {show_time(mtime)} "
                       f"(mtime_s {e['mtime_s']}, mtime_nsec {e['mtime_nsec']}), and extraction did not warn about it")
        if st.st_mtime_ns == mtime and e["path"] in time_warned:
            raise Fail(f"`{shown}` warned about {name!r}, which the destination holds as recorded "
                       f"(its mtime {show_time(mtime)} was kept)")
        if e["kind"] == "file":
            if st.st_size != e["size"]:
                raise Fail(f"`{shown}`: {name!r} has {st.st_size} bytes, expected {e['size']}")
            if "ranges" in e:
                check_ranges(p, e, f"`{shown}`: {name!r}")
            else:
                got = file_blake3(p)
                if got != e["blake3"]:
                    raise Fail(f"`{shown}`: {name!r} hashes to {got}, expected {e['blake3']}")
        elif e["kind"] in DEVICE_KINDS:
            got = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            if got != e["rdev"]:
                raise Fail(f"`{shown}`: {name!r} is device {got}, expected {e['rdev']}")
        elif e["kind"] == "symlink":
            target = os.readlink(p).decode("utf-8", "replace")
            if target != e["target"]:
                raise Fail(f"`{shown}`: {name!r} points at {target!r}, expected {e['target']!r}")
        elif e["kind"] == "hardlink":
            other = next((x for x in entries if x["path"] == e["link"]), None)
            if other is None:
                raise Fail(f"`{shown}`: {name!r} links to {e['link']!r}, which the manifest does not list")
            ost = os.lstat(os.path.join(bdest, bytes.fromhex(other["path_hex"])))
            if (ost.st_dev, ost.st_ino) != (st.st_dev, st.st_ino):
                raise Fail(f"`{shown}`: {name!r} does not share an inode with {e['link']!r}")


def show_time(ns):
    s, n = divmod(ns, 10**9)
    return f"({s} s, {n} ns)"


def check_ranges(path, e, shown):
    """A file listed with `ranges` (conformance.md, manifest): each range hashes to its
    BLAKE3, and every byte SEEK_DATA finds outside them is zero; holes are never read."""
    ranges = sorted((r["offset"], r["length"], r["blake3"]) for r in e["ranges"])
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for off, length, want in ranges:
            h, pos, end = blake3.blake3(), off, off + length
            while pos < end:
                block = os.pread(fd, min(end - pos, 1 << 20), pos)
                if not block:
                    raise Fail(f"{shown} ends at {pos}, inside its data range {off}..{end}")
                h.update(block)
                pos += len(block)
            if h.hexdigest() != want:
                raise Fail(f"{shown}: its data range {off}..{end} hashes to {h.hexdigest()}, expected {want}")
        pos, outside, size = 0, 0, e["size"]
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as ex:
                if ex.errno == errno.ENXIO:     # no data after pos: the rest is a hole
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            cur = data
            for off, length, _ in ranges + [(hole, 0, None)]:
                if off + length <= cur and length:
                    continue
                stop = min(off, hole)
                if stop > cur:          # data outside every range: it must be zero
                    outside += stop - cur
                    if outside > OUTSIDE_RANGES_LIMIT:
                        raise Fail(f"{shown}: more than {OUTSIDE_RANGES_LIMIT} bytes of data outside its ranges "
                                   f"(at {cur}..{stop}): its holes were written as data")
                    while cur < stop:
                        block = os.pread(fd, min(stop - cur, 1 << 20), cur)
                        if not block:
                            break
                        if block.count(0) != len(block):
                            raise Fail(f"{shown}: a non-zero byte in {cur}..{cur + len(block)}, outside its ranges")
                        cur += len(block)
                cur = max(cur, off + length)
                if cur >= hole:
                    break
            pos = hole
    finally:
        os.close(fd)


def remove_tree(top):
    """Remove a vector's folder, whatever modes the extraction left on it."""
    def retry(func, path, _):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass
    if os.path.lexists(top):
        shutil.rmtree(top, onerror=retry)


SECTION_FIELDS = ("kind", "name", "logical_size", "data_bytes", "lost_bytes", "free_bytes", "flagged_entries")


def verify_facts(impl, path, parents=()):
    """`verify ARCHIVE --json` of one implementation, as the normative facts it gives:
    (exit status, a dict of the compared fields). The archive is copied into a fresh
    folder, as for the vectors."""
    tmp = tempfile.mkdtemp(prefix="strata-conformance-")
    try:
        archive = os.path.join(tmp, os.path.basename(path))
        shutil.copyfile(path, archive)
        for parent in parents:
            shutil.copyfile(os.path.join(os.path.dirname(path), parent), os.path.join(tmp, parent))
        shown = "verify ARCHIVE --json"
        rc, out, err = impl.run(["verify", archive, "--json"], tmp)
        rep = load_json(out, shown)
        check_verify_object(rep, rc, archive, os.path.getsize(archive), shown)
    finally:
        remove_tree(tmp)
    facts = {k: rep[k] for k in ("status", "records", "chunks", "verified_bytes")}
    # flagged_entries where given; free_bytes for images only (conformance.md).
    facts["sections"] = [{k: s.get(k) for k in SECTION_FIELDS
                          if (k in s or k != "flagged_entries") and (k != "free_bytes" or s.get("kind") == "image")}
                         for s in rep["sections"]]
    facts["problems"] = normal_problems(rep["problems"])
    return rc, facts


def compare(a, b, vectors, only, show):
    """--compare: runs `verify --json` of two implementations on every vector and
    prints, per vector, `SAME name` or `DIFF name` with what differs; exits 1 if
    any differs."""
    with open(os.path.join(vectors, "manifest.json")) as f:
        manifest = json.load(f)
    same = differ = 0
    for vec in manifest["vectors"]:
        if only and vec["name"] not in only:
            continue
        path = os.path.join(vectors, vec["file"])
        lines = []
        try:
            ra, fa = verify_facts(a, path, vec.get("parents", ()))
            rb, fb = verify_facts(b, path, vec.get("parents", ()))
        except Fail as e:
            print(f"DIFF {vec['name']}: {e}")
            differ += 1
            continue
        if ra != rb:
            lines.append(f"exit status {ra} against {rb}")
        for k in ("status", "records", "chunks", "verified_bytes", "sections"):
            if fa[k] != fb[k]:
                lines.append(f"{k}: {short(json.dumps(fa[k]), 300)} against {short(json.dumps(fb[k]), 300)}")
        only_a, only_b = diff_problems(fa["problems"], fb["problems"])
        lines += [f"only the first:  {show_problem(p)}" for p in only_a]
        lines += [f"only the second: {show_problem(p)}" for p in only_b]
        if lines:
            differ += 1
            print(f"DIFF {vec['name']}")
        else:
            same += 1
            print(f"SAME {vec['name']}")
        for line in lines:
            print(f"    {line}")
        if show:
            for p in fa["problems"]:
                print(f"    problem: {show_problem(p)}")
    print(f"{same} the same, {differ} differ")
    return 1 if differ else 0


def main():
    ap = argparse.ArgumentParser(description="Run the Strata conformance vectors against an implementation.")
    ap.add_argument("--impl", required=True, help="the implementation's command line, e.g. 'target/debug/strata'")
    ap.add_argument("--vectors", default=os.path.join(HERE, "..", "vectors"), help="folder of manifest.json")
    ap.add_argument("--only", action="append", help="run only this vector (repeatable)")
    ap.add_argument("--compare", metavar="COMMAND",
                    help="compare the full `verify --json` problem lists of --impl and COMMAND on every vector")
    ap.add_argument("--show", action="store_true", help="with --compare, print --impl's whole list for every vector")
    args = ap.parse_args()
    impl = Impl(args.impl)
    if args.compare:
        return compare(impl, Impl(args.compare), args.vectors, args.only, args.show)
    with open(os.path.join(args.vectors, "manifest.json")) as f:
        manifest = json.load(f)
    passed = failed = 0
    for vec in manifest["vectors"]:
        if args.only and vec["name"] not in args.only:
            continue
        try:
            reasons = Vector(impl, args.vectors, vec).run()
        except Fail as e:
            reasons = [str(e)]
        except Exception as e:          # a broken implementation output fails the vector, not the runner
            reasons = [f"{type(e).__name__}: {e}"]
        if reasons:
            failed += 1
            print(f"FAIL {vec['name']}: " + " | ".join(reasons), flush=True)
        else:
            passed += 1
            print(f"PASS {vec['name']}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
