"""The GPU training job, run on the CPU with a tiny corpus and a one-minute budget (the dry run)."""

import json

import numpy as np
import pytest
import torch

from unembed.gpujob import MAX_OUT_FILES, Exporter, ceiling_seq_per_s, dequantize, pack, quantize, read_pack, run_job
from unembed.inverter import Inverter
from unembed.schedule import Schedule

LINES = [
    f"The {c} {a} walked to the {p} on a quiet morning in {m}."
    for c in ("red", "old", "small", "happy")
    for a in ("dog", "man", "bird")
    for p in ("park", "river", "market")
    for m in ("May", "June")
]


def test_int8_groups_round_trip_within_half_a_step():
    gen = torch.Generator().manual_seed(0)
    state = {
        "w": torch.randn(8, 256, generator=gen),
        "odd": torch.randn(3, 5, generator=gen),  # width not a multiple of the group: float16
        "b": torch.randn(8, generator=gen),
        "ids": torch.arange(4),
    }
    stored = quantize(state, "int8-g128")
    assert stored["w.q8"].dtype == torch.int8 and stored["w.scale"].shape == (8, 2)
    assert stored["odd"].dtype == torch.float16 and stored["ids"].dtype == torch.int64
    back = dequantize(stored)
    assert back.keys() == state.keys()
    step = stored["w.scale"].float().repeat_interleave(128, dim=1)
    assert ((back["w"] - state["w"]).abs() <= step / 2 + 1e-6).all()
    assert torch.equal(back["ids"], state["ids"]) and torch.allclose(back["b"], state["b"], atol=1e-3)
    with pytest.raises(ValueError, match="unknown encoder precision"):
        quantize(state, "int4")


def test_ceiling_of_the_small_preset():
    from unembed.config import load_config

    m = load_config("small").model
    from dataclasses import replace

    m = replace(m, vocab_size=30522, cond_dim=384)
    ceiling = ceiling_seq_per_s(m)  # 989 TFLOP/s over ~3.2 GFLOP a sequence
    assert 290_000 < ceiling < 320_000
    # t_power 0.5 masks two thirds of the positions on average: more head work, a lower ceiling
    assert ceiling_seq_per_s(m, Schedule(t_power=0.5)) < ceiling


def test_the_job_counts_flops_with_the_presets_t_power():
    """The job's FLOP count reads the config's t distribution: the GPU preset masks two thirds."""
    from unembed.config import load_config

    share = Schedule.from_config(load_config("minilm-default").schedule).masked_share()
    assert share == pytest.approx(2 / 3, abs=2e-3)
    uniform = load_config("minilm-default", overrides=["schedule.t_power=1"]).schedule
    assert Schedule.from_config(uniform).masked_share() == pytest.approx(0.5, abs=2e-3)


@pytest.mark.parametrize("head", [0, 16])
def test_measure_inversion_times_batches_until_the_limit(tmp_path, minilm_tokenizer, head):
    """The job's inversion measurement: every vector when time allows, stops after the batch that
    crosses the limit, and says whether the length head batched the rows by length."""
    from conftest import make_model_dir
    from unembed.gpujob import measure_inversion

    model = make_model_dir(tmp_path / "m", minilm_tokenizer, 8, overrides=[f"model.length_head={head}"])
    vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float16)
    r = measure_inversion(model, vectors, torch.device("cpu"), seconds=60, batch=16, steps=4)
    assert r["sentences"] == r["of"] == 40 and r["sentences_per_s"] > 0 and r["num_steps"] == 4
    assert r["length"] == ("head" if head else "free") and r["device"] == "cpu"
    first = measure_inversion(model, vectors, torch.device("cpu"), seconds=0, batch=16, steps=4)
    assert first["sentences"] == 16  # one batch, then the limit


@pytest.mark.parametrize("power, share", [(1.0, 0.5), (0.5, 2 / 3), (2.0, 1 / 3)])
def test_masked_share_follows_the_t_power(power, share):
    """Linear schedule: the masked share is E[t], and t = u^power has mean 1 / (1 + power)."""

    assert Schedule("linear", 5.0, 1e-6, power).masked_share() == pytest.approx(share, abs=1e-3)


@pytest.mark.slow
def test_dry_run_pack_prepare_train_export_load(tmp_path, caplog):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": t, "source": "toy" if i < 50 else "b"}) + "\n" for i, t in enumerate(LINES))
    )
    info = pack(str(corpus), "minilm", str(tmp_path / "pack"), max_mb=60, fidelity_n=24)
    fid = info["encoder_fidelity"]
    assert info["sentences"] == len(LINES) and info["sources"] == [["toy", 50], ["b", len(LINES) - 50]]
    assert fid["precision"].startswith("int8") and fid["min"] >= 0.999 and fid["n"] == 24
    assert info["mb"] < 30  # int8 weights: about half of float16's 43 MiB
    _, texts, sources, splits = read_pack(tmp_path / "pack")
    assert texts == LINES and sources[49:51] == ["toy", "b"] and set(np.unique(splits)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="over the 1 MB limit"):
        pack(str(corpus), "minilm", str(tmp_path / "pack2"), max_mb=1, fidelity_n=8)
    assert not (tmp_path / "pack2").exists()  # a refused pack leaves nothing behind

    out = tmp_path / "out"
    result = run_job(
        str(tmp_path / "pack"),
        str(out),
        minutes=1.0,
        config="tiny",
        overrides=["train.eval_minutes=0.1", "train.log_every=5", "train.eval_decode_n=8", "train.eval_batches=1"],
        work=str(tmp_path / "work"),
        shard_mb=2.0,
        margin_s=20,
        invert_n=48,
    )
    assert result["final"] and result["exports"] >= 2 and result["train_steps"] > 0
    # what is left of the margin timed batched inversion with the exported model (tiny has no head)
    inv_run = result["inversion"]
    assert 0 < inv_run["sentences"] <= inv_run["of"] == 48 and inv_run["sentences_per_s"] > 0
    assert inv_run["length"] == "free" and inv_run["num_steps"] == 8
    assert result["prepare"]["embed_s"] >= 0 and result["sequences_seen"] == result["train_steps"] * 16
    assert result["wall_s"] < 60 + 10  # stopped itself with a margin
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_OUT_FILES and "job.json" in files and "config.json" in files
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and all(s.stat().st_size <= 2 * 2**20 + 4096 for s in shards)
    assert json.loads((out / "job.json").read_text())["final"] is True
    inv = Inverter.load(str(out))
    assert inv.cfg.encoder.name == "minilm" and inv.cfg.train.data == ""
    assert isinstance(inv.invert(inv.encode(["The red dog walked to the park."]), num_steps=4)[0].text, str)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    Exporter(out, tmp_path / "stage", "minilm", 0.05, {}, 0.0)(tmp_path / "work" / "run")  # > 8 files
    assert "export skipped" in caplog.text and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
