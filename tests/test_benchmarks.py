"""The benchmark scripts run (--quick, tiny preset) and write the JSON they promise; FLOP counts by hand."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from unembed.sampling import STRATEGIES

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return lambda name: importlib.import_module(name)


def test_forward_flops_by_hand(bench):
    common = bench("common")
    cfg = common.preset_config("tiny")  # 2 layers, W 64, MLP 128, L 16, V 30522, D 384
    w, m, layers, seq, v, d = 64, 128, 2, 16, 30522, 384
    f = common.forward_flops(cfg.model, batch=2)
    per_token = 3 * w * w + w * w + 2 * w * m
    per_seq = d * w + w * w + 2 * w * w + layers * 6 * w * w + 2 * w * w
    assert f["matmul"] == 2 * per_token * 2 * seq * layers + 2 * per_seq * 2
    assert f["attention"] == 4 * seq * seq * w * layers * 2
    assert f["head"] == 2 * w * v * 2 * seq
    assert f["total"] == f["matmul"] + f["attention"] + f["head"]
    assert common.forward_flops(cfg.model, 2, head_positions=5)["head"] == 2 * w * v * 5


def test_bench_inference_quick(bench, tmp_path, capsys):
    out = tmp_path / "inference.json"
    result = bench("bench_inference").main(["--quick", "--presets", "tiny", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert {"benchmark", "machine", "peak_gflops", "peak_gflops_start", "peak_gflops_end", "rows", "args"} <= set(saved)
    assert saved["peak_gflops"] > 0
    assert [r["strategy"] for r in saved["rows"]] == list(STRATEGIES)
    keys = {
        "preset",
        "strategy",
        "steps",
        "params_m",
        "latency_ms",
        "latency_gflops",
        "latency_frac_peak",
        "batch",
        "sentences_per_s",
        "batch_gflops",
        "batch_frac_peak",
    }
    for r in saved["rows"]:
        assert keys <= set(r) and r["preset"] == "tiny" and r["steps"] == 4
        assert r["latency_ms"] > 0 and 0 < r["batch_frac_peak"]
    assert "| preset | strategy |" in capsys.readouterr().out


def test_bench_train_quick(bench, tmp_path, capsys):
    out = tmp_path / "train.json"
    result = bench("bench_train").main(["--quick", "--presets", "tiny", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and saved["benchmark"] == "train"
    (row,) = saved["rows"]
    keys = {
        "preset",
        "params_m",
        "batch",
        "masked_share",
        "gflop_per_step",
        "step_ms",
        "sequences_per_s",
        "gflops",
        "frac_peak",
    }
    assert keys <= set(row) and row["batch"] == 64 and row["timed_steps"] == 2
    assert 0 < row["masked_share"] < 1 and row["sequences_per_s"] > 0 and row["frac_peak"] > 0
    assert "| preset | params (M) |" in capsys.readouterr().out


def test_bad_preset_exits(bench):
    with pytest.raises(SystemExit, match="unknown preset"):
        bench("bench_train").parse_args(["--presets", "huge"])


def test_bench_inference_model_bulk(bench, tmp_path, capsys, minilm_tokenizer):
    """--model with --bulk: the real Inverter.invert path (sorted by predicted length, batches of
    --batch) per variant x strategy, each against the peak measured right before and after it."""
    from conftest import make_model_dir

    model = make_model_dir(tmp_path / "m", minilm_tokenizer, 384, overrides=["model.length_head=32"])
    texts = tmp_path / "texts.txt"
    words = "the a bank account number of my sister lives in Paris and works at".split()
    texts.write_text("\n".join(" ".join(words[: 2 + i % 12]) for i in range(30)) + "\n")
    out = tmp_path / "bulk.json"
    args = ["--model", str(model), "--quick", "--strategies", "confidence", "--variants", "fp32-compact,int8-compact"]
    result = bench("bench_inference").main([*args, "--texts", str(texts), "--bulk", "20", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(r["variant"], r["vectors"], r["batch"]) for r in result["bulk"]] == [
        ("fp32-compact", 20, 8),
        ("int8-compact", 20, 8),
    ]
    for r in result["bulk"] + result["rows"]:
        share = r.get("frac_peak_adjacent", r.get("batch_frac_peak_adjacent"))
        padding = r.get("padding_share", r.get("batch_padding_share"))
        assert share > 0 and 0 <= padding < 1
    assert "| share of adjacent peak |" in capsys.readouterr().out


def test_bulk_needs_a_model_and_texts(bench):
    with pytest.raises(SystemExit, match="--bulk needs --model and --texts"):
        bench("bench_inference").main(["--presets", "tiny", "--bulk", "10"])


def test_flop_counter_counts_the_fused_int8_head(bench):
    """On AVX-512 VNNI and AVX2 hosts the arg-max path projects in kernels.Int8Head, not in model.logits:
    the counter must count those FLOPs too, and pass the kernel's result through."""
    import types

    import torch

    seen = []

    class Model:
        cfg = types.SimpleNamespace(width=4, vocab_size=10)
        has_length_head = True

        def fused_head(self, hidden):
            seen.append(hidden.shape[0])
            return "tokens", "confidence"

    counter = bench("bench_inference")._FlopCounter(Model())
    assert counter.fused_head(torch.zeros(3, 4)) == ("tokens", "confidence")
    assert seen == [3] and counter.flops == 2 * 4 * 10 * 3
    assert counter.has_length_head and counter.padding_share() is None  # no pass run yet


def test_bench_latency_interleaves_variants(bench, tmp_path, capsys, minilm_tokenizer):
    """bench_latency: every variant inverts every sentence each round; the first round is a warm-up."""
    from conftest import make_model_dir

    model = make_model_dir(tmp_path / "m", minilm_tokenizer, 384, overrides=["model.length_head=32"])
    out = tmp_path / "lat.json"
    args = ["--model", str(model), "--variants", "fp32-compact,int8-compact", "--strategies", "confidence,euler"]
    result = bench("bench_latency").main([*args, "--steps", "2", "--rounds", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(r["variant"], r["strategy"]) for r in result["rows"]] == [
        ("fp32-compact", "confidence"),
        ("int8-compact", "confidence"),
        ("fp32-compact", "euler"),
        ("int8-compact", "euler"),
    ]
    for r in result["rows"]:
        assert r["rounds"] == 2 and len(r["latency_ms_each"]) == len(result["sentences"])
        assert 0 < r["latency_ms"] <= r["median_ms"]
    assert [r["speedup"] for r in result["rows"] if r["variant"] == "fp32-compact"] == [1.0, 1.0]
    assert "| latency ms (B=1, best round) |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--rounds >= 2"):
        bench("bench_latency").main([*args, "--rounds", "1"])


def test_bench_identify_quick(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "identify.json"
    result = bench("bench_identify").main(["--quick", "--types", "person,email", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    keys = {(r["type"], r["band"], r["scorer"]) for r in result["rows"]}
    assert ("person", 20, "cosine") in keys and ("email", 0, "cosine") in keys
    assert all(0 <= r["top1"]["share"] <= r["top5"]["share"] <= 1 for r in result["rows"])
    assert sum("false_alarm" in r for r in result["rows"]) == len(result["rows"])
    assert result["speed"]["seconds"] > 0 and 0 <= result["no_list"]["full_name_top1"]["share"] <= 1
