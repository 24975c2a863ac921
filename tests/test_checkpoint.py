import torch

from unembed.checkpoint import load_model, load_weights, save_model
from unembed.config import load_config, resolve_derived
from unembed.model import Denoiser


def test_sharded_float16_round_trip(tmp_path):
    cfg = resolve_derived(load_config("tiny"), 5000, 8, 4999, 0, 1)
    model = Denoiser(cfg.model)
    paths = save_model(tmp_path / "m", cfg, model.state_dict(), dtype=torch.float16, shard_mb=0.3)
    assert len(paths) > 1 and all(p.stat().st_size <= 0.3 * 2**20 + 4096 for p in paths)
    loaded_cfg, loaded = load_model(tmp_path / "m")
    assert loaded_cfg == cfg
    for k, v in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[k], v.half().float())
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_plain_round_trip_is_exact(tmp_path):
    cfg = resolve_derived(load_config("tiny"), 100, 8, 99, 0, 1)
    model = Denoiser(cfg.model)
    save_model(tmp_path / "m", cfg, model.state_dict())
    w = load_weights(tmp_path / "m")
    assert all(torch.equal(w[k], v) for k, v in model.state_dict().items())
