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


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3])
def test_openmp_and_python_threads_give_the_same_results(threads, monkeypatch):
    """The parallel parts run on torch's OpenMP team or on Python threads: the same split, so the
    same tokens and the same probabilities to the last bit, for the reduction and the int8 head."""
    monkeypatch.setattr(kernels, "OPENMP", True)
    if kernels.threads() != "OpenMP":
        pytest.skip("this build runs its parts on Python threads only (no OpenMP to compare)")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(threads)
    logits = torch.randn(70, 3000, generator=g)
    weight, bias, hidden = torch.randn(1000, 40, generator=g), torch.randn(1000, generator=g), torch.randn(9, 40)
    got = {}
    for openmp in (True, False):
        monkeypatch.setattr(kernels, "OPENMP", openmp)
        head = kernels.Int8Head(weight, bias)(hidden) if kernels.int8_head_available() else None
        got[openmp] = (kernels.head_reduce(logits), head)
    for a, b in zip(got[True], got[False], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(got[True][0][0], _torch_reduce(logits)[0])


@pytest.mark.skipif(kernels._compiler() is None or not sys.platform.startswith("linux"), reason="Linux with cc")
def test_the_kernels_share_torchs_openmp_runtime(tmp_path):
    """Where torch runs on libgomp (the Linux wheels) and cc is GCC, the library is built with
    OpenMP and uses the libgomp torch loaded: one OpenMP runtime in the process, not a second
    thread team. UNEMBED_OPENMP=0 keeps Python threads."""
    code = (
        "from pathlib import Path; from unembed import kernels; import torch; "
        "share = kernels._share_torchs_openmp(kernels._compiler()); kernels.available(); "
        "libs = {ln.split()[-1] for ln in Path('/proc/self/maps').read_text().splitlines()}; "
        "rt = {p for p in libs if any(n in p for n in ('libgomp', 'libomp', 'libiomp'))}; "
        "print(share, kernels.threads().replace(' ', '_'), len(rt))"
    )
    env = {**os.environ, "UNEMBED_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    share, threads, runtimes = out.stdout.split()
    if share != "True":
        pytest.skip("torch here does not run on libgomp, or cc is not GCC: the parts run on Python threads")
    assert (threads, runtimes) == ("OpenMP", "1"), out.stdout
    env["UNEMBED_OPENMP"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "Python_threads", "1"], out.stdout + out.stderr


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler")
def test_an_openmp_build_that_does_not_load_falls_back_to_python_threads(tmp_path):
    """If the OpenMP build cannot be loaded (say, a libgomp symbol torch's copy lacks), the kernels
    are built again without OpenMP: still the fused kernels, on Python threads, and a warning."""
    code = (
        "import sys; from pathlib import Path; from unembed import kernels; "
        "real = kernels._build; broken = Path(sys.argv[1]) / 'broken.so'; broken.write_bytes(b'not a library'); "
        "kernels._share_torchs_openmp = lambda cc: True; "
        "kernels._build = lambda cc, openmp: broken if openmp else real(cc, openmp); "
        "print(kernels.status()); print(kernels.threads())"
    )
    env = {**os.environ, "UNEMBED_CACHE": str(tmp_path)}
    cmd = [sys.executable, "-c", code, str(tmp_path)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["fused C kernel", "Python threads"], out.stdout + out.stderr
    assert "OpenMP build of the kernels does not load" in out.stderr


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


# ---- the fused int8 projection + reduction (kernels.Int8Head) --------------------------------

needs_int8_head = pytest.mark.skipif(
    not kernels.int8_head_available(), reason="no AVX-512 VNNI or AVX2 int8 kernel here"
)


def _int8_reference(weight: torch.Tensor, bias: torch.Tensor, hidden: torch.Tensor):
    """What Int8Head computes, in float64 from the same int8 values: symmetric per-vocabulary-row
    weights, symmetric per-hidden-row activations (round half to even, as the kernel)."""
    ws = weight.abs().amax(1) / 127
    ws = torch.where(ws > 0, ws, torch.ones_like(ws))
    xs = hidden.abs().amax(1) / 127
    xs = torch.where(xs > 0, xs, torch.ones_like(xs))
    wq = torch.round(weight / ws[:, None]).clamp(-127, 127).double()
    xq = torch.round(hidden / xs[:, None]).clamp(-127, 127).double()
    return (xq @ wq.T) * xs[:, None].double() * ws[None].double() + bias.double()


@needs_int8_head
@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 23),
    vocab=st.integers(1, 400),
    k=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
)
def test_int8_head_matches_its_quantised_reference(rows, vocab, k, seed):
    """Any shape (vocabularies not a multiple of 64, widths not a multiple of 4, odd row counts):
    the arg-max of the int8 logits and its probability, to float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, k, generator=g) * 0.3
    bias = torch.randn(vocab, generator=g)
    hidden = torch.randn(rows, k, generator=g) * 2
    tok, conf = kernels.Int8Head(weight, bias)(hidden)
    ref = _int8_reference(weight, bias, hidden)
    want = torch.softmax(ref, -1)
    assert torch.equal(tok, ref.argmax(-1))
    assert torch.allclose(conf.double(), want.max(-1).values, rtol=2e-5, atol=1e-7)


@needs_int8_head
@pytest.mark.parametrize("rows", [1, 3, 4, 9])
def test_int8_head_sums_are_exact_at_the_largest_products(rows):
    """Every product at +-127 x 127 with one sign (the AVX2 path adds byte products pairwise
    in int16, where 2 x 127 x 127 still fits; a saturating or 8-bit-unsigned product would
    cap these sums): the logits' order and the probabilities are those of the exact sums."""
    k, vocab = 384, 200
    signs = torch.where(torch.arange(k) % 3 == 0, -1.0, 1.0)
    hidden = signs.repeat(rows, 1) * torch.arange(1, rows + 1)[:, None]
    # row n of the vocabulary agrees in sign with the hidden rows on all but n of the k inputs
    weight = signs.repeat(vocab, 1)
    for n in range(vocab):
        weight[n, :n] *= -1
    bias = torch.zeros(vocab)
    tok, conf = kernels.Int8Head(weight, bias)(hidden)
    ref = _int8_reference(weight, bias, hidden)
    assert float(ref[0, 0]) == pytest.approx(k * 1.0)  # the sum of 384 products of 127 x 127, rescaled
    assert bool((tok == 0).all())
    assert torch.allclose(conf.double(), torch.softmax(ref, -1)[:, 0], rtol=2e-5)


@needs_int8_head
def test_int8_head_first_argmax_masked_tokens_and_batch_independence():
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(1000, 48, generator=g)
    weight[700] = weight[5]  # an exact tie: the first column wins
    bias = torch.zeros(1000)
    bias[5] = bias[700] = 50.0
    bias[[3, 999]] = float("-inf")  # never predicted (the mask token), even when the rest are -inf-ish
    head = kernels.Int8Head(weight, bias)
    hidden = torch.randn(37, 48, generator=g)
    tok, conf = head(hidden)
    assert bool((tok == 5).all()) and bool((conf < 0.5 + 1e-6).all()) and bool((conf > 0.4).all())
    bias2 = torch.full((1000,), -1e4)
    bias2[[3, 999]] = float("-inf")
    bias2[999 - 1] = 0.0
    tok2, conf2 = kernels.Int8Head(weight, bias2)(hidden)
    assert bool((tok2 == 998).all()) and torch.allclose(conf2, torch.ones(37))
    free = kernels.Int8Head(torch.randn(1000, 48, generator=g), torch.randn(1000, generator=g))
    assert free(torch.empty(0, 48))[0].shape == (0,)
    assert free(hidden[:, :40]) is None  # wrong width: declined, the caller uses torch


@needs_int8_head
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_int8_head_gives_a_row_the_same_result_in_any_batch(seed):
    """One scale per hidden row, and the rows of a 4-row tile and the last rows of a batch folded
    in the same order: a row's token and probability are the same to the bit alone, in a batch of
    any size and at any place in it (the server batches requests; the sampler chunks rows)."""
    g = torch.Generator().manual_seed(seed)
    head = kernels.Int8Head(torch.randn(1000, 48, generator=g), torch.randn(1000, generator=g))
    hidden = torch.randn(37, 48, generator=g)
    tok, conf = head(hidden)
    for size in (1, 2, 3, 5, 6, 7):
        for start in range(0, 37 - size + 1, size):
            t, c = head(hidden[start : start + size].clone())
            assert torch.equal(t, tok[start : start + size]), (size, start)
            assert torch.equal(c, conf[start : start + size]), (size, start)


@needs_int8_head
def test_int8_decoding_uses_the_fused_head_and_agrees_with_the_torch_int8_path(monkeypatch):
    """An int8 model decodes with Int8Head; switched off, with torch's int8 projection. The two
    round differently (per row vs per chunk), so they agree on most tokens, not all."""
    from unembed.precision import for_inference

    base = random_denoiser(0, vocab_size=1000)
    q = for_inference(base, "int8")
    assert isinstance(q.fused_head, kernels.Int8Head)
    calls = []
    real = kernels.Int8Head.__call__
    monkeypatch.setattr(kernels.Int8Head, "__call__", lambda self, h: calls.append(len(h)) or real(self, h))
    cond = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    fused = list(denoise(q, cond, strategy="confidence", num_steps=4))[-1].ids
    assert calls and sum(calls) > 0
    monkeypatch.setattr(kernels, "FUSED_HEAD", False)
    calls.clear()
    plain = list(denoise(q, cond, strategy="confidence", num_steps=4))[-1].ids
    exact = list(denoise(base, cond, strategy="confidence", num_steps=4))[-1].ids
    assert (fused == exact).float().mean() > 0.9 and (plain == exact).float().mean() > 0.9
