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

With ``--model NAME`` it measures a trained model instead (the shipped one: ``--model default``),
on real vectors (common.SENTENCES at batch 1, the first ``--batch`` lines of ``--texts`` or the
same sentences repeated for the batch), once per decoding variant in the same run, so that the
old path and the new one are compared on one machine state:

* ``fp32-full``: the decoding before the speed work (length head, fp32, every pass on all L,
  the vocabulary projection of a pass in one piece)
* ``fp32-compact``: passes computed up to each sentence's EOS only
* ``bf16-compact``, ``int8-compact`` (int8 is the CPU default, ``sample.precision: auto``)
* ``int8-compact-whole``: int8-compact with each pass's vocabulary projection in one piece
  instead of ``sampling.HEAD_ROWS`` rows at a time (the default before chunking)
* ``int8-compact-256``: int8-compact with chunks of 256 rows (the default before 128)
* ``int8-compact-torch``: int8-compact with torch's int8 projection and the arg-max and its
  probability computed by torch operations (the default before ``unembed.kernels``)
* ``int8-compact-reduce``: torch's int8 projection, then the fused reduction kernel
  (``kernels.head_reduce``; the default before ``kernels.Int8Head``)
* ``int8-compact-ada7``: int8-compact-eager with each block's AdaLN projection and ``ada_out`` as
  separate products (the default before ``precision.fuse_ada``)
* ``int8-compact-eager``: int8-compact with the passes run op by op in Python (the default before
  ``precision.TracedPasses``; the int8 variants above it are eager too)
* ``int8-compact-torchhead``: int8-compact with torch's int8 projection and the fused reduction
  (on Python threads) instead of ``kernels.Int8Head`` (the default on AVX2 hosts until Int8Head
  ran there)
* ``int8-compact-pythreads``: int8-compact with the kernels' parallel parts on Python threads
  instead of torch's OpenMP team (the default before ``kernels.OPENMP``)
* ``int8-compact``: the int8 projection and the reduction in one kernel (``kernels.Int8Head``,
  where the CPU has AVX-512 VNNI or AVX2; elsewhere the same as ``int8-compact-reduce``), the AdaLN
  projections of a pass as one product, the passes as TorchScript graphs, and the kernels'
  parallel parts on torch's OpenMP team (where the kernel library was built with OpenMP)

Every variant but ``fp32-full`` and the ``-torch`` one uses the fused reduction where it is built
here (the JSON records ``kernels.status()`` and which instructions the int8 head kernel runs on,
null where it is not built).

Latency is the mean over the sentences of each one's fastest run; FLOPs are counted from the
positions each pass really computed, and a variant's peak share is against the matmul peak of
its own precision (fp32, bf16, int8), measured at the start and the end of the run. The host's
speed moves within minutes, so each batched measurement also gets the peak measured right
before and right after its timed runs ("share of adjacent peak", against the higher of the
two), and the share of the computed positions that were padding after a row's EOS.

With ``--bulk N`` it also inverts the first N lines of ``--texts`` through ``Inverter.invert``
itself, the path the CLI, the audit and the evaluation take for many vectors (rows in order of
predicted length, batches of ``--batch``), timed as one run per variant and strategy between two
peak measurements:

    python benchmarks/bench_inference.py --model default --strategies confidence --variants int8-compact \
        --batch 256 --bulk 1024 --texts data/val-cut.txt

    python benchmarks/bench_inference.py --model default --strategies confidence,euler \
        --texts data/val-cut.txt --json benchmarks/results/inference-default.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from typing import Any

import torch
from common import (
    PRESETS,
    SENTENCES,
    best_time,
    build_model,
    finish,
    forward_flops,
    machine,
    markdown,
    matmul_peak_gflops,
    preset_config,
    split_list,
    write_json,
)

from unembed import kernels, sampling
from unembed.sampling import HEAD_ROWS
from unembed.schedule import Schedule

