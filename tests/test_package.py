"""The package as a library: ``import unembed`` and its public names, the one-call helpers, the
Inverter's guards against texts-as-vectors, the models path, the package commands of the CLI, and
the README's Python example run as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unembed
from unembed.catalog import list_models, models_path, resolve_model_dir
from unembed.cli import main
from unembed.inverter import Inverter

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The weather is lovely today."


@pytest.fixture(scope="module")
def inv(tiny_model_dir):
    return Inverter.load(str(tiny_model_dir))


def test_import_is_light_and_names_the_public_api():
    code = "import sys, unembed; print(unembed.__version__, 'torch' in sys.modules, sorted(unembed.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 2)
    assert out[0] == unembed.__version__ and re.fullmatch(r"\d+\.\d+\.\d+", out[0])
    assert out[1] == "False"  # torch is loaded only when a name that needs it is used
    for name in ("Inverter", "load_encoder", "denoise", "STRATEGIES", "invert_embeddings", "invert_strings"):
        assert name in out[2] and getattr(unembed, name) is not None
    from unembed.settings import STRATEGIES

    assert unembed.STRATEGIES == STRATEGIES and {"confidence", "euler", "remask", "two-stage"} <= set(STRATEGIES)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        unembed.nope  # noqa: B018


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"unembed {unembed.__version__}"


def test_encode_takes_one_string_as_one_text(inv):
    one = inv.encode(SENTENCE)
    assert one.shape == (1, inv.dim)
    np.testing.assert_allclose(one, inv.encode([SENTENCE]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no texts"):
        inv.encode([])


@pytest.mark.parametrize("texts", ["some text", ["some text", "more text"]])
def test_invert_given_texts_says_to_encode_first(inv, texts):
    with pytest.raises(ValueError, match=r"call encode\(texts\) first"):
        inv.invert(texts)
    with pytest.raises(ValueError, match=r"call encode\(texts\) first"):
        list(inv.stream(texts))


def test_invert_given_ragged_rows_names_the_shape(inv):
    with pytest.raises(ValueError, match=r"numbers of shape \[B, D\]"):
        inv.invert([[0.1, 0.2], [0.3]])


def test_one_call_helpers_match_the_inverter(inv, tiny_model_dir):
    vectors = inv.encode([SENTENCE, "A dog ran across the park."])
    want = [r.text for r in inv.invert(vectors, "euler", 4)]
    assert unembed.invert_embeddings(vectors, model=str(tiny_model_dir), num_steps=4, strategy="euler") == want
    assert unembed.invert_embeddings(vectors[0], model=str(tiny_model_dir), num_steps=4, strategy="euler") == want[:1]
    got = unembed.invert_strings([SENTENCE, "A dog ran across the park."], str(tiny_model_dir), 4, "euler")
    assert got == want
    assert unembed.invert_strings(SENTENCE, str(tiny_model_dir), 4, "euler") == want[:1]
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        unembed.invert_embeddings(vectors, model=str(tiny_model_dir), strategy="nope")


def test_models_path_env_then_cache_then_package(tmp_path, monkeypatch, tiny_model_dir, capsys):
    env_a, env_b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    shutil.copytree(tiny_model_dir, env_b / "mine")
    shutil.copytree(tiny_model_dir, cache / "models" / "cached")
    shutil.copytree(tiny_model_dir, cache / "models" / "mine")  # shadowed by $UNEMBED_MODELS' one
    monkeypatch.setenv("UNEMBED_MODELS", f"{env_a}{os.pathsep}{env_b}")
    monkeypatch.setenv("UNEMBED_CACHE", str(cache))
    assert models_path()[:3] == [env_a, env_b, cache / "models"]
    assert resolve_model_dir("mine") == env_b / "mine"
    assert resolve_model_dir("cached") == cache / "models" / "cached"
    assert resolve_model_dir("default").name == "minilm-default"  # the shipped model is still there
    assert [n for n, _ in list_models()][:3] == ["mine", "cached", "mine"]

    assert main(["models"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == f"mine\t{env_b / 'mine'}"
    assert lines[2] == f"mine\t{cache / 'models' / 'mine'} (shadowed by the one above)"
    assert any(line.startswith("minilm-default\t") and line.endswith("(default)") for line in lines)
    assert str(env_a) in out.err and str(cache / "models") in out.err

    with pytest.raises(ValueError, match=r"model 'nope' not found .*known models: cached, mine, minilm-default;"):
        resolve_model_dir("nope")


def test_shipped_presets_and_model_are_package_data():
    pkg = Path(unembed.__file__).parent
    assert {"tiny", "small", "base", "minilm", "mpnet", "qwen3"} <= {p.stem for p in (pkg / "configs").glob("*.yaml")}
    assert (pkg / "models" / "minilm-default" / "config.json").is_file()
    assert (pkg / "fetch_corpus.sh").is_file()


def test_split_texts_command(tmp_path, capsys):
    from unembed.sentences import split_of

    texts = [f"Sentence number {i} is about the weather in a small town by the sea." for i in range(200)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "test.txt"
    assert main(["split-texts", "--corpus", str(tmp_path / "c.jsonl"), "--split", "test", "--out", str(out)]) == 0
    want = [t for t in texts if split_of(t) == "test"]
    assert want and out.read_text().splitlines() == want  # short sentences: nothing to cut
    assert capsys.readouterr().out.strip() == f"wrote {len(want)} test sentences to {out}"
    (tmp_path / "none.jsonl").write_text(json.dumps({"text": texts[0]}) + "\n")
    split = "train" if split_of(texts[0]) != "train" else "test"
    assert main(["split-texts", "--corpus", str(tmp_path / "none.jsonl"), "--split", split, "--out", str(out)]) == 2
    assert f"holds no sentence of the {split} split" in capsys.readouterr().err


def _readme_python_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs_as_written(capsys):
    exec(compile(_readme_python_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 3 and all(line.strip() for line in out)
