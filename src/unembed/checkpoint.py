"""The one checkpoint format: safetensors tensors + JSON, loaded without executing code.

A model folder holds ``config.json`` (the resolved config) and ``model.safetensors`` or shards
``model-00001.safetensors``, ``model-00002.safetensors``, ... (inference weights, the EMA).
A training run folder adds ``state/`` (raw weights, EMA, optimizer, RNG and data position)
written atomically: a complete temporary folder is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import Config, from_dict, load_config_json, save_config, to_dict
from .files import atomic_path, write_text


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_model(
    folder: Path, cfg: Config, weights: dict[str, torch.Tensor], dtype: torch.dtype | None = None, shard_mb: float = 0.0
) -> list[Path]:
    """Write config.json and the weights (optionally cast, optionally split into shards)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in weights.items()}
    for old in folder.glob("model*.safetensors"):
        old.unlink()
    shards = _shard(weights, shard_mb) if shard_mb > 0 else [weights]
    paths = []
    for i, part in enumerate(shards, 1):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i:05d}.safetensors"
        _atomic_save(part, folder / name, {"format": "unembed/1"})
        paths.append(folder / name)
    write_text(folder / "config.json", json.dumps(to_dict(cfg), indent=2) + "\n")
    return paths


def _shard(weights: dict[str, torch.Tensor], shard_mb: float) -> list[dict[str, torch.Tensor]]:
    limit = shard_mb * 2**20
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in weights.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        if nbytes > limit:  # a single big tensor: split along dim 0 into numbered pieces
            for j, piece in enumerate(v.split(max(1, int(v.shape[0] * limit // nbytes)), dim=0)):
                if shards[-1]:
                    shards.append({})
                shards[-1][f"{k}@@{j}"] = piece
            shards.append({})
            size = 0
            continue
        shards[-1][k] = v
        size += nbytes
    return [s for s in shards if s]


def read_safetensors_dir(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in a folder (an encoder's own weights), as stored."""
    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read all weight shards of a model folder into one state dict (float32)."""
    folder = Path(folder)
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ValueError(f"no model weights (model*.safetensors) in {folder}")
    merged: dict[str, torch.Tensor] = {}
    pieces: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            if "@@" in k:
                name, j = k.rsplit("@@", 1)
                pieces.setdefault(name, []).append((int(j), v))
            else:
                merged[k] = v
    for name, parts in pieces.items():
        merged[name] = torch.cat([v for _, v in sorted(parts, key=lambda p: p[0])])
    return {k: v.float() if v.is_floating_point() else v for k, v in merged.items()}


def load_model(folder: Path, device: str | torch.device = "cpu"):
    """(config, Denoiser in eval mode) from a model folder; ValueError if it is missing or broken."""
    from .model import Denoiser

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"not a model folder (no config.json): {folder}")
    weights = load_weights(folder)
    cfg = load_config_json(folder / "config.json")
    model = Denoiser(cfg.model)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights in {folder} do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return cfg, model.to(device).eval()


# ---- training state -------------------------------------------------------------------------


def save_state(run_dir: Path, cfg: Config, tensors: dict[str, dict[str, torch.Tensor]], info: dict[str, Any]) -> None:
    """Atomically write run_dir/state/: one safetensors file per group plus state.json."""
    run_dir = Path(run_dir)
    tmp, final, old = run_dir / "state.tmp", run_dir / "state", run_dir / "state.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for group, tens in tensors.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in tens.items()}, str(tmp / f"{group}.safetensors"))
    (tmp / "state.json").write_text(json.dumps(info, indent=1))
    save_config(cfg, tmp / "config.json")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_state(run_dir: Path) -> tuple[Config, dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None:
    """The last complete training state in run_dir, or None when there is none."""
    run_dir = Path(run_dir)
    for cand in (run_dir / "state", run_dir / "state.old"):
        if (cand / "state.json").is_file():
            info = json.loads((cand / "state.json").read_text())
            tensors = {f.stem: load_file(str(f)) for f in cand.glob("*.safetensors")}
            cfg = from_dict(json.loads((cand / "config.json").read_text()))
            return cfg, tensors, info
    return None


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state_dict into (tensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{name}"] = val
            else:
                scalars[f"{idx}.{name}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    for key, val in rest["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
