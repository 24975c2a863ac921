"""The length head: predict a sentence's length from its vector alone, so decoding can fix it first.

Positional token accuracy is ruined by a wrong length (every later word shifts), and the
denoiser's own first pass places the end of sentence badly. A small MLP on the vector
(``Denoiser.length_mlp``, part of the one model and its checkpoint) predicts the number of
tokens before EOS; ``denoise(lengths=...)`` commits EOS and padding there before the first pass.

The head trains jointly (``train.length_loss``) or, for an already trained decoder, alone on
the cached vectors of a prepared folder in a minute or two (:func:`fit_length_head`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .loss import length_targets

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_lengths(model, cond: torch.Tensor) -> torch.Tensor:
    """cond [B, D] -> [B] long: the most likely number of tokens before EOS (0..L-1)."""
    return model.length_logits(cond).argmax(-1)


@torch.no_grad()
def length_order(model, chunks) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted lengths of every row of ``chunks`` (an iterable of cond tensors [b, D], so a
    large set never reaches the head at once) and the stable order that sorts them: batched
    inversion decodes rows in this order, so that a batch's compact passes run on about its
    sentences' own length instead of its longest one's. Returns (lengths [N], order [N])."""
    lengths = torch.cat([predict_lengths(model, c) for c in chunks])
    return lengths, torch.argsort(lengths, stable=True)


def _arrays(data, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    rows = data.rows(split)
    if limit is not None:
        rows = rows[:limit]
    if len(rows) == 0:
        raise ValueError(f"no {split} rows in {data.path}")
    cond = torch.from_numpy(np.asarray(data.vectors[rows], dtype=np.float32))
    x0 = torch.from_numpy(np.asarray(data.ids[rows], dtype=np.int64))
    return cond, x0


def length_report(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """Exact / within-1 / within-2 shares and the mean absolute error of predicted lengths."""
    err = (pred.long() - true.long()).abs().float()
    return {
        "exact": float((err == 0).float().mean()),
        "within_1": float((err <= 1).float().mean()),
        "within_2": float((err <= 2).float().mean()),
        "mean_abs_error": float(err.mean()),
        "n": int(err.numel()),
    }


def fit_length_head(
    model,
    data,
    hidden: int = 512,
    epochs: int = 30,
    lr: float = 2e-3,
    batch_size: int = 512,
    weight_decay: float = 0.01,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
):
    """Train a fresh length head on ``data``'s train split with the decoder frozen.

    Returns (new Denoiser with the head, report on the validation split). The epoch with the
    best validation accuracy is kept. The rest of the weights are copied unchanged.
    """
    from tqdm.auto import tqdm

    from .model import Denoiser

    cfg = replace(model.cfg, length_head=hidden)
    torch.manual_seed(seed)
    new = Denoiser(cfg)
    missing, unexpected = new.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("length_mlp.")}, strict=False
    )
    assert not unexpected and all(k.startswith("length_mlp.") for k in missing)
    eos = cfg.eos_id
    cond, x0 = _arrays(data, "train", limit)
    vcond, vx0 = _arrays(data, "validation", None)
    n, vn = length_targets(x0, eos), length_targets(vx0, eos)
    head = new.length_mlp
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(n) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    bar = tqdm(range(epochs), desc="length head", unit="epoch", disable=not progress)
    for _ in bar:
        head.train()
        for idx in torch.randperm(len(n), generator=gen).split(batch_size):
            loss = F.cross_entropy(head(cond[idx]), n[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        head.eval()
        with torch.no_grad():
            acc = float((head(vcond).argmax(-1) == vn).float().mean())
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in head.state_dict().items()}
        bar.set_postfix(val_exact=f"{acc:.3f}", best=f"{best:.3f}")
    head.load_state_dict(best_state)
    new.eval()
    report = length_report(predict_lengths(new, vcond), vn)
    report["train_rows"] = int(len(n))
    log.info("length head: %s", report)
    return new, report
