"""Print the bytes a device-machine call would upload, before anyone starts a machine.

What travels: the tracked files (git ls-files), the untracked files git does not ignore, a
shared/ folder inside the checkout, and each carried path (files or folders, ignored or not).
Exit status 1 when the total is over --limit-mib (default 60: the job's margin under 64).

    python scripts/check_upload.py --carry .gpu/pack [--exclude models/minilm-default]

--exclude previews the upload with a path moved aside (the runbook moves the shipped model out
of the tree for the call; this shows the size without moving it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def _git_files(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", *args], capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def _files_under(root: Path, rel: str) -> list[str]:
    path = root / rel
    if path.is_file():
        return [rel]
    if not path.is_dir():
        raise SystemExit(f"carried path not found: {rel}")
    return [str(p.relative_to(root)) for p in path.rglob("*") if p.is_file() and not p.is_symlink()]


def upload_files(root: Path, carry: list[str], exclude: list[str]) -> dict[str, int]:
    """relative path -> bytes of every file that would travel."""
    names = set(_git_files(root)) | set(_git_files(root, "--others", "--exclude-standard"))
    if (root / "shared").is_dir():
        names |= set(_files_under(root, "shared"))
    for rel in carry:
        names |= set(_files_under(root, rel.rstrip("/")))
    skip = tuple(e.rstrip("/") for e in exclude)
    sizes = {}
    for rel in sorted(names):
        if skip and (rel in skip or rel.startswith(tuple(s + "/" for s in skip))):
            continue
        path = root / rel
        if path.is_file():  # a tracked file deleted from the tree does not travel
            sizes[rel] = path.stat().st_size
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=".", help="the checkout (default: here)")
    ap.add_argument("--carry", action="append", default=[], help="a carried path (repeatable)")
    ap.add_argument("--exclude", action="append", default=[], help="a path to leave out, as if moved aside")
    ap.add_argument("--limit-mib", type=float, default=60.0)
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    sizes = upload_files(root, args.carry, args.exclude)
    groups: dict[str, int] = defaultdict(int)
    carried = tuple(c.rstrip("/") for c in args.carry)
    for rel, n in sizes.items():
        key = next((c for c in carried if rel == c or rel.startswith(c + "/")), rel.split("/")[0])
        groups[key] += n
    for key, n in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{n:>12,d}  {key}{'  (carried)' if key in carried else ''}")
    total = sum(sizes.values())
    print(f"{total:>12,d}  total: {total / 2**20:.2f} MiB in {len(sizes)} files (limit {args.limit_mib:g} MiB)")
    return 0 if total <= args.limit_mib * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main())
