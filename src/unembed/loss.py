"""Masked diffusion loss: weighted cross-entropy on masked positions only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .schedule import Schedule


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar to backpropagate: ELBO-weighted CE per token
    ce: torch.Tensor  # mean unweighted CE over masked positions (for logs)
    acc: torch.Tensor  # accuracy over masked positions (teacher-forced)
    n_masked: int | torch.Tensor  # an int, or a 0-d tensor on the device with ``capacity``
    dropped: torch.Tensor | None = None  # masked positions beyond ``capacity`` (0-d; expected 0)
    length_acc: torch.Tensor | None = None  # accuracy of the length head (when the model has one)


def length_targets(x0: torch.Tensor, eos_id: int) -> torch.Tensor:
    """x0 [B, L] -> [B] number of tokens before the first EOS (L - 1 when there is none)."""
    is_eos = x0 == eos_id
    first = is_eos.float().argmax(1)
    return torch.where(is_eos.any(1), first, torch.full_like(first, x0.shape[1] - 1))


def diffusion_loss(
    model,
    x0: torch.Tensor,
    xt: torch.Tensor,
    masked: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    schedule: Schedule = Schedule(),
    norm: str = "elbo",
    length_weight: float = 0.0,
    capacity: int | None = None,
) -> LossOut:
    """MDLM loss: sum over masked positions of w(t) * CE, divided by B * L (``norm="elbo"``),
    or the plain mean CE over masked positions (``norm="masked-mean"``).

    With a length head and ``length_weight > 0`` its cross-entropy against the true length is
    added. The vocabulary projection is computed only at masked positions (it dominates small
    models). x0, xt [B, L] long; masked [B, L] bool; t [B]; cond [B, D].

    capacity None gathers the masked positions by boolean indexing, which reads their count on the
    host (a device sync). capacity C gathers a fixed C positions instead, the masked ones first in
    the same order, and weighs the unmasked fillers by zero: no host sync and static shapes (for
    torch.compile). The loss is the same as long as at most C positions are masked; any beyond C
    are left out and counted in ``dropped`` (see ``masked_capacity`` for a C that is never hit).
    """
    if norm not in ("elbo", "masked-mean"):
        raise ValueError(f"unknown loss norm {norm!r} (known: elbo, masked-mean)")
    hidden = model(xt, t, cond)  # [B, L, W]
    if capacity is not None:
        out = _fixed_capacity_loss(model, hidden, x0, masked, t, schedule, capacity, norm)
        return _with_length_loss(out, model, x0, cond, length_weight)
    if not bool(masked.any()):
        zero = hidden.sum() * 0.0
        return LossOut(zero, zero.detach(), zero.detach(), 0)
    logits = model.logits(hidden[masked]).float()  # [M, V]
    target = x0[masked]
    ce = F.cross_entropy(logits, target, reduction="none")  # [M]
    if norm == "elbo":
        w = schedule.weight(t).unsqueeze(-1).expand_as(masked)[masked]
        loss = (w * ce).sum() / masked.numel()
    else:
        loss = ce.mean()
    with torch.no_grad():
        acc = (logits.argmax(-1) == target).float().mean()
    out = LossOut(loss, ce.detach().mean(), acc, int(masked.sum()))
    return _with_length_loss(out, model, x0, cond, length_weight)


def _with_length_loss(out: LossOut, model, x0, cond, length_weight: float) -> LossOut:
    """Add the length head's cross-entropy (weight ``length_weight``) when the model has one."""
    if length_weight <= 0 or not getattr(model, "has_length_head", False):
        return out
    n = length_targets(x0, model.cfg.eos_id)
    len_logits = model.length_logits(cond).float()
    out.loss = out.loss + length_weight * F.cross_entropy(len_logits, n)
    out.length_acc = (len_logits.argmax(-1) == n).float().mean().detach()
    return out


def _fixed_capacity_loss(model, hidden, x0, masked, t, schedule: Schedule, capacity, norm="elbo") -> LossOut:
    flat = masked.reshape(-1)
    capacity = min(capacity, flat.numel())
    # A stable sort of "not masked" puts the masked positions first, in flat order.
    idx = torch.sort((~flat).to(torch.uint8), stable=True).indices[:capacity]  # [C]
    valid = flat[idx].float()  # [C] 1 where the position is masked
    logits = model.logits(hidden.reshape(-1, hidden.shape[-1])[idx]).float()  # [C, V]
    target = x0.reshape(-1)[idx]
    ce = F.cross_entropy(logits, target, reduction="none")  # [C]
    n = valid.sum()
    if norm == "elbo":
        w = schedule.weight(t).unsqueeze(-1).expand_as(masked).reshape(-1)[idx]
        loss = (w * ce * valid).sum() / masked.numel()
    else:
        loss = (ce * valid).sum() / n.clamp(min=1.0)
    with torch.no_grad():
        denom = n.clamp(min=1.0)
        acc = ((logits.argmax(-1) == target).float() * valid).sum() / denom
        total = flat.sum()
    return LossOut(loss, (ce.detach() * valid).sum() / denom, acc, total, total - n)


def masked_capacity(batch: int, seq_len: int, schedule: Schedule, sigmas: float = 8.0) -> int:
    """Positions to gather per batch so that the masked count exceeds it with negligible odds.

    The masked count M of a batch is a sum of Binomial(L, p_b), p_b = 1 - alpha(t_b). With t drawn
    as in ``schedule.sample_t``: E[M] = B L E[p]; Var[M] = B L E[p(1 - p)] plus, for independent t,
    B L^2 Var[p] (antithetic t makes sum_b p_b nearly constant: within L of its mean). Returns
    E[M] + sigmas * sd + L, rounded up to a multiple of 64 and at most B L.
    """
    p = schedule.masked_probabilities()  # at t as sample_t draws it
    mean = batch * seq_len * float(p.mean())
    var = batch * seq_len * float((p * (1 - p)).mean())
    if not schedule.antithetic:
        var += batch * seq_len**2 * float(p.var())
    cap = mean + sigmas * math.sqrt(var) + seq_len
    return min(batch * seq_len, 64 * math.ceil(cap / 64))
