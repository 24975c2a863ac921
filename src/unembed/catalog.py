"""Where models are: the models path (``$UNEMBED_MODELS``, the cache, the package), the models on
it and a name or folder resolved to a model folder. Torch-free, so training, the audit and the
CLI find a model without loading the inference facade."""

from __future__ import annotations

import os
from pathlib import Path

from .files import cache_root

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "minilm-default"


def models_path() -> list[Path]:
    """The folders searched for model names, in order (environment read at call time)."""
    env = [Path(p).expanduser() for p in os.environ.get("UNEMBED_MODELS", "").split(os.pathsep) if p.strip()]
    return [*env, cache_root() / "models", PACKAGE_MODELS]


def list_models() -> list[tuple[str, Path]]:
    """(name, folder) of every model on the models path, in search order; a later folder's model
    of the same name is listed too but shadowed by the first."""
    found = []
    for root in models_path():
        if root.is_dir():
            found += [(p.name, p) for p in sorted(root.iterdir()) if (p / "config.json").is_file()]
    return found


def resolve_model_dir(name: str) -> Path:
    """'default', a model name on the models path, or a folder path -> the model folder."""
    if name in ("default", ""):
        name = DEFAULT_MODEL
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    for root in models_path() if path.name == name else []:  # a bare name, not a path
        if (root / name / "config.json").is_file():
            return root / name
    known = sorted({n for n, _ in list_models()})
    raise ValueError(
        f"model {name!r} not found (no config.json there; known models: {', '.join(known) or 'none'};"
        " list them with `unembed models`)"
    )
