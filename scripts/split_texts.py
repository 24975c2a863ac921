"""Write one split of a corpus JSONL as a text file, each sentence cut to the decoder length.

These are exactly the texts (and cuts) that `unembed prepare` stores for that split, so
`unembed evaluate --texts` on the output measures what `--data DIR --split S` would.

    python scripts/split_texts.py --corpus data/corpus/builtin.jsonl --split test --out data/test-cut.txt
"""

import argparse
import json

from unembed.corpus import split_of
from unembed.inverter import _load_tokenizer
from unembed.text import DecoderTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--split", default="test", choices=["train", "validation", "test"])
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tok = DecoderTokenizer(_load_tokenizer(args.encoder), args.seq_len)
    with open(args.corpus) as fh:
        texts = [t for t in (json.loads(line)["text"] for line in fh) if split_of(t) == args.split]
    cut, _ = tok.fit(texts)
    with open(args.out, "w") as fh:
        fh.write("\n".join(cut) + "\n")
    print(f"wrote {len(cut)} {args.split} sentences to {args.out}")


if __name__ == "__main__":
    main()
