"""Files, once: reading the files users hand us, atomic writes, JSON and JSONL, the cache root,
and the claim on a resumable output folder.

``read_lines(path, what)`` gives the lines of a UTF-8 text file (a byte-order mark is dropped),
with a one-line ValueError that names the file for a missing file, a folder, a binary file (NUL
bytes) and bytes that are not UTF-8 (with the line they are on), so that the user knows which of
several files to fix and how.

The files unembed writes for a user (reports, JSON, models, outputs) are written whole or not
at all: to a temporary name beside it, flushed, then renamed over the target (`atomic`), so a
reader sees the old file or the new one, never a torn one; record streams go through
`JsonlSink`, which resumes after its last recorded chunk. Torch-free.
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
def atomic(path: str | Path, mode: str = "w", sync: bool = True) -> Iterator[Any]:
    """Open ``path`` for writing (``"w"`` text in UTF-8, ``"wb"`` bytes); the file appears whole
    when the block ends, and not at all when it raises. ``sync`` flushes it to the disk first (a
    killed process loses nothing either way; a power cut loses what is not synced)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic writes are 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            if sync:
                fh.flush()
                os.fsync(fh.fileno())


def write_text(path: str | Path, text: str, sync: bool = True) -> None:
    with atomic(path, sync=sync) as fh:
        fh.write(text)


def write_json(path: str | Path, obj: Any, sync: bool = True) -> None:
    """JSON, indented, keys in insertion order, written atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", sync)


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


class JsonlSink:
    """Records appended to a JSONL file a chunk at a time; after each chunk the progress file
    records how many records and bytes are safe (``state["done"]``, ``state["bytes"]``). Opened
    again on the same state, the file is cut back to those bytes (a torn or unrecorded tail goes)
    and writing continues. The audit (reconstructions.jsonl + progress.json), ``invert --vectors``
    and ``identify --out`` (OUT.part + OUT.part.json, see `partial`) write through it.

    ``sync`` also puts each chunk on the disk before recording it (the audit's choice); without it
    a killed process still loses nothing, a power cut may lose the last chunks."""

    def __init__(
        self,
        path: Path,
        progress_path: Path,
        state: dict,
        sync: bool = True,
        final: Path | None = None,
        fix: str = "use another --out",
    ):
        """``final``: where `finish` moves the file (None: it stays); ``fix``: what the error for a
        file shorter than its record tells the user to do."""
        self.path, self.progress_path, self.state, self.sync = Path(path), Path(progress_path), state, sync
        self.final = final
        state.setdefault("done", 0)
        state.setdefault("bytes", 0)
        if not self.path.is_file() and state["bytes"] == 0:
            self.path.write_bytes(b"")
        if not self.path.is_file() or self.path.stat().st_size < state["bytes"]:
            raise ValueError(f"{self.path} is missing or shorter than {self.progress_path.name} records: {fix}")
        with open(self.path, "r+b") as fh:
            fh.truncate(state["bytes"])
        self.fh = open(self.path, "ab")

    @classmethod
    def partial(cls, out: Path, args: dict, force: bool = False, sync: bool = False) -> JsonlSink:
        """A sink for OUT that writes OUT.part beside OUT.part.json until `finish` renames it to OUT.
        A partial run of the same ``args`` resumes after its last recorded chunk; one of other
        arguments is a ValueError unless ``force`` (which starts over). A finished OUT is kept
        unless ``force``."""
        out = Path(out)
        part, meta = out.with_name(out.name + ".part"), out.with_name(out.name + ".part.json")
        if out.exists() and not force:
            raise ValueError(f"--out {out} exists (a finished run); use --force to overwrite it")
        out.parent.mkdir(parents=True, exist_ok=True)
        state = {"args": args, "done": 0, "bytes": 0}
        if not force and meta.is_file() and part.is_file():
            old = read_json(meta)
            if old.get("args") != args:
                raise ValueError(f"{part} is a partial run with other arguments or input; use --force to start over")
            state = old
        elif part.exists():
            part.unlink()
        sink = cls(part, meta, state, sync, final=out, fix="use --force to start over")
        write_json(meta, state, sync)
        return sink

    @property
    def done(self) -> int:
        return self.state["done"]

    def write(self, records: list[dict]) -> None:
        """Append one chunk of records and record it."""
        self.fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
        self.fh.flush()
        if self.sync:
            os.fsync(self.fh.fileno())
        self.state.update(done=self.state["done"] + len(records), bytes=self.fh.tell())
        write_json(self.progress_path, self.state, self.sync)

    def close(self) -> None:
        self.fh.close()

    def finish(self) -> None:
        """Close; a `partial` sink's file becomes OUT and its progress file goes."""
        self.close()
        if self.final is not None:
            os.replace(self.path, self.final)
            self.progress_path.unlink()
