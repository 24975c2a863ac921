"""Sentences -> decoder token ids + encoder vectors on disk, resumable; and the reader for them.

Layout of a prepared folder OUT::

    manifest.json   format "unembed-prepared/1": encoder, tokenizer, seq_len, counts, splits, stats,
                    the arguments it was made with, complete (bool)
    texts.jsonl     {"text", "source", "split"} per row, in row order
    ids.npy         int32 [N, L]   decoder targets (text.DecoderTokenizer)
    vectors.npy     float16 [N, D] encoder vectors (float32 with dtype="float32")
    split.npy       uint8 [N]      0 train, 1 validation, 2 test (sentences.split_of)
    progress.json   the arguments and how far the run got (rewritten atomically)

Stage 1 writes texts, ids and splits (redone whole if interrupted; it takes seconds to minutes).
Stage 2 embeds chunk by chunk: each chunk's vectors are flushed before progress.json records it,
so a killed run continues at the first unrecorded chunk. A chunk is always embedded whole, in the
same batches, so the files of a resumed run are byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unembed import corpus, files, sentences
from unembed.text import DecoderTokenizer

log = logging.getLogger(__name__)

FORMAT = "unembed-prepared/1"
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
DTYPES = ("float16", "float32")
BLOCK = 4096  # sentences tokenised per call in stage 1


# ---------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------


def _iter_texts(path: Path, skip: int = 0) -> Iterator[str]:
    """The `text` of each line of texts.jsonl, from row `skip` on."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= skip:
                yield json.loads(line)["text"]


def _take(it: Iterator[str], n: int) -> list[str]:
    return [t for _, t in zip(range(n), it, strict=False)]


# ---------------------------------------------------------------------------------------------
# Arguments and the claim on OUT
# ---------------------------------------------------------------------------------------------


def _check_args(args: dict) -> None:
    if args["seq_len"] < 2:
        raise ValueError(f"seq_len must be at least 2, got {args['seq_len']}")
    if args["batch_size"] < 1 or args["chunk_size"] < 1:
        raise ValueError(f"batch_size and chunk_size must be positive, got {args['batch_size']}, {args['chunk_size']}")
    if args["limit"] is not None and args["limit"] < 1:
        raise ValueError(f"limit must be positive, got {args['limit']}")
    if args["dtype"] not in DTYPES:
        raise ValueError(f"unknown vector dtype {args['dtype']!r}: use one of {', '.join(DTYPES)}")


def _claim(out: Path, args: dict) -> dict:
    """Create OUT or resume it: returns the progress record (`files.claim`)."""
    return files.claim(out, args, "unembed prepare", lambda: {"args": args, "stage": "texts", "chunks_done": 0})[0]


def _source_fingerprint(source: str) -> dict | None:
    """Size and sha256 of a file source (None for builtin/c4): a resume must read the same file."""
    path = Path(source)
    if source in ("builtin", "c4") or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _check_same_source(out: Path, state: dict, source: str) -> None:
    recorded, now = state.get("source_file"), _source_fingerprint(source)
    if recorded is not None and recorded != now:
        size = now["size"] if now else "missing"
        raise ValueError(
            f"source {source} changed since {out} was started (size {recorded['size']} -> {size}, "
            "or its sha256): restore the original file or use another --out"
        )


OWN_FILES = ("progress.json", "manifest.json", "texts.jsonl", "ids.npy", "split.npy", "vectors.npy")


def _remove_unfinished(out: Path) -> None:
    """After a failure before any chunk was embedded: remove what this preparation wrote, so the
    corrected command starts afresh instead of meeting 'made with other arguments'."""
    for name in OWN_FILES:
        for path in (out / name, out / f"{name}.tmp"):
            path.unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


# ---------------------------------------------------------------------------------------------
# Stage 1: texts, ids, splits, manifest
# ---------------------------------------------------------------------------------------------


def _write_texts(out: Path, args: dict, tok: DecoderTokenizer, progress: bool) -> tuple[Counter, Counter]:
    """Stream the corpus into texts.jsonl; returns (counts by source, counts by split).

    Texts longer than seq_len - 1 tokens are cut to fit (``tokens`` keeps the full count), so the
    vector is made from exactly the text the decoder is trained to produce.
    """
    by_source: Counter[str] = Counter()
    by_split: Counter[str] = Counter()
    tmp = out / "texts.jsonl.tmp"
    sentences = corpus.iter_sentences(args["source"], args["limit"], skip_missing=args["skip_missing"])
    with open(tmp, "w", encoding="utf-8") as fh:
        block: list[tuple[str, str]] = []
        for item in tqdm(sentences, desc="sentences", unit="sent", disable=not progress, total=args["limit"]):
            block.append(item)
            if len(block) == BLOCK:
                _write_block(fh, block, tok, by_source, by_split)
                block = []
        _write_block(fh, block, tok, by_source, by_split)
    if not by_source:
        tmp.unlink()
        raise ValueError(f"empty corpus: source {args['source']!r} gave no sentences")
    os.replace(tmp, out / "texts.jsonl")
    return by_source, by_split


