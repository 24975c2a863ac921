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
        ("schedule.kind=nope", "schedule.kind"),
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


# ---- numbers as people write them ----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _digits(draw, min_size=1):
    """Digits with optional single underscores between them (1_000)."""
    ds = draw(st.lists(st.sampled_from("0123456789"), min_size=min_size, max_size=6))
    out = ds[0]
    for d in ds[1:]:
        out += ("_" if draw(st.booleans()) else "") + d
    return out


@st.composite
def float_spelling(draw) -> str:
    """1e-3, 5E-4, .5, 2.5e+3, -0.25, 1_000.5, 3 ... (every spelling of a finite number people use)."""
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole, frac = _digits(draw), _digits(draw)
    mantissa = draw(st.sampled_from([whole, f"{whole}.{frac}", f".{frac}", f"{whole}."]))
    exponent = draw(
        st.one_of(
            st.just(""),
            st.builds(
                lambda e, s, n: f"{e}{s}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 12)
            ),
        )
    )
    return f"{sign}{mantissa}{exponent}"


@settings(max_examples=300, deadline=None)
@given(float_spelling())
def test_any_number_spelling_is_accepted_for_a_float_in_overrides_and_yaml(tmp_path_factory, text):
    want = float(text.replace("_", ""))
    assert load_config(overrides=[f"train.weight_decay={text}"]).train.weight_decay == want
    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(f"train:\n  weight_decay: {text}\n")
    assert load_config(str(path)).train.weight_decay == want


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**9), st.booleans(), st.booleans())
def test_integers_with_underscores_or_integral_exponents_are_counts(tmp_path_factory, n, underscores, as_exponent):
    text = f"{n:_}" if underscores else str(n)
    if as_exponent:
        mantissa, zeros = str(n).rstrip("0") or "0", len(str(n)) - len(str(n).rstrip("0"))
        text = f"{mantissa}e{zeros}"
    assert load_config(overrides=[f"train.max_steps={text}"]).train.max_steps == n
    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(f"train: {{max_steps: {text}}}\n")
    assert load_config(str(path)).train.max_steps == n


@pytest.mark.parametrize("text", ["1e-3x", "e5", "1__0", "_1", "1_", "1e", "0x10", "nan", "inf", "1.5.2", "--1"])
def test_things_that_are_not_numbers_are_still_refused(text):
    with pytest.raises(ValueError, match="train.weight_decay") as info:
        load_config(overrides=[f"train.weight_decay={text}"])
    assert "None" not in str(info.value)  # the message quotes what was written, not a failed parse


def test_fractions_are_not_counts():
    with pytest.raises(ValueError, match="needs an integer"):
        load_config(overrides=["train.max_steps=2.5e0"])
    assert load_config(overrides=["train.lr=5E-4"]).train.lr == 5e-4
