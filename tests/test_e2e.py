"""Proof that conditioning works: a tiny decoder trained on 64 sentences with the real MiniLM
encoder reconstructs them from their vectors, and does far worse from shuffled vectors."""

import numpy as np
import pytest

from unembed.config import load_config
from unembed.inverter import Inverter
from unembed.metrics import token_accuracy
from unembed.prepare import PreparedData, run_prepare
from unembed.train import train

SUBJECTS = [
    "The old farmer",
    "A young teacher",
    "My neighbour",
    "The tired doctor",
    "Her brother",
    "The pilot",
    "A quiet student",
    "The baker",
]
ACTIONS = [
    "painted the red barn",
    "visited the small museum",
    "repaired a broken clock",
    "planted tall trees",
    "wrote a long letter",
    "cooked fresh soup",
    "sold three horses",
    "climbed the green hill",
]


@pytest.mark.slow
def test_tiny_decoder_inverts_training_vectors(tmp_path, minilm_encoder):
    texts = [
        f"{s} {a} on {day}."
        for i, s in enumerate(SUBJECTS)
        for j, a in enumerate(ACTIONS)
        for day in [["Monday", "Friday"][(i + j) % 2]]
    ]
    assert len(texts) == 64
    (tmp_path / "s.txt").write_text("\n".join(texts) + "\n")
    run_prepare(
        str(tmp_path / "s.txt"), "minilm", tmp_path / "data", seq_len=16, progress=False, encoder_obj=minilm_encoder
    )
    data = PreparedData(tmp_path / "data")
    cfg = load_config(
        "tiny",
        overrides=[
            f"train.data={tmp_path / 'data'}",
            "model.width=128",
            "model.mlp_dim=256",
            "train.max_steps=300",
            "train.batch_size=32",
            "train.lr=0.005",
            "train.ema_decay=0.9",
            "train.eval_every=0",
            "train.save_every=0",
        ],
    )
    # every sentence trains: put all rows in the training split for this memorisation test
    np.save(tmp_path / "data/split.npy", np.zeros(len(data), np.uint8))
    train(cfg, tmp_path / "run", progress=False)
    inv = Inverter.load(str(tmp_path / "run"), encoder=minilm_encoder)
    ids, vectors = np.asarray(data.ids), np.asarray(data.vectors, np.float32)
    got = np.array([r.ids for r in inv.invert(vectors, "confidence", 16)])
    acc = token_accuracy(got, ids, inv.cfg.model.eos_id)
    shuffled = np.array([r.ids for r in inv.invert(np.roll(vectors, 1, axis=0), "confidence", 16)])
    acc_shuffled = token_accuracy(shuffled, ids, inv.cfg.model.eos_id)
    assert acc >= 0.9, acc
    assert acc_shuffled < acc - 0.25, (acc, acc_shuffled)
