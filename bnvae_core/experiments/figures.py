"""Regenerate ``figures/`` by executing every notebook (papermill), at full or smoke size.

``python -m bnvae_core figures`` runs ``notebooks/*.ipynb`` in name order with the parameters
``SMOKE`` and ``FIGURES_DIR`` injected after each notebook's ``parameters`` cell; the notebooks
write their own figures. Executed copies go to a scratch folder (``--executed-dir``), never
over the committed, output-free notebooks. A table of wall times per notebook is printed as
JSON and written to ``FIGURES_DIR/notebook_times.csv``.

Trained models come from the config-hashed cache (:func:`bnvae_core.training.cache.cached_run`), so the
notebooks share them and a second run takes a fraction of the first.

Where things are: in a source checkout, ``notebooks/``, ``figures/`` and ``.cache/`` of the
checkout; from an installed wheel, the notebooks shipped inside the package
(``bnvae_core/notebooks``), the figures written to ``./figures`` (smoke: ``./figures-smoke``)
of the current folder, executed copies under the user cache (``~/.cache/bnvae``). Each can be
given with ``--notebooks-dir``, ``--figures-dir``, ``--executed-dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1]   #: bnvae_core/ (this file is bnvae_core/experiments/figures.py)
REPO = PACKAGE.parent


def source_checkout() -> Path | None:
    """The repository root when bnvae_core runs from a source checkout (editable install), else None."""
    return REPO if (REPO / "pyproject.toml").is_file() and (REPO / "notebooks").is_dir() else None


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the checkout, else the notebooks shipped in the installed package."""
    if source_checkout() is not None:
        return REPO / "notebooks"
    return PACKAGE / "notebooks"


def default_output_dirs(smoke: bool) -> tuple[Path, Path]:
    """(figures dir, executed-notebooks dir) when none is given (see the module docstring)."""
    root = source_checkout()
    if root is not None:
        return root / (".cache/figures-smoke" if smoke else "figures"), root / ".cache" / "executed-notebooks"
    import os
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnvae"
    return Path.cwd() / ("figures-smoke" if smoke else "figures"), user_cache / "executed-notebooks"


def notebook_paths(notebooks_dir: str | Path | None = None) -> list[Path]:
    """Every notebook of the suite, in name order (``00_index`` first)."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    paths = sorted(folder.glob("[0-9]*.ipynb"))
    if notebooks_dir is not None and not paths:
        raise ConfigError(f"{folder}: no notebooks (NN_name.ipynb) found")
    return paths


def notebook_title(path: str | Path) -> str:
    """The title of a notebook: the first ``# `` heading of its first markdown cell, without the
    ``# `` (else, and for a notebook whose first markdown cell has no such heading, the file stem)."""
    path = Path(path)
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            break
    return path.stem


def run_notebook(path: str | Path, *, smoke: bool, figures_dir: str | Path, executed: str | Path,
                 timeout: int = 3600) -> float:
    """Execute one notebook with papermill; return its wall time in seconds.

    Raises ``papermill.PapermillExecutionError`` (with the failing cell) if a cell fails."""
    import papermill

    path = Path(path)
    Path(executed).parent.mkdir(parents=True, exist_ok=True)
    Path(figures_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    papermill.execute_notebook(str(path), str(executed), cwd=str(path.parent), kernel_name="python3",
                               parameters={"SMOKE": smoke, "FIGURES_DIR": str(Path(figures_dir).resolve())},
                               progress_bar=False, execution_timeout=timeout, log_output=False)
    return time.perf_counter() - t0


def run_all(notebooks_dir: str | Path | None = None, *, smoke: bool, figures_dir: str | Path,
            executed_dir: str | Path, only: list[str] | None = None) -> pd.DataFrame:
    rows = []
    Path(figures_dir).mkdir(parents=True, exist_ok=True)
    for path in notebook_paths(notebooks_dir):
        if only and not any(key in path.name for key in only):
            continue
        seconds = run_notebook(path, smoke=smoke, figures_dir=figures_dir,
                               executed=Path(executed_dir) / path.name)
        rows.append({"notebook": path.name, "size": "smoke" if smoke else "full", "wall_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return pd.DataFrame(rows)
