"""``converge``: validation NLL after every epoch for a few methods, and when BN-VAE's goes below the others'."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ...errors import ConfigError
from ...experiments.convergence import final_test_metrics, nll_over_training, overtake_epochs
from ...experiments.grid import grid_configs, parse_list
from ...io import OutputFolder, atomic_write_json, atomic_write_text, json_dumps
from ...methods import method_label
from ...viz.plots import nll_over_training as plot_curves
from ...viz.plots import save_figure
from ..args import add_config_arguments, config_from_args

HELP = "validation NLL after every epoch for several methods; the epoch BN-VAE's NLL overtakes theirs"
INTERRUPTED = ("interrupted: converge stopped; the curves finished so far are cached (the same command continues "
               "from them); nothing was written to --out")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default="lm,vae,bnvae", help="comma-separated methods (default: lm,vae,bnvae)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds 0 … S−1 per method (default 1)")
    p.add_argument("--sentences", type=int, default=500, help="validation sentences measured (default 500)")
    p.add_argument("--iw-samples", type=int, default=20, help="K of the IW-NLL after each epoch (default 20)")
    p.add_argument("--test-iw-samples", type=int, default=0, metavar="K",
                   help="also evaluate each trained model on the test split (IW-NLL with K samples, PPL, KL, "
                        "MI, AU) into test_table.csv; default 0: no test evaluation")
    p.add_argument("--out", required=True, help="folder for convergence.csv, convergence.json and the figure")
    p.add_argument("--no-progress", action="store_true")
    add_config_arguments(p, exclude=("model", "seed"))


def run(args: argparse.Namespace) -> int:
    if args.sentences < 1 or args.iw_samples < 1:
        raise ConfigError("--sentences and --iw-samples must be >= 1")
    if args.test_iw_samples < 0:
        raise ConfigError(f"--test-iw-samples must be >= 0, got {args.test_iw_samples}")
    out = Path(args.out)
    configs = grid_configs(config_from_args(args), parse_list(args.methods, str, "methods"), args.seeds,
                           conditional=False)
    folder = OutputFolder(out, "converge output folder")      # checked before any training
    curves = nll_over_training(configs, sentences=args.sentences, k=args.iw_samples, progress=not args.no_progress)
    tests = final_test_metrics(configs, iw_samples=args.test_iw_samples) if args.test_iw_samples else None
    with folder:
        summary = write_outputs(out, curves, configs, args)
        if tests is not None:
            atomic_write_text(out / "test_table.csv", tests.to_csv(index=False))
    print(json_dumps({"out": str(out), **{k: summary[k] for k in ("methods", "epochs", "overtake")}}))
    return 0


def write_outputs(out: Path, curves, configs, args) -> dict:
    """``convergence.csv``, ``convergence.json`` and the figure; returns the summary."""
    atomic_write_text(out / "convergence.csv", curves.to_csv(index=False))
    bn = [method_label(c) for c in configs if c.model == "bnvae"]
    summary = {"methods": list(dict.fromkeys(curves["method"])), "iw_samples": args.iw_samples,
               "sentences": args.sentences, "epochs": int(curves["epoch"].max()),
               "overtake": {m: overtake_epochs(curves, m) for m in dict.fromkeys(bn)},
               "config": configs[0].to_dict(), "command": shlex.join(["python", "-m", "bnvae_core", *sys.argv[1:]])}
    atomic_write_json(out / "convergence.json", summary)
    save_figure(plot_curves(curves, title=f"{configs[0].data}: validation NLL over training"), out, "convergence")
    return summary
