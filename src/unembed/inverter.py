"""The facade that the CLI, the server and evaluation all use: encode, invert, stream.

``Inverter.load("default")`` finds the shipped model ``minilm-default`` from any working directory.
A model is a folder holding config.json + safetensors, given by path or by name; names are looked
up on the models path (:func:`catalog.models_path`), first match wins:

1. each folder in ``$UNEMBED_MODELS`` (``os.pathsep``-separated),
2. the user's cache, ``$UNEMBED_CACHE/models`` (default ``~/.cache/unembed/models``),
3. the models shipped inside the package (``unembed/models``, the checkout's ``models/``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from .catalog import resolve_model_dir
from .checkpoint import load_model
from .config import Config, with_sample
from .devices import check_device
from .length import length_order, predict_lengths
from .memory import keep_freed_memory, release_freed_memory
from .metrics import cosine, token_accuracy_per_row
from .precision import for_inference
from .sampling import STRATEGIES, StepState, denoise, final
from .schedule import Schedule
from .settings import LENGTH_MODES, MAX_BATCH
from .text import DecoderTokenizer
from .threads import free_cores

if TYPE_CHECKING:
    from .encoders import Encoder

log = logging.getLogger(__name__)

START_THREADS = torch.get_num_threads()  # torch's thread count when unembed was imported: the most decoding uses


@dataclass(frozen=True)
class Inversion:
    """One reconstruction: its text, the decoder's token ids [L] and each position's confidence."""

    text: str
    ids: list[int]
    confidence: list[float]  # per position, probability of the committed token


class Inverter:
    """A loaded decoder with its tokenizer and (lazily) its encoder: ``encode`` texts to vectors,
    ``invert`` vectors to :class:`Inversion` results, ``stream`` one step state per decoder pass."""

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        tokenizer: DecoderTokenizer,
        name: str = "",
        device: str = "cpu",
        encoder: Encoder | None = None,
    ):
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.name, self.device = name, torch.device(device)
        self._encoder = encoder
        self.folder: Path | None = None  # the model folder it was loaded from (load sets it)
        # On a CPU, each decoding call uses the cores other programs leave free (unembed.threads),
        # at most the thread count torch had when the model was loaded.
        self.adapt_threads = self.device.type == "cpu"
        self.max_threads = START_THREADS

    @classmethod
    def load(
        cls,
        name: str = "default",
        device: str = "cpu",
        encoder: Encoder | None = None,
        sample: dict[str, Any] | None = None,
    ) -> Inverter:
        """A model by name (see :func:`catalog.models_path`) or folder; ``encoder`` replaces the model's own.

        ``sample`` overrides the model's decoding settings (``cfg.sample``: strategy, num_steps,
        length, precision, compact, ...), e.g. ``{"precision": "int8"}``; None values are ignored.

        On the CPU this also raises glibc's allocator thresholds for the whole process, so that
        passes reuse their large blocks instead of faulting them in again (``unembed.memory``;
        ``UNEMBED_MALLOC=0`` before the first load leaves the allocator alone).
        """
        check_device(device)
        if torch.device(device).type == "cpu":
            keep_freed_memory()  # passes reuse their large blocks instead of faulting them in again
        folder = resolve_model_dir(name)
        cfg, model = load_model(folder, device)
        cfg = with_sample(cfg, sample)
        model = for_inference(model, cfg.sample.precision)
        if encoder is None:
            from .encoders import load_tokenizer  # imports transformers: only when needed

            hf_tok = load_tokenizer(cfg.encoder.name)
        else:
            hf_tok = encoder.tokenizer
        tok = DecoderTokenizer(hf_tok, cfg.model.seq_len)
        s = tok.specials
        if (s.vocab_size, s.mask_id, s.eos_id) != (cfg.model.vocab_size, cfg.model.mask_id, cfg.model.eos_id):
            raise ValueError(f"model {folder} was trained with another tokenizer than encoder {cfg.encoder.name!r}")
        release_freed_memory()  # what loading and converting freed goes back to the system
        inv = cls(cfg, model, tok, name=folder.name, device=device, encoder=encoder)
        inv.folder = folder
        return inv

    # ---- encoder ------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from .encoders import load_encoder

            e = self.cfg.encoder
            self._encoder = load_encoder(e.name, e.pooling, 0, e.batch_size, str(self.device))
        return self._encoder

    @property
    def dim(self) -> int:
        return self.cfg.model.cond_dim

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """One text or a list of texts -> unit vectors float32 [B, D] (B = 1 for one text)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("no texts to encode")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError("text must be a non-empty string")
        return self.encoder.encode(texts)

    # ---- inversion ----------------------------------------------------------------------------
    def check_vectors(self, vectors: ArrayLike) -> torch.Tensor:
        """Validate [B, D] (or [D]) vectors and return unit-norm float32 on the model's device."""
        v = _as_array(vectors, np.float64)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must have dimension {self.dim} for model {self.name}, got shape {list(v.shape)}")
        if v.shape[0] == 0 or v.shape[0] > MAX_BATCH:
            raise ValueError(f"give between 1 and {MAX_BATCH} vectors at a time")
        if not np.isfinite(v).all():
            raise ValueError("vectors contain NaN or infinite values")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if (norms < 1e-12).any():
            raise ValueError("a vector is all zeros; nothing to invert")
        return torch.from_numpy((v / norms).astype(np.float32)).to(self.device)

    def length_mode(self, length: str | None = None) -> str:
        """The length option in effect: 'head' (fix EOS from the length head first) or 'free'."""
        mode = length or self.cfg.sample.length
        if mode not in LENGTH_MODES:
            raise ValueError(f"unknown length option {mode!r} (known: {', '.join(LENGTH_MODES)})")
        if mode == "auto":
            return "head" if self.model.has_length_head else "free"
        if mode == "head" and not self.model.has_length_head:
            raise ValueError(f"model {self.name} has no length head: use length 'free' or fit one (unembed fit-length)")
        return mode

    def stream(
        self,
        vectors: ArrayLike,
        strategy: str | None = None,
        num_steps: int | None = None,
        seed: int | Sequence[int] = 0,
        length: str | None = None,
    ) -> Iterator[StepState]:
        """Yield one StepState per decoder forward pass (the generator the CLI and server share).

        ``length``: 'auto' (default: the length head when the model has one), 'head' or 'free'.
        ``seed``: one seed for every row, or one per row. Each row draws its random numbers from
        its own generator, so it decodes as it would alone with its seed, whatever else is in the
        batch (with the per-row int8 scales of ``precision``, the same vector gives the same text
        in a batch of any size).
        """
        sa = self.cfg.sample
        strategy = strategy or sa.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
        num_steps = sa.num_steps if num_steps is None else num_steps  # 0 is an error, not the default
        if not 1 <= num_steps <= self.cfg.model.seq_len:
            raise ValueError(f"steps must be between 1 and {self.cfg.model.seq_len}, got {num_steps}")
        mode = self.length_mode(length)
        cond = self.check_vectors(vectors)
        if self.adapt_threads:
            n = free_cores(self.max_threads)
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
        lengths = predict_lengths(self.model, cond) if mode == "head" else None
        if isinstance(seed, int):
            seed = [seed] * cond.shape[0]
        if len(seed) != cond.shape[0]:
            raise ValueError(f"give one seed per vector: {len(seed)} seeds for {cond.shape[0]} vectors")
        gen = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seed]
        return denoise(
            self.model,
            cond,
            strategy=strategy,
            num_steps=num_steps,
            generator=gen,
            schedule=Schedule.from_config(self.cfg.schedule),
            temperature=sa.temperature,
            remask_ratio=sa.remask_ratio,
            refine_ratio=sa.refine_ratio,
            lengths=lengths,
            compact=sa.compact,
        )

    def invert(
        self,
        vectors: ArrayLike,
        strategy: str | None = None,
        num_steps: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
        length: str | None = None,
    ) -> list[Inversion]:
        """Invert [B, D] vectors in batches of batch_size; every row decodes as it would alone with ``seed``.

        With a committed length and compact passes, the rows are batched in order of predicted
        length (results come back in input order), so that a batch's passes run on about its
        sentences' own length instead of its longest one's.
        """
        rows = _as_array(vectors, np.float32)
        rows = rows[None] if rows.ndim == 1 else rows
        if rows.shape[0] == 0:
            raise ValueError("no vectors to invert")
        order = np.arange(len(rows))
        if len(rows) > batch_size and self.length_mode(length) == "head" and self.cfg.sample.compact:
            with torch.inference_mode():
                chunks = (self.check_vectors(rows[i : i + MAX_BATCH]) for i in range(0, len(rows), MAX_BATCH))
                order = length_order(self.model, chunks)[1].cpu().numpy()
        out: list[Inversion | None] = [None] * len(rows)
        for i in range(0, len(rows), batch_size):
            take = order[i : i + batch_size]
            done = self._results(final(self.stream(rows[take], strategy, num_steps, seed, length)))
            for j, res in zip(take.tolist(), done):
                out[j] = res
        return out  # type: ignore[return-value]

    def _results(self, state: StepState) -> list[Inversion]:
        ids, conf = state.ids.cpu().numpy(), state.confidence.float().cpu().numpy()
        return [Inversion(self.tokenizer.decode(r), r.tolist(), c.round(4).tolist()) for r, c in zip(ids, conf)]

    def score(self, texts: Sequence[str], inversions: Sequence[Inversion], targets: np.ndarray) -> list[dict]:
        """Token accuracy against the texts and cosine of the re-embedded reconstructions."""
        ref = self.tokenizer.encode(list(texts))
        pred = np.array([inv.ids for inv in inversions])
        acc = token_accuracy_per_row(pred, ref, self.cfg.model.eos_id)
        recon = [inv.text or " " for inv in inversions]
        cos = cosine(self.encode([r if r.strip() else "." for r in recon]), targets)
        return [{"token_accuracy": float(a), "cosine": float(c)} for a, c in zip(acc, cos)]


def _as_array(vectors: ArrayLike, dtype: type) -> np.ndarray:
    """Vectors as a numeric array; texts get a ValueError that says to encode them first."""
    if isinstance(vectors, str) or (
        isinstance(vectors, Sequence) and len(vectors) > 0 and all(isinstance(v, str) for v in vectors)
    ):
        raise ValueError("invert takes vectors, not texts: call encode(texts) first, then invert(vectors)")
    try:
        return np.asarray(vectors, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vectors must be numbers of shape [B, D] or [D]: {exc}") from None
