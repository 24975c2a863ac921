"""Audit a vector store dump: invert every vector, score each record's exposure, write a report.

Input SOURCE is a vectors file (``.npy``, ``.jsonl``, ``.parquet``) or a vector store URI
(``chroma://``, ``lancedb://``, ``qdrant://``, ``qdrant+http://``, ``faiss://``, ``postgresql://``,
``milvus-lite://``); ``unembed.stores`` reads them all, one chunk at a time, and validates every
record before any inversion.

The true texts come from REF, when given: ``.jsonl`` with ``id`` and ``text`` (ids are matched by
their string form, so ``5`` and ``"5"`` are the same record), or ``.txt`` with one non-blank line
per record in row order (blank lines are dropped, as ``evaluate.read_text_file`` does). Without
REF, the texts stored beside the vectors (a store's documents, a file's ``text`` field) are the
references when every record has one; ``no_texts`` ignores them.

**Risk scores.** Three candidates, none needing a reference: ``confidence``, the decoder's own
belief (the mean probability it gave the tokens it committed, over the predicted positions up to
and including the first EOS; padding after it is easy to predict and says nothing); ``cosine``,
the reconstruction re-embedded by the model's encoder against the stored vector (the auditor owns
the encoder); and ``combined``, a logistic regression on both and the log of the predicted length,
fitted on held-out sentences (``RISK_COEF``, ``scripts/fit_risk.py``) as the probability that at
least 25% of the tokens are recovered. ``risk`` is RISK_SCORE's; with REF the report compares all
three (Spearman with token accuracy, AUC for ">= 25% of tokens" and for "an entity recovered").

**Personal data.** With reference texts, ``unembed.pii`` finds the entities of each (names,
organisations, places, dates, money, numbers, e-mail addresses, phone numbers, URLs) and marks
which came back in the reconstruction.

Outputs in OUT:

* ``reconstructions.jsonl``: per record ``id``, ``text``, ``tokens`` and ``confidence`` (one per
  predicted position up to and including the EOS), ``risk``, ``decoder_confidence``, ``cosine``,
  ``combined``; with REF also ``reference``, ``token_accuracy``, ``reference_tokens``, ``bleu``
  (sentence), ``exact``, ``entities`` (``type``, ``text``, ``recovered``) and ``entities_recovered``.
* ``report.md``, ``report.html`` (self-contained: inline CSS, plots embedded as data URIs) and the
  plots beside them (``recovery.png``, with REF ``calibration.png``); ``summary.json``.
* ``progress.json``: the arguments and how far the run got. The input is streamed chunk by chunk;
  each chunk's records are appended and synced before progress.json records them, so a killed run,
  rerun with the same arguments, continues at the first unrecorded chunk (a partial tail is cut).
  Memory is bounded by a chunk plus a few numbers and strings per record for the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import files, pii
from .audit_identify import band_of, run_identify_pass
from .audit_report import write_report
from .audit_risk import RISK_COEF, RISK_DEFINITION, RISK_SCORE, risk_scores, summarise
from .bulk import progress_bar
from .catalog import resolve_model_dir
from .evaluate import read_text_file
from .identify import load_attacker, read_candidates
from .inverter import Inverter
from .metrics import (
    cosine,
    exact_match,
    reference_lengths,
    sentence_bleu,
    token_accuracy_per_row,
)
from .model import Denoiser
from .settings import Decoding
from .stores import CHUNK_SIZE, Chunk, Scan, Source, iter_chunks, open_source, sampled, scan

log = logging.getLogger(__name__)

# What a reconstruction record holds; an audit folder written with another format is not resumed
# (2: the degree of each item, the text's token count and length band).
RECORDS_FORMAT = 2


# ---- reference texts --------------------------------------------------------------------------


def load_reference(path: str | Path, ids: Sequence, limit: int | None = None, positions=None) -> list[str]:
    """The true text of each record id, in record order, from REF (.jsonl id+text or .txt rows).

    ValueError for a missing file, a malformed line, duplicate or missing ids, or a row count
    that differs from the number of vectors (.txt; when ``limit`` cut the vectors, the first
    ``limit`` lines are used; for a sample, the lines at its ``positions`` in the store).
    """
    p = Path(path)
    if p.suffix == ".txt":
        texts = read_text_file(p)
        if positions is not None:
            if len(texts) <= int(positions[-1]):
                raise ValueError(f"{p.name} has {len(texts)} non-blank lines, fewer than the store's records")
            texts = [texts[int(i)] for i in positions]
        if limit is not None and len(ids) == limit:
            texts = texts[:limit]
        if len(texts) != len(ids):
            raise ValueError(f"{p.name} has {len(texts)} non-blank lines but there are {len(ids)} vectors")
        return texts
    if p.suffix != ".jsonl":
        raise ValueError(f"unsupported reference file {p.name} (use .jsonl with id and text, or .txt)")
    if not p.is_file():
        raise ValueError(f"reference file not found: {path}")
    wanted = {str(i) for i in ids}
    by_id: dict[str, str] = {}
    need = "a JSON object with 'id' and 'text'"
    for n, rec in files.read_jsonl(p, need):
        if "id" not in rec or "text" not in rec:
            raise files.bad_line(p, n, need)
        key, text = str(rec["id"]), rec["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{p.name}:{n}: 'text' must be a non-empty string")
        if key in by_id:
            raise ValueError(f"{p.name}:{n}: duplicate id {rec['id']!r}")
        if key in wanted:
            by_id[key] = text.strip()
    missing = [i for i in ids if str(i) not in by_id]
    if missing:
        raise ValueError(f"{p.name} misses the text of {len(missing)} of {len(ids)} record ids (first: {missing[0]!r})")
    return [by_id[str(i)] for i in ids]


# ---- inverting one chunk ------------------------------------------------------------------------


def invert_chunk(
    inv: Inverter,
    ids: list,
    vecs: np.ndarray,
    refs: Sequence[str] | None,
    strategy: str,
    num_steps: int,
    seed: int,
    batch_size: int,
    entities: str = "off",
) -> list[dict[str, Any]]:
    """Invert [b, D] vectors; one reconstruction record per vector (see the module docstring). A row's
    reconstruction does not depend on the rows decoded beside it, so chunks and batches are free."""
    tok, eos = inv.tokenizer, inv.cfg.model.eos_id
    inversions = inv.invert(vecs, strategy, num_steps, seed, batch_size)
    pred = np.array([x.ids for x in inversions])
    n_pos = reference_lengths(pred, eos)
    recons = [x.text for x in inversions]
    cos = cosine(inv.encoder.encode([t if t.strip() else "." for t in recons]), vecs)
    records = []
    for i, (x, n) in enumerate(zip(inversions, n_pos, strict=True)):
        conf = x.confidence[:n]
        scores = risk_scores(float(np.mean(conf)), float(cos[i]), int(n))
        records.append(
            {
                "id": ids[i],
                "text": x.text,
                "tokens": tok.token_strings(x.ids[:n]),
                "confidence": conf,
                "risk": scores[RISK_SCORE],
                "decoder_confidence": scores["confidence"],
                "cosine": scores["cosine"],
                "combined": scores["combined"],
            }
        )
    if refs is not None:
        _add_measurements(inv, records, pred, refs)
        _add_entities(records, refs, entities)
    return records


def _add_measurements(inv: Inverter, records: list[dict], pred: np.ndarray, refs: Sequence[str]) -> None:
    """Token accuracy, sentence BLEU and exact match of each record against its reference."""
    tok, eos = inv.tokenizer, inv.cfg.model.eos_id
    ref_ids = tok.encode(list(refs))
    accs = token_accuracy_per_row(pred, ref_ids, eos)
    lens = reference_lengths(ref_ids, eos)
    counts = tok.count(list(refs))
    for r, row, a, n, c in zip(records, ref_ids, accs, lens, counts, strict=True):
        ref = tok.decode(row)
        r.update(
            reference=ref,
            token_accuracy=round(float(a), 4),
            reference_tokens=int(n),
            bleu=round(sentence_bleu(r["text"], ref), 2),
            exact=exact_match(r["text"], ref),
            text_tokens=c,
            length_band=band_of(c, tok.reach),
            beyond_reach=c > tok.reach,
        )


def _add_entities(records: list[dict], refs: Sequence[str], mode: str) -> None:
    """The personal data of each reference (``pii.find`` on the full text): ``entities``, those that
    survive the decoder's cut, with how much of each the reconstruction gave back (``degree``: full,
    partial, none; ``pii.degree``); ``entities_beyond``, those past it (the decoder cannot write
    them; the known-value attack can still find them)."""
    if mode == "off":
        return
    for r, ents in zip(records, pii.find(list(refs), mode), strict=True):
        kept = [e for e in ents if pii.recovered(e["text"], r["reference"])]
        r["entities_beyond"] = [e for e in ents if e not in kept]
        r["entities"] = pii.mark(kept, r["text"])
        r["entities_recovered"] = sum(e["degree"] == "full" for e in r["entities"])
        r["entities_partial"] = sum(e["degree"] == "partial" for e in r["entities"])


# ---- resumable run -----------------------------------------------------------------------------------


def _claim(out: Path, args: dict) -> dict:
    """Create OUT or resume it (`files.claim`); returns progress ({args, done, bytes, complete}).
    A resumed folder's reconstructions file is cut back to the last recorded chunk."""
    fresh = {"args": args, "done": 0, "bytes": 0, "complete": False}
    state, _ = files.claim(out, args, "unembed audit", lambda: fresh)
    files.JsonlSink(out / "reconstructions.jsonl", out / "progress.json", state).close()
    return state


