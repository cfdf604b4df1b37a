"""Pages whose numbers come from files: the README's generated sections and ``docs/paper.md``.

No number in the README or the paper page is typed by hand. A generated section of a Markdown
file sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; :func:`render_readme`
rewrites each from the CSV/JSON files the notebooks and experiments wrote (``figures/``,
``docs/data/``), and a test re-renders them from the committed files and fails when the
committed text differs. ``python -m bnvae_core docs`` rewrites both pages; ``python -m bnvae_core
figures`` does it after a full-size run.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import ConfigError

MARKER = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def fmt(value, digits: int = 2) -> str:
    """A number for prose: ``digits`` decimals, thousands separated; ``–`` for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and digits == 0):
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def markdown_table(df: pd.DataFrame, columns: dict[str, tuple[str, int | None]]) -> str:
    """A Markdown table of ``df``: ``columns`` maps a column to (header, decimals; None: text)."""
    head = "| " + " | ".join(h for h, _ in columns.values()) + " |"
    align = "|" + "|".join("---" if d is None else "---:" for _, d in columns.values()) + "|"
    rows = ["| " + " | ".join(str(r[c]) if d is None else fmt(r[c], d) for c, (_, d) in columns.items()) + " |"
            for _, r in df.iterrows()]
    return "\n".join([head, align, *rows])


def replace_sections(text: str, sections: dict[str, str], path: str = "page") -> str:
    """``text`` with the body of every generated section named in ``sections`` replaced; a section
    named but absent from ``text`` is a :class:`ConfigError` (the page lost its marker)."""
    seen = set()

    def body(m: re.Match) -> str:
        name = m.group("name")
        if name not in sections:
            return m.group(0)
        seen.add(name)
        return m.group(1) + sections[name].rstrip("\n") + "\n" + m.group(4)
    out = MARKER.sub(body, text)
    missing = sorted(set(sections) - seen)
    if missing:
        raise ConfigError(f"{path}: no generated section(s) {', '.join(missing)} (markers <!-- generated: NAME -->)")
    return out


def sections_of(text: str) -> dict[str, str]:
    """The generated sections of a page, name → body."""
    return {m.group("name"): m.group("body") for m in MARKER.finditer(text)}


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"{path}: missing (regenerate it: see the section's command)")
    return pd.read_csv(path)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: missing (regenerate it: see the section's command)")
    return json.loads(path.read_text(encoding="utf-8"))


#: name of a README section → function(figures dir) → Markdown; filled by the modules that own the data
README_SECTIONS: dict[str, Callable[[Path], str]] = {}


def readme_section(name: str):
    """Register a renderer of the README section ``name`` (decorator)."""
    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        README_SECTIONS[name] = fn
        return fn
    return register


def render_readme(readme: Path, figures: Path, names: list[str] | None = None) -> str:
    """The README with its generated sections rendered from ``figures`` (all registered ones present
    in the page, or ``names``)."""
    text = readme.read_text(encoding="utf-8")
    present = set(sections_of(text))
    wanted = names if names is not None else [n for n in README_SECTIONS if n in present]
    return replace_sections(text, {n: README_SECTIONS[n](figures) for n in wanted}, str(readme))
