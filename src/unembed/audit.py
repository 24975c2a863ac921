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

import base64
import heapq
import html
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import files, pii
from .audit_identify import band_of, length_bands, run_identify_pass
from .evaluate import read_text_file
from .identify import load_attacker, read_candidates
from .inverter import Inverter, resolve_model_dir
from .metrics import (
    bleu,
    bleu_interval,
    bootstrap_mean,
    cosine,
    exact_match,
    reference_lengths,
    sentence_bleu,
    share,
    token_accuracy_per_row,
    wilson,
)
from .model import Denoiser
from .sampling import STRATEGIES
from .stores import CHUNK_SIZE, Chunk, Scan, Source, iter_chunks, open_source, sampled, scan

log = logging.getLogger(__name__)

TOP_N = 20
RISK_QUANTILES = (
    (0.0, 0.5, "lowest 50%"),
    (0.5, 0.75, "50-75th percentile"),
    (0.75, 0.9, "75-90th percentile"),
    (0.9, 1.0, "top 10%"),
)
FEW = 10  # positives below which a rate or an AUC gets a warning
# What a reconstruction record holds; an audit folder written with another format is not resumed
# (2: the degree of each item, the text's token count and length band).
RECORDS_FORMAT = 2
ACCURACY_LEVELS = (0.25, 0.5, 0.75, 1.0)
CALIBRATION_BINS = 10
SCATTER_MAX = 5000
# Candidate risk scores (every record carries all three; ``risk`` is RISK_SCORE's):
RISK_DEFINITIONS = {
    "confidence": "mean probability the decoder gave its committed tokens, over the predicted positions up to "
    "and including the first EOS",
    "cosine": "cosine between the reconstruction re-embedded by the model's encoder and the stored vector",
    "combined": "logistic combination of decoder confidence, re-embedding cosine and the log of the predicted "
    "length, calibrated as the probability that at least 25% of the record's tokens are recovered",
}
# Fitted by `python scripts/fit_risk.py runs/audit-val1000/reconstructions.jsonl` on an audit of the first
# 1,000 validation-split sentences (scripts/split_texts.py) by the shipped model minilm-default.
RISK_COEF = {"bias": -4.4253, "confidence": 7.456, "cosine": 7.569, "log_length": -2.5608}
RISK_SCORE = "combined"
RISK_DEFINITION = RISK_DEFINITIONS[RISK_SCORE]


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


def risk_scores(confidence: float, cos: float, length: int) -> dict[str, float]:
    """The candidate risk scores of one record (see RISK_DEFINITIONS), rounded to 4 decimals.

    ``length``: predicted positions up to and including the first EOS (at least 1)."""
    c = RISK_COEF
    z = c["bias"] + c["confidence"] * confidence + c["cosine"] * cos + c["log_length"] * math.log(length)
    combined = 1.0 / (1.0 + math.exp(-z))
    return {"confidence": round(confidence, 4), "cosine": round(cos, 4), "combined": round(combined, 4)}


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
    state, resumed = files.claim(
        out, args, "unembed audit", lambda: {"args": args, "done": 0, "bytes": 0, "complete": False}
    )
    recon = out / "reconstructions.jsonl"
    if not resumed or (state["bytes"] == 0 and not recon.is_file()):
        recon.write_bytes(b"")
    elif not recon.is_file() or recon.stat().st_size < state["bytes"]:
        raise ValueError(f"{recon} is missing or shorter than progress.json records: use another --out")
    else:
        with open(recon, "r+b") as fh:
            fh.truncate(state["bytes"])
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
    recon = out / "reconstructions.jsonl"

    def payloads():
        lo = state["done"]
        for chunk in iter_chunks(source, a["chunk_size"], a["limit"], skip=lo):
            yield chunk.ids, chunk.vectors, refs.of(chunk, lo), a
            lo += len(chunk.ids)

    with (
        open(recon, "ab") as fh,
        tqdm(total=n, initial=state["done"], desc="auditing", unit="vec", disable=not progress, file=sys.stderr) as bar,
    ):
        # a chunk is one batch unless chunk_size says otherwise: the bar moves as records are saved
        done = map(partial(audit_job, inv), payloads()) if pool is None else pool.map(audit_job, payloads())
        for records in done:
            lo = state["done"]
            bar.update(len(records))
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
            fh.flush()
            os.fsync(fh.fileno())
            state.update(done=lo + len(records), bytes=fh.tell())
            files.write_json(out / "progress.json", state)


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


