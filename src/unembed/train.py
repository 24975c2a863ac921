"""One training loop for 1 CPU, 1 GPU or N processes under torchrun (DDP).

prepared data -> corrupt(x0, t) -> Denoiser -> diffusion loss -> AdamW (+ warmup/cosine,
clipping, accumulation) -> EMA -> periodic validation -> atomic checkpoints that resume exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import load_state, optimizer_from_tensors, optimizer_to_tensors, save_model, save_state
from .config import Config, resolve_derived
from .loss import diffusion_loss
from .metrics import token_accuracy
from .model import Denoiser, init_from_encoder
from .schedule import corrupt, sample_t

log = logging.getLogger(__name__)


# ---- data order --------------------------------------------------------------------------------


class BatchOrder:
    """Deterministic stream of row indices: epoch e is a seeded permutation of ``rows``.

    The whole state is ``cursor`` (samples consumed, all ranks together), so resume is exact.
    Each call takes ``batch * world`` samples; rank r keeps its slice.
    """

    def __init__(self, rows: np.ndarray, seed: int, rank: int = 0, world: int = 1):
        if len(rows) == 0:
            raise ValueError("no training rows in the data")
        self.rows, self.seed, self.rank, self.world = rows, seed, rank, world
        self.cursor = 0
        self._epoch, self._perm = -1, rows

    def _perm_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = self.rows[np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))]
            self._epoch = epoch
        return self._perm

    def next(self, batch: int) -> np.ndarray:
        n = len(self.rows)
        take = []
        start, need = self.cursor, batch * self.world
        while need > 0:
            epoch, pos = divmod(start, n)
            chunk = self._perm_of(epoch)[pos : pos + need]
            take.append(chunk)
            start += len(chunk)
            need -= len(chunk)
        self.cursor = start
        both = np.concatenate(take)
        return both[self.rank * batch : (self.rank + 1) * batch]


def fetch(data, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a PreparedData -> (x0 [B, L] long, cond [B, D] float32) on device."""
    order = np.sort(rows)  # memmap reads in file order; the batch order does not matter to the loss
    x0 = torch.from_numpy(np.asarray(data.ids[order], dtype=np.int64))
    cond = torch.from_numpy(np.asarray(data.vectors[order], dtype=np.float32))
    return x0.to(device, non_blocking=True), cond.to(device, non_blocking=True)


# ---- pieces ------------------------------------------------------------------------------------


class LossModule(nn.Module):
    """Wraps the Denoiser so DDP sees the whole loss (the tied head is used outside forward)."""

    def __init__(self, model: Denoiser, kind: str, lam: float):
        super().__init__()
        self.model, self.kind, self.lam = model, kind, lam

    def forward(self, x0, xt, masked, t, cond):
        out = diffusion_loss(self.model, x0, xt, masked, t, cond, self.kind, self.lam)
        return out.loss, out.ce, out.acc


def lr_at(progress: float, step: int, cfg: Config) -> float:
    """Linear warmup over warmup_steps, then cosine from lr to lr * min_lr_ratio as progress -> 1."""
    tc = cfg.train
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith(("tok.", "pos."))]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith(("tok.", "pos.")))]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=cfg.train.betas, fused=device.type == "cuda")


