"""Compare continued-training recipes on the CPU from the same starting model, one run at a time.

Every recipe starts from ``--start`` (a model folder, e.g. the shipped decoder plus a fitted
length head), trains the same number of optimizer steps at the same batch (so the same compute
for every recipe but ``heavy``, whose extra masked positions cost more head work: see its
seconds), and is validated on the same fixed validation rows: masked cross-entropy with every
position masked (where decoding starts), teacher-forced loss at uniform t, and end-to-end
decoding accuracy at 8 passes. Two seeds of the baseline give the noise.

    python scripts/recipe_search.py --start runs/start-length --data data/minilm-sub61k \
        --steps 300 --out runs/recipes [--only base,heavy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMMON = [
    "train.batch_size=64",
    "train.warmup_steps=30",
    "train.ema_decay=0.998",
    "train.eval_batches=8",
    "train.eval_decode_n=256",
    "train.log_every=25",
    "train.save_minutes=0",
    "train.lr=0.0001",
    "model.length_head=512",
]
RECIPES = {  # in the order they run
    "base": [],
    "length-reveal": ["train.length_reveal=0.5"],
    "heavy": ["schedule.t_power=0.5"],
    "base-seed1": ["train.seed=1"],
    "masked-mean": ["train.loss_norm=masked-mean"],
    "lr3e-4": ["train.lr=0.0003"],
}
KEYS = ("val_ce_full_mask", "val_acc_full_mask", "val_loss", "val_masked_acc", "val_decode_acc", "val_length_acc")


def run(name: str, args, extra: list[str]) -> dict:
    out = Path(args.out) / name
    cmd = [
        sys.executable,
        "-m",
        "unembed.cli",
        "train",
        "--config",
        "small",
        "--out",
        str(out),
        "--no-progress",
        f"train.data={args.data}",
        f"train.init_from={args.start}",
        *COMMON,
        f"train.max_steps={args.steps}",
        f"train.eval_every={args.steps}",
        f"train.save_every={args.steps}",
        *extra,
    ]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=dict(os.environ))
    seconds = time.time() - t0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "val_loss" in r]
    return {
        "recipe": name,
        "overrides": extra,
        "steps": args.steps,
        "seconds": round(seconds),
        **{k: evals[-1].get(k) for k in KEYS},
    }


def start_metrics(args) -> dict:
    """The starting model on the same validation rows (no training step)."""
    from unembed.config import load_config
    from unembed.train import Trainer

    cfg = load_config("small", overrides=[f"train.data={args.data}", f"train.init_from={args.start}", *COMMON])
    trainer = Trainer(cfg, Path(args.out) / "_start", progress=False)
    m = trainer.validate()
    return {"recipe": "start (no training)", "overrides": [], "steps": 0, "seconds": 0, **{k: m.get(k) for k in KEYS}}


def table(rows: list[dict]) -> str:
    head = "| recipe | steps | s | CE all masked | acc all masked | val loss | masked acc | end-to-end acc | length |"
    lines = [head, "|" + "---|" * 9]

    def cell(r: dict, k: str, pct: bool = False) -> str:
        return "-" if r.get(k) is None else (f"{100 * r[k]:.2f}%" if pct else f"{r[k]:.4f}")

    for r in rows:
        f = lambda k, pct=False, r=r: cell(r, k, pct)  # noqa: E731
        lines.append(
            f"| {r['recipe']} {' '.join(r['overrides'])} | {r['steps']} | {r['seconds']} | {f('val_ce_full_mask')} | "
            f"{f('val_acc_full_mask', True)} | {f('val_loss')} | {f('val_masked_acc', True)} | "
            f"{f('val_decode_acc', True)} | {f('val_length_acc', True)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(RECIPES)
    results_path = Path(args.out) / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {r["recipe"] for r in results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if "start (no training)" not in done:
        results.append(start_metrics(args))
    for name in names:
        if name in done:
            continue
        results.append(run(name, args, RECIPES[name]))
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(table(results), flush=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    (Path(args.out) / "results.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
