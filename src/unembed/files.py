"""Reading the text files users hand us (texts, candidate lists): one way, one set of errors.

``read_lines(path, what)`` gives the lines of a UTF-8 text file (a byte-order mark is dropped),
with a one-line ValueError that names the file for a missing file, a folder, a binary file (NUL
bytes) and bytes that are not UTF-8 (with the line they are on), so that the user knows which of
several files to fix and how.
"""

from __future__ import annotations

from pathlib import Path


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