def encoder_state(name: str) -> dict[str, torch.Tensor]:
    """The encoder's own weights (for model.init=encoder), read from its safetensors file."""
    from safetensors.torch import load_file

    from .encoders import resolve_source

    source, _ = resolve_source(name)
    files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else []
    if not files:
        raise ValueError(f"model.init=encoder needs local safetensors weights for encoder {name!r}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def build_model(cfg: Config) -> Denoiser:
    model = Denoiser(cfg.model)
    if cfg.model.init == "encoder":
        copied = init_from_encoder(model, encoder_state(cfg.encoder.name))
        if not copied:
            raise ValueError("model.init=encoder copied nothing: widths/vocabulary do not match the encoder")
        log.info("initialised %d tensors from the encoder", len(copied))
    return model


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a checkpoint was written; ``signum`` says which."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _StopOnSignal:
    """While active, the first SIGINT/SIGTERM only sets ``signum`` (the loop saves and stops after
    the current step); a second one interrupts at once. Main thread only (signals need it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def start(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: saving a checkpoint after this step (again to quit at once)", signal.Signals(signum).name)

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def _trim_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint being resumed: one row per step, no repeats."""
    if not path.is_file():
        return
    rows = path.read_text().splitlines(keepends=True)
    keep = [r for r in rows if r.strip() and json.loads(r).get("train_step", 0) <= step]
    if len(keep) != len(rows):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


# ---- the loop ----------------------------------------------------------------------------------


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class Trainer:
    """Holds everything one run needs; ``run()`` trains until max_steps/max_minutes/stop_at."""

    def __init__(self, cfg: Config, out: Path, progress: bool = True, on_save=None):
        from .prepare import PreparedData

        self.rank, local_rank, self.world = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.device = _device(local_rank)
        self.out, self.progress = Path(out), progress and self.rank == 0
        self.on_save = on_save  # called with the run folder after each save of its model (rank 0)
        if not cfg.train.data:
            raise ValueError("train.data is empty: give a folder made by `unembed prepare`")
        self.data = PreparedData(cfg.train.data)
        cfg = self._resolve(cfg)
        resumed = load_state(self.out)
        if resumed is not None:
            self._check_same_run(cfg, resumed[0])
        self.cfg = cfg
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg).to(self.device)
        self.ema = [p.detach().clone().float() for p in self.model.parameters()]
        self.opt = make_optimizer(self.model, cfg, self.device)
        self.gen = torch.Generator(device=self.device)
        self.order = BatchOrder(self.data.rows("train"), cfg.train.seed, self.rank, self.world)
        self.step, self.elapsed, self.best = 0, 0.0, float("inf")
        if resumed is not None:
            self._restore(*resumed[1:])
        lm = LossModule(self.model, cfg.schedule.kind, cfg.schedule.lam)
        self.loss_module = lm
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = nn.parallel.DistributedDataParallel(lm, device_ids=ids)
        if cfg.train.compile:
            self.loss_module = torch.compile(self.loss_module)

    def _resolve(self, cfg: Config) -> Config:
        m = self.data.manifest
        tok = m["tokenizer"]
        cfg = resolve_derived(cfg, tok["vocab_size"], m["encoder"]["dim"], tok["mask_id"], tok["pad_id"], tok["eos_id"])
        if m["encoder"]["name"] != cfg.encoder.name:
            raise ValueError(
                f"data {cfg.train.data} was embedded with encoder {m['encoder']['name']!r} "
                f"but the config says encoder.name={cfg.encoder.name!r}"
            )
        self.data.check_compatible(
            cfg.encoder.name,
            cfg.model.vocab_size,
            cfg.model.seq_len,
            cfg.model.mask_id,
            cfg.model.pad_id,
            cfg.model.eos_id,
        )
        return cfg

    def _check_same_run(self, cfg: Config, saved: Config) -> None:
        if (
            replace(saved.train, max_steps=0, max_minutes=0.0) != replace(cfg.train, max_steps=0, max_minutes=0.0)
            or saved.model != cfg.model
            or saved.schedule != cfg.schedule
        ):
            raise ValueError(f"{self.out} holds a run with another config; use a new --out or the same config")

    # -- state ------------------------------------------------------------------------------
    def _restore(self, tensors: dict[str, dict[str, torch.Tensor]], info: dict[str, Any]) -> None:
        self.model.load_state_dict(tensors["model"])
        for e, name in zip(self.ema, [n for n, _ in self.model.named_parameters()]):
            e.copy_(tensors["ema"][name])
        optimizer_from_tensors(self.opt, tensors["optim"], info["optim"])
        self.step, self.elapsed, self.best = info["step"], info["elapsed"], info["best"]
        self.order.cursor = info["cursor"]
        log.info("resumed %s at train_step %d", self.out, self.step)

    def ema_state(self) -> dict[str, torch.Tensor]:
        return {n: e for (n, _), e in zip(self.model.named_parameters(), self.ema)}

    def save(self) -> None:
        """Rank 0 writes state/ (exact resume) and the EMA weights as the run's model."""
        if self.rank != 0:
            return
        opt_t, opt_rest = optimizer_to_tensors(self.opt)
        info = {
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best,
            "cursor": self.order.cursor,
            "optim": opt_rest,
        }
        save_state(
            self.out, self.cfg, {"model": self.model.state_dict(), "ema": self.ema_state(), "optim": opt_t}, info
        )
        if self.best == float("inf"):  # no validation yet: the latest EMA is the run's model
            save_model(self.out, self.cfg, self.ema_state())
        if self.on_save is not None:
            self.on_save(self.out)

    # -- one optimizer step -------------------------------------------------------------------
    def _seed(self, micro: int) -> None:
        """Randomness of step s is a pure function of (seed, s, micro, rank): resume needs no RNG state."""
        s = ((self.cfg.train.seed * 1_000_003 + self.step) * 131 + micro) * 4099 + self.rank
        self.gen.manual_seed(s)
        torch.manual_seed(s)

    def train_step(self) -> dict[str, float]:
        tc, sc = self.cfg.train, self.cfg.schedule
        self.model.train()
        lr = lr_at(self._progress(), self.step, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        totals = torch.zeros(3, device=self.device)
        for micro in range(tc.grad_accum):
            self._seed(micro)
            x0, cond = fetch(self.data, self.order.next(tc.batch_size), self.device)
            if tc.cond_noise > 0:
                cond = cond + tc.cond_noise * torch.randn(cond.shape, generator=self.gen, device=self.device)
            t = sample_t(x0.shape[0], sc.eps, sc.antithetic, self.gen, self.device)
            xt, masked = corrupt(x0, t, self.cfg.model.mask_id, sc.kind, sc.lam, self.gen)
            with self._autocast():
                loss, ce, acc = self.loss_module(x0, xt, masked, t, cond)
            (loss / tc.grad_accum).backward()
            totals += torch.stack([loss.detach(), ce, acc]) / tc.grad_accum
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        loss, ce, acc = totals.tolist()
        return {"loss": loss, "ce": ce, "acc": acc, "lr": lr}

    def _autocast(self):
        bf16 = self.cfg.train.precision == "bf16" or (self.cfg.train.precision == "auto" and self.device.type == "cuda")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))  # warm EMA early
        torch._foreach_lerp_(self.ema, [p.detach().float() for p in self.model.parameters()], 1 - d)

    def _progress(self) -> float:
        tc = self.cfg.train
        p = self.step / max(tc.max_steps, 1)
        if tc.max_minutes > 0:
            p = max(p, self.elapsed / (60 * tc.max_minutes))
        return p

    def finished(self, stop_at: int | None, signalled: bool = False) -> bool:
        tc = self.cfg.train
        if self.world > 1:  # every rank must stop at the same step, or DDP hangs
            flag = torch.tensor([float(signalled)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signalled = bool(flag.item())
        if signalled or self.step >= tc.max_steps or (stop_at is not None and self.step >= stop_at):
            return True
        if self.world > 1 and tc.max_minutes > 0:
            # The wall-clock schedule must be the same on every rank: the learning rate follows it and
            # ranks that stopped at different steps would hang DDP. Agree on the slowest rank's clock.
            clock = torch.tensor([self.elapsed], dtype=torch.float64, device=self.device)
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            self.elapsed = float(clock.item())
        out_of_time = tc.max_minutes > 0 and self.elapsed >= 60 * tc.max_minutes
        return out_of_time

    # -- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """EMA weights: masked-token loss/accuracy (teacher-forced) and end-to-end decode accuracy."""
        from .sampling import denoise, final

        tc, sc = self.cfg.train, self.cfg.schedule
        ema_model = build_eval_copy(self.model, self.ema_state())
        rows = self.data.rows("validation")
        if len(rows) == 0:
            return {}
        gen = torch.Generator(device=self.device)
        losses, accs = [], []
        for i in range(tc.eval_batches):
            gen.manual_seed(10_000 + i)
            chunk = rows[(i * tc.batch_size) % len(rows) :][: tc.batch_size]
            x0, cond = fetch(self.data, chunk, self.device)
            t = sample_t(x0.shape[0], sc.eps, True, gen, self.device)
            xt, masked = corrupt(x0, t, self.cfg.model.mask_id, sc.kind, sc.lam, gen)
            with self._autocast():
                out = diffusion_loss(ema_model, x0, xt, masked, t, cond, sc.kind, sc.lam)
            losses.append(out.loss.item())
            accs.append(out.acc.item())
        x0, cond = fetch(self.data, rows[: tc.eval_decode_n], self.device)
        with self._autocast():
            last = final(
                denoise(
                    ema_model,
                    cond,
                    num_steps=min(tc.eval_decode_steps, self.cfg.model.seq_len),
                    schedule=sc.kind,
                    lam=sc.lam,
                    eps=sc.eps,
                )
            )
        return {
            "val_loss": float(np.mean(losses)),
            "val_masked_acc": float(np.mean(accs)),
            "val_decode_acc": token_accuracy(last.ids.cpu().numpy(), x0.cpu().numpy(), self.cfg.model.eos_id),
        }

    # -- driver ------------------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        tc = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            _trim_log(self.out / "log.jsonl", self.step)
            if tc.save_every == 0 and self.step < tc.max_steps:
                log.warning("train.save_every=0: no checkpoint before the end, so a crash restarts from step 0")
        logf = open(self.out / "log.jsonl", "a") if self.rank == 0 else None
        bar = _bar(self, tc.max_steps) if self.progress else None
        last: dict[str, Any] = {}
        t0, seen0, tick = time.time(), self.step, time.time()
        stop = _StopOnSignal().start()
        try:
            while not self.finished(stop_at, stop.signum is not None):
                stats = self.train_step()
                now = time.time()
                self.elapsed += now - tick
                tick = now
                seqs = (self.step - seen0) * tc.batch_size * tc.grad_accum * self.world / max(now - t0, 1e-9)
                last = {"train_step": self.step, **stats, "seq_per_s": seqs, "elapsed_s": self.elapsed}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}", seq_s=f"{seqs:.0f}")
                if self.step % tc.log_every == 0 and logf:
                    logf.write(json.dumps(last) + "\n")
                    logf.flush()
                if tc.eval_every and self.step % tc.eval_every == 0:
                    last.update(self._evaluate_and_keep(logf))
                if tc.save_every and self.step % tc.save_every == 0:
                    self.save()
                tick = time.time()  # validation and saving do not count against max_minutes
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
        if stop.signum is not None:
            self.save()
            if logf:
                logf.close()
            name = signal.Signals(stop.signum).name
            raise Interrupted(f"{name}: saved train_step {self.step} in {self.out}; rerun to resume", stop.signum)
        if tc.eval_every and self.step % tc.eval_every != 0:
            last.update(self._evaluate_and_keep(logf))
        self.save()
        if logf:
            logf.close()
        return last

    def _evaluate_and_keep(self, logf) -> dict[str, float]:
        if self.rank != 0:
            if self.world > 1:
                dist.barrier()
            return {}
        metrics = self.validate()
        if metrics and metrics["val_loss"] < self.best:
            self.best = metrics["val_loss"]
            save_model(self.out, self.cfg, self.ema_state())  # the run's model: best EMA by val loss
        if logf and metrics:
            logf.write(json.dumps({"train_step": self.step, **metrics}) + "\n")
            logf.flush()
        log.info("train_step %d %s", self.step, metrics)
        if self.world > 1:
            dist.barrier()
        return metrics


def build_eval_copy(model: Denoiser, weights: dict[str, torch.Tensor]) -> Denoiser:
    copy = Denoiser(model.cfg).to(next(model.parameters()).device)
    copy.load_state_dict(weights)
    return copy.eval()


def _bar(trainer: Trainer, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=trainer.step, desc="train", unit="step", dynamic_ncols=True)


def train(
    cfg: Config, out: str | Path, stop_at: int | None = None, progress: bool = True, on_save=None
) -> dict[str, Any]:
    """Train (or resume) a run in ``out``; returns the last logged metrics."""
    trainer = Trainer(cfg, Path(out), progress, on_save)
    result = trainer.run(stop_at)
    if trainer.world > 1:
        dist.barrier()
    return result
