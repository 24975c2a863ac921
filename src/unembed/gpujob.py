"""The one-command GPU training job: one recipe, one GPU, every second of a short lease used.

``pack`` (here, on the CPU) writes one small folder the job reads:

    sentences.txt.xz  the corpus, one clean de-duplicated sentence a line (xz)
    splits.u8.xz      one byte a sentence: 0 train, 1 validation, 2 test (sentences.split_of, xz)
    encoder/          tokenizer + config + weights.safetensors at the smallest precision whose
                      vectors match the fp32 encoder at cosine >= MIN_COSINE (measured, recorded)
    pack.json         encoder preset, pooling, precision and its measured cosines, the run-length
                      source names, counts and size

``run_job`` (on the GPU machine) unpacks the encoder, prepares token ids and vectors in seconds
(prepare.prepare_clean: batch tokenisation, embedding at a large batch under autocast, no
per-sentence filtering), then trains one config (a preset + overrides) with every row of the data
on the device and no host sync per step (train.resident, train.sync_free), validating every
``train.eval_minutes``. Each new best EMA model goes to ``out`` at once as float16 shards of at
most ``shard_mb`` with config.json and job.json (the log), each file replaced atomically, so a
run killed at any moment leaves a loadable model; the job stops itself ``margin_s`` before
``minutes`` are up. ``out`` never holds more than 8 files.
"""

from __future__ import annotations

import json
import logging
import lzma
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .files import atomic_path, bad_line, read_jsonl
from .schedule import Schedule

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
# Smallest first: int8 weights with one float16 scale per group of G input columns, then float16.
PRECISIONS = ("int8-g128", "int8-g64", "int8-g32", "float16")
MIN_COSINE = 0.999
MAX_OUT_FILES = 8
H200_BF16_DENSE = 989e12  # datasheet dense bf16 FLOP/s of an H100/H200 SXM


# ---- encoder weights at low precision ------------------------------------------------------------


def quantize(state: dict[str, torch.Tensor], precision: str) -> dict[str, torch.Tensor]:
    """Float tensors -> the stored form: ``name.q8`` int8 + ``name.scale`` float16 [out, in / G] for
    2-D weights whose width G divides (int8-gG), float16 for the rest; other dtypes as they are."""
    group = _group(precision)
    out: dict[str, torch.Tensor] = {}
    for name, w in state.items():
        if not w.is_floating_point():
            out[name] = w
        elif group and w.ndim == 2 and w.shape[1] % group == 0:
            g = w.float().reshape(w.shape[0], -1, group)
            scale = (g.abs().amax(-1, keepdim=True) / 127).clamp(min=1e-12).half()
            out[f"{name}.q8"] = (g / scale.float()).round().clamp(-127, 127).to(torch.int8).reshape(w.shape)
            out[f"{name}.scale"] = scale.squeeze(-1)
        else:
            out[name] = w.half()
    return out


