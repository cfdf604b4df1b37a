"""Regenerate ``figures/`` by executing every notebook (papermill), at full or smoke size.

``python -m bnvae_core figures`` runs ``notebooks/*.ipynb`` in name order with the parameters
``SMOKE`` and ``FIGURES_DIR`` injected after each notebook's ``parameters`` cell; the notebooks
write their own figures. Executed copies go to a scratch folder (``--executed-dir``), never
over the committed, output-free notebooks. A table of wall times per notebook is printed as
JSON and written to ``FIGURES_DIR/notebook_times.csv``.

Trained models come from the config-hashed cache (:func:`bnvae_core.train.cached_run`), so the
notebooks share them and a second run takes a fraction of the first.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from .config import smoke_requested

REPO = Path(__file__).resolve().parent.parent


def notebook_paths(notebooks_dir: str | Path = REPO / "notebooks") -> list[Path]:
    """Every notebook of the suite, in name order (``00_index`` first)."""
    return sorted(Path(notebooks_dir).glob("[0-9]*.ipynb"))


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


def run_all(notebooks_dir: str | Path = REPO / "notebooks", *, smoke: bool, figures_dir: str | Path,
            executed_dir: str | Path, only: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for path in notebook_paths(notebooks_dir):
        if only and not any(key in path.name for key in only):
            continue
        seconds = run_notebook(path, smoke=smoke, figures_dir=figures_dir,
                               executed=Path(executed_dir) / path.name)
        rows.append({"notebook": path.name, "size": "smoke" if smoke else "full", "wall_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return pd.DataFrame(rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true", help="smoke size (default when CI is set)")
    p.add_argument("--figures-dir", default=None, help="default: figures/ (full), .cache/figures-smoke (smoke)")
    p.add_argument("--executed-dir", default=str(REPO / ".cache" / "executed-notebooks"))
    p.add_argument("--only", nargs="*", help="substrings of the notebook names to run")


def run(args: argparse.Namespace) -> int:
    smoke = args.smoke or smoke_requested()
    figures_dir = Path(args.figures_dir or (REPO / (".cache/figures-smoke" if smoke else "figures")))
    table = run_all(smoke=smoke, figures_dir=figures_dir, executed_dir=args.executed_dir, only=args.only)
    times = figures_dir / "notebook_times.csv"
    if args.only and times.exists():   # keep the rows of the notebooks not run this time
        old = pd.read_csv(times)
        table = pd.concat([old[~old["notebook"].isin(table["notebook"])], table]).sort_values("notebook")
    table.to_csv(times, index=False)
    print(json.dumps({"figures_dir": str(figures_dir), "notebooks": len(table),
                      "total_wall_s": round(float(table["wall_s"].sum()), 1) if len(table) else 0.0}))
    return 0


CLI_COMMAND = (add_arguments, run, "execute every notebook and regenerate figures/")
