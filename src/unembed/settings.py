"""What a user chooses, once, torch-free: the names of strategies, length modes, precisions and
schedules, and `Decoding`, the settings of one decoding run, validated in one place.

The CLI builds a `Decoding` from its flags; evaluate, audit, defend and bulk inversion take it;
`Decoding.load` gives the loaded model with the settings resolved against it (the model's own
strategy and steps where none were chosen). The CLI's parser imports this module without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inverter import Inverter

STRATEGIES = ("confidence", "euler", "remask", "two-stage")  # sampling: the decoding strategies
LENGTH_MODES = ("auto", "head", "free")  # inverter: how the end of the sentence is chosen
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # precision: the decoding weights
SCHEDULE_KINDS = ("linear", "exp")  # schedule: the noise schedules
MAX_BATCH = 4096  # vectors decoded together at most


@dataclass(frozen=True)
class Decoding:
    """How vectors are decoded. ``None`` for strategy, steps, length or precision means the model's
    own (resolved by `load`). Every field is checked when the object is made: a bad value is a
    one-line ValueError (the device is checked against torch by `load`)."""

    model: str = "default"
    strategy: str | None = None
    steps: int | None = None
    seed: int = 0
    length: str | None = None
    precision: str | None = None
    batch_size: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        def one_of(value, known: tuple[str, ...]) -> bool:
            return value is None or value in known

        def whole(value, low: int, high: float = float("inf")) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

        checks = (
            (one_of(self.strategy, STRATEGIES), f"unknown strategy {self.strategy!r} (known: {', '.join(STRATEGIES)})"),
            (self.steps is None or whole(self.steps, 1), f"steps must be at least 1, got {self.steps!r}"),
            (whole(self.seed, 0), f"seed must be a non-negative integer, got {self.seed!r}"),
            (
                one_of(self.length, LENGTH_MODES),
                f"unknown length option {self.length!r} (known: {', '.join(LENGTH_MODES)})",
            ),
            (
                one_of(self.precision, PRECISIONS),
                f"unknown precision {self.precision!r} (known: {', '.join(PRECISIONS)})",
            ),
            (
                whole(self.batch_size, 1, MAX_BATCH),
                f"batch size must be between 1 and {MAX_BATCH}, got {self.batch_size!r}",
            ),
            (
                isinstance(self.model, str) and bool(self.model.strip()),
                f"model must be a name or a folder, got {self.model!r}",
            ),
        )
        bad = [what for ok, what in checks if not ok]
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def sample(self) -> dict[str, Any]:
        """The model-config overrides (``sample`` section) these settings make; None keeps the model's."""
        return {"length": self.length, "precision": self.precision}

    def resolved(self, cfg) -> Decoding:
        """These settings with the model's strategy and steps where none were chosen, checked against
        the model (steps at most its sequence length)."""
        out = replace(
            self,
            strategy=self.strategy or cfg.sample.strategy,
            steps=self.steps if self.steps is not None else cfg.sample.num_steps,
        )
        if out.steps > cfg.model.seq_len:
            raise ValueError(f"steps must be between 1 and {cfg.model.seq_len} for model {self.model}, got {out.steps}")
        return out

    def load(self, encoder=None) -> tuple[Inverter, Decoding]:
        """The model, loaded on the device with these overrides (``encoder`` replaces its own), and the
        settings resolved against it."""
        from .inverter import Inverter

        inv = Inverter.load(self.model, device=self.device, encoder=encoder, sample=self.sample)
        return inv, self.resolved(inv.cfg)


@dataclass(frozen=True)
class Runtime:
    """How decoding runs on this machine, not what it decodes (up to near-ties, where arithmetic in
    another order can flip a token): switches for comparisons and for machines where a speed-up
    misbehaves. Read from the
    environment in one place (`from_env`); a variable set to 0, false, no or off turns its
    switch off.

    ======================  =========  =====================================================
    variable                field      on (the default)
    ======================  =========  =====================================================
    ``UNEMBED_KERNELS``     kernels    the C kernels of `kernels` (off: torch operations)
    ``UNEMBED_OPENMP``      openmp     the kernels' parts on torch's OpenMP threads
                                       (off: Python threads)
    ``UNEMBED_TRACE``       trace      the decoder passes as TorchScript graphs
    ``UNEMBED_MALLOC``      malloc     glibc keeps large freed blocks for the next pass
    ======================  =========  =====================================================

    (``UNEMBED_CACHE`` and ``UNEMBED_MODELS`` are places, not switches: `files.cache_root`,
    `catalog.models_path`.)
    """

    kernels: bool = True
    openmp: bool = True
    trace: bool = True
    malloc: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        env = os.environ if environ is None else environ

        def on(field: str) -> bool:
            return env.get(f"UNEMBED_{field.upper()}", "1").strip().lower() not in ("0", "false", "no", "off")

        return cls(**{f.name: on(f.name) for f in fields(cls)})
