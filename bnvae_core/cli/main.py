"""Command line: ``python -m bnvae_core COMMAND ...``.

Each command is a module of :mod:`bnvae_core.cli.commands` with ``add_arguments(parser)``,
``run(args) -> int`` and ``HELP``, listed in :data:`COMMANDS`. Errors the user can fix (bad
corpus, bad setting, bad run folder, unavailable dataset, a full disk or a read-only folder: every
:class:`~bnvae_core.errors.BnvaeError`, and any other :class:`OSError`) print one line
``error: ...`` on stderr and exit 2, with no traceback; a
:class:`~bnvae_core.errors.BnvaeWarning` prints one line ``warning: ...``. Ctrl-C and SIGTERM
print the command's own line (its ``INTERRUPTED``, or the
:class:`~bnvae_core.errors.CommandInterrupted` it raised: what was kept, what to run next) and
exit 130. Results are printed as one strict JSON object on stdout.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings

from .. import __version__
from ..errors import BnvaeError, BnvaeWarning, CommandInterrupted
from ..io import os_cause
from .commands import (
    bench,
    classify,
    compare,
    converge,
    diagnose,
    docs,
    evaluate,
    figures,
    generate,
    reproduce,
    sweep,
    train,
)

COMMANDS = {"train": train, "evaluate": evaluate, "classify": classify, "compare": compare,
            "reproduce": reproduce, "sweep": sweep, "converge": converge, "generate": generate, "bench": bench,
            "figures": figures, "diagnose": diagnose, "docs": docs}


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


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Our own warnings as one line ``warning: ...``; every other one as Python prints it."""
    if issubclass(category, BnvaeWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)   # a job scheduler's stop: as Ctrl-C
    except ValueError:                                                 # not the main thread
        term = None
    try:
        return command.run(args)
    except BnvaeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:             # what the operating system refused, not caught nearer
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{os_cause(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        message = str(err) if isinstance(err, CommandInterrupted) else getattr(command, "INTERRUPTED", "interrupted")
        print(message, file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
        if term is not None:
            signal.signal(signal.SIGTERM, term)
