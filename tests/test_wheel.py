"""The built wheel, installed non-editable into a fresh venv, works from another directory offline:
the shipped model inverts, the presets resolve, the server answers with its offline /docs.

The venv borrows this environment's dependencies (torch, transformers, the MiniLM package) through
a path file instead of installing them again, so the test runs offline and in about a minute; the
package under test comes only from the wheel (PYTHONPATH is cleared, and the path file adds a plain
folder, whose own .pth files, such as an editable install's, are not run).
"""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

import unembed

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools builds in the tree, and a stale build/ there would leak into the wheel.
    junk = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "data", "runs", "*.egg-info", "__pycache__", ".*cache"
    )
    shutil.copytree(ROOT, tmp / "src", symlinks=True, ignore=junk)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp / "dist",
            tmp / "src",
        ],
        check=True,
        cwd=tmp,
    )
    (wheel,) = (tmp / "dist").glob("unembed-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)  # ensurepip: offline, from the interpreter's own wheel
    py = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True, cwd=tmp, env=clean)
    purelib = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "zz_borrowed_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNEMBED_MODELS", "UNEMBED_CACHE")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return {"wheel": wheel, "bin": env_dir / "bin", "purelib": purelib, "env": env, "cwd": home}


def _run(installed: dict, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_wheel_carries_the_model_and_presets(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "unembed/models/minilm-default/config.json" in names
    assert sum(n.startswith("unembed/models/minilm-default/model") for n in names) >= 1
    assert {"unembed/configs/tiny.yaml", "unembed/configs/small.yaml", "unembed/fetch_corpus.sh"} <= set(names)
    assert "unembed/csrc/head.c" in names  # the kernels' C source: without it decoding falls back to torch


def test_import_and_version_from_the_installed_package(installed):
    code = "import unembed; from unembed import Inverter, invert_embeddings, __version__; "
    code += "print(__version__, unembed.__file__)"
    r = _run(installed, installed["bin"] / "python", "-c", code)
    assert r.returncode == 0, r.stderr
    version, where = r.stdout.split()
    assert version == unembed.__version__ and Path(where).is_relative_to(installed["purelib"])
    r = _run(
        installed, installed["bin"] / "python", "-c", "import importlib.metadata as m; print(m.version('unembed'))"
    )
    assert r.stdout.strip() == unembed.__version__


def test_invert_with_the_shipped_model_offline(installed):
    r = _run(installed, installed["bin"] / "unembed", "invert", "--text", "The weather is lovely today.", "--json")
    assert r.returncode == 0, r.stderr
    assert '"text": "' in r.stdout and "token_accuracy" in r.stdout
    r = _run(installed, installed["bin"] / "unembed", "models")
    assert r.returncode == 0 and str(installed["purelib"] / "unembed" / "models" / "minilm-default") in r.stdout


def test_prepare_then_train_a_preset(installed):
    cwd = installed["cwd"]
    words = ["river", "garden", "station", "market", "harbour", "library", "school", "bakery"]
    lines = [f"The old {a} near the {b} opened again on a quiet sunday morning." for a in words for b in words]
    (cwd / "s.txt").write_text("\n".join(lines) + "\n")
    unembed_cli = installed["bin"] / "unembed"
    r = _run(installed, unembed_cli, "prepare", "--source", "s.txt", "--out", "d32", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _run(installed, unembed_cli, "train", "--config", "tiny", "--out", "run", "train.data=d32", "--no-progress")
    assert r.returncode == 2 and "prepare the data with --seq-len 16 or train with model.seq_len=32" in r.stderr
    r = _run(installed, unembed_cli, "prepare", "--source", "s.txt", "--out", "d16", "--seq-len", "16", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _run(
        installed,
        unembed_cli,
        "train",
        "--config",
        "tiny",
        "--out",
        "run",
        "train.data=d16",
        "train.max_steps=3",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert (cwd / "run" / "config.json").is_file()


def test_serve_with_offline_docs(installed):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [installed["bin"] / "unembed", "serve", "--port", str(port)],
        cwd=installed["cwd"],
        env=installed["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
        while True:
            try:
                health = httpx.get(f"{base}/api/health", timeout=5).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.5)
        assert health["models"] == ["minilm-default"]
        assert "/docs/assets/swagger-ui-bundle.js" in httpx.get(f"{base}/docs").text
        assert httpx.get(f"{base}/docs/assets/swagger-ui-bundle.js").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
