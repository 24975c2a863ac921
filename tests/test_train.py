import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unembed.batches import BatchOrder
from unembed.checkpoint import load_state
from unembed.config import load_config
from unembed.prepare import PreparedData, run_prepare
from unembed.train import Trainer, train

SENTENCES = [
    f"Sentence number {w} talks about the {c} {a} in a short way."
    for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")
    for c in ("red", "green", "blue", "black")
    for a in ("dog", "cat")
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, fake_encoder):
    d = tmp_path_factory.mktemp("prep")
    (d / "s.txt").write_text("\n".join(SENTENCES) + "\n")
    run_prepare(str(d / "s.txt"), "fake", d / "data", seq_len=16, progress=False, encoder_obj=fake_encoder)
    return d / "data"


def cfg_for(data_dir, *extra):
    return load_config(
        "tiny",
        overrides=[
            f"train.data={data_dir}",
            "encoder.name=fake",
            "train.max_steps=12",
            "train.eval_every=6",
            "train.save_every=6",
            "train.eval_decode_n=8",
            *extra,
        ],
    )


def test_resume_reproduces_the_uninterrupted_run(tmp_path, data_dir):
    straight = train(cfg_for(data_dir), tmp_path / "a", progress=False)
    train(cfg_for(data_dir), tmp_path / "b", stop_at=6, progress=False)
    resumed = train(cfg_for(data_dir), tmp_path / "b", progress=False)
    assert resumed["train_step"] == straight["train_step"] == 12
    assert abs(resumed["loss"] - straight["loss"]) < 1e-6
    wa = load_file(str(tmp_path / "a/state/model.safetensors"))
    wb = load_file(str(tmp_path / "b/state/model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert (tmp_path / "a/model.safetensors").is_file() and (tmp_path / "a/config.json").is_file()
    logs = (tmp_path / "a/log.jsonl").read_text()
    assert "val_decode_acc" in logs and "val_masked_acc" in logs


def test_training_reduces_loss(tmp_path, data_dir):
    first = train(cfg_for(data_dir, "train.max_steps=1"), tmp_path / "a", progress=False)
    later = train(cfg_for(data_dir, "train.max_steps=60", "train.eval_every=0"), tmp_path / "b", progress=False)
    assert later["ce"] < first["ce"]


def test_mismatched_data_and_changed_config_fail(tmp_path, data_dir):
    with pytest.raises(ValueError, match="embedded with encoder 'fake'"):
        Trainer(load_config("tiny", overrides=[f"train.data={data_dir}"]), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="seq_len"):
        Trainer(cfg_for(data_dir, "model.seq_len=32"), tmp_path / "y", progress=False)
    train(cfg_for(data_dir, "train.max_steps=2"), tmp_path / "z", progress=False)
    with pytest.raises(ValueError, match="another config"):
        Trainer(cfg_for(data_dir, "train.lr=0.1"), tmp_path / "z", progress=False)
    # the arithmetic precision is not part of a run: bf16 autocast resumes the fp32 run's state
    resumed = train(cfg_for(data_dir, "train.max_steps=4", "train.precision=bf16"), tmp_path / "z", progress=False)
    assert resumed["train_step"] == 4


def test_batch_order_is_a_pure_function_of_the_cursor():
    rows = np.arange(10)
    a = BatchOrder(rows, seed=3)
    seq = [a.next(4) for _ in range(6)]
    epoch0 = np.concatenate(seq)[:10]
    assert sorted(epoch0) == list(range(10))  # every row once per epoch
    b = BatchOrder(rows, seed=3)
    b.cursor = 8
    assert np.array_equal(b.next(4), seq[2])
    ranks = [BatchOrder(rows, seed=3, rank=r, world=2) for r in (0, 1)]
    both = np.concatenate([r.next(2) for r in ranks])
    assert np.array_equal(both, BatchOrder(rows, seed=3).next(4))


@pytest.mark.parametrize("extra", [[], ["train.max_steps=100000", "train.max_minutes=0.02"]], ids=["steps", "minutes"])
def test_ddp_two_processes_agree(tmp_path, data_dir, extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parent))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).parent / "ddp_worker.py"),
        str(data_dir),
        str(tmp_path),
        *extra,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert (tmp_path / "run/state/state.json").is_file()
    assert PreparedData(data_dir).rows("train").size > 0


