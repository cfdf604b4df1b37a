"""``bench``: training and IW-NLL throughput against the machine's measured GEMM peak."""

from __future__ import annotations

import argparse

from ...errors import ConfigError
from ...io import json_dumps
from ...experiments.benchmark import run_benchmark
from ..args import add_config_arguments, config_from_args

HELP = "training and IW-NLL throughput vs the measured GEMM peak (one JSON object)"
INTERRUPTED = "interrupted: bench stopped; nothing was written"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--steps", type=int, default=300, help="timed training steps")
    p.add_argument("--warmup-steps", type=int, default=20, help="untimed training steps first")
    p.add_argument("--iw-samples", type=int, default=500, help="K of the timed IW-NLL")
    p.add_argument("--iw-sentences", type=int, default=200, help="test sentences of the timed IW-NLL (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    result = run_benchmark(config, steps=args.steps, warmup_steps=args.warmup_steps,
                           iw_samples=args.iw_samples, iw_sentences=args.iw_sentences,
                           threads=args.threads or None, seed=config.seed)
    print(json_dumps(result))
    return 0


