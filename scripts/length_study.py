"""How well is length predictable from the vector, and what does fixing it first buy end to end?

Fits a length head on a prepared folder's train split (decoder frozen), then decodes the first
N validation sentences at --steps passes with each length option:

* free        today's decoding: every position starts masked, the model places EOS itself
* first-pass  one extra look: EOS where the all-mask pass finds it most likely (costs no pass:
              it is the first pass's own prediction, the same pass then reveals as usual)
* head        the length head's prediction (no decoder pass)
* oracle      the true length (upper bound, not available to an attacker)

    python scripts/length_study.py --model default --data data/minilm-sub100k --n 1000 \
        --out docs/length-study/study.json [--save-model runs/with-length]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unembed.checkpoint import save_model
from unembed.inverter import Inverter
from unembed.length import fit_length_head, length_report, predict_lengths
from unembed.loss import length_targets
from unembed.metrics import bleu, token_accuracy
from unembed.prepare import PreparedData
from unembed.sampling import denoise, final
from unembed.schedule import Schedule


def first_pass_lengths(model, cond: torch.Tensor) -> torch.Tensor:
    """EOS position by the all-mask pass: argmax over positions of P(EOS at position)."""
    cfg = model.cfg
    ids = torch.full((cond.shape[0], cfg.seq_len), cfg.mask_id, dtype=torch.long)
    with torch.inference_mode():
        hidden = model(ids, torch.ones(cond.shape[0]), cond)
        logp = model.logits(hidden).float().log_softmax(-1)[..., cfg.eos_id]  # [B, L]
    return logp.argmax(-1)


def decode(model, cond, lengths, strategy, steps, sc, batch=128) -> np.ndarray:
    out = []
    for i in range(0, len(cond), batch):
        gen = torch.Generator().manual_seed(0)
        ln = None if lengths is None else lengths[i : i + batch]
        last = final(
            denoise(
                model,
                cond[i : i + batch],
                strategy=strategy,
                num_steps=steps,
                generator=gen,
                schedule=Schedule.from_config(sc),
                lengths=ln,
            )
        )
        out.append(last.ids.numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--strategies", default="confidence")
    ap.add_argument("--lengths", default="free,first-pass,head,oracle", help="length options to decode with")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--train-limit", type=int, default=None, help="train rows for the head (default: all)")
    ap.add_argument("--allow-incomplete", action="store_true", help="use the rows a running prepare finished")
    ap.add_argument("--save-model", default="", help="write the decoder + fitted head to this folder")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    inv = Inverter.load(args.model)
    data = PreparedData(args.data, allow_incomplete=args.allow_incomplete)
    limit = args.train_limit
    if args.allow_incomplete and not data.manifest.get("complete"):
        progress = json.loads((Path(args.data) / "progress.json").read_text())
        done = progress["chunks_done"] * progress["args"]["chunk_size"]
        limit = int((data.rows("train") < done).sum())
        print(f"incomplete preparation: {done} rows embedded, {limit} of them train")
    t0 = time.time()
    model, head_report = fit_length_head(inv.model, data, hidden=args.hidden, epochs=args.epochs, limit=limit)
    fit_s = time.time() - t0
    if args.save_model:
        save_model(Path(args.save_model), replace(inv.cfg, model=model.cfg), model.state_dict(), dtype=torch.float16)
    rows = data.rows("validation")[: args.n]
    cond = torch.from_numpy(np.asarray(data.vectors[rows], dtype=np.float32))
    cond = cond / cond.norm(dim=1, keepdim=True)
    x0 = np.asarray(data.ids[rows], dtype=np.int64)
    true = length_targets(torch.from_numpy(x0), inv.cfg.model.eos_id)
    refs = [inv.tokenizer.decode(r) for r in x0]
    options = {
        "free": None,
        "first-pass": first_pass_lengths(model, cond),
        "head": predict_lengths(model, cond),
        "oracle": true,
    }
    results = {
        "head_fit": {**head_report, "seconds": round(fit_s, 1)},
        "n": len(rows),
        "steps": args.steps,
        "length": {},
        "decode": [],
    }
    for name, ln in options.items():
        if ln is not None:
            results["length"][name] = length_report(ln, true)
    chosen = args.lengths.split(",")
    for strategy in args.strategies.split(","):
        for name, ln in ((k, v) for k, v in options.items() if k in chosen):
            t1 = time.time()
            ids = decode(model, cond, ln, strategy, args.steps, inv.cfg.schedule)
            preds = [inv.tokenizer.decode(r) for r in ids]
            row = {
                "strategy": strategy,
                "length": name,
                "token_acc": token_accuracy(ids, x0, inv.cfg.model.eos_id),
                "bleu": bleu(preds, refs),
                "seconds": round(time.time() - t1, 1),
            }
            results["decode"].append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["length"], indent=1))


if __name__ == "__main__":
    main()
