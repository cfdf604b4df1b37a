"""``evaluate``: IW-NLL, PPL, KL, MI and active units of a finished run folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ...config import TrainConfig
from ...errors import ConfigError
from ...io import json_dumps
from ...methods import make_method
from ...training.run_folder import load_run

HELP = "IW-NLL, PPL, KL, MI, AU of a run folder"
INTERRUPTED = "interrupted: nothing was written (evaluate writes no files)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--data", help="corpus to evaluate on, read with the run's own vocabulary (default: the run's "
                                  "own corpus); the fraction of its tokens that become <unk> is printed")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--iw-samples", type=int, default=500, help="K importance samples for the NLL (default: 500)")
    p.add_argument("--max-sentences", type=int, default=0,
                   help="evaluate a seeded subsample of this many sentences (default 0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: the run's")
    p.add_argument("--no-progress", action="store_true")


def unknown_fraction(split, unk: int) -> float:
    """Fraction of the split's word tokens that are ``<unk>`` for the model's vocabulary."""
    ids = getattr(split, "ids", None)        # a dialogue split keeps its utterances otherwise
    return float((ids == unk).mean()) if ids is not None and len(ids) else None


def run(args: argparse.Namespace) -> int:
    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {args.iw_samples}")
    if args.max_sentences < 0:
        raise ConfigError(f"--max-sentences must be >= 0 (0: all), got {args.max_sentences}")
    config_file = Path(args.run_dir) / "config.json"
    if args.data and config_file.is_file() and make_method(TrainConfig.load(config_file)).conditional:
        raise ConfigError(f"--data is not supported for {TrainConfig.load(config_file).model} runs "
                          "(evaluate on the run's own data)")
    result_run = load_run(args.run_dir, device=args.device, data=args.data)
    corpus = result_run.corpus
    split = corpus.splits[args.split]
    method = make_method(result_run.config)   # cvae, bn-cvae: their own metrics
    in_split = corpus.reading.get(args.split, {}).get("sentences_read", len(split))
    if args.max_sentences and args.max_sentences < len(split):
        rng = np.random.default_rng(args.seed)
        split = split.subset(np.sort(rng.choice(len(split), args.max_sentences, replace=False)))
    if method.conditional:
        result = method.evaluate(result_run.model, split, seed=args.seed)
    else:
        result = method.evaluate(result_run.model, split, iw_samples=args.iw_samples, seed=args.seed,
                                 progress=not args.no_progress)
    unk = unknown_fraction(split, corpus.vocab.unk)
    result.update(model=result_run.config.model, split=args.split, data=args.data or result_run.config.data,
                  sentences_in_split=in_split, unk_fraction=unk)
    if result.get("n_sentences", in_split) < in_split:
        print(f"note: evaluated on {result['n_sentences']:,} of the {in_split:,} sentences of {args.split}",
              file=sys.stderr)
    if args.data and unk is not None:
        print(f"note: {100 * unk:.1f}% of the tokens of {args.data} ({args.split}) are <unk> for this run's "
              f"vocabulary" + ("; the numbers say little about this text" if unk >= 0.5 else ""), file=sys.stderr)
    print(json_dumps(result))
    return 0
