"""The vector stores behind `stores.open_source`: one opener per URI scheme (``OPENERS``), each
returning a `stores.Source` that reads the store's records in a stable order with the store's own
client library (an optional extra, imported only when its scheme is used). A new store is a
function here and a line in ``OPENERS``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlunsplit

import numpy as np

from .files import bad_line, read_jsonl
from .stores import CHUNK_SIZE, EXTRA, Chunk, Source, arrow_texts, arrow_vectors


def url_params(url, required: tuple[str, ...], optional: dict[str, str | None]) -> dict[str, str | None]:
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


def local_path(url, must_be: str = "dir") -> Path:
    p = Path(unquote(url.netloc + url.path))
    ok = p.is_dir() if must_be == "dir" else p.is_file()
    if not ok:
        raise ValueError(f"{url.scheme}:// {'directory' if must_be == 'dir' else 'file'} not found: {p}")
    return p


def need_module(module: str, scheme: str):
    """Import a store's client library or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{scheme}:// needs the {module.split('.')[0]} package: {EXTRA}") from None


def _chroma(url, label: str) -> Source:
    q = url_params(url, ("collection",), {})
    path = local_path(url)
    chromadb = need_module("chromadb", "chroma")
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
    q = url_params(url, ("table",), {"column": "vector", "id": "id", "text": "text"})
    path = local_path(url)
    lancedb = need_module("lancedb", "lancedb")
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
            yield Chunk(ids, vecs, arrow_texts(batch, text_col, len(batch), q["table"]))

    def take(positions: np.ndarray, size: int) -> Iterator[Chunk]:
        for i in range(0, len(positions), size):
            pos = [int(p) for p in positions[i : i + size]]
            batch = tbl.take_offsets(pos).to_arrow()
            vecs = arrow_vectors(batch.column(q["column"]).combine_chunks(), f"column {q['column']!r}", pos[0])
            ids = batch.column(id_col).to_pylist() if id_col else pos
            yield Chunk(ids, vecs, arrow_texts(batch, text_col, len(batch), q["table"]))

    fingerprint = {"table": q["table"], "version": tbl.version}
    return Source(label, "lancedb", read, tbl.count_rows, fingerprint, take)


def _qdrant(url, label: str) -> Source:
    q = url_params(url, ("collection",), {"vector": None, "text": "text"})
    qc = need_module("qdrant_client", url.scheme)
    from qdrant_client.http.exceptions import ResponseHandlingException

    name = q["collection"]
    if url.scheme == "qdrant":
        client = qc.QdrantClient(path=str(local_path(url)))
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
    q = url_params(url, (), {"meta": None})
    path = local_path(url, "file")
    faiss = need_module("faiss", "faiss")
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
    q = url_params(url, ("table", "column"), {"id": "id", "text": None})
    psycopg = need_module("psycopg", "postgresql")
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
    q = url_params(url, ("collection",), {"text": "text"})
    path = Path(unquote(url.netloc + url.path))
    if not path.exists():  # a file or, for newer milvus-lite releases, a folder
        raise ValueError(f"milvus-lite:// database not found: {path}")
    need_module("milvus_lite", "milvus-lite")
    pymilvus = need_module("pymilvus", "milvus-lite")
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


OPENERS = {
    "chroma": _chroma,
    "lancedb": _lancedb,
    "qdrant": _qdrant,
    "qdrant+http": _qdrant,
    "qdrant+https": _qdrant,
    "faiss": _faiss,
    "postgresql": _postgres,
    "postgres": _postgres,  # libpq's and SQLAlchemy's other spelling
    "milvus-lite": _milvus,
}
