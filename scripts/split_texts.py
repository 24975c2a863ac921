"""Kept for old commands: the same as `unembed split-texts` (which an installed package has too).

python scripts/split_texts.py --corpus data/corpus/builtin.jsonl --split test --out data/test-cut.txt
"""

import sys

from unembed.cli import main

if __name__ == "__main__":
    sys.exit(main(["split-texts", *sys.argv[1:]]))