def dequantize(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``quantize`` up to rounding: float32 tensors under their own names."""
    out: dict[str, torch.Tensor] = {}
    for name, v in stored.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".q8"):
            base = name.removesuffix(".q8")
            scale = stored[f"{base}.scale"].float()
            group = v.shape[1] // scale.shape[1]
            out[base] = (v.float().reshape(v.shape[0], -1, group) * scale.unsqueeze(-1)).reshape(v.shape)
        else:
            out[name] = v.float() if v.is_floating_point() else v
    return out


def _group(precision: str) -> int:
    if precision == "float16":
        return 0
    if precision.startswith("int8-g") and precision[6:].isdigit():
        return int(precision[6:])
    raise ValueError(f"unknown encoder precision {precision!r} (known: {', '.join(PRECISIONS)})")


def _encoder_state(folder: Path) -> dict[str, torch.Tensor]:
    from .checkpoint import read_safetensors_dir

    state = read_safetensors_dir(folder)
    if not state:
        raise ValueError(f"encoder folder {folder} holds no safetensors weights")
    return state


def unpack_encoder(stored_dir: Path, out_dir: Path) -> Path:
    """A packed encoder folder -> a plain one (float32 model.safetensors) that HFEncoder loads."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    for f in stored_dir.iterdir():
        if f.is_file() and f.name != "weights.safetensors":
            shutil.copy2(f, out_dir / f.name)
    save_file(dequantize(load_file(str(stored_dir / "weights.safetensors"))), str(out_dir / "model.safetensors"))
    return out_dir


def _cosines(reference: np.ndarray, folder: Path, texts: list[str], pooling: str) -> np.ndarray:
    from .encoders import HFEncoder

    enc = HFEncoder(str(folder), pooling=pooling, batch_size=64)
    return (enc.encode(texts) * reference).sum(1)


# ---- pack ------------------------------------------------------------------------------------------


def _read_corpus(path: Path) -> tuple[list[str], list[str]]:
    texts, sources = [], []
    need = "a JSON object with a 'text' field"
    for lineno, rec in read_jsonl(path, need):
        if "text" not in rec:
            raise bad_line(path, lineno, need)
        text = rec["text"]
        if not isinstance(text, str) or "\n" in text or not text.strip():
            raise ValueError(f"{path.name}:{lineno}: 'text' must be one non-empty line")
        texts.append(text)
        sources.append(str(rec.get("source") or path.stem))
    if not texts:
        raise ValueError(f"corpus file {path} holds no sentences")
    return texts, sources


def _runs(names: list[str]) -> list[list]:
    """['a', 'a', 'b'] -> [['a', 2], ['b', 1]]."""
    out: list[list] = []
    for n in names:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return out


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def pack(
    corpus: str,
    encoder: str,
    out: str,
    max_mb: float = 60.0,
    fidelity_n: int = 500,
    precisions: tuple[str, ...] = PRECISIONS,
) -> dict:
    """corpus JSONL ({text, source}, as ``unembed corpus`` writes it) + encoder preset -> a pack folder.

    The encoder precision is the first of ``precisions`` whose vectors, on ``fidelity_n`` corpus
    sentences (every k-th), have cosine >= MIN_COSINE to the fp32 encoder's at the minimum.
    """
    src, out_dir = Path(corpus), Path(out)
    if not src.is_file():
        raise ValueError(f"corpus file not found: {corpus}")
    texts, sources = _read_corpus(src)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_pack(out_dir, texts, sources, encoder, max_mb, fidelity_n, precisions)
    except BaseException:  # a refused or failed pack leaves nothing of itself behind
        for name in ("sentences.txt.xz", "splits.u8.xz", "pack.json"):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "encoder", ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _write_pack(out_dir: Path, texts, sources, encoder: str, max_mb: float, fidelity_n: int, precisions) -> dict:
    from safetensors.torch import save_file

    from .encoders import HFEncoder, resolve_source
    from .prepare import SPLIT_CODES
    from .sentences import split_of

    with lzma.open(out_dir / "sentences.txt.xz", "wt", encoding="utf-8", preset=9) as fh:
        fh.write("\n".join(texts) + "\n")
    splits = bytes(SPLIT_CODES[split_of(t)] for t in texts)
    with lzma.open(out_dir / "splits.u8.xz", "wb", preset=9) as fh:
        fh.write(splits)
    folder, preset = resolve_source(encoder)
    state = _encoder_state(Path(folder))
    sample = texts[:: max(1, len(texts) // fidelity_n)][:fidelity_n]
    reference = HFEncoder(encoder, batch_size=64).encode(sample)
    enc_dir = out_dir / "encoder"
    chosen = None
    for precision in precisions:
        shutil.rmtree(enc_dir, ignore_errors=True)
        enc_dir.mkdir()
        for name in ENCODER_FILES:
            if (Path(folder) / name).is_file():
                shutil.copy2(Path(folder) / name, enc_dir / name)
        save_file(quantize(state, precision), str(enc_dir / "weights.safetensors"))
        with tempfile.TemporaryDirectory() as tmp:
            cos = _cosines(reference, unpack_encoder(enc_dir, Path(tmp)), sample, preset.pooling)
        log.info("encoder at %s: cosine mean %.6f min %.6f", precision, cos.mean(), cos.min())
        chosen = {"precision": precision, "n": len(sample), "mean": float(cos.mean()), "min": float(cos.min())}
        if chosen["min"] >= MIN_COSINE:
            break
    info = {
        "format": "unembed-pack/2",
        "encoder": encoder,
        "pooling": preset.pooling,
        "max_length": preset.max_length,
        "encoder_fidelity": chosen,
        "sentences": len(texts),
        "sources": _runs(sources),
        "splits": {s: splits.count(code) for s, code in SPLIT_CODES.items()},
        "mb": 0.0,
    }
    (out_dir / "pack.json").write_text(json.dumps(info, indent=1))
    info["mb"] = round(_dir_mb(out_dir), 2)
    (out_dir / "pack.json").write_text(json.dumps(info, indent=1))
    if chosen["min"] < MIN_COSINE:
        raise ValueError(f"no encoder precision reaches cosine {MIN_COSINE} (last: {chosen})")
    if info["mb"] > max_mb:
        raise ValueError(f"pack is {info['mb']:.1f} MB, over the {max_mb} MB limit")
    return info


def read_pack(pack_dir: Path, limit: int | None = None) -> tuple[dict, list[str], list[str], np.ndarray]:
    """pack folder -> (info, texts, sources, split codes uint8), the first ``limit`` rows."""
    info = json.loads((pack_dir / "pack.json").read_text())
    with lzma.open(pack_dir / "sentences.txt.xz", "rt", encoding="utf-8") as fh:
        texts = fh.read().split("\n")[:-1]
    with lzma.open(pack_dir / "splits.u8.xz", "rb") as fh:
        splits = np.frombuffer(fh.read(), dtype=np.uint8)
    sources = [name for name, n in info["sources"] for _ in range(n)]
    if not len(texts) == len(sources) == len(splits) == info["sentences"]:
        raise ValueError(f"pack {pack_dir} is inconsistent: {len(texts)} texts, {len(splits)} splits")
    n = len(texts) if limit is None else limit
    return info, texts[:n], sources[:n], splits[:n]


# ---- the job ---------------------------------------------------------------------------------------


def train_flops_per_seq(mcfg, masked_share: float) -> float:
    """Training FLOPs of one sequence: 3x the forward (matmuls, attention, the head at masked positions).

    Same count as benchmarks/common.forward_flops for batch 1.
    """
    w, m, n, L, v = mcfg.width, mcfg.mlp_dim, mcfg.n_layers, mcfg.seq_len, mcfg.vocab_size
    per_token = 3 * w * w + w * w + 2 * w * m
    per_seq = mcfg.cond_dim * w + w * w + 2 * w * w + n * 6 * w * w + 2 * w * w
    forward = 2.0 * per_token * L * n + 2.0 * per_seq + 4.0 * L * L * w * n + 2.0 * w * v * L * masked_share
    return 3 * forward


def measure_matmul_peak(device: torch.device) -> float:
    """bf16 FLOP/s of an 8192^3 product on random data (mean of 10 after 3 warm-ups); 0 on CPU."""
    if device.type != "cuda":
        return 0.0
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (start.elapsed_time(end) / 1000)


JOB_DEFAULTS = (  # before the caller's overrides, which win
    "train.resident=true",
    "train.sync_free=true",
    "train.eval_every=0",
    "train.save_every=0",
    "train.eval_minutes=1.5",
    "train.log_every=100",
    "train.max_steps=100000000",
)


def run_job(
    pack_dir: str,
    out: str,
    minutes: float,
    config: str = "small",
    overrides: list[str] | None = None,
    work: str | None = None,
    shard_mb: float = 15.5,
    limit: int | None = None,
    margin_s: float = 40.0,
    invert_n: int = 100_000,
) -> dict:
    """Prepare + train for ``minutes`` in all (wall clock from this call); the best model is in ``out``.

    Training stops ``margin_s`` before the end (time for the last validation, save and export);
    its learning-rate schedule runs over what is left after preparation. What is left of the
    margin after the last export measures batched inversion with the exported model (up to
    ``invert_n`` vectors, ``measure_inversion``; 0 skips it): it never takes training time.
    """
    from .config import load_config
    from .prepare import prepare_clean
    from .train import Trainer

    t0 = time.time()
    deadline = t0 + 60 * minutes - margin_s
    pack_path, out_dir = Path(pack_dir), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work or tempfile.mkdtemp(prefix="unembed-job-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info, texts, sources, splits = read_pack(pack_path, limit)
    enc_dir = unpack_encoder(pack_path / "encoder", work_dir / "encoder")
    seq_len = load_config(config, overrides=overrides or []).model.seq_len
    manifest = prepare_clean(
        texts, sources, splits, str(enc_dir), work_dir / "data", seq_len, pooling=info["pooling"], device=str(device)
    )
    t_prep = time.time() - t0
    log.warning("prepared %d sentences in %.1f s", manifest["count"], t_prep)
    train_minutes = max(0.05, (deadline - time.time()) / 60)
    cfg = load_config(
        config,
        overrides=[
            *JOB_DEFAULTS,
            *(overrides or []),
            f"train.data={work_dir / 'data'}",
            f"encoder.name={enc_dir}",
            f"encoder.pooling={info['pooling']}",
            f"train.max_minutes={train_minutes:.4f}",
        ],
    )
    summary = {
        "pack": {k: info[k] for k in ("encoder", "encoder_fidelity", "sentences", "mb")},
        "config": config,
        "overrides": list(overrides or []),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "prepare_s": round(t_prep, 1),
        "prepare": manifest.get("timing", {}),
        "train_minutes": round(train_minutes, 3),
        "matmul_peak_flops": measure_matmul_peak(device),
    }
    exporter = Exporter(out_dir, work_dir / "export", info["encoder"], shard_mb, summary, t0)
    trainer = Trainer(cfg, work_dir / "run", progress=False, on_save=exporter, deadline=deadline)
    summary["flops_per_seq"] = train_flops_per_seq(trainer.cfg.model, trainer.schedule.masked_share())
    trainer.run()  # its last save exports the run's model (on_save)
    exporter.finish(trainer.out)  # job.json final now: a measurement cut off by the lease loses nothing
    if invert_n > 0:
        left = t0 + 60 * minutes - INVERT_RESERVE_S - time.time()
        exporter.summary["inversion"] = _time_inversion(out_dir, work_dir / "data", invert_n, device, left)
    return exporter.finish(trainer.out)


def _time_inversion(model_dir: Path, data_dir: Path, n: int, device: torch.device, left: float) -> dict:
    """`measure_inversion` of the exported model on up to ``n`` prepared vectors in the ``left``
    seconds, or why it was skipped."""
    if left < 2.0:
        return {"skipped": f"{max(left, 0.0):.1f} s left after the last export"}
    from .prepare import PreparedData

    return measure_inversion(model_dir, PreparedData(data_dir).vectors[:n], device, left)


INVERT_RESERVE_S = 5.0  # what the inversion measurement leaves of the job's minutes


def measure_inversion(
    model_dir: Path, vectors: np.ndarray, device: torch.device, seconds: float, batch: int = 1024, steps: int = 8
) -> dict:
    """Batched inversion of ``vectors`` [N, D] with the model in ``model_dir``, for at most about
    ``seconds``: sentences/s of confidence decoding at ``steps`` passes, length head and compact
    passes as ``Inverter.invert`` runs them (rows batched in order of predicted length), bf16 on a
    GPU and the CPU default elsewhere. Stops after the batch that crosses the time limit."""
    from .checkpoint import load_model
    from .length import length_order
    from .precision import for_inference
    from .sampling import denoise, final

    t_start = time.time()
    cfg, model = load_model(model_dir, device)
    model = for_inference(model, "bf16" if device.type == "cuda" else "auto")
    vectors = torch.from_numpy(np.asarray(vectors, dtype=np.float32)).to(device)
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    schedule = Schedule.from_config(cfg.schedule)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    done, t0 = 0, time.time()
    with torch.inference_mode():
        if cfg.model.length_head:
            lengths, order = length_order(model, vectors.split(4096))
        else:  # no head: every pass on all positions, as the decoder places EOS itself
            lengths, order = None, torch.arange(len(vectors), device=device)
        for i in range(0, len(order), batch):
            take = order[i : i + batch]
            rows_len = None if lengths is None else lengths[take]
            kw = {"schedule": schedule, "lengths": rows_len}
            final(
                denoise(
                    model, vectors[take], strategy="confidence", num_steps=steps, compact=rows_len is not None, **kw
                )
            )
            sync()
            done += len(take)
            if time.time() - t_start > seconds:
                break
    wall = time.time() - t0
    return {
        "sentences": done,
        "of": len(vectors),
        "seconds": round(wall, 2),
        "sentences_per_s": round(done / wall, 1) if wall > 0 else None,
        "batch": batch,
        "strategy": "confidence",
        "num_steps": steps,
        "length": "head" if lengths is not None else "free",
        "precision": getattr(model, "precision", "fp32"),
        "device": str(device),
    }


class Exporter:
    """Called with the run folder after each new best model: float16 shards + config + job.json in out.

    Each file is written beside its final name and renamed over it; job.json (the summary and the
    training log so far) is written last. Shards of an earlier export that the new one does not
    have are removed, so out holds at most MAX_OUT_FILES files.
    """

    def __init__(self, out: Path, staging: Path, encoder: str, shard_mb: float, summary: dict, t0: float):
        self.out, self.staging, self.encoder, self.shard_mb = out, staging, encoder, shard_mb
        self.summary, self.t0, self.exports = summary, t0, 0

    def __call__(self, run_dir: Path) -> None:
        """Export, or log why not: a failed export must not end the training run that called it."""
        try:
            self._export(run_dir)
        except (OSError, ValueError) as exc:
            log.error("export skipped: %s", exc)

    def _export(self, run_dir: Path) -> None:
        from .checkpoint import load_weights, save_model
        from .config import load_config_json

        cfg = load_config_json(run_dir / "config.json")
        cfg = replace(
            cfg, encoder=replace(cfg.encoder, name=self.encoder, pooling=""), train=replace(cfg.train, data="")
        )
        shutil.rmtree(self.staging, ignore_errors=True)
        files = save_model(self.staging, cfg, load_weights(run_dir), dtype=torch.float16, shard_mb=self.shard_mb)
        files.append(self.staging / "config.json")
        if len(files) + 1 > MAX_OUT_FILES:
            raise ValueError(f"an export of {len(files) + 1} files is over {MAX_OUT_FILES}: raise shard_mb")
        for f in files:
            _replace_into(f, self.out / f.name)
        keep = {f.name for f in files}
        for old in [*self.out.glob("model*.safetensors"), *self.out.glob("*.tmp")]:
            if old.name not in keep:
                old.unlink()
        self.exports += 1
        self._write_summary(run_dir, final=False)
        log.warning("export %d at %.0f s: %s", self.exports, time.time() - self.t0, self.summary.get("last_eval"))

    def finish(self, run_dir: Path) -> dict:
        """After the run's last export: job.json marked final; returns the summary."""
        return self._write_summary(run_dir, final=True)

    def _write_summary(self, run_dir: Path, final: bool) -> dict:
        self.summary.update(self._progress(run_dir, final))
        tmp = self.staging / "job.json"
        tmp.write_text(json.dumps(self.summary, indent=1))
        _replace_into(tmp, self.out / "job.json")
        return self.summary

    def _progress(self, run_dir: Path, final: bool) -> dict:
        logs = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x.strip()]
        trains = [r for r in logs if "loss" in r]
        evals = [r for r in logs if "val_loss" in r]
        seq_s = trains[-1]["seq_per_s"] if trains else 0.0
        flops = self.summary.get("flops_per_seq", 0.0) * seq_s
        peak = self.summary.get("matmul_peak_flops") or 0.0
        return {
            "final": final,
            "exports": self.exports,
            "wall_s": round(time.time() - self.t0, 1),
            "train_steps": trains[-1]["train_step"] if trains else 0,
            "sequences_seen": (trains[-1]["train_step"] if trains else 0) * _batch(run_dir),
            "seq_per_s": round(seq_s, 1),
            "model_flops_per_s": flops,
            "mfu_datasheet": flops / H200_BF16_DENSE if peak else None,
            "mfu_measured_peak": flops / peak if peak else None,
            "best_val_loss": min((r["val_loss"] for r in evals), default=None),
            "last_eval": evals[-1] if evals else None,
            "log": logs,
        }


def _batch(run_dir: Path) -> int:
    cfg = json.loads((run_dir / "config.json").read_text())["train"]
    return int(cfg["batch_size"]) * int(cfg["grad_accum"])


def _replace_into(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def ceiling_seq_per_s(mcfg, schedule: Schedule = Schedule(), peak: float = H200_BF16_DENSE) -> float:
    """Sequences/s if every FLOP ran at ``peak``: the bound no recipe on this model can pass (the head
    runs at the masked positions: ``schedule.masked_share()`` of them)."""
    return peak / train_flops_per_seq(mcfg, schedule.masked_share())
