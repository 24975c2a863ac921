"""Masked diffusion loss: weighted cross-entropy on masked positions only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .schedule import loss_weight


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar to backpropagate: ELBO-weighted CE per token
    ce: torch.Tensor  # mean unweighted CE over masked positions (for logs)
    acc: torch.Tensor  # accuracy over masked positions (teacher-forced)
    n_masked: int
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
    kind: str = "linear",
    lam: float = 5.0,
    norm: str = "elbo",
    length_weight: float = 0.0,
) -> LossOut:
    """MDLM loss: sum over masked positions of w(t) * CE, divided by B * L (``norm="elbo"``),
    or the plain mean CE over masked positions (``norm="masked-mean"``).

    With a length head and ``length_weight > 0`` its cross-entropy against the true length is
    added. The vocabulary projection is computed only at masked positions (it dominates small
    models). x0, xt [B, L] long; masked [B, L] bool; t [B]; cond [B, D].
    """
    hidden = model(xt, t, cond)  # [B, L, W]
    if not bool(masked.any()):
        zero = hidden.sum() * 0.0
        return LossOut(zero, zero.detach(), zero.detach(), 0)
    logits = model.logits(hidden[masked]).float()  # [M, V]
    target = x0[masked]
    ce = F.cross_entropy(logits, target, reduction="none")  # [M]
    if norm == "elbo":
        w = loss_weight(t, kind, lam).unsqueeze(-1).expand_as(masked)[masked]
        loss = (w * ce).sum() / masked.numel()
    elif norm == "masked-mean":
        loss = ce.mean()
    else:
        raise ValueError(f"unknown loss norm {norm!r} (known: elbo, masked-mean)")
    with torch.no_grad():
        acc = (logits.argmax(-1) == target).float().mean()
    length_acc = None
    if length_weight > 0 and getattr(model, "has_length_head", False):
        n = length_targets(x0, model.cfg.eos_id)
        len_logits = model.length_logits(cond).float()
        loss = loss + length_weight * F.cross_entropy(len_logits, n)
        length_acc = (len_logits.argmax(-1) == n).float().mean().detach()
    return LossOut(loss, ce.detach().mean(), acc, int(masked.sum()), length_acc)
