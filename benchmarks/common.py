"""Shared pieces of the benchmarks: the machine's matmul peak, preset models, FLOP counts, tables.

FLOPs of one Denoiser forward pass over B sequences of L tokens (multiply-add = 2 FLOPs):

* per token, every block's matmuls: 2 * (qkv 3W^2 + proj W^2 + fc1 W*M + fc2 M*W) * B * L * layers
* per sequence, the condition path: 2 * (cond MLP D*W + W^2, time MLP 2W^2, AdaLN 6W^2 a block,
  final AdaLN 2W^2) * B
* attention: 4 * L^2 * W per layer and sequence (QK^T and AV)
* head: 2 * W * V per position that gets logits (all B * L at inference; masked ones in training)

Training counts 3x the forward FLOPs (forward + backward), with the head at masked positions only.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

# MiniLM's tokenizer (the default encoder): values a real model reads from the tokenizer.
MINILM = {"vocab_size": 30522, "cond_dim": 384, "mask_id": 103, "pad_id": 0, "eos_id": 102}
PRESETS = ("tiny", "small", "base")
# Benchmark sentences (written for this repository): the page's example and seven of everyday length.
SENTENCES = [
    "The weather is lovely today.",
    "The quick brown fox jumps over the lazy dog.",
    "My bank account number is stored in the customer database.",
    "The patient was prescribed antibiotics for a chest infection.",
    "We will meet at the train station at nine tomorrow morning.",
    "Embeddings leak information about the text they came from.",
    "Prices rose sharply after the central bank changed its policy.",
    "The committee will publish its report at the end of the month.",
]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1m": os.getloadavg()[0],
    }


def matmul_peak_gflops(n: int = 2048, repeats: int = 3, precision: str = "fp32") -> float:
    """Best GFLOP/s of an n x n x n matrix product over ``repeats`` runs (after one warm-up).

    ``precision``: fp32 or bf16 (torch.matmul in that dtype), or int8 (a dynamically quantised
    n x n linear on an n x n input, as the int8 decoder runs its layers).
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    if precision == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    if precision == "int8":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(n, n)), dtype=torch.qint8)

        def fn():
            with torch.inference_mode():
                return lin(a)
    else:

        def fn():
            return torch.matmul(a, b)

    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def preset_config(name: str, overrides: Sequence[str] = ()):
    """A preset's resolved Config with MiniLM's tokenizer and encoder values (random init, no files)."""
    from unembed.config import load_config, resolve_derived

    cfg = load_config(name, overrides=["model.init=random", *overrides])
    return resolve_derived(cfg, **MINILM)


def build_model(cfg, seed: int = 0):
    """A randomly initialised Denoiser of ``cfg.model``, in eval mode."""
    from unembed.model import Denoiser

    torch.manual_seed(seed)
    return Denoiser(cfg.model).eval()


def forward_flops(
    mcfg, batch: int, head_positions: float | None = None, seq_len: int | None = None
) -> dict[str, float]:
    """FLOPs of one forward pass over ``batch`` sequences (see the module docstring).

    ``head_positions`` is the number of positions given logits (default: all batch * seq_len);
    ``seq_len`` the positions a pass computes (default: the model's; fewer with compact passes).
    Returns the parts and their ``total``.
    """
    w, m, n_layers, v = mcfg.width, mcfg.mlp_dim, mcfg.n_layers, mcfg.vocab_size
    seq = mcfg.seq_len if seq_len is None else seq_len
    tokens = batch * seq
    per_token = 3 * w * w + w * w + w * m + m * w
    per_seq = mcfg.cond_dim * w + w * w + 2 * w * w + n_layers * 6 * w * w + 2 * w * w
    parts = {
        "matmul": 2.0 * per_token * tokens * n_layers + 2.0 * per_seq * batch,
        "attention": 4.0 * seq * seq * w * n_layers * batch,
        "head": 2.0 * w * v * (tokens if head_positions is None else head_positions),
    }
    parts["total"] = sum(parts.values())
    return parts


def best_time(fn: Callable[[], Any], repeats: int, warmup: int = 1, budget_s: float = 0.0) -> tuple[float, int]:
    """(fastest wall seconds, runs timed) of up to ``repeats`` calls of fn after ``warmup`` untimed ones.

    The fastest run is the least disturbed one on a shared machine. With ``budget_s`` > 0 timing
    stops early once the timed runs together took that long (at least one run is always timed).
    """
    for _ in range(warmup):
        fn()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < repeats and (runs == 0 or not budget_s or spent < budget_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best, runs


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table: columns are (key, header, format spec); a value of None prints as "-"."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r[k] is None else format(r[k], f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def split_list(value: str, known: Sequence[str], what: str) -> list[str]:
    """'a,b' or 'all' -> names, each checked against ``known``."""
    names = list(known) if value == "all" else [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in names if x not in known]
    if bad or not names:
        raise SystemExit(f"unknown {what}: {', '.join(bad) or value!r} (known: {', '.join(known)})")
    return names


def finish(
    benchmark: str,
    args,
    info: dict[str, Any],
    n: int,
    reps: int,
    peak_start: float,
    rows: list[dict[str, Any]],
    gflops_keys: dict[str, str],
    columns,
) -> dict[str, Any]:
    """Measure the peak again, add each row's share of the better peak, print the table, write JSON.

    ``gflops_keys`` maps a GFLOP/s key of a row to the key its peak share goes in.
    """
    peak_end = matmul_peak_gflops(n, reps)
    peak = max(peak_start, peak_end)
    for r in rows:  # fractions against the better of the two peak measurements
        for src, dst in gflops_keys.items():
            r[dst] = r[src] / peak
    result = {
        "benchmark": benchmark,
        "machine": {**info, "load_avg_1m_end": machine()["load_avg_1m"]},
        "matmul_n": n,
        "peak_gflops": peak,
        "peak_gflops_start": peak_start,
        "peak_gflops_end": peak_end,
        "rows": rows,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }
    print(
        f"fp32 matmul peak ({n}^3, best of {reps}): {peak:.1f} GFLOP/s "
        f"(start {peak_start:.1f}, end {peak_end:.1f}); {result['machine']}"
    )
    print(markdown(rows, columns))
    write_json(args.json, result)
    return result
