"""Benchmark the known-value attack: top-1/top-5 by value type, list size and record length, raw
cosine against the fitted (whitened) scorer in one run, false alarms, the no-list attack, speed.

    python benchmarks/bench_identify.py --json benchmarks/results/identify.json

Records: ``unembed.records`` with its *test* templates, values from Faker (seed SEED), context
sentences from the builtin news source's *test* split (``unembed fetch-corpus``), none of which
the scorer was fitted on. Each list holds every true value of its type first, then hard
distractors (siblings sharing a first or last name, a local part or domain, a street), then random
values; a list of size S is the first S of the longest. False alarms: the same records scored on
the 10,000 list with their true values taken out (they hold nobody on it). ``--quick`` is a
seconds-long run for the tests (a few records, built-in context).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import SENTENCES, machine, markdown, write_json

from unembed import records as R
from unembed.identify import Scorer, candidate_vectors, from_values, identify, load_attacker, rank
from unembed.metrics import auc, wilson

SEED = 20261207
NO_HIT_SIZE = 10_000


def test_context(quick: bool) -> list[str]:
    if quick:
        return SENTENCES
    from unembed.corpus import iter_sentences
    from unembed.sentences import split_of

    return [s for _, s in iter_sentences("builtin:news") if split_of(s) != "train"]


def _share(hits: np.ndarray) -> dict:
    k, n = int(hits.sum()), len(hits)
    lo, hi = wilson(k, n)
    return {"share": k / n, "n": n, "low": lo, "high": hi}


def ranks(v: np.ndarray, cand: np.ndarray, truth: np.ndarray, scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
    """Position of each record's truth in its top 5 (5: not there) and the top candidate's probability."""
    out = rank(v, cand, scorer, 5)
    pos = np.array([list(r.index).index(t) if t in r.index else 5 for r, t in zip(out, truth)])
    return pos, np.array([r.probability[0] for r in out])


def run_type(kind, enc, scorers, ctx, args, result) -> None:
    truths = R.values(kind, args.n, seed=SEED + R.TYPES.index(kind))
    pool = from_values(R.candidate_pool(kind, truths, max(args.sizes), seed=SEED + 50), kind, "bench")
    cand = np.asarray(candidate_vectors(enc, pool, progress=not args.quick), np.float32)
    index = {x: i for i, x in enumerate(pool.values)}
    for band in args.bands:
        recs = R.make_records(kind, truths, "test", ctx if band else (), band, seed=SEED + band)
        v = enc.encode([r.text for r in recs])
        truth = np.array([index[r.value] for r in recs])
        for size in args.sizes:
            for name, sc in scorers.items():
                pos, top_p = ranks(v, cand[:size], truth, sc)
                row = {"type": kind, "band": band, "size": size, "scorer": name}
                row |= {"top1": _share(pos == 0), "top5": _share(pos < 5), "mean_top_p": float(top_p.mean())}
                if size == NO_HIT_SIZE or (size == max(args.sizes) and NO_HIT_SIZE not in args.sizes):
                    row["false_alarm"] = false_alarms(v, cand[:size], truth, sc, pos, top_p)
                result["rows"].append(row)
                print(f"{kind:8s} {band:4d} words {size:7d} {name:8s} top1 {row['top1']['share']:.3f}", file=sys.stderr)


def false_alarms(v, cand, truth, scorer, pos, top_p) -> dict:
    """The same records on the list without any of the true values: how confident the top candidate is."""
    keep = np.ones(len(cand), bool)
    keep[truth] = False
    _, p_none = ranks(v, cand[keep], np.full(len(v), -1), scorer)
    scores = np.concatenate([top_p, p_none])
    correct = np.concatenate([pos == 0, np.zeros(len(p_none), bool)])
    flagged = scores >= 0.5
    return {
        "auc_hit_vs_none": auc(scores, correct),
        "none_mean_top_p": float(p_none.mean()),
        "none_share_over_0.5": float((p_none >= 0.5).mean()),
        "precision_at_0.5": float(correct[flagged].mean()) if flagged.any() else None,
        "recall_at_0.5": float(flagged[correct].mean()) if correct.any() else None,
    }


def no_list(enc, scorer, args, result) -> None:
    """One-sentence person records against the built-in first x last names (no victim list)."""
    from unembed.identify import read_candidates

    truths = R.values("person", args.n, seed=SEED + 99)
    recs = R.make_records("person", truths, "test", seed=SEED + 99)
    rows = identify(enc.encode([r.text for r in recs]), [read_candidates("builtin:person")], enc, scorer, top_k=1)
    full = np.array([row[0]["value"].lower() == r.value.lower() for row, r in zip(rows, recs)])
    result["no_list"] = {"full_name_top1": _share(full), "list": "builtin:person (Faker en_US first x last names)"}


def speed(enc, scorer, result, quick: bool) -> None:
    """Seconds to rank 1,000 records against 10,000 candidates (vectors cached), best of 3."""
    n, m = (50, 500) if quick else (1000, 10_000)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, enc.dim)).astype(np.float32)
    cand = rng.standard_normal((m, enc.dim)).astype(np.float16)
    best = min(_timed(lambda: rank(v, cand, scorer, 5)) for _ in range(3))
    result["speed"] = {"records": n, "candidates": m, "seconds": best}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=",".join(R.TYPES))
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--bands", default="0,20,60,150", help="extra words of context around the value")
    ap.add_argument("--n", type=int, default=300, help="records per type and band")
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.bands = [int(x) for x in args.bands.split(",")]
    if args.quick:
        args.n, args.sizes, args.bands = 6, [60], [0, 20]
    enc, fitted = load_attacker(args.model)
    scorers = {"cosine": Scorer.cosine(), fitted.kind: fitted} if fitted.kind != "cosine" else {"cosine": fitted}
    ctx = test_context(args.quick)
    result: dict = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if k != "json"}, "rows": []}
    result["args"]["seed"] = SEED
    t0 = time.perf_counter()
    for kind in args.types.split(","):
        run_type(kind, enc, scorers, ctx, args, result)
    no_list(enc, fitted, args, result)
    speed(enc, fitted, result, args.quick)
    result["seconds"] = time.perf_counter() - t0
    report(result)
    write_json(args.json, result)
    return result


def report(result: dict) -> None:
    flat = [
        {
            "type": r["type"],
            "band": r["band"],
            "size": r["size"],
            "scorer": r["scorer"],
            "top1": 100 * r["top1"]["share"],
            "ci": f"{100 * r['top1']['low']:.0f}-{100 * r['top1']['high']:.0f}",
            "top5": 100 * r["top5"]["share"],
        }
        for r in result["rows"]
    ]
    cols = [("type", "type", "s"), ("band", "extra words", "d"), ("size", "list", ",d"), ("scorer", "scorer", "s")]
    print(markdown(flat, [*cols, ("top1", "top-1 %", ".1f"), ("ci", "95% CI", "s"), ("top5", "top-5 %", ".1f")]))
    fa = [
        {**{k: r[k] for k in ("type", "band", "scorer")}, **r["false_alarm"]}
        for r in result["rows"]
        if "false_alarm" in r
    ]
    print()
    print(
        markdown(
            fa,
            [
                ("type", "type", "s"),
                ("band", "extra words", "d"),
                ("scorer", "scorer", "s"),
                ("auc_hit_vs_none", "AUC hit vs none", ".3f"),
                ("none_mean_top_p", "none: mean top p", ".3f"),
                ("none_share_over_0.5", "none: share p>=0.5", ".3f"),
                ("precision_at_0.5", "precision@0.5", ".3f"),
                ("recall_at_0.5", "recall@0.5", ".3f"),
            ],
        )
    )
    nl, sp = result["no_list"]["full_name_top1"], result["speed"]
    print(f"\nno list (builtin:person): full name top-1 {100 * nl['share']:.1f}% of {nl['n']}")
    print(f"speed: {sp['records']} records x {sp['candidates']} candidates in {sp['seconds']:.3f} s")


if __name__ == "__main__":
    main()
