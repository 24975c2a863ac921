"""A smaller corpus for CPU training and recipe comparisons: the first validation sentences of a
corpus JSONL (shuffled), then random training sentences, as one JSONL for `unembed prepare`.

Validation rows come first, so `prepare --limit` or the trainer's first validation rows are the
same whatever the training part's size. Deterministic for a given corpus, sizes and seed.

    python scripts/sub_corpus.py --corpus data/corpus/builtin.jsonl --validation 2048 --train 72000 \
        --out data/corpus/sub74k.jsonl
    unembed prepare --source data/corpus/sub74k.jsonl --encoder minilm --out data/minilm-sub74k

--skip takes the training sentences after the first N of the same shuffle: a fresh slice with the
same validation rows, for continuing a model that has seen the first slice many times over
(`--train 200000 --skip 72000` shares no training sentence with the example above).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from unembed.sentences import split_of


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="a corpus JSONL ({'text', 'source'} per line)")
    ap.add_argument("--validation", type=int, default=2048, help="validation sentences (first in the output)")
    ap.add_argument("--train", type=int, default=72000, help="random training sentences after them")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N shuffled training sentences")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.validation < 1 or args.train < 1:
        sys.exit("sub_corpus: --validation and --train must be positive")
    if args.skip < 0:
        sys.exit("sub_corpus: --skip must be 0 or more")
    corpus, out = Path(args.corpus), Path(args.out)
    if not corpus.is_file():
        sys.exit(f"sub_corpus: corpus file not found: {corpus}")
    if out.resolve() == corpus.resolve():
        sys.exit("sub_corpus: --out is the corpus itself")
    by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                by_split[split_of(row["text"])].append(row)
    rng = random.Random(args.seed)
    for split in ("validation", "train"):
        rng.shuffle(by_split[split])
    train = by_split["train"][args.skip : args.skip + args.train]
    if not train:
        sys.exit(f"sub_corpus: --skip {args.skip} leaves no training sentence ({len(by_split['train'])} in the corpus)")
    if len(train) < args.train:
        print(f"sub_corpus: only {len(train)} training sentences after --skip {args.skip}", file=sys.stderr)
    rows = by_split["validation"][: args.validation] + train
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    tmp.replace(out)
    n_val = min(args.validation, len(by_split["validation"]))
    print(f"wrote {len(rows)} sentences ({n_val} validation, {len(rows) - n_val} train) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
