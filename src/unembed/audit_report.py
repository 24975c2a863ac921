"""An audit's report: `audit_risk.summarise`'s figures as sections (`report.Section`), written as
report.md, report.html and summary.json with the recovery and calibration plots."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .audit_risk import FEW, RISK_DEFINITIONS, SCATTER_MAX
from .metrics import share
from .report import Code, Section, pyplot, render_html, render_markdown

log = logging.getLogger(__name__)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _selection(s: dict[str, Any]) -> str:
    """Which records the figures come from: all, the first N, or a uniform random sample."""
    sel = s.get("selection") or {"how": "all", "n": s["n"], "of": s["n"]}
    of = f"{sel['of']:,}" if sel.get("of") is not None else "an unknown number of"
    if sel["how"] == "sample":
        return (
            f"**Estimated from a uniform random sample of {sel['n']:,} of {of} records (seed {sel['seed']})**: "
            "every rate below is an estimate for the whole store, with its 95% interval."
        )
    if sel["how"] == "first":
        return (
            f"**The first {sel['n']:,} of {of} records** (`--limit`): the figures describe these records, "
            "not the store (a store's first records are often its oldest, or one tenant's); use `--sample N` "
            "for an estimate of the whole store."
        )
    return f"All {sel['n']:,} records of the store."


def _engine(s: dict[str, Any]) -> str:
    e = s.get("engine") or {"engine": "one process", "workers": 1, "device": "cpu"}
    if e["engine"] == "one process":
        return f"Inverted in one process on `{e['device']}`."
    where = "a Ray instance on this machine" if e["address"] == "local" else "a Ray cluster"
    return (
        f"Inverted on {where} ({e['engine']}) by {e['workers']} workers on `{e['device']}`, "
        f"{e['threads_per_worker']} thread(s) each; the output is the same as one process's."
    )


def _ci_range(ci: Sequence[float], fmt=_pct) -> str:
    return f"{fmt(ci[0])}–{fmt(ci[1])}"


def build_sections(s: dict[str, Any]) -> list[Section]:
    """The report's sections from a summary (see ``summarise``)."""
    n = s["n"]
    overview = [
        _selection(s),
        f"Model `{s['model']}` (encoder `{s['encoder']}`), strategy `{s['strategy']}`, {s['num_steps']} steps, "
        f"seed {s['seed']}. Vectors: `{s['vectors']}` ({n} records audited). Reference texts: "
        + (f"`{s['texts']}`." if s["texts"] else "none (only the risk score is available)."),
        f"Risk score (`{s['risk_score']}`): {s['risk_definition']}. Mean {s['risk_mean']:.3f}, "
        f"median {s['risk_median']:.3f}.",
        _engine(s),
    ]
    if ("identified" in s and s["identified"]["records_with_items"]) or s.get("entities", {}).get(
        "records_with_entities"
    ):
        overview.insert(0, _headline(s))
    sections = [Section("Overview", overview), _attacker_section(s)]
    if "token_accuracy" in s:
        bleu_ci = _ci_range(s["bleu_ci"], lambda x: f"{x:.1f}")
        rows = [
            ["token accuracy (pooled over reference tokens)", _pct(s["token_accuracy"]), "–"],
            [
                "token accuracy (mean per record)",
                _pct(s["token_accuracy_mean"]),
                _ci_range(s["token_accuracy_mean_ci"]),
            ],
            ["exact match", _pct(s["exact_match"]), _ci_range(s["exact_match_ci"])],
            ["BLEU", f"{s['bleu']:.1f}", bleu_ci],
            ["cosine (reconstruction re-embedded vs stored vector)", f"{s['cosine']:.3f}", "–"],
        ]
        sections.append(
            Section(
                "Measured leakage",
                [
                    "Measured against the reference texts as the decoder can write them (its tokenizer, cut to "
                    "its length). Intervals: 95%, a bootstrap over records for means and BLEU, Wilson for shares."
                ],
                table=(["metric", "value", "95% interval"], rows),
            )
        )
    if "lengths" in s:
        sections.append(_length_section(s))
    sections.append(_risk_bands_section(s))
    if "entities" in s:
        sections.append(_entities_section(s))
        if s["entities"]["most_exposed"]:
            sections.append(_pii_exposed_section(s))
    if "identified" in s:
        sections += _identified_sections(s)
    sections.append(_exposed_section(s))
    if "calibration" in s:
        sections.append(_calibration_section(s))
        sections.append(_candidates_section(s))
    return sections


