"""The docs describe the code that exists: every `unembed ...` command in a code block of the README,
docs/ and the model cards parses with the real CLI parser, and every `module.name` they cite in
backticks (`stores.sampled`, `unembed.pii.degree`) exists."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from unembed.cli_args import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "models").glob("*/README.md"))]
MODULES = {p.stem for p in (ROOT / "src" / "unembed").glob("*.py")} - {"__init__", "__main__"}


def _blocks(text: str) -> list[str]:
    """The shell code blocks of a Markdown text (fences opened by ```bash, ```sh or a bare ```)."""
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if lang is None:
                lang, lines = line.strip()[3:].strip(), []
            else:
                if lang in ("bash", "sh", "console", ""):
                    blocks.append("\n".join(lines))
                lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def _commands(text: str) -> list[str]:
    """`unembed ...` lines of the shell code blocks, continuation lines joined, pipes and comments cut."""
    out = []
    for block in _blocks(text):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            m = re.search(r"(?:^|\s|&&\s*|;\s*)(unembed\s.*)$", line.strip())
            if not m or line.strip().startswith("#"):
                continue
            cmd = re.split(r"\s(?:\||&&|>|2>|#)\s?", m.group(1))[0]
            if "$" in cmd or re.search(r"\s\[", cmd) or re.search(r"\w\|\w", cmd):
                continue  # shell variables and synopses ([optional], a|b) are not one command
            out.append(cmd)
    return out


def _parse_error(parser, cmd: str) -> str | None:
    """What the CLI parser says about a command line (None: it parses)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(shlex.split(cmd)[1:])
    except SystemExit as stop:
        return err.getvalue().strip() or f"exit {stop.code}" if stop.code else None
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_parses(doc):
    parser = build_parser()
    for cmd in _commands(doc.read_text(encoding="utf-8")):
        assert _parse_error(parser, cmd) is None, f"{doc.name}: {cmd}\n{_parse_error(parser, cmd)}"


def test_the_checks_find_commands_and_catch_a_wrong_flag():
    found = _commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(found) >= 10 and any(c.startswith("unembed audit") for c in found)
    parser = build_parser()
    assert "unrecognized arguments: --nosuch" in _parse_error(parser, "unembed audit x.npy --out o --nosuch")
    assert _parse_error(parser, "unembed audit x.npy --out o --sample 500 --seed 1") is None


FILE_SUFFIXES = {"py", "json", "jsonl", "safetensors", "md", "txt", "npy", "yaml", "png", "html", "parquet", "db"}


def _config_keys() -> set[str]:
    """`section.key` of the config (`train.lr`, `model.seq_len`): docs cite them like module members."""
    import dataclasses

    from unembed.config import load_config

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    sections = {name: part for name, part in vars(cfg).items() if dataclasses.is_dataclass(part)}
    return {f"{name}.{f.name}" for name, part in sections.items() for f in dataclasses.fields(part)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_module_member_exists(doc):
    keys, missing = _config_keys(), []
    for mod, name in re.findall(r"`(?:unembed\.)?([a-z_]+)\.([A-Za-z_][A-Za-z0-9_]*)[`(]", doc.read_text("utf-8")):
        if mod not in MODULES or name in FILE_SUFFIXES or f"{mod}.{name}" in keys:
            continue
        if not hasattr(importlib.import_module(f"unembed.{mod}"), name):
            missing.append(f"{mod}.{name}")
    assert not missing, f"{doc.name} cites what does not exist: {', '.join(sorted(set(missing)))}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z]+:", path):  # an anchor in the page, or a URL
            continue
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to what does not exist: {', '.join(broken)}"


def test_readme_example_is_what_the_cli_prints():
    """The README's first example is regenerated by scripts/readme_example.py (seeded, fp32); a
    change to decoding or to the CLI's output that leaves it stale fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_example", ROOT / "scripts" / "readme_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    command, shown, _ = module.example((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "--precision fp32" in command
    assert module.run(command) == shown, "run `python scripts/readme_example.py` and commit the README"


def test_architecture_names_every_module_and_only_modules_that_exist():
    """docs/architecture.md's module map covers the package: a new module must be placed in it, and
    a module it names must exist."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "src" / "unembed"
    named = set(re.findall(r"\*\*`([a-z_]+\.py)`\*\*", text))
    on_disk = {p.name for p in package.glob("*.py")}
    assert on_disk - named == set(), "modules missing from docs/architecture.md"
    assert named - on_disk == set(), "docs/architecture.md names modules that do not exist"
    for folder in re.findall(r"\*\*`([a-z_]+)/`\*\*", text):
        assert (package / folder).is_dir(), folder
