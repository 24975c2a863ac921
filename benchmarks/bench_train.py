"""Training throughput per preset, as a fraction of this machine's measured matmul peak.

One optimizer step as train.py takes it: corrupt(x0, t) under the preset's schedule, the masked
diffusion loss (head at masked positions only), backward, gradient clipping, AdamW, EMA update;
random weights, random tokens and unit vectors of MiniLM's sizes. FLOPs per step are 3x the
forward FLOPs with the head counted at the positions actually masked (common.forward_flops).

    python benchmarks/bench_train.py [--presets tiny,small,base] [--batch 64] [--steps N]
        [--threads N] [--quick] [--json FILE]
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

COLUMNS = [
    ("preset", "preset", "s"),
    ("params_m", "params (M)", ".1f"),
    ("batch", "batch", "d"),
    ("masked_share", "masked share", ".2f"),
    ("gflop_per_step", "GFLOP/step", ".1f"),
    ("step_ms", "step ms (best)", ".0f"),
    ("sequences_per_s", "seq/s", ".1f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("frac_peak", "peak share", ".1%"),
]
# Timed steps per preset (after one warm-up step): the base preset takes seconds a step on a CPU.
DEFAULT_STEPS = {"tiny": 10, "small": 4, "base": 2}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,small,base", help=f"comma list or 'all' ({', '.join(PRESETS)})")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per preset (0: tiny 10, small 4, base 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="2 timed steps, small peak matmul")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    args.presets = split_list(args.presets, PRESETS, "preset")
    if args.quick and not args.steps:
        args.steps = 2
    if args.batch < 1 or args.steps < 0:
        raise SystemExit("--batch must be >= 1 and --steps >= 0")
    return args


def step_fn(model, cfg, batch: int, masked_counts: list[int]):
    """One training step closure on fixed random data; appends the masked count of each step."""
    from unembed.loss import diffusion_loss
    from unembed.schedule import Schedule
    from unembed.train import make_optimizer

    m, tc, schedule = cfg.model, cfg.train, Schedule.from_config(cfg.schedule)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(1000, m.vocab_size, (batch, m.seq_len), generator=gen)
    cond = torch.nn.functional.normalize(torch.randn(batch, m.cond_dim, generator=gen), dim=-1)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    ema = [p.detach().clone() for p in model.parameters()]

    def step():
        t = schedule.sample_t(batch, gen)
        xt, masked = schedule.corrupt(x0, t, m.mask_id, gen)
        out = diffusion_loss(model, x0, xt, masked, t, cond, schedule)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - tc.ema_decay)
        masked_counts.append(out.n_masked)

    return step


def bench_preset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = preset_config(name)
    model = build_model(cfg).train()
    masked: list[int] = []
    steps = args.steps or DEFAULT_STEPS[name]
    wall, _ = best_time(step_fn(model, cfg, args.batch, masked), steps, warmup=1)
    positions = sum(masked[1:]) / len(masked[1:])  # mean masked positions of the timed steps
    flops = 3 * forward_flops(cfg.model, args.batch, head_positions=positions)["total"]
    print(f"  {name}: {1000 * wall:.0f} ms/step, {args.batch / wall:.1f} seq/s", file=sys.stderr)
    return {
        "preset": name,
        "params_m": model.num_params() / 1e6,
        "batch": args.batch,
        "seq_len": cfg.model.seq_len,
        "schedule": cfg.schedule.kind,
        "masked_share": positions / (args.batch * cfg.model.seq_len),
        "gflop_per_step": flops / 1e9,
        "step_ms": 1000 * wall,
        "sequences_per_s": args.batch / wall,
        "gflops": flops / wall / 1e9,
        "timed_steps": steps,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a Markdown table, optionally write JSON; returns the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, reps = (1024, 2) if args.quick else (2048, 3)
    info = machine()  # load average before the run; the end's is added below
    peak_start = matmul_peak_gflops(n, reps)
    rows = [bench_preset(name, args) for name in args.presets]
    return finish("train", args, info, n, reps, peak_start, rows, {"gflops": "frac_peak"}, COLUMNS)


if __name__ == "__main__":
    main()
