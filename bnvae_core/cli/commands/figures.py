"""``figures``: execute every notebook (papermill) and regenerate ``figures/``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ...config import smoke_requested
from ...experiments.figures import default_output_dirs, run_all
from ...io import atomic_write_text, check_writable_dir, json_dumps

HELP = "execute every notebook and regenerate figures/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true", help="smoke size (default when CI is set)")
    p.add_argument("--notebooks-dir", default=None,
                   help="default: notebooks/ of the checkout, else the notebooks shipped in the package")
    p.add_argument("--figures-dir", default=None,
                   help="default: figures/ of the checkout (smoke: .cache/figures-smoke), else ./figures (./figures-smoke)")
    p.add_argument("--executed-dir", default=None,
                   help="executed copies; default: .cache/executed-notebooks of the checkout, else ~/.cache/bnvae")
    p.add_argument("--only", nargs="*", help="substrings of the notebook names to run")


def run(args: argparse.Namespace) -> int:
    smoke = args.smoke or smoke_requested()
    default_figures, default_executed = default_output_dirs(smoke)
    figures_dir = Path(args.figures_dir) if args.figures_dir else default_figures
    executed_dir = Path(args.executed_dir) if args.executed_dir else default_executed
    check_writable_dir(figures_dir, "figures folder (--figures-dir)")       # before any notebook runs
    check_writable_dir(executed_dir, "executed-notebooks folder (--executed-dir)")
    table = run_all(args.notebooks_dir, smoke=smoke, figures_dir=figures_dir, executed_dir=executed_dir,
                    only=args.only)
    times = figures_dir / "notebook_times.csv"
    if args.only and times.exists():   # keep the rows of the notebooks not run this time
        old = pd.read_csv(times)
        table = pd.concat([old[~old["notebook"].isin(table["notebook"])], table]).sort_values("notebook")
    atomic_write_text(times, table.to_csv(index=False))
    print(json_dumps({"figures_dir": str(figures_dir), "notebooks": len(table),
                      "total_wall_s": round(float(table["wall_s"].sum()), 1) if len(table) else 0.0}))
    return 0


