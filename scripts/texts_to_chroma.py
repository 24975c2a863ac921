"""Embed a text file (one sentence a line) with an encoder preset and store it in a Chroma collection,
the vectors with their texts as documents, as an application would: the input for
`unembed audit chroma://DB?collection=NAME`.

    python scripts/texts_to_chroma.py --texts runs/test-cut.txt --db runs/chroma-test --collection test-split
"""

import argparse

import chromadb

from unembed.encoders import load_encoder
from unembed.evaluate import read_text_file

BATCH = 512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", required=True)
    ap.add_argument("--db", required=True, help="Chroma persistent directory (created)")
    ap.add_argument("--collection", required=True)
    ap.add_argument("--encoder", default="minilm")
    args = ap.parse_args()
    texts = read_text_file(args.texts)
    encoder = load_encoder(args.encoder)
    col = chromadb.PersistentClient(path=args.db).create_collection(args.collection, embedding_function=None)
    for lo in range(0, len(texts), BATCH):
        part = texts[lo : lo + BATCH]
        ids = [f"rec-{i:05d}" for i in range(lo, lo + len(part))]
        col.add(ids=ids, embeddings=encoder.encode(part).tolist(), documents=part)
    print(f"stored {col.count()} vectors with their texts in {args.db} (collection {args.collection})")


if __name__ == "__main__":
    main()
