"""The GPU training job, run on the CPU with a tiny time budget."""

import json

import pytest

from unembed.gpujob import pack, run_job
from unembed.inverter import Inverter


@pytest.mark.slow
def test_pack_then_job_writes_loadable_float16_shards(tmp_path):
    lines = [
        f"The {c} {a} walked to the {p} on a quiet morning in {m}."
        for c in ("red", "old", "small", "happy")
        for a in ("dog", "man", "bird")
        for p in ("park", "river", "market")
        for m in ("May", "June")
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "source": "toy"}) + "\n" for t in lines))
    info = pack(str(corpus), "minilm", str(tmp_path / "pack"), max_mb=60)
    assert info["sentences"] == len(lines) and info["mb"] < 60
    with pytest.raises(ValueError, match="over the 1 MB limit"):
        pack(str(corpus), "minilm", str(tmp_path / "pack2"), max_mb=1)
    result = run_job(
        str(tmp_path / "pack"),
        str(tmp_path / "out"),
        minutes=0.8,
        config="tiny",
        overrides=[
            "model.seq_len=16",
            "train.eval_every=20",
            "train.save_every=20",
            "train.eval_decode_n=8",
            "train.batch_size=16",
        ],
        work=str(tmp_path / "work"),
        shard_mb=1.0,
        recipes=["rand-linear-lr1e-3"],
    )
    assert result["best"] == "rand-linear-lr1e-3" and result["runs"]["rand-linear-lr1e-3"]["ok"]
    shards = sorted((tmp_path / "out").glob("model-*.safetensors"))
    assert len(shards) > 1 and all(s.stat().st_size <= 2**20 + 4096 for s in shards)
    inv = Inverter.load(str(tmp_path / "out"))
    assert inv.cfg.encoder.name == "minilm" and inv.cfg.train.data == ""
    assert isinstance(inv.invert(inv.encode(["The red dog walked to the park."]), num_steps=4)[0].text, str)
    assert json.loads((tmp_path / "out/job.json").read_text())["best"] == "rand-linear-lr1e-3"


def test_a_run_without_validation_that_wrote_a_model_counts_as_a_success(tmp_path, fake_encoder):
    """config tiny has eval_every=0: the job used to report 'every training run failed' after it."""
    from unembed.config import load_config
    from unembed.gpujob import _summary
    from unembed.prepare import run_prepare
    from unembed.train import train

    (tmp_path / "s.txt").write_text("\n".join(f"Sentence {i} is about the red dog today." for i in range(40)) + "\n")
    run_prepare(
        str(tmp_path / "s.txt"), "fake", tmp_path / "data", seq_len=16, progress=False, encoder_obj=fake_encoder
    )
    cfg = load_config("tiny", overrides=[f"train.data={tmp_path / 'data'}", "encoder.name=fake", "train.max_steps=2"])
    train(cfg, tmp_path / "run", progress=False)
    assert _summary(tmp_path / "run", 0)["ok"]
    assert not _summary(tmp_path / "run", 1)["ok"] and not _summary(tmp_path / "nothing", 0)["ok"]
