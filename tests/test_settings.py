"""unembed.settings.Decoding: checked once when made, resolved against the model once."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from unembed.settings import MAX_BATCH, STRATEGIES, Decoding


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"strategy": "beam"}, "unknown strategy 'beam'"),
        ({"steps": 0}, "steps must be at least 1, got 0"),
        ({"steps": True}, "steps must be at least 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"length": "short"}, "unknown length option 'short'"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"batch_size": 0}, f"batch size must be between 1 and {MAX_BATCH}"),
        ({"batch_size": MAX_BATCH + 1}, f"batch size must be between 1 and {MAX_BATCH}"),
        ({"model": " "}, "model must be a name or a folder"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        Decoding(**kw)
    assert "\n" not in str(err.value)


def test_every_bad_setting_is_named_at_once_and_settings_are_frozen():
    with pytest.raises(ValueError, match="unknown strategy.*; steps must"):
        Decoding(strategy="x", steps=0)
    d = Decoding()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.steps = 3


def test_resolved_takes_the_models_defaults_only_where_none_were_chosen():
    cfg = SimpleNamespace(sample=SimpleNamespace(strategy="euler", num_steps=8), model=SimpleNamespace(seq_len=16))
    assert Decoding().resolved(cfg).strategy == "euler" and Decoding().resolved(cfg).steps == 8
    chosen = Decoding(strategy=STRATEGIES[0], steps=16).resolved(cfg)
    assert (chosen.strategy, chosen.steps) == (STRATEGIES[0], 16)
    with pytest.raises(ValueError, match="steps must be between 1 and 16 for model default, got 17"):
        Decoding(steps=17).resolved(cfg)
    assert Decoding(length="head", precision="fp32").sample == {"length": "head", "precision": "fp32"}


def test_load_gives_the_model_and_the_resolved_settings(tiny_model_dir):
    inv, d = Decoding(str(tiny_model_dir), precision="fp32").load()
    assert d.strategy == inv.cfg.sample.strategy and d.steps == inv.cfg.sample.num_steps
    assert inv.cfg.sample.precision == "fp32"


def test_runtime_switches_are_read_from_the_environment_in_one_place():
    from unembed.settings import Runtime

    assert Runtime.from_env({}) == Runtime(kernels=True, openmp=True, trace=True, malloc=True)
    env = {"UNEMBED_KERNELS": "0", "UNEMBED_OPENMP": " Off ", "UNEMBED_TRACE": "no", "UNEMBED_MALLOC": "1"}
    assert Runtime.from_env(env) == Runtime(kernels=False, openmp=False, trace=False, malloc=True)
    assert Runtime.from_env({"UNEMBED_TRACE": "false"}).trace is False
