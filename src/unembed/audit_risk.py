"""An audit's risk scores and its summary: the per-record scores that need no reference text,
and the streaming tally of reconstructions.jsonl into the figures the report shows (rates with
intervals, risk bands, length bands, calibration, the personal data that came back)."""

from __future__ import annotations

import heapq
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import pii
from .audit_identify import length_bands
from .metrics import auc, bleu, bleu_interval, bootstrap_mean, share, spearman, wilson

log = logging.getLogger(__name__)

TOP_N = 20

RISK_QUANTILES = (
    (0.0, 0.5, "lowest 50%"),
    (0.5, 0.75, "50-75th percentile"),
    (0.75, 0.9, "75-90th percentile"),
    (0.9, 1.0, "top 10%"),
)

FEW = 10  # positives below which a rate or an AUC gets a warning

ACCURACY_LEVELS = (0.25, 0.5, 0.75, 1.0)

CALIBRATION_BINS = 10

SCATTER_MAX = 5000

# Candidate risk scores (every record carries all three; ``risk`` is RISK_SCORE's):
RISK_DEFINITIONS = {
    "confidence": "mean probability the decoder gave its committed tokens, over the predicted positions up to "
    "and including the first EOS",
    "cosine": "cosine between the reconstruction re-embedded by the model's encoder and the stored vector",
    "combined": "logistic combination of decoder confidence, re-embedding cosine and the log of the predicted "
    "length, calibrated as the probability that at least 25% of the record's tokens are recovered",
}

# Fitted by `python scripts/fit_risk.py runs/audit-val1000/reconstructions.jsonl` on an audit of the first
# 1,000 validation-split sentences (scripts/split_texts.py) by the shipped model minilm-default.
RISK_COEF = {"bias": -4.4253, "confidence": 7.456, "cosine": 7.569, "log_length": -2.5608}

RISK_SCORE = "combined"

RISK_DEFINITION = RISK_DEFINITIONS[RISK_SCORE]


def risk_scores(confidence: float, cos: float, length: int) -> dict[str, float]:
    """The candidate risk scores of one record (see RISK_DEFINITIONS), rounded to 4 decimals.

    ``length``: predicted positions up to and including the first EOS (at least 1)."""
    c = RISK_COEF
    z = c["bias"] + c["confidence"] * confidence + c["cosine"] * cos + c["log_length"] * math.log(length)
    combined = 1.0 / (1.0 + math.exp(-z))
    return {"confidence": round(confidence, 4), "cosine": round(cos, 4), "combined": round(combined, 4)}


@dataclass
class _Tally:
    """What the report needs, gathered in one pass over reconstructions.jsonl."""

    risk: list[float] = field(default_factory=list)
    candidates: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in RISK_DEFINITIONS})
    acc: list[float] = field(default_factory=list)
    sbleu: list[float] = field(default_factory=list)
    ref_tokens: list[int] = field(default_factory=list)
    cos: list[float] = field(default_factory=list)
    exact: int = 0
    recons: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    top: list = field(default_factory=list)  # heap of (risk, -order, record without per-token arrays)
    entity_hit: list[float] = field(default_factory=list)  # per record: 1/0 an item back (whole or part), NaN if none
    entity_full: list[float] = field(default_factory=list)  # per record: 1/0 an item back whole, NaN if none
    by_type: dict[str, list[int]] = field(default_factory=dict)  # type -> [found, full, partial]
    pii_top: list = field(default_factory=list)  # heap of (items back, token accuracy, -order, record)
    band: list[str] = field(default_factory=list)  # per record: its length band
    text_tokens: list[int] = field(default_factory=list)  # per record: tokens of its whole text
    band_items: dict[str, list[int]] = field(default_factory=dict)  # band -> [found, full, partial, beyond]
    # the chance level of "back": each record's items against the reconstruction of the record before it
    chance: dict[str, list[int]] = field(default_factory=dict)  # type -> [items, back whole or in part]
    prev_text: str | None = None


def _push(heap: list, item: tuple, n: int) -> None:
    if len(heap) < n:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)


def _tally(path: Path, has_ref: bool, top_n: int) -> _Tally:
    t = _Tally()
    with open(path, encoding="utf-8") as fh:
        for order, line in enumerate(fh):
            rec = json.loads(line)
            t.risk.append(rec["risk"])
            for k, v in t.candidates.items():
                v.append(rec[k if k != "confidence" else "decoder_confidence"])
            t.cos.append(rec["cosine"])
            small = {k: v for k, v in rec.items() if k not in ("tokens", "confidence")}
            _push(t.top, (rec["risk"], -order, small), top_n)
            if has_ref:
                t.acc.append(rec["token_accuracy"])
                t.sbleu.append(rec["bleu"])
                t.ref_tokens.append(rec["reference_tokens"])
                t.exact += bool(rec["exact"])
                t.recons.append(rec["text"])
                t.refs.append(rec["reference"])
                t.band.append(rec["length_band"])
                t.text_tokens.append(rec["text_tokens"])
            if "entities" in rec:
                _tally_entities(t, rec, small, order, top_n)
    return t


