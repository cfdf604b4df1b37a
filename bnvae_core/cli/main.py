"""Command line: ``python -m bnvae_core COMMAND ...``.

Each command is a module of :mod:`bnvae_core.cli.commands` with ``add_arguments(parser)``,
``run(args) -> int`` and ``HELP``, listed in :data:`COMMANDS`. Errors the user can fix (bad
corpus, bad setting, bad run folder, unavailable dataset: every
:class:`~bnvae_core.errors.BnvaeError`) print one line ``error: ...`` on stderr and exit 2,
with no traceback. Results are printed as one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import BnvaeError
from .commands import (
    bench,
    classify,
    compare,
    converge,
    diagnose,
    evaluate,
    figures,
    generate,
    reproduce,
    sweep,
    train,
)

COMMANDS = {"train": train, "evaluate": evaluate, "classify": classify, "compare": compare,
            "reproduce": reproduce, "sweep": sweep, "converge": converge, "generate": generate, "bench": bench,
            "figures": figures, "diagnose": diagnose}


def version_line() -> str:
    """``bnvae_core 0.2.0 (torch 2.13.0+cpu; OpenMP wait policy PASSIVE)``: what ``--version`` prints."""
    import torch
    policy = os.environ.get("OMP_WAIT_POLICY") or ("spin count " + os.environ["GOMP_SPINCOUNT"]
                                                  if "GOMP_SPINCOUNT" in os.environ else "OpenMP default")
    return f"bnvae_core {__version__} (torch {torch.__version__}; OpenMP wait policy {policy})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bnvae_core",
                                     description="Posterior collapse and BN-VAE (Zhu et al. 2020).")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except BnvaeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(COMMANDS[args.command].INTERRUPTED if hasattr(COMMANDS[args.command], "INTERRUPTED")
              else "interrupted", file=sys.stderr)
        return 130
