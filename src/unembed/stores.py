"""Where stored vectors come from: files and vector stores, behind one reader.

A SOURCE is a file path or a store URI:

* ``FILE.npy``: float [N, D]; record ids are the row numbers 0..N-1;
* ``FILE.jsonl``: one JSON object a line with ``embedding`` (list of numbers), optional ``id`` (a
  JSON string or number; the line's record number when absent) and ``text``; blank lines skipped;
* ``FILE.parquet``: an ``embedding`` list column, optional ``id`` and ``text`` columns;
* ``chroma://PATH?collection=NAME``: a Chroma persistent directory (documents are the texts);
* ``lancedb://PATH?table=NAME[&column=vector][&id=id][&text=text]``: a LanceDB table;
* ``qdrant://PATH?collection=NAME`` (Qdrant's local mode) or ``qdrant+http://HOST:PORT?collection=NAME``
  (a server; ``QDRANT_API_KEY`` from the environment); ``[&vector=NAME]`` for named vectors,
  ``[&text=text]`` the payload key of the text;
* ``faiss://INDEX_FILE[?meta=FILE.jsonl]``: vectors reconstructed from a FAISS index that stores
  them exactly (flat, HNSW-flat, IVF-flat, with or without an ID map); ``meta`` holds one JSON line
  per vector in index order with optional ``id`` and ``text``;
* ``postgresql://USER@HOST:PORT/DB?table=T&column=C[&id=id][&text=TEXT]`` (or ``postgres://``): an array column
  (``real[]``, ``float8[]``, or pgvector's ``vector``, all read as ``real[]``), rows in ``id`` order;
  the password comes from the URI or libpq's environment (``PGPASSWORD``, ``~/.pgpass``);
* ``milvus-lite://FILE.db?collection=NAME[&text=text]``: a Milvus Lite file.

Every store is read with its own client library, imported only when used; a missing one is a
one-line ValueError naming the extra (``pip install 'unembed[stores]'``). Reads go chunk by chunk
(memory bounded by one chunk), in a stable order, so that an interrupted audit can skip what it
already did. ``Source.label`` is the source with any password removed: it is what reports, logs
and progress files record.

``scan`` validates every record before any work (dimension, NaN/inf, zero vectors, duplicate or
non-scalar ids); ``read_all`` is the same reader for commands that need every vector at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from tqdm import tqdm

from .files import bad_line, read_jsonl

FILE_FORMATS = (".npy", ".jsonl", ".parquet")
CHUNK_SIZE = 1024
EXTRA = "pip install 'unembed[stores]'"


@dataclass
class Chunk:
    """Consecutive records: ids, float32 vectors [b, D], and the stored texts (None where absent)."""

    ids: list
    vectors: np.ndarray
    texts: list[str | None]


@dataclass
class Source:
    """An opened SOURCE. ``read(size)`` yields Chunks of at most ``size`` records, in a stable order."""

    label: str  # printable: no credentials
    kind: str  # "file" or the URI scheme
    read: Callable[[int], Iterator[Chunk]]
    count: Callable[[], int | None]  # number of records when the store tells it cheaply
    fingerprint: dict[str, Any]  # changes when the data does (resume guard)
    # records at sorted positions of the stable order, in chunks of at most ``size``, reading only
    # them (stores that can address a record by position); None: ``sampled`` streams instead
    take: Callable[[np.ndarray, int], Iterator[Chunk]] | None = None


# ---- opening --------------------------------------------------------------------------------------


def open_source(spec: str | Path) -> Source:
    """A Source for a path or URI (see the module docstring); ValueError (one line) when unusable."""
    spec = str(spec)
    scheme = spec.split("://", 1)[0] if "://" in spec else ""
    if not scheme:
        return _file_source(Path(spec))
    from .store_backends import OPENERS  # the backends build on this module's Chunk and Source

    if scheme not in OPENERS:
        raise ValueError(f"unknown source scheme {scheme}:// (use a file or one of {', '.join(OPENERS)})")
    return OPENERS[scheme](urlsplit(spec), redact(spec))


def is_store(spec: str | Path) -> bool:
    return "://" in str(spec)


def redact(spec: str) -> str:
    """The URI with any password replaced by ***; other text unchanged."""
    if "://" not in spec:
        return spec
    url = urlsplit(spec)
    if url.password is None:
        return spec
    host = url.netloc.rsplit("@", 1)[1]
    return urlunsplit(url._replace(netloc=f"{url.username}:***@{host}"))


# ---- files ----------------------------------------------------------------------------------------


def _file_source(p: Path) -> Source:
    if p.suffix not in FILE_FORMATS:
        raise ValueError(f"unsupported vectors file {p.name} (use {', '.join(FILE_FORMATS)} or a store URI)")
    if not p.is_file():
        raise ValueError(f"vectors file not found: {p}")
    reader = {".npy": _npy_chunks, ".jsonl": _jsonl_chunks, ".parquet": _parquet_chunks}[p.suffix]
    fingerprint = {"path": str(p.resolve()), "bytes": p.stat().st_size}
    if p.suffix == ".npy":
        return Source(
            str(p), "file", lambda size: reader(p, size), lambda: len(_npy_array(p)), fingerprint, _npy_take(p)
        )
    return Source(str(p), "file", lambda size: reader(p, size), lambda: None, fingerprint)


def _npy_take(p: Path) -> Callable[[np.ndarray, int], Iterator[Chunk]]:
    def take(positions: np.ndarray, size: int) -> Iterator[Chunk]:
        arr = _npy_array(p)
        for i in range(0, len(positions), size):
            pos = positions[i : i + size]
            yield Chunk(pos.tolist(), np.asarray(arr[pos], dtype=np.float32), [None] * len(pos))

    return take


def _npy_chunks(p: Path, size: int) -> Iterator[Chunk]:
    arr = _npy_array(p)
    for i in range(0, arr.shape[0], size):
        n = min(i + size, arr.shape[0]) - i
        yield Chunk(list(range(i, i + n)), np.asarray(arr[i : i + n], dtype=np.float32), [None] * n)


def _npy_array(p: Path) -> np.ndarray:
    """The [N, D] array of a .npy file, memory-mapped; ValueError for anything else."""
    with open(p, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":  # numpy calls anything without its signature "pickled data"
            raise ValueError(
                f"{p.name}: not a NumPy .npy file (it lacks the .npy signature); save vectors with np.save"
            )
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):  # never follow numpy's hint to unpickle
            raise ValueError(
                f"{p.name}: holds Python objects (a pickle), not numbers; unembed never unpickles files: "
                "save the vectors as a numeric array (np.save(path, np.asarray(vectors, dtype=np.float32)))"
            ) from None
        raise ValueError(f"{p.name}: cannot read as a numeric .npy array ({str(exc).splitlines()[0]})") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{p.name}: need a numeric [N, D] array, got {arr.dtype} shape {list(arr.shape)}")
    return arr


def numbers(values: Any) -> list[float]:
    """A JSON list of numbers (not strings, not booleans) as floats; ValueError otherwise."""
    if not isinstance(values, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        raise ValueError("not a list of numbers")
    return [float(x) for x in values]


def _jsonl_chunks(p: Path, size: int) -> Iterator[Chunk]:
    ids: list = []
    rows: list[list[float]] = []
    texts: list[str | None] = []
    dim, count = None, 0
    need = "a JSON object with an 'embedding' list of numbers"
    for n, rec in read_jsonl(p, need):
        try:
            row = numbers(rec["embedding"])
        except (KeyError, TypeError, ValueError):
            raise bad_line(p, n, need) from None
        if dim is not None and len(row) != dim:
            raise ValueError(f"{p.name}:{n}: embedding has {len(row)} values, earlier ones {dim}")
        dim = len(row)
        text = rec.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{p.name}:{n}: 'text' must be a string")
        ids.append(rec.get("id", count))
        count += 1
        rows.append(row)
        texts.append(text)
        if len(rows) == size:
            yield Chunk(ids, np.array(rows, dtype=np.float32), texts)
            ids, rows, texts = [], [], []
    if rows:
        yield Chunk(ids, np.array(rows, dtype=np.float32), texts)


def _parquet_chunks(p: Path, size: int) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{p.name}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    names = pf.schema_arrow.names
    if "embedding" not in names:
        raise ValueError(f"{p.name}: no 'embedding' column (columns: {', '.join(names)})")
    columns = ["embedding"] + [c for c in ("id", "text") if c in names]
    start = 0
    for batch in pf.iter_batches(batch_size=size, columns=columns):
        vecs = arrow_vectors(batch.column("embedding"), f"{p.name}: column 'embedding'", start)
        n = len(batch)
        ids = batch.column("id").to_pylist() if "id" in columns else list(range(start, start + n))
        texts = arrow_texts(batch, "text" if "text" in columns else None, n, p.name)
        start += n
        yield Chunk(ids, vecs, texts)


def arrow_vectors(col, what: str, start: int) -> np.ndarray:
    """An Arrow list column of numbers -> float32 [n, D]; ValueError for nulls, strings, ragged rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) or not (
        pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)
    ):
        raise ValueError(f"{what} must be a list of numbers, got {t}")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if col.null_count or len(set(lengths.tolist())) > 1:
        raise ValueError(f"{what} has null or different-length rows near row {start}")
    flat = col.flatten() if hasattr(col, "flatten") else pc.list_flatten(col)
    return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)


