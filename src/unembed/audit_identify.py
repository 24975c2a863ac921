"""The audit's known-value attack: which records a list of candidates singles out.

Run after the inversion, over the same records in the same order (a second chunked pass over the
SOURCE; nothing but the scores is kept per record). Two kinds of list:

* **The insider's lists** (when the audit has the records' texts and finds their personal data):
  every item found in any record, one list per type (person, organisation, place, e-mail, phone,
  URL). This is the list anyone holding the documents, a customer list or a directory has. For
  each record and each of its items, the attack succeeds when the item ranks first among the list
  of its type (top 5 is reported too). Items past the decoder's length count: the vector holds the
  whole text.
* **The user's lists** (``--candidates``): each record's most probable candidates. With texts, a
  record *holds* a listed value when the value's words appear in its text, and the attack
  succeeds on it when its first-ranked candidate is a value it holds.

Shares come with 95% Wilson intervals, overall and per record length band (``length_bands``:
tokens of the true text under the encoder's tokenizer, as the audit records them). Writes
``identified.jsonl`` (per record: id, tokens, band, items with their rank, the top candidates of
the user's lists) and returns the summary's ``identified`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import pii
from .files import atomic
from .identify import CandidateList, Candidates, FullNames, candidate_vectors, decoys_for, identify, rank
from .metrics import share

INSIDER_TYPES = ("person", "organisation", "place", "email", "phone", "url")
LONG = 128  # tokens: a typical retrieval chunk is longer
TOP_K = 5
SHOWN = 20


def length_bands(reach: int) -> list[tuple[int, int, str]]:
    """Length bands in tokens of the encoder's tokenizer: what the decoder can write whole (up to
    ``reach``, its sequence length less the EOS), up to LONG tokens, longer."""
    bands = [(0, reach, f"≤ {reach} tokens")]
    if reach < LONG:
        bands.append((reach + 1, LONG, f"{reach + 1}-{LONG} tokens"))
    bands.append((max(reach, LONG) + 1, 1 << 62, f"> {max(reach, LONG)} tokens"))
    return bands


def band_of(tokens: int, reach: int) -> str:
    return next(label for lo, hi, label in length_bands(reach) if lo <= tokens <= hi)


def record_items(rec: dict) -> list[dict]:
    """A reconstruction record's personal-data items (those the decoder could write and those past
    its length), of the insider types."""
    items = rec.get("entities", []) + rec.get("entities_beyond", [])
    return [e for e in items if e["type"] in INSIDER_TYPES]


def insider_lists(recon: Path) -> dict[str, CandidateList]:
    """One list per type of every item found in the audited records."""
    values: dict[str, dict[str, None]] = {}
    with open(recon, encoding="utf-8") as fh:
        for line in fh:
            for e in record_items(json.loads(line)):
                values.setdefault(e["type"], {})[e["text"]] = None
    return {
        k: CandidateList(k, tuple(v), f"insider: every {k} item found in the audited records")
        for k, v in sorted(values.items())
    }


def _phrases(text: str, longest: int) -> set[tuple[str, ...]]:
    w = pii.words(text)
    return {tuple(w[i : i + n]) for n in range(1, longest + 1) for i in range(len(w) - n + 1)}


class _Held:
    """Which values of a user's list a text holds (the value's words, contiguous, in order)."""

    def __init__(self, clist: Candidates):
        parts = [clist.first, clist.last] if isinstance(clist, FullNames) else [clist]
        self.full = isinstance(clist, FullNames)
        self.keys = [{tuple(pii.words(v)) for v in p.values} - {()} for p in parts]
        self.longest = max((len(k) for keys in self.keys for k in keys), default=1)

    def holds(self, text: str, value: str) -> bool:
        return tuple(pii.words(value)) in _phrases(text, max(self.longest * (2 if self.full else 1), 1))

    def any(self, text: str) -> bool:
        if self.full:  # a full name: a first name followed by a last name
            w = pii.words(text)
            return any((a,) in self.keys[0] and (b,) in self.keys[1] for a, b in zip(w, w[1:]))
        return bool(_phrases(text, self.longest) & self.keys[0])


def run_identify_pass(
    chunks: Iterator[tuple[list, np.ndarray, list[str] | None]],
    recon: Path,
    out: Path,
    lists: Sequence[Candidates],
    encoder,
    scorer,
    n: int,
    reach: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every record (``chunks`` yields ids, vectors and true texts in reconstruction order)
    against the insider's lists and ``lists``; write ``out`` (identified.jsonl) and return the summary."""
    insider = insider_lists(recon) if _has_entities(recon) else {}
    # The insider's values are the store's personal data: their vectors stay in the audit's folder.
    vecs = {k: candidate_vectors(encoder, c, progress, folder=out.parent / "candidates") for k, c in insider.items()}
    decoys = {k: decoys_for(encoder, c, progress) for k, c in insider.items()}
    index = {k: {v: i for i, v in enumerate(c.values)} for k, c in insider.items()}
    held = [_Held(c) for c in lists]
    rows = []
    with open(recon, encoding="utf-8") as rf, atomic(out) as fh:
        with tqdm(total=n, desc="known-value attack", unit="vec", disable=not progress) as bar:
            for ids, v, texts in chunks:
                recs = [_next_record(rf, i, recon) for i in ids]
                ranked = {k: rank(v, vecs[k], scorer, TOP_K, decoys[k]) for k in insider}
                found = identify(v, lists, encoder, scorer, TOP_K) if lists else [[] for _ in ids]
                for j, (i, rec) in enumerate(zip(ids, recs)):
                    row = _record_row(i, rec, texts[j] if texts else None, ranked, index, j, found[j], lists, held)
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows.append(_small(row))
                bar.update(len(ids))
    return summarise_identified(rows, insider, lists, [label for *_, label in length_bands(reach)])


