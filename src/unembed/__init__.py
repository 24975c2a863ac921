"""unembed: recover text from text-embedding vectors with a conditional masked-diffusion decoder.

    >>> from unembed import invert_strings, invert_embeddings, Inverter
    >>> invert_strings(["The weather is lovely today."])          # embed, then invert
    >>> invert_embeddings(vectors)                                # [B, D] or [D] vectors -> texts
    >>> inv = Inverter.load("default"); inv.invert(inv.encode("some text"))

Public names: :class:`Inverter` (the facade the CLI and server use), :func:`load_encoder`
(texts -> unit vectors), :func:`denoise` (the sampler, a generator of step states),
:data:`STRATEGIES` (decoding strategies), :func:`invert_embeddings` and :func:`invert_strings`
(one-call helpers shaped like vec2text's), :func:`models_path` and :func:`list_models` (where model
names are looked up) and ``__version__``. Names are imported on first use, so ``import unembed``
does not load torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one version: pyproject.toml reads it (tool.setuptools.dynamic)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .catalog import list_models, models_path
    from .encoders import load_encoder
    from .inverter import Inverter
    from .sampling import STRATEGIES, denoise

_LAZY = {
    "Inverter": "inverter",
    "list_models": "catalog",
    "models_path": "catalog",
    "load_encoder": "encoders",
    "denoise": "sampling",
    "STRATEGIES": "sampling",
}
__all__ = [
    "STRATEGIES",
    "Inverter",
    "__version__",
    "denoise",
    "invert_embeddings",
    "invert_strings",
    "list_models",
    "load_encoder",
    "models_path",
]

_loaded: dict[tuple[str, str], Inverter] = {}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unembed' has no attribute {name!r}")


def _inverter(model: str, device: str) -> Inverter:
    """Load a model once per (model, device) and keep it for later calls."""
    from .inverter import Inverter

    key = (model, device)
    if key not in _loaded:
        _loaded[key] = Inverter.load(model, device=device)
    return _loaded[key]


def invert_embeddings(
    embeddings: ArrayLike,
    model: str = "default",
    num_steps: int = 8,
    strategy: str = "confidence",
    *,
    seed: int = 0,
    device: str = "cpu",
) -> list[str]:
    """Vectors [B, D] (or one [D]) made by the model's encoder -> B reconstructed texts.

    ``model`` is a name on the models path or a model folder (loaded once, then reused);
    ``num_steps`` decoder passes (1..L); ``strategy`` one of :data:`STRATEGIES`.
    """
    return [r.text for r in _inverter(model, device).invert(embeddings, strategy, num_steps, seed)]


def invert_strings(
    texts: str | Sequence[str],
    model: str = "default",
    num_steps: int = 8,
    strategy: str = "confidence",
    *,
    seed: int = 0,
    device: str = "cpu",
) -> list[str]:
    """Embed texts with the model's own encoder, then invert the vectors: what an attacker holding
    those vectors would read. One string counts as one text."""
    inv = _inverter(model, device)
    return [r.text for r in inv.invert(inv.encode(texts), strategy, num_steps, seed)]
