"""Decoding: one ``denoise()`` generator, four strategies, one step state per forward pass.

Strategies (all start from an all-mask sequence and leave no mask after the last step):

* ``confidence``: each step reveals the most confident masked positions; committed tokens stay.
* ``euler``: ancestral MDLM step from t to s: each masked position is revealed with probability
  (alpha(s) - alpha(t)) / (1 - alpha(t)); at s = 0 that is 1.
* ``remask``: Euler, then re-mask the least confident committed tokens (``remask_ratio`` of them)
  at every step but the last.
* ``two-stage``: a confidence-ordered draft in about half the steps, then re-mask the least
  confident ``refine_ratio`` of positions and decode them again in the remaining steps.

Length first: given ``lengths`` [B] (tokens before EOS, e.g. from the model's length head),
EOS and padding are committed before the first pass and never re-masked, and every strategy
spends all of its passes on the words inside that length (same number of passes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from . import kernels
from .schedule import Schedule
from .settings import STRATEGIES


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


def reveal_counts_rows(n: torch.Tensor, steps: int) -> torch.Tensor:
    """Row-wise :func:`reveal_counts`: n [B] -> [B, steps] counts, each row summing to its n."""
    if steps < 1:
        raise ValueError("num_steps must be >= 1")
    i = torch.arange(steps + 1, device=n.device)
    cum = (n[:, None] * i[None]) // steps
    return cum[:, 1:] - cum[:, :-1]


HEAD_ROWS = 128  # rows of the vocabulary projection per chunk (docs/speed.md)


def _argmax_confidence(model, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [M, W] -> (arg-max token [M], its probability [M]), HEAD_ROWS rows at a time.

    The [M, V] logits of a whole batch's first pass (32 sentences x 14 masks x 30,522 tokens in
    fp32 = 55 MB) do not fit the cache, and the max and log-sum-exp over them then cost as much as
    the projection; in chunks they stay in cache. In fp32 every row's result is the same as
    unchunked; int8 scales each chunk's input on its own, as it does each batch's.
    """
    fused_head = getattr(model, "fused_head", None)  # int8 models on a CPU with AVX-512 VNNI or AVX2
    if fused_head is not None and (got := fused_head(hidden)) is not None:
        return got
    m = hidden.shape[0]
    tok = torch.empty(m, dtype=torch.long, device=hidden.device)
    conf = torch.empty(m, dtype=torch.float32, device=hidden.device)
    for i in range(0, m, HEAD_ROWS):
        logits = model.logits(hidden[i : i + HEAD_ROWS]).float()
        fused = kernels.head_reduce(logits)  # None off the CPU or without the built kernel
        if fused is not None:
            tok[i : i + HEAD_ROWS], conf[i : i + HEAD_ROWS] = fused
            continue
        best, tok[i : i + HEAD_ROWS] = logits.max(-1)
        conf[i : i + HEAD_ROWS] = torch.exp(best - torch.logsumexp(logits, -1))
    return tok, conf


