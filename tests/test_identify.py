"""The known-value attack: candidate lists, the chunked ranking, the cache, calibration, a real store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unembed import identify as kv
from unembed import records
from unembed.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path / "cache"))


class CountingEncoder:
    """Random unit vectors keyed by the text (the same text, the same vector), counting calls."""

    name, dim, weights_sha256 = "counting", 16, "1" * 64

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def encode(self, texts):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += len(texts)
        out = np.array([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


# ---- lists -------------------------------------------------------------------------------------------


def test_a_file_list_is_stripped_deduplicated_and_typed(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("\ufeffAnn Lee\n  Bob Ray \n\nAnn Lee\n", encoding="utf-8")
    c = kv.read_candidates(f"person={p}")
    assert (c.type, c.values, c.source) == ("person", ("Ann Lee", "Bob Ray"), "names.txt")
    assert kv.read_candidates(str(p)).type == "value"
    assert c.sha256 == kv.from_values(["Ann Lee", "Bob Ray"], "x", "y").sha256


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no candidate values"),
        (b"\n \n", "no candidate values"),
        (b"Ann\x00Lee\n", "is binary"),
        ("Ann\nJosé\n".encode("latin-1"), "line 2 is not UTF-8"),
        (b"Ann\n" + b"x" * (kv.MAX_VALUE_CHARS + 1) + b"\n", "txt:2: a line of 301 characters"),
    ],
)
def test_bad_lists_are_one_line_errors_naming_the_file(tmp_path, content, message):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        kv.read_candidates(str(p))
    assert "bad.txt" in str(e.value) and "\n" not in str(e.value)


def test_builtin_lists_say_where_they_come_from():
    first = kv.read_candidates("builtin:first-names")
    assert len(first.values) > 500 and "Faker" in first.source and first.type == "first name"
    assert "Canada" in kv.read_candidates("builtin:countries").values
    assert "London" in kv.read_candidates("builtin:cities").values[:200]
    person = kv.read_candidates("builtin:person")
    assert isinstance(person, kv.FullNames) and len(person) == len(first.values) * len(person.last.values)
    with pytest.raises(ValueError, match="unknown built-in list 'nope'"):
        kv.read_candidates("builtin:nope")


# ---- ranking ------------------------------------------------------------------------------------------


def _brute(q, cand, scorer):
    """Every candidate's standardised score and probability, the straightforward way."""
    mu = cand.mean(0)
    s = scorer.records(q) @ scorer.candidates(cand, mu).T
    stat = s[:, kv.sample_rows(len(cand))]
    z = (s - stat.mean(1, keepdims=True)) / np.maximum(stat.std(1, keepdims=True), 1e-6)
    logits = scorer.a * z.astype(np.float64)
    none = np.full((len(q), 1), np.log(len(cand)) + scorer.b)
    p = np.exp(logits - np.logaddexp.reduce(np.concatenate([logits, none], 1), axis=1, keepdims=True))
    return z, p


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    b=st.integers(1, 6),
    block=st.integers(1, 64),
    k=st.integers(1, 8),
    seed=st.integers(0, 10**6),
    whitened=st.booleans(),
)
def test_chunked_top_k_equals_the_whole_product(n, b, block, k, seed, whitened):
    rng = np.random.default_rng(seed)
    d = 8
    cand = rng.standard_normal((n, d)).astype(np.float32)
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    q = rng.standard_normal((b, d)).astype(np.float32)
    scorer = kv.Scorer.cosine()
    if whitened:
        mean, w = kv.fit_whitening(rng.standard_normal((200, d)))
        scorer = kv.Scorer("whitened", 1.7, -0.3, mean, w)
    old = kv.BLOCK
    kv.BLOCK = block
    try:
        got = kv.rank(q, cand, scorer, k)
    finally:
        kv.BLOCK = old
    z, p = _brute(q, cand, scorer)
    for r in range(b):
        want = np.argsort(-z[r], kind="stable")[: min(k, n)]
        np.testing.assert_allclose(got[r].z, z[r][want], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[r].probability, p[r][got[r].index], rtol=1e-4, atol=1e-7)
        assert 0 <= got[r].none <= 1 and got[r].probability.sum() + got[r].none <= 1 + 1e-6
        if k >= n:  # every candidate returned: with "none" the probabilities sum to one
            assert got[r].probability.sum() + got[r].none == pytest.approx(1, abs=1e-6)