def _check_args(inv: Inverter, strategy, num_steps, batch_size: int, chunk_size: int, limit) -> tuple[str, int]:
    """The strategy and number of steps to use (the model's defaults where None), validated."""
    strategy = strategy or inv.cfg.sample.strategy
    num_steps = num_steps or inv.cfg.sample.num_steps
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if not 1 <= num_steps <= inv.cfg.model.seq_len:
        raise ValueError(f"steps must be between 1 and {inv.cfg.model.seq_len}, got {num_steps}")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch size and chunk size must be >= 1, got {batch_size} and {chunk_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of vectors, got {limit}")
    return strategy, num_steps


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
    texts: str | None = None,
    model: str = "default",
    out: str = "audit",
    strategy: str | None = None,
    num_steps: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    limit: int | None = None,
    *,
    no_texts: bool = False,
    entities: str = "spacy",
    seed: int = 0,
    chunk_size: int | None = None,
    encoder=None,
    progress: bool = True,
    sample: dict | None = None,
    candidates: Sequence[str] = (),
    sample_size: int | None = None,
    ray: str | None = None,
    workers: int = 2,
) -> dict:
    """Audit a SOURCE (a file or a store URI, see ``unembed.stores``; first ``limit`` records) with
    ``model``. The true texts come from REF ``texts``, else from the texts stored beside the vectors
    (``no_texts`` ignores them); ``entities`` (spacy, regex or off) says how personal data is found
    in them (``unembed.pii``). Returns the summary dict (also written as summary.json) and writes
    the files listed in the module docstring.

    Rerunning the same call resumes an interrupted audit (or only rewrites the report when done).
    ``candidates`` are lists for the known-value attack (``[TYPE=]FILE`` or ``builtin:NAME``, see
    ``unembed.identify``); with texts the insider's lists are built and attacked too
    (``unembed.audit_identify``). ``encoder`` replaces the model's encoder (tests); ``sample``
    overrides the model's decoding settings (Inverter.load). ``sample_size`` audits a uniform random
    sample of that many records drawn with ``seed`` (``stores.sampled``) instead of ``limit``'s first
    records. ``ray`` (an address, or "local" for an instance on this machine) inverts on ``workers``
    Ray actors (``unembed.cluster``); the output is the same. Bad input raises ValueError with one
    line, before any vector is inverted and before OUT is created.
    """
    out_dir = Path(out)
    # Records are saved after every chunk; by default a chunk is one batch, so that what the progress
    # bar shows as done is on disk when the audit is interrupted.
    chunk_size = batch_size if chunk_size is None else chunk_size
    lists = [read_candidates(c) for c in candidates]  # every list checked before any work
    inv = Inverter.load(model, device=device, encoder=encoder, sample=sample)
    strategy, num_steps = _check_args(inv, strategy, num_steps, batch_size, chunk_size, limit)
    attacker = attacker_profile(inv, resolve_model_dir(model))  # a broken record fails here, not after
    if sample_size is not None and limit is not None:
        raise ValueError("give a sample size or a limit, not both")
    source = open_source(vectors)
    positions, selection = None, None
    if sample_size is not None:
        source, positions, total = sampled(source, sample_size, seed, progress)
        selection = {"how": "sample", "n": len(positions), "of": total, "seed": seed}
    found = scan(source, inv.dim, inv.name, limit, progress)
    if selection is None:
        total = source.count()
        how = "first" if limit is not None and (total is None or len(found.ids) < total) else "all"
        selection = {"how": how, "n": len(found.ids), "of": total}
    refs = _references(source, found, texts, no_texts, limit, positions)
    entities = entities if refs.label is not None else "off"
    pii.check_mode(entities)
    args = _output_args(
        inv,
        source,
        refs,
        strategy=strategy,
        num_steps=num_steps,
        seed=seed,
        batch_size=batch_size,
        chunk_size=chunk_size,
        limit=limit,
        sample_size=sample_size,
        entities=entities,
        risk_score=RISK_SCORE,
        risk_coef=RISK_COEF,
        records_format=RECORDS_FORMAT,
    )
    state = _claim(out_dir, args)
    engine = {"engine": "one process", "workers": 1, "device": device}
    if state["done"] < len(found.ids):
        if ray is None:
            _invert_all(inv, out_dir, state, source, len(found.ids), refs, progress)
        else:
            from .cluster import ChunkPool

            with ChunkPool(model, workers, ray, device, sample) as pool:
                engine = pool.describe()
                _invert_all(inv, out_dir, state, source, len(found.ids), refs, progress, pool)
    state["complete"] = True
    files.write_json(out_dir / "progress.json", state)
    has_ref = refs.label is not None
    identified = None
    if lists or entities != "off":
        enc, scorer = load_attacker(model, inv.encoder)
        chunks = _chunks_with_texts(source, CHUNK_SIZE, limit, refs)  # scoring is cheap: big chunks
        recon = out_dir / "reconstructions.jsonl"
        identified = run_identify_pass(
            chunks,
            recon,
            out_dir / "identified.jsonl",
            lists,
            enc,
            scorer,
            len(found.ids),
            inv.tokenizer.reach,
            progress,
        )
        identified["scorer"] = scorer.kind
    summary = summarise(out_dir / "reconstructions.jsonl", has_ref, inv.tokenizer.reach)
    if identified is not None:
        summary["identified"] = identified
    summary.update(
        model=inv.name,
        encoder=inv.cfg.encoder.name,
        vectors=source.label,
        texts=refs.label,
        strategy=args["strategy"],
        num_steps=args["num_steps"],
        seed=seed,
        risk_score=RISK_SCORE,
        risk_definition=RISK_DEFINITION,
        entities_mode=entities,
        attacker=attacker,
        selection=selection,
        engine=engine,
    )
    write_report(out_dir, summary)
    return summary


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


# ---- summary -----------------------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a))
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def auc(score: Sequence[float], label: Sequence[bool]) -> float:
    """Area under the ROC curve of ``score`` for the positive ``label`` (Mann-Whitney, ties count half);
    NaN when either class is empty."""
    score, label = np.asarray(score, np.float64), np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(score) + 1
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class _Tally:
    """What the report needs, gathered in one pass over reconstructions.jsonl."""

    risk: list[float] = field(default_factory=list)
    candidates: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in RISK_DEFINITIONS})
    acc: list[float] = field(default_factory=list)
    sbleu: list[float] = field(default_factory=list)
    ref_tokens: list[int] = field(default_factory=list)
    cos: list[float] = field(default_factory=list)
    exact: int = 0
    recons: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    top: list = field(default_factory=list)  # heap of (risk, -order, record without per-token arrays)
    entity_hit: list[float] = field(default_factory=list)  # per record: 1/0 an item back (whole or part), NaN if none
    entity_full: list[float] = field(default_factory=list)  # per record: 1/0 an item back whole, NaN if none
    by_type: dict[str, list[int]] = field(default_factory=dict)  # type -> [found, full, partial]
    pii_top: list = field(default_factory=list)  # heap of (items back, token accuracy, -order, record)
    band: list[str] = field(default_factory=list)  # per record: its length band
    text_tokens: list[int] = field(default_factory=list)  # per record: tokens of its whole text
    band_items: dict[str, list[int]] = field(default_factory=dict)  # band -> [found, full, partial, beyond]
    # the chance level of "back": each record's items against the reconstruction of the record before it
    chance: dict[str, list[int]] = field(default_factory=dict)  # type -> [items, back whole or in part]
    prev_text: str | None = None


