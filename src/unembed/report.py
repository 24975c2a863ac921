"""Reports as sections: one renderer to Markdown and to self-contained HTML (inline CSS, plots
as data URIs), used by the audit (`audit_report`) and the defenses (`defend`)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One report section, rendered the same way to Markdown and HTML."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    image: str | None = None  # a PNG file name beside the report
    table: tuple[list[str], list[list[str]]] | None = None


class Code(str):
    """A table cell shown as code (backticks in Markdown, <code> in HTML); other cells are plain text."""


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are str()-ed and their pipes escaped, ``Code`` cells in backticks."""

    def cell(v: Any) -> str:
        text = str(v).replace("|", "\\|").replace("\n", " ")
        return f"`{text}`" if isinstance(v, Code) else text

    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}"]
    for sec in sections:
        parts.append(f"## {sec.title}")
        parts += sec.paragraphs
        if sec.image:
            parts.append(f"![{sec.title}]({sec.image})")
        if sec.table:
            parts.append(markdown_table(*sec.table))
    return "\n\n".join(parts) + "\n"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
    "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the paragraphs use: `code` and **bold**."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        bits = out.split(mark)
        out = "".join(b if i % 2 == 0 else f"<{tag}>{b}</{tag}>" for i, b in enumerate(bits))
    return out


def _cell_html(c: Any) -> str:
    text = html.escape(str(c))
    return f"<code>{text}</code>" if isinstance(c, Code) else text


def render_html(title: str, sections: Sequence[Section], folder: Path) -> str:
    """A self-contained page: inline CSS, each PNG (read from ``folder``) embedded as a data URI."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in sec.paragraphs]
        if sec.image:
            data = base64.b64encode((folder / sec.image).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(sec.title)}' src='data:image/png;base64,{data}'>")
        if sec.table:
            head, rows = sec.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
