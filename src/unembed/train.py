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

from .batches import BatchOrder, ResidentData, fetch
from .checkpoint import load_state, optimizer_from_tensors, optimizer_to_tensors, save_model, save_state
from .config import Config, resolve_derived
from .files import write_text
from .loss import diffusion_loss, length_targets, masked_capacity
from .metrics import token_accuracy
from .model import Denoiser, init_from_encoder
from .schedule import Schedule, reveal_length

log = logging.getLogger(__name__)


# ---- pieces ------------------------------------------------------------------------------------


class LossModule(nn.Module):
    """Wraps the Denoiser so DDP sees the whole loss (the tied head is used outside forward)."""

    def __init__(
        self,
        model: Denoiser,
        schedule: Schedule,
        capacity: int | None = None,
        norm: str = "elbo",
        length_weight: float = 0.0,
    ):
        super().__init__()
        self.model, self.schedule, self.capacity = model, schedule, capacity
        self.norm, self.length_weight = norm, length_weight

    def forward(self, x0, xt, masked, t, cond):
        """-> (loss, ce, acc, dropped): 0-d tensors (dropped: masked positions over capacity)."""
        out = diffusion_loss(
            self.model, x0, xt, masked, t, cond, self.schedule, self.norm, self.length_weight, self.capacity
        )
        dropped = out.dropped if out.dropped is not None else torch.zeros((), device=x0.device)
        return out.loss, out.ce, out.acc, dropped


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
    from .checkpoint import read_safetensors_dir
    from .encoders import resolve_source

    source, _ = resolve_source(name)
    state = read_safetensors_dir(Path(source))
    if not state:
        raise ValueError(f"model.init=encoder needs local safetensors weights for encoder {name!r}")
    return state


def build_model(cfg: Config) -> Denoiser:
    model = Denoiser(cfg.model)
    if cfg.train.init_from:
        _init_from_model(model, cfg)
    elif cfg.model.init == "encoder":
        copied = init_from_encoder(model, encoder_state(cfg.encoder.name))
        if not copied:
            raise ValueError("model.init=encoder copied nothing: widths/vocabulary do not match the encoder")
        log.info("initialised %d tensors from the encoder", len(copied))
    return model


