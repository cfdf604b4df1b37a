"""``sweep``: train a grid of methods × γ × seeds, in parallel (local processes or a Ray cluster).

Exit status: 0 when every trial succeeded; 1 when some failed after their retries (their rows in
``sweep.csv`` say ``status = failed`` and the ``error``; one line ``error: N of M trials failed:
…`` on stderr; the other trials' results are all written); 2 for an error before any trial ran
(a bad setting, Ray missing, a cluster without the GPUs asked for, a cache root the nodes do not
share).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ...errors import CommandInterrupted, ConfigError
from ...experiments.grid import grid_configs
from ...experiments.sweep import DEFAULT_RETRIES, evaluate_columns, failure_summary, require_ray, run_sweep
from ...io import OutputFolder, json_dumps
from ..args import add_config_arguments, config_from_args
from .compare import interrupted_message

HELP = "train a grid of methods × γ × seeds in parallel (local processes or a Ray cluster)"


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray [ADDRESS]``, ``--cpus-per-trial``, ``--gpus-per-trial``, ``--retries``,
    ``--tensorboard``, ``--cache`` (shared with ``reproduce``)."""
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in this process)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run the trials as Ray tasks: a local Ray instance, or the cluster at ADDRESS "
                        "(e.g. head:6379 or auto; needs the 'ray' extra)")
    p.add_argument("--cpus-per-trial", type=float, default=1,
                   help="Ray: CPUs reserved per trial (also its torch threads; default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0,
                   help="Ray: GPUs reserved per trial, fractions share one (e.g. 0.25); the trial then sees "
                        "its GPU and --device auto trains on it (default 0: CPU only)")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help=f"run a failed trial again up to this many times (default {DEFAULT_RETRIES})")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard event files, one folder per trial under DIR "
                        "(needs the 'tensorboard' package)")
    p.add_argument("--cache", default=None, help="cache root of the run folders (default: $BNVAE_CACHE or "
                                                 "~/.cache/bnvae/runs; on a cluster a path every node sees)")


def executor_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`run_sweep` (and ``reproduce``) that the executor flags set."""
    if args.ray:
        require_ray()                 # a clear error before any work
    return dict(cache_root=args.cache, workers=args.workers, ray=args.ray, cpus_per_trial=args.cpus_per_trial,
                gpus_per_trial=args.gpus_per_trial, retries=args.retries, tensorboard=args.tensorboard,
                progress=not args.no_progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, exclude=("model", "seed"))
    p.add_argument("--methods", nargs="+", default=["vae", "bnvae"], help="methods to sweep")
    p.add_argument("--gammas", nargs="+", type=float, default=[], help="γ values (BN methods only; default --gamma)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 … S−1 (replaces --seed)")
    p.add_argument("--iw-samples", type=int, default=0, metavar="K",
                   help="also evaluate every trained run on the test split, inside its trial (IW-NLL with K "
                        "importance samples, PPL, KL, MI, AU: test_* columns); default 0: validation metrics only")
    add_executor_arguments(p)
    p.add_argument("--out", required=True, help="folder for sweep.csv and sweep.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")


def run(args: argparse.Namespace) -> int:
    options = executor_options(args)
    if args.iw_samples < 0:
        raise ConfigError(f"--iw-samples must be >= 0, got {args.iw_samples}")
    configs = grid_configs(config_from_args(args), args.methods, args.seeds, args.gammas)
    evaluate = functools.partial(evaluate_columns, iw_samples=args.iw_samples) if args.iw_samples else None
    folder = OutputFolder(args.out, "sweep output folder")       # checked before any trial
    try:
        with folder:
            table = run_sweep(configs, evaluate=evaluate, out=args.out, **options)
    except KeyboardInterrupt:
        raise CommandInterrupted(interrupted_message(configs, args.cache, Path(args.out)).replace(
            " runs are ", " trials are ")) from None
    csv = Path(args.out) / "sweep.csv"
    failed = int((table["status"] != "ok").sum())
    print(json_dumps({"out": str(csv), "trials": len(table), "failed": failed,
                      "run_dirs": [d if isinstance(d, str) else None for d in table["run_dir"]]}))
    summary = failure_summary(table)
    if summary:
        print(f"error: {summary} (see {csv}: status, error)", file=sys.stderr)
        return 1
    return 0
