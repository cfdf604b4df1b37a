"""``classify``: few-label classification accuracy on the posterior mean μ."""

from __future__ import annotations

import argparse

from ...analysis.classify import (
    MODES,
    PAPER_LABEL_SIZES,
    class_mapper,
    few_label_accuracy,
    summarize,
)
from ...errors import ConfigError
from ...io import json_dumps
from ...training.run_folder import load_run

HELP = "few-label classification accuracy on the posterior mean μ (paper §5.3)"
INTERRUPTED = "interrupted: classify stopped; nothing was written"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run folder (see 'train')")
    p.add_argument("--data", help="labelled corpus to classify (default: the run's own)")
    p.add_argument("--labels", type=int, required=True, help="number of labelled train sentences N (paper: "
                   + "/".join(map(str, PAPER_LABEL_SIZES)) + ")")
    p.add_argument("--seeds", type=int, default=5, help="number of label samples (seeds 0 … S−1)")
    p.add_argument("--protocol", choices=MODES, default="reference",
                   help="reference: the paper's protocol (the authors' code: fine-tune encoder + linear layer, "
                        "select on the labelled valid split); frozen: the teaching view (logistic regression on a "
                        "frozen μ); finetune: a quick fine-tune without validation; bow: bag-of-words baseline "
                        "(default: reference)")
    p.add_argument("--classes", default="top10", help="'top<k>' most frequent labels (default top10), 'all', 'pos'")
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    if args.labels < 1:
        raise ConfigError(f"--labels must be >= 1, got {args.labels}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.finetune_epochs < 1:
        raise ConfigError(f"--finetune-epochs must be >= 1, got {args.finetune_epochs}")
    class_mapper(args.classes, [])          # validate before loading anything
    loaded = load_run(args.run_dir, device=args.device)
    results = few_label_accuracy(loaded, args.labels, args.seeds, args.protocol, classes=args.classes,
                                 data=args.data, finetune_epochs=args.finetune_epochs)
    summary = summarize(results).iloc[0]
    print(json_dumps({
        "run": str(args.run_dir), "model": str(summary["model"]), "protocol": args.protocol,
        "data": args.data or loaded.config.data, "classes": args.classes,
        "n_classes": int(results.n_classes.iloc[0]), "labels": args.labels, "seeds": args.seeds,
        "accuracy_mean": float(summary.accuracy_mean), "accuracy_std": float(summary.accuracy_std),
        "accuracies": [float(a) for a in results.accuracy],
        "majority_accuracy": float(summary.majority_accuracy), "n_test": int(summary.n_test),
        "n_pool": int(results.n_pool.iloc[0])}))
    return 0


