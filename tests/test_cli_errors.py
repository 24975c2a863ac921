"""Bad input on every command: exit 2, exactly one line on stderr, no traceback, and nothing written.

Each case runs ``unembed.cli.main`` in-process (the same code path as the console script); the
few cases that need a process of their own (--help without torch, a real crash) use one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unembed.cli import main
from unembed.prepare import run_prepare
from unembed.settings import STRATEGIES

CPU_BUILD = torch.version.cuda is None
NO_MPS = not torch.backends.mps.is_available()

# (argv, a piece of the expected message). Placeholders: M tiny model, V good vectors (.npy),
# T texts (.txt), F an existing file, DIR an existing folder without data, OUT a path not yet there
# (it must still not exist afterwards), NOPE a missing path, D prepared data (L = 16), D8 prepared
# data with L = 8, PACK a folder with a pack.json, BADYAML / LISTYAML broken configs, EMPTY an empty
# .jsonl, GARBAGE a .npy that is no array, PORT a port in use.
CASES = [
    # corpus
    (["corpus", "--source", "NOPE.txt", "--out", "OUT"], "not found"),
    (["corpus", "--source", "T", "--out", "DIR"], "is a folder"),
    (["corpus", "--source", "DIR", "--out", "OUT"], "is a folder"),
    (["corpus", "--source", "somewhere", "--out", "OUT"], "unknown corpus source 'somewhere'"),
    (["corpus", "--source", "builtin:nosuch", "--out", "OUT"], "nosuch"),
    (["corpus", "--source", "T", "--out", "T"], "also the input"),
    (["corpus", "--source", "T", "--out", "F"], "--force"),
    (["corpus", "--source", "T", "--out", "F/sub/corpus.jsonl"], "is a file"),
    (["corpus", "--source", "T", "--out", "OUT", "--limit", "0"], "positive integer"),
    (["corpus", "--source", "c4", "--out", "OUT", "--limit", "2"], "c4"),
    (["corpus", "--source", "T"], "required: --out"),
    # prepare
    (["prepare", "--source", "T", "--out", "F"], "is a file"),
    (["prepare", "--source", "NOPE.txt", "--out", "OUT"], "not found"),
    (["prepare", "--source", "T", "--out", "OUT", "--seq-len", "1"], "seq_len must be at least 2"),
    (["prepare", "--source", "T", "--out", "OUT", "--device", "foo"], "unknown device 'foo'"),
    pytest.param(
        ["prepare", "--source", "T", "--out", "OUT", "--device", "cuda"],
        "CPU-only",
        marks=pytest.mark.skipif(not CPU_BUILD, reason="CUDA build"),
    ),
    (["prepare", "--source", "T", "--out", "OUT", "--chunk-size", "many"], "not an integer"),
    # train
    (["train", "--config", "nosuch", "--out", "OUT"], "unknown config preset 'nosuch'"),
    (["train", "--config", "BADYAML", "--out", "OUT"], "invalid YAML at line 3, column 1"),
    (["train", "--config", "LISTYAML", "--out", "OUT"], "top level must be a mapping"),
    (["train", "--config", "DIR", "--out", "OUT"], "is a folder"),
    (["train", "--config", "tiny", "--out", "F", "train.data=D"], "is a file"),
    (["train", "--config", "tiny", "--out", "OUT", "train.nope=1"], "unknown config key 'train.nope'"),
    (["train", "--config", "tiny", "--out", "OUT", "train.lr=fast"], "needs a finite number"),
    (["train", "--config", "tiny", "--out", "OUT", "train.max_steps=0"], "train.max_steps must be >= 1"),
    (["train", "--config", "tiny", "--out", "OUT", "train.max_steps=2.5"], "needs an integer"),
    (["train", "--config", "tiny", "--out", "OUT", "--stop-at", "0"], "positive integer"),
    (["train", "--config", "tiny", "--out", "OUT", "--stop-at", "-5"], "positive integer"),
    (["train", "--config", "tiny", "--out", "OUT", "train.data=NOPE"], "folder not found"),
    (["train", "--config", "tiny", "--out", "OUT", "lr"], "must look like key.sub=value"),
    (["train", "--config", "tiny", "--out", "OUT", "train.lr=[1"], "cannot parse the value at line 1"),
    # invert
    (["invert", "--model", "M", "--vectors", "V", "--out", "V"], "also the input"),
    (["invert", "--model", "M", "--vectors", "V", "--out", "DIR"], "is a folder"),
    (["invert", "--model", "M", "--vectors", "V", "--out", "F"], "exists"),
    (["invert", "--model", "M", "--vectors", "V", "--out", "F/x.jsonl"], "is a file"),
    (["invert", "--model", "M", "--vectors", "NOPE.npy"], "not found"),
    (["invert", "--model", "M", "--vectors", "DIR"], "is a folder"),
    (["invert", "--model", "M", "--vectors", "EMPTY"], "no vectors"),
    (["invert", "--model", "M", "--vectors", "GARBAGE"], "garbage.npy"),
    (["invert", "--model", "M", "--text", "hi", "--out", "OUT"], "--out writes the results of --vectors"),
    (["invert", "--model", "M", "--text", "caf\udcc3"], "not valid UTF-8"),
    (["invert", "--model", "M", "--text", "hi", "--steps", "0"], "positive integer"),
    (["invert", "--model", "M", "--text", "hi", "--steps", "2.5"], "not an integer"),
    (["invert", "--model", "M", "--text", "hi", "--steps", "99"], "between 1 and 16"),
    (["invert", "--model", "M", "--text", "hi", "--strategy", "beam"], "unknown strategy 'beam'"),
    (["invert", "--model", "M", "--text", "hi", "--device", "foo"], "unknown device 'foo'"),
    (["invert", "--model", "M", "--text", "hi", "--precision", "fp16"], "invalid choice: 'fp16'"),
    (["invert", "--model", "M", "--text", "hi", "--length", "oracle"], "invalid choice: 'oracle'"),
    (["evaluate", "--model", "M", "--texts", "T", "--precision", "int4"], "invalid choice: 'int4'"),
    (["serve", "--model", "M", "--precision", "half"], "invalid choice: 'half'"),
    pytest.param(
        ["invert", "--model", "M", "--text", "hi", "--device", "cuda"],
        "CPU-only",
        marks=pytest.mark.skipif(not CPU_BUILD, reason="CUDA build"),
    ),
    pytest.param(
        ["invert", "--model", "M", "--text", "hi", "--device", "mps"],
        "MPS is not available",
        marks=pytest.mark.skipif(not NO_MPS, reason="MPS here"),
    ),
    (["invert", "--model", "NOPE", "--text", "hi"], "not found"),
    (["invert", "--model", "M"], "one of the arguments --text --vectors is required"),
    # evaluate
    (["evaluate", "--model", "M", "--texts", "T", "--out", "DIR"], "is a folder"),
    (["evaluate", "--model", "M", "--texts", "T", "--out", "T"], "also the input"),
    (["evaluate", "--model", "M", "--texts", "T", "--out", "F"], "--force"),
    (["evaluate", "--model", "M", "--texts", "T", "--out", "F/report.json"], "is a file"),
    (["evaluate", "--model", "M", "--data", "D8"], "decodes 16 tokens but"),
    (["evaluate", "--model", "M", "--data", "NOPE"], "folder not found"),
    (["evaluate", "--model", "M", "--data", "DIR"], "holds no manifest.json"),
    (["evaluate", "--model", "M", "--texts", "T", "--limit", "0"], "positive integer"),
    (["evaluate", "--model", "M", "--texts", "T", "--device", "cuda:x"], "unknown device"),
    # audit
    (["identify", "--vectors", "V", "--candidates", "CEMPTY", "--model", "M", "--out", "OUT"], "no candidate values"),
    (["identify", "--vectors", "V", "--candidates", "CBIN", "--model", "M", "--out", "OUT"], "is binary"),
    (["identify", "--vectors", "V", "--candidates", "CLONG", "--model", "M", "--out", "OUT"], "characters (at most"),
    (["identify", "--vectors", "V", "--candidates", "CLATIN", "--model", "M", "--out", "OUT"], "line 2 is not UTF-8"),
    (["identify", "--vectors", "V", "--candidates", "NOPE.txt", "--model", "M", "--out", "OUT"], "not found"),
    (
        ["identify", "--vectors", "V", "--candidates", "builtin:nope", "--model", "M", "--out", "OUT"],
        "unknown built-in",
    ),
    (["identify", "--vectors", "NOPE.npy", "--candidates", "builtin:countries", "--out", "OUT"], "not found"),
    (["identify", "--vectors", "V", "--candidates", "CLATIN", "--out", "V"], "is also the input"),
    (["identify", "--vectors", "V", "--candidates", "builtin:countries", "--top", "0"], "positive integer"),
    (["audit", "NOPE.npy", "--model", "M", "--out", "OUT"], "not found"),
    (["audit", "V", "--model", "M", "--out", "F"], "is a file"),
    (["audit", "V", "--model", "M", "--out", "OUT", "--texts", "NOPE.txt"], "not found"),
    (["audit", "V", "--model", "M", "--out", "OUT", "--batch-size", "0"], "positive integer"),
    (["audit", "V", "--model", "M", "--out", "OUT", "--device", "foo"], "unknown device"),
    # defend
    (["defend", "--model", "M", "--data", "D", "--defense", "rotate", "--out", "F"], "is a file"),
    (["defend", "--model", "M", "--data", "NOPE", "--defense", "rotate", "--out", "OUT"], "folder not found"),
    (["defend", "--model", "M", "--data", "D8", "--defense", "rotate", "--out", "OUT"], "decodes 16 tokens"),
    (["defend", "--model", "M", "--data", "D", "--defense", "rotate", "--out", "OUT", "--attack-k", "0"], "positive"),
    # serve
    (["serve", "--model", "M", "--port", "99999"], "1..65535"),
    (["serve", "--model", "M", "--port", "0"], "1..65535"),
    (["serve", "--model", "M", "--port", "http"], "not an integer"),
    (["serve", "--model", "M", "--port", "PORT"], "cannot listen on 127.0.0.1"),
    (["serve", "--model", "M", "--device", "foo"], "unknown device"),
    # gpu-pack / gpu-train
    (["gpu-pack", "--corpus", "NOPE.jsonl", "--out", "OUT"], "not found"),
    (["gpu-pack", "--corpus", "T", "--out", "F"], "is a file"),
    (["gpu-pack", "--corpus", "T", "--out", "OUT", "--max-mb", "0"], "positive number"),
    (["gpu-train", "--pack", "DIR", "--out", "OUT", "--minutes", "1"], "holds no pack.json"),
    (["gpu-train", "--pack", "PACK", "--out", "OUT", "--minutes", "1", "--margin-s", "0"], "positive number"),
    (["gpu-train", "--pack", "PACK", "--out", "OUT", "--minutes", "0"], "positive number"),
    (
        ["gpu-train", "--pack", "PACK", "--out", "OUT", "--minutes", "1", "--config", "tiny", "x.y=1"],
        "unknown config key",
    ),
    # the top level
    ([], "required: command"),
    (["nosuch"], "invalid choice"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_model_dir, fake_encoder):
    root = tmp_path_factory.mktemp("bad")
    texts = root / "texts.txt"
    texts.write_text("The weather is lovely today.\nA second sentence about dogs.\n")
    (root / "file.txt").write_text("keep me\n")
    (root / "dir").mkdir()
    np.save(root / "v.npy", np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32))
    (root / "empty.jsonl").write_text("")
    (root / "cempty.txt").write_text("\n  \n")
    (root / "cbin.txt").write_bytes(bytes(range(256)) * 4)
    (root / "clong.txt").write_text("Ann Lee\n" + "x" * 10_000_000 + "\n")
    (root / "clatin.txt").write_bytes("Ann Lee\nJosé Núñez\n".encode("latin-1"))
    (root / "garbage.npy").write_bytes(b"\x93NUMPY garbage, not an array")
    (root / "bad.yaml").write_text("train:\n  lr: [1\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "pack").mkdir()
    (root / "pack/pack.json").write_text("{}")
    sentences = root / "s.txt"
    sentences.write_text("\n".join(f"Sentence number {i} is about the weather today." for i in range(40)) + "\n")
    for name, seq_len in (("data", 16), ("data8", 8)):
        run_prepare(str(sentences), "fake", root / name, seq_len=seq_len, progress=False, encoder_obj=fake_encoder)
    return {
        "M": str(tiny_model_dir),
        "V": str(root / "v.npy"),
        "T": str(texts),
        "F": str(root / "file.txt"),
        "DIR": str(root / "dir"),
        "OUT": str(root / "out-never-made"),
        "NOPE": str(root / "nope"),
        "NOPE.txt": str(root / "nope.txt"),
        "NOPE.npy": str(root / "nope.npy"),
        "NOPE.jsonl": str(root / "nope.jsonl"),
        "D": str(root / "data"),
        "D8": str(root / "data8"),
        "PACK": str(root / "pack"),
        "BADYAML": str(root / "bad.yaml"),
        "LISTYAML": str(root / "list.yaml"),
        "EMPTY": str(root / "empty.jsonl"),
        "CEMPTY": str(root / "cempty.txt"),
        "CBIN": str(root / "cbin.txt"),
        "CLONG": str(root / "clong.txt"),
        "CLATIN": str(root / "clatin.txt"),
        "GARBAGE": str(root / "garbage.npy"),
    }


def _fill(argv: list[str], places: dict, port: int) -> list[str]:
    out = []
    for a in argv:
        head, _, rest = a.partition("/")
        a = places.get(a, a) if not rest else (f"{places[head]}/{rest}" if head in places else a)
        out.append(str(port) if a == "PORT" else a)
    return out


def run_main(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def _snapshot(places: dict) -> dict:
    return {k: Path(places[k]).read_bytes() for k in ("V", "T", "F")}


def test_the_table_covers_every_command_forty_times_over():
    argvs = [c.values[0] if hasattr(c, "values") else c[0] for c in CASES]
    commands = {argv[0] for argv in argvs if argv}
    assert len(CASES) >= 40
    assert commands >= {
        "corpus",
        "prepare",
        "train",
        "invert",
        "evaluate",
        "audit",
        "identify",
        "defend",
        "serve",
        "gpu-pack",
        "gpu-train",
    }


@pytest.mark.parametrize("argv, expected", CASES, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None)
def test_bad_input_is_one_line_and_exit_2(capsys, places, argv, expected):
    before = _snapshot(places)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        code, err = run_main(capsys, _fill(argv, places, busy.getsockname()[1]))
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and "error" in err
    assert expected in err, err
    assert not Path(places["OUT"]).exists()  # nothing is created before the arguments are checked
    assert _snapshot(places) == before  # inputs and existing files are untouched


def test_verbose_flag_works_after_the_subcommand(capsys, places):
    code, err = run_main(capsys, ["invert", "--model", places["M"], "-v", "--text", "hi", "--device", "foo"])
    assert code == 2 and "unknown device" in err and "unrecognized" not in err
    code, err = run_main(capsys, ["-v", "invert", "--model", places["M"], "--text", "hi", "--device", "foo"])
    assert code == 2 and "unknown device" in err


def test_help_lists_every_strategy_and_imports_no_torch():
    probe = (
        "import sys, time; t = time.perf_counter(); import unembed.cli as c\n"
        "try:\n    c.main(['invert', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(round(time.perf_counter() - t, 3), 'torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=_env())
    seconds, torch_loaded = done.stderr.split()
    assert torch_loaded == "False" and all(name in done.stdout for name in STRATEGIES)
    assert float(seconds) < 2.0  # 0.25 s measured here; the bound leaves room for a loaded CI machine


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_an_unexpected_error_names_its_traceback_file(capsys, places, tmp_path):
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "manifest.json").write_text("[]")  # valid JSON, but no manifest: not an anticipated case
    argv = [
        "defend",
        "--model",
        places["M"],
        "--data",
        str(broken),
        "--defense",
        "rotate",
        "--out",
        str(tmp_path / "o"),
    ]
    code, err = run_main(capsys, argv)
    assert code == 1 and err.count("\n") == 1 and "unexpected error" in err and "Traceback" not in err
    path = Path(err.rstrip().rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback (most recent call last)" in path.read_text()
    path.unlink()
    code, err = run_main(capsys, ["-v", *argv])
    assert code == 1 and "Traceback (most recent call last)" in err
    Path(err.rstrip().rsplit("traceback in ", 1)[1].rstrip(")")).unlink()


def test_steps_zero_is_an_error_in_the_library_too(tiny_model_dir):
    from unembed.inverter import Inverter

    inv = Inverter.load(str(tiny_model_dir))
    with pytest.raises(ValueError, match="steps must be between 1 and 16, got 0"):
        inv.invert(np.ones((1, 384), np.float32), num_steps=0)
    with pytest.raises(ValueError, match="CPU-only|no CUDA GPU|only"):
        Inverter.load(str(tiny_model_dir), device="cuda:99")


def test_invert_out_never_touches_the_input(capsys, places, tmp_path):
    vectors = tmp_path / "good.npy"
    vectors.write_bytes(Path(places["V"]).read_bytes())
    for out in (str(vectors), str(tmp_path / "." / "good.npy")):
        code, err = run_main(
            capsys, ["invert", "--model", places["M"], "--vectors", str(vectors), "--out", out, "--force"]
        )
        assert code == 2 and "also the input" in err
    assert vectors.read_bytes() == Path(places["V"]).read_bytes()
    assert json.dumps(np.load(vectors).tolist()) == json.dumps(np.load(places["V"]).tolist())


# ---- nothing is overwritten without --force ------------------------------------------------------------


def _planted(folder: Path, names: list[str]) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    planted = {}
    for name in names:
        (folder / name).write_bytes(f"unrelated {name}\n".encode())
        planted[folder / name] = (folder / name).read_bytes()
    return planted


@pytest.mark.parametrize(
    "command, names",
    [
        (["evaluate", "--texts", "T", "--model", "M", "--out", "{d}/r.json"], ["r.json"]),
        (["evaluate", "--texts", "T", "--model", "M", "--out", "{d}/r.json"], ["r.jsonl"]),
        (["evaluate", "--texts", "T", "--model", "M", "--sweep", "--out", "{d}/r.json"], ["r.sweep.png"]),
        (["evaluate", "--texts", "T", "--model", "M", "--sweep", "--out", "{d}/r.json"], ["r.sweep.md"]),
        (["defend", "--data", "D", "--model", "M", "--defense", "rotate", "--out", "{d}"], ["defend.md"]),
        (["defend", "--data", "D", "--model", "M", "--defense", "rotate", "--out", "{d}"], ["privacy_utility.png"]),
        (["invert", "--vectors", "V", "--model", "M", "--out", "{d}/x.jsonl"], ["x.jsonl"]),
        (["identify", "--vectors", "V", "--candidates", "T", "--model", "M", "--out", "{d}/x.jsonl"], ["x.jsonl"]),
        (["audit", "V", "--model", "M", "--out", "{d}"], ["notes.txt"]),
    ],
)
def test_every_file_a_command_would_write_is_checked_first(capsys, places, tmp_path, command, names):
    planted = _planted(tmp_path / "out", names)
    argv = [a.format(d=tmp_path / "out") for a in _fill(command, places, 0)]
    code, err = run_main(capsys, argv)
    assert code == 2 and err.count("\n") == 1, err
    assert "--force" in err or "not empty" in err, err
    assert {p: p.read_bytes() for p in planted} == planted
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)  # nothing else was written


def test_an_output_beside_the_input_names_both(capsys, places, tmp_path):
    texts = tmp_path / "t.jsonl"
    texts.write_text("not a texts file\n")
    code, err = run_main(
        capsys, ["evaluate", "--texts", str(texts), "--model", places["M"], "--out", str(tmp_path / "t.json")]
    )
    assert code == 2 and f"--out {tmp_path / 't.json'} would write {texts}, which is the input" in err, err
    code, err = run_main(
        capsys, ["evaluate", "--texts", places["T"], "--model", places["M"], "--out", str(tmp_path / "r.jsonl")]
    )
    assert code == 2 and "cannot end in .jsonl" in err, err


def test_defend_force_overwrites_an_earlier_run(capsys, places, tmp_path):
    planted = _planted(tmp_path / "out", ["defend.md"])
    argv = [
        "defend",
        "--data",
        places["D"],
        "--model",
        places["M"],
        "--defense",
        "rotate",
        "--out",
        str(tmp_path / "out"),
    ]
    code, err = run_main(capsys, [*argv, "--split", "all", "--limit", "8", "--no-progress", "--force"])
    assert code == 0, err
    assert (tmp_path / "out" / "defend.md").read_bytes() != planted[tmp_path / "out" / "defend.md"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_misleading_errors_name_the_file_or_the_service(capsys, places, tmp_path):
    noise = tmp_path / "noise.npy"
    noise.write_bytes(os.urandom(16))
    renamed = tmp_path / "renamed.npy"
    renamed.write_text("The weather is lovely today.\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 au lait.\n".encode("latin-1"))
    port = _closed_port()
    cases = [
        (["invert", "--model", places["M"], "--vectors", str(noise)], "noise.npy: not a NumPy .npy file"),
        (["invert", "--model", places["M"], "--vectors", str(renamed)], "renamed.npy: not a NumPy .npy file"),
        (["evaluate", "--model", places["M"], "--texts", str(latin)], f"texts file {latin}: line 1 is not UTF-8"),
        (
            [
                "audit",
                f"qdrant+http://127.0.0.1:{port}?collection=c",
                "--model",
                places["M"],
                "--out",
                str(tmp_path / "a"),
            ],
            "cannot connect",
        ),
        (
            ["invert", "--model", places["M"], "--vectors", f"postgres://u@127.0.0.1:{port}/db?table=t&column=c"],
            "cannot connect",
        ),
    ]
    for argv, message in cases:
        code, err = run_main(capsys, argv)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        assert "pickle" not in err and "unexpected" not in err
