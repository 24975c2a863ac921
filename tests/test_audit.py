"""The audit: every input format, reference forms, report sections, resume, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FakeEncoder, decoding, make_model_dir
from unembed import audit, audit_report, audit_risk, metrics, stores
from unembed.settings import Decoding

TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "A dog ran across the busy street.",
    "She reads a book every night before bed.",
    "The train was late again this morning.",
    "We planted tomatoes in the garden.",
    "His phone number ends in seven.",
    "The meeting moved to Thursday afternoon.",
    "Coffee prices rose sharply last year.",
    "My password is written on a sticky note.",
]
IDS = [f"rec-{i}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def enc(minilm_tokenizer):
    return FakeEncoder(minilm_tokenizer)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm_tokenizer):
    """A random tiny model (L = 16) for the 32-d fake encoder."""
    return make_model_dir(tmp_path_factory.mktemp("audit") / "tiny-fake", minilm_tokenizer, 32, encoder_name="fake")


@pytest.fixture(scope="module")
def vectors(enc):
    return enc.encode(TEXTS)


def write_vectors(path, vecs, ids=IDS):
    """Write vecs [N, D] (and ids) in the format given by path's suffix."""
    if path.suffix == ".npy":
        np.save(path, vecs)
    elif path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"id": i, "embedding": v.tolist()}) + "\n\n" for i, v in zip(ids, vecs, strict=True))
        )
    else:
        table = pa.table({"id": ids, "embedding": [v.tolist() for v in vecs]})
        pq.write_table(table, path, row_group_size=3)
    return path


def write_ref(path, ids=IDS, texts=TEXTS):
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts, strict=True)))
    return path


def run(model_dir, enc, vectors, out, **kw):
    kw = {"num_steps": 2, "batch_size": 3, "chunk_size": 4, "progress": False, **kw}
    return audit.run_audit(str(vectors), out=str(out), decoding=decoding(model_dir, kw), encoder=enc, **kw)