def _write_block(
    fh, block: list[tuple[str, str]], tok: DecoderTokenizer, by_source: Counter, by_split: Counter
) -> None:
    if not block:
        return
    cut, counts = tok.fit([text for _, text in block])
    for (name, text), short, n_tokens in zip(block, cut, counts):
        split = sentences.split_of(text)
        rec = {"text": short, "source": name, "split": split, "tokens": n_tokens}
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        by_source[name] += 1
        by_split[split] += 1


def _write_ids(out: Path, n: int, tok: DecoderTokenizer, progress: bool) -> np.ndarray:
    """texts.jsonl -> ids.npy and split.npy; returns the untruncated token count of every row."""
    tmp_ids = out / "ids.npy.tmp"
    ids = np.lib.format.open_memmap(tmp_ids, mode="w+", dtype=np.int32, shape=(n, tok.seq_len))
    lengths = np.zeros(n, dtype=np.int32)
    split = np.zeros(n, dtype=np.uint8)
    with (
        open(out / "texts.jsonl", encoding="utf-8") as fh,
        tqdm(total=n, desc="tokenising", unit="sent", disable=not progress) as bar,
    ):
        for start in range(0, n, BLOCK):
            rows = [json.loads(fh.readline()) for _ in range(min(BLOCK, n - start))]
            texts = [r["text"] for r in rows]
            ids[start : start + len(rows)] = tok.encode(texts)
            lengths[start : start + len(rows)] = [r["tokens"] for r in rows]
            split[start : start + len(rows)] = [SPLIT_CODES[r["split"]] for r in rows]
            bar.update(len(rows))
    ids.flush()
    del ids
    os.replace(tmp_ids, out / "ids.npy")
    with open(out / "split.npy.tmp", "wb") as fh:
        np.save(fh, split)
    os.replace(out / "split.npy.tmp", out / "split.npy")
    return lengths


def length_stats(lengths: np.ndarray, seq_len: int) -> dict:
    """Token counts (without EOS) -> mean, percentiles, max and the share cut to fit seq_len."""
    q = [round(float(x), 2) for x in np.percentile(lengths, [50, 90, 95, 99])]
    return {
        "mean": round(float(lengths.mean()), 3),
        "p50": q[0],
        "p90": q[1],
        "p95": q[2],
        "p99": q[3],
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths > seq_len - 1).mean()), 6),
    }


def _encoder_record(enc) -> dict:
    return {
        "name": enc.name,
        "source": str(enc.source),
        "pooling": enc.pooling,
        "dim": int(enc.dim),
        "weights_sha256": enc.weights_sha256,
    }


def _tokenizer_record(tok: DecoderTokenizer) -> dict:
    s = tok.specials
    return {
        "name_or_path": str(getattr(tok.hf, "name_or_path", "")),
        "vocab_size": s.vocab_size,
        "mask_id": s.mask_id,
        "pad_id": s.pad_id,
        "eos_id": s.eos_id,
    }


def _stage_texts(out: Path, args: dict, enc, tok: DecoderTokenizer, progress: bool) -> dict:
    """Stage 1: writes texts, ids, splits and an incomplete manifest; returns the manifest."""
    by_source, by_split = _write_texts(out, args, tok, progress)
    n = sum(by_source.values())
    lengths = _write_ids(out, n, tok, progress)
    manifest = {
        "format": FORMAT,
        "encoder": _encoder_record(enc),
        "tokenizer": _tokenizer_record(tok),
        "seq_len": args["seq_len"],
        "vector_dtype": args["dtype"],
        "count": n,
        "counts_by_source": dict(by_source),
        "split_counts": {s: by_split[s] for s in SPLIT_CODES},
        "token_length": length_stats(lengths, args["seq_len"]),
        "args": args,
        "complete": False,
    }
    files.write_json(out / "manifest.json", manifest)
    log.info("prepared %d sentences from %s: %s", n, args["source"], dict(by_source))
    return manifest


# ---------------------------------------------------------------------------------------------
# Stage 2: vectors, chunk by chunk
# ---------------------------------------------------------------------------------------------


