"""Inverting a whole vectors file or store (``unembed invert --vectors``): every record checked
first, then decoded chunk by chunk, here or on Ray workers (`cluster.ChunkPool`), and written
through a resumable sink (`files.JsonlSink.partial`), so a killed run, rerun with the same
arguments, continues after its last recorded chunk."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .files import JsonlSink
from .settings import Decoding


def invert_job(inv, payload: tuple) -> list[dict]:
    """One chunk's records: (ids, vectors, strategy, steps, seed, batch) -> [{id, text, confidence}]."""
    ids, vectors, strategy, steps, seed, batch = payload
    results = inv.invert(vectors, strategy, steps, seed, batch_size=batch)
    return [{"id": i, "text": r.text, "confidence": r.confidence} for i, r in zip(ids, results)]


def invert_vectors(
    decoding: Decoding,
    vectors: str,
    out: str | Path | None = None,
    emit: Callable[[list[dict]], None] | None = None,
    *,
    force: bool = False,
    ray: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> int:
    """Invert every record of ``vectors`` (a file or store URI, `stores.open_source`) as ``decoding``
    says (one batch of ``decoding.batch_size`` records is one chunk).

    The records go to ``out`` (JSONL, one ``{id, text, confidence}`` a line, resumable) or, without
    it, to ``emit`` one chunk at a time. ``ray`` (an address, or "local") decodes on ``workers`` Ray
    actors, each loading the model itself. Returns the number of records."""
    from .stores import iter_chunks, open_source, scan

    inv, d = decoding.load()
    strategy, steps, seed, batch_size = d.strategy, d.steps, d.seed, d.batch_size
    source = open_source(vectors)
    ids = scan(source, inv.dim, inv.name).ids  # every record is checked before any inversion
    run_args = {
        "vectors": source.label,  # no credentials
        "fingerprint": json.loads(json.dumps(source.fingerprint, default=str)),  # changes when the data does
        "model": inv.name,
        "strategy": strategy,
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
    }
    sink = JsonlSink.partial(Path(out), run_args, force) if out else None
    done = sink.done if sink else 0
    settings = (strategy, steps, seed, batch_size)
    payloads = ((c.ids, c.vectors, *settings) for c in iter_chunks(source, batch_size, skip=done))
    with contextlib.ExitStack() as stack:
        if sink:
            stack.callback(sink.close)  # a failed run keeps what it recorded, for the rerun
        if ray is None:
            chunks = (invert_job(inv, p) for p in payloads)
        else:
            from .cluster import ChunkPool

            pool = stack.enter_context(ChunkPool(d.model, workers, ray, d.device, d.sample))
            chunks = pool.map(invert_job, payloads)
        bar = stack.enter_context(progress_bar(len(ids), done, "invert", progress))
        for rows in chunks:
            if sink:
                sink.write(rows)
            elif emit:
                emit(rows)
            bar.update(len(rows))
    if sink:
        sink.finish()
    return len(ids)


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar on stderr with ETA, counting vectors."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="vec", disable=not enabled, dynamic_ncols=True, file=sys.stderr
    )
