"""Inversion on a real local Ray instance (unembed.cluster): an audit of a real Chroma store of
2,000 records with two workers gives the single process's reconstructions, record for record; a
worker killed mid-run loses and duplicates nothing; `invert --vectors --ray` writes what the single
process writes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import decoding

ray = pytest.importorskip("ray", reason="the cluster path needs the ray extra")

from unembed import audit  # noqa: E402
from unembed.cli import main  # noqa: E402
from unembed.cluster import local_worker_pids  # noqa: E402

N = 2000


@pytest.fixture(scope="module")
def store(tmp_path_factory, minilm_encoder):
    """A Chroma collection of 2,000 records: real MiniLM vectors of 40 sentences, each record a
    slightly different copy (so that every vector is its own), with its text."""
    import chromadb

    base = [f"Note {i}: the delivery for customer {i} arrived late on Monday." for i in range(40)]
    vecs = np.repeat(minilm_encoder.encode(base), N // 40, axis=0)
    vecs += np.random.default_rng(0).normal(0, 0.01, vecs.shape).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = [base[i // (N // 40)] for i in range(N)]
    path = tmp_path_factory.mktemp("chroma") / "db"
    col = chromadb.PersistentClient(path=str(path)).create_collection("notes", embedding_function=None)
    for lo in range(0, N, 500):
        ids = [f"r{i:04d}" for i in range(lo, lo + 500)]
        col.add(ids=ids, embeddings=vecs[lo : lo + 500].tolist(), documents=texts[lo : lo + 500])
    np.save(path.parent / "v.npy", vecs[:300])
    return f"chroma://{path}?collection=notes", path.parent / "v.npy"


def _audit(store_uri, model_dir, encoder, out, **kw):
    kw = {"num_steps": 2, "batch_size": 64, "entities": "off", "progress": False, **kw}
    return audit.run_audit(store_uri, out=str(out), decoding=decoding(model_dir, kw), encoder=encoder, **kw)


@pytest.fixture(scope="module")
def single(store, tiny_model_dir, minilm_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "audit"
    _audit(store[0], tiny_model_dir, minilm_encoder, out)
    return (out / "reconstructions.jsonl").read_text().splitlines()


@pytest.fixture(scope="module", autouse=True)
def no_leftover_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_an_audit_on_two_ray_workers_equals_the_single_process_run(
    store, single, tiny_model_dir, minilm_encoder, tmp_path
):
    s = _audit(store[0], tiny_model_dir, minilm_encoder, tmp_path / "ray", ray="local", workers=2)
    assert (tmp_path / "ray" / "reconstructions.jsonl").read_text().splitlines() == single
    assert len(single) == N
    assert s["engine"]["workers"] == 2 and s["engine"]["engine"].startswith("ray ")
    assert "by 2 workers" in (tmp_path / "ray" / "report.md").read_text()
    assert not ray.is_initialized()  # the local instance is stopped at the end


def test_a_worker_killed_mid_audit_loses_and_duplicates_nothing(
    store, single, tiny_model_dir, minilm_encoder, tmp_path
):
    out = tmp_path / "killed"
    killed = []

    def kill_one_worker_midway():
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                done = json.loads((out / "progress.json").read_text())["done"]
            except (OSError, ValueError, KeyError):
                done = 0
            pids = local_worker_pids()
            if done >= 256 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], done))
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one_worker_midway, daemon=True)
    watcher.start()
    _audit(store[0], tiny_model_dir, minilm_encoder, out, ray="local", workers=2)
    watcher.join(timeout=5)
    assert killed and killed[0][1] < N, "the worker was not killed during the run"
    got = (out / "reconstructions.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in got]
    assert len(ids) == len(set(ids)) == N  # nothing lost, nothing twice
    assert got == single


def test_invert_vectors_on_ray_writes_what_one_process_writes(store, tiny_model_dir, tmp_path, capsys):
    npy = store[1]
    base = ["invert", "--model", str(tiny_model_dir), "--vectors", str(npy), "--steps", "2", "--batch-size", "32"]
    assert main([*base, "--out", str(tmp_path / "one.jsonl"), "--no-progress"]) == 0
    assert main([*base, "--out", str(tmp_path / "ray.jsonl"), "--no-progress", "--ray", "--workers", "2"]) == 0
    one = (tmp_path / "one.jsonl").read_text().splitlines()
    assert len(one) == 300 and (tmp_path / "ray.jsonl").read_text().splitlines() == one
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*base, "--ray", "--workers", "0"])
    assert stop.value.code == 2 and "--workers" in capsys.readouterr().err