def _push(heap: list, item: tuple, n: int) -> None:
    if len(heap) < n:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)


def _tally(path: Path, has_ref: bool, top_n: int) -> _Tally:
    t = _Tally()
    with open(path, encoding="utf-8") as fh:
        for order, line in enumerate(fh):
            rec = json.loads(line)
            t.risk.append(rec["risk"])
            for k, v in t.candidates.items():
                v.append(rec[k if k != "confidence" else "decoder_confidence"])
            t.cos.append(rec["cosine"])
            small = {k: v for k, v in rec.items() if k not in ("tokens", "confidence")}
            _push(t.top, (rec["risk"], -order, small), top_n)
            if has_ref:
                t.acc.append(rec["token_accuracy"])
                t.sbleu.append(rec["bleu"])
                t.ref_tokens.append(rec["reference_tokens"])
                t.exact += bool(rec["exact"])
                t.recons.append(rec["text"])
                t.refs.append(rec["reference"])
                t.band.append(rec["length_band"])
                t.text_tokens.append(rec["text_tokens"])
            if "entities" in rec:
                _tally_entities(t, rec, small, order, top_n)
    return t


def _tally_entities(t: _Tally, rec: dict, small: dict, order: int, top_n: int) -> None:
    ents = rec["entities"]
    full, part = rec["entities_recovered"], rec["entities_partial"]
    t.entity_hit.append(float(full + part > 0) if ents else float("nan"))
    t.entity_full.append(float(full > 0) if ents else float("nan"))
    band = t.band_items.setdefault(rec["length_band"], [0, 0, 0, 0])
    band[0] += len(ents)
    band[1] += full
    band[2] += part
    band[3] += len(rec["entities_beyond"])
    for e in ents:
        counts = t.by_type.setdefault(e["type"], [0, 0, 0])
        counts[0] += 1
        counts[1] += e["degree"] == "full"
        counts[2] += e["degree"] == "partial"
        if t.prev_text is not None:
            chance = t.chance.setdefault(e["type"], [0, 0])
            chance[0] += 1
            chance[1] += pii.degree(e, t.prev_text) != "none"
    t.prev_text = rec["text"]
    if full + part:
        _push(t.pii_top, (full + 0.5 * part, rec["token_accuracy"], -order, small), top_n)


def summarise(path: Path, has_ref: bool, reach: int, top_n: int = TOP_N) -> dict[str, Any]:
    """Corpus-level numbers of a finished reconstructions.jsonl (streamed; per-token arrays dropped).

    Every rate comes with a 95% interval: Wilson for shares of records or items, a percentile
    bootstrap over records for means (token accuracy) and for corpus BLEU. ``reach``: the tokens
    the decoder can write (its sequence length less the EOS)."""
    t = _tally(path, has_ref, top_n)
    risk = np.asarray(t.risk)
    s: dict[str, Any] = {
        "n": len(risk),
        "risk_mean": float(risk.mean()),
        "risk_median": float(np.median(risk)),
        "most_exposed": [rec for _, _, rec in sorted(t.top, key=lambda x: (-x[0], -x[1]))],
        "cosine": float(np.mean(t.cos)),
    }
    acc = np.asarray(t.acc) if has_ref else None
    hit = np.asarray(t.entity_hit) if t.entity_hit else None
    s["risk_bands"] = risk_bands(risk, acc, hit)
    if has_ref:
        lens = np.asarray(t.ref_tokens)
        s.update(
            token_accuracy=float((acc * lens).sum() / lens.sum()),  # pooled over positions, as evaluate reports
            token_accuracy_mean=float(acc.mean()),
            token_accuracy_mean_ci=bootstrap_mean(acc),
            exact_match=t.exact / len(acc),
            exact_match_ci=wilson(t.exact, len(acc)),
            bleu=bleu(t.recons, t.refs),
            bleu_ci=bleu_interval(t.recons, t.refs),
            recovered_at_least={str(level): int((acc >= level - 1e-9).sum()) for level in ACCURACY_LEVELS},
            spearman_risk_vs_accuracy=spearman(risk, acc),
            spearman_risk_vs_bleu=spearman(risk, t.sbleu),
            calibration=calibration_bins(risk, acc, np.asarray(t.sbleu)),
            top_decile=top_decile(risk, acc, np.asarray(t.sbleu)),
            risk_candidates=_compare_scores(t, acc),
            lengths=_length_summary(t, acc, reach),
        )
        s["_scatter"] = (risk, acc)
    if t.entity_hit:
        s["entities"] = _entity_summary(t)
    s["_risk"] = risk
    return s


