"""How well personal data is found: precision and recall per type of ``unembed.pii.find`` on the
labelled set (tests/data/pii_labelled.jsonl, made by scripts/pii_labelled.py), for each mode.

    python scripts/pii_eval.py --json benchmarks/results/pii.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import machine, write_json  # noqa: E402

from unembed import pii  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="tests/data/pii_labelled.jsonl")
    ap.add_argument("--modes", default="spacy,regex")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    result = {"data": args.data, "texts": len(rows), "machine": machine(), "modes": {}}
    for mode in args.modes.split(","):
        scores = {
            part: pii.detection_scores([r for r in rows if r["part"] == part], mode) for part in ("faker", "hand")
        }
        scores["all"] = pii.detection_scores(rows, mode)
        result["modes"][mode] = scores
        print(f"\n{mode}: {len(rows)} texts\n| type | gold | found | precision | recall | hand-written only: P / R |")
        print("|---|---|---|---|---|---|")
        for t, s in scores["all"].items():
            h = scores["hand"].get(t, {})
            pct = lambda x: "-" if x is None else f"{100 * x:.0f}%"  # noqa: E731
            hand = f"{pct(h.get('precision'))} / {pct(h.get('recall'))}" if h else "-"
            print(f"| {t} | {s['gold']} | {s['found']} | {pct(s['precision'])} | {pct(s['recall'])} | {hand} |")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