def read_records(out):
    return [json.loads(line) for line in (out / "reconstructions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def with_ref(tmp_path_factory, model_dir, enc, vectors):
    d = tmp_path_factory.mktemp("with-ref")
    vec = write_vectors(d / "v.jsonl", vectors)
    ref = write_ref(d / "ref.jsonl")
    summary = run(model_dir, enc, vec, d / "out", texts=str(ref))
    return d / "out", summary


# ---- formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_reconstructions(suffix, tmp_path, model_dir, enc, vectors, with_ref):
    vec = write_vectors(tmp_path / f"v{suffix}", vectors)
    run(model_dir, enc, vec, tmp_path / "out")
    recs = read_records(tmp_path / "out")
    want_ids = list(range(len(TEXTS))) if suffix == ".npy" else IDS
    assert [r["id"] for r in recs] == want_ids
    assert [r["text"] for r in recs] == [r["text"] for r in read_records(with_ref[0])]
    assert "token_accuracy" not in recs[0]


def test_jsonl_without_ids_numbers_records(tmp_path, model_dir, enc, vectors):
    vec = tmp_path / "v.jsonl"
    vec.write_text("".join(json.dumps({"embedding": v.tolist()}) + "\n" for v in vectors[:3]))
    run(model_dir, enc, vec, tmp_path / "out")
    assert [r["id"] for r in read_records(tmp_path / "out")] == [0, 1, 2]


def test_iter_chunks_skip_and_limit(tmp_path, vectors):
    for suffix in (".npy", ".jsonl", ".parquet"):
        p = write_vectors(tmp_path / f"v{suffix}", vectors)
        chunks = list(stores.iter_chunks(stores.open_source(p), size=4, limit=9, skip=4))
        assert [len(c.ids) for c in chunks] == [4, 1]
        np.testing.assert_allclose(np.concatenate([c.vectors for c in chunks]), vectors[4:9], rtol=1e-6)


# ---- records and report ----------------------------------------------------------------------------


def test_records_carry_every_risk_score_and_confidence_up_to_eos(with_ref, minilm_tokenizer):
    out, _ = with_ref
    for r in read_records(out):
        assert 1 <= len(r["confidence"]) == len(r["tokens"]) <= 16
        assert r["decoder_confidence"] == pytest.approx(np.mean(r["confidence"]), abs=1e-4)
        scores = audit_risk.risk_scores(r["decoder_confidence"], r["cosine"], len(r["tokens"]))
        assert r["risk"] == scores[audit_risk.RISK_SCORE]
        assert 0 <= r["combined"] <= 1 and -1 <= r["cosine"] <= 1
        assert all(0.0 <= c <= 1.0 for c in r["confidence"])
        assert "[SEP]" not in r["tokens"][:-1]  # the record stops at the first EOS
        assert {"reference", "token_accuracy", "reference_tokens", "bleu", "exact", "cosine"} <= set(r)


def test_report_sections_with_reference(with_ref):
    out, s = with_ref
    md = (out / "report.md").read_text()
    for title in ("## Overview", "## Measured leakage", "## Recovery", "## Most exposed records", "## Calibration"):
        assert title in md
    assert "![Recovery by risk score](recovery.png)" in md and "Spearman" in md and "Triage: the 1 records" in md
    for name in ("recovery.png", "calibration.png", "report.html", "summary.json", "progress.json"):
        assert (out / name).is_file()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page and "src='http" not in page
    assert s["n"] == len(TEXTS) and sum(b["n"] for b in s["risk_bands"]) == len(TEXTS)
    assert [b["band"] for b in s["risk_bands"]][-1] == "top 10%"  # quantile bands spread the records
    assert 0 <= s["token_accuracy"] <= 1 and 0 <= s["exact_match"] <= 1 and 0 <= s["bleu"] <= 100
    assert -1 <= s["cosine"] <= 1 and sum(b["n"] for b in s["calibration"]) == len(TEXTS)
    assert s["top_decile"]["n"] == 1 and "spearman_risk_vs_bleu" in s
    risks = [r["risk"] for r in s["most_exposed"]]
    assert risks == sorted(risks, reverse=True) and len(risks) == len(TEXTS)
    assert max(r["risk"] for r in read_records(out)) == risks[0]
    assert "confidence" not in s["most_exposed"][0]
    assert json.loads((out / "summary.json").read_text())["n"] == len(TEXTS)


def test_the_html_report_has_no_stray_markdown(with_ref):
    """What a reader sees in the browser: the page's text (tags removed) holds no Markdown marks;
    code cells of tables are <code>, bold is <b>."""
    import re

    out, _ = with_ref
    page = (out / "report.html").read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))
    assert "**" not in text and "`" not in text and "](" not in text and "|---" not in text
    assert "<td><code>combined</code></td>" in page and "<b>" in page


def test_report_without_reference(tmp_path, model_dir, enc, vectors):
    s = run(model_dir, enc, write_vectors(tmp_path / "v.npy", vectors), tmp_path / "out", limit=5)
    md = (tmp_path / "out" / "report.md").read_text()
    assert s["n"] == 5 and "token_accuracy" not in s
    assert "## Recovery" in md and "## Most exposed records" in md
    assert "Calibration" not in md and "Measured leakage" not in md
    assert not (tmp_path / "out" / "calibration.png").exists()
    assert (tmp_path / "out" / "report.html").read_text().count("data:image/png") == 1


def test_txt_reference_in_row_order(tmp_path, model_dir, enc, vectors, with_ref):
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(TEXTS) + "\n\n")
    run(model_dir, enc, write_vectors(tmp_path / "v.npy", vectors), tmp_path / "out", texts=str(ref))
    got = [(r["reference"], r["token_accuracy"]) for r in read_records(tmp_path / "out")]
    assert got == [(r["reference"], r["token_accuracy"]) for r in read_records(with_ref[0])]


def test_txt_reference_with_limit_uses_its_first_lines(tmp_path, model_dir, enc, vectors):
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(TEXTS) + "\n")
    s = run(model_dir, enc, write_vectors(tmp_path / "v.npy", vectors), tmp_path / "out", texts=str(ref), limit=3)
    assert s["n"] == 3 and [r["id"] for r in read_records(tmp_path / "out")] == [0, 1, 2]


