"""Inference precision (fp32 / bf16 / int8) and length-sorted batching in Inverter.invert."""

import copy

import numpy as np
import pytest
import torch

from conftest import make_model_dir, random_denoiser
from unembed.inverter import Inverter
from unembed.precision import PRECISIONS, RowScaledLinear, for_inference, fuse_ada, int8_available
from unembed.sampling import STRATEGIES, denoise, final


@pytest.fixture(scope="module")
def model():
    return random_denoiser(0, overrides=("model.length_head=16",))


def _available(precision):
    return precision != "int8" or int8_available()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_approximates_fp32_and_leaves_the_model_alone(model, precision):
    if not _available(precision):
        pytest.skip("no int8 kernels in this torch build")
    ids, t, cond = torch.randint(0, 99, (4, 16)), torch.rand(4), torch.randn(4, 8)
    with torch.inference_mode():
        ref = model.logits(model(ids, t, cond))
        fast = for_inference(model, precision)
        got = fast.logits(fast(ids, t, cond)).float()
        again = model.logits(model(ids, t, cond))
        lengths = fast.length_logits(cond).float(), model.length_logits(cond)
    assert fast.precision == (("int8" if int8_available() else "fp32") if precision == "auto" else precision)
    assert torch.equal(again, ref)  # the fp32 model is not changed by making a copy
    assert torch.isneginf(got[..., 99]).all()  # the mask token is still never predicted
    finite = torch.isfinite(ref)
    err = (got[finite] - ref[finite]).norm() / ref[finite].norm()
    assert err < (1e-6 if fast.precision == "fp32" else 0.05)
    torch.testing.assert_close(*lengths, atol=0.05, rtol=0.05)


def test_fused_ada_projection_computes_what_the_separate_ones_did(model):
    ids, t, cond = torch.randint(0, 99, (4, 16)), torch.rand(4), torch.randn(4, 8)
    fused = copy.deepcopy(model)
    fused.ada_fused = fuse_ada(fused)
    assert not any(hasattr(b, "ada") for b in fused.blocks) and not hasattr(fused, "ada_out")
    with torch.inference_mode():
        torch.testing.assert_close(fused(ids, t, cond), model(ids, t, cond), atol=1e-5, rtol=1e-5)
    if not int8_available():
        return
    # int8: each output row keeps its own weight scale and the shared input its one scale, so the
    # fused copy gives exactly what an int8 copy with separate projections gives
    separate = for_inference(model, "int8", fuse=False)
    assert separate.ada_fused is None and hasattr(separate, "ada_out")
    fast = for_inference(model, "int8")
    assert fast.ada_fused is not None
    with torch.inference_mode():
        assert torch.equal(fast(ids, t, cond), separate(ids, t, cond))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_decodes_with_the_length_first(model, precision):
    if not _available(precision):
        pytest.skip("no int8 kernels in this torch build")
    fast = for_inference(model, precision)
    lengths = torch.tensor([2, 7, 15])
    last = final(denoise(fast, torch.randn(3, 8), num_steps=4, lengths=lengths))
    assert not last.masked.any()
    assert last.ids[torch.arange(3), lengths].tolist() == [1, 1, 1]


needs_int8 = pytest.mark.skipif(not int8_available(), reason="no int8 kernels in this torch build")


@needs_int8
def test_traced_passes_give_the_eager_outputs_for_any_batch_width_and_lengths(model):
    eager = for_inference(model, "int8", trace=False)
    traced = for_inference(model, "int8")
    assert eager.traced_passes is None and traced.traced_passes is not None
    gen = torch.Generator().manual_seed(0)
    calls = [  # (batch, width, visible): the first of each kind is what gets traced
        (1, 13, None),
        (3, 9, torch.tensor([8, 4, 2])),
        (5, 16, None),
        (2, 5, torch.tensor([4, 4])),
        (4, 12, torch.tensor([11, 3, 7, 0])),
        (1, 1, torch.tensor([0])),
    ]
    with torch.inference_mode():
        for b, n, visible in calls:
            ids = torch.randint(0, 99, (b, n), generator=gen)
            t, cond = torch.rand(b, generator=gen), torch.randn(b, 8, generator=gen)
            assert torch.equal(traced(ids, t, cond, visible), eager(ids, t, cond, visible))
    assert set(traced.traced_passes.graphs) == {False, True}
    warmed = for_inference(model, "int8")
    warmed.traced_passes.warm_up(warmed)  # what the server does before its first request
    assert set(warmed.traced_passes.graphs) == {False, True}
    with torch.inference_mode():
        assert torch.equal(warmed(ids, t, cond, visible), eager(ids, t, cond, visible))
    copied = copy.deepcopy(traced)  # a copy traces its own graphs
    assert copied.traced_passes.graphs == {}
    with torch.inference_mode():
        assert torch.equal(copied(ids, t, cond, visible), eager(ids, t, cond, visible))


