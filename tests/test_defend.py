"""Defenses, adaptive maps, recall@10 and the defend report on a tiny model and a small prepared folder."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from conftest import FakeEncoder, decoding, make_model_dir
from unembed import defend as df
from unembed.prepare import run_prepare

ADJ = ["old", "quiet", "clever", "tired", "happy"]
NOUN = ["farmer", "teacher", "sailor", "doctor"]
PLACE = ["market", "harbour", "village square", "river bank"]
DIM = 32
DEFENSES = ["noise:0.05", "quantize:int8", "quantize:binary", "truncate:8", "rotate"]


@pytest.fixture(scope="module")
def enc(minilm_tokenizer):
    return FakeEncoder(minilm_tokenizer, dim=DIM)


@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_tokenizer):
    """A tiny random model for the fake encoder and a second one 'trained' with cond_noise."""
    d = tmp_path_factory.mktemp("defend-models")
    plain = make_model_dir(d / "tiny-fake", minilm_tokenizer, DIM, encoder_name="fake")
    noisy = make_model_dir(
        d / "tiny-noisy", minilm_tokenizer, DIM, encoder_name="fake", seed=1, overrides=["train.cond_noise=0.05"]
    )
    other = make_model_dir(d / "tiny-16", minilm_tokenizer, 16, encoder_name="fake")
    return plain, noisy, other


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, enc):
    """A prepared folder of 80 distinct sentences with the fake encoder's vectors."""
    d = tmp_path_factory.mktemp("defend-data")
    lines = [f"The {a} {n} walked to the {p} early." for a, n, p in itertools.product(ADJ, NOUN, PLACE)]
    (d / "s.txt").write_text("\n".join(lines) + "\n")
    run_prepare(str(d / "s.txt"), "fake", d / "prep", seq_len=16, encoder_obj=enc, progress=False)
    return d / "prep"


def run(models, enc, data_dir, out, **kw):
    kw = {"split": "all", "num_steps": 2, "progress": False, "encoder": enc, **kw}
    defenses = kw.pop("defenses", DEFENSES)
    return df.run_defend(str(data_dir), defenses, out=str(out), decoding=decoding(models[0], kw), **kw)


@pytest.fixture(scope="module")
def report(tmp_path_factory, models, enc, data_dir):
    out = tmp_path_factory.mktemp("defend-out")
    return out, run(models, enc, data_dir, out, attack_k=[4, 16, 64], noise_model=str(models[1]))


# ---- defenses ------------------------------------------------------------------------------------------


def unit_rows(n=50, d=DIM, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "spec, kind, param",
    [
        ("noise:0.01", "noise", 0.01),
        ("quantize:int8", "quantize", "int8"),
        ("quantize:binary", "quantize", "binary"),
        ("truncate:8", "truncate", 8),
        ("rotate", "rotate", None),
    ],
)
def test_parse_defense(spec, kind, param):
    d = df.parse_defense(spec, DIM)
    assert (d.kind, d.param, d.spec) == (kind, param, spec)
    assert d.linear == (kind in ("rotate", "truncate"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("blur", "bad defense 'blur'"),
        ("noise:x", "bad defense"),
        ("noise:-1", "SIGMA must be a positive"),
        ("noise:nan", "SIGMA must be a positive"),
        ("quantize:int4", "bad defense"),
        ("truncate:32", "from 1 to 31"),
        ("truncate:0", "from 1 to 31"),
        ("truncate:a", "from 1 to 31"),
        ("rotate:3", "bad defense"),
    ],
)
def test_parse_defense_rejects(spec, message):
    with pytest.raises(ValueError, match=message):
        df.parse_defense(spec, DIM)


def test_defenses_do_what_they_say():
    x = unit_rows()
    noisy = df.parse_defense("noise:0.1", DIM).apply(x, 0)
    assert np.std(noisy - x) == pytest.approx(0.1, rel=0.1)
    q = df.parse_defense("quantize:int8", DIM).apply(x, 0)
    assert np.array_equal(q, np.round(q)) and np.abs(q).max(1).tolist() == [127.0] * len(x)
    b = df.parse_defense("quantize:binary", DIM).apply(x, 0)
    assert set(np.unique(b)) <= {-1.0, 1.0} and np.array_equal(b > 0, x > 0)
    t = df.parse_defense("truncate:8", DIM).apply(x, 0)
    assert t.shape == (len(x), 8) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    rot = df.parse_defense("rotate", DIM)
    r = rot.apply(x, 0)
    assert np.allclose(r @ r.T, x @ x.T, atol=1e-5) and not np.allclose(r, x, atol=0.1)
    assert np.array_equal(r, rot.apply(x, 0)) and not np.allclose(r, rot.apply(x, 1))