def _risk_bands_section(s: dict[str, Any]) -> Section:
    head = ["band of the risk score", "score range", "records"]
    has_acc = any("token_accuracy_mean" in b for b in s["risk_bands"])
    has_hit = any("leaking" in b for b in s["risk_bands"])
    head += ["mean token accuracy"] * has_acc + ["records with personal data giving an item back"] * has_hit
    rows = []
    for b in s["risk_bands"]:
        row = [b["band"], f"{b['low']:.3f}–{b['high']:.3f}", b["n"]]
        if has_acc:
            row.append(_pct(b["token_accuracy_mean"]))
        if has_hit:
            row.append(_ci(b["leaking"]))
        rows.append(row)
    paras = [
        f"Records cut by the quantiles of the risk score (`{s['risk_score']}`) on this store, so that each band "
        "holds a known share of the records whatever range the score takes here; where the texts are known, "
        "what was measured in each band."
    ]
    if "recovered_at_least" in s:
        got = ", ".join(f"{c} ({_pct(c / s['n'])}) at ≥{_pct(float(k))}" for k, c in s["recovered_at_least"].items())
        paras.append(f"Measured token accuracy: {got}.")
    return Section("Recovery by risk score", paras, "recovery.png", (head, rows))


def _length_section(s: dict[str, Any]) -> Section:
    ln = s["lengths"]
    has_ents = any("leaking" in b for b in ln["bands"])
    head = [
        "length (tokens of the whole text)",
        "records",
        "longer than the decoder writes",
        "share of the text within reach",
    ]
    head += ["mean token accuracy (95% CI)"]
    if has_ents:
        head += ["records leaking personal data", "items back whole", "items back whole or in part", "items past reach"]
    rows = []
    for b in ln["bands"]:
        row = [
            b["band"],
            b["records"],
            b["beyond_reach"],
            _pct(b["reachable_share"]),
            f"{_pct(b['token_accuracy_mean'])} ({_ci_range(b['token_accuracy_mean_ci'])})",
        ]
        if has_ents:
            row += [_ci(b["leaking"]), _ci(b["items_full"]), _ci(b["items_any"]), b["items_beyond"]]
        rows.append(row)
    paras = [
        f"The decoder writes at most {ln['reach']} tokens (its sequence length less the end mark), so a longer "
        f"record can only be recovered up to its first {ln['reach']} tokens: {ln['beyond_reach']} of {s['n']} "
        "records are longer (`beyond_reach` in reconstructions.jsonl). Token accuracy is measured on the part "
        'within reach; "share of the text within reach" is what part of each record\'s text the decoder could '
        "have written at all; personal data past it is not counted as missed by the inversion but listed as past "
        "reach (the known-value attack still sees it: the vector holds the whole text).",
    ]
    return Section("Leakage by record length", paras, table=(head, rows))


def _attacker_section(s: dict[str, Any]) -> Section:
    """Who produced these figures, and why they are a lower bound."""
    a = s["attacker"]
    seqs = (
        f"trained on {a['training_sequences']:,} sequences"
        if a["training_sequences"]
        else "training not recorded in the model folder"
    )
    ref = (
        f"its token accuracy on {a['reference_set']} is {_pct(a['reference_token_accuracy'])}"
        if a["reference_token_accuracy"] is not None
        else "its token accuracy on a reference set is not recorded in the model folder"
    )
    here = f"; on these {s['n']} records it is {_pct(s['token_accuracy'])}" if "token_accuracy" in s else ""
    return Section(
        "Attacker",
        [
            f"These figures are what one attacker recovered: decoder `{a['model']}` ({a['parameters']:,} parameters, "
            f"{seqs}) inverting encoder `{a['encoder']}`; {ref}{here}.",
            "**They are a lower bound**, not an estimate of what leaks: a decoder trained longer, on text closer to "
            "these records, or with more compute per record recovers more. A low figure here means this attacker "
            "failed, not that the vectors are safe.",
        ],
    )


