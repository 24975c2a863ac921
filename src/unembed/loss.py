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


def diffusion_loss(
    model,
    x0: torch.Tensor,
    xt: torch.Tensor,
    masked: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    kind: str = "linear",
    lam: float = 5.0,
) -> LossOut:
    """MDLM loss: sum over masked positions of w(t) * CE, divided by B * L.

    The vocabulary projection is computed only at masked positions (it dominates small models).
    x0, xt [B, L] long; masked [B, L] bool; t [B]; cond [B, D].
    """
    hidden = model(xt, t, cond)  # [B, L, W]
    if not bool(masked.any()):
        zero = hidden.sum() * 0.0
        return LossOut(zero, zero.detach(), zero.detach(), 0)
    logits = model.logits(hidden[masked]).float()  # [M, V]
    target = x0[masked]
    ce = F.cross_entropy(logits, target, reduction="none")  # [M]
    w = loss_weight(t, kind, lam).unsqueeze(-1).expand_as(masked)[masked]
    loss = (w * ce).sum() / masked.numel()
    with torch.no_grad():
        acc = (logits.argmax(-1) == target).float().mean()
    return LossOut(loss, ce.detach().mean(), acc, int(masked.sum()))
