"""``sweep``: train a grid of methods × γ × seeds, in parallel (local processes or Ray)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import CommandInterrupted
from ...experiments.grid import grid_configs
from ...experiments.sweep import require_ray, run_sweep
from ...io import OutputFolder, json_dumps
from ..args import add_config_arguments, config_from_args
from .compare import interrupted_message

HELP = "train a grid of methods × γ × seeds in parallel (local processes or Ray)"


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray [ADDRESS]``, ``--cpus-per-trial``, ``--cache`` (shared with ``reproduce``)."""
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in this process)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run the trials as Ray tasks: a local Ray instance, or the cluster at ADDRESS "
                        "(needs the 'ray' extra)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="Ray: CPUs reserved per trial")
    p.add_argument("--cache", default=None, help="cache root of the run folders (default: $BNVAE_CACHE or "
                                                 "~/.cache/bnvae/runs; on a cluster a shared path)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, exclude=("model", "seed"))
    p.add_argument("--methods", nargs="+", default=["vae", "bnvae"], help="methods to sweep")
    p.add_argument("--gammas", nargs="+", type=float, default=[], help="γ values (BN methods only; default --gamma)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 … S−1 (replaces --seed)")
    add_executor_arguments(p)
    p.add_argument("--out", required=True, help="folder for sweep.csv and sweep.json")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.ray:
        require_ray()                 # a clear error before any work
    configs = grid_configs(config_from_args(args), args.methods, args.seeds, args.gammas)
    folder = OutputFolder(args.out, "sweep output folder")       # checked before any trial
    try:
        with folder:
            table = run_sweep(configs, cache_root=args.cache, workers=args.workers, ray=args.ray,
                              cpus_per_trial=args.cpus_per_trial, progress=not args.no_progress, out=args.out)
    except KeyboardInterrupt:
        raise CommandInterrupted(interrupted_message(configs, args.cache, Path(args.out)).replace(
            " runs are ", " trials are ")) from None
    print(json_dumps({"out": str(Path(args.out) / "sweep.csv"), "trials": len(table),
                      "run_dirs": table["run_dir"].tolist()}))
    return 0


