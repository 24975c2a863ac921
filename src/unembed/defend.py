"""What defenses on stored vectors really buy: leakage to naive and adaptive attackers vs utility.

Defenses act on the clean unit vectors X [N, D] of a prepared data folder:

* ``noise:SIGMA``: X + N(0, SIGMA^2) per coordinate (the scale of ``train.cond_noise``);
* ``quantize:int8``: per-vector symmetric int8 codes round(127 x / max|x|) (the scale is dropped:
  the attacker casts the codes to float, which cosine does not mind);
* ``quantize:binary``: the sign of each coordinate (+1 / -1);
* ``truncate:DIMS``: the first DIMS coordinates, renormalised (Matryoshka-style);
* ``rotate``: X Q for a secret random orthogonal Q (QR of a Gaussian matrix, seeded).

**Leakage** of one attacker on one defense: the decoder inverts the vectors the attacker can build
from the defended ones; its output is scored against the true texts (as the decoder can write them)
by token accuracy (pooled), corpus BLEU and exact match (``metrics``). ``input_cosine`` is the mean
cosine between what the decoder is fed and the clean vectors (n/a when the dimension differs).

Attackers:

* naive: feeds the defended vectors to the model as they are (n/a for ``truncate``: a vector of
  another dimension cannot be fed to the model);
* adaptive, linear defenses (``rotate``, ``truncate``): fits a map from k leaked (clean, defended)
  pairs back to the clean space, an orthogonal Procrustes rotation for ``rotate`` and a ridge
  least-squares linear map (ridge strength chosen by leave-one-out on the leaked pairs) for
  ``truncate``, for each k in ``attack_k`` (capped at the pool size);
* adaptive, noise: a decoder trained on noisy vectors (``unembed train ... train.cond_noise=SIGMA``)
  given as ``noise_model``, reported beside the naive one on the same noisy vectors.

The leaked pairs must not be the records scored: with linear defenses the rows are split into the
first ``n - pool`` rows, which are scored for every defense and attacker, and the following
``pool = min(max(k), n // 2)`` rows, the attacker's leaked pairs. Without a linear defense all rows
are scored.

**The known-value attack** (``unembed.identify``) is measured beside each attacker: 200 synthetic
one-sentence records holding a full name go through the same defense and the same fitted map, and
``identified`` is the share whose name ranks first among a hard list of 1,000 names that the
attacker embeds with the clean encoder. It needs no decoder, so the noise-aware model adds nothing
to it.

**Utility**: nearest-neighbour recall@10 over all n rows: for each row, the share of its 10 nearest
neighbours by cosine among the clean vectors (itself excluded) that are also among its 10 nearest
neighbours among the defended vectors.

Outputs in OUT: ``defend.json`` (context and one row per defense x attacker [x k]), ``defend.md``
(the table) and ``privacy_utility.png`` (leakage vs recall@10, and leakage vs k).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import files
from .evaluate import Attack, load_targets, run_batched
from .inverter import Inverter
from .metrics import bleu, cosine, exact_match_rate, token_accuracy
from .report import markdown_table
from .settings import Decoding

log = logging.getLogger(__name__)

DEFAULT_K = (16, 64, 256, 1024)
RECALL_AT = 10
SPLITS = ("train", "validation", "test", "all")
KINDS = ("none", "noise", "quantize", "truncate", "rotate")
USAGE = "noise:SIGMA, quantize:int8, quantize:binary, truncate:DIMS or rotate"
QUERY_BLOCK = 1024
OUTPUT_FILES = ("defend.json", "defend.md", "privacy_utility.png")
PROBE_N = 200  # known-value probe: synthetic records, and the size of the list their names hide in
PROBE_LIST = 1000
RIDGE_GRID = (0.0, *(10.0**e for e in range(-8, 2)))  # ridge lam / largest squared singular value


# ---- defenses ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defense:
    """A parsed defense spec. ``apply`` maps clean unit vectors [N, D] to defended float32 [N, D']."""

    spec: str
    kind: str
    param: float | int | str | None = None

    @property
    def linear(self) -> bool:
        """Whether the adaptive attacker fits a linear map for it."""
        return self.kind in ("rotate", "truncate")

    @property
    def map_name(self) -> str:
        return {"rotate": "procrustes", "truncate": "ridge least squares"}.get(self.kind, "")

    def apply(self, x: np.ndarray, seed: int) -> np.ndarray:
        """The defended vectors; the same ``seed`` gives the same noise draw and the same secret Q."""
        x = np.asarray(x, np.float32)
        rng = np.random.default_rng((seed, KINDS.index(self.kind)))
        if self.kind == "none":
            return x.copy()
        if self.kind == "noise":
            return (x + self.param * rng.standard_normal(x.shape)).astype(np.float32)
        if self.kind == "quantize" and self.param == "int8":
            scale = np.maximum(np.abs(x).max(1, keepdims=True), 1e-12)
            return np.clip(np.round(127 * x / scale), -127, 127).astype(np.int8).astype(np.float32)
        if self.kind == "quantize":
            return np.where(x > 0, 1.0, -1.0).astype(np.float32)
        if self.kind == "truncate":
            t = x[:, : self.param]
            return (t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        return (x @ secret_rotation(x.shape[1], rng)).astype(np.float32)


def secret_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal [dim, dim] matrix, Haar-distributed (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def parse_defense(spec: str, dim: int) -> Defense:
    """'noise:0.01' -> Defense; ValueError naming the spec for anything else than USAGE allows."""
    kind, _, arg = spec.partition(":")
    bad = ValueError(f"bad defense {spec!r}: use {USAGE}")
    if kind == "noise":
        try:
            sigma = float(arg)
        except ValueError:
            raise bad from None
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"bad defense {spec!r}: SIGMA must be a positive number")
        return Defense(spec, "noise", sigma)
    if kind == "quantize" and arg in ("int8", "binary"):
        return Defense(spec, "quantize", arg)
    if kind == "truncate":
        if not arg.isdigit() or not 1 <= int(arg) < dim:
            raise ValueError(f"bad defense {spec!r}: DIMS must be an integer from 1 to {dim - 1}")
        return Defense(spec, "truncate", int(arg))
    if spec == "rotate":
        return Defense(spec, "rotate")
    raise bad


# ---- adaptive maps and utility ------------------------------------------------------------------------


def fit_procrustes(defended: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The orthogonal R [D, D] minimising ||defended R - clean||_F (SVD of defended^T clean)."""
    u, _, vt = np.linalg.svd(np.asarray(defended, np.float64).T @ np.asarray(clean, np.float64))
    return u @ vt


def fit_least_squares(defended: np.ndarray, clean: np.ndarray, grid: Sequence[float] = RIDGE_GRID) -> np.ndarray:
    """Ridge least squares W [D', D] minimising ||defended W - clean||^2 + lam ||W||^2.

    lam is picked from ``grid`` (times the largest squared singular value of ``defended``) by exact
    leave-one-out error over the leaked pairs, as an attacker with only those pairs would: plain
    least squares overfits badly when k is near D' and the vectors are alike, as sentence vectors are.
    """
    d, c = np.asarray(defended, np.float64), np.asarray(clean, np.float64)
    u, sv, vt = np.linalg.svd(d, full_matrices=False)
    utc = u.T @ c
    best = (np.inf, 0.0)
    for lam in np.asarray(grid) * sv[0] ** 2:
        shrink = sv**2 / (sv**2 + lam)
        fitted = u @ (shrink[:, None] * utc)
        leverage = (u**2) @ shrink
        if leverage.max() > 1 - 1e-9:  # a pair fitted exactly: leave-one-out is undefined there
            continue
        loo = float((((c - fitted) / (1 - leverage)[:, None]) ** 2).sum())
        best = min(best, (loo, lam))
    lam = best[1]
    return vt.T @ ((sv / (sv**2 + lam))[:, None] * utc)


def fit_map(defense: Defense, defended: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The adaptive attacker's map for a linear defense, fitted on leaked pairs [k, D'] -> [k, D]."""
    fit = fit_procrustes if defense.kind == "rotate" else fit_least_squares
    return fit(defended, clean)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of each row's k nearest rows by cosine, itself excluded (unordered)."""
    x = _unit(x)
    out = np.empty((len(x), k), np.int64)
    for i in range(0, len(x), QUERY_BLOCK):
        sims = x[i : i + QUERY_BLOCK] @ x.T
        rows = np.arange(i, i + len(sims))
        sims[rows - i, rows] = -np.inf
        out[i : i + len(sims)] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def recall_at_k(clean: np.ndarray, defended: np.ndarray, k: int = RECALL_AT) -> float:
    """Mean share of each row's k clean nearest neighbours that are among its k defended ones."""
    k = min(k, len(clean) - 1)
    if k < 1:
        raise ValueError("recall needs at least 2 vectors")
    a, b = _neighbours(clean, k), _neighbours(defended, k)
    hits = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(a, b, strict=True)]
    return float(np.mean(hits) / k)


# ---- leakage -----------------------------------------------------------------------------------------------


@dataclass
class Scorer:
    """Inverts vectors with a model and scores them against the scored rows' true texts."""

    ref_ids: np.ndarray  # [n_eval, L]
    refs: list[str]  # the references as the decoder can write them
    clean: np.ndarray  # [n_eval, D] clean unit vectors
    strategy: str
    num_steps: int
    seed: int
    batch_size: int
    bar: Any  # one tqdm bar across every inversion of the run (disabled without progress)

    def leakage(self, inv: Inverter, vectors: np.ndarray, desc: str) -> dict[str, float]:
        """token_accuracy, bleu, exact_match of inverting ``vectors`` [n_eval, D], plus input_cosine."""
        attack = Attack(inv, self.strategy, self.num_steps, self.seed)
        self.bar.set_description(f"defend: {desc}")
        inversions, _ = run_batched(attack, vectors, self.batch_size, desc, False, self.bar.update)
        pred = np.array([x.ids for x in inversions])
        recons = [x.text for x in inversions]
        return {
            "token_accuracy": token_accuracy(pred, self.ref_ids, inv.cfg.model.eos_id),
            "bleu": bleu(recons, self.refs),
            "exact_match": exact_match_rate(recons, self.refs),
            "input_cosine": float(np.mean(cosine(vectors, self.clean))),
        }


class KnownValueProbe:
    """The known-value attack on each defense: PROBE_N one-sentence synthetic records holding a full
    name (``unembed.records``, test templates), each name to be singled out among a hard list of
    PROBE_LIST names embedded by the clean encoder (the attacker embeds candidates itself). The
    records' clean vectors go through the same defense and the same fitted map as the scored rows."""

    def __init__(self, inv: Inverter, seed: int):
        from . import records
        from .identify import Scorer as IdScorer

        names = records.values("person", PROBE_N, seed=seed + 11)
        recs = records.make_records("person", names, "test", seed=seed + 12)
        pool = records.candidate_pool("person", names, PROBE_LIST, seed=seed + 13)
        self.clean = _unit(inv.encode([r.text for r in recs]))
        self.cand = inv.encode(pool)
        self.truth = np.array([pool.index(n) for n in names])
        self.scorer = IdScorer.load(inv.folder) if inv.folder else IdScorer.cosine()

    def identified(self, vectors: np.ndarray) -> float:
        """Share of the probe records whose name ranks first, given what the attacker can build."""
        from .identify import rank

        ranked = rank(np.asarray(vectors, np.float32), self.cand, self.scorer, 1)
        return float(np.mean([r.index[0] == t for r, t in zip(ranked, self.truth)]))


def _row(
    defense: str,
    attacker: str,
    recall: float,
    k: int | None = None,
    leak: dict | None = None,
    note: str = "",
    identified: float | None = None,
) -> dict[str, Any]:
    leak = leak or {}
    keys = ("token_accuracy", "bleu", "exact_match", "input_cosine")
    return {
        "defense": defense,
        "attacker": attacker,
        "k": k,
        **{key: leak.get(key) for key in keys},
        "identified": identified,
        f"recall@{RECALL_AT}": recall,
        "note": note,
    }


def _inversion_runs(
    parsed: list[Defense], dim: int, clean: np.ndarray, ks: list[int], noise_inv: Inverter | None, seed: int
) -> int:
    """How many times run_defend inverts the scored rows (the progress bar's total, in runs):
    the baseline, then per defense the naive attack where the dimension fits, a fitted map per k
    for linear defenses, and the noise-aware model for noise."""
    runs = 1
    for d in parsed:
        runs += int(d.apply(clean[:1], seed).shape[1] == dim)
        runs += len(ks) if d.linear else 0
        runs += int(d.kind == "noise" and noise_inv is not None)
    return runs


def attack_defense(
    d: Defense,
    inv: Inverter,
    scorer: Scorer,
    clean_all: np.ndarray,
    n_eval: int,
    ks: list[int],
    seed: int,
    noise_inv: Inverter | None,
    probe: KnownValueProbe,
) -> list[dict[str, Any]]:
    """Every attacker's row for one defense: naive, then the adaptive ones."""
    defended = d.apply(clean_all, seed)
    probed = d.apply(probe.clean, seed)
    recall = recall_at_k(clean_all, defended)
    test, pool = defended[:n_eval], defended[n_eval:]
    rows = []
    if defended.shape[1] == inv.dim:
        leak = scorer.leakage(inv, test, f"{d.spec} naive")
        rows.append(_row(d.spec, "naive", recall, leak=leak, identified=probe.identified(probed)))
    else:
        rows.append(
            _row(
                d.spec,
                "naive",
                recall,
                note=f"n/a: dimension {defended.shape[1]} cannot be fed to a {inv.dim}-d model; see the fitted map",
            )
        )
    if d.linear:
        for k in ks:
            w = fit_map(d, pool[:k], clean_all[n_eval : n_eval + k])
            leak = scorer.leakage(inv, (test @ w).astype(np.float32), f"{d.spec} {d.map_name} k={k}")
            found = probe.identified(probed @ w)
            rows.append(_row(d.spec, d.map_name, recall, k, leak, f"map fitted on {k} leaked pairs", found))
    if d.kind == "noise":
        if noise_inv is None:
            rows[0]["note"] = "no noise-aware model given (unembed train ... train.cond_noise=SIGMA)"
        else:
            sigma = noise_inv.cfg.train.cond_noise
            leak = scorer.leakage(noise_inv, test, f"{d.spec} noise-aware")
            rows.append(
                _row(
                    d.spec,
                    "noise-aware model",
                    recall,
                    leak=leak,
                    note=f"{noise_inv.name}, trained with cond_noise={sigma:g}; the known-value attack needs no "
                    "decoder (same as naive)",
                    identified=rows[0]["identified"],
                )
            )
    return rows


# ---- the command --------------------------------------------------------------------------------------------


def _attack_sizes(attack_k: Sequence[int] | None, pool: int) -> list[int]:
    ks = list(DEFAULT_K if attack_k is None else attack_k)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"--attack-k values must be positive integers, got {ks}")
    return sorted({min(k, pool) for k in ks})


def _load_noise_model(
    noise_model: str | None, inv: Inverter, defenses: list[Defense], decoding: Decoding, encoder
) -> Inverter | None:
    if noise_model is None:
        return None
    if not any(d.kind == "noise" for d in defenses):
        raise ValueError("--noise-model given but no noise:SIGMA defense to attack with it")
    enc = encoder if encoder is not None else inv.encoder
    noisy, _ = replace(decoding, model=noise_model).load(enc)
    if (noisy.cfg.encoder.name, noisy.dim) != (inv.cfg.encoder.name, inv.dim):
        raise ValueError(
            f"noise model {noisy.name} is for encoder {noisy.cfg.encoder.name!r} ({noisy.dim}-d), "
            f"the model for {inv.cfg.encoder.name!r} ({inv.dim}-d)"
        )
    if noisy.cfg.train.cond_noise <= 0:
        log.warning("noise model %s was trained without train.cond_noise: it is not noise-aware", noisy.name)
    return noisy


def run_defend(
    data: str,
    defenses: list[str],
    *,
    out: str = "defend",
    split: str = "test",
    limit: int | None = None,
    attack_k: list[int] | None = None,
    noise_model: str | None = None,
    decoding: Decoding = Decoding(),
    encoder=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure each defense's leakage (naive and adaptive attackers) and utility on the first
    ``limit`` rows of ``split`` ('all' for every row) of a prepared folder; writes defend.json,
    defend.md and privacy_utility.png into ``out`` and returns the defend.json dict.

    A row 'none' (clean vectors) comes first as the baseline. ``decoding`` applies to both models
    (``decoding.model`` and ``noise_model``); ``encoder`` replaces their encoder (tests). Bad input
    raises ValueError with a one-line message before any inversion.
    """
    if not defenses:
        raise ValueError(f"give at least one --defense ({USAGE})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of rows, got {limit}")
    inv, d = decoding.load(encoder)
    strategy, num_steps, seed, batch_size = d.strategy, d.steps, d.seed, d.batch_size
    parsed = [parse_defense(s, inv.dim) for s in dict.fromkeys(defenses)]
    _attack_sizes(attack_k, 1)  # bad values fail before any work
    noise_inv = _load_noise_model(noise_model, inv, parsed, d, encoder)
    targets = load_targets(inv, None, data, None if split == "all" else split, limit)
    n = len(targets.texts)
    description = f"{data} split {split} ({n} rows, {targets.vector_source} vectors)"
    if n < 4:
        raise ValueError(f"need at least 4 rows to score defenses, {data} gives {n}")
    pool = min(max(_attack_sizes(attack_k, n)), n // 2) if any(d.linear for d in parsed) else 0
    ks = _attack_sizes(attack_k, pool) if pool else []
    n_eval = n - pool
    clean = _unit(targets.vectors)
    ref_ids = inv.tokenizer.encode(targets.texts[:n_eval])
    total = n_eval * _inversion_runs(parsed, inv.dim, clean, ks, noise_inv, seed)
    bar = tqdm(total=total, desc="defend", unit="vec", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    scorer = Scorer(
        ref_ids, inv.tokenizer.decode_batch(ref_ids), clean[:n_eval], strategy, num_steps, seed, batch_size, bar
    )
    probe = KnownValueProbe(inv, seed)
    with bar:
        leak = scorer.leakage(inv, clean[:n_eval], "no defense")
        rows = [_row("none", "naive", 1.0, leak=leak, note="baseline", identified=probe.identified(probe.clean))]
        for d in parsed:
            rows += attack_defense(d, inv, scorer, clean, n_eval, ks, seed, noise_inv, probe)
    result = {
        "model": inv.name,
        "encoder": inv.cfg.encoder.name,
        "noise_model": noise_inv.name if noise_inv else None,
        "data": description,
        "n": n,
        "n_scored": n_eval,
        "n_leak_pool": pool,
        "attack_k": ks,
        "strategy": strategy,
        "num_steps": num_steps,
        "seed": seed,
        "recall_at": RECALL_AT,
        "known_value_probe": f"{PROBE_N} synthetic one-sentence records, each name among {PROBE_LIST} (hard list)",
        "rows": rows,
    }
    write_outputs(Path(out), result)
    return result


# ---- output -----------------------------------------------------------------------------------------------------


def _cell(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}" if abs(v) <= 1 else f"{v:.1f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    """The privacy–utility table: one row per defense x attacker (x k)."""
    head = [
        "defense",
        "attacker",
        "k",
        "token acc",
        "BLEU",
        "exact",
        "input cos",
        "names identified",
        f"recall@{RECALL_AT}",
        "note",
    ]
    rows = [
        [
            r["defense"],
            r["attacker"],
            _cell(r["k"]) if r["k"] else "",
            _cell(r["token_accuracy"], True),
            "n/a" if r["bleu"] is None else f"{r['bleu']:.1f}",
            _cell(r["exact_match"], True),
            _cell(r["input_cosine"]),
            _cell(r.get("identified"), True),
            _cell(r[f"recall@{RECALL_AT}"]),
            r["note"],
        ]
        for r in result["rows"]
    ]
    intro = (
        f"Model `{result['model']}` on {result['data']}: leakage scored on the first {result['n_scored']} rows"
        + (f", adaptive maps fitted on k of the other {result['n_leak_pool']}" if result["n_leak_pool"] else "")
        + f"; recall@{RECALL_AT} over all {result['n']} rows. Strategy {result['strategy']}, "
        f"{result['num_steps']} steps, seed {result['seed']}. Names identified: the known-value attack "
        f"(`unembed identify`) on {result['known_value_probe']}, through the same defense and map."
    )
    return intro + "\n\n" + markdown_table(head, rows) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """PNG: leakage vs recall@10 per defense (naive o, strongest adaptive ^), and leakage vs k."""
    from .report import pyplot

    plt = pyplot()
    rows, key = result["rows"], f"recall@{RECALL_AT}"
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, spec in enumerate(dict.fromkeys(r["defense"] for r in rows)):
        mine = [r for r in rows if r["defense"] == spec and r["token_accuracy"] is not None]
        naive = [r for r in mine if r["attacker"] == "naive"]
        adaptive = max((r for r in mine if r["attacker"] != "naive"), key=lambda r: r["token_accuracy"], default=None)
        c = colours[i % len(colours)]
        pts = naive + ([adaptive] if adaptive else [])
        ax.plot([r[key] for r in pts], [r["token_accuracy"] for r in pts], "-", color=c, alpha=0.5)
        for r, m in [(r, "o") for r in naive] + ([(adaptive, "^")] if adaptive else []):
            ax.plot(r[key], r["token_accuracy"], m, color=c, markersize=8, label=f"{spec} ({r['attacker']})")
        ks = [r for r in mine if r["k"]]
        if ks:
            bx.plot([r["k"] for r in ks], [r["token_accuracy"] for r in ks], "^-", color=c, label=spec)
            for r in naive:
                bx.axhline(r["token_accuracy"], color=c, linestyle=":", alpha=0.7)
    base = rows[0]["token_accuracy"]
    for a in (ax, bx):
        a.axhline(base, color="#888888", linestyle="--", linewidth=1)
        a.set_ylabel("leakage: token accuracy")
        a.grid(alpha=0.3)
    ax.set_xlabel(f"utility: nearest-neighbour recall@{RECALL_AT}")
    ax.set_title("privacy–utility (o naive, ^ strongest adaptive; -- no defense)")
    ax.legend(fontsize=7, loc="best")
    bx.set_xscale("log", base=2)
    bx.set_xlabel("leaked (clean, defended) pairs k")
    bx.set_title("adaptive attack on linear defenses (: naive)")
    if bx.get_legend_handles_labels()[0]:
        bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    """OUTPUT_FILES (defend.json, defend.md and privacy_utility.png) in ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    json_file, md_file, png_file = (out / name for name in OUTPUT_FILES)
    files.write_json(json_file, result)
    files.write_text(md_file, markdown(result))
    plot(result, png_file)
    log.info("wrote %s", out / "defend.md")
