"""``docs``: render the generated parts of ``README.md`` and ``docs/paper.md`` from their data.

Every number in those pages comes from a file the code wrote: the README's generated sections
(between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``) from ``figures/`` (the CSVs the
notebooks write), ``docs/paper.md`` from ``docs/data/`` (what ``converge`` wrote). ``--check``
writes nothing and exits 1 when a page differs from what its data renders (the test suite runs it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import ConfigError
from ...experiments import readme_sections  # noqa: F401  (registers the README's sections)
from ...experiments.docs import render_readme
from ...experiments.figures import source_checkout
from ...experiments.paper_page import render_paper_page
from ...io import atomic_write_text

HELP = "render the README's generated sections and docs/paper.md from figures/ and docs/data/"
INTERRUPTED = "interrupted: each page is written whole or not at all"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="the repository checkout (default: this source checkout)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is out of date")


def rendered_pages(root: Path) -> dict[Path, str]:
    """Each page's path → its text rendered from the data in ``root``."""
    return {root / "README.md": render_readme(root / "README.md", root / "figures"),
            root / "docs" / "paper.md": render_paper_page(root / "docs" / "data")}


def run(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else source_checkout()
    if root is None or not (root / "README.md").is_file():
        raise ConfigError("docs: no repository checkout here (give --root DIR, the folder holding README.md)")
    stale = []
    for path, text in rendered_pages(root).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(str(path))
        if not args.check:
            atomic_write_text(path, text)
    if args.check and stale:
        print(f"out of date (run python -m bnvae_core docs): {', '.join(stale)}", file=sys.stderr)
        return 1
    print(("rewrote: " + ", ".join(stale)) if stale else "up to date")
    return 0
