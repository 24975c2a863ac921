"""Masking schedules for masked diffusion: pure functions of t in (0, 1].

``alpha(t)`` is the probability that a token is still clean at time ``t``; a token is masked
with probability ``1 - alpha(t)``. The MDLM ELBO weights the masked-token cross-entropy by
``w(t) = -alpha'(t) / (1 - alpha(t))``:

* linear:  alpha(t) = 1 - t            ->  w(t) = 1 / t
* exp:     alpha(t) = exp(-lam * t)    ->  w(t) = lam / (exp(lam * t) - 1)

(the spec's "log-linear schedule with lambda = 5" is the exp schedule with lam = 5).

`Schedule` carries one model's choice (kind, rate, smallest time, how training draws t), is built
from its config (`Schedule.from_config`) and passed whole to training, the loss and decoding; its
methods are these formulas with its parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .settings import SCHEDULE_KINDS as KINDS


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown schedule {kind!r} (known: {', '.join(KINDS)})")


def alpha(t: torch.Tensor, kind: str = "linear", lam: float = 5.0) -> torch.Tensor:
    """Probability that a token is clean at time t (elementwise)."""
    _check(kind)
    if kind == "linear":
        return 1.0 - t
    if kind == "exp":
        return torch.exp(-lam * t)
    raise ValueError(f"schedule {kind!r} has no alpha(t)")


def loss_weight(t: torch.Tensor, kind: str = "linear", lam: float = 5.0) -> torch.Tensor:
    """ELBO weight -alpha'(t) / (1 - alpha(t)) of the masked cross-entropy."""
    _check(kind)
    if kind == "linear":
        return 1.0 / t
    if kind == "exp":
        return lam / torch.expm1(lam * t)
    raise ValueError(f"schedule {kind!r} has no loss weight")


def t_for_masked_fraction(frac: float, kind: str = "linear", lam: float = 5.0, eps: float = 1e-3) -> float:
    """Inverse of 1 - alpha: the time at which a share ``frac`` of tokens is masked, in [eps, 1]."""
    _check(kind)
    frac = min(max(frac, 0.0), 1.0)
    if kind == "linear":
        t = frac
    elif kind == "exp":
        t = 1.0 if frac >= 1.0 - math.exp(-lam) else -math.log1p(-frac) / lam
    else:
        raise ValueError(f"schedule {kind!r} has no inverse")
    return min(max(t, eps), 1.0)


def sample_t(
    batch: int,
    eps: float = 1e-3,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    device=None,
    power: float = 1.0,
) -> torch.Tensor:
    """[B] times in [eps, 1]; antithetic (stratified) sampling spreads u evenly over (0, 1].

    t = eps + (1 - eps) * u ** power: power 1 is uniform; power < 1 has density ~ t^(1/power - 1),
    so heavily masked inputs (where decoding starts) are trained more often. The loss weight
    is not changed, so power != 1 re-weights the objective towards high t on purpose.
    """
    if antithetic:
        u0 = torch.rand(1, generator=generator, device=device)
        u = (u0 + torch.arange(batch, device=device) / batch) % 1.0
    else:
        u = torch.rand(batch, generator=generator, device=device)
    if power != 1.0:
        u = u.clamp_min(1e-12) ** power
    return eps + (1.0 - eps) * u


def corrupt(
    x0: torch.Tensor,
    t: torch.Tensor,
    mask_id: int,
    kind: str = "linear",
    lam: float = 5.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each token of x0 [B, L] independently with probability 1 - alpha(t_b).

    Returns (xt [B, L], masked [B, L] bool). Padding and EOS are masked like any token.
    """
    p = (1.0 - alpha(t, kind, lam)).unsqueeze(-1)  # [B, 1]
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    masked = u < p
    xt = torch.where(masked, torch.full_like(x0, mask_id), x0)
    return xt, masked


def reveal_length(
    xt: torch.Tensor,
    masked: torch.Tensor,
    x0: torch.Tensor,
    eos_id: int,
    share: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give a random ``share`` of the rows their EOS and padding back (unmasked).

    This is the state length-first decoding starts from (the end fixed, the words masked), so a
    model trained on it is not surprised there. xt, masked, x0 [B, L]; returns (xt, masked).
    """
    if share <= 0:
        return xt, masked
    is_eos = x0 == eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(x0[:, 0], x0.shape[1] - 1))
    rows = torch.rand(x0.shape[0], generator=generator, device=x0.device) < share
    given = rows[:, None] & (torch.arange(x0.shape[1], device=x0.device)[None] >= first[:, None])
    return torch.where(given, x0, xt), masked & ~given


@dataclass(frozen=True)
class Schedule:
    """One model's masking schedule: ``kind`` and ``lam`` give alpha(t), ``eps`` is the smallest
    time, and training draws t = eps + (1 - eps) u^t_power (antithetic or not, `sample_t`)."""

    kind: str = "linear"
    lam: float = 5.0
    eps: float = 1e-3
    t_power: float = 1.0
    antithetic: bool = True

    def __post_init__(self) -> None:
        _check(self.kind)

    @classmethod
    def from_config(cls, sc) -> Schedule:
        """From a config's ``schedule`` section (`config.ScheduleConfig`)."""
        return cls(sc.kind, sc.lam, sc.eps, sc.t_power, sc.antithetic)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return alpha(t, self.kind, self.lam)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """The ELBO weight w(t) of the masked cross-entropy."""
        return loss_weight(t, self.kind, self.lam)

    def t_for_masked(self, frac: float) -> float:
        return t_for_masked_fraction(frac, self.kind, self.lam, self.eps)

    def sample_t(self, batch: int, generator=None, device=None, uniform: bool = False) -> torch.Tensor:
        """[B] training times as the schedule draws them; ``uniform``: antithetic uniform t, the same
        for every recipe (validation and the teacher-forced measure)."""
        if uniform:
            return sample_t(batch, self.eps, True, generator, device)
        return sample_t(batch, self.eps, self.antithetic, generator, device, self.t_power)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, mask_id: int, generator=None):
        """(xt, masked) [B, L]: `corrupt` under this schedule."""
        return corrupt(x0, t, mask_id, self.kind, self.lam, generator)

    def masked_probabilities(self, points: int = 4096) -> torch.Tensor:
        """1 - alpha(t) [points] (float64) at t drawn as training draws it, on an even grid of u."""
        u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
        return 1.0 - self.alpha(self.eps + (1.0 - self.eps) * u**self.t_power)

    def masked_share(self) -> float:
        """E[1 - alpha(t)]: the share of positions training masks on average."""
        return float(self.masked_probabilities().mean())