def test_reference_texts_found_by_id_in_any_order(tmp_path, model_dir, enc, vectors, with_ref):
    ref = write_ref(tmp_path / "ref.jsonl", IDS[::-1] + ["extra"], TEXTS[::-1] + ["not in the dump"])
    run(model_dir, enc, write_vectors(tmp_path / "v.parquet", vectors), tmp_path / "out", texts=str(ref))
    assert [r["reference"] for r in read_records(tmp_path / "out")] == [
        r["reference"] for r in read_records(with_ref[0])
    ]


def test_calibration_bins_and_top_decile():
    risk = np.arange(20) / 20
    acc = np.r_[np.zeros(18), 0.5, 1.0]
    bleu = 100 * acc
    bins = audit_risk.calibration_bins(risk, acc, bleu, bins=4)
    assert [b["n"] for b in bins] == [5] * 4 and bins[-1]["token_accuracy"] == pytest.approx(0.3)
    assert bins[0]["risk"] < bins[-1]["risk"] and bins[-1]["bleu"] == pytest.approx(30)
    top = audit_risk.top_decile(risk, acc, bleu)
    assert top["n"] == 2 and top["token_accuracy_mean"] == 0.75 and top["share_at_level"] == 1.0
    assert top["all_share_at_level"] == 0.1 and top["all_bleu_mean"] == pytest.approx(7.5)


def test_spearman():
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert metrics.spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(
        np.corrcoef([1.5, 1.5, 3.5, 3.5], [1, 2, 3, 4])[0, 1]
    )
    assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))


