"""Inversion speed per preset and strategy, as a fraction of this machine's measured matmul peak.

For each preset (random weights, MiniLM's vocabulary) and each strategy: the latency of inverting
one vector alone (batch 1) and the throughput of inverting a batch, both over ``--steps`` decoder
passes, with the model FLOPs they did (common.forward_flops; the decoder projects onto the
vocabulary only at masked positions, L - (L * i) // steps of them before pass i) turned
into GFLOP/s and a share of the fp32 matmul peak measured at the start and the end of the run
(the higher of the two is the peak used). Each time is the fastest of up to ``--repeats`` runs:
on a shared machine the fastest run is the least disturbed one.

    python benchmarks/bench_inference.py [--presets tiny,small,base] [--strategies all] [--steps 8]
        [--batch 32] [--repeats 3] [--threads N] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from common import (
    PRESETS,
    best_time,
    build_model,
    finish,
    forward_flops,
    machine,
    matmul_peak_gflops,
    preset_config,
    split_list,
)

# A measurement stops repeating once its timed runs took this long (the base preset is slow on a CPU).
LATENCY_BUDGET_S, BATCH_BUDGET_S = 5.0, 8.0
COLUMNS = [
    ("preset", "preset", "s"),
    ("strategy", "strategy", "s"),
    ("steps", "steps", "d"),
    ("params_m", "params (M)", ".1f"),
    ("gflop_per_pass_b1", "GFLOP/pass (B=1)", ".3f"),
    ("latency_ms", "latency ms (B=1)", ".1f"),
    ("latency_frac_peak", "peak share (B=1)", ".1%"),
    ("batch", "batch", "d"),
    ("sentences_per_s", "sent/s (batched)", ".1f"),
    ("batch_gflops", "GFLOP/s (batched)", ".1f"),
    ("batch_frac_peak", "peak share (batched)", ".1%"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from unembed.sampling import STRATEGIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,small,base", help=f"comma list or 'all' ({', '.join(PRESETS)})")
    ap.add_argument("--strategies", default="all", help=f"comma list or 'all' ({', '.join(STRATEGIES)})")
    ap.add_argument("--steps", type=int, default=8, help="decoder passes per inversion (capped at seq_len)")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the throughput run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (the fastest counts)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="4 steps, batch 8, 2 repeats, small peak matmul")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    args.presets = split_list(args.presets, PRESETS, "preset")
    args.strategies = split_list(args.strategies, STRATEGIES, "strategy")
    if args.quick:
        args.steps, args.batch, args.repeats = min(args.steps, 4), min(args.batch, 8), min(args.repeats, 2)
    if args.steps < 1 or args.batch < 1 or args.repeats < 1:
        raise SystemExit("--steps, --batch and --repeats must be >= 1")
    return args


def invert_fn(model, cfg, strategy: str, steps: int, batch: int):
    """A closure that inverts ``batch`` fixed random unit vectors in ``steps`` passes."""
    from unembed.sampling import denoise, final

    cond = torch.nn.functional.normalize(torch.randn(batch, cfg.model.cond_dim, generator=_gen(1)), dim=-1)
    sc, sa = cfg.schedule, cfg.sample

    def run(num_steps: int = steps):
        kw = {
            "schedule": sc.kind,
            "lam": sc.lam,
            "eps": sc.eps,
            "temperature": sa.temperature,
            "remask_ratio": sa.remask_ratio,
            "refine_ratio": sa.refine_ratio,
        }
        return final(denoise(model, cond, strategy=strategy, num_steps=num_steps, generator=_gen(0), **kw))

    return run


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_flops(mcfg, batch: int, steps: int) -> float:
    """FLOPs of a whole denoising run: the head runs at the positions still masked before each pass."""
    L = mcfg.seq_len
    return sum(forward_flops(mcfg, batch, head_positions=batch * (L - (L * i) // steps))["total"] for i in range(steps))


def bench_preset(name: str, args: argparse.Namespace, peak: float) -> list[dict[str, Any]]:
    cfg = preset_config(name)
    model = build_model(cfg)
    steps = min(args.steps, cfg.model.seq_len)
    f1 = run_flops(cfg.model, 1, steps) / steps  # per pass, averaged over the run
    fb = run_flops(cfg.model, args.batch, steps) / steps
    rows = []
    for strategy in args.strategies:
        one = invert_fn(model, cfg, strategy, steps, 1)
        lat, lat_runs = best_time(one, args.repeats, warmup=1, budget_s=LATENCY_BUDGET_S)
        many = invert_fn(model, cfg, strategy, steps, args.batch)
        many(1)  # warm the batch shapes with a single pass
        wall, batch_runs = best_time(many, args.repeats, warmup=0, budget_s=BATCH_BUDGET_S)
        rows.append(
            {
                "preset": name,
                "strategy": strategy,
                "steps": steps,
                "params_m": model.num_params() / 1e6,
                "gflop_per_pass_b1": f1 / 1e9,
                "latency_ms": 1000 * lat,
                "latency_gflops": steps * f1 / lat / 1e9,
                "latency_frac_peak": steps * f1 / lat / 1e9 / peak,
                "batch": args.batch,
                "sentences_per_s": args.batch / wall,
                "batch_gflops": steps * fb / wall / 1e9,
                "batch_frac_peak": steps * fb / wall / 1e9 / peak,
                "latency_runs": lat_runs,
                "batch_runs": batch_runs,
            }
        )
        print(f"  {name}/{strategy}: {1000 * lat:.1f} ms, {args.batch / wall:.1f} sent/s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a Markdown table, optionally write JSON; returns the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, reps = (1024, 2) if args.quick else (2048, 3)
    info = machine()  # load average before the run; the end's is added below
    peak_start = matmul_peak_gflops(n, reps)
    rows = []
    with torch.inference_mode():
        for name in args.presets:
            rows.extend(bench_preset(name, args, peak_start))
    return finish(
        "inference",
        args,
        info,
        n,
        reps,
        peak_start,
        rows,
        {"latency_gflops": "latency_frac_peak", "batch_gflops": "batch_frac_peak"},
        COLUMNS,
    )


if __name__ == "__main__":
    main()