def audit_job(inv: Inverter, payload: tuple) -> list[dict[str, Any]]:
    """One chunk's records, here or on a Ray worker (``cluster.ChunkPool``): (ids, vectors, references,
    the audit's recorded arguments)."""
    ids, vecs, chunk_refs, a = payload
    return invert_chunk(
        inv, ids, vecs, chunk_refs, a["strategy"], a["num_steps"], a["seed"], a["batch_size"], a["entities"]
    )


def _invert_all(
    inv: Inverter, out: Path, state: dict, source: Source, n: int, refs: _Refs, progress: bool, pool=None
) -> None:
    """Invert every record not yet recorded in progress.json, a chunk at a time: here, or on the
    Ray workers of ``pool`` (results come back in chunk order and are written the same way)."""
    a = state["args"]

    def payloads():
        lo = state["done"]
        for chunk in iter_chunks(source, a["chunk_size"], a["limit"], skip=lo):
            yield chunk.ids, chunk.vectors, refs.of(chunk, lo), a
            lo += len(chunk.ids)

    sink = files.JsonlSink(out / "reconstructions.jsonl", out / "progress.json", state)
    try:
        with progress_bar(n, state["done"], "auditing", progress) as bar:
            # a chunk is one batch unless chunk_size says otherwise: the bar moves as records are saved
            done = map(partial(audit_job, inv), payloads()) if pool is None else pool.map(audit_job, payloads())
            for records in done:
                sink.write(records)
                bar.update(len(records))
    finally:
        sink.close()