def risk_bands(risk: np.ndarray, acc: np.ndarray | None, hit: np.ndarray | None) -> list[dict[str, Any]]:
    """Records cut by the risk score's own quantiles (lowest half, 50-75th, 75-90th percentile, top
    10%), so that the bands spread the records whatever range the score takes on this store; per
    band its score range and, where measured, mean token accuracy and the share of records with
    personal data that gave an item back."""
    order = np.argsort(risk, kind="mergesort")
    n = len(order)
    out = []
    for lo_q, hi_q, label in RISK_QUANTILES:
        g = order[int(round(lo_q * n)) : int(round(hi_q * n))]
        if not len(g):
            continue
        band: dict[str, Any] = {"band": label, "n": len(g), "low": float(risk[g].min()), "high": float(risk[g].max())}
        if acc is not None:
            band["token_accuracy_mean"] = float(acc[g].mean())
        if hit is not None:
            h = hit[g][~np.isnan(hit[g])]
            band["leaking"] = share(int(h.sum()), len(h))
        out.append(band)
    return out


def _length_summary(t: _Tally, acc: np.ndarray, reach: int) -> dict[str, Any]:
    """Per length band: records, how many are longer than the decoder writes, the share of their
    text within its reach, token accuracy (bootstrap interval), records leaking personal data and
    items back (Wilson intervals), and items past the decoder's reach."""
    band, tokens = np.asarray(t.band), np.asarray(t.text_tokens)
    hit = np.asarray(t.entity_hit) if t.entity_hit else None
    rows = []
    for _, _, label in length_bands(reach):
        g = band == label
        if not g.any():
            continue
        row: dict[str, Any] = {
            "band": label,
            "records": int(g.sum()),
            "beyond_reach": int((tokens[g] > reach).sum()),
            "reachable_share": float(np.minimum(1.0, reach / np.maximum(tokens[g], 1)).mean()),
            "token_accuracy_mean": float(acc[g].mean()),
            "token_accuracy_mean_ci": bootstrap_mean(acc[g]),
        }
        if hit is not None:
            h = hit[g][~np.isnan(hit[g])]
            found, full, part, beyond = t.band_items.get(label, [0, 0, 0, 0])
            row.update(
                leaking=share(int(h.sum()), len(h)),
                items_full=share(full, found),
                items_any=share(full + part, found),
                items_beyond=beyond,
            )
        rows.append(row)
    return {"reach": reach, "beyond_reach": int((tokens > reach).sum()), "bands": rows}


def _compare_scores(t: _Tally, acc: np.ndarray) -> dict[str, dict[str, float]]:
    """Each candidate risk score against what was recovered: Spearman with token accuracy, AUC for
    "at least 25% of tokens recovered" and, over records with entities, for "an entity recovered"
    (whole or in part), with the number of positive records behind each AUC."""
    hit = np.asarray(t.entity_hit) if t.entity_hit else np.full(len(acc), np.nan)
    with_ents = ~np.isnan(hit)
    pos25 = acc >= 0.25 - 1e-9
    out = {}
    for name, values in t.candidates.items():
        v = np.asarray(values)
        out[name] = {
            "spearman_accuracy": spearman(v, acc),
            "auc_25": auc(v, pos25),
            "auc_entity": auc(v[with_ents], hit[with_ents] > 0) if with_ents.any() else float("nan"),
            "positives_25": int(pos25.sum()),
            "positives_entity": int((hit[with_ents] > 0).sum()),
        }
    return out


def _entity_summary(t: _Tally) -> dict[str, Any]:
    hit, full = np.asarray(t.entity_hit), np.asarray(t.entity_full)
    with_ents = ~np.isnan(hit)
    n = int(with_ents.sum())
    by_type = {}
    for k, (found, whole, part) in sorted(t.by_type.items(), key=lambda kv: (-kv[1][0], kv[0])):
        by_type[k] = {
            "found": found,
            "full": share(whole, found),
            "partial": share(part, found),
            "any": share(whole + part, found),
            "chance": share(*t.chance.get(k, [0, 0])[::-1]),
        }
    return {
        "records_with_entities": n,
        "records_with_recovered": share(int((full[with_ents] > 0).sum()), n),
        "records_leaking": share(int((hit[with_ents] > 0).sum()), n),
        "by_type": by_type,
        "most_exposed": [rec for *_, rec in sorted(t.pii_top, key=lambda x: (-x[0], -x[1], -x[2]))],
    }


