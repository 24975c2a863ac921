"""Corpus sources -> natural English sentences.

A *source* is ``builtin`` (the packaged English sources of ``docs/data.md``), ``builtin:a,b``
(some of them by name), ``c4`` (``allenai/c4``, config ``en``, streamed through ``datasets``) or a
path to a ``.txt`` (one text a line), ``.jsonl`` (a ``text`` field, optional ``source``) or
``.parquet`` (``text`` column, optional ``source``) file. Every source yields *documents*
(paragraph-ish texts); all of them go through the same pipeline:

    documents -> paragraphs -> normalise -> split_sentences -> clean_sentence -> dedupe

The builtin sources live in `corpus_sources` (installed by ``unembed fetch-corpus``, read without
importing their packages), the cleaning in `sentences`; this module builds the corpus. A missing
builtin source raises ValueError naming the fetch command, unless ``skip_missing=True``, which
logs a warning listing the missing sources and goes on without them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import files
from .corpus_sources import BUILTIN, builtin_documents, builtin_names, is_builtin
from .sentences import SPLITS, digest, sentences_from_documents, split_of

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")

# ---------------------------------------------------------------------------------------------
# C4 and file sources
# ---------------------------------------------------------------------------------------------


def c4_documents(data_files: str | Path | None = None) -> Iterator[tuple[str, str]]:
    """("c4", text) streamed from ``allenai/c4`` config ``en``, split train.

    data_files: a local JSON/JSON-lines file with a ``text`` field read through the same streaming
    path instead of the hub (for tests and offline mirrors).
    """
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError("source 'c4' needs the datasets library: pip install datasets") from None
    if data_files is None:
        stream = load_dataset("allenai/c4", "en", split="train", streaming=True)
    else:
        if not Path(data_files).is_file():
            raise ValueError(f"c4 data file not found: {data_files}")
        stream = load_dataset("json", data_files=str(data_files), split="train", streaming=True)
    for row in stream:
        yield "c4", row["text"]


def file_documents(path: Path) -> Iterator[tuple[str, str]]:
    """(source, text) from a .txt (one text a line), .jsonl or .parquet file.

    The source is the record's ``source`` field when present, else the file's stem.
    """
    if not path.is_file():
        raise ValueError(f"corpus file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield path.stem, line
    elif suffix == ".jsonl":
        yield from _jsonl_documents(path)
    elif suffix == ".parquet":
        yield from _parquet_documents(path)
    else:
        raise ValueError(f"unsupported corpus file {path}: use {', '.join(FILE_SUFFIXES)}")


def _jsonl_documents(path: Path) -> Iterator[tuple[str, str]]:
    need = "a JSON object with a 'text' field"
    for lineno, record in files.read_jsonl(path, need):
        if "text" not in record:
            raise files.bad_line(path, lineno, need)
        yield str(record.get("source") or path.stem), record["text"]


def _parquet_documents(path: Path) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if "text" not in names:
        raise ValueError(f"{path}: parquet file has no 'text' column (columns: {', '.join(names)})")
    columns = ["text", "source"] if "source" in names else ["text"]
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        rows = batch.to_pydict()
        sources = rows.get("source") or [None] * len(rows["text"])
        for text, src in zip(rows["text"], sources, strict=True):
            if text:
                yield str(src or path.stem), text


def documents(source: str, skip_missing: bool = False) -> Iterator[tuple[str, str]]:
    """(source name, document) for any source string (see the module docstring)."""
    if is_builtin(source):
        return builtin_documents(source, skip_missing)
    if source == "c4":
        return c4_documents()
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES:
        if not path.is_file():
            raise ValueError(f"corpus file not found: {path}")
        return file_documents(path)
    raise ValueError(
        f"unknown corpus source {source!r}: use builtin, builtin:NAME[,NAME], c4 or a {'/'.join(FILE_SUFFIXES)} file"
    )


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def unique_sentences(
    docs: Iterable[tuple[str, str]], limit: int | None = None, caps: dict[str, int] | None = None
) -> Iterator[tuple[str, str]]:
    """(source, document) -> (source, sentence), first occurrence wins, at most `limit` of them and
    at most ``caps[name]`` from a source (the rest of a capped source's documents are skipped)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    seen: set[bytes] = set()
    per_source: Counter[str] = Counter()
    caps = caps or {}
    count = 0
    for name, doc in docs:
        if name in caps and per_source[name] >= caps[name]:
            continue
        for sentence in sentences_from_documents([doc]):
            key = digest(sentence)[:12]  # 96 bits: collisions negligible at billions of sentences
            if key in seen:
                continue
            seen.add(key)
            yield name, sentence
            count += 1
            per_source[name] += 1
            if limit is not None and count >= limit:
                return
            if name in caps and per_source[name] >= caps[name]:
                break


def iter_sentences(source: str, limit: int | None = None, *, skip_missing: bool = False) -> Iterator[tuple[str, str]]:
    """(source name, sentence) in a deterministic order, de-duplicated across sources; builtin
    sources with a cap give at most that many.

    Raises ValueError for an unknown source, a missing file or a missing builtin source (unless
    skip_missing=True).
    """
    docs = documents(source, skip_missing)  # validates the source before anything is read
    builtin = is_builtin(source)
    caps = {n: s.cap for n, s in BUILTIN.items() if s.cap} if builtin else {}
    return unique_sentences(docs, limit, caps)


def corpus_manifest(source: str, by_source: Counter, by_split: Counter) -> dict:
    """Counts plus, for each builtin source, its licence, cap and how it is fetched."""
    sources = {}
    for name, n in by_source.items():
        entry: dict = {"sentences": n}
        if name in BUILTIN and is_builtin(source):
            b = BUILTIN[name]
            entry.update(licence=b.licence, cap=b.cap, fetch=b.install)
        sources[name] = entry
    return {
        "source": source,
        "total": sum(by_source.values()),
        "by_source": dict(by_source),
        "split": {s: by_split[s] for s in SPLITS},
        "sources": sources,
    }


class _CorpusProgress:
    """Progress of write_corpus: sentences against ``limit`` when one is given, else builtin
    sources done (each source's sentences are not known before it is read, so the ETA is by
    source), else a running count with its rate."""

    def __init__(self, source: str, limit: int | None, enabled: bool):
        builtin = is_builtin(source)
        self.by_source = limit is None and builtin
        self.total = limit if limit is not None else (len(builtin_names(source)) if builtin else None)
        self.enabled, self.bar = enabled, None
        self.name, self.count = None, 0

    def add(self, name: str) -> None:
        if self.bar is None:  # opened at the first sentence: a source that fails at once prints one line
            from tqdm.auto import tqdm

            unit = "source" if self.by_source else "sent"
            self.bar = tqdm(total=self.total, desc="corpus", unit=unit, disable=not self.enabled, dynamic_ncols=True)
        self.count += 1
        if self.by_source and name != self.name:
            if self.name is not None:
                self.bar.update(1)
            self.name = name
            self.bar.set_postfix(source=name, sentences=self.count, refresh=False)
        if not self.by_source:
            self.bar.update(1)
        elif self.count % 2048 == 0:
            self.bar.set_postfix(source=name, sentences=self.count)

    def close(self) -> None:
        if self.bar is None:
            return
        if self.by_source and self.bar.total is not None:
            self.bar.update(self.bar.total - self.bar.n)  # the last source, and any skipped as missing
        self.bar.close()


def write_corpus(
    source: str, out_path: str | Path, limit: int | None = None, *, skip_missing: bool = False, progress: bool = False
) -> dict:
    """Write ``{"text", "source"}`` JSON lines (atomically) and, beside them, ``<out>.manifest.json``:
    ``{"total": N, "by_source": {name: n}, "split": {train/validation/test: n}, "sources": {name:
    {sentences, licence, cap, fetch}}}`` (licence etc. for builtin sources); returns the manifest.
    ``progress`` shows a bar on stderr (see _CorpusProgress)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    by_source: Counter[str] = Counter()
    by_split: Counter[str] = Counter()
    sentences = iter_sentences(source, limit, skip_missing=skip_missing)
    bar = _CorpusProgress(source, limit, progress)
    # a bad source record, no network, Ctrl-C or an empty corpus: no half-written file is left
    try:
        with files.atomic(out_path) as fh:
            for name, sentence in sentences:
                fh.write(json.dumps({"text": sentence, "source": name}, ensure_ascii=False) + "\n")
                by_source[name] += 1
                by_split[split_of(sentence)] += 1
                bar.add(name)
            if not by_source:
                raise ValueError(f"empty corpus: source {source!r} gave no sentences")
    finally:
        bar.close()
    total = sum(by_source.values())
    counts = corpus_manifest(source, by_source, by_split)
    files.write_json(out_path.with_name(out_path.name + ".manifest.json"), counts)
    log.info("wrote %d sentences to %s: %s", total, out_path, counts["by_source"])
    return counts
