"""The facade that the CLI, the server and evaluation all use: encode, invert, stream.

``Inverter.load("default")`` finds the shipped model in ``models/minilm-default`` from any working
directory; any model folder (config.json + safetensors) or a name under ``models/`` works too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .config import Config
from .devices import check_device
from .metrics import cosine, token_accuracy_per_row
from .sampling import STRATEGIES, StepState, denoise, final
from .text import DecoderTokenizer

log = logging.getLogger(__name__)

MODELS_DIR = Path(os.environ.get("UNEMBED_MODELS", Path(__file__).resolve().parents[2] / "models"))
DEFAULT_MODEL = "minilm-default"
MAX_BATCH = 4096


def resolve_model_dir(name: str) -> Path:
    """'default', a name under models/, or a folder path -> the model folder."""
    if name in ("default", ""):
        name = DEFAULT_MODEL
    path = Path(name)
    for cand in (path, MODELS_DIR / name):
        if (cand / "config.json").is_file():
            return cand
    known = sorted(p.name for p in MODELS_DIR.glob("*") if (p / "config.json").is_file()) if MODELS_DIR.is_dir() else []
    raise ValueError(f"model {name!r} not found (no config.json there; shipped models: {', '.join(known) or 'none'})")


@dataclass(frozen=True)
class Inversion:
    text: str
    ids: list[int]
    confidence: list[float]  # per position, probability of the committed token


class Inverter:
    def __init__(
        self, cfg: Config, model, tokenizer: DecoderTokenizer, name: str = "", device: str = "cpu", encoder=None
    ):
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.name, self.device = name, torch.device(device)
        self._encoder = encoder

    @classmethod
    def load(cls, name: str = "default", device: str = "cpu", encoder=None) -> Inverter:
        check_device(device)
        folder = resolve_model_dir(name)
        cfg, model = load_model(folder, device)
        if encoder is None:
            hf_tok = _load_tokenizer(cfg.encoder.name)
        else:
            hf_tok = encoder.tokenizer
        tok = DecoderTokenizer(hf_tok, cfg.model.seq_len)
        s = tok.specials
        if (s.vocab_size, s.mask_id, s.eos_id) != (cfg.model.vocab_size, cfg.model.mask_id, cfg.model.eos_id):
            raise ValueError(f"model {folder} was trained with another tokenizer than encoder {cfg.encoder.name!r}")
        return cls(cfg, model, tok, name=folder.name, device=device, encoder=encoder)

    # ---- encoder ------------------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from .encoders import load_encoder

            e = self.cfg.encoder
            self._encoder = load_encoder(e.name, e.pooling, 0, e.batch_size, str(self.device))
        return self._encoder

    @property
    def dim(self) -> int:
        return self.cfg.model.cond_dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError("text must be a non-empty string")
        return self.encoder.encode(texts)

    # ---- inversion ----------------------------------------------------------------------------
    def check_vectors(self, vectors) -> torch.Tensor:
        """Validate [B, D] (or [D]) vectors and return unit-norm float32 on the model's device."""
        v = np.asarray(vectors, dtype=np.float64)
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

    def stream(
        self, vectors, strategy: str | None = None, num_steps: int | None = None, seed: int = 0
    ) -> Iterator[StepState]:
        """Yield one StepState per decoder forward pass (the generator the CLI and server share)."""
        sc, sa = self.cfg.schedule, self.cfg.sample
        strategy = strategy or sa.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
        num_steps = sa.num_steps if num_steps is None else num_steps  # 0 is an error, not the default
        if not 1 <= num_steps <= self.cfg.model.seq_len:
            raise ValueError(f"steps must be between 1 and {self.cfg.model.seq_len}, got {num_steps}")
        cond = self.check_vectors(vectors)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return denoise(
            self.model,
            cond,
            strategy=strategy,
            num_steps=num_steps,
            generator=gen,
            schedule=sc.kind,
            lam=sc.lam,
            eps=sc.eps,
            temperature=sa.temperature,
            remask_ratio=sa.remask_ratio,
            refine_ratio=sa.refine_ratio,
        )

    def invert(
        self, vectors, strategy: str | None = None, num_steps: int | None = None, seed: int = 0, batch_size: int = 256
    ) -> list[Inversion]:
        """Invert [B, D] vectors in batches of batch_size; each batch restarts the seeded generator."""
        rows = np.asarray(vectors, dtype=np.float32)
        rows = rows[None] if rows.ndim == 1 else rows
        if rows.shape[0] == 0:
            raise ValueError("no vectors to invert")
        out: list[Inversion] = []
        for i in range(0, len(rows), batch_size):
            out.extend(self._results(final(self.stream(rows[i : i + batch_size], strategy, num_steps, seed))))
        return out

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


def _load_tokenizer(encoder_name: str):
    from transformers import AutoTokenizer

    from .encoders import resolve_source

    source, _ = resolve_source(encoder_name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ValueError(f"cannot load the tokenizer of encoder {encoder_name!r}: {str(exc).splitlines()[0]}") from None
