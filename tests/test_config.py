import pytest

from unembed.config import load_config, load_config_json, parse_overrides, resolve_derived, save_config


def test_presets_and_overrides():
    cfg = load_config("base")
    assert (cfg.model.n_layers, cfg.model.width, cfg.model.n_heads, cfg.model.mlp_dim, cfg.model.seq_len) == (
        8,
        768,
        12,
        3072,
        32,
    )
    cfg = load_config("tiny", overrides=["train.lr=0.01", "model.init=encoder", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 0.01 and cfg.model.init == "encoder" and cfg.train.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("train.batch_size=abc", "train.batch_size"),
        ("train.lr=yes", "train.lr"),
        ("model.width=12.5", "model.width"),
        ("schedule.kind=cosine", "schedule.kind"),
        ("trainlr", "key.sub=value"),
    ],
)
def test_bad_overrides_fail_loudly(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_config("tiny", overrides=[override])


def test_unknown_preset_and_yaml_key(tmp_path):
    with pytest.raises(ValueError, match="unknown config preset"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {widht: 10}\n")
    with pytest.raises(ValueError, match="model.widht"):
        load_config(str(bad))


def test_yaml_inherit_and_json_round_trip(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("inherit: [tiny]\ntrain: {lr: 0.002}\n")
    cfg = resolve_derived(load_config(str(f)), 30522, 384, 103, 0, 102)
    assert cfg.model.width == 64 and cfg.train.lr == 0.002 and cfg.model.vocab_size == 30522
    save_config(cfg, tmp_path / "c.json")
    assert load_config_json(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="model.vocab_size"):
        resolve_derived(cfg, 100, 384, 103, 0, 102)


def test_values_parse_as_yaml():
    assert parse_overrides(["a.b=1", "a.c=x", "d=true"]) == {"a": {"b": 1, "c": "x"}, "d": True}