# Decoding variants of --model: (precision, compact passes, rows per vocabulary-projection chunk
# (0 = all masked positions of a pass at once, as before sampling.HEAD_ROWS), the arg-max path:
# "torch" operations, "reduce" = torch's projection + the fused reduction kernel, "fused" = the
# int8 projection and reduction in one kernel (kernels.Int8Head; int8 only, "reduce" elsewhere),
# the AdaLN projections of a pass fused into one product (int8 only, precision.fuse_ada), the
# passes as TorchScript graphs (int8 only, precision.TracedPasses), the kernels' parallel parts on
# torch's OpenMP team where the build has OpenMP (kernels.OPENMP; False: on Python threads), each
# row's int8 inputs on their own scale (precision.RowScaledLinear; False: one scale per batch,
# which made a row's text depend on its neighbours)).
VARIANTS = {
    "fp32-full": ("fp32", False, 0, "torch", False, False, True, True),
    "fp32-compact": ("fp32", True, HEAD_ROWS, "reduce", False, False, True, True),
    "bf16-compact": ("bf16", True, HEAD_ROWS, "reduce", False, False, True, True),
    "int8-compact-whole": ("int8", True, 0, "reduce", True, False, True, True),
    "int8-compact-256": ("int8", True, 256, "reduce", True, False, True, True),
    "int8-compact-torch": ("int8", True, HEAD_ROWS, "torch", True, False, True, True),
    "int8-compact-reduce": ("int8", True, HEAD_ROWS, "reduce", True, False, True, True),
    "int8-compact-torchhead": ("int8", True, HEAD_ROWS, "reduce", True, True, False, True),
    "int8-compact-ada7": ("int8", True, HEAD_ROWS, "fused", False, False, True, True),
    "int8-compact-eager": ("int8", True, HEAD_ROWS, "fused", True, False, True, True),
    "int8-compact-pythreads": ("int8", True, HEAD_ROWS, "fused", True, True, False, True),
    "int8-compact-batchscale": ("int8", True, HEAD_ROWS, "fused", True, True, True, False),
    "int8-compact": ("int8", True, HEAD_ROWS, "fused", True, True, True, True),
}
MODEL_COLUMNS = [
    ("variant", "variant", "s"),
    ("strategy", "strategy", "s"),
    ("latency_ms", "latency ms (B=1)", ".1f"),
    ("latency_speedup", "x first (B=1)", ".2f"),
    ("latency_frac_peak", "peak share (B=1)", ".1%"),
    ("batch", "batch", "d"),
    ("sentences_per_s", "sent/s (batched)", ".1f"),
    ("batch_speedup", "x first (batched)", ".2f"),
    ("batch_frac_peak", "peak share (batched)", ".1%"),
    ("batch_frac_peak_adjacent", "share of adjacent peak (batched)", ".1%"),
    ("batch_padding_share", "padding computed (batched)", ".1%"),
]
BULK_COLUMNS = [
    ("variant", "variant", "s"),
    ("strategy", "strategy", "s"),
    ("vectors", "vectors", "d"),
    ("batch", "batch", "d"),
    ("sentences_per_s", "sent/s", ".1f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("frac_peak_adjacent", "share of adjacent peak", ".1%"),
    ("padding_share", "padding computed", ".1%"),
]
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
    ap.add_argument("--model", default=None, help="measure this trained model (e.g. default) instead of presets")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"with --model: {', '.join(VARIANTS)}")
    ap.add_argument("--texts", default=None, help="with --model: sentences for the batch (one a line)")
    ap.add_argument(
        "--bulk",
        type=int,
        default=0,
        help="with --model and --texts: also invert this many of the texts through Inverter.invert "
        "(sorted by predicted length, batches of --batch), timed as one run per variant x strategy",
    )
    args = ap.parse_args(argv)
    args.variants = split_list(args.variants, list(VARIANTS), "variant")
    args.presets = split_list(args.presets, PRESETS, "preset")
    args.strategies = split_list(args.strategies, STRATEGIES, "strategy")
    if args.quick:
        args.steps, args.batch, args.repeats = min(args.steps, 4), min(args.batch, 8), min(args.repeats, 2)
    if args.steps < 1 or args.batch < 1 or args.repeats < 1 or args.bulk < 0:
        raise SystemExit("--steps, --batch and --repeats must be >= 1, --bulk >= 0")
    if args.bulk and not (args.model and args.texts):
        raise SystemExit("--bulk needs --model and --texts")
    return args


