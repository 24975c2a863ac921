"""End-to-end evaluation: texts -> vectors -> inversion -> metrics, a report, a sweep and a plot.

Everything is end-to-end (the decoder starts from an all-mask sequence and sees only the vector),
except ``teacher_forced_masked_accuracy``, which is named as such: the model sees the reference
with a random share of positions masked (t drawn under its own schedule, as in training) and is
scored on those positions. Never compare the two.

The reference a reconstruction is scored against is what the decoder can write: the text through
the decoder tokenizer and back (so lower-cased for an uncased tokenizer, cut to L-1 tokens).

Costs are counted per sentence: ``forward_passes`` (decoder passes: num_steps, times K with
re-ranking) and ``encoder_calls`` (texts the attack itself embeds: 0 for the pure method, K with
``rerank=K``). Embedding the reconstruction only to *measure* cosine is not part of the attack and
is reported apart as ``measurement_encoder_calls`` (totals over the run).

Outputs (``out=report.json``): report.json, report.jsonl (one record per sentence) and, with
``sweep=True``, report.sweep.json, report.sweep.md and report.sweep.png beside it. A Markdown table
goes to stdout.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import files, kernels
from .files import read_lines
from .inverter import Inversion, Inverter
from .metrics import (
    DEFINITIONS,
    bleu,
    cosine,
    exact_match,
    exact_match_rate,
    masked_accuracy,
    mean_token_f1,
    percentiles,
    sentence_bleu,
    token_accuracy,
    token_accuracy_per_row,
    token_f1,
)
from .report import markdown_table, pyplot
from .sampling import STRATEGIES
from .schedule import Schedule
from .settings import Decoding

log = logging.getLogger(__name__)

SWEEP_STEPS = (1, 2, 4, 8, 16, 32)
RERANK_TEMPERATURE = 1.0
REPORT_KEYS = (
    "token_accuracy",
    "exact_match",
    "bleu",
    "token_f1",
    "cosine",
    "n",
    "strategy",
    "num_steps",
    "forward_passes",
    "encoder_calls",
    "latency_ms_p50",
    "latency_ms_p95",
    "sentences_per_s",
)
SWEEP_KEYS = (
    "strategy",
    "num_steps",
    "forward_passes",
    "encoder_calls",
    "token_accuracy",
    "exact_match",
    "bleu",
    "token_f1",
    "cosine",
    "sentences_per_s",
)


# ---- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """What is inverted: the input texts, their vectors [N, D] and where the vectors came from."""

    texts: list[str]
    vectors: np.ndarray
    vector_source: str  # "encoded" (by the model's encoder here) or "stored" (the prepared data's)
    description: str  # the file or data folder and split, for the report
    target_encoder_calls: int  # texts embedded to make the targets (setup, not an attack cost)
    rows: list[int] | None = None  # row indices in the prepared data (None for a text file)


def read_text_file(path: str | Path, limit: int | None = None) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped, the first ``limit`` of them."""
    lines = [ln.strip() for ln in read_lines(path, "texts file")]
    texts = [ln for ln in lines if ln]
    if not texts:
        raise ValueError(f"texts file {path} has no non-blank lines")
    return texts[:limit] if limit else texts


def _open_data(path: str | Path):
    """A PreparedData folder (made by ``unembed prepare``)."""
    if not Path(path).is_dir():
        raise ValueError(f"data folder not found: {path}")
    from .prepare import PreparedData

    return PreparedData(path)


def stored_vectors_match(manifest: dict[str, Any], inv: Inverter) -> tuple[bool, str]:
    """Whether a prepared folder's vectors came from this model's encoder, and why (not)."""
    enc = manifest.get("encoder", {}) or {}
    if enc.get("name") != inv.cfg.encoder.name:
        return False, f"data encoder {enc.get('name')!r} is not the model's {inv.cfg.encoder.name!r}"
    if enc.get("dim") not in (None, inv.dim):
        return False, f"data vectors have dimension {enc.get('dim')}, the model {inv.dim}"
    theirs = enc.get("weights_sha256") or enc.get("sha256") or ""
    ours = getattr(inv.encoder, "weights_sha256", "") or ""
    if theirs and ours and theirs != ours:
        return False, "the encoder weights' sha256 differs from the data's"
    pooling = enc.get("pooling")
    if pooling and getattr(inv.encoder, "pooling", pooling) != pooling:
        return False, f"data pooling {pooling!r} differs from the encoder's"
    return True, "same encoder name, dimension" + (" and weights sha256" if theirs and ours else "")


