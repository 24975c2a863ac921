"""unembed.files: a file appears whole or not at all, and bad files are one-line errors."""

from __future__ import annotations

import json
import os

import pytest

from unembed import files


def test_atomic_write_replaces_whole_or_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    files.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic(target) as fh:
            fh.write('{"a": 2, "torn')
            raise RuntimeError("killed mid-write")
    assert files.read_json(target) == {"a": 1}  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary left behind
    files.write_json(target, {"a": 2, "é": "ü"})
    assert files.read_json(target) == {"a": 2, "é": "ü"}


def test_atomic_binary_and_a_new_file_that_fails_leaves_nothing(tmp_path):
    target = tmp_path / "blob.bin"
    with pytest.raises(ValueError):
        with files.atomic(target, "wb") as fh:
            fh.write(b"\0\1")
            raise ValueError("stop")
    assert not target.exists() and not list(tmp_path.iterdir())
    with files.atomic(target, "wb") as fh:
        fh.write(b"\0\1")
    assert target.read_bytes() == b"\0\1"
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with files.atomic(target, "a"):
            pass


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.json not found"):
        files.read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        files.read_json(bad)


def test_read_jsonl_skips_blank_lines_and_names_the_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 0}\n\n{"id": 1}\n')
    assert [(n, r["id"]) for n, r in files.read_jsonl(path)] == [(1, 0), (3, 1)]
    path.write_text('{"id": 0}\n{"id": 1\n')
    with pytest.raises(ValueError, match="^r.jsonl:2: need a JSON object with an id$"):
        list(files.read_jsonl(path, "a JSON object with an id"))
    path.write_text('{"id": 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match="^r.jsonl:2: need a JSON object$"):
        list(files.read_jsonl(path))


def test_claim_creates_resumes_and_refuses(tmp_path):
    out = tmp_path / "run"
    args = {"model": "default", "steps": 8}
    state, resumed = files.claim(out, args, "unembed audit", lambda: {"args": args, "done": 0})
    assert (state, resumed) == ({"args": args, "done": 0}, False)
    files.write_json(out / "progress.json", {"args": args, "done": 5})
    state, resumed = files.claim(out, args, "unembed audit", lambda: pytest.fail("a resumed run is not fresh"))
    assert (state["done"], resumed) == (5, True)
    with pytest.raises(ValueError, match=r"other arguments \(steps 8 -> 16\)"):
        files.claim(out, {**args, "steps": 16}, "unembed audit", dict)
    (out / "progress.json").unlink()
    (out / "something").write_text("x")
    with pytest.raises(ValueError, match="not empty and holds no run of `unembed audit`"):
        files.claim(out, args, "unembed audit", dict)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        files.claim(blocker, args, "unembed audit", dict)


def test_cache_root_is_read_when_called(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path))
    assert files.cache_root() == tmp_path
    monkeypatch.delenv("UNEMBED_CACHE")
    assert files.cache_root() == files.Path.home() / ".cache" / "unembed"


def test_two_processes_never_share_a_temporary_name(tmp_path):
    with files.atomic_path(tmp_path / "x") as tmp:
        assert str(os.getpid()) in tmp.name and tmp.parent == tmp_path
        tmp.write_text(json.dumps(1))
    assert (tmp_path / "x").read_text() == "1"


def test_jsonl_sink_resumes_after_its_last_recorded_chunk(tmp_path):
    path, progress = tmp_path / "r.jsonl", tmp_path / "progress.json"
    state = {"args": {"a": 1}}
    sink = files.JsonlSink(path, progress, state)
    sink.write([{"id": 0}, {"id": 1}])
    sink.write([{"id": 2, "text": "é"}])
    sink.close()
    with open(path, "a", encoding="utf-8") as fh:  # a torn, unrecorded tail, as a kill leaves it
        fh.write('{"id": 3, "te')
    state = files.read_json(progress)
    assert (state["done"], state["args"]) == (3, {"a": 1})
    sink = files.JsonlSink(path, progress, state)
    sink.write([{"id": 3}])
    sink.close()
    assert [r["id"] for _, r in files.read_jsonl(path)] == [0, 1, 2, 3]
    path.write_text("")  # the file lost what the progress records: refused, not silently restarted
    with pytest.raises(ValueError, match="shorter than progress.json records"):
        files.JsonlSink(path, progress, files.read_json(progress))


def test_partial_sink_renames_when_finished_and_keeps_finished_output(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = files.JsonlSink.partial(out, {"model": "m"})
    sink.write([{"id": 0}])
    sink.close()  # killed before finishing: OUT.part and OUT.part.json stay
    assert not out.exists() and (tmp_path / "out.jsonl.part.json").is_file()
    with pytest.raises(ValueError, match="partial run with other arguments"):
        files.JsonlSink.partial(out, {"model": "other"})
    part = tmp_path / "out.jsonl.part"
    kept = part.read_bytes()
    part.write_bytes(b"")  # the data lost what the progress records (a power cut): say how to go on
    with pytest.raises(ValueError, match="shorter than out.jsonl.part.json records: use --force to start over"):
        files.JsonlSink.partial(out, {"model": "m"})
    part.write_bytes(kept)
    sink = files.JsonlSink.partial(out, {"model": "m"})
    assert sink.done == 1
    sink.write([{"id": 1}])
    sink.finish()
    assert [r["id"] for _, r in files.read_jsonl(out)] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    with pytest.raises(ValueError, match="exists \\(a finished run\\); use --force"):
        files.JsonlSink.partial(out, {"model": "m"})
    sink = files.JsonlSink.partial(out, {"model": "other"}, force=True)
    assert sink.done == 0
    sink.finish()
    assert out.read_text() == ""
