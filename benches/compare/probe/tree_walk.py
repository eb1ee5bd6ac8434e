"""The writer's entry order over a folder, for the probes: each folder's
regular files in name order, then its subfolders; symbolic links skipped."""
import os


def walk(d):
    names = sorted(os.listdir(d))
    out = []
    subs = []
    for n in names:
        p = os.path.join(d, n)
        if os.path.islink(p):
            continue
        if os.path.isdir(p):
            subs.append(p)
        elif os.path.isfile(p):
            out.append(p)
    for p in out:
        yield p
    for s in subs:
        yield from walk(s)