def _tally_entities(t: _Tally, rec: dict, small: dict, order: int, top_n: int) -> None:
    ents = rec["entities"]
    full, part = rec["entities_recovered"], rec["entities_partial"]
    t.entity_hit.append(float(full + part > 0) if ents else float("nan"))
    t.entity_full.append(float(full > 0) if ents else float("nan"))
    band = t.band_items.setdefault(rec["length_band"], [0, 0, 0, 0])
    band[0] += len(ents)
    band[1] += full
    band[2] += part
    band[3] += len(rec["entities_beyond"])
    for e in ents:
        counts = t.by_type.setdefault(e["type"], [0, 0, 0])
        counts[0] += 1
        counts[1] += e["degree"] == "full"
        counts[2] += e["degree"] == "partial"
        if t.prev_text is not None:
            chance = t.chance.setdefault(e["type"], [0, 0])
            chance[0] += 1
            chance[1] += pii.degree(e, t.prev_text) != "none"
    t.prev_text = rec["text"]
    if full + part:
        _push(t.pii_top, (full + 0.5 * part, rec["token_accuracy"], -order, small), top_n)


def summarise(path: Path, has_ref: bool, reach: int, top_n: int = TOP_N) -> dict[str, Any]:
    """Corpus-level numbers of a finished reconstructions.jsonl (streamed; per-token arrays dropped).

    Every rate comes with a 95% interval: Wilson for shares of records or items, a percentile
    bootstrap over records for means (token accuracy) and for corpus BLEU. ``reach``: the tokens
    the decoder can write (its sequence length less the EOS)."""
    t = _tally(path, has_ref, top_n)
    risk = np.asarray(t.risk)
    s: dict[str, Any] = {
        "n": len(risk),
        "risk_mean": float(risk.mean()),
        "risk_median": float(np.median(risk)),
        "most_exposed": [rec for _, _, rec in sorted(t.top, key=lambda x: (-x[0], -x[1]))],
        "cosine": float(np.mean(t.cos)),
    }
    acc = np.asarray(t.acc) if has_ref else None
    hit = np.asarray(t.entity_hit) if t.entity_hit else None
    s["risk_bands"] = risk_bands(risk, acc, hit)
    if has_ref:
        lens = np.asarray(t.ref_tokens)
        s.update(
            token_accuracy=float((acc * lens).sum() / lens.sum()),  # pooled over positions, as evaluate reports
            token_accuracy_mean=float(acc.mean()),
            token_accuracy_mean_ci=bootstrap_mean(acc),
            exact_match=t.exact / len(acc),
            exact_match_ci=wilson(t.exact, len(acc)),
            bleu=bleu(t.recons, t.refs),
            bleu_ci=bleu_interval(t.recons, t.refs),
            recovered_at_least={str(level): int((acc >= level - 1e-9).sum()) for level in ACCURACY_LEVELS},
            spearman_risk_vs_accuracy=spearman(risk, acc),
            spearman_risk_vs_bleu=spearman(risk, t.sbleu),
            calibration=calibration_bins(risk, acc, np.asarray(t.sbleu)),
            top_decile=top_decile(risk, acc, np.asarray(t.sbleu)),
            risk_candidates=_compare_scores(t, acc),
            lengths=_length_summary(t, acc, reach),
        )
        s["_scatter"] = (risk, acc)
    if t.entity_hit:
        s["entities"] = _entity_summary(t)
    s["_risk"] = risk
    return s


def risk_bands(risk: np.ndarray, acc: np.ndarray | None, hit: np.ndarray | None) -> list[dict[str, Any]]:
    """Records cut by the risk score's own quantiles (lowest half, 50-75th, 75-90th percentile, top
    10%), so that the bands spread the records whatever range the score takes on this store; per
    band its score range and, where measured, mean token accuracy and the share of records with
    personal data that gave an item back."""
    order = np.argsort(risk, kind="mergesort")
    n = len(order)
    out = []
    for lo_q, hi_q, label in RISK_QUANTILES:
        g = order[int(round(lo_q * n)) : int(round(hi_q * n))]
        if not len(g):
            continue
        band: dict[str, Any] = {"band": label, "n": len(g), "low": float(risk[g].min()), "high": float(risk[g].max())}
        if acc is not None:
            band["token_accuracy_mean"] = float(acc[g].mean())
        if hit is not None:
            h = hit[g][~np.isnan(hit[g])]
            band["leaking"] = share(int(h.sum()), len(h))
        out.append(band)
    return out


