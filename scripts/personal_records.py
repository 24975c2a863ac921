"""Write synthetic personal records (one a line; ``unembed.records.personal_records``) to a text file,
the input of scripts/texts_to_chroma.py for an audit of personal data:

    python scripts/personal_records.py --n 100 --out runs/personal.txt
    python scripts/texts_to_chroma.py --texts runs/personal.txt --db runs/chroma-personal --collection notes
    unembed audit "chroma://runs/chroma-personal?collection=notes" --out runs/audit-personal
"""

import argparse
from pathlib import Path

from unembed.records import personal_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(personal_records(args.n, args.seed)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