@dataclass
class _Refs:
    """Where each record's true text comes from: a REF file (``texts``, in record order), the texts
    stored beside the vectors (``stored``), or nowhere."""

    label: str | None
    texts: list[str] | None = None
    stored: bool = False

    def of(self, chunk: Chunk, lo: int) -> list[str] | None:
        if self.texts is not None:
            return self.texts[lo : lo + len(chunk.ids)]
        if self.stored:
            return [t.strip() for t in chunk.texts]
        return None


def _references(
    source: Source, found: Scan, texts: str | None, no_texts: bool, limit: int | None, positions=None
) -> _Refs:
    """A REF file wins; else the stored texts when every record has one (unless ``no_texts``).
    ``positions``: the sampled records' places in the store (a .txt REF is in store order)."""
    if texts and no_texts:
        raise ValueError("give either --texts or --no-texts, not both")
    if texts:
        return _Refs(texts, load_reference(texts, found.ids, limit, positions))
    n, k = len(found.ids), found.with_text
    if no_texts or k == 0:
        return _Refs(None)
    if k < n:
        raise ValueError(
            f"{source.label}: {n - k} of {n} records have no stored text, so leakage cannot be measured on "
            "all of them: give the texts with --texts FILE or ignore them with --no-texts"
        )
    return _Refs(f"stored beside the vectors in {source.label}", stored=True)


def _check_args(chunk_size: int, limit: int | None, sample_size: int | None) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of vectors, got {limit}")
    if sample_size is not None and limit is not None:
        raise ValueError("give a sample size or a limit, not both")


def _output_args(inv: Inverter, source: Source, refs: _Refs, **settings) -> dict:
    """The arguments that decide the output (device and progress do not): a resume must match them."""
    texts = refs.label if refs.texts is None or refs.label is None else str(Path(refs.label).resolve())
    return {
        "vectors": source.label,
        "source": source.fingerprint,
        "texts": texts,
        "model": inv.name,
        "encoder": inv.cfg.encoder.name,
        **settings,
    }


