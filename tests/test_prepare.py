"""prepare.py: layout, manifest, resume byte-identity, argument checks and the PreparedData reader."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from unembed import sentences
from unembed.prepare import FORMAT, PreparedData, length_stats, run_prepare
from unembed.text import DecoderTokenizer

FILES = ("manifest.json", "texts.jsonl", "ids.npy", "vectors.npy", "split.npy", "progress.json")


class HashEncoder:
    """Deterministic: each text's vector comes from its sha256 alone. fail_after: on that call,
    stop as a killed run does (KeyboardInterrupt: a crash before the first chunk is cleaned up)."""

    name, source, pooling, dim = "fake", "fake-weights", "mean", 8
    weights_sha256 = "0" * 64

    def __init__(self, tokenizer, fail_after: int | None = None):
        self.tokenizer = tokenizer
        self.fail_after = fail_after
        self.calls = 0
        self.texts_seen = 0

    def encode(self, texts):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.texts_seen += len(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], np.uint8) for t in texts]
        vecs = np.asarray(rows, np.float32).reshape(len(texts), self.dim) - 127.5
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


ADJ = ["old", "quiet", "clever", "tired", "happy", "brave"]
NOUN = ["farmer", "teacher", "sailor", "doctor", "painter", "baker", "soldier"]
PLACE = ["market", "harbour", "village square"]


@pytest.fixture(scope="module")
def source_file(tmp_path_factory) -> Path:
    """A .txt source of 126 distinct natural sentences (plus a junk line and a duplicate)."""
    lines = [
        f"The {a} {n} walked slowly across the {p} on a cold winter morning."
        for a, n, p in itertools.product(ADJ, NOUN, PLACE)
    ]
    path = tmp_path_factory.mktemp("src") / "sentences.txt"
    path.write_text("\n".join(lines + ["<junk>", lines[0].upper()]) + "\n")
    return path


def _prepare(source, out, tok, **kw):
    kw.setdefault("encoder_obj", HashEncoder(tok))
    return run_prepare(str(source), "fake", out, seq_len=16, batch_size=5, chunk_size=16, progress=False, **kw)


def test_layout_and_manifest(source_file, tmp_path, minilm_tokenizer):
    manifest = _prepare(source_file, tmp_path / "out", minilm_tokenizer)
    out = tmp_path / "out"
    assert all((out / f).is_file() for f in FILES)
    n = 126
    assert manifest["format"] == FORMAT and manifest["complete"] is True and manifest["count"] == n
    assert manifest["encoder"] == {
        "name": "fake",
        "source": "fake-weights",
        "pooling": "mean",
        "dim": 8,
        "weights_sha256": "0" * 64,
    }
    tok = DecoderTokenizer(minilm_tokenizer, 16)
    assert manifest["tokenizer"]["vocab_size"] == tok.specials.vocab_size == 30522
    assert {k: manifest["tokenizer"][k] for k in ("mask_id", "pad_id", "eos_id")} == {
        "mask_id": 103,
        "pad_id": 0,
        "eos_id": 102,
    }
    assert manifest["seq_len"] == 16 and manifest["vector_dtype"] == "float16"
    assert manifest["counts_by_source"] == {"sentences": n}
    assert sum(manifest["split_counts"].values()) == n
    stats = manifest["token_length"]
    assert set(stats) == {"mean", "p50", "p90", "p95", "p99", "max", "truncated_share"}

    ids = np.load(out / "ids.npy")
    vectors = np.load(out / "vectors.npy")
    split = np.load(out / "split.npy")
    records = [json.loads(line) for line in (out / "texts.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in records]
    assert ids.dtype == np.int32 and ids.shape == (n, 16)
    assert vectors.dtype == np.float16 and vectors.shape == (n, 8)
    assert split.dtype == np.uint8 and split.shape == (n,)
    np.testing.assert_array_equal(ids, tok.encode(texts))
    np.testing.assert_allclose(vectors, HashEncoder(None).encode(texts), atol=1e-3)
    assert [r["split"] for r in records] == [sentences.split_of(t) for t in texts]
    assert [("train", "validation", "test")[c] for c in split] == [r["split"] for r in records]
    lengths = np.array([len(minilm_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])
    assert stats == length_stats(lengths, 16)


def test_length_stats():
    stats = length_stats(np.array([10, 20, 31, 32]), seq_len=32)
    assert stats["max"] == 32 and stats["mean"] == 23.25 and stats["p50"] == 25.5
    assert stats["truncated_share"] == 0.25  # 31 tokens + EOS fit in 32 positions; 32 do not


def test_float32_vectors(source_file, tmp_path, minilm_tokenizer):
    _prepare(source_file, tmp_path / "out", minilm_tokenizer, dtype="float32", limit=20)
    vectors = np.load(tmp_path / "out" / "vectors.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (20, 8)


@pytest.mark.parametrize("fail_after", [0, 5, 9])
def test_resume_after_kill_is_byte_identical(source_file, tmp_path, minilm_tokenizer, fail_after):
    _prepare(source_file, tmp_path / "whole", minilm_tokenizer)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt, match="killed"):
        _prepare(source_file, killed, minilm_tokenizer, encoder_obj=HashEncoder(minilm_tokenizer, fail_after))
    done = json.loads((killed / "progress.json").read_text())["chunks_done"]
    assert done == fail_after // 4  # 4 batches of 5 per chunk of 16 rows
    with pytest.raises(ValueError, match="incomplete"):
        PreparedData(killed)
    assert not PreparedData(killed, allow_incomplete=True).manifest["complete"]

    again = HashEncoder(minilm_tokenizer)
    _prepare(source_file, killed, minilm_tokenizer, encoder_obj=again)
    assert again.texts_seen == 126 - 16 * done  # finished chunks are not embedded again
    for name in FILES:
        assert (killed / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_kill_during_tokenising_restarts_that_stage(source_file, tmp_path, minilm_tokenizer, monkeypatch):
    from unembed import prepare

    _prepare(source_file, tmp_path / "whole", minilm_tokenizer)
    real = prepare._write_ids

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "_write_ids", dies)
    with pytest.raises(KeyboardInterrupt):
        _prepare(source_file, tmp_path / "killed", minilm_tokenizer)
    monkeypatch.setattr(prepare, "_write_ids", real)
    _prepare(source_file, tmp_path / "killed", minilm_tokenizer)
    for name in FILES:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_finished_run_returns_at_once(source_file, tmp_path, minilm_tokenizer):
    first = _prepare(source_file, tmp_path / "out", minilm_tokenizer)
    idle = HashEncoder(minilm_tokenizer, fail_after=0)
    assert _prepare(source_file, tmp_path / "out", minilm_tokenizer, encoder_obj=idle) == first


def test_other_arguments_or_encoder_into_used_folder(source_file, tmp_path, minilm_tokenizer):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _prepare(source_file, out, minilm_tokenizer, encoder_obj=HashEncoder(minilm_tokenizer, 5))
    with pytest.raises(ValueError, match="seq_len 16 -> 24"):
        run_prepare(
            str(source_file),
            "fake",
            out,
            seq_len=24,
            batch_size=5,
            chunk_size=16,
            progress=False,
            encoder_obj=HashEncoder(minilm_tokenizer),
        )
    other = HashEncoder(minilm_tokenizer)
    other.weights_sha256 = "1" * 64
    with pytest.raises(ValueError, match="started with encoder 'fake'"):
        _prepare(source_file, out, minilm_tokenizer, encoder_obj=other)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        _prepare(source_file, stranger, minilm_tokenizer)


def test_bad_inputs(tmp_path, minilm_tokenizer):
    with pytest.raises(ValueError, match="not found"):
        _prepare(tmp_path / "missing.txt", tmp_path / "a", minilm_tokenizer)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="unknown corpus source"):
        _prepare("somewhere", tmp_path / "b", minilm_tokenizer)
    junk = tmp_path / "junk.txt"
    junk.write_text("no\n<html>\n")
    with pytest.raises(ValueError, match="empty corpus"):
        _prepare(junk, tmp_path / "c", minilm_tokenizer)
    with pytest.raises(ValueError, match="dtype"):
        _prepare(junk, tmp_path / "d", minilm_tokenizer, dtype="int8")
    with pytest.raises(ValueError, match="no manifest"):
        PreparedData(tmp_path)


def test_prepared_data_reader(source_file, tmp_path, minilm_tokenizer):
    _prepare(source_file, tmp_path / "out", minilm_tokenizer)
    data = PreparedData(tmp_path / "out")
    assert len(data) == 126 and data.seq_len == 16
    assert isinstance(data.ids, np.memmap) and isinstance(data.vectors, np.memmap)
    assert not data.ids.flags.writeable
    parts = [data.rows(s) for s in ("train", "validation", "test")]
    assert all(p.dtype == np.int64 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(126))
    shards = [data.rows("train", rank=r, world_size=3) for r in range(3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), parts[0])
    records = [json.loads(line) for line in (tmp_path / "out" / "texts.jsonl").read_text().splitlines()]
    assert data.texts([5, 0, 125]) == [records[i]["text"] for i in (5, 0, 125)]
    np.testing.assert_array_equal(data.ids[5], DecoderTokenizer(minilm_tokenizer, 16).encode(data.texts([5]))[0])
    with pytest.raises(ValueError, match="unknown split"):
        data.rows("dev")
    with pytest.raises(ValueError, match="row 126"):
        data.texts([126])


def test_check_compatible(source_file, tmp_path, minilm_tokenizer):
    _prepare(source_file, tmp_path / "out", minilm_tokenizer)
    data = PreparedData(tmp_path / "out")
    data.check_compatible("fake", 30522, 16, mask_id=103, pad_id=0, eos_id=102)
    with pytest.raises(ValueError, match="encoder 'fake' in the data, 'minilm' in the model"):
        data.check_compatible("minilm", 30522, 16, 103, 0, 102)
    with pytest.raises(ValueError, match="vocab_size 30522 in the data, 8192 in the model; seq_len 16"):
        data.check_compatible("fake", 8192, 32, 103, 0, 102)
    with pytest.raises(ValueError, match="eos_id 102 in the data, 2 in the model"):
        data.check_compatible("fake", 30522, 16, 103, 0, 2)
    with pytest.raises(ValueError, match=r"prepare the data with --seq-len 32 or train with model\.seq_len=16"):
        data.check_compatible("fake", 30522, 32, 103, 0, 102)  # e.g. --config small on data for tiny


def test_real_minilm_end_to_end(source_file, tmp_path):
    from unembed.encoders import load_encoder

    enc = load_encoder("minilm")
    manifest = run_prepare(
        str(source_file),
        "minilm",
        tmp_path / "out",
        limit=12,
        seq_len=32,
        batch_size=5,
        chunk_size=8,
        progress=True,
        encoder_obj=enc,
    )
    assert manifest["encoder"]["weights_sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert manifest["encoder"]["dim"] == 384 and manifest["token_length"]["truncated_share"] == 0
    data = PreparedData(tmp_path / "out")
    expected = enc.encode(data.texts(range(12)))
    cos = (np.asarray(data.vectors, np.float32) * expected).sum(1)
    assert cos.min() > 0.999


class BrokenEncoder(HashEncoder):
    """An encoder that fails on its first batch (a bug or a bad device, not a kill)."""

    def encode(self, texts):
        raise RuntimeError("encoder broke")


def test_failure_before_the_first_chunk_leaves_nothing_that_refuses_the_fix(source_file, tmp_path, minilm_tokenizer):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="encoder broke"):
        _prepare(source_file, out, minilm_tokenizer, encoder_obj=BrokenEncoder(minilm_tokenizer))
    assert not out.exists()
    with pytest.raises(ValueError):  # an unknown encoder (loaded by name) fails the same way
        run_prepare(str(source_file), "no/such-encoder-here", out, seq_len=16, progress=False)
    assert not out.exists()
    junk = tmp_path / "junk.txt"
    junk.write_text("no\n<html>\n")
    with pytest.raises(ValueError, match="empty corpus"):
        _prepare(junk, out, minilm_tokenizer)
    assert not out.exists()
    fixed = run_prepare(
        str(source_file), "fake", out, seq_len=24, progress=False, encoder_obj=HashEncoder(minilm_tokenizer)
    )
    assert fixed["complete"] and fixed["seq_len"] == 24


def test_a_source_changed_between_kill_and_resume_is_refused(tmp_path, minilm_tokenizer, source_file):
    source = tmp_path / "s.txt"
    source.write_bytes(source_file.read_bytes())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _prepare(source, out, minilm_tokenizer, encoder_obj=HashEncoder(minilm_tokenizer, 5))
    original = source.read_bytes()
    source.write_bytes(original.replace(b"cold winter", b"warm summer"))  # same size, other bytes
    with pytest.raises(ValueError, match="changed since"):
        _prepare(source, out, minilm_tokenizer)
    source.write_bytes(original)
    assert _prepare(source, out, minilm_tokenizer)["complete"]
