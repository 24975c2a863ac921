import torch

from conftest import random_denoiser
from unembed.config import load_config, resolve_derived
from unembed.loss import diffusion_loss
from unembed.model import Denoiser, init_from_encoder
from unembed.schedule import corrupt, sample_t


def tiny(vocab=100, dim=8, **kw):
    base = load_config("tiny", overrides=[f"model.{k}={v}" for k, v in kw.items()])
    cfg = resolve_derived(base, vocab, dim, 99, 0, 1)
    return cfg, Denoiser(cfg.model)


def test_output_independent_of_condition_at_init():
    torch.manual_seed(0)
    _, m = tiny()
    xt = torch.randint(0, 100, (3, 16))
    t = torch.rand(3)
    a = m.logits(m(xt, t, torch.randn(3, 8)))
    b = m.logits(m(xt, t, torch.randn(3, 8)))
    assert torch.allclose(a, b)
    assert a.shape == (3, 16, 100)
    assert torch.isinf(a[..., 99]).all()  # the mask token is never predicted


def test_gradients_reach_condition_mlp_after_a_few_steps():
    torch.manual_seed(0)
    _, m = tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x0 = torch.randint(2, 99, (16, 16))
    cond = torch.randn(16, 8)
    grads = []
    for _ in range(4):
        t = sample_t(16)
        xt, masked = corrupt(x0, t, 99)
        out = diffusion_loss(m, x0, xt, masked, t, cond)
        opt.zero_grad()
        out.loss.backward()
        grads.append(m.cond_mlp[0].weight.grad.abs().sum().item())
        opt.step()
    assert grads[0] == 0.0  # AdaLN-Zero: the condition is cut off at init
    assert grads[-1] > 0.0
    xt = torch.randint(0, 100, (2, 16))
    t = torch.rand(2)
    assert not torch.allclose(m(xt, t, torch.randn(2, 8)), m(xt, t, torch.randn(2, 8)))


def test_init_from_encoder_copies_matching_tensors():
    _, m = tiny(vocab=100, dim=8, width=64, n_heads=4, mlp_dim=128)
    w = 64
    state = {
        "embeddings.word_embeddings.weight": torch.randn(100, w),
        "embeddings.position_embeddings.weight": torch.randn(512, w),
        "encoder.layer.0.attention.self.query.weight": torch.randn(w, w),
        "encoder.layer.0.attention.self.key.weight": torch.randn(w, w),
        "encoder.layer.0.attention.self.value.weight": torch.randn(w, w),
        "encoder.layer.0.attention.self.query.bias": torch.randn(w),
        "encoder.layer.0.attention.self.key.bias": torch.randn(w),
        "encoder.layer.0.attention.self.value.bias": torch.randn(w),
        "encoder.layer.0.intermediate.dense.weight": torch.randn(128, w),
    }
    copied = init_from_encoder(m, state)
    assert "tok" in copied and "pos" in copied and "encoder.layer.0.qkv.weight" in copied
    assert torch.equal(m.tok.weight, state["embeddings.word_embeddings.weight"])
    assert torch.equal(m.pos.weight, state["embeddings.position_embeddings.weight"][:16])
    assert torch.equal(m.blocks[0].fc1.weight, state["encoder.layer.0.intermediate.dense.weight"])
    assert m.blocks[0].ada.weight.abs().sum() == 0


def test_visible_rows_match_their_sentence_alone():
    """forward(visible=n): each row's positions 0..n are what the row alone, cut at n, gives."""
    m = random_denoiser(0)
    ids, t, cond = torch.randint(0, 99, (3, 10)), torch.rand(3), torch.randn(3, 8)
    visible = torch.tensor([4, 9, 0])
    with torch.no_grad():
        both = m(ids, t, cond, visible)
        for i, n in enumerate(visible.tolist()):
            alone = m(ids[i : i + 1, : n + 1], t[i : i + 1], cond[i : i + 1])
            torch.testing.assert_close(both[i, : n + 1], alone[0], rtol=1e-4, atol=1e-5)
