import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unembed.schedule import alpha, corrupt, loss_weight, sample_t, t_for_masked_fraction
from unembed.settings import SCHEDULE_KINDS

KINDS = list(SCHEDULE_KINDS)  # every kind: a new one is tested here without edits


@pytest.mark.parametrize("kind", KINDS)
@given(t=st.floats(0.01, 1.0))
@settings(max_examples=50, deadline=None)
def test_weight_is_minus_alpha_prime_over_one_minus_alpha(kind, t):
    tt = torch.tensor([t], dtype=torch.float64, requires_grad=True)
    a = alpha(tt, kind, 5.0)
    (da,) = torch.autograd.grad(a.sum(), tt)
    expected = -da / (1 - a.detach())
    assert torch.allclose(loss_weight(tt.detach(), kind, 5.0), expected, rtol=1e-6)


def test_weight_formulas():
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(loss_weight(t, "linear"), 1 / t)
    assert torch.allclose(loss_weight(t, "exp", 5.0), 5.0 / (torch.exp(5.0 * t) - 1))


@pytest.mark.parametrize("kind", KINDS)
@given(t=st.floats(0.02, 1.0), seed=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_masked_fraction_tracks_one_minus_alpha(kind, t, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, 50, (64, 64), generator=g)
    tt = torch.full((64,), t)
    xt, masked = corrupt(x0, tt, mask_id=99, kind=kind, lam=5.0, generator=g)
    p = 1 - alpha(torch.tensor(t), kind, 5.0).item()
    sd = math.sqrt(p * (1 - p) / x0.numel())
    assert abs(masked.float().mean().item() - p) < 5 * sd + 1e-9
    assert torch.equal(xt[masked], torch.full_like(xt[masked], 99))
    assert torch.equal(xt[~masked], x0[~masked])  # targets never hold the mask


def test_full_time_masks_everything_linear():
    x0 = torch.randint(0, 50, (8, 32))
    xt, masked = corrupt(x0, torch.ones(8), mask_id=99)
    assert masked.all()


@given(b=st.integers(1, 300), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_sample_t_in_range_and_stratified(b, seed):
    g = torch.Generator().manual_seed(seed)
    t = sample_t(b, eps=1e-3, antithetic=True, generator=g)
    assert t.shape == (b,) and (t >= 1e-3).all() and (t <= 1.0).all()
    # antithetic: exactly one sample in each of the b equal strata of (0, 1]
    u = (t - 1e-3) / (1 - 1e-3)
    counts = torch.bincount((u * b).floor().clamp(max=b - 1).long(), minlength=b)
    assert (counts == 1).all()


@pytest.mark.parametrize("kind", KINDS)
@given(frac=st.floats(0.0, 1.0))
@settings(max_examples=40, deadline=None)
def test_t_for_masked_fraction_inverts_alpha(kind, frac):
    t = t_for_masked_fraction(frac, kind, 5.0, 1e-3)
    assert 1e-3 <= t <= 1.0
    got = 1 - alpha(torch.tensor(t, dtype=torch.float64), kind, 5.0).item()
    lo, hi = 1 - alpha(torch.tensor(1e-3, dtype=torch.float64), kind, 5.0).item(), 1 - math.exp(-5.0)
    if kind == "linear":
        assert abs(got - max(frac, 1e-3)) < 1e-9
    elif lo <= frac <= hi:
        assert abs(got - frac) < 1e-9


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        alpha(torch.tensor(0.5), "nope")


@settings(max_examples=30, deadline=None)
@given(power=st.floats(0.2, 3.0), seed=st.integers(0, 1000))
def test_sample_t_power_biases_towards_heavy_masking(power, seed):
    """t = eps + (1-eps) u^p with stratified u: in range, and mean close to eps + (1-eps)/(1+p)."""
    g = torch.Generator().manual_seed(seed)
    t = sample_t(4096, eps=1e-3, antithetic=True, generator=g, power=power)
    assert (t >= 1e-3).all() and (t <= 1.0).all()
    assert abs(t.mean().item() - (1e-3 + (1 - 1e-3) / (1 + power))) < 2e-3
    uniform = sample_t(4096, eps=1e-3, antithetic=True, generator=torch.Generator().manual_seed(seed))
    assert (t.mean() > uniform.mean()) == (power < 1) or abs(power - 1) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("power", [1.0, 0.5])
def test_the_schedule_object_masks_the_share_it_promises(kind, power):
    from unembed.config import load_config
    from unembed.schedule import Schedule

    s = Schedule(kind, 5.0, 1e-3, power)
    gen = torch.Generator().manual_seed(0)
    shares = []
    for _ in range(200):
        t = s.sample_t(64, gen)
        shares.append(s.corrupt(torch.zeros(64, 32, dtype=torch.long), t, 1, gen)[1].float().mean().item())
    assert sum(shares) / len(shares) == pytest.approx(s.masked_share(), abs=0.01)
    uniform = s.sample_t(4096, gen, uniform=True)
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.01)  # validation's t ignores t_power
    cfg = load_config("minilm-default").schedule
    assert Schedule.from_config(cfg) == Schedule(cfg.kind, cfg.lam, cfg.eps, cfg.t_power, cfg.antithetic)
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("nope")


@pytest.mark.parametrize("kind", KINDS)
@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0))
@settings(max_examples=50, deadline=None)
def test_alpha_falls_from_one_and_the_weight_is_positive(kind, a, b):
    lo, hi = sorted((a, b))
    t = torch.tensor([lo, hi], dtype=torch.float64)
    al = alpha(t, kind, 5.0)
    assert 0.0 <= float(al[1]) <= float(al[0]) <= 1.0
    assert float(alpha(torch.tensor(0.0, dtype=torch.float64), kind, 5.0)) == pytest.approx(1.0)
    assert bool((loss_weight(t, kind, 5.0) > 0).all())
