import json

import numpy as np
import pytest

from unembed.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_invert_text_prints_reconstruction_and_scores(capsys, tiny_model_dir):
    code, out, err = run(
        capsys,
        "invert",
        "--model",
        str(tiny_model_dir),
        "--text",
        "The weather is lovely today.",
        "--steps",
        "4",
        "--json",
    )
    assert code == 0
    rec = json.loads(out)
    assert rec["input"] == "The weather is lovely today." and isinstance(rec["text"], str)
    assert 0 <= rec["token_accuracy"] <= 1 and -1 <= rec["cosine"] <= 1


def test_invert_vector_files_round_trip(capsys, tmp_path, tiny_model_dir):
    vecs = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    with open(tmp_path / "v.jsonl", "w") as fh:
        for i, v in enumerate(vecs):
            fh.write(json.dumps({"id": f"r{i}", "embedding": v.tolist()}) + "\n")
    assert (
        run(
            capsys,
            "invert",
            "--model",
            str(tiny_model_dir),
            "--vectors",
            str(tmp_path / "v.npy"),
            "--out",
            str(tmp_path / "a.jsonl"),
            "--steps",
            "3",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "invert",
            "--model",
            str(tiny_model_dir),
            "--vectors",
            str(tmp_path / "v.jsonl"),
            "--out",
            str(tmp_path / "b.jsonl"),
            "--steps",
            "3",
        )[0]
        == 0
    )
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["id"] for r in b] == ["r0", "r1", "r2"] and [r["text"] for r in a] == [r["text"] for r in b]
    assert len(a[0]["confidence"]) == 16


@pytest.mark.parametrize("case", ["dim", "nan", "zero", "badjson", "missing", "suffix"])
def test_bad_vectors_exit_2_with_one_line(capsys, tmp_path, tiny_model_dir, case):
    path = tmp_path / ("v.txt" if case == "suffix" else "v.npy" if case in ("dim", "nan", "zero") else "v.jsonl")
    if case == "dim":
        np.save(path, np.ones((2, 10), np.float32))
    elif case == "nan":
        arr = np.ones((2, 384), np.float32)
        arr[1, 3] = np.nan
        np.save(path, arr)
    elif case == "zero":
        np.save(path, np.zeros((1, 384), np.float32))
    elif case == "badjson":
        path.write_text('{"embedding": [1, 2, "x"]}\n')
    elif case == "suffix":
        path.write_text("1 2 3\n")
    code, out, err = run(capsys, "invert", "--model", str(tiny_model_dir), "--vectors", str(path))
    assert code == 2 and err.count("\n") == 1 and "error" in err and "Traceback" not in err


def test_bad_text_model_strategy_steps_exit_2(capsys, tmp_path, tiny_model_dir):
    m = str(tiny_model_dir)
    assert run(capsys, "invert", "--model", m, "--text", "   ")[0] == 2
    code, _, err = run(capsys, "invert", "--model", str(tmp_path / "nope"), "--text", "hi")
    assert code == 2 and "not found" in err
    assert run(capsys, "invert", "--model", m, "--text", "hi", "--steps", "99")[0] == 2
    with pytest.raises(SystemExit) as exc:  # argparse: unknown strategy
        main(["invert", "--model", m, "--text", "hi", "--strategy", "beam"])
    assert exc.value.code == 2
    capsys.readouterr()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/config.json").write_text("{}")
    code, _, err = run(capsys, "invert", "--model", str(tmp_path / "broken"), "--text", "hi")
    assert code == 2 and "model*.safetensors" in err


def test_train_rejects_unknown_override(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", "tiny", "--out", str(tmp_path / "r"), "train.nope=1")
    assert code == 2 and "unknown config key 'train.nope'" in err


def test_invert_vectors_streams_resumes_after_a_kill_and_matches_an_uninterrupted_run(capsys, tmp_path, tiny_model_dir):
    """A real `unembed invert --vectors --out` process is killed mid-file; the rerun continues after
    the last whole batch and the result equals an uninterrupted run, line for line."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    vecs = np.random.default_rng(1).standard_normal((80, 384)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    out = tmp_path / "out.jsonl"
    part = tmp_path / "out.jsonl.part"
    argv = ["invert", "--model", str(tiny_model_dir), "--vectors", str(tmp_path / "v.npy"), "--steps", "2"]
    argv += ["--batch-size", "2", "--out"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "unembed.cli", *argv, str(out)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (part.is_file() and part.read_text().count("\n") >= 6):  # streamed: lines appear as batches finish
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    written = part.read_text().count("\n")
    assert 6 <= written < 80 and not out.exists()
    code, _, err = run(capsys, *argv, str(out))
    assert code == 0 and "wrote 80 reconstructions" in err and not part.exists()
    code, _, err = run(capsys, *argv, str(out))
    assert code == 2 and "--force" in err  # a finished output is not overwritten silently
    code, _, _ = run(capsys, *argv, str(tmp_path / "straight.jsonl"), "--no-progress")
    assert code == 0
    resumed = out.read_text().splitlines()
    assert resumed == (tmp_path / "straight.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in resumed] == list(range(80))


def test_a_very_long_line_draws_no_tokenizer_warning(tmp_path, tiny_model_dir):
    import os
    import subprocess
    import sys

    long = tmp_path / "long.txt"
    long.write_text("word " * 100_000 + "\n")  # 500 KB on one line: far over every model's length
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = ["-m", "unembed.cli", "evaluate", "--model", str(tiny_model_dir), "--texts", str(long)]
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "indexing errors" not in done.stderr and "Token indices sequence length" not in done.stderr