def test_resident_sync_free_run_matches_the_default_run(tmp_path, data_dir):
    """The GPU fast path (data on the device, fixed-capacity head) trains on the same batches."""
    plain = train(cfg_for(data_dir, "train.eval_every=0"), tmp_path / "a", progress=False)
    fast = train(
        cfg_for(data_dir, "train.eval_every=0", "train.resident=true", "train.sync_free=true"),
        tmp_path / "b",
        progress=False,
    )
    assert fast["train_step"] == plain["train_step"] == 12 and fast["dropped"] == 0
    assert abs(fast["loss"] - plain["loss"]) < 1e-5 and abs(fast["acc"] - plain["acc"]) < 1e-6
    wa = load_file(str(tmp_path / "a/state/model.safetensors"))
    wb = load_file(str(tmp_path / "b/state/model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_fixed_capacity_loss_equals_the_boolean_gather():
    from unembed.config import ModelConfig
    from unembed.loss import diffusion_loss
    from unembed.model import Denoiser
    from unembed.schedule import corrupt, sample_t

    torch.manual_seed(0)
    model = Denoiser(
        ModelConfig(
            n_layers=1,
            width=32,
            n_heads=2,
            mlp_dim=64,
            seq_len=12,
            vocab_size=97,
            cond_dim=8,
            mask_id=96,
            pad_id=0,
            eos_id=1,
        )
    )
    for p in model.parameters():  # AdaLN-Zero starts at zero: give the condition a say
        torch.nn.init.normal_(p, std=0.1)
    x0 = torch.randint(2, 96, (24, 12))
    t = sample_t(24, 1e-3, True)
    xt, masked = corrupt(x0, t, 96)
    cond = torch.randn(24, 8)
    exact = diffusion_loss(model, x0, xt, masked, t, cond)
    wide = diffusion_loss(model, x0, xt, masked, t, cond, capacity=24 * 12)
    assert torch.allclose(wide.loss, exact.loss, atol=1e-6) and torch.allclose(wide.ce, exact.ce, atol=1e-6)
    assert torch.allclose(wide.acc, exact.acc) and int(wide.n_masked) == exact.n_masked and int(wide.dropped) == 0
    short = diffusion_loss(model, x0, xt, masked, t, cond, capacity=exact.n_masked - 5)
    assert int(short.dropped) == 5 and short.loss < exact.loss


@pytest.mark.parametrize("kind,antithetic", [("linear", True), ("exp", True), ("linear", False)])
def test_masked_capacity_holds_every_batch_and_saves_work(kind, antithetic):
    from unembed.loss import masked_capacity
    from unembed.schedule import Schedule, corrupt, sample_t

    batch, seq = 256, 32
    cap = masked_capacity(batch, seq, Schedule(kind, 5.0, 1e-3, antithetic=antithetic))
    gen = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(300):
        t = sample_t(batch, 1e-3, antithetic, gen)
        counts.append(int(corrupt(torch.zeros(batch, seq, dtype=torch.long), t, 1, kind, 5.0, gen)[1].sum()))
    assert max(counts) <= cap < batch * seq
    if antithetic:
        assert cap < 1.15 * np.mean(counts) + 2 * 64  # headroom, not a full B * L gather


def test_timed_validation_and_deadline(tmp_path, data_dir):
    import json
    import time

    saved = []
    timed = cfg_for(data_dir, "train.eval_every=0", "train.eval_minutes=0.0002", "train.max_steps=30")
    Trainer(timed, tmp_path / "a", progress=False, on_save=saved.append).run()
    evals = [r for r in map(json.loads, (tmp_path / "a/log.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert len(evals) >= 2 and len({r["train_step"] for r in evals}) == len(evals)
    assert saved and saved[0] == tmp_path / "a" and (tmp_path / "a/model.safetensors").is_file()
    late = Trainer(cfg_for(data_dir, "train.max_steps=100000"), tmp_path / "b", progress=False, deadline=time.time())
    late.run()
    assert late.step == 0 and (tmp_path / "b/model.safetensors").is_file()


def _cli_train(data_dir, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    args = ["--config", "tiny", "--out", str(out), "--no-progress", f"train.data={data_dir}", "encoder.name=fake"]
    cmd = [sys.executable, "-m", "unembed.cli", "train", *args, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _log_steps(path: Path) -> list[int]:
    import json

    return [json.loads(line)["train_step"] for line in path.read_text().splitlines() if "loss" in line]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signalled_run_keeps_its_steps_and_resumes_with_one_log_row_per_step(tmp_path, data_dir, sig):
    """A real `unembed train` process is signalled mid-run: SIGINT/SIGTERM save the current step,
    SIGKILL loses only the steps since the last save; the resumed log has every step exactly once."""
    import json
    import signal
    import time

    out = tmp_path / "run"
    extra = ["train.max_steps=100000", "train.log_every=1", "train.save_every=25"]
    proc = _cli_train(data_dir, out, *extra)
    deadline = time.time() + 240
    while not ((out / "log.jsonl").is_file() and len(_log_steps(out / "log.jsonl")) >= 30):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    saved = json.loads((out / "state/state.json").read_text())["step"]
    logged = _log_steps(out / "log.jsonl")
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL and saved % 25 == 0 and saved < logged[-1]
    else:
        assert proc.returncode == 128 + getattr(signal, sig)
        assert saved == logged[-1] >= 30  # every finished step was kept
        assert err.strip().splitlines()[-1].startswith(f"unembed train: {sig}: saved train_step {saved}")
    resumed = _cli_train(data_dir, out, *extra, "--stop-at", str(saved + 3))
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert _log_steps(out / "log.jsonl") == list(range(1, saved + 4))


def test_save_every_zero_warns_that_a_crash_restarts(tmp_path, data_dir, caplog):
    train(
        cfg_for(data_dir, "train.save_every=0", "train.save_minutes=0", "train.eval_every=0", "train.max_steps=2"),
        tmp_path / "a",
        progress=False,
    )
    assert "save_every=0" in caplog.text and "restarts from step 0" in caplog.text
    caplog.clear()
    train(cfg_for(data_dir, "train.max_steps=2"), tmp_path / "b", progress=False)
    assert "save_every=0" not in caplog.text


def test_save_minutes_checkpoints_between_save_every_steps(tmp_path, data_dir):
    """With save_every off, a wall-clock save cadence still leaves a resumable state mid-run."""
    saved = []
    cfg = cfg_for(data_dir, "train.save_every=0", "train.eval_every=0", "train.max_steps=4", "train.save_minutes=1e-9")
    Trainer(cfg, tmp_path / "a", progress=False, on_save=lambda out: saved.append(load_state(out)[2]["step"])).run()
    assert saved == [1, 2, 3, 4, 4]  # every step (the clock always says due), then the final save
    saved.clear()
    cfg = cfg_for(data_dir, "train.save_every=0", "train.eval_every=0", "train.max_steps=4", "train.save_minutes=0")
    Trainer(cfg, tmp_path / "b", progress=False, on_save=lambda out: saved.append(load_state(out)[2]["step"])).run()
    assert saved == [4]