def run_audit(
    vectors: str,
    *,
    texts: str | None = None,
    out: str = "audit",
    limit: int | None = None,
    decoding: Decoding = Decoding(),
    no_texts: bool = False,
    entities: str = "spacy",
    chunk_size: int | None = None,
    encoder=None,
    progress: bool = True,
    candidates: Sequence[str] = (),
    sample_size: int | None = None,
    ray: str | None = None,
    workers: int = 2,
) -> dict:
    """Audit a SOURCE (a file or a store URI, see ``unembed.stores``; first ``limit`` records) with
    ``decoding.model``. The true texts come from REF ``texts``, else from the texts stored beside the
    vectors (``no_texts`` ignores them); ``entities`` (spacy, regex or off) says how personal data is
    found in them (``unembed.pii``). Returns the summary dict (also written as summary.json) and
    writes the files listed in the module docstring.

    Rerunning the same call resumes an interrupted audit (or only rewrites the report when done).
    ``candidates`` are lists for the known-value attack (``[TYPE=]FILE`` or ``builtin:NAME``, see
    ``unembed.identify``); with texts the insider's lists are built and attacked too
    (``unembed.audit_identify``). ``encoder`` replaces the model's encoder (tests). ``sample_size``
    audits a uniform random sample of that many records drawn with ``decoding.seed``
    (``stores.sampled``) instead of ``limit``'s first records. ``ray`` (an address, or "local" for
    an instance on this machine) inverts on ``workers`` Ray actors (``unembed.cluster``); the output
    is the same. Bad input raises ValueError with one line, before any vector is inverted and before
    OUT is created.
    """
    out_dir = Path(out)
    # Records are saved after every chunk; by default a chunk is one batch, so that what the progress
    # bar shows as done is on disk when the audit is interrupted.
    chunk_size = decoding.batch_size if chunk_size is None else chunk_size
    _check_args(chunk_size, limit, sample_size)
    lists = [read_candidates(c) for c in candidates]  # every list checked before any work
    inv, d = decoding.load(encoder)
    attacker = attacker_profile(inv, resolve_model_dir(d.model))  # a broken record fails here, not after
    source, found, positions, selection = _select(open_source(vectors), inv, limit, sample_size, d.seed, progress)
    refs = _references(source, found, texts, no_texts, limit, positions)
    entities = entities if refs.label is not None else "off"
    pii.check_mode(entities)
    args = _output_args(
        inv,
        source,
        refs,
        strategy=d.strategy,
        num_steps=d.steps,
        seed=d.seed,
        batch_size=d.batch_size,
        chunk_size=chunk_size,
        limit=limit,
        sample_size=sample_size,
        entities=entities,
        risk_score=RISK_SCORE,
        risk_coef=RISK_COEF,
        records_format=RECORDS_FORMAT,
    )
    engine = _invert_records(inv, d, out_dir, args, source, len(found.ids), refs, progress, ray, workers)
    summary = summarise(out_dir / "reconstructions.jsonl", refs.label is not None, inv.tokenizer.reach)
    if lists or entities != "off":
        chunks = _chunks_with_texts(source, CHUNK_SIZE, limit, refs)  # scoring is cheap: big chunks
        summary["identified"] = _identify(inv, d.model, chunks, out_dir, lists, len(found.ids), progress)
    summary.update({k: args[k] for k in ("model", "encoder", "vectors", "strategy", "num_steps", "seed")})
    summary.update(texts=refs.label, risk_score=RISK_SCORE, risk_definition=RISK_DEFINITION, entities_mode=entities)
    summary.update(attacker=attacker, selection=selection, engine=engine)
    write_report(out_dir, summary)
    return summary


def _invert_records(
    inv: Inverter, d: Decoding, out_dir: Path, args: dict, source, n: int, refs, progress, ray, workers
):
    """Claim OUT, invert every record not yet recorded (here or on ``workers`` Ray actors), mark the
    run complete; returns the engine the report names."""
    state = _claim(out_dir, args)
    engine = {"engine": "one process", "workers": 1, "device": d.device}
    if state["done"] < n:
        if ray is None:
            _invert_all(inv, out_dir, state, source, n, refs, progress)
        else:
            from .cluster import ChunkPool

            with ChunkPool(d.model, workers, ray, d.device, d.sample) as pool:
                engine = pool.describe()
                _invert_all(inv, out_dir, state, source, n, refs, progress, pool)
    state["complete"] = True
    files.write_json(out_dir / "progress.json", state)
    return engine


def _select(source: Source, inv: Inverter, limit, sample_size, seed: int, progress: bool):
    """The records audited: every one, the first ``limit`` or a seeded sample; each is checked.
    Returns (the source to read, the scan, the sample's positions or None, the selection record)."""
    positions, selection = None, None
    if sample_size is not None:
        source, positions, total = sampled(source, sample_size, seed, progress)
        selection = {"how": "sample", "n": len(positions), "of": total, "seed": seed}
    found = scan(source, inv.dim, inv.name, limit, progress)
    if selection is None:
        total = source.count()
        how = "first" if limit is not None and (total is None or len(found.ids) < total) else "all"
        selection = {"how": how, "n": len(found.ids), "of": total}
    return source, found, positions, selection