class _Run:
    """Mutable decoding state shared by the strategies; emits immutable StepStates."""

    def __init__(self, model, cond, num_steps, generator, schedule, temperature, lengths=None, compact=True):
        cfg = model.cfg
        self.model, self.cond, self.num_steps = model, cond, num_steps
        b = cond.shape[0]
        if isinstance(generator, torch.Generator):
            self.rows_gen = None
        else:  # one generator per row: a row's random draws are what it would draw alone
            self.rows_gen = list(generator)
            if len(self.rows_gen) != b:
                raise ValueError(f"give one generator per row: {len(self.rows_gen)} generators for {b} rows")
            generator = None
        self.gen, self.schedule, self.temperature = generator, schedule, temperature
        self.mask_id, self.L = cfg.mask_id, cfg.seq_len
        self.ids = torch.full((b, self.L), cfg.mask_id, dtype=torch.long, device=cond.device)
        self.conf = torch.zeros(b, self.L, device=cond.device)
        self.fixed = torch.zeros(b, self.L, dtype=torch.bool, device=cond.device)  # set by the length
        self.visible = None  # [B] last position each row's passes compute (its EOS), when compact
        self.width = self.L  # positions a pass computes
        if lengths is not None:
            self._fix_length(lengths, cfg.eos_id, cfg.pad_id)
            if compact:
                self.visible = lengths.to(self.ids.device).long()
                self.width = int(self.visible.max().item()) + 1
        self.step = 0

    def _fix_length(self, lengths: torch.Tensor, eos_id: int, pad_id: int) -> None:
        n = lengths.to(self.ids.device).long()
        if n.shape != (self.ids.shape[0],) or bool(((n < 0) | (n >= self.L)).any()):
            raise ValueError(f"lengths must be [B] integers in 0..{self.L - 1}")
        pos = torch.arange(self.L, device=self.ids.device)[None]
        self.ids = torch.where(pos == n[:, None], eos_id, torch.where(pos > n[:, None], pad_id, self.ids))
        self.fixed = pos >= n[:, None]
        self.conf = self.fixed.float()

    @property
    def masked(self) -> torch.Tensor:
        return self.ids == self.mask_id

    def t_now(self) -> torch.Tensor:
        """[B] time matching each row's share of masked positions."""
        frac = self.masked.float().mean(1).tolist()
        t = [self.schedule.t_for_masked(f) for f in frac]
        return torch.tensor(t, device=self.ids.device)

    def predict(self, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass -> (token [B, L], its probability [B, L]) at masked positions.

        The vocabulary projection runs only where a mask is (committed positions keep their token
        and confidence), and the arg-max path never materialises the full softmax.
        """
        tt = torch.as_tensor(t, dtype=torch.float32, device=self.ids.device).expand(self.ids.shape[0])
        w = self.width  # every mask lies before its row's EOS, so inside the computed width
        hidden = self.model(self.ids[:, :w], tt, self.cond, self.visible)
        where = self.masked
        h = hidden[where[:, :w]]  # [M, W]
        if self.temperature <= 0:
            tok_m, conf_m = _argmax_confidence(self.model, h)
        else:
            logits = self.model.logits(h).float()  # [M, V]
            scaled = (logits / self.temperature).softmax(-1)
            tok_m = self._multinomial(scaled, where)
            conf_m = torch.exp(logits.gather(-1, tok_m[:, None]).squeeze(-1) - torch.logsumexp(logits, -1))
        tok, conf = self.ids.clone(), self.conf.clone()
        tok[where], conf[where] = tok_m, conf_m
        return tok, conf

    def _multinomial(self, probs: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """One token per masked position ([M, V] probabilities, rows in ``where`` order)."""
        if self.rows_gen is None:
            return torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)
        out, start = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device), 0
        for g, n in zip(self.rows_gen, where.sum(1).tolist()):
            if n:
                out[start : start + n] = torch.multinomial(probs[start : start + n], 1, generator=g).squeeze(-1)
            start += n
        return out

    def uniform(self) -> torch.Tensor:
        """[B, L] uniform draws (per row from its own generator when there is one per row)."""
        if self.rows_gen is None:
            return torch.rand(self.ids.shape, generator=self.gen, device=self.ids.device)
        return torch.stack([torch.rand(self.L, generator=g, device=self.ids.device) for g in self.rows_gen])

    def commit(self, where: torch.Tensor, tok: torch.Tensor, conf: torch.Tensor) -> None:
        self.ids = torch.where(where, tok, self.ids)
        self.conf = torch.where(where, conf, self.conf)

    def remask(self, where: torch.Tensor) -> None:
        self.ids = self.ids.masked_fill(where, self.mask_id)
        self.conf = self.conf.masked_fill(where, 0.0)

    def lowest(
        self, k: int | torch.Tensor, among: torch.Tensor, score: torch.Tensor, highest: bool = False
    ) -> torch.Tensor:
        """Bool [B, L]: per row the k positions (k an int or [B]) of ``among`` with the lowest
        (or highest) score."""
        out = torch.zeros_like(among)
        k_rows = torch.as_tensor(k, device=among.device).clamp(0, self.L).expand(among.shape[0])
        k_max = int(k_rows.max().item())
        if k_max <= 0:
            return out
        fill = float("-inf") if highest else float("inf")
        s = torch.where(among, score, torch.full_like(score, fill))
        idx = s.topk(k_max, dim=-1, largest=highest).indices
        take = torch.arange(k_max, device=among.device)[None] < k_rows[:, None]
        out.scatter_(1, idx, take)
        return out & among

    def emit(self, t: float | torch.Tensor, revealed: torch.Tensor, remasked: torch.Tensor) -> StepState:
        self.step += 1
        if self.step == 1:
            revealed = revealed | self.fixed  # the length's EOS and padding appear with the first pass
        return StepState(
            self.step,
            self.num_steps,
            self.ids.clone(),
            self.conf.clone(),
            revealed.clone(),
            remasked.clone(),
            self.mask_id,
            float(torch.as_tensor(t).float().mean()),
        )


def _confidence_steps(run: _Run, counts: torch.Tensor, remasked_first: torch.Tensor | None = None):
    """counts [B, steps]: how many masks each row reveals at each step."""
    for i in range(counts.shape[1]):
        t = run.t_now()
        tok, conf = run.predict(t)
        reveal = run.lowest(counts[:, i], run.masked, conf, highest=True)
        run.commit(reveal, tok, conf)
        remasked = remasked_first if (i == 0 and remasked_first is not None) else torch.zeros_like(reveal)
        yield run.emit(t, reveal, remasked)


def _euler_steps(run: _Run, remask_ratio: float):
    n = run.num_steps
    for i in range(n):
        t, s = 1.0 - i / n, 1.0 - (i + 1) / n
        a_t = run.schedule.alpha(torch.tensor(t)).item()
        a_s = 1.0 if s <= 0 else run.schedule.alpha(torch.tensor(s)).item()
        p = 1.0 if s <= 0 else (a_s - a_t) / max(1.0 - a_t, 1e-12)
        tok, conf = run.predict(max(t, run.schedule.eps))
        u = run.uniform()
        reveal = run.masked & (u < p)
        committed_before = ~run.masked & ~run.fixed
        run.commit(reveal, tok, conf)
        remasked = torch.zeros_like(reveal)
        if remask_ratio > 0 and i < n - 1:
            # per row: a short row in the batch must not stop a long one from re-masking
            k = (remask_ratio * committed_before.sum(1).float()).round().long()
            remasked = run.lowest(k, committed_before, run.conf)
            run.remask(remasked)
        yield run.emit(t, reveal, remasked)


def _two_stage_steps(run: _Run, refine_ratio: float):
    n = run.num_steps
    n1 = n if n == 1 else math.ceil(n / 2)
    yield from _confidence_steps(run, reveal_counts_rows(run.masked.sum(1), n1))
    n2 = n - n1
    if n2 == 0:
        return
    free = (~run.fixed).sum(1)  # positions the length did not fix
    r = torch.minimum(free, torch.clamp((refine_ratio * free.float()).round().long(), min=n2))
    again = run.lowest(r, ~run.masked & ~run.fixed, run.conf)
    run.remask(again)
    yield from _confidence_steps(run, reveal_counts_rows(again.sum(1), n2), remasked_first=again)


@torch.inference_mode()
def denoise(
    model,
    cond: torch.Tensor,
    *,
    strategy: str = "confidence",
    num_steps: int = 8,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    schedule: Schedule = Schedule(),
    temperature: float = 0.0,
    remask_ratio: float = 0.05,
    refine_ratio: float = 0.25,
    lengths: torch.Tensor | None = None,
    compact: bool = True,
) -> Iterator[StepState]:
    """Invert cond [B, D]: yield exactly ``num_steps`` StepStates, one per forward pass.

    After the last state no position is masked. Given the same generator seed the output is
    identical. ``generator`` may be one generator per row: each row then draws its random numbers
    from its own, so that a row decodes as it would alone with that seed.
    ``num_steps`` may be any integer from 1 to L. ``lengths`` [B] (tokens before
    EOS, 0..L-1) fixes each row's EOS and padding before the first pass; with ``compact`` the
    passes then compute each row's positions up to its EOS only (the padding after it is neither
    computed nor attended to), which is what makes short sentences cheap.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a schedule.Schedule, e.g. Schedule('exp', lam=5.0), got {schedule!r}")
    L = model.cfg.seq_len
    if not 1 <= num_steps <= L:
        raise ValueError(f"num_steps must be between 1 and {L}, got {num_steps}")
    if cond.ndim != 2 or cond.shape[1] != model.cfg.cond_dim:
        raise ValueError(f"cond must be [B, {model.cfg.cond_dim}], got {list(cond.shape)}")
    if generator is None:
        generator = torch.Generator(device=cond.device).manual_seed(0)
    run = _Run(model, cond, num_steps, generator, schedule, temperature, lengths, compact)
    if strategy == "confidence":
        yield from _confidence_steps(run, reveal_counts_rows(run.masked.sum(1), num_steps))
    elif strategy == "euler":
        yield from _euler_steps(run, 0.0)
    elif strategy == "remask":
        yield from _euler_steps(run, remask_ratio)
    elif strategy == "two-stage":
        yield from _two_stage_steps(run, refine_ratio)
    else:  # a name in settings.STRATEGIES without its branch here
        raise ValueError(f"strategy {strategy!r} has no implementation in sampling.denoise")


def final(states: Iterator[StepState]) -> StepState:
    """Run a denoise() generator to its end and return the last state."""
    last = None
    for last in states:
        pass
    if last is None:
        raise ValueError("denoise produced no steps")
    return last
