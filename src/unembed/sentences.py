"""English sentences out of raw text: normalise (typography, mojibake), split into paragraphs and
sentences, keep the natural ones (`clean_sentence`), and the hash split of a sentence
(`split_of`: train, validation or test by the sentence alone). Every corpus source goes through
these; see `corpus`."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MIN_WORDS, MAX_WORDS = 8, 64

# ---------------------------------------------------------------------------------------------
# Normalisation, sentence splitting and filtering
# ---------------------------------------------------------------------------------------------

_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2026": "...",
        "\u2212": "-",
        "\u00ad": None,
        "\u200b": None,
        "\ufeff": None,
    }
)
# UTF-8 read as cp1252 ("â€™" for "'"): a lead byte and one or two continuation bytes.
_MOJIBAKE = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e"
    "\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030"
    "\u2039\u203a\u20ac\u2122]{1,2}"
)


def _cp1252_byte(ch: str) -> int:
    # C1 controls (U+0080-U+009F) stand for the bytes cp1252 leaves undefined (0x81, 0x9d...).
    return ord(ch) if ord(ch) < 0x100 else ch.encode("cp1252")[0]


def _fix_mojibake(text: str) -> str:
    def repair(m: re.Match) -> str:
        try:
            return bytes(_cp1252_byte(c) for c in m.group(0)).decode("utf-8")
        except UnicodeError:
            return m.group(0)

    # A lone "â€" is a closing quote whose last byte (0x9d) was lost.
    return _MOJIBAKE.sub(repair, text).replace("\u00e2\u20ac", '"')


_DOUBLE_HYPHEN = re.compile(r"(?<!-)--(?!-)")


def normalize(text: str) -> str:
    """NFC, mojibake repaired, curly quotes made ASCII, '--' made an em dash, whitespace runs -> one
    space, stripped. Idempotent."""
    text = unicodedata.normalize("NFC", _fix_mojibake(text)).translate(_TYPOGRAPHY)
    return " ".join(_DOUBLE_HYPHEN.sub("\u2014", text).split())


def paragraphs(text: str) -> list[str]:
    """Split on blank lines; the lines of one paragraph are joined (hard wrapping undone)."""
    return [p for p in (normalize(b) for b in re.split(r"\n\s*\n", text)) if p]


ABBREVIATIONS = frozenset(
    """