def _init_from_model(model: Denoiser, cfg: Config) -> None:
    """Continue from a trained model's weights (continual training: the optimizer starts fresh).

    The source must have the same architecture; a length head it lacks starts from its init.
    """
    from .catalog import resolve_model_dir
    from .checkpoint import load_weights
    from .config import load_config_json

    folder = resolve_model_dir(cfg.train.init_from)
    src = load_config_json(folder / "config.json").model
    mine = replace(cfg.model, init=src.init, length_head=src.length_head)
    if src != mine:
        raise ValueError(f"train.init_from={cfg.train.init_from}: its model config differs from this run's")
    missing, unexpected = model.load_state_dict(load_weights(folder), strict=False)
    if unexpected or any(not k.startswith("length_mlp.") for k in missing):
        raise ValueError(f"train.init_from={cfg.train.init_from}: weights do not fit (missing {missing[:3]})")
    log.info("initialised from %s (%d tensors left at init)", folder, len(missing))


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
        write_text(path, "".join(keep))


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
    """Holds everything one run needs; ``run()`` trains until max_steps/max_minutes/stop_at/deadline.

    Set-up (``__init__``), one optimizer step (``train_step``), validation (``validate``) and
    checkpointing (``save``, ``_restore``) are separate; ``run`` drives them. Per step nothing is
    read back to the host: the stats are summed on the device and read every ``log_every`` steps.
    ``on_save(run_dir)`` is called (rank 0) after each write of the run's model; ``deadline`` is a
    ``time.time()`` after which no new step starts (the GPU job's hard stop, evaluations included).
    """

    def __init__(self, cfg: Config, out: Path, progress: bool = True, on_save=None, deadline: float | None = None):
        from .prepare import PreparedData

        self.rank, local_rank, self.world = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.device = _device(local_rank)
        self.out, self.progress = Path(out), progress and self.rank == 0
        self.on_save, self.deadline = on_save, deadline
        if not cfg.train.data:
            raise ValueError("train.data is empty: give a folder made by `unembed prepare`")
        self.data = PreparedData(cfg.train.data)
        cfg = self._resolve(cfg)
        resumed = load_state(self.out)
        if resumed is not None:
            self._check_same_run(cfg, resumed[0])
        self.cfg = cfg
        self._build()
        if resumed is not None:
            self._restore(*resumed[1:])
        self._timed_evals = self._timed_evals_by(self.elapsed)
        self._saved_at = time.time()
        self._wrap()

    # -- set-up ---------------------------------------------------------------------------------
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
        # How long, how often to save and the arithmetic precision (autocast on or off, same fp32
        # weights and optimizer state) may change on resume; the rest defines the run.
        free = {"max_steps": 0, "max_minutes": 0.0, "save_minutes": 0.0, "precision": "auto"}
        if (
            replace(saved.train, **free) != replace(cfg.train, **free)
            or saved.model != cfg.model
            or saved.schedule != cfg.schedule
        ):
            raise ValueError(f"{self.out} holds a run with another config; use a new --out or the same config")

    def _build(self) -> None:
        """Model, EMA, optimizer, generator, data order (and the data on the device if resident)."""
        cfg = self.cfg
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg).to(self.device)
        self.ema = [p.detach().clone().float() for p in self.model.parameters()]
        self.opt = make_optimizer(self.model, cfg, self.device)
        self.gen = torch.Generator(device=self.device)
        self.order = BatchOrder(self.data.rows("train"), cfg.train.seed, self.rank, self.world)
        self.resident = ResidentData(self.data, self.device) if cfg.train.resident else None
        self.step, self.elapsed, self.best = 0, 0.0, float("inf")

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_config(self.cfg.schedule)

    def _wrap(self) -> None:
        """The loss module as the step calls it: fixed head capacity, DDP, torch.compile."""
        tc, schedule = self.cfg.train, self.schedule
        capacity = masked_capacity(tc.batch_size, self.cfg.model.seq_len, schedule) if tc.sync_free else None
        lm = LossModule(self.model, schedule, capacity, tc.loss_norm, tc.length_loss)
        self.loss_module = lm
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = nn.parallel.DistributedDataParallel(lm, device_ids=ids)
        if tc.compile:
            self.loss_module = torch.compile(self.loss_module)

    def _fetch(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.resident.fetch(rows) if self.resident is not None else fetch(self.data, rows, self.device)

    def _next_rows(self) -> np.ndarray | torch.Tensor:
        b = self.cfg.train.batch_size
        return self.order.next_on(b, self.device) if self.resident is not None else self.order.next(b)

    # -- checkpointing --------------------------------------------------------------------------
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
        self._saved_at = time.time()
        if self.on_save is not None:
            self.on_save(self.out)

    # -- one optimizer step -------------------------------------------------------------------
    def _seed(self, micro: int) -> None:
        """Randomness of step s is a pure function of (seed, s, micro, rank): resume needs no RNG state."""
        s = ((self.cfg.train.seed * 1_000_003 + self.step) * 131 + micro) * 4099 + self.rank
        self.gen.manual_seed(s)
        torch.manual_seed(s)

    def train_step(self) -> tuple[torch.Tensor, float]:
        """One optimizer step -> (loss, ce, acc, dropped) as a [4] tensor on the device, and the lr."""
        tc, schedule = self.cfg.train, self.schedule
        self.model.train()
        lr = lr_at(self._progress(), self.step, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        totals = torch.zeros(4, device=self.device)
        for micro in range(tc.grad_accum):
            self._seed(micro)
            x0, cond = self._fetch(self._next_rows())
            if tc.cond_noise > 0:
                cond = cond + tc.cond_noise * torch.randn(cond.shape, generator=self.gen, device=self.device)
            t = schedule.sample_t(x0.shape[0], self.gen, self.device)
            xt, masked = schedule.corrupt(x0, t, self.cfg.model.mask_id, self.gen)
            xt, masked = reveal_length(xt, masked, x0, self.cfg.model.eos_id, tc.length_reveal, self.gen)
            with self._autocast():
                loss, ce, acc, dropped = self.loss_module(x0, xt, masked, t, cond)
            (loss / tc.grad_accum).backward()
            totals += torch.stack([loss.detach(), ce, acc, dropped * tc.grad_accum]) / tc.grad_accum
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        return totals, lr

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
        past_deadline = self.deadline is not None and time.time() >= self.deadline
        if self.world > 1 and (tc.max_minutes > 0 or tc.eval_minutes > 0 or self.deadline is not None):
            # The wall-clock schedule must be the same on every rank: the learning rate and timed
            # evaluations follow it and ranks that stopped at different steps would hang DDP.
            # Agree on the slowest rank's clock.
            clock = torch.tensor([self.elapsed, float(past_deadline)], dtype=torch.float64, device=self.device)
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            self.elapsed, past_deadline = float(clock[0].item()), bool(clock[1].item())
        out_of_time = tc.max_minutes > 0 and self.elapsed >= 60 * tc.max_minutes
        return out_of_time or past_deadline

    # -- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """EMA weights: masked-token loss/accuracy (teacher-forced) and end-to-end decode accuracy."""
        from .sampling import denoise, final

        tc, schedule = self.cfg.train, self.schedule
        ema_model = build_eval_copy(self.model, self.ema_state())
        rows = self.data.rows("validation")
        if len(rows) == 0:
            return {}
        gen = torch.Generator(device=self.device)
        losses, accs, full_ce, full_acc, len_acc = [], [], [], [], []
        for i in range(tc.eval_batches):
            gen.manual_seed(10_000 + i)
            chunk = rows[(i * tc.batch_size) % len(rows) :][: tc.batch_size]
            x0, cond = self._fetch(chunk)
            t = schedule.sample_t(x0.shape[0], gen, self.device, uniform=True)  # comparable across recipes
            xt, masked = schedule.corrupt(x0, t, self.cfg.model.mask_id, gen)
            with self._autocast():
                out = diffusion_loss(ema_model, x0, xt, masked, t, cond, schedule)
                # all masked, where decoding starts: the most sensitive early signal
                ones = torch.ones_like(t)
                full = diffusion_loss(
                    ema_model,
                    x0,
                    torch.full_like(x0, self.cfg.model.mask_id),
                    torch.ones_like(masked),
                    ones,
                    cond,
                    schedule,
                    "masked-mean",
                )
            losses.append(out.loss.item())
            accs.append(out.acc.item())
            full_ce.append(full.ce.item())
            full_acc.append(full.acc.item())
            if ema_model.has_length_head:
                n = length_targets(x0, self.cfg.model.eos_id)
                len_acc.append((ema_model.length_logits(cond).argmax(-1) == n).float().mean().item())
        x0, cond = self._fetch(rows[: tc.eval_decode_n])
        with self._autocast():
            last = final(
                denoise(
                    ema_model,
                    cond,
                    num_steps=min(tc.eval_decode_steps, self.cfg.model.seq_len),
                    schedule=schedule,
                    lengths=ema_model.length_logits(cond).argmax(-1) if ema_model.has_length_head else None,
                )
            )
        extra = {"val_length_acc": float(np.mean(len_acc))} if len_acc else {}
        return {
            **extra,
            "val_ce_full_mask": float(np.mean(full_ce)),
            "val_acc_full_mask": float(np.mean(full_acc)),
            "val_loss": float(np.mean(losses)),
            "val_masked_acc": float(np.mean(accs)),
            "val_decode_acc": token_accuracy(last.ids.cpu().numpy(), x0.cpu().numpy(), self.cfg.model.eos_id),
        }

    def _timed_evals_by(self, elapsed: float) -> int:
        minutes = self.cfg.train.eval_minutes
        return int(elapsed // (60 * minutes)) if minutes > 0 else 0

    def _eval_due(self) -> bool:
        """Every eval_every steps, and each time another eval_minutes of training time has passed."""
        tc = self.cfg.train
        timed = self._timed_evals_by(self.elapsed)
        due = bool(tc.eval_every and self.step % tc.eval_every == 0) or timed > self._timed_evals
        self._timed_evals = timed
        return due

    # -- driver ------------------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        tc = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            _trim_log(self.out / "log.jsonl", self.step)
            if tc.save_every == 0 and tc.save_minutes == 0 and self.step < tc.max_steps:
                log.warning(
                    "train.save_every=0 and train.save_minutes=0: no checkpoint before the end, "
                    "so a crash restarts from step 0"
                )
        logf = open(self.out / "log.jsonl", "a") if self.rank == 0 else None
        bar = _bar(self, tc.max_steps) if self.progress else None
        last: dict[str, Any] = {}
        window = StatsWindow(self.device)  # step stats summed on the device between two logs
        t0, seen0, tick, evaluated_at = time.time(), self.step, time.time(), None
        stop = _StopOnSignal().start()
        try:
            while not self.finished(stop_at, stop.signum is not None):
                window.add(*self.train_step())
                now = time.time()
                self.elapsed += now - tick
                tick = now
                if bar is not None:
                    bar.update(1)
                if self.step % tc.log_every == 0:
                    last = self._log(window, logf, bar, t0, seen0)
                if self._eval_due():
                    last.update(self._evaluate_and_keep(logf))
                    evaluated_at = self.step
                if self._save_due():
                    self.save()
                tick = time.time()  # validation and saving do not count against max_minutes
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
        if window.steps:
            last = {
                **self._log(window, logf, bar, t0, seen0),
                **{k: v for k, v in last.items() if k.startswith("val_")},
            }
        if stop.signum is not None:
            self.save()
            if logf:
                logf.close()
            name = signal.Signals(stop.signum).name
            raise Interrupted(f"{name}: saved train_step {self.step} in {self.out}; rerun to resume", stop.signum)
        if (tc.eval_every or tc.eval_minutes > 0) and evaluated_at != self.step:
            last.update(self._evaluate_and_keep(logf))
        self.save()
        if logf:
            logf.close()
        return last

    def _save_due(self) -> bool:
        """Every save_every steps, and whenever save_minutes of wall clock passed since the last save,
        so that a crash (which no signal handler sees) loses minutes, not a thousand steps."""
        tc = self.cfg.train
        if tc.save_every and self.step % tc.save_every == 0:
            return True
        return tc.save_minutes > 0 and time.time() - self._saved_at >= 60 * tc.save_minutes

    def _log(self, window: StatsWindow, logf, bar, t0: float, seen0: int) -> dict[str, Any]:
        """Read the window's means (the one host sync), write a log line, reset the window."""
        tc = self.cfg.train
        stats = window.read()
        seqs = (self.step - seen0) * tc.batch_size * tc.grad_accum * self.world / max(time.time() - t0, 1e-9)
        last = {"train_step": self.step, **stats, "seq_per_s": seqs, "elapsed_s": self.elapsed}
        if bar is not None:
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}", seq_s=f"{seqs:.0f}")
        if logf:
            logf.write(json.dumps(last) + "\n")
            logf.flush()
        return last

    def _evaluate_and_keep(self, logf) -> dict[str, float]:
        if self.rank != 0:
            if self.world > 1:
                dist.barrier()
            return {}
        metrics = self.validate()
        improved = bool(metrics) and metrics["val_loss"] < self.best
        if improved:
            self.best = metrics["val_loss"]
            save_model(self.out, self.cfg, self.ema_state())  # the run's model: best EMA by val loss
        if logf and metrics:
            logf.write(json.dumps({"train_step": self.step, **metrics}) + "\n")
            logf.flush()
        log.info("train_step %d %s", self.step, metrics)
        if improved and self.on_save is not None:
            self.on_save(self.out)
        if self.world > 1:
            dist.barrier()
        return metrics


class StatsWindow:
    """Sums of the step stats over the steps since the last read, kept on the device."""

    NAMES = ("loss", "ce", "acc", "dropped")

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.NAMES), device=device)
        self.steps, self.lr = 0, 0.0

    def add(self, stats: torch.Tensor, lr: float) -> None:
        self.sums += stats
        self.steps += 1
        self.lr = lr

    def read(self) -> dict[str, float]:
        """Means over the window (dropped: the total), the last lr; then starts a new window."""
        values = self.sums.tolist()
        out = {n: v / max(self.steps, 1) for n, v in zip(self.NAMES[:3], values[:3])}
        out.update(dropped=int(values[3]), lr=self.lr, window_steps=self.steps)
        self.sums.zero_()
        self.steps = 0
        return out


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
