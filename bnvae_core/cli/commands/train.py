"""``train``: train one model into a run folder (or ``--resume`` one)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...config import TrainConfig
from ...errors import CommandInterrupted, ConfigError
from ...io import json_dumps
from ...training.loop import train
from ..args import add_config_arguments, config_from_args, flag_of, given_fields

HELP = "train a model into a run folder"
INTERRUPTED = "interrupted: the run folder keeps its last complete epoch (continue with train --resume DIR)"

#: what ``--resume`` may change: the total epochs and where it runs
RESUMABLE = ("epochs", "device")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--out", help="run folder to create (must not exist or be empty)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to --epochs in total")
    p.add_argument("--no-progress", action="store_true")


def report_reading(corpus) -> None:
    """One stderr note per split whose file needed tolerance (blank/long lines skipped, BOM, CRLF)."""
    for split, info in getattr(corpus, "reading", {}).items():
        parts = [f"{info[k]} {what}" for k, what in (("skipped_blank", "blank lines skipped"),
                                                    ("skipped_long", "lines longer than max_tokens skipped"),
                                                    ("crlf_lines", "CRLF line ends"))
                 if info.get(k)]
        if info.get("bom"):
            parts.append("a UTF-8 BOM removed")
        if parts:
            print(f"note: {split}: {', '.join(parts)}", file=sys.stderr)
    if hasattr(corpus, "selection_notes"):
        for note in corpus.selection_notes():
            print(f"note: {note}", file=sys.stderr)


def resume_config(args: argparse.Namespace) -> TrainConfig:
    """The saved config of ``--resume DIR``, with ``--epochs``/``--device`` if given; any other
    setting on the command line is refused (it would not be the same run)."""
    folder = Path(args.resume)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: nothing to resume (not a run folder: no config.json)")
    changed = [flag_of(k) for k in given_fields(args) if k not in RESUMABLE]
    if getattr(args, "config", None) or getattr(args, "preset", None):
        changed.append("--config" if args.config else "--preset")
    if changed:
        raise ConfigError(f"--resume continues {folder} as it was configured; only --epochs and --device "
                          f"may change, not {', '.join(changed)}")
    saved = TrainConfig.load(folder / "config.json")
    return saved.replace(**{k: v for k, v in given_fields(args).items() if k in RESUMABLE})


def run(args: argparse.Namespace) -> int:
    """The run folder is claimed (created, locked) before the corpus loads, and a training that fails
    before its first checkpoint leaves nothing behind (:meth:`~bnvae_core.training.run_folder.RunFolder.working`)."""
    if args.resume and args.out:
        raise ConfigError(f"give either --out (a new run) or --resume (continue {args.resume} in place), not both")
    if not args.resume and not args.out:
        raise ConfigError("train needs --out DIR (or --resume DIR)")
    folder = Path(args.resume or args.out)
    config = resume_config(args) if args.resume else config_from_args(args)
    try:
        result = train(config, folder, resume=bool(args.resume), progress=not args.no_progress)
    except KeyboardInterrupt:
        if (folder / "config.json").is_file():
            raise CommandInterrupted(f"interrupted: {folder} keeps its last complete epoch (continue with "
                                     f"train --resume {folder})") from None
        raise CommandInterrupted(f"interrupted before anything was written to {folder}") from None
    report_reading(result.corpus)
    last = {r["split"]: r for r in result.history_rows}
    print(json_dumps({"out": str(result.path), "epochs": sum(r["split"] == "train" for r in result.history_rows),
                      "train": last.get("train"), "valid": last.get("valid")}))
    return 0