def invert_fn(model, cfg, strategy: str, steps: int, batch: int):
    """A closure that inverts ``batch`` fixed random unit vectors in ``steps`` passes."""
    from unembed.sampling import denoise, final

    cond = torch.nn.functional.normalize(torch.randn(batch, cfg.model.cond_dim, generator=_gen(1)), dim=-1)
    sa = cfg.sample

    def run(num_steps: int = steps):
        kw = {
            "schedule": Schedule.from_config(cfg.schedule),
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


class _FlopCounter:
    """Wraps a Denoiser: adds up the FLOPs of the passes it runs (positions really computed), and
    how many of the computed positions were up to each row's EOS (known only for compact passes,
    which say so with ``visible``; otherwise ``useful`` is None)."""

    def __init__(self, model):
        self.model, self.cfg, self.flops = model, model.cfg, 0.0
        self.positions, self.useful = 0, 0

    @property
    def has_length_head(self) -> bool:
        return self.model.has_length_head

    @property
    def fused_head(self):
        """The model's int8 projection + arg-max kernel (AVX-512 VNNI and AVX2 hosts), counted like logits."""
        head = getattr(self.model, "fused_head", None)
        if head is None:
            return None

        def counted(hidden):
            got = head(hidden)
            if got is not None:
                self.flops += 2.0 * self.cfg.width * self.cfg.vocab_size * hidden.shape[0]
            return got

        return counted

    def __call__(self, ids, t, cond, visible=None):
        b, n = ids.shape
        self.flops += forward_flops(self.cfg, b, head_positions=0, seq_len=n)["total"]
        self.positions += b * n
        if visible is None or self.useful is None:
            self.useful = None
        else:
            self.useful += int((visible + 1).clamp(max=n).sum())
        return self.model(ids, t, cond, visible)

    def logits(self, hidden):
        self.flops += 2.0 * self.cfg.width * self.cfg.vocab_size * hidden.shape[0]
        return self.model.logits(hidden)

    def length_logits(self, cond):
        return self.model.length_logits(cond)

    def padding_share(self) -> float | None:
        return None if self.useful is None or not self.positions else 1 - self.useful / self.positions


def model_invert_fn(inv, model, strategy: str, steps: int, cond: torch.Tensor, compact: bool):
    """A closure that inverts ``cond`` with ``model`` the way Inverter.stream does."""
    from unembed.length import predict_lengths
    from unembed.sampling import denoise, final

    sa = inv.cfg.sample
    kw = {"schedule": Schedule.from_config(inv.cfg.schedule), "temperature": sa.temperature}
    kw |= {"remask_ratio": sa.remask_ratio, "refine_ratio": sa.refine_ratio}

    def run(m=model):
        lengths = predict_lengths(m, cond)
        return final(
            denoise(
                m, cond, strategy=strategy, num_steps=steps, generator=_gen(0), lengths=lengths, compact=compact, **kw
            )
        )

    return run


@contextlib.contextmanager
def keeping_library_settings():
    """Variants set sampling.HEAD_ROWS, kernels.ENABLED, kernels.FUSED_HEAD and kernels.OPENMP; put
    the library's values back however the block ends."""
    enabled, fused_head, openmp = kernels.ENABLED, kernels.FUSED_HEAD, kernels.OPENMP
    try:
        yield
    finally:
        sampling.HEAD_ROWS, kernels.ENABLED, kernels.FUSED_HEAD, kernels.OPENMP = HEAD_ROWS, enabled, fused_head, openmp


def use_variant(variant: str) -> None:
    """Set the library switches ``variant`` decodes with (inside ``keeping_library_settings``)."""
    _, _, head_rows, argmax, _, _, openmp, _ = VARIANTS[variant]
    sampling.HEAD_ROWS = head_rows or 1 << 30
    kernels.ENABLED, kernels.FUSED_HEAD, kernels.OPENMP = argmax != "torch", argmax == "fused", openmp


def variant_model(inv, variant: str):
    """The model ``variant`` decodes with: ``inv``'s fp32 model in its precision, fused and traced as it says."""
    from unembed.precision import for_inference

    precision, _, _, _, fuse, trace, _, row_scales = VARIANTS[variant]
    return for_inference(inv.model, precision, fuse=fuse, trace=trace, row_scales=row_scales)


def bench_model(args: argparse.Namespace) -> dict[str, Any]:
    """--model mode: every variant x strategy on real vectors, in one run."""
    from unembed.inverter import Inverter

    inv = Inverter.load(args.model, sample={"precision": "fp32"})
    steps = min(args.steps, inv.cfg.model.seq_len)
    texts = SENTENCES
    batch_texts = (SENTENCES * (args.batch // len(SENTENCES) + 1))[: args.batch]
    lines = []
    if args.texts:
        from pathlib import Path

        lines = [t for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if t.strip()]
        batch_texts = (lines * (args.batch // max(len(lines), 1) + 1))[: args.batch]
    one = [inv.check_vectors(v) for v in inv.encode(texts)]
    many = inv.check_vectors(inv.encode(batch_texts))
    info = machine()
    n, reps = (1024, 2) if args.quick else (2048, 3)
    precisions = sorted({VARIANTS[v][0] for v in args.variants})
    peaks_start = {p: matmul_peak_gflops(n, reps, p) for p in precisions}
    rows, bulk = [], []
    bulk_vectors = inv.encode(lines[: args.bulk]) if args.bulk else None
    with torch.inference_mode(), keeping_library_settings():
        for variant in args.variants:
            precision, compact, head_rows, argmax, fuse, trace, openmp, row_scales = VARIANTS[variant]
            use_variant(variant)
            model = variant_model(inv, variant)
            for strategy in args.strategies:
                lat, lat_flops, lat_runs = [], [], 0
                for cond in one:
                    fn = model_invert_fn(inv, model, strategy, steps, cond, compact)
                    counter = _FlopCounter(model)
                    fn(counter)
                    t, r = best_time(fn, args.repeats, warmup=1, budget_s=LATENCY_BUDGET_S / len(one))
                    lat.append(t)
                    lat_flops.append(counter.flops)
                    lat_runs += r
                fn = model_invert_fn(inv, model, strategy, steps, many, compact)
                counter = _FlopCounter(model)
                fn(counter)
                fn()  # warm-up
                (wall, batch_runs), adjacent = _between_peaks(
                    precision, n, reps, best_time, fn, args.repeats, warmup=0, budget_s=BATCH_BUDGET_S
                )
                mean_lat = sum(lat) / len(lat)
                rows.append(
                    {
                        "model": inv.name,
                        "variant": variant,
                        "precision": precision,
                        "compact": compact,
                        "head_rows": head_rows,
                        "argmax": argmax,
                        "fused_ada": fuse and precision == "int8",
                        "traced": trace and precision == "int8",
                        "openmp": openmp,
                        "row_scales": row_scales and precision == "int8",
                        "strategy": strategy,
                        "steps": steps,
                        "latency_ms": 1000 * mean_lat,
                        "latency_ms_each": [round(1000 * t, 2) for t in lat],
                        "latency_gflops": sum(lat_flops) / sum(lat) / 1e9,
                        "batch": args.batch,
                        "sentences_per_s": args.batch / wall,
                        "batch_gflops": counter.flops / wall / 1e9,
                        "batch_peak_adjacent_gflops": adjacent,
                        "batch_frac_peak_adjacent": counter.flops / wall / 1e9 / adjacent,
                        "batch_padding_share": counter.padding_share(),
                        "latency_runs": lat_runs,
                        "batch_runs": batch_runs,
                    }
                )
                print(
                    f"  {variant}/{strategy}: {1000 * mean_lat:.1f} ms, {args.batch / wall:.1f} sent/s", file=sys.stderr
                )
            if args.bulk:
                bulk.extend(bench_bulk(inv, model, variant, bulk_vectors, args, steps, n, reps))
    peaks_end = {p: matmul_peak_gflops(n, reps, p) for p in precisions}
    peaks = {p: max(peaks_start[p], peaks_end[p]) for p in precisions}
    first = {r["strategy"]: r for r in rows if r["variant"] == args.variants[0]}
    for r in rows:
        peak = peaks[r["precision"]]
        r["latency_frac_peak"] = r["latency_gflops"] / peak
        r["batch_frac_peak"] = r["batch_gflops"] / peak
        r["latency_speedup"] = first[r["strategy"]]["latency_ms"] / r["latency_ms"]
        r["batch_speedup"] = r["sentences_per_s"] / first[r["strategy"]]["sentences_per_s"]
    result = {
        "benchmark": "inference-model",
        "machine": {**info, "load_avg_1m_end": machine()["load_avg_1m"]},
        "matmul_n": n,
        "peak_gflops": peaks,
        "peak_gflops_start": peaks_start,
        "peak_gflops_end": peaks_end,
        "sentences_b1": texts,
        "argmax_kernel": kernels.status(),
        "int8_head_kernel": kernels.int8_head_isa(),
        "kernel_threads": kernels.threads(),
        "rows": rows,
        "bulk": bulk,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }
    print(
        f"matmul peaks ({n}^3, best of {reps}, start/end): "
        + ", ".join(f"{p} {peaks_start[p]:.0f}/{peaks_end[p]:.0f} GFLOP/s" for p in precisions)
        + f"; {result['machine']}"
    )
    print(markdown(rows, MODEL_COLUMNS))
    if bulk:
        print(markdown(bulk, BULK_COLUMNS))
    write_json(args.json, result)
    return result


def _between_peaks(precision: str, n: int, reps: int, fn, *args, **kwargs):
    """fn(*args, **kwargs) run between two measurements of the matmul peak of ``precision``: (its
    result, the higher of the two peaks). The host's speed moves within minutes, so a share of the
    peak means most against the peak of the same minutes."""
    before = matmul_peak_gflops(n, reps, precision)
    out = fn(*args, **kwargs)
    return out, max(before, matmul_peak_gflops(n, reps, precision))


def bench_bulk(inv, model, variant: str, vectors, args: argparse.Namespace, steps: int, n: int, reps: int):
    """--bulk: ``vectors`` (of the first --bulk lines of --texts) through Inverter.invert itself
    with ``model`` (the variant's copy, its switches set by the caller): rows in order of predicted
    length, batches of --batch, once per strategy, timed as one run between two measurements of
    the peak. The warm-up inverts 8 vectors, so the timed run also includes what the first
    batches of other shapes cost (the heap growing, TorchScript specialising its plans)."""
    precision, compact = VARIANTS[variant][:2]
    fp32, cfg, rows = inv.model, inv.cfg, []
    inv.cfg = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, compact=compact))
    try:
        for strategy in args.strategies:
            inv.model = model
            inv.invert(vectors[:8], strategy, steps)  # warm-up (and tracing)
            inv.model = counter = _FlopCounter(model)
            wall, peak = _between_peaks(
                precision, n, reps, _timed, inv.invert, vectors, strategy, steps, batch_size=args.batch
            )
            rows.append(
                {
                    "variant": variant,
                    "strategy": strategy,
                    "steps": steps,
                    "vectors": len(vectors),
                    "batch": args.batch,
                    "wall_s": wall,
                    "sentences_per_s": len(vectors) / wall,
                    "gflops": counter.flops / wall / 1e9,
                    "peak_adjacent_gflops": peak,
                    "frac_peak_adjacent": counter.flops / wall / 1e9 / peak,
                    "padding_share": counter.padding_share(),
                }
            )
            print(f"  bulk {variant}/{strategy}: {len(vectors) / wall:.1f} sent/s", file=sys.stderr)
    finally:
        inv.model, inv.cfg = fp32, cfg
    return rows


def _timed(fn, *args, **kwargs) -> float:
    """Wall seconds of one call of fn."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a Markdown table, optionally write JSON; returns the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        return bench_model(args)
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