def _embed_chunk(enc, texts: Sequence[str], batch_size: int, bar) -> np.ndarray:
    """Encode one chunk in batches of similar length (less padding); rows back in input order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        vecs = np.asarray(enc.encode([texts[i] for i in idx]), dtype=np.float32)
        if vecs.shape != (len(idx), enc.dim):
            raise ValueError(f"encoder {enc.name!r} returned shape {vecs.shape}, expected {(len(idx), enc.dim)}")
        out[idx] = vecs
        bar.update(len(idx))
    return out


def _stage_vectors(out: Path, args: dict, enc, manifest: dict, state: dict, progress: bool) -> None:
    """Stage 2: embed every chunk not yet recorded in progress.json."""
    n, chunk = manifest["count"], args["chunk_size"]
    path = out / "vectors.npy"
    shape = (n, manifest["encoder"]["dim"])
    if state["chunks_done"] == 0 or not path.is_file():
        state["chunks_done"] = 0
        vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(args["dtype"]), shape=shape)
    else:
        vectors = np.load(path, mmap_mode="r+")
    done = state["chunks_done"] * chunk
    texts = _iter_texts(out / "texts.jsonl", skip=done)
    started, t0 = done, time.perf_counter()
    with tqdm(total=n, initial=done, desc="embedding", unit="sent", disable=not progress, smoothing=0.05) as bar:
        while done < n:
            batch = _take(texts, min(chunk, n - done))
            vectors[done : done + len(batch)] = _embed_chunk(enc, batch, args["batch_size"], bar)
            vectors.flush()
            done += len(batch)
            state["chunks_done"] += 1
            files.write_json(out / "progress.json", state)
    elapsed = time.perf_counter() - t0
    if done > started:
        log.info(
            "embedded %d sentences in %.1f s (%.1f sentences/s)",
            done - started,
            elapsed,
            (done - started) / max(elapsed, 1e-9),
        )


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _check_same_encoder(manifest: dict, enc, out: Path) -> None:
    """A resumed run must embed with exactly the encoder the finished chunks used."""
    if manifest["encoder"] != _encoder_record(enc):
        raise ValueError(
            f"{out} was started with encoder {manifest['encoder']['name']!r} "
            f"(weights {manifest['encoder']['weights_sha256'][:12]}), not the one given now"
        )


def run_prepare(
    source: str,
    encoder: str,
    out: str | Path,
    limit: int | None = None,
    seq_len: int = 32,
    batch_size: int = 64,
    chunk_size: int = 4096,
    device: str = "cpu",
    dtype: str = "float16",
    progress: bool = True,
    *,
    encoder_obj=None,
    skip_missing: bool = False,
) -> dict:
    """Prepare `source` (see corpus.py) for training with `encoder` into folder `out`; returns the
    manifest. Rerunning the same call resumes an interrupted run (or returns at once when done);
    other arguments into a used folder raise ValueError. device and progress do not change the
    output. encoder_obj: an already built encoder (anything with encode, dim, tokenizer, name,
    source, pooling, weights_sha256) used instead of loading `encoder` by name.
    """
    out = Path(out)
    args = {
        "source": source,
        "encoder": encoder,
        "limit": limit,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "dtype": dtype,
        "skip_missing": skip_missing,
    }
    _check_args(args)
    corpus.documents(source, skip_missing)  # fail on a bad or missing source before creating anything
    if encoder_obj is None:
        from unembed.devices import check_device

        check_device(device)
    fresh = not (out / "progress.json").is_file()
    state = _claim(out, args)
    if state["stage"] == "done":
        return files.read_json(out / "manifest.json")
    if fresh:
        state["source_file"] = _source_fingerprint(source)
        files.write_json(out / "progress.json", state)
    else:
        _check_same_source(out, state, source)
    try:
        return _run(out, args, state, encoder_obj, device, progress)
    except Exception:
        if state["chunks_done"] == 0:
            _remove_unfinished(out)
        raise


def _run(out: Path, args: dict, state: dict, encoder_obj, device: str, progress: bool) -> dict:
    encoder, batch_size, seq_len = args["encoder"], args["batch_size"], args["seq_len"]
    if encoder_obj is None:
        from unembed.encoders import load_encoder

        encoder_obj = load_encoder(encoder, batch_size=batch_size, device=device)
    tok = DecoderTokenizer(encoder_obj.tokenizer, seq_len)
    if state["stage"] == "texts":
        manifest = _stage_texts(out, args, encoder_obj, tok, progress)
        state.update(stage="vectors", chunks_done=0)
        files.write_json(out / "progress.json", state)
    else:
        manifest = files.read_json(out / "manifest.json")
        _check_same_encoder(manifest, encoder_obj, out)
    _stage_vectors(out, args, encoder_obj, manifest, state, progress)
    manifest["complete"] = True
    files.write_json(out / "manifest.json", manifest)
    state["stage"] = "done"
    files.write_json(out / "progress.json", state)
    return manifest


def write_split_texts(
    corpus_path: str | Path, split: str, out: str | Path, encoder: str = "minilm", seq_len: int = 32
) -> int:
    """One split of a corpus JSONL -> a text file, each sentence cut to the decoder length.

    These are exactly the texts (and cuts) that :func:`run_prepare` stores for that split, so
    ``unembed evaluate --texts OUT`` measures what ``--data DIR --split SPLIT`` would. Returns the count.
    """
    from unembed.encoders import load_tokenizer

    if split not in sentences.SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(sentences.SPLITS)}")
    tok = DecoderTokenizer(load_tokenizer(encoder), seq_len)
    with open(corpus_path) as fh:
        texts = [t for t in (json.loads(line)["text"] for line in fh if line.strip()) if sentences.split_of(t) == split]
    if not texts:
        raise ValueError(f"{corpus_path} holds no sentence of the {split} split")
    cut, _ = tok.fit(texts)
    Path(out).write_text("\n".join(cut) + "\n")
    return len(cut)


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


class PreparedData:
    """A prepared folder opened read-only: ``ids`` int32 [N, L] and ``vectors`` [N, D] memmaps,
    ``split`` uint8 [N], ``manifest`` dict. Nothing is loaded into memory up front."""

    def __init__(self, path: str | Path, allow_incomplete: bool = False):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise ValueError(f"not a prepared data folder (no manifest.json): {self.path}")
        self.manifest = files.read_json(manifest_path)
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.path}: unknown format {self.manifest.get('format')!r}, expected {FORMAT}")
        if not self.manifest.get("complete") and not allow_incomplete:
            raise ValueError(
                f"{self.path} is an incomplete preparation: rerun the same unembed prepare command to finish it"
            )
        self.ids = np.load(self.path / "ids.npy", mmap_mode="r")
        self.split = np.load(self.path / "split.npy", mmap_mode="r")
        vec_path = self.path / "vectors.npy"
        self.vectors = np.load(vec_path, mmap_mode="r") if vec_path.is_file() else None
        self._offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def seq_len(self) -> int:
        return int(self.manifest["seq_len"])

    def rows(self, split: str | None = None, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """int64 row indices of `split` ('train' | 'validation' | 'test', None for all), this
        rank's share when sharded across `world_size` processes (rows rank, rank + world_size...)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if split is None:
            idx = np.arange(len(self), dtype=np.int64)
        elif split in SPLIT_CODES:
            idx = np.flatnonzero(np.asarray(self.split) == SPLIT_CODES[split]).astype(np.int64)
        else:
            raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLIT_CODES)}")
        return idx[rank::world_size]

    def _line_offsets(self) -> np.ndarray:
        """Byte offset of each line start in texts.jsonl (plus the end), found once."""
        if self._offsets is None:
            with (
                open(self.path / "texts.jsonl", "rb") as fh,
                mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm,
            ):
                ends = np.flatnonzero(np.frombuffer(mm, dtype=np.uint8) == 10) + 1
            self._offsets = np.concatenate([[0], ends]).astype(np.int64)
        return self._offsets

    def records(self, rows: Sequence[int] | np.ndarray) -> list[dict]:
        """The texts.jsonl records ({text, source, split}) of `rows`."""
        offsets = self._line_offsets()
        out = []
        with open(self.path / "texts.jsonl", "rb") as fh:
            for r in np.asarray(rows, dtype=np.int64).reshape(-1):
                if not 0 <= r < len(self):
                    raise ValueError(f"row {r} outside 0..{len(self) - 1}")
                fh.seek(offsets[r])
                out.append(json.loads(fh.read(offsets[r + 1] - offsets[r])))
        return out

    def texts(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The sentences of `rows`, in that order."""
        return [rec["text"] for rec in self.records(rows)]

    def check_compatible(
        self, encoder_name: str, vocab_size: int, seq_len: int, mask_id: int, pad_id: int, eos_id: int
    ) -> None:
        """ValueError naming every difference between this data and what a model expects."""
        enc, tok = self.manifest["encoder"], self.manifest["tokenizer"]
        wanted = {
            "encoder": (enc["name"], encoder_name),
            "vocab_size": (tok["vocab_size"], vocab_size),
            "seq_len": (self.seq_len, seq_len),
            "mask_id": (tok["mask_id"], mask_id),
            "pad_id": (tok["pad_id"], pad_id),
            "eos_id": (tok["eos_id"], eos_id),
        }
        diffs = [
            f"{k} {have!r} in the data, {want!r} in the model" for k, (have, want) in wanted.items() if have != want
        ]
        if self.seq_len != seq_len:  # the vectors embed the text cut at the data's length: cut again
            diffs.append(f"prepare the data with --seq-len {seq_len} or train with model.seq_len={self.seq_len}")
        if diffs:
            raise ValueError(f"prepared data {self.path} does not match the model: {'; '.join(diffs)}")


# ---------------------------------------------------------------------------------------------
# Clean sentences at GPU speed (the GPU job)
# ---------------------------------------------------------------------------------------------


def _write_tokens(tok: DecoderTokenizer, texts, sources, splits: np.ndarray, out: Path) -> tuple[list, list]:
    """ids.npy, split.npy and texts.jsonl of clean sentences, tokenised in blocks; returns the cut
    texts and their token counts."""
    cut, lengths = [], []
    for start in range(0, len(texts), BLOCK * 16):
        c, n = tok.fit(list(texts[start : start + BLOCK * 16]))
        cut += c
        lengths += n
    ids = np.concatenate([tok.encode(cut[i : i + BLOCK * 16]) for i in range(0, len(cut), BLOCK * 16)])
    np.save(out / "ids.npy", ids)
    np.save(out / "split.npy", np.asarray(splits, dtype=np.uint8))
    names = {v: k for k, v in SPLIT_CODES.items()}
    with files.atomic(out / "texts.jsonl") as fh:
        for text, name, code, n in zip(cut, sources, splits.tolist(), lengths):
            rec = {"text": text, "source": name, "split": names[code], "tokens": n}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return cut, lengths


def prepare_clean(
    texts: Sequence[str],
    sources: Sequence[str],
    splits: np.ndarray,
    encoder: str,
    out: str | Path,
    seq_len: int = 32,
    *,
    pooling: str = "",
    device: str = "cpu",
    batch_size: int = 0,
    dtype: str = "float16",
) -> dict:
    """Already clean, de-duplicated sentences (a GPU pack: corpus filtering and split_of were done
    when it was made) -> a prepared folder in the format above, in one pass: tokenised in blocks
    by the fast tokenizer, embedded sorted by length at a large batch, under bf16 autocast on CUDA.
    ``splits``: uint8 codes (SPLIT_CODES) per sentence. Not resumable: it takes seconds on a GPU.
    Returns the manifest, with the seconds of each stage under ``timing``.
    """
    import torch

    from unembed.encoders import load_encoder

    out = Path(out)
    if not len(texts) == len(sources) == len(splits) or not len(texts):
        raise ValueError(f"need as many sources and splits as texts (got {len(texts)}, {len(sources)}, {len(splits)})")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder {out} is not empty: use another one")
    out.mkdir(parents=True, exist_ok=True)
    batch_size = batch_size or (1024 if device.startswith("cuda") else 64)
    timing, t0 = {}, time.perf_counter()
    enc = load_encoder(encoder, pooling=pooling, batch_size=batch_size, device=device)
    tok = DecoderTokenizer(enc.tokenizer, seq_len)
    timing["load_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    cut, lengths = _write_tokens(tok, texts, sources, splits, out)
    timing["tokenize_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    with torch.autocast(enc.device.type, dtype=torch.bfloat16, enabled=enc.device.type == "cuda"):
        vectors = _embed_chunk(enc, cut, batch_size, tqdm(disable=True))
    np.save(out / "vectors.npy", vectors.astype(np.dtype(dtype)))
    timing["embed_s"] = round(time.perf_counter() - t0, 2)
    names = {v: k for k, v in SPLIT_CODES.items()}
    by_split = Counter(names[c] for c in splits.tolist())
    args = {
        "source": "pack",
        "encoder": encoder,
        "limit": None,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "chunk_size": len(texts),
        "dtype": dtype,
        "skip_missing": False,
    }
    manifest = {
        "format": FORMAT,
        "encoder": _encoder_record(enc),
        "tokenizer": _tokenizer_record(tok),
        "seq_len": seq_len,
        "vector_dtype": dtype,
        "count": len(texts),
        "counts_by_source": dict(Counter(sources)),
        "split_counts": {s: by_split[s] for s in SPLIT_CODES},
        "token_length": length_stats(np.asarray(lengths), seq_len),
        "args": args,
        "complete": True,
        "timing": timing,
    }
    files.write_json(out / "manifest.json", manifest)
    files.write_json(out / "progress.json", {"args": args, "stage": "done", "chunks_done": 1})
    log.info("prepared %d clean sentences: %s", len(texts), timing)
    return manifest
