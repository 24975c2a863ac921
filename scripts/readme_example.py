"""The README's example: run the `unembed invert` command its first ```text block shows and
write what the CLI prints under it.

    python scripts/readme_example.py            # rewrite README.md's example in place
    python scripts/readme_example.py --check    # exit 1 when the README's example is not what the CLI prints

The command is seeded and decodes in fp32 (`--precision fp32`), so the output does not depend on
the CPU's int8 kernels; tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README, SRC = ROOT / "README.md", ROOT / "src"
# the first ```text block whose first line is "$ unembed ..."
BLOCK = re.compile(r"```text\n\$ (unembed [^\n]*)\n(.*?)```", re.S)


def example(text: str) -> tuple[str, str, re.Match]:
    """(command, the output the README shows, the match) of the README's example block."""
    m = BLOCK.search(text)
    if m is None:
        raise ValueError("README.md has no ```text block starting with '$ unembed ...'")
    return m.group(1), m.group(2), m


def run(command: str) -> str:
    """What `command` (an `unembed ...` line) prints on a terminal, stdout and stderr in order."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "unembed.cli", *shlex.split(command)[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"{command!r} exited with {done.returncode}:\n{done.stdout}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = ap.parse_args()
    text = README.read_text(encoding="utf-8")
    command, shown, m = example(text)
    printed = run(command)
    if args.check:
        if printed != shown:
            print(f"README example differs from what `{command}` prints:\n{printed}", file=sys.stderr)
            return 1
        print("README example is current")
        return 0
    new = text[: m.start(2)] + printed + text[m.end(2) :]
    README.write_text(new, encoding="utf-8")
    print(f"README example {'unchanged' if new == text else 'rewritten'}:\n$ {command}\n{printed}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