def load_targets(inv: Inverter, texts: str | None, data: str | None, split: str, limit: int | None) -> Targets:
    """Texts (a file, or a prepared split's first ``limit`` rows in row order) and their vectors."""
    if texts is not None:
        lines = read_text_file(texts, limit)
        before = _calls(inv)
        vectors = inv.encode(lines)
        return Targets(lines, vectors, "encoded", f"{texts} ({len(lines)} lines)", _calls(inv) - before)
    prepared = _open_data(data)
    rows = np.asarray(prepared.rows(split))
    if len(rows) == 0:
        raise ValueError(f"data {data} has no rows in split {split!r}")
    rows = rows[:limit] if limit else rows
    lines = list(prepared.texts(rows))
    ok, why = stored_vectors_match(prepared.manifest, inv)
    if ok and prepared.vectors is None:
        ok, why = False, "the folder holds no vectors"
    desc = f"{data} split {split} ({len(lines)} rows)"
    if ok:
        log.info("using the stored vectors of %s: %s", data, why)
        vectors = np.asarray(prepared.vectors[np.sort(rows)], dtype=np.float32)
        vectors = vectors[np.argsort(np.argsort(rows))]  # memmap reads in file order; restore row order
        return Targets(lines, vectors, "stored", desc, 0, rows.tolist())
    log.info("re-embedding the texts of %s: %s", data, why)
    before = _calls(inv)
    vectors = inv.encode(lines)
    return Targets(lines, vectors, "encoded", desc, _calls(inv) - before, rows.tolist())


def _calls(inv: Inverter) -> int:
    return int(getattr(inv.encoder, "calls", 0))


# ---- the attack being evaluated -------------------------------------------------------------------


class Attack:
    """One inversion method: plain decoding, or best-of-K candidates by encoder cosine (``rerank``).

    With ``rerank=K`` candidate 0 is the model's ordinary decode (seed ``seed``) and candidates
    1..K-1 sample every token at temperature 1.0 (seeds seed+1..seed+K-1); all K are embedded by the
    encoder and the one closest to the target vector is kept. ``__call__`` maps vectors [B, D] to
    B Inversions and does exactly ``forward_passes`` decoder passes and ``encoder_calls`` encoder
    calls per vector.
    """

    def __init__(self, inv: Inverter, strategy: str, num_steps: int, seed: int = 0, rerank: int = 0):
        if rerank < 0 or rerank == 1:
            raise ValueError(f"rerank must be 0 (off) or K >= 2 candidates, got {rerank}")
        self.inv, self.strategy, self.num_steps, self.seed, self.rerank = inv, strategy, num_steps, seed, rerank
        self.sampler = _with_temperature(inv, RERANK_TEMPERATURE) if rerank else None

    @property
    def forward_passes(self) -> int:
        return self.num_steps * max(self.rerank, 1)

    @property
    def encoder_calls(self) -> int:
        return self.rerank

    def __call__(self, vectors: np.ndarray, batch_size: int) -> list[Inversion]:
        first = self.inv.invert(vectors, self.strategy, self.num_steps, self.seed, batch_size)
        if not self.rerank:
            return first
        cands = [first] + [
            self.sampler.invert(vectors, self.strategy, self.num_steps, self.seed + j, batch_size)
            for j in range(1, self.rerank)
        ]
        flat = [c[i].text for i in range(len(first)) for c in cands]  # sentence-major: [B * K]
        emb = self.inv.encoder.encode(flat)
        sims = cosine(emb, np.repeat(np.asarray(vectors, np.float32), self.rerank, axis=0)).reshape(-1, self.rerank)
        best = sims.argmax(1)
        return [cands[k][i] for i, k in enumerate(best)]


def _with_temperature(inv: Inverter, temperature: float) -> Inverter:
    """A second Inverter on the same weights, tokenizer and encoder, sampling at ``temperature``."""
    cfg = replace(inv.cfg, sample=replace(inv.cfg.sample, temperature=temperature))
    return Inverter(cfg, inv.model, inv.tokenizer, name=inv.name, device=str(inv.device), encoder=inv.encoder)


def run_batched(
    attack: Attack, vectors: np.ndarray, batch_size: int, desc: str, progress: bool, on_batch=None
) -> tuple[list[Inversion], float]:
    """Invert all vectors in batches (with a progress bar); returns (inversions, wall seconds).
    ``on_batch(n)`` (optional) is told the number of vectors each batch inverted: a caller with
    a bar of its own across several runs passes its update and ``progress=False``."""
    out: list[Inversion] = []
    starts = range(0, len(vectors), batch_size)
    t0 = time.perf_counter()
    for i in tqdm(starts, desc=desc, unit="batch", disable=not progress or len(starts) < 2, file=sys.stderr):
        batch = attack(vectors[i : i + batch_size], batch_size)
        out.extend(batch)
        if on_batch is not None:
            on_batch(len(batch))
    return out, time.perf_counter() - t0


