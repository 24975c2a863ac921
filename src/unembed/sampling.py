"""Decoding: one ``denoise()`` generator, four strategies, one step state per forward pass.

Strategies (all start from an all-mask sequence and leave no mask after the last step):

* ``confidence``: each step reveals the most confident masked positions; committed tokens stay.
* ``euler``: ancestral MDLM step from t to s: each masked position is revealed with probability
  (alpha(s) - alpha(t)) / (1 - alpha(t)); at s = 0 that is 1.
* ``remask``: Euler, then re-mask the least confident committed tokens (``remask_ratio`` of them)
  at every step but the last.
* ``two-stage``: a confidence-ordered draft in about half the steps, then re-mask the least
  confident ``refine_ratio`` of positions and decode them again in the remaining steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .schedule import alpha, t_for_masked_fraction

STRATEGIES = ("confidence", "euler", "remask", "two-stage")


@dataclass(frozen=True)
class StepState:
    """The sequence after one forward pass. Tensors are [B, L] and never mutated afterwards."""

    step: int  # 1..num_steps
    num_steps: int
    ids: torch.Tensor  # current ids, mask_id where still masked
    confidence: torch.Tensor  # probability of each committed token when it was chosen (0 if masked)
    revealed: torch.Tensor  # bool: committed in this step
    remasked: torch.Tensor  # bool: turned back into a mask in this step
    mask_id: int
    t: float  # the time fed to the model for this pass

    @property
    def masked(self) -> torch.Tensor:
        return self.ids == self.mask_id

    @property
    def done(self) -> bool:
        return self.step == self.num_steps


def reveal_counts(n: int, steps: int) -> list[int]:
    """Split n reveals over ``steps`` steps as evenly as possible; the counts sum to n."""
    if steps < 1:
        raise ValueError("num_steps must be >= 1")
    return [(n * (i + 1)) // steps - (n * i) // steps for i in range(steps)]


class _Run:
    """Mutable decoding state shared by the strategies; emits immutable StepStates."""

    def __init__(self, model, cond, num_steps, generator, kind, lam, eps, temperature):
        cfg = model.cfg
        self.model, self.cond, self.num_steps = model, cond, num_steps
        self.gen, self.kind, self.lam, self.eps, self.temperature = generator, kind, lam, eps, temperature
        self.mask_id, self.L = cfg.mask_id, cfg.seq_len
        b = cond.shape[0]
        self.ids = torch.full((b, self.L), cfg.mask_id, dtype=torch.long, device=cond.device)
        self.conf = torch.zeros(b, self.L, device=cond.device)
        self.step = 0

    @property
    def masked(self) -> torch.Tensor:
        return self.ids == self.mask_id

    def t_now(self) -> float:
        frac = self.masked.float().mean().item()
        return t_for_masked_fraction(frac, self.kind, self.lam, self.eps)

    def predict(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass -> (token [B, L], its probability [B, L]) at masked positions.

        The vocabulary projection runs only where a mask is (committed positions keep their token
        and confidence), and the arg-max path never materialises the full softmax.
        """
        tt = torch.full((self.ids.shape[0],), t, device=self.ids.device)
        hidden = self.model(self.ids, tt, self.cond)
        where = self.masked
        logits = self.model.logits(hidden[where]).float()  # [M, V]
        if self.temperature <= 0:
            best, tok_m = logits.max(-1)
            conf_m = torch.exp(best - torch.logsumexp(logits, -1))
        else:
            scaled = (logits / self.temperature).softmax(-1)
            tok_m = torch.multinomial(scaled, 1, generator=self.gen).squeeze(-1)
            conf_m = torch.exp(logits.gather(-1, tok_m[:, None]).squeeze(-1) - torch.logsumexp(logits, -1))
        tok, conf = self.ids.clone(), self.conf.clone()
        tok[where], conf[where] = tok_m, conf_m
        return tok, conf

    def commit(self, where: torch.Tensor, tok: torch.Tensor, conf: torch.Tensor) -> None:
        self.ids = torch.where(where, tok, self.ids)
        self.conf = torch.where(where, conf, self.conf)

    def remask(self, where: torch.Tensor) -> None:
        self.ids = self.ids.masked_fill(where, self.mask_id)
        self.conf = self.conf.masked_fill(where, 0.0)

    def lowest(self, k: int, among: torch.Tensor, score: torch.Tensor, highest: bool = False) -> torch.Tensor:
        """Bool [B, L]: per row the k positions of ``among`` with the lowest (or highest) score."""
        out = torch.zeros_like(among)
        k = min(k, self.L)
        if k <= 0:
            return out
        fill = float("-inf") if highest else float("inf")
        s = torch.where(among, score, torch.full_like(score, fill))
        idx = s.topk(k, dim=-1, largest=highest).indices
        out.scatter_(1, idx, True)
        return out & among

    def emit(self, t: float, revealed: torch.Tensor, remasked: torch.Tensor) -> StepState:
        self.step += 1
        return StepState(
            self.step,
            self.num_steps,
            self.ids.clone(),
            self.conf.clone(),
            revealed.clone(),
            remasked.clone(),
            self.mask_id,
            t,
        )


