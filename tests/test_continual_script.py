"""scripts/continual_train.sh refuses what it cannot resume, before it touches the checkout."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "continual_train.sh"


def run(tmp_path, **env):
    full = {**os.environ, "UNEMBED_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full, timeout=60)


def test_a_missing_start_model_is_an_error_that_says_what_to_use(tmp_path):
    before = sorted(p.name for p in (ROOT / "runs").iterdir()) if (ROOT / "runs").is_dir() else []
    done = run(tmp_path, START="runs/no-such-model-here", RUN="runs/never-made", DATA="data/never-made")
    assert done.returncode == 2
    assert "no model in START=runs/no-such-model-here" in done.stderr and "models/minilm-default" in done.stderr
    after = sorted(p.name for p in (ROOT / "runs").iterdir()) if (ROOT / "runs").is_dir() else []
    assert after == before and not (ROOT / "data" / "never-made").exists()


@pytest.mark.parametrize("var", ["START", "DATA", "RUN"])
@pytest.mark.parametrize("path", ["/tmp/elsewhere", "data/../../elsewhere"])
def test_start_data_and_run_must_stay_inside_the_checkout(tmp_path, var, path):
    paths = {"START": "models/minilm-default", "DATA": "data/never-made", "RUN": "runs/never-made"}
    done = run(tmp_path, **{**paths, var: path})
    assert done.returncode == 2
    assert "must be relative paths inside the checkout" in done.stderr
    assert not (tmp_path / "cache").exists()