def arrow_texts(batch, column: str | None, n: int, name: str) -> list[str | None]:
    if column is None:
        return [None] * n
    texts = batch.column(column).to_pylist()
    if any(t is not None and not isinstance(t, str) for t in texts):
        raise ValueError(f"{name}: text column {column!r} must hold strings")
    return texts


# ---- reading ------------------------------------------------------------------------------------------


def iter_chunks(source: Source, size: int = CHUNK_SIZE, limit: int | None = None, skip: int = 0) -> Iterator[Chunk]:
    """Chunks of exactly ``size`` records (the last may be shorter) of records ``skip`` .. ``limit``-1.

    Values are not validated here (``scan`` does that)."""
    seen = 0
    buf: list[Chunk] = []
    held = 0
    for c in source.read(size):
        lo, hi = seen, seen + len(c.ids)
        seen = hi
        if limit is not None:
            hi = min(hi, limit)
        keep = slice(max(skip - lo, 0), max(hi - lo, 0))
        part = Chunk(c.ids[keep], c.vectors[keep], c.texts[keep])
        if part.ids:
            buf.append(part)
            held += len(part.ids)
        while held >= size:  # re-cut so every chunk but the last holds exactly ``size`` records
            whole = _concat(buf)
            yield Chunk(whole.ids[:size], whole.vectors[:size], whole.texts[:size])
            rest = Chunk(whole.ids[size:], whole.vectors[size:], whole.texts[size:])
            buf, held = ([rest] if rest.ids else []), len(rest.ids)
        if limit is not None and seen >= limit:
            break
    if held:
        yield _concat(buf)


