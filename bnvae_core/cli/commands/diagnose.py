"""``python -m bnvae_core diagnose RUN_DIR``: the collapse report card of a finished run.

On ``--sentences`` sentences of ``--split`` (a seeded subset), :func:`bnvae_core.analysis.diagnose.diagnose`
measures the per-dimension KL, the active units, the MI with a bootstrap interval (and its
log N ceiling), the prior-vs-posterior decoding gap, whether different codes decode to the same
sentence, and the holes of the aggregate posterior. Writes ``report.json`` (every number and
table, strict JSON) and ``report_card.png``/``.svg`` (the one-page figure,
:func:`bnvae_core.viz.plots.report_card`) into ``--out`` (default ``RUN_DIR/diagnose/``), and
prints one JSON object: the report's numbers, warnings and verdict (no tables) and ``files``.

Errors (not a finished run folder, a ``cvae``/``bn-cvae`` run, settings out of range) are one
line ``error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...analysis.diagnose import DEFAULT_BOOTSTRAP, DEFAULT_DECODE, DEFAULT_SENTENCES, diagnose
from ...errors import ConfigError
from ...io import atomic_write_text
from ...viz.plots import report_card, save_figure

HELP = "collapse report card of a run: per-dimension KL, AU, MI, decoding gap, distinct decodings, holes"
INTERRUPTED = "interrupted: files already in --out are whole (each written atomically)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run folder (train --out DIR)")
    p.add_argument("--split", choices=("train", "valid", "test"), default="test")
    p.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES,
                   help=f"a seeded subset of this many sentences (default {DEFAULT_SENTENCES}; 0: all). "
                        "MI costs O(N² nz) and its ceiling is log N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decode", type=int, default=DEFAULT_DECODE,
                   help=f"codes decoded greedily per source (default {DEFAULT_DECODE})")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP,
                   help=f"bootstrap replicates of the MI interval (default {DEFAULT_BOOTSTRAP})")
    p.add_argument("--out", default=None, help="folder for report.json and report_card.{png,svg} "
                                               "(default: RUN_DIR/diagnose)")
    p.add_argument("--device", default=None, help="default: the run's")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.run_dir) / "diagnose"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    report = diagnose(args.run_dir, split=args.split, sentences=args.sentences, seed=args.seed,
                      n_decode=args.decode, bootstrap=args.bootstrap, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", report.to_json() + "\n")
    figures = save_figure(report_card(report), out, "report_card")
    print(json.dumps({**report.summary(), "files": [str(out / "report.json"), *map(str, figures)]},
                     allow_nan=False, ensure_ascii=False))
    return 0