def _entities_section(s: dict[str, Any]) -> Section:
    e = s["entities"]
    rows = [
        [
            k,
            v["found"],
            _ci(v["full"]),
            _ci(v["partial"]),
            _ci(share(v["found"] - v["any"]["k"], v["found"])),
            _ci(v["chance"]),
        ]
        for k, v in e["by_type"].items()
    ]
    n_with = e["records_with_entities"]
    paras = [
        f"Personal data found in the reference texts (`{s['entities_mode']}`: spaCy's English model for names, "
        "organisations, places, dates and amounts; regular expressions for e-mail addresses, phone numbers, street "
        "addresses, URLs, numbers and money) and how much of each item came back in the reconstructions: **whole** "
        "(its words in order; a number's digits in any grouping), **in part** (a part that identifies on its own: "
        "one of a person's names, an e-mail's local part or domain, a group of a phone number's digits, a date's "
        "month with its day or year), or not at all. Items past the decoder's reach are not counted here (see the "
        "length section). The last column is the chance level: each record's items checked against the "
        "reconstruction of another record (the one before it); a name that is also a common word (Hunter, "
        'York) comes back in part by chance, so read "in part" against it.',
        f"{n_with} of {s['n']} records hold personal data within the decoder's reach; in "
        f"{_ci(e['records_leaking'])} of them at least one item came back whole or in part (whole: "
        f"{_ci(e['records_with_recovered'])}).",
    ]
    head = ["type", "items found", "back whole", "back in part", "not back", "whole or in part by chance"]
    return Section("Personal data written back by the inversion", paras, table=(head, rows))


def _ci(x: dict[str, Any]) -> str:
    """'12 of 40 (30.0%, 95% CI 18.1-45.4%)' from a share entry (``metrics.share``)."""
    if not x["n"]:
        return "n/a (none)"
    few = f" (only {x['n']}: too few to judge)" if x["n"] < FEW else ""
    return f"{x['k']} of {x['n']} ({_pct(x['share'])}, 95% CI {100 * x['low']:.1f}–{100 * x['high']:.1f}%){few}"


def _headline(s: dict[str, Any]) -> str:
    """The one sentence a reader takes away: records whose personal data leaks, by either attack."""
    i = s.get("identified")
    if i and i["records_with_items"]:
        x = share(i["records_leaking"], i["records_with_items"])
        return (
            f"**Personal data leaks from {_ci(x)} records that hold it**: the inversion wrote an item back, "
            f"whole or in part, in {i['records_inverted']}; an attacker holding the list of the store's own values "
            f"singles out an item of {i['records_identified']} by the known-value attack. Personal data here: "
            "names, organisations, places, e-mail addresses, phone numbers and URLs (the table of items written "
            "back also counts dates, addresses and numbers). Both are lower bounds (see below)."
        )
    e = s["entities"]
    return (
        f"**Personal data leaks from {_ci(e['records_leaking'])} records that hold it**: the inversion wrote an "
        "item back, whole or in part. This is a lower bound (see below)."
    )


def _identified_sections(s: dict[str, Any]) -> list[Section]:
    """'Identified from a list': the insider's lists by type and length band, then each user list."""
    i = s["identified"]
    scorer = "the whitened score fitted for this encoder" if i["scorer"] == "whitened" else "raw cosine"
    paras = [
        "The known-value attack: each candidate value is embedded with the same encoder, and each record's vector "
        f"is compared with every candidate ({scorer}, `unembed identify`). It needs no decoder, only a list of "
        "candidates and the encoder. An item counts as identified when its true value ranks **first** among the "
        "list of its type; top 5 is shown beside it. Intervals are 95% Wilson intervals over the items.",
        "**These figures are a lower bound**: an attacker with a shorter or better-targeted list, or a better "
        "scorer, does better. The insider's list holds every item of that type found in these records (by "
        f"`{s['entities_mode']}`), so its size is the number of distinct items; short lists are padded with "
        "synthetic decoys (of their type where one is known: names, companies, places, e-mail addresses, "
        "phone numbers) to 1,000 values. Personal data here means names, organisations, places, e-mail "
        "addresses, phone numbers and URLs (dates and numbers identify nobody on their own).",
    ]
    head = ["type", "list size", "ranked first", "in top 5", "written back by the inversion (whole or in part)"]
    rows = [[k, e["list_size"], _ci(e["first"]), _ci(e["top5"]), _ci(e["inverted"])] for k, e in i["insider"].items()]
    out = [Section("Identified from a list: the store's own values", paras, table=(head, rows))]
    bands = i["bands"]
    if i["insider"]:
        rows = [[k] + [_ci(e["bands"][b]) if b in e["bands"] else "–" for b in bands] for k, e in i["insider"].items()]
        out.append(
            Section(
                "Identified from a list, by record length",
                [
                    "Items ranked first, by the length of the record's true text in tokens: the longer the record, "
                    "the less one value weighs in its vector."
                ],
                table=(["type", *bands], rows),
            )
        )
    for e in i["lists"]:
        paras = [
            f"List `{e['source']}` ({e['list_size']:,} values, type {e['type']}). Mean probability of each "
            f"record's first candidate: {e['mean_top_probability']:.3f}."
        ]
        if "first" in e:
            paras.append(
                "Records whose text holds a value of the list: the first-ranked candidate is one of its values in "
                f"{_ci(e['first'])}. By length: " + "; ".join(f"{b}: {_ci(x)}" for b, x in e["bands"].items()) + "."
            )
        out.append(Section(f"Identified from the list {e['source'].split(' (')[0]}", paras))
    if i["most_exposed"]:
        rows = [[r["id"], "; ".join(r["identified"])] for r in i["most_exposed"]]
        out.append(
            Section(
                "Records singled out by the known-value attack",
                [f"The {len(rows)} records whose items were identified with the highest probability."],
                table=(["id", "identified (type, probability)"], rows),
            )
        )
    return out