def sample_positions(total: int, n: int, seed: int) -> np.ndarray:
    """``min(n, total)`` distinct positions of 0..total-1 drawn uniformly at random, sorted: the
    same for the same ``total`` and ``seed``."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))


def count_records(source: Source, progress: bool = False) -> int:
    """The number of records: what the store tells, else one streaming pass (a chunk in memory)."""
    total = source.count()
    if total is not None:
        return total
    total = 0
    with tqdm(desc="counting", unit="vec", disable=not progress, file=sys.stderr) as bar:
        for c in source.read(CHUNK_SIZE):
            total += len(c.ids)
            bar.update(len(c.ids))
    return total


def sampled(source: Source, n: int, seed: int, progress: bool = False) -> tuple[Source, np.ndarray, int]:
    """A Source holding a uniform random sample of ``n`` of ``source``'s records (all of them when
    it has fewer), in the store's order; also the positions drawn and the store's size.

    Stores that address records by position (``Source.take``: .npy, Chroma, LanceDB) read only
    the sampled records; the others are streamed once per read, keeping only the sampled records
    of each chunk, so memory stays at one chunk whatever the store's size. The same seed and store
    give the same sample, so an interrupted audit of a sample resumes on the same records."""
    if n < 1:
        raise ValueError(f"--sample must be a positive number of records, got {n}")
    total = count_records(source, progress)
    if total == 0:
        raise ValueError(f"{source.label}: no vectors")
    pos = sample_positions(total, n, seed)

    def read(size: int) -> Iterator[Chunk]:
        if source.take is not None:
            yield from source.take(pos, size)
            return
        seen, k = 0, 0
        for c in source.read(max(size, CHUNK_SIZE)):
            hi = seen + len(c.ids)
            j = int(np.searchsorted(pos, hi))
            keep = (pos[k:j] - seen).tolist()
            if keep:
                yield Chunk([c.ids[i] for i in keep], c.vectors[keep], [c.texts[i] for i in keep])
            seen, k = hi, j
            if k == len(pos):
                break

    fingerprint = {**source.fingerprint, "sample": int(len(pos)), "seed": seed, "of": total}
    return Source(source.label, source.kind, read, lambda: len(pos), fingerprint), pos, total


def _concat(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    return Chunk(
        [i for c in chunks for i in c.ids],
        np.concatenate([c.vectors for c in chunks]),
        [t for c in chunks for t in c.texts],
    )


@dataclass
class Scan:
    """What a validating pass over a source found: record ids in order and how many have a text."""

    ids: list
    with_text: int


def scan(source: Source, dim: int, model: str, limit: int | None = None, progress: bool = False) -> Scan:
    """Validate every record before any inversion.

    ValueError (one line) for a dimension other than ``dim`` (raised at the first chunk, with both
    numbers), NaN/inf, an all-zero vector, a duplicate id, an id that is not a string or number,
    or no records at all.
    """
    name = source.label
    ids: list = []
    seen: set[str] = set()
    with_text = 0
    total = source.count()
    total = min(total, limit) if total is not None and limit is not None else total
    with tqdm(total=total, desc="reading", unit="vec", disable=not progress, file=sys.stderr) as bar:
        for c in iter_chunks(source, CHUNK_SIZE, limit):
            if c.vectors.ndim != 2 or c.vectors.shape[1] != dim:
                got = c.vectors.shape[1] if c.vectors.ndim == 2 else list(c.vectors.shape)
                raise ValueError(f"{name}: vectors have dimension {got}, model {model} expects {dim}")
            bad = ~np.isfinite(c.vectors).all(1)
            if bad.any():
                raise ValueError(f"{name}: record id {c.ids[int(bad.argmax())]!r} has NaN or infinite values")
            zero = np.linalg.norm(c.vectors, axis=1) < 1e-12
            if zero.any():
                raise ValueError(f"{name}: record id {c.ids[int(zero.argmax())]!r} is an all-zero vector")
            for i in c.ids:
                if not isinstance(i, (str, int, float)) or isinstance(i, bool):
                    raise ValueError(f"{name}: record ids must be strings or numbers, got {i!r}")
                if str(i) in seen:
                    raise ValueError(f"{name}: duplicate record id {i!r}")
                seen.add(str(i))
            ids += c.ids
            with_text += sum(isinstance(t, str) and bool(t.strip()) for t in c.texts)
            bar.update(len(c.ids))
    if not ids:
        raise ValueError(f"{name}: no vectors")
    return Scan(ids, with_text)


def read_all(spec: str | Path, dim: int, model: str, limit: int | None = None) -> tuple[list, np.ndarray]:
    """Every record of a SOURCE at once, validated as ``scan`` does: (ids, float32 [N, D])."""
    source = open_source(spec)
    ids = scan(source, dim, model, limit).ids
    vecs = np.concatenate([c.vectors for c in iter_chunks(source, CHUNK_SIZE, limit)])
    return ids, vecs