def test_a_record_ranks_the_same_alone_and_in_any_batch():
    enc = CountingEncoder()
    clist = kv.from_values([f"value {i}" for i in range(1500)], "value", "t")
    v = enc.encode([f"record {i}" for i in range(9)])
    together = kv.identify(v, [clist], enc, top_k=4)
    for i in range(9):
        assert kv.identify(v[i], [clist], enc, top_k=4)[0] == together[i]
    assert kv.identify(v[3:7], [clist], enc, top_k=4) == together[3:7]


def test_short_lists_are_padded_with_decoys_that_are_never_returned():
    enc = CountingEncoder()
    clist = kv.from_values(["Ann Lee", "Bob Ray"], "person", "t")
    rows = kv.identify(enc.encode(["a record"]), [clist], enc, top_k=10)
    assert {e["value"] for e in rows[0]} == {"Ann Lee", "Bob Ray"}
    first = kv.builtin("first-names")  # 690 names: padded with decoys that are not on it
    pad = kv.decoys_for(enc, first)
    assert pad.shape == (kv.MIN_LIST - len(first.values), enc.dim)
    pool = kv.decoy_list("first name")
    picked = [v for v in pool.values if v not in set(first.values)][: len(pad)]
    assert len(picked) == len(pad) and not set(picked) & set(first.values)
    assert "Denver" in kv.decoy_list("city").values  # places are padded with places
    assert kv.decoy_list("person").values == kv.decoy_list("person").values  # a fixed seed: one cache file a type


# ---- the cache ----------------------------------------------------------------------------------------


def test_candidate_vectors_are_cached_and_an_interrupted_embedding_resumes(monkeypatch):
    monkeypatch.setattr(kv, "ENCODE_CHUNK", 10)
    clist = kv.from_values([f"v{i}" for i in range(35)], "value", "t")
    with pytest.raises(KeyboardInterrupt):
        kv.candidate_vectors(CountingEncoder(fail_after=20), clist)
    enc = CountingEncoder()
    vecs = kv.candidate_vectors(enc, clist)
    assert enc.calls == 15  # the two finished chunks were kept
    np.testing.assert_allclose(vecs, CountingEncoder().encode(list(clist.values)), atol=1e-3)
    again = CountingEncoder()
    np.testing.assert_array_equal(kv.candidate_vectors(again, clist), vecs)
    assert again.calls == 0


def test_a_stale_or_broken_progress_file_never_yields_unembedded_rows(monkeypatch):
    monkeypatch.setattr(kv, "ENCODE_CHUNK", 10)
    clist = kv.from_values([f"w{i}" for i in range(25)], "value", "t")
    path = kv._cache_path(CountingEncoder(), clist)
    path.parent.mkdir(parents=True)
    path.with_name(path.name + ".done").write_text("20")  # a counter left by another run, no .part
    vecs = kv.candidate_vectors(CountingEncoder(), clist)
    assert not (np.abs(np.asarray(vecs, np.float32)).sum(1) == 0).any()
    for junk in ("", "abc"):
        clist = kv.from_values([f"{junk}x{i}" for i in range(25)], "value", "t")
        path = kv._cache_path(CountingEncoder(), clist)
        path.with_name(path.name + ".done").write_text(junk)
        path.with_name(path.name + ".part").write_bytes(b"not an array")
        enc = CountingEncoder()
        kv.candidate_vectors(enc, clist)
        assert enc.calls == 25