def _pii_exposed_section(s: dict[str, Any]) -> Section:
    recs = s["entities"]["most_exposed"]
    rows = [
        [
            r["id"],
            ", ".join(
                f"{x['text']} ({x['type']}{', in part' if x['degree'] == 'partial' else ''})"
                for x in r["entities"]
                if x["degree"] != "none"
            ),
            r["text"],
            r["reference"],
        ]
        for r in recs
    ]
    return Section(
        "Records whose personal data came back",
        [
            f"The {len(recs)} records with the most items back (an item back whole counts twice one back in part; "
            "then the highest token accuracy)."
        ],
        table=(["id", "items back", "reconstruction", "reference"], rows),
    )


def _candidates_section(s: dict[str, Any]) -> Section:
    rows = [
        [
            Code(k),
            "yes" if k == s["risk_score"] else "",
            _rho(v["spearman_accuracy"]),
            _auc(v["auc_25"], v["positives_25"]),
            _auc(v["auc_entity"], v["positives_entity"]),
        ]
        for k, v in s["risk_candidates"].items()
    ]
    paras = [
        "How well each candidate risk score ranks these records by what was actually recovered: Spearman with token "
        'accuracy, AUC for "at least 25% of tokens recovered" and, over records with personal data, for "an item '
        'of personal data recovered" (0.5 = no better than chance). '
        + "; ".join(f"`{k}`: {d}" for k, d in RISK_DEFINITIONS.items())
        + ".",
    ]
    head = ["score", "used", "Spearman", "AUC ≥25% tokens", "AUC entity"]
    return Section("Risk score candidates", paras, table=(head, rows))


def _auc(x: float, positives: int) -> str:
    if math.isnan(x):
        return _rho(x)
    return f"{x:.3f}" + (f" (from {positives} positive records: too few to judge)" if positives < FEW else "")


def _rho(x: float) -> str:
    return "n/a (one side is the same for every record)" if math.isnan(x) else f"{x:.3f}"


def _calibration_section(s: dict[str, Any]) -> Section:
    t = s["top_decile"]
    paras = [
        f"Spearman rank correlation of the risk score with measured token accuracy: "
        f"**{_rho(s['spearman_risk_vs_accuracy'])}**; with sentence BLEU: **{_rho(s['spearman_risk_vs_bleu'])}** "
        "(1 = the risk score ranks records exactly by how much of their text is recovered).",
        f"Triage: the {t['n']} records with the highest risk score (top 10%) have mean token accuracy "
        f"{_pct(t['token_accuracy_mean'])} (all records: {_pct(t['all_token_accuracy_mean'])}), mean sentence "
        f"BLEU {t['bleu_mean']:.1f} ({t['all_bleu_mean']:.1f}), and {_pct(t['share_at_level'])} of them have "
        f"token accuracy ≥ {_pct(t['level'])} (all records: {_pct(t['all_share_at_level'])}).",
        "Records sorted by risk score in groups of equal size:",
    ]
    head = ["records", "mean risk score", "mean measured token accuracy", "share ≥25% tokens", "mean sentence BLEU"]
    rows = [
        [b["n"], f"{b['risk']:.3f}", _pct(b["token_accuracy"]), _pct(b["share_25"]), f"{b['bleu']:.1f}"]
        for b in s["calibration"]
    ]
    return Section(
        "Calibration: does the risk score predict measured accuracy?", paras, "calibration.png", (head, rows)
    )


