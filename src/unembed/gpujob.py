"""The one-command GPU training job.

``pack`` puts what the job needs into one folder of at most ``max_mb``: the sentence file
(gzip JSONL) and the encoder (tokenizer + float16 safetensors). ``run_job`` runs on the GPU
machine: it prepares (token ids + vectors, embedded on the GPU), trains one or more recipes
side by side on the same GPU for a fixed number of minutes (bf16 autocast), keeps the recipe
with the best end-to-end validation decode accuracy, and writes its EMA weights in float16
shards of at most ``shard_mb`` plus a job.json with every run's log into ``out``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

ENCODER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
)


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def pack(corpus: str, encoder: str, out: str, max_mb: float = 60.0) -> dict:
    """corpus JSONL ({text, source}) + encoder preset -> a folder the GPU job reads."""
    from safetensors.torch import load_file, save_file

    from .encoders import resolve_source

    src = Path(corpus)
    if not src.is_file():
        raise ValueError(f"corpus file not found: {corpus}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, gzip.open(out_dir / "sentences.jsonl.gz", "wb", compresslevel=9) as fout:
        shutil.copyfileobj(fin, fout)
    folder, preset = resolve_source(encoder)
    enc_dir = out_dir / "encoder"
    enc_dir.mkdir(exist_ok=True)
    for name in ENCODER_FILES:
        if (Path(folder) / name).is_file():
            shutil.copy2(Path(folder) / name, enc_dir / name)
    state = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(f)))
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(half, str(enc_dir / "model.safetensors"))
    info = {
        "encoder": encoder,
        "pooling": preset.pooling,
        "max_length": preset.max_length,
        "sentences": sum(1 for _ in open(src)),
        "mb": round(_dir_mb(out_dir), 2),
    }
    (out_dir / "pack.json").write_text(json.dumps(info, indent=1))
    if info["mb"] > max_mb:
        raise ValueError(f"pack is {info['mb']:.1f} MB, over the {max_mb} MB limit")
    return info


RECIPES = {
    # name: overrides on top of the job's config (compared at equal wall time on one GPU)
    "enc-linear-lr1e-3": ["model.init=encoder", "schedule.kind=linear", "train.lr=0.001"],
    "rand-linear-lr1e-3": ["model.init=random", "schedule.kind=linear", "train.lr=0.001"],
    "enc-exp-lr1e-3": ["model.init=encoder", "schedule.kind=exp", "train.lr=0.001"],
    "enc-linear-lr3e-4": ["model.init=encoder", "schedule.kind=linear", "train.lr=0.0003"],
}


def run_job(
    pack_dir: str,
    out: str,
    minutes: float,
    config: str = "small",
    overrides: list[str] | None = None,
    work: str | None = None,
    shard_mb: float = 15.0,
    recipes: list[str] | None = None,
    limit: int | None = None,
) -> dict:
    """Prepare + train for ``minutes`` in all (wall clock, this function included); export the best."""
    t0 = time.time()
    pack_path, out_dir = Path(pack_dir), Path(out)
    info = json.loads((pack_path / "pack.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work or tempfile.mkdtemp(prefix="unembed-job-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data_dir = _prepare(pack_path, info, work_dir, config, overrides or [], device, limit)
    t_prep = time.time() - t0
    log.warning("prepared in %.0f s", t_prep)
    names = recipes or list(RECIPES)
    train_minutes = max(0.1, minutes - (time.time() - t0) / 60 - 0.5)
    enc = str((pack_path / "encoder").resolve())
    base = [
        *(overrides or []),
        f"train.data={data_dir}",
        f"encoder.name={enc}",
        f"encoder.pooling={info['pooling']}",
        f"train.max_minutes={train_minutes:.3f}",
    ]
    procs = {}
    for name in names:
        args = [
            sys.executable,
            "-m",
            "unembed.cli",
            "train",
            "--config",
            config,
            "--out",
            str(work_dir / name),
            "--no-progress",
            *base,
            *RECIPES[name],
        ]
        logf = open(work_dir / f"{name}.out", "w")
        procs[name] = (subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=_env()), logf)
    first, last_export = names[0], time.time()
    while any(p.poll() is None for p, _ in procs.values()):
        time.sleep(5)
        if time.time() - last_export > 60:  # keep recent weights in out in case the job is killed
            _export(work_dir / first, out_dir, info, shard_mb)
            last_export = time.time()
    runs = {name: _summary(work_dir / name, p.returncode) for name, (p, _) in procs.items()}
    best = max((n for n in runs if runs[n]["ok"]), key=lambda n: runs[n]["val_decode_acc"], default=None)
    if best is None:
        tails = {n: (work_dir / f"{n}.out").read_text()[-2000:] for n in names}
        raise RuntimeError(f"every training run failed: {json.dumps(tails)[:6000]}")
    _export(work_dir / best, out_dir, info, shard_mb)
    result = {
        "best": best,
        "prepare_s": round(t_prep, 1),
        "total_s": round(time.time() - t0, 1),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "runs": runs,
    }
    (out_dir / "job.json").write_text(json.dumps(result, indent=1))
    return result


def _env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _prepare(
    pack_path: Path, info: dict, work_dir: Path, config: str, overrides: list[str], device: str, limit: int | None
) -> Path:
    from .config import load_config
    from .prepare import run_prepare

    seq_len = load_config(config, overrides=overrides).model.seq_len
    sentences = work_dir / "sentences.jsonl"
    with gzip.open(pack_path / "sentences.jsonl.gz", "rb") as fin, open(sentences, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    data_dir = work_dir / "data"
    run_prepare(
        str(sentences),
        str((pack_path / "encoder").resolve()),
        data_dir,
        limit=limit,
        seq_len=seq_len,
        batch_size=512 if device == "cuda" else 64,
        device=device,
        progress=False,
    )
    return data_dir


def _summary(run_dir: Path, returncode: int | None) -> dict:
    logs = []
    if (run_dir / "log.jsonl").is_file():
        logs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in logs if "val_decode_acc" in r]
    trains = [r for r in logs if "loss" in r]
    return {
        "ok": returncode == 0 and (run_dir / "config.json").is_file(),  # a model, validated or not (tiny)
        "returncode": returncode,
        "val_decode_acc": evals[-1]["val_decode_acc"] if evals else 0.0,
        "val_loss": evals[-1]["val_loss"] if evals else None,
        "val_masked_acc": evals[-1]["val_masked_acc"] if evals else None,
        "train_steps": trains[-1]["train_step"] if trains else 0,
        "seq_per_s": trains[-1]["seq_per_s"] if trains else 0.0,
        "log": logs,
    }


def _export(run_dir: Path, out_dir: Path, info: dict, shard_mb: float) -> None:
    """The run's model (best EMA) -> float16 shards in out, with the encoder named by its preset."""
    from dataclasses import replace

    from .checkpoint import load_weights, save_model
    from .config import load_config_json

    if not (run_dir / "config.json").is_file() or not list(run_dir.glob("model*.safetensors")):
        return
    cfg = load_config_json(run_dir / "config.json")
    cfg = replace(
        cfg, encoder=replace(cfg.encoder, name=info["encoder"], pooling=""), train=replace(cfg.train, data="")
    )
    try:
        save_model(out_dir, cfg, load_weights(run_dir), dtype=torch.float16, shard_mb=shard_mb)
    except (OSError, RuntimeError) as exc:  # a file being replaced by the trainer right now: next time
        log.warning("export skipped: %s", exc)
