"""Shared fixtures: the real MiniLM tokenizer, a fake deterministic encoder, tiny model folders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


class FakeEncoder:
    """Deterministic bag-of-tokens encoder over the real MiniLM tokenizer: texts -> unit [B, dim]."""

    def __init__(self, tokenizer, dim: int = 32, name: str = "fake"):
        self.tokenizer, self.dim, self.name = tokenizer, dim, name
        self.source, self.pooling, self.weights_sha256 = name, "mean", "0" * 64
        rng = np.random.default_rng(1234)
        self.table = rng.standard_normal((len(tokenizer), dim)).astype(np.float32)
        self.pos = rng.standard_normal((64, dim)).astype(np.float32) * 0.5
        self.calls = 0

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"][:64]
            v = sum((self.table[j] + self.pos[k] for k, j in enumerate(ids)), np.zeros(self.dim, np.float32))
            out[i] = v / max(np.linalg.norm(v), 1e-9)
        self.calls += len(texts)
        return out


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from unembed.encoders import resolve_source

    return AutoTokenizer.from_pretrained(resolve_source("minilm")[0])


@pytest.fixture(scope="session")
def fake_encoder(minilm_tokenizer):
    return FakeEncoder(minilm_tokenizer)


@pytest.fixture(scope="session")
def minilm_encoder():
    from unembed.encoders import load_encoder

    return load_encoder("minilm")


def random_denoiser(seed: int = 0, vocab_size: int = 100, overrides: tuple[str, ...] = ()):
    """A tiny random ``Denoiser`` (condition width 8, mask = vocab_size - 1, pad 0, EOS 1), in eval
    mode, its zero-initialised parts perturbed so that predictions depend on the condition."""
    from unembed.config import load_config, resolve_derived
    from unembed.model import Denoiser

    torch.manual_seed(seed)
    cfg = resolve_derived(load_config("tiny", overrides=list(overrides)), vocab_size, 8, vocab_size - 1, 0, 1)
    m = Denoiser(cfg.model).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def make_model_dir(
    path: Path,
    tokenizer,
    cond_dim: int,
    encoder_name: str = "minilm",
    seed: int = 0,
    overrides: list[str] | None = None,
) -> Path:
    """A random tiny Denoiser saved as a model folder (config.json + model.safetensors)."""
    from unembed.checkpoint import save_model
    from unembed.config import load_config, resolve_derived
    from unembed.model import Denoiser
    from unembed.text import specials_of

    s = specials_of(tokenizer)
    cfg = load_config("tiny", overrides=[f"encoder.name={encoder_name}", *(overrides or [])])
    cfg = resolve_derived(cfg, s.vocab_size, cond_dim, s.mask_id, s.pad_id, s.eos_id)
    torch.manual_seed(seed)
    model = Denoiser(cfg.model)
    save_model(path, cfg, model.state_dict())
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_tokenizer):
    """A random tiny model for the real MiniLM encoder (384-d)."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny-minilm", minilm_tokenizer, 384)


def decoding(model, kw: dict):
    """A `settings.Decoding` for ``model`` from the decoding keys of ``kw`` (strategy, num_steps,
    seed, batch_size, device, length, precision), which are taken out of ``kw``."""
    from unembed.settings import Decoding

    names = {"strategy": "strategy", "num_steps": "steps", "seed": "seed", "batch_size": "batch_size"}
    names |= {"device": "device", "length": "length", "precision": "precision"}
    return Decoding(model=str(model), **{names[k]: kw.pop(k) for k in list(kw) if k in names})
