"""No number typed by hand in a notebook's prose: measured numbers reach the reader only through
Markdown that a code cell renders from the CSV the notebook writes (so they cannot drift from
their data). A markdown cell may hold decimals and percentages only where they are *definitions*
— settings, formula values, the paper's choices — listed in the notebook's metadata
``bnvae.definitions``; integers (sizes, counts, years) are free."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: a decimal number or a percentage, not part of a word, a LaTeX command, a file name or a § reference
NUMBER = re.compile(r"(?<![\w.$\\/§-])(\d+(?:\.\d+)?\s?%|\d+\.\d+)(?![\w/])")


def markdown_numbers(nb: dict) -> list[tuple[int, str]]:
    """(cell index, number) of every decimal or percentage in the notebook's markdown cells."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            text = re.sub(r"`[^`]*`", "", "".join(cell["source"]))        # code spans are code, not prose
            out += [(i, m.group(1).replace(" ", "")) for m in NUMBER.finditer(text)]
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_markdown_quotes_no_measured_number(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    allowed = set(nb.get("metadata", {}).get("bnvae", {}).get("definitions", []))
    stray = [(i, n) for i, n in markdown_numbers(nb) if n not in allowed]
    assert not stray, (f"{path.name}: numbers in markdown cells that are not declared definitions "
                       f"(render measured numbers from the notebook's CSV in a code cell, or list a "
                       f"setting/formula value in metadata.bnvae.definitions): {stray}")


def test_the_checker_finds_decimals_and_percentages():
    nb = {"cells": [{"cell_type": "markdown", "source": ["KL 5.76 nats, 46.1 % and 18%; `x = 0.5`; §3.2 ", "n=32"]}]}
    assert [n for _, n in markdown_numbers(nb)] == ["5.76", "46.1%", "18%"]
