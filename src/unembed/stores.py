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

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import numpy as np
from tqdm import tqdm

from .files import bad_line, read_jsonl

FILE_FORMATS = (".npy", ".jsonl", ".parquet")
SCHEMES = (
    "chroma",
    "lancedb",
    "qdrant",
    "qdrant+http",
    "qdrant+https",
    "faiss",
    "postgresql",
    "postgres",  # libpq's and SQLAlchemy's other spelling
    "milvus-lite",
)
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
    if scheme not in SCHEMES:
        raise ValueError(f"unknown source scheme {scheme}:// (use a file or one of {', '.join(SCHEMES)})")
    url = urlsplit(spec)
    opener = {
        "chroma": _chroma,
        "lancedb": _lancedb,
        "qdrant": _qdrant,
        "qdrant+http": _qdrant,
        "qdrant+https": _qdrant,
        "faiss": _faiss,
        "postgresql": _postgres,
        "postgres": _postgres,
        "milvus-lite": _milvus,
    }[scheme]
    return opener(url, redact(spec))


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


def _params(url, required: tuple[str, ...], optional: dict[str, str | None]) -> dict[str, str | None]:
    """The URI's query: every required key once, optional keys with defaults, nothing else."""
    pairs = parse_qsl(url.query, keep_blank_values=True)
    got: dict[str, str] = {}
    for k, v in pairs:
        if k in got:
            raise ValueError(f"{url.scheme}:// parameter {k!r} given twice")
        got[k] = v
    known = set(required) | set(optional)
    unknown = sorted(set(got) - known)
    if unknown:
        raise ValueError(f"{url.scheme}:// has unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    missing = [k for k in required if not got.get(k)]
    if missing:
        raise ValueError(f"{url.scheme}:// needs ?{missing[0]}=NAME")
    return {**optional, **got}


def _local_path(url, must_be: str = "dir") -> Path:
    p = Path(unquote(url.netloc + url.path))
    ok = p.is_dir() if must_be == "dir" else p.is_file()
    if not ok:
        raise ValueError(f"{url.scheme}:// {'directory' if must_be == 'dir' else 'file'} not found: {p}")
    return p


def _need(module: str, scheme: str):
    """Import a store's client library or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{scheme}:// needs the {module.split('.')[0]} package: {EXTRA}") from None


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


def _numbers(values: Any) -> list[float]:
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
            row = _numbers(rec["embedding"])
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
        texts = _arrow_texts(batch, "text" if "text" in columns else None, n, p.name)
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


def _arrow_texts(batch, column: str | None, n: int, name: str) -> list[str | None]:
    if column is None:
        return [None] * n
    texts = batch.column(column).to_pylist()
    if any(t is not None and not isinstance(t, str) for t in texts):
        raise ValueError(f"{name}: text column {column!r} must hold strings")
    return texts


# ---- stores ---------------------------------------------------------------------------------------


def _chroma(url, label: str) -> Source:
    q = _params(url, ("collection",), {})
    path = _local_path(url)
    chromadb = _need("chromadb", "chroma")
    client = chromadb.PersistentClient(path=str(path))
    try:
        col = client.get_collection(q["collection"])
    except Exception as exc:  # chromadb raises its own NotFoundError / ValueError types by version
        raise ValueError(f"chroma://{path}: no collection {q['collection']!r} ({_first_line(exc)})") from None

    def read(size: int) -> Iterator[Chunk]:
        total = col.count()
        for off in range(0, total, size):
            got = col.get(include=["embeddings", "documents"], limit=size, offset=off)
            if not got["ids"]:
                break
            vecs = np.asarray(got["embeddings"], dtype=np.float32)
            yield Chunk(list(got["ids"]), vecs, list(got["documents"] or [None] * len(got["ids"])))

    sampled_ids: dict[bytes, list] = {}  # the ids at a sample's positions, listed once per sample

    def ids_at(positions: np.ndarray) -> list:
        key = positions.tobytes()
        if key not in sampled_ids:
            ids, k = [], 0
            for off in range(0, col.count(), CHUNK_SIZE):  # ids only: no vectors, no documents
                page = col.get(include=[], limit=CHUNK_SIZE, offset=off)["ids"]
                while k < len(positions) and positions[k] < off + len(page):
                    ids.append(page[int(positions[k]) - off])
                    k += 1
            sampled_ids[key] = ids
        return sampled_ids[key]

    def take(positions: np.ndarray, size: int) -> Iterator[Chunk]:
        ids = ids_at(positions)  # in the order of positions (sorted)
        for i in range(0, len(positions), size):
            want = ids[i : i + size]
            got = col.get(ids=want, include=["embeddings", "documents"])
            at = {k: j for j, k in enumerate(got["ids"])}
            docs = got["documents"] or [None] * len(got["ids"])
            order = [at[k] for k in want]
            yield Chunk(want, np.asarray(got["embeddings"], dtype=np.float32)[order], [docs[j] for j in order])

    fingerprint = {"collection": q["collection"], "records": col.count()}
    return Source(label, "chroma", read, col.count, fingerprint, take)


def _lancedb(url, label: str) -> Source:
    q = _params(url, ("table",), {"column": "vector", "id": "id", "text": "text"})
    path = _local_path(url)
    lancedb = _need("lancedb", "lancedb")
    try:
        tbl = lancedb.connect(str(path)).open_table(q["table"])
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"lancedb://{path}: no table {q['table']!r} ({_first_line(exc)})") from None
    names = tbl.schema.names
    if q["column"] not in names:
        raise ValueError(f"lancedb table {q['table']!r} has no column {q['column']!r} (columns: {', '.join(names)})")
    id_col = q["id"] if q["id"] in names else None
    text_col = q["text"] if q["text"] in names else None

    def read(size: int) -> Iterator[Chunk]:
        total = tbl.count_rows()
        for lo in range(0, total, size):
            batch = tbl.take_offsets(list(range(lo, min(lo + size, total)))).to_arrow()
            vecs = arrow_vectors(batch.column(q["column"]).combine_chunks(), f"column {q['column']!r}", lo)
            ids = batch.column(id_col).to_pylist() if id_col else list(range(lo, lo + len(batch)))
            yield Chunk(ids, vecs, _arrow_texts(batch, text_col, len(batch), q["table"]))

    def take(positions: np.ndarray, size: int) -> Iterator[Chunk]:
        for i in range(0, len(positions), size):
            pos = [int(p) for p in positions[i : i + size]]
            batch = tbl.take_offsets(pos).to_arrow()
            vecs = arrow_vectors(batch.column(q["column"]).combine_chunks(), f"column {q['column']!r}", pos[0])
            ids = batch.column(id_col).to_pylist() if id_col else pos
            yield Chunk(ids, vecs, _arrow_texts(batch, text_col, len(batch), q["table"]))

    fingerprint = {"table": q["table"], "version": tbl.version}
    return Source(label, "lancedb", read, tbl.count_rows, fingerprint, take)


def _qdrant(url, label: str) -> Source:
    q = _params(url, ("collection",), {"vector": None, "text": "text"})
    qc = _need("qdrant_client", url.scheme)
    from qdrant_client.http.exceptions import ResponseHandlingException

    name = q["collection"]
    if url.scheme == "qdrant":
        client = qc.QdrantClient(path=str(_local_path(url)))
    else:
        base = f"{url.scheme.split('+')[1]}://{url.hostname}:{url.port or 6333}"
        # No version check: the client runs it on a thread of its own, which prints a warning in the
        # middle of our output when the server is unreachable; a real mismatch fails on first use.
        client = qc.QdrantClient(url=base, api_key=os.environ.get("QDRANT_API_KEY"), check_compatibility=False)
    try:
        exists = client.collection_exists(name)
    except (ResponseHandlingException, OSError) as exc:  # a refused port, a name that does not resolve
        raise ValueError(f"{label.split('?')[0]}: cannot connect ({_first_line(exc)})") from None
    if not exists:
        raise ValueError(f"{label.split('?')[0]}: no collection {name!r}")

    def vector_of(point) -> list[float]:
        v = point.vector
        if isinstance(v, dict):
            if q["vector"] is None:
                raise ValueError(f"qdrant collection {name!r} has named vectors ({', '.join(v)}): add &vector=NAME")
            if q["vector"] not in v:
                raise ValueError(f"qdrant collection {name!r} has no vector named {q['vector']!r}")
            v = v[q["vector"]]
        if not isinstance(v, list):
            raise ValueError(f"qdrant collection {name!r} holds vectors the audit cannot read ({type(v).__name__})")
        return v

    def read(size: int) -> Iterator[Chunk]:
        offset = None
        while True:
            points, offset = client.scroll(name, limit=size, offset=offset, with_payload=True, with_vectors=True)
            if points:
                texts = [(p.payload or {}).get(q["text"]) for p in points]
                vecs = np.asarray([vector_of(p) for p in points], dtype=np.float32)
                yield Chunk([p.id for p in points], vecs, [t if isinstance(t, str) else None for t in texts])
            if offset is None:
                break

    count = lambda: client.count(name, exact=True).count
    return Source(label, url.scheme, read, count, {"collection": name, "records": count()})


# FAISS index types that hold the vectors themselves (everything else stores lossy codes).
FAISS_EXACT = ("IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexHNSWFlat", "IndexIVFFlat", "IndexIDMap", "IndexIDMap2")


def _faiss(url, label: str) -> Source:
    q = _params(url, (), {"meta": None})
    path = _local_path(url, "file")
    faiss = _need("faiss", "faiss")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ValueError(f"faiss://{path}: not a readable FAISS index ({_first_line(exc)})") from None
    inner, ids_of = _faiss_unwrap(faiss, index, path)
    meta = Path(q["meta"]) if q["meta"] else None
    if meta is not None and not meta.is_file():
        raise ValueError(f"faiss:// meta file not found: {meta}")

    def read(size: int) -> Iterator[Chunk]:
        lines = _meta_lines(meta, index.ntotal) if meta else None
        for lo in range(0, index.ntotal, size):
            n = min(size, index.ntotal - lo)
            vecs = inner.reconstruct_n(lo, n).astype(np.float32)
            ids, texts = ids_of(lo, n), [None] * n
            if lines is not None:
                rows = [next(lines) for _ in range(n)]
                ids = [r.get("id", i) for r, i in zip(rows, ids, strict=True)]
                texts = [r.get("text") for r in rows]
            yield Chunk(ids, vecs, texts)

    fp = {"path": str(path.resolve()), "bytes": path.stat().st_size, "meta": str(meta.resolve()) if meta else None}
    return Source(label, "faiss", read, lambda: index.ntotal, fp)


def _faiss_unwrap(faiss, index, path: Path):
    """(index to reconstruct from, ids for rows lo..lo+n); ValueError for lossy index types."""
    index = faiss.downcast_index(index)
    ids_of = lambda lo, n: list(range(lo, lo + n))
    if type(index).__name__ in ("IndexIDMap", "IndexIDMap2"):
        id_map = faiss.vector_to_array(index.id_map)
        ids_of = lambda lo, n: id_map[lo : lo + n].tolist()
        index = faiss.downcast_index(index.index)
    kind = type(index).__name__
    if kind not in FAISS_EXACT:
        raise ValueError(
            f"faiss://{path.name}: a {kind} stores compressed codes, not the vectors, so they cannot be "
            f"reconstructed exactly (supported: {', '.join(FAISS_EXACT)})"
        )
    if kind == "IndexIVFFlat":
        index.make_direct_map()  # in memory only; the file is not changed
    return index, ids_of


def _meta_lines(meta: Path, total: int) -> Iterator[dict]:
    n = 0
    need = "a JSON object with optional 'id' and string 'text'"
    for line_no, rec in read_jsonl(meta, need):
        if not isinstance(rec.get("text", ""), str):
            raise bad_line(meta, line_no, need)
        n += 1
        yield rec
    if n != total:
        raise ValueError(f"{meta.name} has {n} lines but the index holds {total} vectors")


def _postgres(url, label: str) -> Source:
    q = _params(url, ("table", "column"), {"id": "id", "text": None})
    psycopg = _need("psycopg", "postgresql")
    from psycopg import sql

    table = sql.Identifier(*q["table"].split(".", 1))
    conninfo = urlunsplit(url._replace(query=""))
    try:
        conn = psycopg.connect(conninfo, autocommit=False)
    except psycopg.OperationalError as exc:
        raise ValueError(f"{label.split('?')[0]}: cannot connect ({_first_line(exc)})") from None
    cols = [sql.Identifier(q["id"]), sql.SQL("{}::real[]").format(sql.Identifier(q["column"]))]
    if q["text"]:
        cols.append(sql.Identifier(q["text"]))
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(sql.SQL(", ").join(cols), table, sql.Identifier(q["id"]))

    def count() -> int:
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
                return cur.fetchone()[0]
        except psycopg.Error as exc:
            conn.rollback()
            raise ValueError(f"postgresql table {q['table']!r}: {_first_line(exc)}") from None

    def read(size: int) -> Iterator[Chunk]:
        try:
            with conn.transaction(), conn.cursor(name="unembed_audit") as cur:
                cur.itersize = size
                cur.execute(query)
                while rows := cur.fetchmany(size):
                    if any(r[1] is None for r in rows):
                        raise ValueError(f"postgresql column {q['column']!r} is NULL for id {rows[0][0]!r}")
                    vecs = _pg_rows(rows, q["column"])
                    texts = [r[2] for r in rows] if q["text"] else [None] * len(rows)
                    yield Chunk([r[0] for r in rows], vecs, texts)
        except psycopg.Error as exc:
            raise ValueError(f"postgresql table {q['table']!r}: {_first_line(exc)}") from None

    return Source(label, "postgresql", read, count, {"table": q["table"], "column": q["column"], "records": count()})


def _pg_rows(rows, column: str) -> np.ndarray:
    lengths = {len(r[1]) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"postgresql column {column!r} has arrays of different lengths ({sorted(lengths)})")
    return np.asarray([r[1] for r in rows], dtype=np.float32)


def _milvus(url, label: str) -> Source:
    q = _params(url, ("collection",), {"text": "text"})
    path = Path(unquote(url.netloc + url.path))
    if not path.exists():  # a file or, for newer milvus-lite releases, a folder
        raise ValueError(f"milvus-lite:// database not found: {path}")
    _need("milvus_lite", "milvus-lite")
    pymilvus = _need("pymilvus", "milvus-lite")
    client = pymilvus.MilvusClient(str(path))
    name = q["collection"]
    if not client.has_collection(name):
        raise ValueError(f"milvus-lite://{path}: no collection {name!r}")
    fields = client.describe_collection(name)["fields"]
    pk = next(f["name"] for f in fields if f.get("is_primary"))
    vec = [f["name"] for f in fields if f["type"] == pymilvus.DataType.FLOAT_VECTOR]
    if len(vec) != 1:
        raise ValueError(f"milvus collection {name!r} needs exactly one float vector field, has {len(vec)}")
    text = q["text"] if any(f["name"] == q["text"] for f in fields) else None

    def read(size: int) -> Iterator[Chunk]:
        it = client.query_iterator(name, batch_size=size, output_fields=[pk, vec[0]] + ([text] if text else []))
        try:
            while rows := it.next():
                vecs = np.asarray([r[vec[0]] for r in rows], dtype=np.float32)
                yield Chunk([r[pk] for r in rows], vecs, [r.get(text) if text else None for r in rows])
        finally:
            it.close()

    count = lambda: int(client.get_collection_stats(name)["row_count"])
    return Source(label, "milvus-lite", read, count, {"collection": name, "records": count()})


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


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