def calibration_bins(
    risk: np.ndarray, acc: np.ndarray, sbleu: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Records sorted by risk, cut into ``bins`` groups of (nearly) equal size: mean risk, mean
    measured token accuracy, share with token accuracy >= 25% and mean sentence BLEU of each."""
    order = np.argsort(risk, kind="mergesort")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return [
        {
            "n": len(g),
            "risk": float(risk[g].mean()),
            "token_accuracy": float(acc[g].mean()),
            "share_25": float((acc[g] >= 0.25 - 1e-9).mean()),
            "bleu": float(sbleu[g].mean()),
        }
        for g in groups
    ]


def top_decile(risk: np.ndarray, acc: np.ndarray, sbleu: np.ndarray, level: float = 0.25) -> dict[str, float]:
    """Triage value of the risk score: the 10% of records with the highest risk (at least one) against
    all records: mean token accuracy, mean sentence BLEU, share with token accuracy >= ``level``."""
    top = np.argsort(-risk, kind="mergesort")[: max(1, len(risk) // 10)]
    return {
        "n": len(top),
        "level": level,
        "token_accuracy_mean": float(acc[top].mean()),
        "bleu_mean": float(sbleu[top].mean()),
        "share_at_level": float((acc[top] >= level - 1e-9).mean()),
        "all_token_accuracy_mean": float(acc.mean()),
        "all_bleu_mean": float(sbleu.mean()),
        "all_share_at_level": float((acc >= level - 1e-9).mean()),
    }


# ---- report ------------------------------------------------------------------------------------------


@dataclass
class Section:
    """One report section, rendered the same way to Markdown and HTML."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    image: str | None = None  # a PNG file name beside the report
    table: tuple[list[str], list[list[str]]] | None = None


class Code(str):
    """A table cell shown as code (backticks in Markdown, <code> in HTML); other cells are plain text."""


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are str()-ed and their pipes escaped, ``Code`` cells in backticks."""

    def cell(v: Any) -> str:
        text = str(v).replace("|", "\\|").replace("\n", " ")
        return f"`{text}`" if isinstance(v, Code) else text

    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _selection(s: dict[str, Any]) -> str:
    """Which records the figures come from: all, the first N, or a uniform random sample."""
    sel = s.get("selection") or {"how": "all", "n": s["n"], "of": s["n"]}
    of = f"{sel['of']:,}" if sel.get("of") is not None else "an unknown number of"
    if sel["how"] == "sample":
        return (
            f"**Estimated from a uniform random sample of {sel['n']:,} of {of} records (seed {sel['seed']})**: "
            "every rate below is an estimate for the whole store, with its 95% interval."
        )
    if sel["how"] == "first":
        return (
            f"**The first {sel['n']:,} of {of} records** (`--limit`): the figures describe these records, "
            "not the store (a store's first records are often its oldest, or one tenant's); use `--sample N` "
            "for an estimate of the whole store."
        )
    return f"All {sel['n']:,} records of the store."


def _engine(s: dict[str, Any]) -> str:
    e = s.get("engine") or {"engine": "one process", "workers": 1, "device": "cpu"}
    if e["engine"] == "one process":
        return f"Inverted in one process on `{e['device']}`."
    where = "a Ray instance on this machine" if e["address"] == "local" else "a Ray cluster"
    return (
        f"Inverted on {where} ({e['engine']}) by {e['workers']} workers on `{e['device']}`, "
        f"{e['threads_per_worker']} thread(s) each; the output is the same as one process's."
    )


def _ci_range(ci: Sequence[float], fmt=_pct) -> str:
    return f"{fmt(ci[0])}–{fmt(ci[1])}"


def build_sections(s: dict[str, Any]) -> list[Section]:
    """The report's sections from a summary (see ``summarise``)."""
    n = s["n"]
    overview = [
        _selection(s),
        f"Model `{s['model']}` (encoder `{s['encoder']}`), strategy `{s['strategy']}`, {s['num_steps']} steps, "
        f"seed {s['seed']}. Vectors: `{s['vectors']}` ({n} records audited). Reference texts: "
        + (f"`{s['texts']}`." if s["texts"] else "none (only the risk score is available)."),
        f"Risk score (`{s['risk_score']}`): {s['risk_definition']}. Mean {s['risk_mean']:.3f}, "
        f"median {s['risk_median']:.3f}.",
        _engine(s),
    ]
    if ("identified" in s and s["identified"]["records_with_items"]) or s.get("entities", {}).get(
        "records_with_entities"
    ):
        overview.insert(0, _headline(s))
    sections = [Section("Overview", overview), _attacker_section(s)]
    if "token_accuracy" in s:
        bleu_ci = _ci_range(s["bleu_ci"], lambda x: f"{x:.1f}")
        rows = [
            ["token accuracy (pooled over reference tokens)", _pct(s["token_accuracy"]), "–"],
            [
                "token accuracy (mean per record)",
                _pct(s["token_accuracy_mean"]),
                _ci_range(s["token_accuracy_mean_ci"]),
            ],
            ["exact match", _pct(s["exact_match"]), _ci_range(s["exact_match_ci"])],
            ["BLEU", f"{s['bleu']:.1f}", bleu_ci],
            ["cosine (reconstruction re-embedded vs stored vector)", f"{s['cosine']:.3f}", "–"],
        ]
        sections.append(
            Section(
                "Measured leakage",
                [
                    "Measured against the reference texts as the decoder can write them (its tokenizer, cut to "
                    "its length). Intervals: 95%, a bootstrap over records for means and BLEU, Wilson for shares."
                ],
                table=(["metric", "value", "95% interval"], rows),
            )
        )
    if "lengths" in s:
        sections.append(_length_section(s))
    sections.append(_risk_bands_section(s))
    if "entities" in s:
        sections.append(_entities_section(s))
        if s["entities"]["most_exposed"]:
            sections.append(_pii_exposed_section(s))
    if "identified" in s:
        sections += _identified_sections(s)
    sections.append(_exposed_section(s))
    if "calibration" in s:
        sections.append(_calibration_section(s))
        sections.append(_candidates_section(s))
    return sections


def _risk_bands_section(s: dict[str, Any]) -> Section:
    head = ["band of the risk score", "score range", "records"]
    has_acc = any("token_accuracy_mean" in b for b in s["risk_bands"])
    has_hit = any("leaking" in b for b in s["risk_bands"])
    head += ["mean token accuracy"] * has_acc + ["records with personal data giving an item back"] * has_hit
    rows = []
    for b in s["risk_bands"]:
        row = [b["band"], f"{b['low']:.3f}–{b['high']:.3f}", b["n"]]
        if has_acc:
            row.append(_pct(b["token_accuracy_mean"]))
        if has_hit:
            row.append(_ci(b["leaking"]))
        rows.append(row)
    paras = [
        f"Records cut by the quantiles of the risk score (`{s['risk_score']}`) on this store, so that each band "
        "holds a known share of the records whatever range the score takes here; where the texts are known, "
        "what was measured in each band."
    ]
    if "recovered_at_least" in s:
        got = ", ".join(f"{c} ({_pct(c / s['n'])}) at ≥{_pct(float(k))}" for k, c in s["recovered_at_least"].items())
        paras.append(f"Measured token accuracy: {got}.")
    return Section("Recovery by risk score", paras, "recovery.png", (head, rows))


def _length_section(s: dict[str, Any]) -> Section:
    ln = s["lengths"]
    has_ents = any("leaking" in b for b in ln["bands"])
    head = [
        "length (tokens of the whole text)",
        "records",
        "longer than the decoder writes",
        "share of the text within reach",
    ]
    head += ["mean token accuracy (95% CI)"]
    if has_ents:
        head += ["records leaking personal data", "items back whole", "items back whole or in part", "items past reach"]
    rows = []
    for b in ln["bands"]:
        row = [
            b["band"],
            b["records"],
            b["beyond_reach"],
            _pct(b["reachable_share"]),
            f"{_pct(b['token_accuracy_mean'])} ({_ci_range(b['token_accuracy_mean_ci'])})",
        ]
        if has_ents:
            row += [_ci(b["leaking"]), _ci(b["items_full"]), _ci(b["items_any"]), b["items_beyond"]]
        rows.append(row)
    paras = [
        f"The decoder writes at most {ln['reach']} tokens (its sequence length less the end mark), so a longer "
        f"record can only be recovered up to its first {ln['reach']} tokens: {ln['beyond_reach']} of {s['n']} "
        "records are longer (`beyond_reach` in reconstructions.jsonl). Token accuracy is measured on the part "
        'within reach; "share of the text within reach" is what part of each record\'s text the decoder could '
        "have written at all; personal data past it is not counted as missed by the inversion but listed as past "
        "reach (the known-value attack still sees it: the vector holds the whole text).",
    ]
    return Section("Leakage by record length", paras, table=(head, rows))


def _attacker_section(s: dict[str, Any]) -> Section:
    """Who produced these figures, and why they are a lower bound."""
    a = s["attacker"]
    seqs = (
        f"trained on {a['training_sequences']:,} sequences"
        if a["training_sequences"]
        else "training not recorded in the model folder"
    )
    ref = (
        f"its token accuracy on {a['reference_set']} is {_pct(a['reference_token_accuracy'])}"
        if a["reference_token_accuracy"] is not None
        else "its token accuracy on a reference set is not recorded in the model folder"
    )
    here = f"; on these {s['n']} records it is {_pct(s['token_accuracy'])}" if "token_accuracy" in s else ""
    return Section(
        "Attacker",
        [
            f"These figures are what one attacker recovered: decoder `{a['model']}` ({a['parameters']:,} parameters, "
            f"{seqs}) inverting encoder `{a['encoder']}`; {ref}{here}.",
            "**They are a lower bound**, not an estimate of what leaks: a decoder trained longer, on text closer to "
            "these records, or with more compute per record recovers more. A low figure here means this attacker "
            "failed, not that the vectors are safe.",
        ],
    )


def _entities_section(s: dict[str, Any]) -> Section:
    e = s["entities"]
    rows = [
        [
            k,
            v["found"],
            _ci(v["full"]),
            _ci(v["partial"]),
            _ci(share(v["found"] - v["any"]["k"], v["found"])),
            _ci(v["chance"]),
        ]
        for k, v in e["by_type"].items()
    ]
    n_with = e["records_with_entities"]
    paras = [
        f"Personal data found in the reference texts (`{s['entities_mode']}`: spaCy's English model for names, "
        "organisations, places, dates and amounts; regular expressions for e-mail addresses, phone numbers, street "
        "addresses, URLs, numbers and money) and how much of each item came back in the reconstructions: **whole** "
        "(its words in order; a number's digits in any grouping), **in part** (a part that identifies on its own: "
        "one of a person's names, an e-mail's local part or domain, a group of a phone number's digits, a date's "
        "month with its day or year), or not at all. Items past the decoder's reach are not counted here (see the "
        "length section). The last column is the chance level: each record's items checked against the "
        "reconstruction of another record (the one before it); a name that is also a common word (Hunter, "
        'York) comes back in part by chance, so read "in part" against it.',
        f"{n_with} of {s['n']} records hold personal data within the decoder's reach; in "
        f"{_ci(e['records_leaking'])} of them at least one item came back whole or in part (whole: "
        f"{_ci(e['records_with_recovered'])}).",
    ]
    head = ["type", "items found", "back whole", "back in part", "not back", "whole or in part by chance"]
    return Section("Personal data written back by the inversion", paras, table=(head, rows))


def _ci(x: dict[str, Any]) -> str:
    """'12 of 40 (30.0%, 95% CI 18.1-45.4%)' from a share entry (``metrics.share``)."""
    if not x["n"]:
        return "n/a (none)"
    few = f" (only {x['n']}: too few to judge)" if x["n"] < FEW else ""
    return f"{x['k']} of {x['n']} ({_pct(x['share'])}, 95% CI {100 * x['low']:.1f}–{100 * x['high']:.1f}%){few}"


def _headline(s: dict[str, Any]) -> str:
    """The one sentence a reader takes away: records whose personal data leaks, by either attack."""
    i = s.get("identified")
    if i and i["records_with_items"]:
        x = share(i["records_leaking"], i["records_with_items"])
        return (
            f"**Personal data leaks from {_ci(x)} records that hold it**: the inversion wrote an item back, "
            f"whole or in part, in {i['records_inverted']}; an attacker holding the list of the store's own values "
            f"singles out an item of {i['records_identified']} by the known-value attack. Personal data here: "
            "names, organisations, places, e-mail addresses, phone numbers and URLs (the table of items written "
            "back also counts dates, addresses and numbers). Both are lower bounds (see below)."
        )
    e = s["entities"]
    return (
        f"**Personal data leaks from {_ci(e['records_leaking'])} records that hold it**: the inversion wrote an "
        "item back, whole or in part. This is a lower bound (see below)."
    )


def _identified_sections(s: dict[str, Any]) -> list[Section]:
    """'Identified from a list': the insider's lists by type and length band, then each user list."""
    i = s["identified"]
    scorer = "the whitened score fitted for this encoder" if i["scorer"] == "whitened" else "raw cosine"
    paras = [
        "The known-value attack: each candidate value is embedded with the same encoder, and each record's vector "
        f"is compared with every candidate ({scorer}, `unembed identify`). It needs no decoder, only a list of "
        "candidates and the encoder. An item counts as identified when its true value ranks **first** among the "
        "list of its type; top 5 is shown beside it. Intervals are 95% Wilson intervals over the items.",
        "**These figures are a lower bound**: an attacker with a shorter or better-targeted list, or a better "
        "scorer, does better. The insider's list holds every item of that type found in these records (by "
        f"`{s['entities_mode']}`), so its size is the number of distinct items; short lists are padded with "
        "synthetic decoys (of their type where one is known: names, companies, places, e-mail addresses, "
        "phone numbers) to 1,000 values. Personal data here means names, organisations, places, e-mail "
        "addresses, phone numbers and URLs (dates and numbers identify nobody on their own).",
    ]
    head = ["type", "list size", "ranked first", "in top 5", "written back by the inversion (whole or in part)"]
    rows = [[k, e["list_size"], _ci(e["first"]), _ci(e["top5"]), _ci(e["inverted"])] for k, e in i["insider"].items()]
    out = [Section("Identified from a list: the store's own values", paras, table=(head, rows))]
    bands = i["bands"]
    if i["insider"]:
        rows = [[k] + [_ci(e["bands"][b]) if b in e["bands"] else "–" for b in bands] for k, e in i["insider"].items()]
        out.append(
            Section(
                "Identified from a list, by record length",
                [
                    "Items ranked first, by the length of the record's true text in tokens: the longer the record, "
                    "the less one value weighs in its vector."
                ],
                table=(["type", *bands], rows),
            )
        )
    for e in i["lists"]:
        paras = [
            f"List `{e['source']}` ({e['list_size']:,} values, type {e['type']}). Mean probability of each "
            f"record's first candidate: {e['mean_top_probability']:.3f}."
        ]
        if "first" in e:
            paras.append(
                "Records whose text holds a value of the list: the first-ranked candidate is one of its values in "
                f"{_ci(e['first'])}. By length: " + "; ".join(f"{b}: {_ci(x)}" for b, x in e["bands"].items()) + "."
            )
        out.append(Section(f"Identified from the list {e['source'].split(' (')[0]}", paras))
    if i["most_exposed"]:
        rows = [[r["id"], "; ".join(r["identified"])] for r in i["most_exposed"]]
        out.append(
            Section(
                "Records singled out by the known-value attack",
                [f"The {len(rows)} records whose items were identified with the highest probability."],
                table=(["id", "identified (type, probability)"], rows),
            )
        )
    return out


def _pii_exposed_section(s: dict[str, Any]) -> Section:
    recs = s["entities"]["most_exposed"]
    rows = [
        [
            r["id"],
            ", ".join(
                f"{x['text']} ({x['type']}{', in part' if x['degree'] == 'partial' else ''})"
                for x in r["entities"]
                if x["degree"] != "none"
            ),
            r["text"],
            r["reference"],
        ]
        for r in recs
    ]
    return Section(
        "Records whose personal data came back",
        [
            f"The {len(recs)} records with the most items back (an item back whole counts twice one back in part; "
            "then the highest token accuracy)."
        ],
        table=(["id", "items back", "reconstruction", "reference"], rows),
    )


def _candidates_section(s: dict[str, Any]) -> Section:
    rows = [
        [
            Code(k),
            "yes" if k == s["risk_score"] else "",
            _rho(v["spearman_accuracy"]),
            _auc(v["auc_25"], v["positives_25"]),
            _auc(v["auc_entity"], v["positives_entity"]),
        ]
        for k, v in s["risk_candidates"].items()
    ]
    paras = [
        "How well each candidate risk score ranks these records by what was actually recovered: Spearman with token "
        'accuracy, AUC for "at least 25% of tokens recovered" and, over records with personal data, for "an item '
        'of personal data recovered" (0.5 = no better than chance). '
        + "; ".join(f"`{k}`: {d}" for k, d in RISK_DEFINITIONS.items())
        + ".",
    ]
    head = ["score", "used", "Spearman", "AUC ≥25% tokens", "AUC entity"]
    return Section("Risk score candidates", paras, table=(head, rows))


def _auc(x: float, positives: int) -> str:
    if math.isnan(x):
        return _rho(x)
    return f"{x:.3f}" + (f" (from {positives} positive records: too few to judge)" if positives < FEW else "")


def _rho(x: float) -> str:
    return "n/a (one side is the same for every record)" if math.isnan(x) else f"{x:.3f}"


def _calibration_section(s: dict[str, Any]) -> Section:
    t = s["top_decile"]
    paras = [
        f"Spearman rank correlation of the risk score with measured token accuracy: "
        f"**{_rho(s['spearman_risk_vs_accuracy'])}**; with sentence BLEU: **{_rho(s['spearman_risk_vs_bleu'])}** "
        "(1 = the risk score ranks records exactly by how much of their text is recovered).",
        f"Triage: the {t['n']} records with the highest risk score (top 10%) have mean token accuracy "
        f"{_pct(t['token_accuracy_mean'])} (all records: {_pct(t['all_token_accuracy_mean'])}), mean sentence "
        f"BLEU {t['bleu_mean']:.1f} ({t['all_bleu_mean']:.1f}), and {_pct(t['share_at_level'])} of them have "
        f"token accuracy ≥ {_pct(t['level'])} (all records: {_pct(t['all_share_at_level'])}).",
        "Records sorted by risk score in groups of equal size:",
    ]
    head = ["records", "mean risk score", "mean measured token accuracy", "share ≥25% tokens", "mean sentence BLEU"]
    rows = [
        [b["n"], f"{b['risk']:.3f}", _pct(b["token_accuracy"]), _pct(b["share_25"]), f"{b['bleu']:.1f}"]
        for b in s["calibration"]
    ]
    return Section(
        "Calibration: does the risk score predict measured accuracy?", paras, "calibration.png", (head, rows)
    )


def _exposed_section(s: dict[str, Any]) -> Section:
    recs = s["most_exposed"]
    has_ref = bool(recs) and "reference" in recs[0]
    head = ["id", "risk", "reconstruction"] + (["reference", "token acc", "BLEU"] if has_ref else [])
    rows = []
    for r in recs:
        row = [r["id"], f"{r['risk']:.3f}", r["text"]]
        if has_ref:
            row += [r["reference"], _pct(r["token_accuracy"]), f"{r['bleu']:.1f}"]
        rows.append(row)
    return Section(
        "Most exposed records", [f"The {len(recs)} records with the highest risk score."], table=(head, rows)
    )


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}"]
    for sec in sections:
        parts.append(f"## {sec.title}")
        parts += sec.paragraphs
        if sec.image:
            parts.append(f"![{sec.title}]({sec.image})")
        if sec.table:
            parts.append(markdown_table(*sec.table))
    return "\n\n".join(parts) + "\n"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
    "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the paragraphs use: `code` and **bold**."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        bits = out.split(mark)
        out = "".join(b if i % 2 == 0 else f"<{tag}>{b}</{tag}>" for i, b in enumerate(bits))
    return out


