#!/usr/bin/env python3
"""Keeps the shared cargo target directory from filling the disk.

Every commit's build leaves new artifacts of the workspace's own crates (libraries, test and
service binaries, tens of MB each) under a new hash, and cargo never deletes the old ones: run
after run they filled our disks (36 GB of debug/deps in a day). This removes, in
<target>/<profile>/deps, the workspace's artifacts beyond the three newest of each name that are
more than two hours old, and the incremental caches (rebuilt on demand). Third-party crates are
left alone: they change rarely and are slow to rebuild. A removed artifact that cargo still wants
is simply built again.

    prune-target.py TARGET_DIR
"""
import os
import re
import shutil
import sys
import time
from collections import defaultdict

KEEP = 3
MIN_AGE_S = 2 * 3600
ARTIFACT = re.compile(r"^(lib)?([a-z0-9_]+)-([0-9a-f]{16})(\..*)?$")


def workspace_names(root):
    """Crate and target names of the workspace, as they appear in deps (dashes as underscores)."""
    names = set()
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("target", ".git", "node_modules")]
        if "Cargo.toml" in files:
            for f in ("src/bin", "tests", "benches", "examples"):
                d = os.path.join(base, f)
                if os.path.isdir(d):
                    names.update(os.path.splitext(x)[0].replace("-", "_") for x in os.listdir(d))
            for line in open(os.path.join(base, "Cargo.toml")):
                m = re.match(r'^name\s*=\s*"([^"]+)"', line)
                if m:
                    names.add(m.group(1).replace("-", "_"))
    return names


def prune(target, names):
    freed = 0
    now = time.time()
    for profile in ("debug", "release"):
        deps = os.path.join(target, profile, "deps")
        if not os.path.isdir(deps):
            continue
        shutil.rmtree(os.path.join(target, profile, "incremental"), ignore_errors=True)
        groups = defaultdict(list)
        for f in os.listdir(deps):
            m = ARTIFACT.match(f)
            if m and m.group(2) in names:
                path = os.path.join(deps, f)
                groups[(m.group(1), m.group(2), m.group(4))].append((os.path.getmtime(path), path))
        for files in groups.values():
            files.sort(reverse=True)
            for mtime, path in files[KEEP:]:
                if now - mtime > MIN_AGE_S:
                    freed += os.path.getsize(path)
                    os.remove(path)
    return freed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    freed = prune(sys.argv[1], workspace_names(root))
    print(f"pruned {freed / 1e9:.1f} GB of old workspace artifacts from {sys.argv[1]}")
