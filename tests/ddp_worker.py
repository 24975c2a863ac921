"""Run under torchrun by test_train: train the tiny model with DDP on gloo, save each rank's weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from unembed.config import load_config
from unembed.train import Trainer

data, out, extra = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
cfg = load_config(
    "tiny",
    overrides=[
        f"train.data={data}",
        "encoder.name=fake",
        "train.max_steps=6",
        "train.eval_every=0",
        "train.save_every=0",
        *extra,
    ],
)
trainer = Trainer(cfg, out / "run", progress=False)
trainer.run()
rank = torch.distributed.get_rank()
save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
torch.distributed.destroy_process_group()