mr mrs ms dr prof sr jr st mt ft rev gen col lt sgt capt cmdr adm gov sen rep pres hon supt messrs
mme mlle no nos vol vols fig figs pp ed eds vs etc al approx dept est inc ltd co corp bros jan feb
mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun ave blvd rd e.g i.e a.m p.m
u.s u.k u.n u.s.a d.c op cf ca viz
""".split()
)
# A boundary candidate: terminal punctuation, optional closing quotes/brackets, space, then
# something that can start a sentence.
_BOUNDARY = re.compile(r"""([.!?]+['")\]]*)\s+(?=['"(\[]*[A-Z0-9])""")
_WORD_BEFORE = re.compile(r"(\S+)$")


def _is_abbreviation(head: str) -> bool:
    """head: text up to and including a period. True when that period closes an abbreviation."""
    m = _WORD_BEFORE.search(head)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'([").rstrip(".").lower()
    if word in ABBREVIATIONS:
        return True
    # Initials (J. R. R. Tolkien) and dotted acronyms (U.S., e.g.).
    return bool(re.fullmatch(r"[a-z]|([a-z]\.)+[a-z]", word))


def split_sentences(paragraph: str) -> list[str]:
    """One normalised paragraph -> sentences. Periods after known abbreviations and initials do
    not end a sentence; a sentence ends at .!? (plus closing quotes) followed by a capital,
    digit or opening quote."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(paragraph):
        head = paragraph[start : m.end(1)]
        if m.group(1).startswith(".") and _is_abbreviation(paragraph[start : m.start(1) + 1]):
            continue
        out.append(head.strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return out


STOPWORDS = frozenset(
    """
the a an of to and in is was that it for on with as be by at from this his her he she they we you
i not but or are were had have has which their its been will would there all one so if no what
who when my me our your him them can more said do did than then about into out up only also most
some any these those other such how why where just now very should could may might must over after
before because while through like get us being both each few own same too again off under until
against between here don't can't won't isn't it's i'm that's there's let's didn't doesn't
""".split()
)
_URLISH = re.compile(r"https?:|www\.|\.(com|org|net|edu|gov|html?)\b|\S@\S|\b\S+\.(jpg|png|gif|pdf)\b", re.I)
_MARKUP = re.compile(r"[<>{}\[\]|\\=#*~^_@`]|&[a-z]+;|!!|\?\?|\?!|\.\.\.\.")
_ALLOWED_NON_ASCII = re.compile("[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017f\u2013\u2014\u00a3\u20ac\u00b0]")
_START = re.compile(r"""^['"(]?[A-Z]""")
_END = re.compile(r"""[.!?]['")]?$""")


def _complete_quotes(s: str) -> str:
    """Close a quotation that spans sentences: with an odd number of double quotes, a first quote
    that closes (it follows a non-space) gets an opening one at the start; else a last quote that
    opens gets a closing one at the end. Anything else is left (and rejected as unbalanced)."""
    if s.count('"') % 2 == 0:
        return s
    first, last = s.index('"'), s.rindex('"')
    if first > 0 and not s[first - 1].isspace():
        return '"' + s
    if (last == 0 or s[last - 1].isspace()) and last + 1 < len(s) and not s[last + 1].isspace():
        return s + '"'
    return s


def _reject_reason(s: str) -> str | None:
    """Why s is not a natural English sentence, or None when it is."""
    words = s.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "length"
    if not _START.match(s) or not _END.search(s):
        return "shape"
    if _URLISH.search(s) or _MARKUP.search(s) or "\ufffd" in s:
        return "markup"
    if s.count('"') % 2 or s.count("(") != s.count(")") or max(len(w) for w in words) > 30:
        return "unbalanced"
    chars = [c for c in s if not c.isspace()]
    non_ascii = [c for c in chars if ord(c) > 127]
    if len(non_ascii) > 0.05 * len(chars) or any(not _ALLOWED_NON_ASCII.match(c) for c in non_ascii):
        return "non-ascii"
    letters = sum(c.isalpha() for c in chars)
    alnum = letters + sum(c.isdigit() for c in chars)
    if alnum < 0.85 * len(chars) or sum(any(c.isdigit() for c in w) for w in words) > 0.25 * len(words):
        return "symbols"
    if sum(c.isupper() for c in chars) > 0.25 * letters:
        return "caps"
    lowered = [w.strip("\"'(),.;:!?").lower() for w in words]
    if sum(w in STOPWORDS for w in lowered) < max(2, 0.1 * len(words)):
        return "not-english"
    return None


def clean_sentence(sentence: str) -> str | None:
    """A candidate sentence -> the kept, normalised sentence, or None when filtered out.

    Kept: 8-64 words, starts with a capital (or quote/paren + capital), ends with .!? (optionally
    a closing quote/paren), no URLs/emails/markup, balanced quotes and parentheses, at most 5%
    non-ASCII characters and those only Latin letters or common punctuation, at least 85% letters
    or digits, at most a quarter of the words holding digits, at most 25% capitals, and enough
    English function words.
    """
    s = _complete_quotes(normalize(sentence))
    return s if _reject_reason(s) is None else None


def sentence_key(text: str) -> str:
    """De-duplication key: case, whitespace and punctuation insensitive."""
    return re.sub(r"[\W_]+", "", normalize(text).casefold())


def digest(text: str) -> bytes:
    return hashlib.sha256(sentence_key(text).encode("utf-8")).digest()


def split_of(text: str) -> str:
    """'train' | 'validation' | 'test' from the sha256 of the sentence's key: 1% test, 1% validation.

    Depends on the sentence alone, so a sentence keeps its split however the corpus grows.
    """
    bucket = int.from_bytes(digest(text)[:8], "big") % 100
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def sentences_from_documents(documents: Iterable[str]) -> Iterator[str]:
    """Documents -> kept sentences (not yet de-duplicated)."""
    for doc in documents:
        for para in paragraphs(doc):
            for cand in split_sentences(para):
                kept = clean_sentence(cand)
                if kept is not None:
                    yield kept
