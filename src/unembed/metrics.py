"""Metric definitions, written once and used by training, evaluation, the CLI and the server.

* token accuracy: share of reference positions (up to and including the first EOS) whose
  predicted id equals the reference id at the same position.
* exact match: decoded strings equal after whitespace normalisation.
* BLEU: sacrebleu corpus BLEU.  token F1: bag-of-tokens F1 (as vec2text reports it).
* cosine: the reconstruction re-embedded by the same encoder against the target vector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

# What each reported number means, in one sentence: printed under the CLI's figures and beside
# evaluate's table, and quoted by the README.
DEFINITIONS = {
    "token_accuracy": "share of the text's token positions (up to its end) where the reconstruction has the "
    "same token at the same position",
    "exact_match": "share of texts reconstructed exactly (whitespace aside)",
    "bleu": "corpus BLEU of the reconstructions against the texts (sacrebleu, 0-100)",
    "token_f1": "F1 of the reconstruction's tokens against the text's, order ignored",
    "cosine": "cosine between the reconstruction, embedded again by the encoder, and the target vector",
    "n": "texts inverted",
    "forward_passes": "decoder forward passes per text",
    "encoder_calls": "texts the attack itself embeds per text (0: the decoder alone; K with --rerank)",
    "encoder_calls_total": "encoder_calls over the whole run",
    "measurement_encoder_calls": "texts embedded only to measure the cosine, not part of the attack",
    "target_encoder_calls": "texts embedded to make the target vectors from the texts (setup, not the attack)",
    "latency_ms_p50": "milliseconds to invert one text, median",
    "latency_ms_p95": "milliseconds to invert one text, 95th percentile",
    "sentences_per_s": "texts inverted per second",
    "n_truncated": "texts longer than the decoder's length, measured on their first L-1 tokens",
}


def reference_lengths(ref: np.ndarray, eos_id: int) -> np.ndarray:
    """[B, L] -> [B]: positions up to and including the first EOS (all L when there is none)."""
    ref = np.asarray(ref)
    is_eos = ref == eos_id
    return np.where(is_eos.any(1), is_eos.argmax(1) + 1, ref.shape[1])


def token_accuracy_per_row(pred: np.ndarray, ref: np.ndarray, eos_id: int) -> np.ndarray:
    """[B] share of counted reference positions predicted exactly."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} differ in shape")
    length = reference_lengths(ref, eos_id)
    keep = np.arange(ref.shape[1])[None] < length[:, None]
    return ((pred == ref) & keep).sum(1) / length


def token_accuracy(pred: np.ndarray, ref: np.ndarray, eos_id: int) -> float:
    """Pooled over all counted positions of the batch."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    length = reference_lengths(ref, eos_id)
    keep = np.arange(ref.shape[1])[None] < length[:, None]
    return float(((pred == ref) & keep).sum() / keep.sum())


def normalise(text: str) -> str:
    return " ".join(text.split())


def exact_match(pred: str, ref: str) -> bool:
    return normalise(pred) == normalise(ref)


def token_f1(pred_tokens: Sequence, ref_tokens: Sequence) -> float:
    """Bag-of-tokens F1 between two token lists (1.0 when both are empty)."""
    if not pred_tokens and not ref_tokens:
        return 1.0
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * p * r / (p + r)


def bleu(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, default 13a tokenisation), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(preds), [list(refs)]).score)


def sentence_bleu(pred: str, ref: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(pred, [ref]).score)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of [B, D] arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-12)


def exact_match_rate(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Share of pairs whose strings are equal after whitespace normalisation (0.0 for no pairs)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not refs:
        return 0.0
    return sum(exact_match(p, r) for p, r in zip(preds, refs, strict=True)) / len(refs)


def mean_token_f1(pred_bags: Sequence[Sequence], ref_bags: Sequence[Sequence]) -> float:
    """token_f1 per sentence, averaged over sentences (0.0 for no sentences)."""
    if len(pred_bags) != len(ref_bags):
        raise ValueError(f"{len(pred_bags)} predictions but {len(ref_bags)} references")
    if not ref_bags:
        return 0.0
    return float(np.mean([token_f1(p, r) for p, r in zip(pred_bags, ref_bags, strict=True)]))


def masked_accuracy(pred: np.ndarray, ref: np.ndarray, masked: np.ndarray, eos_id: int | None = None) -> float:
    """Teacher-forced accuracy: share of masked positions where pred [B, L] equals ref [B, L].

    With ``eos_id`` only masked positions up to and including the reference's first EOS count
    (padding after the sentence is excluded). NaN when no position counts.
    """
    pred, ref, masked = np.asarray(pred), np.asarray(ref), np.asarray(masked, bool)
    if not pred.shape == ref.shape == masked.shape:
        raise ValueError(f"pred {pred.shape}, ref {ref.shape} and masked {masked.shape} differ in shape")
    keep = masked
    if eos_id is not None:
        keep = masked & (np.arange(ref.shape[1])[None] < reference_lengths(ref, eos_id)[:, None])
    n = int(keep.sum())
    return float(((pred == ref) & keep).sum() / n) if n else float("nan")


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> list[float]:
    """Linear-interpolated percentiles (numpy's default) of a non-empty sequence."""
    if len(values) == 0:
        raise ValueError("no values to take percentiles of")
    return [float(x) for x in np.percentile(np.asarray(values, np.float64), list(qs))]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% for z = 1.96) of a share k/n; (0, 1) when n is 0.

    centre = (p + z²/2n) / (1 + z²/n), half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def share(k: int, n: int) -> dict:
    """k of n with its 95% Wilson interval: ``{"k", "n", "share" (None when n is 0), "low", "high"}``."""
    lo, hi = wilson(k, n)
    return {"k": int(k), "n": int(n), "share": k / n if n else None, "low": lo, "high": hi}


BOOTSTRAP = 1000  # resamples behind every bootstrap interval


def bootstrap_mean(values: Sequence[float], n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (records resampled with
    replacement, ``seed`` fixed so a report gives the same interval twice); (nan, nan) when empty."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    for lo in range(0, n, 100):  # bounded memory: 100 resamples at a time
        k = min(100, n - lo)
        means[lo : lo + k] = v[rng.integers(0, len(v), (k, len(v)))].mean(1)
    a, b = np.percentile(means, [2.5, 97.5])
    return float(a), float(b)


def bleu_interval(preds: Sequence[str], refs: Sequence[str], n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of corpus BLEU over records: each record's n-gram counts
    are taken once (sacrebleu's statistics) and summed per resample."""
    from sacrebleu.metrics import BLEU

    if not preds:
        return float("nan"), float("nan")
    metric = BLEU()
    stats = np.asarray(metric._extract_corpus_statistics(list(preds), [list(refs)]), dtype=np.int64)
    rng = np.random.default_rng(seed)
    scores = np.empty(n)
    for i in range(n):
        pick = rng.integers(0, len(stats), len(stats))
        scores[i] = metric._compute_score_from_stats(list(stats[pick].sum(0))).score
    a, b = np.percentile(scores, [2.5, 97.5])
    return float(a), float(b)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a))
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def auc(score: Sequence[float], label: Sequence[bool]) -> float:
    """Area under the ROC curve of ``score`` for the positive ``label`` (Mann-Whitney, ties count half);
    NaN when either class is empty."""
    score, label = np.asarray(score, np.float64), np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(score) + 1
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