def test_procrustes_and_least_squares_undo_linear_maps():
    x = unit_rows(64)
    q = df.secret_rotation(DIM, np.random.default_rng(5))
    assert np.allclose(q @ q.T, np.eye(DIM), atol=1e-10)
    r = df.fit_procrustes(x @ q, x)
    assert np.allclose(r @ r.T, np.eye(DIM), atol=1e-8) and np.allclose(x @ q @ r, x, atol=1e-5)
    m = np.random.default_rng(6).standard_normal((DIM, DIM))
    w = df.fit_least_squares(x @ m, x)  # noiseless pairs: leave-one-out picks the weakest ridge
    assert np.allclose(x @ m @ w, x, atol=1e-3)
    t = x[:, :8] + 0.01 * np.random.default_rng(7).standard_normal((64, 8))
    ridge, plain = df.fit_least_squares(t[:12], x[:12]), np.linalg.lstsq(t[:12], x[:12], rcond=None)[0]
    assert np.linalg.norm(ridge) < np.linalg.norm(plain)  # few noisy pairs: it shrinks
    few = df.fit_procrustes((x @ q)[:4], x[:4])  # k < D: still orthogonal, fits the leaked pairs
    assert np.allclose(few @ few.T, np.eye(DIM), atol=1e-8) and np.allclose((x @ q)[:4] @ few, x[:4], atol=1e-5)


def test_recall_at_k():
    x = unit_rows(60)
    assert df.recall_at_k(x, x) == 1.0
    assert df.recall_at_k(x, df.parse_defense("rotate", DIM).apply(x, 0)) == pytest.approx(1.0)
    assert df.recall_at_k(x, unit_rows(60, seed=9)) < 0.5
    assert df.recall_at_k(x[:5], x[:5]) == 1.0  # k capped at n - 1
    with pytest.raises(ValueError, match="at least 2"):
        df.recall_at_k(x[:1], x[:1])


# ---- the report -----------------------------------------------------------------------------------------


def test_table_rows_and_attackers(report):
    _, r = report
    assert (r["n"], r["n_leak_pool"], r["n_scored"], r["attack_k"]) == (80, 40, 40, [4, 16, 40])
    rows = r["rows"]
    assert (rows[0]["defense"], rows[0]["attacker"], rows[0]["recall@10"]) == ("none", "naive", 1.0)
    got = [(x["defense"], x["attacker"], x["k"]) for x in rows]
    assert got == [
        ("none", "naive", None),
        ("noise:0.05", "naive", None),
        ("noise:0.05", "noise-aware model", None),
        ("quantize:int8", "naive", None),
        ("quantize:binary", "naive", None),
        ("truncate:8", "naive", None),
        *[("truncate:8", "ridge least squares", k) for k in (4, 16, 40)],
        ("rotate", "naive", None),
        *[("rotate", "procrustes", k) for k in (4, 16, 40)],
    ]
    for x in rows:
        if x["token_accuracy"] is not None:
            assert 0 <= x["token_accuracy"] <= 1 and 0 <= x["exact_match"] <= 1 and 0 <= x["bleu"] <= 100
        assert 0 <= x["recall@10"] <= 1
    by = {(x["defense"], x["attacker"], x["k"]): x for x in rows}
    trunc = by[("truncate:8", "naive", None)]
    assert trunc["token_accuracy"] is None and trunc["note"].startswith("n/a: dimension 8")
    assert "cond_noise=0.05" in by[("noise:0.05", "noise-aware model", None)]["note"]
    assert by[("rotate", "naive", None)]["recall@10"] == pytest.approx(1.0)
    assert by[("rotate", "naive", None)]["input_cosine"] < 0.5
    assert by[("quantize:int8", "naive", None)]["input_cosine"] > 0.99