def _length_summary(t: _Tally, acc: np.ndarray, reach: int) -> dict[str, Any]:
    """Per length band: records, how many are longer than the decoder writes, the share of their
    text within its reach, token accuracy (bootstrap interval), records leaking personal data and
    items back (Wilson intervals), and items past the decoder's reach."""
    band, tokens = np.asarray(t.band), np.asarray(t.text_tokens)
    hit = np.asarray(t.entity_hit) if t.entity_hit else None
    rows = []
    for _, _, label in length_bands(reach):
        g = band == label
        if not g.any():
            continue
        row: dict[str, Any] = {
            "band": label,
            "records": int(g.sum()),
            "beyond_reach": int((tokens[g] > reach).sum()),
            "reachable_share": float(np.minimum(1.0, reach / np.maximum(tokens[g], 1)).mean()),
            "token_accuracy_mean": float(acc[g].mean()),
            "token_accuracy_mean_ci": bootstrap_mean(acc[g]),
        }
        if hit is not None:
            h = hit[g][~np.isnan(hit[g])]
            found, full, part, beyond = t.band_items.get(label, [0, 0, 0, 0])
            row.update(
                leaking=share(int(h.sum()), len(h)),
                items_full=share(full, found),
                items_any=share(full + part, found),
                items_beyond=beyond,
            )
        rows.append(row)
    return {"reach": reach, "beyond_reach": int((tokens > reach).sum()), "bands": rows}


def _compare_scores(t: _Tally, acc: np.ndarray) -> dict[str, dict[str, float]]:
    """Each candidate risk score against what was recovered: Spearman with token accuracy, AUC for
    "at least 25% of tokens recovered" and, over records with entities, for "an entity recovered"
    (whole or in part), with the number of positive records behind each AUC."""
    hit = np.asarray(t.entity_hit) if t.entity_hit else np.full(len(acc), np.nan)
    with_ents = ~np.isnan(hit)
    pos25 = acc >= 0.25 - 1e-9
    out = {}
    for name, values in t.candidates.items():
        v = np.asarray(values)
        out[name] = {
            "spearman_accuracy": spearman(v, acc),
            "auc_25": auc(v, pos25),
            "auc_entity": auc(v[with_ents], hit[with_ents] > 0) if with_ents.any() else float("nan"),
            "positives_25": int(pos25.sum()),
            "positives_entity": int((hit[with_ents] > 0).sum()),
        }
    return out


def _entity_summary(t: _Tally) -> dict[str, Any]:
    hit, full = np.asarray(t.entity_hit), np.asarray(t.entity_full)
    with_ents = ~np.isnan(hit)
    n = int(with_ents.sum())
    by_type = {}
    for k, (found, whole, part) in sorted(t.by_type.items(), key=lambda kv: (-kv[1][0], kv[0])):
        by_type[k] = {
            "found": found,
            "full": share(whole, found),
            "partial": share(part, found),
            "any": share(whole + part, found),
            "chance": share(*t.chance.get(k, [0, 0])[::-1]),
        }
    return {
        "records_with_entities": n,
        "records_with_recovered": share(int((full[with_ents] > 0).sum()), n),
        "records_leaking": share(int((hit[with_ents] > 0).sum()), n),
        "by_type": by_type,
        "most_exposed": [rec for *_, rec in sorted(t.pii_top, key=lambda x: (-x[0], -x[1], -x[2]))],
    }


def calibration_bins(
    risk: np.ndarray, acc: np.ndarray, sbleu: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Records sorted by risk, cut into ``bins`` groups of (nearly) equal size: mean risk, mean
    measured token accuracy, share with token accuracy >= 25% and mean sentence BLEU of each."""
    order = np.argsort(risk, kind="mergesort")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return [
        {
            "n": len(g),
            "risk": float(risk[g].mean()),
            "token_accuracy": float(acc[g].mean()),
            "share_25": float((acc[g] >= 0.25 - 1e-9).mean()),
            "bleu": float(sbleu[g].mean()),
        }
        for g in groups
    ]


def top_decile(risk: np.ndarray, acc: np.ndarray, sbleu: np.ndarray, level: float = 0.25) -> dict[str, float]:
    """Triage value of the risk score: the 10% of records with the highest risk (at least one) against
    all records: mean token accuracy, mean sentence BLEU, share with token accuracy >= ``level``."""
    top = np.argsort(-risk, kind="mergesort")[: max(1, len(risk) // 10)]
    return {
        "n": len(top),
        "level": level,
        "token_accuracy_mean": float(acc[top].mean()),
        "bleu_mean": float(sbleu[top].mean()),
        "share_at_level": float((acc[top] >= level - 1e-9).mean()),
        "all_token_accuracy_mean": float(acc.mean()),
        "all_bleu_mean": float(sbleu.mean()),
        "all_share_at_level": float((acc >= level - 1e-9).mean()),
    }
