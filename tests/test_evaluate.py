"""The evaluation harness: report format, per-sentence JSONL, sweep, re-ranking costs, data input, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FakeEncoder, decoding, make_model_dir
from unembed import evaluate as ev
from unembed.cli import main
from unembed.inverter import Inversion, Inverter

TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "A dog ran across the busy street.",
    "She reads a book every night before bed.",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm_tokenizer):
    """A random tiny model (L = 16) whose encoder is the 32-d fake one."""
    return make_model_dir(tmp_path_factory.mktemp("ev") / "tiny-fake", minilm_tokenizer, 32, encoder_name="fake")


@pytest.fixture
def enc(minilm_tokenizer):
    return FakeEncoder(minilm_tokenizer)  # a fresh call counter per test


@pytest.fixture
def texts_file(tmp_path):
    p = tmp_path / "texts.txt"
    p.write_text("\n".join([TEXTS[0], "", *TEXTS[1:], "   "]) + "\n")
    return p


def _run(model_dir, enc, **kw):
    kw = {"num_steps": 2, "progress": False, "latency_sample": 2, **kw}
    return ev.run_evaluate(decoding=decoding(model_dir, kw), encoder=enc, **kw)


def test_report_keys_jsonl_and_table(model_dir, enc, texts_file, tmp_path, capsys):
    out = tmp_path / "r" / "report.json"
    report = _run(model_dir, enc, texts=str(texts_file), limit=3, out=str(out))
    saved = json.loads(out.read_text())
    assert list(saved)[: len(ev.REPORT_KEYS)] == list(ev.REPORT_KEYS)
    assert saved == json.loads(json.dumps(report))
    assert saved["n"] == 3 and saved["strategy"] == "confidence" and saved["num_steps"] == 2
    assert saved["forward_passes"] == 2 and saved["encoder_calls"] == 0 and saved["encoder_calls_total"] == 0
    assert saved["measurement_encoder_calls"] == 3 and saved["target_encoder_calls"] == 3
    assert saved["vectors"] == "encoded" and saved["latency_sample"] == 2
    assert 0 <= saved["teacher_forced_masked_accuracy"] <= 1
    assert saved["latency_ms_p50"] <= saved["latency_ms_p95"] and saved["sentences_per_s"] > 0
    for k in ("token_accuracy", "exact_match", "token_f1"):
        assert 0.0 <= saved[k] <= 1.0
    lines = [json.loads(ln) for ln in (tmp_path / "r" / "report.jsonl").read_text().splitlines()]
    assert [r["text"] for r in lines] == TEXTS[:3]
    assert lines[0]["reference"] == "the weather is lovely today."  # through the uncased tokenizer
    for r in lines:
        assert {"reference", "reconstruction", "token_accuracy", "cosine", "bleu", "f1", "exact"} <= set(r)
    stdout = capsys.readouterr().out
    assert "| metric | value |" in stdout and "| token_accuracy |" in stdout and "teacher-forced" in stdout


def _oracle(monkeypatch, inv_texts, enc, tokenizer_fn):
    """Make every Attack return the reference of the nearest known vector (a perfect inverter)."""
    vecs = enc.encode(inv_texts)
    enc.calls = 0

    def perfect(self, vectors, batch_size):
        out = []
        for v in np.asarray(vectors):
            ids = tokenizer_fn(self.inv)[int(np.argmax(vecs @ v))]
            out.append(Inversion(self.inv.tokenizer.decode(ids), ids.tolist(), [1.0] * len(ids)))
        return out

    monkeypatch.setattr(ev.Attack, "__call__", perfect)


def test_perfect_reconstruction_scores_perfectly(model_dir, enc, texts_file, monkeypatch):
    _oracle(monkeypatch, TEXTS, enc, lambda inv: inv.tokenizer.encode(TEXTS))
    r = _run(model_dir, enc, texts=str(texts_file))
    assert r["token_accuracy"] == 1.0 and r["exact_match"] == 1.0 and r["token_f1"] == 1.0
    assert r["bleu"] == pytest.approx(100.0) and r["cosine"] == pytest.approx(1.0)


def test_wrong_reconstruction_scores_low(model_dir, enc, texts_file, monkeypatch):
    shifted = TEXTS[1:] + TEXTS[:1]  # each vector gets another sentence's text
    _oracle(monkeypatch, TEXTS, enc, lambda inv: inv.tokenizer.encode(shifted))
    r = _run(model_dir, enc, texts=str(texts_file))
    assert r["exact_match"] == 0.0 and r["token_accuracy"] < 0.4 and r["bleu"] < 20 and r["cosine"] < 0.9


def test_sweep_table_json_and_plot(model_dir, enc, texts_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    report = _run(model_dir, enc, texts=str(texts_file), limit=2, sweep=True, out=str(out))
    steps = [1, 2, 4, 8, 16]  # 32 is capped at the tiny seq_len of 16
    cells = [(r["strategy"], r["num_steps"]) for r in report["sweep"]]
    assert cells == [(s, k) for s in ("confidence", "euler", "remask", "two-stage") for k in steps]
    for row in report["sweep"]:
        assert set(ev.SWEEP_KEYS) <= set(row) and row["forward_passes"] == row["num_steps"]
    assert json.loads((tmp_path / "report.sweep.json").read_text()) == json.loads(json.dumps(report["sweep"]))
    assert (tmp_path / "report.sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.sweep.md").read_text()
    assert md.count("\n") == 2 + len(cells)
    assert "| strategy | steps |" in capsys.readouterr().out


def test_sweep_steps_capped_at_seq_len():
    assert ev.sweep_steps(32) == [1, 2, 4, 8, 16, 32]
    assert ev.sweep_steps(16) == [1, 2, 4, 8, 16]
    assert ev.sweep_steps(20) == [1, 2, 4, 8, 16, 20]
    assert ev.sweep_steps(3) == [1, 2, 3]


def test_rerank_counts_encoder_calls(model_dir, enc, texts_file, tmp_path):
    r = _run(model_dir, enc, texts=str(texts_file), rerank=3, num_steps=4)
    assert r["encoder_calls"] == 3 and r["forward_passes"] == 12
    assert r["encoder_calls_total"] == 3 * len(TEXTS)  # counted by the encoder itself
    assert r["measurement_encoder_calls"] == len(TEXTS) and r["rerank"] == 3


def test_rerank_keeps_the_closest_candidate(model_dir, enc):
    inv = Inverter.load(str(model_dir), encoder=enc)
    vectors = enc.encode(TEXTS)
    plain = ev.Attack(inv, "confidence", 4, seed=0)(vectors, 8)
    best = ev.Attack(inv, "confidence", 4, seed=0, rerank=4)(vectors, 8)
    cos = lambda invs: ev.cosine(enc.encode([x.text for x in invs]), vectors)
    assert (cos(best) >= cos(plain) - 1e-6).all()  # candidate 0 is the plain decode


def test_attack_rejects_rerank_one(model_dir, enc):
    inv = Inverter.load(str(model_dir), encoder=enc)
    with pytest.raises(ValueError, match="rerank"):
        ev.Attack(inv, "confidence", 2, rerank=1)


def test_teacher_forced_accuracy_is_seeded(model_dir, enc):
    inv = Inverter.load(str(model_dir), encoder=enc)
    ids, vectors = inv.tokenizer.encode(TEXTS), enc.encode(TEXTS)
    a = ev.teacher_forced_accuracy(inv, ids, vectors, seed=3, batch_size=2)
    assert a == ev.teacher_forced_accuracy(inv, ids, vectors, seed=3, batch_size=2)
    assert set(a) == {"teacher_forced_masked_accuracy", "teacher_forced_masked_accuracy_to_eos"}


# ---- prepared data -------------------------------------------------------------------------------


class FakeData:
    def __init__(self, vectors, name="fake", dim=32):
        self.manifest = {"encoder": {"name": name, "dim": dim, "weights_sha256": "0" * 64, "pooling": "mean"}}
        self.vectors = vectors.astype(np.float16)

    def rows(self, split):
        return np.array([3, 0, 2]) if split == "test" else np.array([], dtype=np.int64)

    def texts(self, rows):
        return [TEXTS[i] for i in rows]


def test_data_uses_stored_vectors_of_the_same_encoder(model_dir, enc, tmp_path, monkeypatch):
    stored = enc.encode(TEXTS)[::-1].copy()  # deliberately not the texts' own vectors
    monkeypatch.setattr(ev, "_open_data", lambda path: FakeData(stored))
    r = _run(model_dir, enc, data=str(tmp_path), split="test", limit=2, out=str(tmp_path / "rep.json"))
    assert r["vectors"] == "stored" and r["target_encoder_calls"] == 0 and r["n"] == 2
    lines = [json.loads(ln) for ln in (tmp_path / "rep.jsonl").read_text().splitlines()]
    assert [(x["row"], x["text"]) for x in lines] == [(3, TEXTS[3]), (0, TEXTS[0])]
    inv = Inverter.load(str(model_dir), encoder=enc)
    t = ev.load_targets(inv, None, str(tmp_path), "test", None)
    assert t.texts == [TEXTS[3], TEXTS[0], TEXTS[2]]  # row order kept
    np.testing.assert_allclose(t.vectors, stored[[3, 0, 2]].astype(np.float16), atol=1e-6)


def test_data_of_another_encoder_is_re_embedded(model_dir, enc, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "_open_data", lambda path: FakeData(np.zeros((4, 32)), name="minilm"))
    inv = Inverter.load(str(model_dir), encoder=enc)
    t = ev.load_targets(inv, None, str(tmp_path), "test", 2)
    assert t.vector_source == "encoded" and t.target_encoder_calls == 2
    np.testing.assert_allclose(t.vectors, enc.encode([TEXTS[3], TEXTS[0]]))
    with pytest.raises(ValueError, match="no rows in split 'train'"):
        ev.load_targets(inv, None, str(tmp_path), "train", None)


def test_real_prepared_folder(model_dir, enc, tmp_path):
    prepare = pytest.importorskip("unembed.prepare")
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(f"{t} It happened on day number {i}." for i, t in enumerate(TEXTS * 3)) + "\n")
    prepare.run_prepare(str(src), "fake", tmp_path / "data", seq_len=16, progress=False, encoder_obj=enc)
    data = prepare.PreparedData(tmp_path / "data")
    split = max(("train", "validation", "test"), key=lambda s: len(data.rows(s)))
    r = _run(model_dir, enc, data=str(tmp_path / "data"), split=split, limit=3)
    assert r["vectors"] == "stored" and r["n"] == min(3, len(data.rows(split)))


# ---- errors and the CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"texts": "missing.txt"}, "not found"),
        ({"texts": "EMPTY"}, "no non-blank lines"),
        ({"texts": "T", "limit": 0}, "--limit"),
        ({"texts": "T", "rerank": 1}, "--rerank"),
        ({"texts": "T", "batch_size": 0}, "batch size must be between 1"),
        ({"texts": "T", "num_steps": 99}, "steps must be between 1 and 16"),
        ({"texts": "T", "num_steps": 0}, "steps must be at least 1, got 0"),
        ({"texts": "T", "strategy": "beam"}, "unknown strategy"),
        ({}, "exactly one of"),
        ({"data": "missing-dir"}, "data folder not found"),
    ],
)
def test_bad_input_raises_value_error(model_dir, enc, texts_file, tmp_path, kw, match):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    kw = {k: {"T": str(texts_file), "EMPTY": str(empty)}.get(v, v) for k, v in kw.items()}
    with pytest.raises(ValueError, match=match):
        _run(model_dir, enc, **kw)


@pytest.mark.parametrize(
    "extra",
    [
        ["--texts", "nope.txt"],
        ["--texts", "T", "--limit", "0"],
        ["--texts", "T", "--rerank", "-2"],
        ["--texts", "EMPTY"],
    ],
)
def test_cli_bad_input_exits_2(tiny_model_dir, texts_file, tmp_path, capsys, extra):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    extra = [{"T": str(texts_file), "EMPTY": str(empty)}.get(a, a) for a in extra]
    try:
        code = main(["evaluate", "--model", str(tiny_model_dir), *extra])
    except SystemExit as exc:  # argparse refuses --limit 0 and --rerank -2 while parsing
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unembed evaluate: error:") and "\n" not in err


def test_cli_evaluate_with_the_real_encoder(tiny_model_dir, texts_file, tmp_path, capsys):
    out = tmp_path / "cli" / "report.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--texts",
            str(texts_file),
            "--limit",
            "2",
            "--steps",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(ev.REPORT_KEYS) <= set(report) and report["n"] == 2 and report["encoder"] == "minilm"
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 2
    assert "| token_accuracy |" in capsys.readouterr().out
