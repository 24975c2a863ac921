"""Headless Chromium (Debian's ``chromium``, driven by Playwright): the one set of launch flags,
shared by ``benchmarks/screenshot.py`` and ``tests/test_browser.py``.

No browser is downloaded: Playwright launches the system Chromium with these flags, which keep it
from reaching the network on its own (updates, sync, first-run pages) and let it run as root in a
container without a GPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")


def find_chromium(path: str | Path | None = None) -> Path | None:
    """The Chromium executable: ``path`` if given, else /usr/bin/chromium or ``chromium`` on PATH."""
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    if DEFAULT_CHROMIUM.is_file():
        return DEFAULT_CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def launch(playwright, executable: Path):
    """A headless Chromium browser (Playwright's ``Browser``) with the shared flags."""
    return playwright.chromium.launch(executable_path=str(executable), args=list(CHROMIUM_ARGS))
