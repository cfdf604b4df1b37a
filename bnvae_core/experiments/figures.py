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

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from ..errors import CommandInterrupted, ConfigError

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


@contextlib.contextmanager
def _kernel_stderr_to(log: Path):
    """The notebook's kernel inherits this process's stderr: while it runs, file descriptor 2 points
    at ``log``, so what the kernel prints itself (TCP warnings, the ZMQ traceback of a kernel stopped
    by Ctrl-C) goes there, not onto the terminal. Python-level errors are raised as usual."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log, "ab") as fh:
            os.dup2(fh.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_notebook(path: str | Path, *, smoke: bool, figures_dir: str | Path, executed: str | Path,
                 timeout: int = 3600) -> float:
    """Execute one notebook with papermill; return its wall time in seconds.

    The executed copy is written to a temporary name and renamed when the notebook has run to its
    end or failed in a cell (to show the failing cell); an interrupted one is removed, so no
    half-executed copy is left. The kernel's own output goes to ``<executed>.kernel.log``.
    Raises ``papermill.PapermillExecutionError`` (with the failing cell) if a cell fails."""
    import papermill

    path, executed = Path(path), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    Path(figures_dir).mkdir(parents=True, exist_ok=True)
    partial = executed.with_name(f".{executed.stem}.partial.ipynb")
    t0 = time.perf_counter()
    try:
        with _kernel_stderr_to(executed.with_name(executed.name + ".kernel.log")):
            papermill.execute_notebook(str(path), str(partial), cwd=str(path.parent), kernel_name="python3",
                                       parameters={"SMOKE": smoke, "FIGURES_DIR": str(Path(figures_dir).resolve())},
                                       progress_bar=False, execution_timeout=timeout, log_output=False)
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        raise
    except Exception:
        if partial.exists():
            os.replace(partial, executed)
        raise
    os.replace(partial, executed)
    return time.perf_counter() - t0


def run_all(notebooks_dir: str | Path | None = None, *, smoke: bool, figures_dir: str | Path,
            executed_dir: str | Path, only: list[str] | None = None) -> pd.DataFrame:
    rows = []
    Path(figures_dir).mkdir(parents=True, exist_ok=True)
    for path in notebook_paths(notebooks_dir):
        if only and not any(key in path.name for key in only):
            continue
        try:
            seconds = run_notebook(path, smoke=smoke, figures_dir=figures_dir,
                                   executed=Path(executed_dir) / path.name)
        except KeyboardInterrupt:
            done = f"; the figures of {', '.join(r['notebook'] for r in rows)} are complete" if rows else ""
            raise CommandInterrupted(f"interrupted: figures stopped in {path.name}{done}; figures are written "
                                     "whole, so none is half-written") from None
        rows.append({"notebook": path.name, "size": "smoke" if smoke else "full", "wall_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return pd.DataFrame(rows)