def test_procrustes_with_enough_pairs_leaks_like_no_defense(report):
    rows = {(x["defense"], x["attacker"], x["k"]): x for x in report[1]["rows"]}
    full = rows[("rotate", "procrustes", 40)]  # k = 40 >= D = 32: the rotation is recovered exactly
    assert full["input_cosine"] == pytest.approx(1.0, abs=1e-4)
    for key in ("token_accuracy", "bleu", "exact_match"):
        assert full[key] == pytest.approx(rows[("none", "naive", None)][key])
    cos = [rows[("rotate", "procrustes", k)]["input_cosine"] for k in (4, 16, 40)]
    assert cos == sorted(cos) and rows[("truncate:8", "ridge least squares", 40)]["input_cosine"] > 0.2


def test_the_known_value_attack_is_measured_through_each_defense_and_map(report):
    rows = {(x["defense"], x["attacker"], x["k"]): x for x in report[1]["rows"]}
    base = rows[("none", "naive", None)]["identified"]
    assert base > 0.2  # chance is 0.1%: even the 32-d fake bag-of-tokens encoder gives names away
    assert rows[("rotate", "naive", None)]["identified"] < 0.05  # a secret rotation stops the naive attacker
    assert rows[("rotate", "procrustes", 40)]["identified"] == pytest.approx(base)  # the exact map undoes it
    assert rows[("truncate:8", "naive", None)]["identified"] is None
    noisy = rows[("noise:0.05", "noise-aware model", None)]
    assert noisy["identified"] == rows[("noise:0.05", "naive", None)]["identified"]
    assert all(x["identified"] is None or 0 <= x["identified"] <= 1 for x in rows.values())


def test_outputs(report):
    out, r = report
    assert json.loads((out / "defend.json").read_text()) == json.loads(json.dumps(r))
    md = (out / "defend.md").read_text()
    head = "| defense | attacker | k | token acc | BLEU | exact | input cos | names identified | recall@10 | note |"
    assert head in md and "known-value attack" in md
    assert md.count("\n| ") == len(r["rows"]) + 1 and "| n/a |" in md and "first 40 rows" in md
    assert (out / "privacy_utility.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_linear_defense_all_rows_are_scored(tmp_path, models, enc, data_dir):
    r = run(models, enc, data_dir, tmp_path, defenses=["noise:0.1"], limit=12)
    assert (r["n"], r["n_scored"], r["n_leak_pool"], r["attack_k"]) == (12, 12, 0, [])
    assert "no noise-aware model given" in r["rows"][1]["note"] and len(r["rows"]) == 2


# ---- bad input -------------------------------------------------------------------------------------------


def test_bad_input(tmp_path, models, enc, data_dir):
    cases = [
        ({"defenses": []}, "give at least one --defense"),
        ({"defenses": ["blur"]}, "bad defense 'blur'"),
        ({"split": "dev"}, "unknown split 'dev'"),
        ({"split": "test", "limit": None}, "no rows in split 'test'|at least 4 rows"),
        ({"limit": 0}, "--limit must be a positive"),
        ({"limit": 3}, "need at least 4 rows"),
        ({"attack_k": [0, 4]}, "--attack-k values must be positive"),
        ({"defenses": ["rotate"], "noise_model": str(models[1])}, "no noise:SIGMA defense"),
        ({"noise_model": str(models[2])}, "noise model tiny-16 is for encoder 'fake' \\(16-d\\)"),
        ({"strategy": "nope"}, "unknown strategy"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            run(models, enc, data_dir, tmp_path / "out", **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="data folder not found"):
        run(models, enc, tmp_path / "nothere", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_progress_bar_counts_every_inverted_vector(tmp_path, models, enc, data_dir, capsys):
    r = run(models, enc, data_dir, tmp_path, defenses=["noise:0.1", "rotate"], attack_k=[4], limit=12, progress=True)
    scored = [x for x in r["rows"] if x["token_accuracy"] is not None]
    total = len(scored) * r["n_scored"]  # baseline, noise naive, rotate naive, procrustes k=4: 4 runs x 8 rows
    assert (len(scored), total) == (4, 32)
    err = capsys.readouterr().err
    assert f"{total}/{total}" in err and "defend: rotate procrustes k=4" in err
