"""Files, once: reading the files users hand us, atomic writes, JSON and JSONL, the cache root,
and the claim on a resumable output folder.

``read_lines(path, what)`` gives the lines of a UTF-8 text file (a byte-order mark is dropped),
with a one-line ValueError that names the file for a missing file, a folder, a binary file (NUL
bytes) and bytes that are not UTF-8 (with the line they are on), so that the user knows which of
several files to fix and how.

Every file unembed writes for a user is written whole or not at all: to a temporary name beside
it, flushed, then renamed over the target (`atomic`). A reader of a half-written run sees the
old file or the new one, never a torn one. Torch-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def read_lines(path: str | Path, what: str = "text file") -> list[str]:
    """The lines of a UTF-8 text file, without line ends (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file")
    if not p.is_file():
        raise ValueError(f"{what} not found: {path}")
    data = p.read_bytes()
    if b"\0" in data:
        raise ValueError(f"{what} {path} is binary (it holds NUL bytes), not text with one item a line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{what} {path}: line {line} is not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None
    return text.splitlines()


def cache_root() -> Path:
    """$UNEMBED_CACHE or ~/.cache/unembed (read at call time)."""
    return Path(os.environ.get("UNEMBED_CACHE", Path.home() / ".cache" / "unembed"))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends
    without an error, removed when it raises. The temporary name carries the process id, so two
    processes writing the same target never share one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open ``path`` for writing (``"w"`` text in UTF-8, ``"wb"`` bytes); the file appears whole,
    flushed to disk, when the block ends, and not at all when it raises."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic writes are 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | Path, text: str) -> None:
    with atomic(path) as fh:
        fh.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    """JSON, indented, keys in insertion order, written atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; a missing or malformed file is a ValueError that names it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def read_jsonl(path: str | Path, need: str = "a JSON object") -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSONL file, one object a line, blank lines skipped.

    A line that is not a JSON object is a ValueError ``NAME:LINE: need {need}``; callers check
    their fields and raise `bad_line` with the same ``need``, so every error names the file, the
    line and what the line should hold."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise bad_line(path, number, need) from None
            if not isinstance(record, dict):
                raise bad_line(path, number, need)
            yield number, record


def bad_line(path: str | Path, number: int, need: str) -> ValueError:
    """The error for line ``number`` of a JSONL file that does not hold ``need``."""
    return ValueError(f"{Path(path).name}:{number}: need {need}")


def claim(out: Path, args: dict, command: str, fresh: Callable[[], dict]) -> tuple[dict, bool]:
    """Create the output folder OUT of a resumable run, or resume it.

    Returns (its progress record, whether it resumes). ``OUT/progress.json`` holds the run's
    arguments: a folder made with other arguments, a non-empty folder that holds no run of
    ``command`` (e.g. "unembed audit"), or a file at OUT is a ValueError. A new folder's progress is ``fresh()``
    (which must hold ``args``), written before anything else.
    """
    progress_path = out / "progress.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if progress_path.is_file():
        state = read_json(progress_path)
        if state.get("args") != args:
            old = state.get("args", {})
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in args.items() if old.get(k) != v)
            raise ValueError(
                f"{out} holds a run of `{command}` made with other arguments ({diff}): "
                "rerun it with the same arguments or use another --out"
            )
        return state, True
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"output folder {out} is not empty and holds no run of `{command}`: use another --out")
    out.mkdir(parents=True, exist_ok=True)
    state = fresh()
    write_json(progress_path, state)
    return state, False