def _exposed_section(s: dict[str, Any]) -> Section:
    recs = s["most_exposed"]
    has_ref = bool(recs) and "reference" in recs[0]
    head = ["id", "risk", "reconstruction"] + (["reference", "token acc", "BLEU"] if has_ref else [])
    rows = []
    for r in recs:
        row = [r["id"], f"{r['risk']:.3f}", r["text"]]
        if has_ref:
            row += [r["reference"], _pct(r["token_accuracy"]), f"{r['bleu']:.1f}"]
        rows.append(row)
    return Section(
        "Most exposed records", [f"The {len(recs)} records with the highest risk score."], table=(head, rows)
    )


def _span(values: np.ndarray) -> tuple[float, float]:
    """The range of ``values`` with a 5% margin, inside [0, 1] (a single value gets +-0.05)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(0.05 * (hi - lo), 0.005 if hi > lo else 0.05)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def plot_recovery(s: dict[str, Any], path: Path) -> None:
    """PNG: histogram of risk scores and, with REF, of measured token accuracy."""
    plt = pyplot()
    panels = [(f"risk score ({s['risk_score']})", s["_risk"])]
    if "_scatter" in s:
        panels.append(("measured token accuracy", s["_scatter"][1]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        ax.hist(values, bins=20, range=_span(values), color="#4477aa")
        ax.set_xlabel(label)
        ax.set_ylabel("records")
        ax.grid(alpha=0.3)
    fig.suptitle(f"recovery of {s['n']} records")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_calibration(s: dict[str, Any], path: Path) -> None:
    """PNG: risk score against measured token accuracy (a sample of points), group means, y = x."""
    plt = pyplot()
    risk, acc = s["_scatter"]
    pick = np.random.default_rng(0).permutation(len(risk))[:SCATTER_MAX]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(risk[pick], acc[pick], s=6, alpha=0.25, color="#4477aa", label="records")
    b = s["calibration"]
    ax.plot([x["risk"] for x in b], [x["token_accuracy"] for x in b], "o-", color="#cc3311", label="group means")
    ax.plot([x["risk"] for x in b], [x["share_25"] for x in b], "s-", color="#228833", label="share ≥25% tokens")
    lo, hi = _span(risk)
    ax.plot([lo, hi], [lo, hi], "--", color="#999999", label="y = x")
    ax.set_xlim(lo, hi)  # the scores' own range: on most stores they fill a small part of [0, 1]
    top = max(float(acc.max()), max(x["share_25"] for x in b), hi)
    ax.set_ylim(-0.02, min(1.02, top + 0.05))
    ax.set_xlabel("risk score")
    ax.set_ylabel("measured token accuracy / share")
    auc25 = s["risk_candidates"][s["risk_score"]]["auc_25"]
    auc_text = "n/a (no record ≥25%)" if math.isnan(auc25) else f"{auc25:.3f}"
    rho = s["spearman_risk_vs_accuracy"]
    rho_text = "n/a" if math.isnan(rho) else f"{rho:.3f}"
    ax.set_title(f"{s['risk_score']}: Spearman ρ = {rho_text}, AUC(≥25%) = {auc_text}", fontsize=9)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, s: dict[str, Any]) -> None:
    """recovery.png (+ calibration.png), report.md, report.html and summary.json in ``out``.

    Removes the summary's private arrays (keys starting with '_') once plotted."""
    plot_recovery(s, out / "recovery.png")
    if "_scatter" in s:
        plot_calibration(s, out / "calibration.png")
    for k in [k for k in s if k.startswith("_")]:
        del s[k]
    title = f"Embedding leakage audit: {s['n']} records"
    sections = build_sections(s)
    files.write_text(out / "report.md", render_markdown(title, sections))
    files.write_text(out / "report.html", render_html(title, sections, out))
    files.write_json(out / "summary.json", s)
    log.info("wrote the audit report to %s", out / "report.md")