def _identify(inv: Inverter, model: str, chunks, out_dir: Path, lists, n: int, progress: bool) -> dict:
    """The known-value attack over every record (identified.jsonl) and its summary."""
    enc, scorer = load_attacker(model, inv.encoder)
    recon = out_dir / "reconstructions.jsonl"
    found = run_identify_pass(
        chunks, recon, out_dir / "identified.jsonl", lists, enc, scorer, n, inv.tokenizer.reach, progress
    )
    found["scorer"] = scorer.kind
    return found


def _chunks_with_texts(source: Source, chunk_size: int, limit: int | None, refs: _Refs):
    """(ids, vectors, true texts or None) per chunk, in record order."""
    lo = 0
    for chunk in iter_chunks(source, chunk_size, limit):
        yield chunk.ids, chunk.vectors, refs.of(chunk, lo)
        lo += len(chunk.ids)


def attacker_profile(inv: Inverter, folder: Path) -> dict[str, Any]:
    """The decoder behind an audit: name, encoder, size (the parameters of the model as trained,
    whatever precision decodes it), the sequences it was trained on and its end-to-end token
    accuracy on a reference set, from the first record of its training the model folder holds:

    * ``training.json`` (written when weights are shipped; it covers every phase of training):
      ``{"sequences": N, "reference": {"set": "...", "token_accuracy": 0.097}}``;
    * ``job.json`` (written by ``unembed gpu-train`` beside each model it exports): its
      ``sequences_seen`` and the last validation decode;
    * ``training-job.json`` (the older GPU job's): its best run's steps times the folder's batch
      size, right for a folder as that job exported it.

    A folder trained further after its export must carry a ``training.json``; a broken record is a
    ValueError naming the file.
    """
    with torch.device("meta"):  # the count only: no memory, no weights read
        parameters = Denoiser(inv.cfg.model).num_params()
    profile = {
        "model": inv.name,
        "encoder": inv.cfg.encoder.name,
        "parameters": parameters,
        "training_sequences": None,
        "reference_set": None,
        "reference_token_accuracy": None,
    }
    tr = inv.cfg.train
    decoded = f"{tr.eval_decode_n} validation-split sentences ({tr.eval_decode_steps} steps)"
    for name in ("training.json", "job.json", "training-job.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            record = files.read_json(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable JSON file ({e})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: expected a JSON object")
        if name == "training.json":
            seqs, ref = _training_record(path, record)
            profile["training_sequences"] = seqs
            if ref is not None:
                profile["reference_set"], profile["reference_token_accuracy"] = ref
        elif name == "job.json":
            seqs, last = record.get("sequences_seen"), record.get("last_eval") or {}
            if isinstance(seqs, int) and not isinstance(seqs, bool) and seqs > 0:
                profile["training_sequences"] = seqs
            if isinstance(last, dict) and _is_share(last.get("val_decode_acc")):
                profile["reference_set"] = decoded
                profile["reference_token_accuracy"] = float(last["val_decode_acc"])
        else:
            run = (record.get("runs") or {}).get(record.get("best")) or {}
            log_rows = run.get("log") or [{}]
            steps = log_rows[-1].get("train_step") if isinstance(log_rows[-1], dict) else None
            if isinstance(steps, int) and steps > 0:
                profile["training_sequences"] = steps * tr.batch_size * tr.grad_accum
            if _is_share(run.get("val_decode_acc")):
                profile["reference_set"], profile["reference_token_accuracy"] = decoded, float(run["val_decode_acc"])
        break
    return profile


def _is_share(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1


def _training_record(path: Path, record: dict) -> tuple[int, tuple[str, float] | None]:
    """(sequences, (reference set, token accuracy) or None) from a training.json, checked."""
    seqs = record.get("sequences")
    if not isinstance(seqs, int) or isinstance(seqs, bool) or seqs <= 0:
        raise ValueError(f"{path}: 'sequences' must be a whole number > 0, got {seqs!r}")
    if "reference" not in record:
        return seqs, None
    ref = record["reference"]
    if not isinstance(ref, dict):
        raise ValueError(f"{path}: 'reference' must be an object with 'set' and 'token_accuracy'")
    ref_set, acc = ref.get("set"), ref.get("token_accuracy")
    if not isinstance(ref_set, str) or not ref_set.strip() or not _is_share(acc):
        raise ValueError(f"{path}: 'reference' needs 'set' (non-empty text) and 'token_accuracy' in [0, 1]")
    return seqs, (ref_set, float(acc))
