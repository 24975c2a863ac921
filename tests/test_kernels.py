"""The fused arg-max kernel (unembed.kernels): same tokens and probabilities as torch, built
wherever a C compiler is, and decoding that falls back to torch without it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_denoiser
from unembed import kernels
from unembed.sampling import denoise


@pytest.fixture(scope="module")
def model():
    """A tiny random denoiser over a 1,000-token vocabulary (not a multiple of the 16 lanes)."""
    return random_denoiser(0, vocab_size=1000)


def _torch_reduce(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch's arg-max and the softmax probability of it, computed in float64 (the reference:
    float32 ``exp(max - logsumexp)`` itself loses digits when logits are in the thousands)."""
    best, tok = logits.max(-1)
    return tok, torch.exp(best.double() - torch.logsumexp(logits.double(), -1)).float()


def test_kernel_builds_where_a_compiler_is():
    if kernels._compiler() is None:
        pytest.skip("no C compiler on this machine: decoding uses torch operations")
    assert kernels.available(), kernels.status()
    assert kernels.status() == "fused C kernel"


needs_kernel = pytest.mark.skipif(not kernels.available(), reason="fused kernel not built here")


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    vocab=st.integers(1, 300),
    scale=st.sampled_from([0.01, 1.0, 30.0, 1000.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_kernel_matches_torch(rows, vocab, scale, seed):
    """Any shape (vocabularies not a multiple of the 16 lanes included), flat or peaked logits."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * scale
    tok, conf = kernels.head_reduce(logits)
    want_tok, want_conf = _torch_reduce(logits)
    assert torch.equal(tok, want_tok)
    assert torch.allclose(conf, want_conf, rtol=2e-5, atol=1e-7)
    assert bool(((conf > 0) & (conf <= 1.0 + 1e-6)).all())


@needs_kernel
def test_kernel_takes_the_first_of_tied_maxima_and_far_tails():
    logits = torch.full((3, 30522), -5.0)
    logits[0, [7, 700, 30521]] = 4.0  # tie: the first wins, as torch's max does
    logits[1, 30521] = 4.0  # the maximum in the tail after the last full lane block
    logits[2, 17] = 200.0  # the rest underflow to zero probability
    tok, conf = kernels.head_reduce(logits)
    assert tok.tolist() == [7, 30521, 17]
    want = _torch_reduce(logits)[1]
    assert torch.allclose(conf, want, rtol=2e-5) and conf[2].item() == pytest.approx(1.0)


@needs_kernel
def test_kernel_reads_rows_with_a_stride_and_in_threads(monkeypatch):
    wide = torch.randn(100, 500)
    view = wide[:, 37:437]  # rows 500 floats apart, 400 read
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    tok, conf = kernels.head_reduce(view)
    want_tok, want_conf = _torch_reduce(view)
    assert torch.equal(tok, want_tok) and torch.allclose(conf, want_conf, rtol=2e-5)


def test_kernel_declines_what_it_cannot_take():
    assert kernels.head_reduce(torch.randn(4, 10, dtype=torch.float64)) is None
    assert kernels.head_reduce(torch.randn(10, 4).t()) is None  # columns not contiguous
    assert kernels.head_reduce(torch.randn(2, 3, 4)) is None


@pytest.mark.parametrize("strategy", ["confidence", "two-stage"])
def test_decoding_with_and_without_the_kernel_agrees(model, strategy, monkeypatch):
    """The fused path is an implementation detail: the tokens decoded are torch's."""
    cond = torch.randn(5, 8)

    def run():
        return list(denoise(model, cond, strategy=strategy, num_steps=4, generator=torch.Generator().manual_seed(1)))

    monkeypatch.setattr(kernels, "ENABLED", False)
    plain = run()
    monkeypatch.setattr(kernels, "ENABLED", True)
    fused = run()
    for a, b in zip(plain, fused, strict=True):
        assert torch.equal(a.ids, b.ids)
        assert torch.allclose(a.confidence, b.confidence, rtol=2e-5, atol=1e-7)


def test_without_a_compiler_decoding_uses_torch(tmp_path):
    """A machine without cc (or UNEMBED_KERNELS=0) decodes with torch and says why."""
    code = (
        "import torch; from unembed import kernels; "
        "print(kernels.status()); print(kernels.head_reduce(torch.randn(3, 40)) is None)"
    )
    env = {**os.environ, "UNEMBED_CACHE": str(tmp_path), "CC": "/nonexistent/cc", "PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["no C compiler found (cc, gcc, clang or $CC)", "True"]
    env = {**os.environ, "UNEMBED_CACHE": str(tmp_path), "UNEMBED_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["disabled by UNEMBED_KERNELS=0", "True"]


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler")
def test_kernel_is_built_once_into_the_cache(tmp_path):
    code = "from unembed import kernels; print(kernels.status())"
    env = {**os.environ, "UNEMBED_CACHE": str(tmp_path)}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "fused C kernel", out.stderr
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