def test_a_type_prefix_is_split_at_the_first_equals_sign(tmp_path):
    odd = tmp_path / "a=b.txt"
    odd.write_text("Ann Lee\n")
    assert kv.read_candidates(f"person={odd}").type == "person"
    assert kv.read_candidates(str(odd)).type == "value"
    with pytest.raises(ValueError, match="give a file after"):
        kv.read_candidates("person=")


# ---- the real encoder ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def names():
    return records.values("person", 300, seed=5)


def test_one_sentence_records_single_out_the_right_name(minilm_encoder, names, tmp_path):
    enc, scorer = kv.load_attacker("default", minilm_encoder)
    recs = records.make_records("person", names[:60], "test", seed=1)
    v = minilm_encoder.encode([r.text for r in recs])
    rows = kv.identify(v, [kv.from_values(names, "person", "t")], enc, scorer, top_k=3)
    first = [row[0]["value"] for row in rows]
    assert np.mean([f == r.value for f, r in zip(first, recs)]) >= 0.95
    # records that hold nobody on the list: no confident false alarm
    other = minilm_encoder.encode(["The weather is lovely today.", "Shares fell sharply after the report."])
    empty = kv.identify(other, [kv.from_values(names, "person", "t")], enc, scorer, top_k=1)
    assert max(r[0]["probability"] for r in empty) < 0.5
    assert np.mean([row[0]["probability"] for row in rows]) > 0.5


def _chroma(path, texts, vectors):
    import chromadb

    col = chromadb.PersistentClient(path=str(path)).create_collection("notes", embedding_function=None)
    col.add(ids=[f"r{i}" for i in range(len(texts))], embeddings=vectors.tolist(), documents=texts)
    return f"chroma://{path}?collection=notes"


def test_identify_on_a_chroma_store_end_to_end(minilm_encoder, names, tmp_path, capsys):
    recs = records.make_records("person", names[:20], "test", seed=2)
    uri = _chroma(tmp_path / "db", [r.text for r in recs], minilm_encoder.encode([r.text for r in recs]))
    lst = tmp_path / "names.txt"
    lst.write_text("\n".join(names) + "\n")
    out = tmp_path / "found.jsonl"
    argv = ["identify", "--vectors", uri, "--candidates", f"person={lst}", "--top", "3", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(20)]
    keys = {"value", "type", "score", "probability", "list"}
    assert all(len(r["candidates"]) == 3 and r["candidates"][0].keys() == keys for r in rows)
    assert rows[0]["candidates"][0]["list"] == "names.txt"
    assert sum(r["candidates"][0]["value"] == x.value for r, x in zip(rows, recs)) >= 19
    capsys.readouterr()
    assert main([*argv, "--no-progress"]) == 2 and "exists" in capsys.readouterr().err
    before = out.read_bytes()
    assert main([*argv, "--no-progress", "--force"]) == 0 and out.read_bytes() == before


def test_the_audit_reports_what_the_insider_list_singles_out(minilm_encoder, tmp_path):
    from unembed.audit import run_audit

    texts = records.personal_records(24, seed=3)
    uri = _chroma(tmp_path / "db", texts, minilm_encoder.encode(texts))
    lst = tmp_path / "names.txt"
    lst.write_text("\n".join(t.split(" ")[1] + " " + t.split(" ")[2] for t in texts if t.startswith("Patient")) + "\n")
    s = run_audit(uri, out=str(tmp_path / "audit"), progress=False, entities="regex", candidates=[f"person={lst}"])
    i = s["identified"]
    assert i["insider"]["email"]["first"]["n"] == 8 and i["insider"]["email"]["first"]["k"] >= 4
    assert i["lists"][0]["first"]["n"] == 4 and i["lists"][0]["first"]["k"] == 4  # the patients' full names
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "Identified from a list" in report and "lower bound" in report and "Personal data leaks from" in report
    lines = (tmp_path / "audit" / "identified.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 24 and first["tokens"] == len(minilm_encoder.tokenizer.tokenize(texts[0]))
    assert first["band"] == ("≤ 31 tokens" if first["tokens"] <= 31 else "32-128 tokens")