def _confidence_steps(run: _Run, counts: list[int], remasked_first: torch.Tensor | None = None):
    for i, k in enumerate(counts):
        t = run.t_now()
        tok, conf = run.predict(t)
        reveal = run.lowest(k, run.masked, conf, highest=True)
        run.commit(reveal, tok, conf)
        remasked = remasked_first if (i == 0 and remasked_first is not None) else torch.zeros_like(reveal)
        yield run.emit(t, reveal, remasked)


def _euler_steps(run: _Run, remask_ratio: float):
    n = run.num_steps
    for i in range(n):
        t, s = 1.0 - i / n, 1.0 - (i + 1) / n
        a_t = alpha(torch.tensor(t), run.kind, run.lam).item()
        a_s = 1.0 if s <= 0 else alpha(torch.tensor(s), run.kind, run.lam).item()
        p = 1.0 if s <= 0 else (a_s - a_t) / max(1.0 - a_t, 1e-12)
        tok, conf = run.predict(max(t, run.eps))
        u = torch.rand(run.ids.shape, generator=run.gen, device=run.ids.device)
        reveal = run.masked & (u < p)
        committed_before = ~run.masked
        run.commit(reveal, tok, conf)
        remasked = torch.zeros_like(reveal)
        if remask_ratio > 0 and i < n - 1:
            k = round(remask_ratio * int(committed_before.sum(1).min().item()))
            remasked = run.lowest(k, committed_before, run.conf)
            run.remask(remasked)
        yield run.emit(t, reveal, remasked)


def _two_stage_steps(run: _Run, refine_ratio: float):
    n = run.num_steps
    n1 = n if n == 1 else math.ceil(n / 2)
    yield from _confidence_steps(run, reveal_counts(run.L, n1))
    n2 = n - n1
    if n2 == 0:
        return
    r = min(run.L, max(round(refine_ratio * run.L), n2))
    again = run.lowest(r, ~run.masked, run.conf)
    run.remask(again)
    yield from _confidence_steps(run, reveal_counts(r, n2), remasked_first=again)


@torch.inference_mode()
def denoise(
    model,
    cond: torch.Tensor,
    *,
    strategy: str = "confidence",
    num_steps: int = 8,
    generator: torch.Generator | None = None,
    schedule: str = "linear",
    lam: float = 5.0,
    eps: float = 1e-3,
    temperature: float = 0.0,
    remask_ratio: float = 0.05,
    refine_ratio: float = 0.25,
) -> Iterator[StepState]:
    """Invert cond [B, D]: yield exactly ``num_steps`` StepStates, one per forward pass.

    After the last state no position is masked. Given the same generator seed the output is
    identical. ``num_steps`` may be any integer from 1 to L.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    L = model.cfg.seq_len
    if not 1 <= num_steps <= L:
        raise ValueError(f"num_steps must be between 1 and {L}, got {num_steps}")
    if cond.ndim != 2 or cond.shape[1] != model.cfg.cond_dim:
        raise ValueError(f"cond must be [B, {model.cfg.cond_dim}], got {list(cond.shape)}")
    if generator is None:
        generator = torch.Generator(device=cond.device).manual_seed(0)
    run = _Run(model, cond, num_steps, generator, schedule, lam, eps, temperature)
    if strategy == "confidence":
        yield from _confidence_steps(run, reveal_counts(L, num_steps))
    elif strategy == "euler":
        yield from _euler_steps(run, 0.0)
    elif strategy == "remask":
        yield from _euler_steps(run, remask_ratio)
    else:
        yield from _two_stage_steps(run, refine_ratio)


def final(states: Iterator[StepState]) -> StepState:
    """Run a denoise() generator to its end and return the last state."""
    last = None
    for last in states:
        pass
    if last is None:
        raise ValueError("denoise produced no steps")
    return last