@needs_int8
def test_passes_stay_eager_when_tracing_fails_or_is_switched_off(model, monkeypatch, caplog):
    eager = for_inference(model, "int8", trace=False)
    ids, t, cond = torch.randint(0, 99, (2, 6)), torch.rand(2), torch.randn(2, 8)

    def broken(*a, **k):
        raise RuntimeError("no tracing here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    fast = for_inference(model, "int8")
    with torch.inference_mode():
        assert torch.equal(fast(ids, t, cond), eager(ids, t, cond))
    assert fast.traced_passes.failed and "no tracing here" in caplog.text
    monkeypatch.setenv("UNEMBED_TRACE", "0")
    assert for_inference(model, "int8").traced_passes is None


def test_a_converted_copy_is_not_converted_again(model):
    for precision in ("bf16", "int8") if int8_available() else ("bf16",):
        fast = for_inference(model, precision)
        for again in PRECISIONS:
            with pytest.raises(ValueError, match="already a"):
                for_inference(fast, again)


def test_unknown_precision_is_refused(model):
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        for_inference(model, "fp16")


@pytest.fixture(scope="module")
def length_model_dir(tmp_path_factory, minilm_tokenizer):
    return make_model_dir(
        tmp_path_factory.mktemp("models") / "tiny-length", minilm_tokenizer, 384, overrides=["model.length_head=16"]
    )


def test_inverter_takes_sample_overrides(length_model_dir):
    inv = Inverter.load(str(length_model_dir), sample={"precision": "bf16", "length": None})
    assert inv.cfg.sample.precision == "bf16" and inv.model.precision == "bf16"
    assert inv.cfg.sample.length == "auto"  # None leaves the model's own setting
    with pytest.raises(ValueError, match="sample.precision must be"):
        Inverter.load(str(length_model_dir), sample={"precision": "fp8"})
    with pytest.raises(ValueError, match="unknown config key 'sample.nosuch'"):
        Inverter.load(str(length_model_dir), sample={"nosuch": 1})


def test_length_sorted_batches_return_results_in_input_order(length_model_dir):
    """invert() batches rows by predicted length; results come back in input order."""
    inv = Inverter.load(str(length_model_dir), sample={"precision": "fp32"})
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((7, 384)).astype(np.float32)
    batched = inv.invert(vectors, "confidence", 4, batch_size=3)
    alone = [inv.invert(v, "confidence", 4)[0] for v in vectors]
    assert [r.ids for r in batched] == [r.ids for r in alone]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_vector_decodes_to_the_same_text_alone_and_in_any_batch(length_model_dir, precision, strategy, temperature):
    """Same vector, same seed: the same tokens and confidences alone, at any place in batches of
    several sizes, beside vectors of other lengths and scales (the int8 row scales, the per-row
    generators)."""
    if not _available(precision):
        pytest.skip("no int8 kernels in this torch build")
    inv = Inverter.load(str(length_model_dir), sample={"precision": precision, "temperature": temperature})
    rng = np.random.default_rng(1)
    others = rng.standard_normal((12, 384)).astype(np.float32) * rng.uniform(0.1, 10, (12, 1)).astype(np.float32)
    probe = rng.standard_normal(384).astype(np.float32)
    alone = inv.invert(probe, strategy, 4, seed=3)[0]
    for size, place in ((2, 1), (5, 0), (9, 4), (13, 12)):
        rows = np.insert(others[: size - 1], place, probe, axis=0)
        for batch_size in (size, 3):
            got = inv.invert(rows, strategy, 4, seed=3, batch_size=batch_size)[place]
            assert (got.ids, got.confidence) == (alone.ids, alone.confidence), (size, place, batch_size)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_pass_computes_a_row_as_it_would_alone(model, precision):
    """The hidden states of one row alone and beside rows of other scales and lengths: bit for bit
    in int8 (the default on a CPU), to float rounding in fp32."""
    if not _available(precision):
        pytest.skip("no int8 kernels in this torch build")
    fast = for_inference(model, precision)
    gen = torch.Generator().manual_seed(0)
    ids, t = torch.randint(0, 99, (5, 12), generator=gen), torch.rand(5, generator=gen)
    cond = torch.randn(5, 8, generator=gen) * torch.tensor([0.01, 1.0, 100.0, 3.0, 0.3])[:, None]
    with torch.inference_mode():
        for visible in (None, torch.tensor([11, 4, 11, 7, 2])):
            whole = fast(ids, t, cond, visible)
            for i in range(5):
                own = None if visible is None else visible[i : i + 1]
                alone = fast(ids[i : i + 1], t[i : i + 1], cond[i : i + 1], own)
                n = 12 if visible is None else int(visible[i]) + 1  # positions up to the row's EOS
                if precision == "int8":  # integer products: bit for bit
                    assert torch.equal(alone[0, :n], whole[i, :n]), (i, visible)
                else:  # BLAS may sum in another order for another batch size: the last bits differ
                    torch.testing.assert_close(alone[0, :n], whole[i, :n], rtol=1e-3, atol=1e-3)


@needs_int8
def test_int8_rows_are_quantised_each_with_its_own_scale(model):
    """A row-scaled int8 linear gives a row the same output in any batch, a zero row its bias,
    and stays close to the fp32 product."""
    fast = for_inference(model, "int8")
    lin = next(m for m in fast.modules() if isinstance(m, RowScaledLinear))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, lin.guard.shape[1], generator=gen) * torch.logspace(-3, 3, 6)[:, None, None]
    x[2, 1] = 0.0
    with torch.inference_mode():
        whole = lin(x)
        for i in range(6):
            assert torch.equal(lin(x[i : i + 1]), whole[i : i + 1])
            assert torch.equal(lin(x[i, 2]), whole[i, 2])
        assert torch.equal(whole[2, 1], lin.bias)
        exact = torch.nn.functional.linear(x, lin.inner.weight().dequantize(), lin.bias)
        err = (whole - exact).norm(dim=-1) / exact.norm(dim=-1)
    assert err.max() < 0.05  # each row, even the smallest, keeps its own resolution