def measure_latency(attack: Attack, vectors: np.ndarray, sample: int, progress: bool) -> list[float]:
    """Milliseconds to invert each of the first ``sample`` vectors alone (batch 1), after one warm-up."""
    m = min(sample, len(vectors))
    attack(vectors[:1], 1)
    times = []
    for i in tqdm(range(m), desc="latency", unit="sent", disable=not progress, file=sys.stderr):
        t0 = time.perf_counter()
        attack(vectors[i : i + 1], 1)
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


# ---- scoring ---------------------------------------------------------------------------------------


def score(
    inv: Inverter, targets: Targets, ref_ids: np.ndarray, inversions: Sequence[Inversion]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Corpus metrics and one record per sentence; re-embeds every reconstruction once (measurement)."""
    tok, eos = inv.tokenizer, inv.cfg.model.eos_id
    refs = [tok.decode(r) for r in ref_ids]
    recons = [x.text for x in inversions]
    pred = np.array([x.ids for x in inversions])
    accs = token_accuracy_per_row(pred, ref_ids, eos)
    cos = cosine(inv.encoder.encode(recons), targets.vectors)
    bags = [(tok.content(p), tok.content(r)) for p, r in zip(pred, ref_ids, strict=True)]
    records = []
    for i, (text, ref, rec) in enumerate(zip(targets.texts, refs, recons, strict=True)):
        rec_f1 = token_f1(*bags[i])
        records.append(
            {
                "i": i,
                **({"row": targets.rows[i]} if targets.rows is not None else {}),
                "text": text,
                "reference": ref,
                "reconstruction": rec,
                "token_accuracy": float(accs[i]),
                "cosine": float(cos[i]),
                "bleu": sentence_bleu(rec, ref),
                "f1": rec_f1,
                "exact": exact_match(rec, ref),
            }
        )
    summary = {
        "token_accuracy": token_accuracy(pred, ref_ids, eos),
        "exact_match": exact_match_rate(recons, refs),
        "bleu": bleu(recons, refs),
        "token_f1": mean_token_f1(*zip(*bags, strict=True)) if bags else 0.0,
        "cosine": float(np.mean(cos)),
    }
    return summary, records


@torch.inference_mode()
def teacher_forced_accuracy(
    inv: Inverter, ref_ids: np.ndarray, vectors: np.ndarray, seed: int = 0, batch_size: int = 64
) -> dict[str, float]:
    """TEACHER-FORCED masked-token accuracy (not end-to-end): corrupt the reference at t ~ U(eps, 1]
    (antithetic) under the model's schedule, predict, score the masked positions.

    Returns the accuracy over all masked positions (as the training log reports it, padding
    included) and over masked positions up to and including the reference's EOS.
    """
    schedule, mc = Schedule.from_config(inv.cfg.schedule), inv.cfg.model
    gen = torch.Generator(device=inv.device).manual_seed(seed)
    preds, masks = [], []
    for i in range(0, len(ref_ids), batch_size):
        x0 = torch.from_numpy(np.asarray(ref_ids[i : i + batch_size], np.int64)).to(inv.device)
        cond = inv.check_vectors(vectors[i : i + batch_size])
        t = schedule.sample_t(x0.shape[0], gen, inv.device, uniform=True)
        xt, masked = schedule.corrupt(x0, t, mc.mask_id, gen)
        pred = x0.clone()  # only masked positions are scored; logits only where needed
        pred[masked] = inv.model.logits(inv.model(xt, t, cond)[masked]).argmax(-1)
        preds.append(pred.cpu().numpy())
        masks.append(masked.cpu().numpy())
    pred, masked = np.concatenate(preds), np.concatenate(masks)
    return {
        "teacher_forced_masked_accuracy": masked_accuracy(pred, ref_ids, masked),
        "teacher_forced_masked_accuracy_to_eos": masked_accuracy(pred, ref_ids, masked, mc.eos_id),
    }


def truncated_count(inv: Inverter, texts: Sequence[str]) -> int:
    """How many texts have more than L-1 decoder tokens (their reference is cut)."""
    return sum(inv.tokenizer.is_cut(texts))


# ---- one configuration -------------------------------------------------------------------------------


def evaluate_config(
    inv: Inverter, targets: Targets, ref_ids: np.ndarray, attack: Attack, batch_size: int, progress: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Batched inversion + scoring of one (strategy, steps, rerank); counts encoder calls by the counter."""
    before = _calls(inv)
    inversions, wall = run_batched(
        attack, targets.vectors, batch_size, f"{attack.strategy}/{attack.num_steps}", progress
    )
    attack_calls = _calls(inv) - before
    summary, records = score(inv, targets, ref_ids, inversions)
    n = len(targets.texts)
    row = {
        "strategy": attack.strategy,
        "num_steps": attack.num_steps,
        "forward_passes": attack.forward_passes,
        "encoder_calls": attack.encoder_calls,
        **summary,
        "sentences_per_s": n / max(wall, 1e-9),
        "encoder_calls_total": attack_calls,
        "measurement_encoder_calls": _calls(inv) - before - attack_calls,
    }
    return row, records


def sweep_steps(seq_len: int) -> list[int]:
    """SWEEP_STEPS capped at seq_len (duplicates dropped), ascending."""
    return sorted({min(s, seq_len) for s in SWEEP_STEPS})


def run_sweep(
    inv: Inverter, targets: Targets, ref_ids: np.ndarray, seed: int, rerank: int, batch_size: int, progress: bool
) -> list[dict[str, Any]]:
    """Every strategy x every sweep step count: one row of SWEEP_KEYS (plus call totals) each."""
    cells = [(s, k) for s in STRATEGIES for k in sweep_steps(inv.cfg.model.seq_len)]
    rows = []
    for strategy, steps in tqdm(cells, desc="sweep", unit="cell", disable=not progress, file=sys.stderr):
        row, _ = evaluate_config(
            inv, targets, ref_ids, Attack(inv, strategy, steps, seed, rerank), batch_size, progress=False
        )
        rows.append(row)
    return rows


# ---- the command ----------------------------------------------------------------------------------------


def _check_args(texts, data, limit, rerank) -> None:
    if (texts is None) == (data is None):
        raise ValueError("give exactly one of --texts FILE.txt or --data DIR")
    if limit is not None and limit <= 0:
        raise ValueError(f"--limit must be a positive number of texts, got {limit}")
    if rerank is None or rerank < 0 or rerank == 1:
        raise ValueError(f"--rerank must be 0 (off) or K >= 2 candidates, got {rerank}")


def run_evaluate(
    *,
    texts: str | None = None,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    out: str | None = None,
    sweep: bool = False,
    rerank: int = 0,
    decoding: Decoding = Decoding(),
    encoder=None,
    latency_sample: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``decoding.model`` end to end on a text file or a prepared split; returns the report.

    The report holds REPORT_KEYS plus context (model, data, vector source, costs, teacher-forced
    accuracy); with ``sweep`` it also holds ``sweep``, a list of SWEEP_KEYS rows. Writes files only
    when ``out`` is given; prints Markdown tables to stdout. ``encoder`` replaces the model's encoder
    (tests). Bad input raises ValueError with a one-line message.
    """
    _check_args(texts, data, limit, rerank)
    inv, d = decoding.load(encoder)
    strategy, num_steps, seed, batch_size = d.strategy, d.steps, d.seed, d.batch_size
    targets = load_targets(inv, texts, data, split, limit)
    ref_ids = inv.tokenizer.encode(targets.texts)
    attack = Attack(inv, strategy, num_steps, seed, rerank)

    row, records = evaluate_config(inv, targets, ref_ids, attack, batch_size, progress)
    lat = measure_latency(attack, targets.vectors, latency_sample, progress)
    p50, p95 = percentiles(lat)
    report = {
        **{k: row[k] for k in REPORT_KEYS if k in row},
        "n": len(targets.texts),
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "latency_sample": len(lat),
        "encoder_calls_total": row["encoder_calls_total"],
        "measurement_encoder_calls": row["measurement_encoder_calls"],
        "target_encoder_calls": targets.target_encoder_calls,
        **teacher_forced_accuracy(inv, ref_ids, targets.vectors, seed, batch_size),
        **_context(inv, targets, ref_ids, rerank, seed, batch_size),
    }
    report = {k: report[k] for k in REPORT_KEYS} | {k: v for k, v in report.items() if k not in REPORT_KEYS}
    tables = [markdown_report(report)]
    if sweep:
        report["sweep"] = run_sweep(inv, targets, ref_ids, seed, rerank, batch_size, progress)
        tables.append(markdown_sweep(report["sweep"]))
    if out:
        write_outputs(Path(out), report, records, tables)
    elif sweep:
        log.info("no --out given: the sweep plot is not written")
    sys.stdout.write("\n\n".join(tables) + "\n")
    return report


def _context(
    inv: Inverter, targets: Targets, ref_ids: np.ndarray, rerank: int, seed: int, batch_size: int
) -> dict[str, Any]:
    return {
        "model": inv.name,
        "encoder": inv.cfg.encoder.name,
        "seq_len": inv.cfg.model.seq_len,
        "length": inv.length_mode(),  # head: EOS fixed from the length head before the first pass
        "data": targets.description,
        "vectors": targets.vector_source,
        "reference_form": "text through the decoder tokenizer and back (cut to seq_len-1 tokens)",
        "n_truncated": truncated_count(inv, targets.texts),
        "mean_reference_tokens_with_eos": float(np.mean(inv.tokenizer.lengths(ref_ids))),
        "teacher_forced_note": "reference visible at unmasked positions, t ~ U(eps, 1] (antithetic) under the "
        "model's schedule; not end-to-end, do not compare with token_accuracy",
        "rerank": rerank,
        "rerank_temperature": RERANK_TEMPERATURE if rerank else None,
        "seed": seed,
        "batch_size": batch_size,
        "device": str(inv.device),
        "precision": getattr(inv.model, "precision", "fp32"),
        "argmax_kernel": kernels.status() if inv.device.type == "cpu" else "torch",
        "int8_head_kernel": getattr(inv.model, "fused_head", None) is not None and kernels.FUSED_HEAD,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],  # other work on the machine slows the timings
    }


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else the platform's description."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".strip()


# ---- output ---------------------------------------------------------------------------------------------


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        if key in ("token_accuracy", "exact_match", "token_f1") or key.startswith("teacher_forced"):
            return f"{100 * value:.1f}%"
        return f"{value:.3f}" if key == "cosine" else f"{value:.1f}"
    return str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """Two-column Markdown table of one report (metrics first, then costs and context)."""
    keys = [
        *REPORT_KEYS,
        "teacher_forced_masked_accuracy",
        "teacher_forced_masked_accuracy_to_eos",
        "encoder_calls_total",
        "measurement_encoder_calls",
        "target_encoder_calls",
        "model",
        "encoder",
        "data",
        "vectors",
        "n_truncated",
        "rerank",
        "device",
        "torch_threads",
    ]
    rows = [
        [
            k + (" (teacher-forced, not end-to-end)" if k.startswith("teacher_forced") else ""),
            _fmt(k, report[k]),
            DEFINITIONS.get(k, ""),
        ]
        for k in keys
        if k in report
    ]
    return markdown_table(["metric", "value", "what it counts"], rows)


def markdown_sweep(rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table row per (strategy, steps)."""
    head = [
        "strategy",
        "steps",
        "fwd passes",
        "enc calls",
        "token acc",
        "exact",
        "BLEU",
        "token F1",
        "cosine",
        "sent/s",
    ]
    return markdown_table(head, [[_fmt(k, r[k]) for k in SWEEP_KEYS] for r in rows])


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """PNG: token accuracy and cosine against decoder steps, one line per strategy."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "token_accuracy", "token accuracy"), (axes[1], "cosine", "cosine")):
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            pts = [(r["num_steps"], r[key]) for r in rows if r["strategy"] == strategy]
            ax.plot(*zip(*pts, strict=True), marker="o", label=strategy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("decoder steps (forward passes)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def output_paths(out: Path, sweep: bool) -> list[Path]:
    """Every file ``write_outputs`` writes for report ``out``: out, out.jsonl beside it, and with a
    sweep out.sweep.{json,md,png}. ValueError when ``out`` itself ends in .jsonl (the two would be
    one file)."""
    out = Path(out)
    if out.suffix == ".jsonl":
        raise ValueError(
            f"--out {out}: the report cannot end in .jsonl (its per-sentence records go to a .jsonl beside it)"
        )
    stem = out.with_suffix("")
    sweeps = [Path(f"{stem}.sweep.{ext}") for ext in ("json", "md", "png")] if sweep else []
    return [out, out.with_suffix(".jsonl"), *sweeps]


def write_outputs(out: Path, report: dict[str, Any], records: Sequence[dict[str, Any]], tables: list[str]) -> None:
    """The files of ``output_paths``: report.json, report.jsonl beside it, with a sweep report.sweep.*."""
    report_file, records_file, *sweep_files = output_paths(out, "sweep" in report)
    report_file.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(report_file, report)
    with files.atomic(records_file) as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    if sweep_files:
        json_file, md_file, png_file = sweep_files
        files.write_json(json_file, report["sweep"])
        files.write_text(md_file, tables[-1] + "\n")
        title = f"{report['model']} on {report['data']}, n={report['n']}"
        plot_sweep(report["sweep"], png_file, title)
    log.info("wrote %s and %s", report_file, records_file)
