"""scripts/sub_corpus.py: the CPU run's corpus slices keep one validation set and never share a
training sentence between --skip slices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from unembed.sentences import split_of

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sub_corpus.py"


def _corpus(path: Path, n: int = 3000) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"Sentence number {i} of the little corpus.", "source": "t"}) + "\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_skip_gives_a_disjoint_training_slice_with_the_same_validation(tmp_path):
    corpus = _corpus(tmp_path / "c.jsonl")
    n_val = sum(split_of(t) == "validation" for t in _texts(corpus))
    assert n_val >= 10  # 1% of 3,000 by hash
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert _run("--corpus", str(corpus), "--validation", "10", "--train", "500", "--out", str(first)).returncode == 0
    r = _run("--corpus", str(corpus), "--validation", "10", "--train", "800", "--skip", "500", "--out", str(second))
    assert r.returncode == 0, r.stderr
    a, b = _texts(first), _texts(second)
    assert a[:10] == b[:10] and all(split_of(t) == "validation" for t in a[:10])
    assert len(a) == 510 and len(b) == 810
    assert not set(a[10:]) & set(b[10:])
    # the skipped slice continues the first one: together they are the first 1,300 of one shuffle
    whole = tmp_path / "w.jsonl"
    _run("--corpus", str(corpus), "--validation", "10", "--train", "1300", "--out", str(whole))
    assert _texts(whole)[10:] == a[10:] + b[10:]
    assert all(split_of(t) == "train" for t in a[10:] + b[10:])
    # the same arguments give the same file
    again = tmp_path / "a2.jsonl"
    _run("--corpus", str(corpus), "--validation", "10", "--train", "500", "--out", str(again))
    assert again.read_bytes() == first.read_bytes()


def test_skip_past_the_end_is_a_clear_error(tmp_path):
    corpus = _corpus(tmp_path / "c.jsonl", n=200)
    r = _run("--corpus", str(corpus), "--skip", "10000", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode != 0 and "leaves no training sentence" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.jsonl").exists()
    r = _run("--corpus", str(corpus), "--skip", "-1", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode != 0 and "--skip" in r.stderr
