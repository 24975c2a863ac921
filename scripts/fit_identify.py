"""Fit the known-value attack's scorer for a model's encoder and write it into the model folder.

    python scripts/fit_identify.py --model models/minilm-default [--background 4000] [--per-band 300]

1. Background: passages of 1-8 sentences of the builtin news corpus' train split (ordinary text,
   no inserted personal data), embedded; their mean and covariance give the whitening (identify.py).
2. Calibration: synthetic records (``unembed.records``, train templates, train-split context,
   every type, 0/20/60/150 extra words) against hard candidate lists of 10,000; half the records
   are scored against a list that holds their value, half against one that does not. ``a`` and
   ``b`` maximise the likelihood of the truth (or of "none") under identify's probability.

Writes identify.safetensors and identify.json (the settings, sizes and fit) into the model folder;
prints the calibration of raw cosine too (identify.Scorer.cosine's constants). Needs the news
source (``unembed fetch-corpus``) and Faker. Takes about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

import numpy as np
import torch

from unembed import records as R
from unembed.catalog import resolve_model_dir
from unembed.corpus import iter_sentences
from unembed.encoders import load_encoder
from unembed.identify import Scorer, fit_whitening, from_values, sample_rows
from unembed.sentences import split_of

BANDS = (0, 20, 60, 150)
POOL = 10_000
SEED = 20261206


def context_sentences(split: str, n: int) -> list[str]:
    """Up to n sentences of the news source in one corpus split (train or test)."""
    out = []
    for _, s in iter_sentences("builtin:news", limit=400_000):
        if (split_of(s) == "train") == (split == "train"):
            out.append(s)
            if len(out) >= n:
                break
    return out


def background_passages(ctx: list[str], n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(ctx[j] for j in rng.integers(len(ctx), size=rng.integers(1, 9))) for _ in range(n)]


def standardised(scorer: Scorer, v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[R, N] standardised scores, as identify.rank computes them."""
    mu = c.mean(0)
    q, k = scorer.records(v), scorer.candidates(c, mu)
    s = q @ k.T
    pick = sample_rows(len(c))
    return (s - s[:, pick].mean(1, keepdims=True)) / s[:, pick].std(1, keepdims=True)


def fit_calibration(zs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[float, float, float]:
    """a, b maximising sum log P(target) (target -1: none) over groups of [R, N] scores."""
    a = torch.tensor(2.0, requires_grad=True, dtype=torch.float64)
    b = torch.tensor(0.0, requires_grad=True, dtype=torch.float64)
    opt = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")
    data = [(torch.tensor(z, dtype=torch.float64), torch.tensor(t)) for z, t in zip(zs, targets)]

    def nll():
        opt.zero_grad()
        total = 0.0
        for z, t in data:
            logits = torch.cat([a * z, (b + np.log(z.shape[1])).expand(len(z), 1)], 1)
            total = total + torch.nn.functional.cross_entropy(
                logits, torch.where(t < 0, z.shape[1], t), reduction="sum"
            )
        loss = total / sum(len(t) for _, t in data)
        loss.backward()
        return loss

    loss = opt.step(nll)
    return float(a.detach()), float(b.detach()), float(loss.detach())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/minilm-default")
    ap.add_argument("--background", type=int, default=4000, help="ordinary passages for the whitening")
    ap.add_argument("--per-band", type=int, default=200, help="calibration records per type and length band")
    ap.add_argument("--lam", type=float, default=0.1, help="ridge of the whitening, as a share of the mean variance")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    args = ap.parse_args()
    folder = resolve_model_dir(args.model)
    cfg = json.loads((folder / "config.json").read_text())
    enc = load_encoder(cfg["encoder"]["name"])
    rng = np.random.default_rng(SEED)
    ctx = context_sentences("train", 30_000)
    print(f"{len(ctx)} context sentences; embedding {args.background} background passages", file=sys.stderr)
    mean, whiten = fit_whitening(enc.encode(background_passages(ctx, args.background, rng)), args.lam)
    scorer = Scorer("whitened", 1.0, 0.0, mean, whiten)
    zs = {"whitened": [], "cosine": []}
    targets = []
    for t, kind in enumerate(R.TYPES):
        truths = R.values(kind, len(BANDS) * args.per_band, seed=SEED + t)
        recs = [
            r
            for i, ew in enumerate(BANDS)
            for r in R.make_records(kind, truths[i :: len(BANDS)], "train", ctx, ew, seed=SEED + 10 * t + i)
        ]
        print(f"{kind}: embedding {len(recs)} records and a list of {POOL}", file=sys.stderr)
        v = enc.encode([r.text for r in recs])
        pool = from_values(R.candidate_pool(kind, truths, POOL, seed=SEED + 100 + t), kind, "fit").values
        c = enc.encode(list(pool))
        index = {x: j for j, x in enumerate(pool)}
        hit = rng.random(len(recs)) < 0.5
        target = np.array([index[r.value] if h else -1 for r, h in zip(recs, hit)])
        # "none" records: their value is taken out of the list by scoring them on the list without it
        keep = np.ones(len(pool), bool)
        keep[[index[r.value] for r, h in zip(recs, hit) if not h]] = False
        remap = np.cumsum(keep) - 1
        target = np.where(target >= 0, remap[np.maximum(target, 0)], -1)
        for name, sc in (("whitened", scorer), ("cosine", Scorer("cosine", 1.0, 0.0))):
            zs[name].append(standardised(sc, v, c[keep]))
        targets.append(target)
    fits = {name: fit_calibration(z, targets) for name, z in zs.items()}
    for name, (a, b, loss) in fits.items():
        print(f"{name}: a={a:.4f} b={b:.4f} mean NLL {loss:.4f}")
    a, b, loss = fits["whitened"]
    meta = {
        "encoder": cfg["encoder"]["name"],
        "lam": args.lam,
        "background": f"{args.background} passages of 1-8 sentences, builtin news source, train split",
        "calibration": f"{len(R.TYPES)} types x {len(BANDS)} bands x {args.per_band} synthetic records (train "
        f"templates), half with their value on a hard list of {POOL}, half without; mean NLL {loss:.4f}",
        "cosine_calibration": {"a": fits["cosine"][0], "b": fits["cosine"][1]},
        "command": "python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "seed": SEED,
    }
    if not args.dry_run:
        Scorer("whitened", a, b, mean, whiten, meta).save(folder)
        print(f"wrote {folder / 'identify.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
