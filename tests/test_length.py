"""Length head, length-first training states, continual training from a model folder."""

import random

import pytest
import torch

from unembed.checkpoint import load_weights, save_model
from unembed.config import load_config, resolve_derived
from unembed.length import fit_length_head, length_order, length_report, predict_lengths
from unembed.loss import diffusion_loss, length_targets
from unembed.model import Denoiser
from unembed.prepare import PreparedData, run_prepare
from unembed.schedule import corrupt, reveal_length
from unembed.train import build_model

WORDS = "the a red green blue dog cat runs sleeps over under quickly slowly house tree river stone old new".split()


@pytest.fixture(scope="module")
def varied_data(tmp_path_factory, fake_encoder):
    """5,000 sentences of 2 to 13 words (so lengths differ), embedded by the fake encoder."""
    rng = random.Random(0)
    lines = {" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 13))).capitalize() + "." for _ in range(5000)}
    d = tmp_path_factory.mktemp("lengths")
    (d / "s.txt").write_text("\n".join(sorted(lines)) + "\n")
    run_prepare(str(d / "s.txt"), "fake", d / "data", seq_len=16, progress=False, encoder_obj=fake_encoder)
    return PreparedData(d / "data")


def tiny_model(data, *overrides):
    tok = data.manifest["tokenizer"]
    cfg = load_config("tiny", overrides=["encoder.name=fake", *overrides])
    cfg = resolve_derived(
        cfg, tok["vocab_size"], data.manifest["encoder"]["dim"], tok["mask_id"], tok["pad_id"], tok["eos_id"]
    )
    torch.manual_seed(0)
    return cfg, Denoiser(cfg.model).eval()


def test_length_targets_count_tokens_before_eos():
    x0 = torch.tensor([[5, 6, 2, 0], [2, 0, 0, 0], [5, 5, 5, 5]])
    assert length_targets(x0, eos_id=2).tolist() == [2, 0, 3]


def test_reveal_length_gives_back_eos_and_padding_only():
    x0 = torch.tensor([[5, 6, 7, 2, 0, 0], [5, 2, 0, 0, 0, 0]])
    xt, masked = corrupt(x0, torch.ones(2), mask_id=9, generator=torch.Generator().manual_seed(0))
    assert masked.all()
    same = reveal_length(xt, masked, x0, 2, 0.0)
    assert torch.equal(same[0], xt) and torch.equal(same[1], masked)
    xt2, masked2 = reveal_length(xt, masked, x0, 2, 1.0, torch.Generator().manual_seed(0))
    assert xt2.tolist() == [[9, 9, 9, 2, 0, 0], [9, 2, 0, 0, 0, 0]]
    assert torch.equal(masked2, xt2 == 9)


def test_masked_mean_norm_is_the_plain_mean_of_masked_cross_entropy(varied_data):
    cfg, model = tiny_model(varied_data)
    x0 = torch.from_numpy(varied_data.ids[:8].astype("int64"))
    cond = torch.from_numpy(varied_data.vectors[:8].astype("float32"))
    t = torch.full((8,), 0.5)
    xt, masked = corrupt(x0, t, cfg.model.mask_id, generator=torch.Generator().manual_seed(1))
    out = diffusion_loss(model, x0, xt, masked, t, cond, norm="masked-mean")
    assert torch.allclose(out.loss, out.ce)
    with pytest.raises(ValueError, match="loss norm"):
        diffusion_loss(model, x0, xt, masked, t, cond, norm="sum")


def test_fit_length_head_learns_lengths_and_keeps_the_decoder(varied_data):
    _, model = tiny_model(varied_data)
    new, report = fit_length_head(model, varied_data, hidden=64, epochs=30, lr=1e-2, batch_size=256, progress=False)
    assert new.has_length_head and not model.has_length_head
    old = model.state_dict()
    assert all(torch.equal(v, old[k]) for k, v in new.state_dict().items() if not k.startswith("length_mlp."))
    vx0 = torch.from_numpy(varied_data.ids[varied_data.rows("validation")].astype("int64"))
    majority = torch.bincount(length_targets(vx0, new.cfg.eos_id)).max().item() / len(vx0)
    assert report["exact"] > max(0.5, majority) and report["within_2"] >= report["exact"]
    assert set(report) >= {"exact", "within_1", "within_2", "mean_abs_error", "n"}


def test_length_report():
    r = length_report(torch.tensor([3, 5, 9]), torch.tensor([3, 4, 6]))
    assert r == {
        "exact": pytest.approx(1 / 3),
        "within_1": pytest.approx(2 / 3),
        "within_2": pytest.approx(2 / 3),
        "mean_abs_error": pytest.approx(4 / 3),
        "n": 3,
    }


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_length_order_is_the_stable_sort_of_the_heads_lengths_in_any_chunking(varied_data, chunk):
    _, model = tiny_model(varied_data, "model.length_head=32")
    torch.manual_seed(1)
    with torch.no_grad():  # a random head predicts few distinct lengths: make them vary, with ties
        model.length_mlp[-1].weight.mul_(50)
    cond = torch.nn.functional.normalize(torch.randn(50, model.cfg.cond_dim), dim=-1)
    lengths, order = length_order(model, cond.split(chunk))
    assert torch.equal(lengths, predict_lengths(model, cond))
    assert sorted(order.tolist()) == list(range(50))
    keys = [(int(lengths[i]), int(i)) for i in order]  # sorted by length, input order among ties
    assert keys == sorted(keys) and len(set(lengths.tolist())) > 1


def test_init_from_starts_from_the_model_and_refuses_another_shape(tmp_path, varied_data):
    cfg, model = tiny_model(varied_data)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    save_model(tmp_path / "src", cfg, model.state_dict())
    cont = resolve_derived(
        load_config(
            "tiny", overrides=["encoder.name=fake", f"train.init_from={tmp_path / 'src'}", "model.length_head=32"]
        ),
        cfg.model.vocab_size,
        cfg.model.cond_dim,
        cfg.model.mask_id,
        cfg.model.pad_id,
        cfg.model.eos_id,
    )
    built = build_model(cont)
    src = load_weights(tmp_path / "src")
    assert built.has_length_head
    assert all(torch.equal(v, src[k]) for k, v in built.state_dict().items() if k in src)
    wider = load_config(
        "tiny", overrides=["encoder.name=fake", f"train.init_from={tmp_path / 'src'}", "model.width=32"]
    )
    wider = resolve_derived(
        wider, cfg.model.vocab_size, cfg.model.cond_dim, cfg.model.mask_id, cfg.model.pad_id, cfg.model.eos_id
    )
    with pytest.raises(ValueError, match="init_from"):
        build_model(wider)


def test_cli_fit_length_saves_a_loadable_model_from_an_int8_default(
    varied_data, tmp_path, minilm_tokenizer, monkeypatch
):
    """`unembed fit-length` on a model whose default precision is int8 (auto on this CPU) trains and
    saves the fp32 weights (it once handed the quantised copy to the fitter and crashed)."""
    import json

    from conftest import make_model_dir
    from unembed import encoders
    from unembed.checkpoint import load_model
    from unembed.cli import main

    src = make_model_dir(
        tmp_path / "src", minilm_tokenizer, 32, encoder_name="fake", overrides=["sample.precision=auto"]
    )
    monkeypatch.setattr(encoders, "load_tokenizer", lambda name: minilm_tokenizer)
    out = tmp_path / "with-head"
    data = str(varied_data.path)
    code = main(
        ["fit-length", "--model", str(src), "--data", data, "--out", str(out), "--hidden", "32", "--epochs", "2"]
    )
    assert code == 0
    cfg, model = load_model(out, "cpu")
    assert model.has_length_head and cfg.model.length_head == 32
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["length_head"] == 32
    assert saved["sample"] == json.loads((src / "config.json").read_text())["sample"]  # decoding settings kept
    _, old = load_model(src, "cpu")
    new = model.state_dict()
    assert all(torch.equal(v, new[k]) for k, v in old.state_dict().items() if not k.startswith("length_mlp."))
