"""``reproduce``: train the paper's methods on a dataset and write its language-modelling and classification tables.

Exit status as ``sweep``'s: 0 all trials done; 1 some failed after their retries (one line
``error: N of M trials failed: …`` on stderr; the tables hold the others, ``lm_runs.csv`` every
trial with its status); 2 an error before any trial ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...config import smoke_requested
from ...devices import resolve_device
from ...errors import CommandInterrupted
from ...experiments.reproduce import DEFAULT_METHODS, LABEL_SIZES, reproduce, reproduce_configs
from ...io import OutputFolder, json_dumps
from .compare import interrupted_message
from .sweep import add_executor_arguments, executor_options

HELP = "train the paper's methods on a dataset, write its LM and classification tables"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True,
                   help="'wordnet' (built in), a hub dataset (yahoo, yelp, short_yelp, snli, ptb, synthetic), "
                        "a registered name or a corpus directory")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help=f"methods to train (default: {' '.join(DEFAULT_METHODS)}; the paper's also include aggressive)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds 0 … S−1 per method")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config default)")
    p.add_argument("--iw-samples", type=int, default=500, help="K importance samples for the test NLL")
    p.add_argument("--gamma", type=float, default=None, help="BN-VAE's γ (default 0.6)")
    p.add_argument("--nz", type=int, default=None, help="latent size (default 32, the paper's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", default=None,
                   help="tiny sizes (SMOKE_SIZE), for CI; default: on when $CI or $BNVAE_SMOKE is set")
    p.add_argument("--label-sizes", nargs="+", type=int, default=list(LABEL_SIZES),
                   help="labelled sentences of the classification table")
    p.add_argument("--label-seeds", type=int, default=5,
                   help="classifier training seeds per trained model, on one labelled set (the paper: 10)")
    p.add_argument("--classes", default="top10", help="classification target (see 'classify'): top<k>, all, pos")
    p.add_argument("--no-classify", action="store_true", help="skip the classification table")
    add_executor_arguments(p)
    p.add_argument("--out", required=True, help="folder for the tables and figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")


def run(args: argparse.Namespace) -> int:
    options = executor_options(args)
    overrides = {k: v for k, v in (("gamma", args.gamma), ("nz", args.nz)) if v is not None}
    smoke = smoke_requested() if args.smoke is None else args.smoke
    resolve_device(args.device)                                     # before anything is created
    folder = OutputFolder(args.out, "reproduce output folder")      # checked before any training
    try:
        with folder:
            written = reproduce(args.dataset, args.out, methods=args.methods, seeds=args.seeds, epochs=args.epochs,
                                iw_samples=args.iw_samples, smoke=smoke, label_sizes=args.label_sizes,
                                label_seeds=args.label_seeds, classes=args.classes, classify=not args.no_classify,
                                device=args.device, **options, **overrides)
    except KeyboardInterrupt:
        configs = reproduce_configs(args.dataset, args.methods, args.seeds, epochs=args.epochs, smoke=smoke,
                                    device=args.device, **overrides)
        raise CommandInterrupted(interrupted_message(configs, args.cache, Path(args.out))) from None
    meta = json.loads(Path(written["meta"]).read_text())
    print(json_dumps({"out": str(args.out), "outputs": meta["outputs"], "notes": meta["notes"],
                      "failed": len(meta["failed"])}))
    if meta["failure_summary"]:
        print(f"error: {meta['failure_summary']} (see {written['lm_runs']}: status, error)", file=sys.stderr)
        return 1
    return 0


