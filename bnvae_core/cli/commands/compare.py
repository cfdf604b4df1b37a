"""``compare``: language modelling across methods — a grid of methods × seeds, trained (cached) and evaluated."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...config import SMOKE_SIZE, TrainConfig
from ...errors import CommandInterrupted, ConfigError
from ...io import OutputFolder, json_dumps
from ...training.cache import cache_dir, is_cached
from ...experiments.compare import (
    COMPARE_SIZE,
    DEFAULT_GAMMAS,
    DEFAULT_MODELS,
    PAPER_IW_SAMPLES,
    compare,
    summarize,
)
from ...experiments.grid import grid_configs, parse_list
from ..args import add_config_arguments, config_from_args

HELP = ("language modelling across methods: train (cached) and evaluate a grid of methods × seeds, "
        "write results.csv, summary.csv and figures")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated methods (see 'train --model')")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds per method (seeds 0 … S−1)")
    p.add_argument("--gammas", default=",".join(map(str, DEFAULT_GAMMAS)),
                   help="comma-separated γ for the methods with a γ (bnvae, duvae)")
    p.add_argument("--out", required=True, help="folder for results.csv, summary.csv and the figures")
    p.add_argument("--iw-samples", type=int, default=PAPER_IW_SAMPLES,
                   help=f"K importance samples of the IW-NLL (paper: {PAPER_IW_SAMPLES})")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--smoke", action="store_true", help="smoke size (bnvae_core.config.SMOKE_SIZE) over the size flags")
    p.add_argument("--cache", default=None, help="cache folder of the trained runs (default: $BNVAE_CACHE or "
                                                 "~/.cache/bnvae/runs)")
    p.add_argument("--no-progress", action="store_true")
    add_config_arguments(p, exclude=("model", "seed", "gamma"), defaults=COMPARE_SIZE)


def base_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The grid's base config: the teaching comparison size, the flags given, SMOKE_SIZE with ``--smoke``."""
    return config_from_args(args, **(SMOKE_SIZE if args.smoke else {}))


def interrupted_message(configs, root, out: Path | None = None) -> str:
    """``'interrupted: 3 of 8 runs are cached in DIR; ...'``: what an interrupted grid kept."""
    try:
        done = sum(is_cached(c, root) for c in configs)
    except Exception:        # e.g. the data became unreadable: say what is sure
        done = "some"
    outs = f"; {out} was not updated" if out is not None else ""
    return (f"interrupted: {done} of {len(configs)} runs are cached in {root or cache_dir()}; run the same "
            f"command again to continue (cached runs are loaded, not trained again){outs}")


def run(args: argparse.Namespace) -> int:
    models = parse_list(args.models, str, "models")
    gammas = parse_list(args.gammas, float, "gammas")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {args.iw_samples}")
    out = Path(args.out)
    base = base_config_from_args(args)
    configs = grid_configs(base, models, args.seeds, gammas, conditional=False)   # every error before any training
    folder = OutputFolder(out, "compare output folder")                         # checked before any training too
    try:
        with folder:
            results = compare(models, args.seeds, gammas, base, iw_samples=args.iw_samples, split=args.split,
                              out=out, root=args.cache, progress=not args.no_progress)
    except KeyboardInterrupt:
        raise CommandInterrupted(interrupted_message(configs, args.cache, out)) from None
    summary = summarize(results)
    print(json_dumps({"out": str(out), "runs": len(results), "methods": summary["method"].to_list(),
                      "results": str(out / "results.csv"), "summary": str(out / "summary.csv"),
                      "figures": [str(out / f"{n}.{e}") for n in ("kl_vs_nll", "training_curves")
                                  for e in ("png", "svg")],
                      "iw_samples": args.iw_samples, "split": args.split,
                      "wall_s": round(results.attrs["wall_s"], 2),
                      "table": json.loads(summary.to_json(orient="records"))}))
    return 0


