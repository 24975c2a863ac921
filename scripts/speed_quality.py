"""What each faster decoding path costs in quality: the same N validation sentences decoded by
every variant (precision x compact), compared with the reference text and with fp32/full.

Variants: ``fp32-full`` (the decoding before the speed work: every pass computes all L
positions), ``fp32-compact`` (length first, passes run on each sentence up to its EOS),
``bf16-compact``, ``int8-compact``. For each: token accuracy and BLEU against the references, the
share of sentences and of tokens identical to fp32-full's output, and the wall time of the whole
run at ``--batch`` (the machine should be quiet).

    python scripts/speed_quality.py --model default --texts data/val-cut.txt --n 1000 \
        --out docs/speed/quality.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from unembed.inverter import Inverter
from unembed.length import predict_lengths
from unembed.metrics import bleu, token_accuracy
from unembed.precision import for_inference
from unembed.sampling import denoise, final
from unembed.schedule import Schedule

# (precision, compact passes, int8 inputs on a scale per row (precision.RowScaledLinear) or per batch)
VARIANTS = {
    "fp32-full": ("fp32", False, True),
    "fp32-compact": ("fp32", True, True),
    "bf16-compact": ("bf16", True, True),
    "int8-compact": ("int8", True, True),
    "int8-compact-batchscale": ("int8", True, False),
    "int8-full": ("int8", False, True),
}


def decode(model, cond, inv, strategy, steps, compact, batch):
    sc, sa = inv.cfg.schedule, inv.cfg.sample
    out, lens = [], []
    for i in range(0, len(cond), batch):
        c = cond[i : i + batch]
        n = predict_lengths(model, c)
        lens.append(n)
        gen = torch.Generator().manual_seed(0)
        kw = dict(schedule=Schedule.from_config(sc), temperature=sa.temperature)
        kw |= dict(remask_ratio=sa.remask_ratio, refine_ratio=sa.refine_ratio)
        st = final(
            denoise(model, c, strategy=strategy, num_steps=steps, generator=gen, lengths=n, compact=compact, **kw)
        )
        out.append(st.ids)
    return torch.cat(out).numpy(), torch.cat(lens).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--texts", required=True, help="one sentence a line (e.g. unembed split-texts --split validation)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--strategy", default="confidence")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    inv = Inverter.load(args.model, sample={"precision": "fp32"})  # each variant is made from fp32
    texts = [t for t in Path(args.texts).read_text().splitlines() if t.strip()][: args.n]
    texts, _ = inv.tokenizer.fit(texts)
    ref = inv.tokenizer.encode(texts)
    cond = inv.check_vectors(inv.encode(texts))
    eos = inv.cfg.model.eos_id
    results, base = {}, None
    for name in args.variants.split(","):
        precision, compact, row_scales = VARIANTS[name]
        model = for_inference(inv.model, precision, row_scales=row_scales)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids, lens = decode(model, cond, inv, args.strategy, args.steps, compact, args.batch)
        wall = time.perf_counter() - t0
        preds = inv.tokenizer.decode_batch(ids)
        row = {
            "precision": precision,
            "compact": compact,
            "token_accuracy": round(100 * token_accuracy(ids, ref, eos), 2),
            "bleu": round(bleu(preds, texts), 2),
            "wall_s": round(wall, 1),
            "sentences_per_s": round(len(texts) / wall, 1),
        }
        if base is None:
            base = (ids, lens)
        row["same_length_as_first"] = round(100 * float((lens == base[1]).mean()), 1)
        row["identical_sentences_to_first"] = round(100 * float((ids == base[0]).all(1).mean()), 1)
        row["identical_tokens_to_first"] = round(100 * float((ids == base[0]).mean()), 1)
        results[name] = row
        print(name, row, flush=True)
    out = {
        "command": "python scripts/speed_quality.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        "n": len(texts),
        "strategy": args.strategy,
        "steps": args.steps,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "first": args.variants.split(",")[0],
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
