"""One sentence at a time (batch 1): the decoding variants of bench_inference.py interleaved run by run.

The host's speed moves by up to 2x within minutes (docs/speed.md), so in bench_inference.py a
variant timed a minute after another can look faster or slower for reasons of its own. Here
every sentence of ``common.SENTENCES`` is inverted by each variant in turn, round after round:
a slow stretch of the host hits all variants alike. A variant's latency is the mean over the
sentences of its fastest round (round 0 is a warm-up and does not count); the int8 matmul peak
is measured before and after.

    python benchmarks/bench_latency.py --model default --strategies confidence,euler \\
        --variants int8-compact-torchhead,int8-compact-pythreads,int8-compact --rounds 12 \\
        --json benchmarks/results/latency-default.json
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from bench_inference import VARIANTS, keeping_library_settings, model_invert_fn, use_variant, variant_model
from common import SENTENCES, machine, markdown, matmul_peak_gflops, split_list, write_json

from unembed import kernels

COLUMNS = [
    ("variant", "variant", "s"),
    ("strategy", "strategy", "s"),
    ("latency_ms", "latency ms (B=1, best round)", ".1f"),
    ("median_ms", "median round ms", ".1f"),
    ("speedup", "x first", ".2f"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from unembed.sampling import STRATEGIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="the trained model to measure (default: the shipped one)")
    ap.add_argument("--variants", default="int8-compact-pythreads,int8-compact", help=f"{', '.join(VARIANTS)}")
    ap.add_argument("--strategies", default="confidence,euler", help=f"comma list or 'all' ({', '.join(STRATEGIES)})")
    ap.add_argument("--steps", type=int, default=8, help="decoder passes per inversion (capped at seq_len)")
    ap.add_argument("--rounds", type=int, default=12, help="runs of each variant per sentence, interleaved")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    args.variants = split_list(args.variants, list(VARIANTS), "variant")
    args.strategies = split_list(args.strategies, STRATEGIES, "strategy")
    if args.steps < 1 or args.rounds < 2:
        raise SystemExit("--steps must be >= 1 and --rounds >= 2 (round 0 is a warm-up)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from unembed.inverter import Inverter

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    inv = Inverter.load(args.model, sample={"precision": "fp32"})
    steps = min(args.steps, inv.cfg.model.seq_len)
    conds = [inv.check_vectors(v) for v in inv.encode(SENTENCES)]
    info = machine()
    peak_start = matmul_peak_gflops(2048, 3, "int8")
    rows = []
    with torch.inference_mode(), keeping_library_settings():
        models = {}
        for v in args.variants:  # converted once each, before any timing
            use_variant(v)
            models[v] = variant_model(inv, v)
        for strategy in args.strategies:
            times: dict[str, list[list[float]]] = {v: [] for v in args.variants}
            for i, cond in enumerate(conds):
                fns = {v: model_invert_fn(inv, models[v], strategy, steps, cond, VARIANTS[v][1]) for v in args.variants}
                runs: dict[str, list[float]] = {v: [] for v in args.variants}
                for r in range(args.rounds):
                    for v in args.variants:
                        use_variant(v)
                        t0 = time.perf_counter()
                        fns[v]()
                        if r:
                            runs[v].append(time.perf_counter() - t0)
                for v in args.variants:
                    times[v].append(sorted(runs[v]))
                print(f"  {strategy}: sentence {i + 1}/{len(conds)}", file=sys.stderr)
            for v in args.variants:
                best = [t[0] for t in times[v]]
                median = [t[len(t) // 2] for t in times[v]]
                rows.append(
                    {
                        "variant": v,
                        "strategy": strategy,
                        "steps": steps,
                        "latency_ms": 1000 * sum(best) / len(best),
                        "latency_ms_each": [round(1000 * t, 2) for t in best],
                        "median_ms": 1000 * sum(median) / len(median),
                        "rounds": args.rounds - 1,
                    }
                )
    peak_end = matmul_peak_gflops(2048, 3, "int8")
    first = {r["strategy"]: r["latency_ms"] for r in rows if r["variant"] == args.variants[0]}
    for r in rows:
        r["speedup"] = first[r["strategy"]] / r["latency_ms"]
    result = {
        "benchmark": "latency-interleaved",
        "model": inv.name,
        "machine": {**info, "load_avg_1m_end": machine()["load_avg_1m"]},
        "int8_peak_gflops_start": peak_start,
        "int8_peak_gflops_end": peak_end,
        "sentences": SENTENCES,
        "argmax_kernel": kernels.status(),
        "int8_head_kernel": kernels.int8_head_isa(),
        "kernel_threads": kernels.threads(),
        "rows": rows,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }
    print(f"int8 matmul peak (2048^3) start/end: {peak_start:.0f}/{peak_end:.0f} GFLOP/s; {result['machine']}")
    print(markdown(rows, COLUMNS))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