def _next_record(fh, record_id, recon: Path) -> dict:
    """The next reconstruction, which must be the record the source gives next."""
    line = fh.readline()
    rec = json.loads(line) if line.strip() else None
    if rec is None or str(rec.get("id")) != str(record_id):
        got = "nothing" if rec is None else f"id {rec.get('id')!r}"
        raise ValueError(
            f"{recon} holds {got} where the source gives id {record_id!r}: the store changed order or content "
            "since the inversion; audit into a new --out"
        )
    return rec


def _has_entities(recon: Path) -> bool:
    with open(recon, encoding="utf-8") as fh:
        first = fh.readline()
    return bool(first) and "entities" in json.loads(first)


def _record_row(i, rec, text, ranked, index, j, found, lists, held) -> dict:
    items = []
    for e in record_items(rec):
        r = ranked[e["type"]][j]
        truth = index[e["type"]][e["text"]]
        pos = [int(x) for x in r.index].index(truth) if truth in r.index else None
        items.append(
            {
                "type": e["type"],
                "text": e["text"],
                "first": pos == 0,
                "top5": pos is not None,
                "probability": float(r.probability[pos]) if pos is not None else 0.0,
                "inverted": e.get("degree", "none") != "none",  # written back, whole or in part
            }
        )
    row: dict[str, Any] = {
        "id": i,
        "tokens": rec.get("text_tokens"),
        "band": rec.get("length_band"),
        "items": items,
        "candidates": found,
    }
    if text is not None and lists:
        row["lists"] = []
        for clist, h in zip(lists, held):
            top = next((c for c in found if c["list"] == clist.source), None)
            holds = h.any(text)
            row["lists"].append(
                {"holds": holds, "first": bool(holds and top is not None and h.holds(text, top["value"]))}
            )
    return row


def _small(row: dict) -> dict:
    """What the summary keeps of a record: no candidate lists beyond the first."""
    return {**row, "candidates": row["candidates"][:3]}


def summarise_identified(
    rows: list[dict], insider: dict[str, CandidateList], lists: Sequence[Candidates], bands: Sequence[str]
) -> dict:
    """Shares by type and length band (``bands``: their labels in order) for the insider's lists,
    and for each user list."""
    s: dict[str, Any] = {"records": len(rows), "insider": {}, "lists": [], "bands": list(bands)}
    for kind, clist in insider.items():
        entry: dict[str, Any] = {"list_size": len(clist.values), "source": clist.source, "bands": {}}
        got = [(r["band"], it) for r in rows for it in r["items"] if it["type"] == kind]
        entry["first"] = share(sum(it["first"] for _, it in got), len(got))
        entry["top5"] = share(sum(it["top5"] for _, it in got), len(got))
        entry["inverted"] = share(sum(it["inverted"] for _, it in got), len(got))
        for label in bands:
            sub = [it for b, it in got if b == label]
            if sub:
                entry["bands"][label] = share(sum(it["first"] for it in sub), len(sub))
        s["insider"][kind] = entry
    with_items = [r for r in rows if r["items"]]
    s["records_with_items"] = len(with_items)
    s["records_identified"] = sum(any(it["first"] for it in r["items"]) for r in with_items)
    s["records_inverted"] = sum(any(it["inverted"] for it in r["items"]) for r in with_items)
    s["records_leaking"] = sum(any(it["first"] or it["inverted"] for it in r["items"]) for r in with_items)
    for j, clist in enumerate(lists):
        entry = {
            "type": clist.type,
            "source": clist.source,
            "list_size": len(clist),
        }
        tops = [next((c for c in r["candidates"] if c["list"] == clist.source), None) for r in rows]
        entry["mean_top_probability"] = float(np.mean([t["probability"] if t else 0.0 for t in tops]))
        if rows and "lists" in rows[0]:
            holding = [r for r in rows if r["lists"][j]["holds"]]
            entry["first"] = share(sum(r["lists"][j]["first"] for r in holding), len(holding))
            entry["bands"] = {}
            for label in bands:
                sub = [r for r in holding if r["band"] == label]
                if sub:
                    entry["bands"][label] = share(sum(r["lists"][j]["first"] for r in sub), len(sub))
            probs = [t["probability"] if t else 0.0 for t in tops]
            truth = [bool(r["lists"][j]["first"]) for r in rows]
            entry["calibration"] = {
                "records": len(rows),
                "mean_probability": float(np.mean(probs)),
                "correct": sum(truth),
            }
        s["lists"].append(entry)
    exposed = [r for r in with_items if any(it["first"] for it in r["items"])]
    exposed.sort(key=lambda r: -max(it["probability"] for it in r["items"] if it["first"]))
    s["most_exposed"] = [
        {
            "id": r["id"],
            "identified": [
                f"{it['text']} ({it['type']}, p={it['probability']:.2f})" for it in r["items"] if it["first"]
            ],
        }
        for r in exposed[:SHOWN]
    ]
    return s