# ---- resume --------------------------------------------------------------------------------------------


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, model_dir, enc, vectors, monkeypatch):
    vec, ref = write_vectors(tmp_path / "v.npy", vectors), write_ref(tmp_path / "r.jsonl", range(len(TEXTS)))
    run(model_dir, enc, vec, tmp_path / "whole", texts=str(ref))
    real, calls = audit.invert_chunk, []

    def dies_on_third(*a, **k):
        calls.append(len(a[1]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audit, "invert_chunk", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(model_dir, enc, vec, tmp_path / "cut", texts=str(ref))
    progress = json.loads((tmp_path / "cut" / "progress.json").read_text())
    assert progress["done"] == 8 and not progress["complete"]
    with open(tmp_path / "cut" / "reconstructions.jsonl", "a") as fh:
        fh.write('{"id": 8, "text": "half a chun')  # a chunk that was being written when killed
    monkeypatch.setattr(audit, "invert_chunk", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    run(model_dir, enc, vec, tmp_path / "cut", texts=str(ref))
    assert calls == [4, 4, 2, 2]  # the rerun inverted only the last chunk
    whole, cut = (
        (tmp_path / "whole" / "reconstructions.jsonl").read_text(),
        (tmp_path / "cut" / "reconstructions.jsonl"),
    )
    assert cut.read_text() == whole
    run(model_dir, enc, vec, tmp_path / "cut", texts=str(ref))  # done: only the report is rewritten
    assert calls == [4, 4, 2, 2]
    with pytest.raises(ValueError, match="other arguments.*num_steps 2 -> 3"):
        run(model_dir, enc, vec, tmp_path / "cut", texts=str(ref), num_steps=3)


def test_an_interrupted_audit_keeps_every_batch_it_showed_as_done(tmp_path, model_dir, enc, vectors, monkeypatch):
    vec = write_vectors(tmp_path / "v.npy", vectors)
    real, calls = audit.invert_chunk, []

    def dies_on_second(*a, **k):
        calls.append(len(a[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audit, "invert_chunk", dies_on_second)
    with pytest.raises(KeyboardInterrupt):  # the default chunk: one batch
        audit.run_audit(
            str(vec),
            out=str(tmp_path / "o"),
            encoder=enc,
            decoding=Decoding(str(model_dir), steps=2, batch_size=3),
            progress=False,
        )
    assert json.loads((tmp_path / "o" / "progress.json").read_text())["done"] == 3
    assert len(read_records(tmp_path / "o")) == 3


# ---- bad input ----------------------------------------------------------------------------------------


def _bad_cases(tmp, vectors):
    """(name, vectors path, ref path or None, expected message) for each kind of bad input."""
    nan = vectors.copy()
    nan[2, 5] = np.nan
    zero = vectors.copy()
    zero[1] = 0
    dup = write_vectors(tmp / "dup.jsonl", vectors[:3], ["a", "b", "a"])
    broken = tmp / "broken.jsonl"
    broken.write_text('{"id": 1, "embedding": [1, 2]}\nnot json\n')
    ragged = tmp / "ragged.jsonl"
    ragged.write_text('{"embedding": [1, 2]}\n{"embedding": [1, 2, 3]}\n')
    pq.write_table(pa.table({"id": [1], "vector": [[1.0, 2.0]]}), tmp / "nocol.parquet")
    pq.write_table(pa.table({"embedding": ["a"]}), tmp / "strcol.parquet")
    np.save(tmp / "flat.npy", vectors[0])
    np.save(tmp / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "v.csv").write_text("1,2\n")
    good = write_vectors(tmp / "good.jsonl", vectors)
    short_txt = tmp / "short.txt"
    short_txt.write_text("\n".join(TEXTS[:-1]))
    return [
        (
            "dimension",
            write_vectors(tmp / "d16.npy", vectors[:, :16]),
            None,
            "dimension 16, model tiny-fake expects 32",
        ),
        ("nan", write_vectors(tmp / "nan.parquet", nan), None, "record id 'rec-2' has NaN"),
        ("zero", write_vectors(tmp / "zero.npy", zero), None, "record id 1 is an all-zero vector"),
        ("duplicate", dup, None, "duplicate record id 'a'"),
        ("broken", broken, None, r"broken.jsonl:2: need a JSON object with an 'embedding'"),
        ("ragged", ragged, None, "embedding has 3 values, earlier ones 2"),
        ("no column", tmp / "nocol.parquet", None, "no 'embedding' column"),
        ("string column", tmp / "strcol.parquet", None, "must be a list of numbers"),
        ("1-d", tmp / "flat.npy", None, r"need a numeric \[N, D\] array"),
        ("objects", tmp / "objects.npy", None, "holds Python objects .* never unpickles"),
        ("empty", tmp / "empty.jsonl", None, "no vectors"),
        ("suffix", tmp / "v.csv", None, "unsupported vectors file v.csv"),
        ("missing", tmp / "nothere.npy", None, "vectors file not found"),
        ("ref ids", good, write_ref(tmp / "ref.jsonl", IDS[:-2], TEXTS[:-2]), "misses the text of 2 of 10 record ids"),
        ("ref rows", good, short_txt, "short.txt has 9 non-blank lines but there are 10 vectors"),
        ("ref dup", good, write_ref(tmp / "refdup.jsonl", IDS + ["rec-0"], TEXTS + ["x"]), "duplicate id 'rec-0'"),
        ("ref missing", good, tmp / "nothere.jsonl", "reference file not found"),
        ("ref suffix", good, tmp / "v.csv", "unsupported reference file"),
    ]


def test_bad_input_is_a_one_line_value_error(tmp_path, model_dir, enc, vectors):
    for name, vec, ref, message in _bad_cases(tmp_path, vectors):
        out = tmp_path / f"out-{name}"
        with pytest.raises(ValueError, match=message) as info:
            run(model_dir, enc, vec, out, texts=str(ref) if ref else None)
        assert "\n" not in str(info.value), name
        assert not out.exists(), name  # nothing is written before the input is known to be good


def test_bad_arguments(tmp_path, model_dir, enc, vectors):
    vec = write_vectors(tmp_path / "v.npy", vectors)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        ({"strategy": "nope"}, "unknown strategy 'nope'"),
        ({"num_steps": 99}, "steps must be between 1 and 16"),
        ({"limit": 0}, "--limit must be a positive"),
        ({"batch_size": 0}, "batch size must be between 1 and 4096, got 0"),
        ({"out": tmp_path / "full"}, "is not empty and holds no run of `unembed audit`"),
    ]
    for kw, message in cases:
        kw = {"out": tmp_path / "o", **kw}
        with pytest.raises(ValueError, match=message):
            run(model_dir, enc, vec, **kw)
    with pytest.raises(ValueError, match="model 'no-such-model' not found"):
        audit.run_audit(str(vec), out=str(tmp_path / "o"), encoder=enc, decoding=Decoding("no-such-model"))


# ---- the attacker named in the report ---------------------------------------------------------------


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_attacker_profile_counts_trained_parameters_and_reads_the_training_record(tmp_path, model_dir, enc):
    from unembed.checkpoint import load_model
    from unembed.inverter import Inverter
    from unembed.precision import int8_available

    folder = _copy_model(model_dir, tmp_path / "m")
    trained = load_model(folder)[1].num_params()
    for precision in ("fp32", "int8") if int8_available() else ("fp32",):
        # int8 linears hold no nn.Parameters: the count is still the trained model's
        inv = Inverter.load(str(folder), encoder=enc, sample={"precision": precision})
        p = audit.attacker_profile(inv, folder)
        assert p["parameters"] == trained
        assert p["training_sequences"] is None and p["reference_token_accuracy"] is None
    # the older GPU job's record: its best run's steps times the folder's batch size
    job = {"best": "r", "runs": {"r": {"val_decode_acc": 0.05, "log": [{"train_step": 10}]}}}
    (folder / "training-job.json").write_text(json.dumps(job))
    p = audit.attacker_profile(inv, folder)
    assert p["training_sequences"] == 10 * inv.cfg.train.batch_size and p["reference_token_accuracy"] == 0.05
    # today's GPU job writes job.json beside the model it exports: its own count of sequences
    (folder / "job.json").write_text(json.dumps({"sequences_seen": 12_345_678, "last_eval": {"val_decode_acc": 0.4}}))
    p = audit.attacker_profile(inv, folder)
    assert (p["training_sequences"], p["reference_token_accuracy"]) == (12_345_678, 0.4)
    # the whole history, written when weights are shipped, wins over the jobs' partial ones
    record = {"sequences": 2_722_688, "reference": {"set": "1,000 validation sentences", "token_accuracy": 0.0968}}
    (folder / "training.json").write_text(json.dumps(record))
    p = audit.attacker_profile(inv, folder)
    assert (p["training_sequences"], p["reference_set"], p["reference_token_accuracy"]) == (
        2_722_688,
        "1,000 validation sentences",
        0.0968,
    )
    section = audit_report._attacker_section({"attacker": p, "n": 3, "token_accuracy": 0.1})
    assert "trained on 2,722,688 sequences" in section.paragraphs[0] and "9.7%" in section.paragraphs[0]


@pytest.mark.parametrize(
    "record",
    [
        "[1, 2]",
        "{not json",
        '{"sequences": -1}',
        '{"sequences": 0}',
        '{"sequences": "many"}',
        '{"sequences": true}',
        '{"sequences": 5, "reference": {"set": "s", "token_accuracy": 2}}',
        '{"sequences": 5, "reference": {"set": "s", "token_accuracy": true}}',
        '{"sequences": 5, "reference": {"token_accuracy": 0.1}}',
        '{"sequences": 5, "reference": {"set": " ", "token_accuracy": 0.1}}',
        '{"sequences": 5, "reference": "x"}',
        '{"sequences": 5, "reference": 0}',
    ],
)
def test_a_broken_training_record_fails_before_any_vector_is_inverted(tmp_path, model_dir, enc, vectors, record):
    folder = _copy_model(model_dir, tmp_path / "m")
    (folder / "training.json").write_text(record)
    vec = write_vectors(tmp_path / "v.npy", vectors)
    with pytest.raises(ValueError, match="training.json"):
        audit.run_audit(
            str(vec), out=str(tmp_path / "out"), encoder=enc, decoding=Decoding(str(folder)), progress=False
        )
    assert not (tmp_path / "out").exists()