def _cell_html(c: Any) -> str:
    text = html.escape(str(c))
    return f"<code>{text}</code>" if isinstance(c, Code) else text


def render_html(title: str, sections: Sequence[Section], folder: Path) -> str:
    """A self-contained page: inline CSS, each PNG (read from ``folder``) embedded as a data URI."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in sec.paragraphs]
        if sec.image:
            data = base64.b64encode((folder / sec.image).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(sec.title)}' src='data:image/png;base64,{data}'>")
        if sec.table:
            head, rows = sec.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _span(values: np.ndarray) -> tuple[float, float]:
    """The range of ``values`` with a 5% margin, inside [0, 1] (a single value gets +-0.05)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(0.05 * (hi - lo), 0.005 if hi > lo else 0.05)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def plot_recovery(s: dict[str, Any], path: Path) -> None:
    """PNG: histogram of risk scores and, with REF, of measured token accuracy."""
    plt = pyplot()
    panels = [(f"risk score ({s['risk_score']})", s["_risk"])]
    if "_scatter" in s:
        panels.append(("measured token accuracy", s["_scatter"][1]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        ax.hist(values, bins=20, range=_span(values), color="#4477aa")
        ax.set_xlabel(label)
        ax.set_ylabel("records")
        ax.grid(alpha=0.3)
    fig.suptitle(f"recovery of {s['n']} records")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_calibration(s: dict[str, Any], path: Path) -> None:
    """PNG: risk score against measured token accuracy (a sample of points), group means, y = x."""
    plt = pyplot()
    risk, acc = s["_scatter"]
    pick = np.random.default_rng(0).permutation(len(risk))[:SCATTER_MAX]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(risk[pick], acc[pick], s=6, alpha=0.25, color="#4477aa", label="records")
    b = s["calibration"]
    ax.plot([x["risk"] for x in b], [x["token_accuracy"] for x in b], "o-", color="#cc3311", label="group means")
    ax.plot([x["risk"] for x in b], [x["share_25"] for x in b], "s-", color="#228833", label="share ≥25% tokens")
    lo, hi = _span(risk)
    ax.plot([lo, hi], [lo, hi], "--", color="#999999", label="y = x")
    ax.set_xlim(lo, hi)  # the scores' own range: on most stores they fill a small part of [0, 1]
    top = max(float(acc.max()), max(x["share_25"] for x in b), hi)
    ax.set_ylim(-0.02, min(1.02, top + 0.05))
    ax.set_xlabel("risk score")
    ax.set_ylabel("measured token accuracy / share")
    auc25 = s["risk_candidates"][s["risk_score"]]["auc_25"]
    auc_text = "n/a (no record ≥25%)" if math.isnan(auc25) else f"{auc25:.3f}"
    rho = s["spearman_risk_vs_accuracy"]
    rho_text = "n/a" if math.isnan(rho) else f"{rho:.3f}"
    ax.set_title(f"{s['risk_score']}: Spearman ρ = {rho_text}, AUC(≥25%) = {auc_text}", fontsize=9)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, s: dict[str, Any]) -> None:
    """recovery.png (+ calibration.png), report.md, report.html and summary.json in ``out``.

    Removes the summary's private arrays (keys starting with '_') once plotted."""
    plot_recovery(s, out / "recovery.png")
    if "_scatter" in s:
        plot_calibration(s, out / "calibration.png")
    for k in [k for k in s if k.startswith("_")]:
        del s[k]
    title = f"Embedding leakage audit: {s['n']} records"
    sections = build_sections(s)
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections, out), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(s, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote the audit report to %s", out / "report.md")
