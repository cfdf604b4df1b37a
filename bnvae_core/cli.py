"""Command line: ``python -m bnvae_core COMMAND ...``.

Each command is a pair of functions — ``add_<name>_arguments(parser)`` and
``run_<name>(args) -> int`` — registered in :data:`COMMANDS`. Errors the user can fix (bad
corpus, bad setting, bad run folder) print one line ``error: ...`` on stderr and exit 2,
with no traceback. Results are printed as one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, TrainConfig
from .data import CorpusError

USER_ERRORS: tuple[type[BaseException], ...] = (CorpusError, ConfigError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .train import NonFiniteLossError, RunError
    errors = USER_ERRORS + (RunError, NonFiniteLossError)
    try:
        from .hub import DatasetUnavailableError, UnknownDatasetError
        errors += (DatasetUnavailableError, UnknownDatasetError)
    except ImportError:
        pass
    return errors


def _report_reading(corpus) -> None:
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


def _option_given(argv: list[str], option: str) -> bool:
    """Whether ``option`` is on the command line, also as ``--opt=v`` or an unambiguous prefix."""
    return any(len(a.split("=")[0]) >= 4 and option.startswith(a.split("=")[0]) for a in argv
               if a.startswith("--"))


# --- train ----------------------------------------------------------------------------------

def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that builds a TrainConfig (train, compare, bench, ...)."""
    from .objectives import METHODS
    d = TrainConfig()
    p.add_argument("--data", default=d.data, help="'wordnet' (built in), a dataset name, or a corpus directory")
    p.add_argument("--model", default=d.model, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--gamma", type=float, default=d.gamma, help="BN-VAE: fixed scale of the BN on μ")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--kl-start", type=float, default=d.kl_start)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--emb-dim", type=int, default=d.emb_dim, action=_StoreExplicit)
    p.add_argument("--hidden-dim", type=int, default=d.hidden_dim, action=_StoreExplicit)
    p.add_argument("--preset", choices=sorted(preset_sizes()), default=None,
                   help="the paper's network sizes for a dataset (emb/hidden, see bnvae_core.hub.PRESETS); "
                        "--emb-dim/--hidden-dim given explicitly win")
    p.add_argument("--nz", type=int, default=d.nz)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--max-train", type=int, default=d.max_train,
                   help="seeded subset of the training sentences (0: all)")
    p.add_argument("--max-eval", type=int, default=d.max_eval, help="seeded subset of valid/test (0: all)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="drop longer sentences")
    p.add_argument("--on-nonfinite", choices=("stop", "skip"), default=d.on_nonfinite)
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for training and evaluation (CPU with AVX512-BF16/AMX, or CUDA)")
    add_method_arguments(p)


class _StoreExplicit(argparse.Action):
    """``store``, and remember in ``namespace._explicit_fields`` that the flag was given (so a
    ``--preset`` fills only the sizes not given on the command line)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        explicit = set(getattr(namespace, "_explicit_fields", ()))
        explicit.add(self.dest)
        namespace._explicit_fields = explicit


def preset_sizes() -> dict[str, dict[str, int]]:
    """Preset name → ``{emb_dim, hidden_dim}``: :data:`bnvae_core.hub.PRESETS` plus the hub datasets' own."""
    from .hub import PRESETS, REGISTRY
    return {**{name: dict(spec.preset) for name, spec in REGISTRY.items() if spec.preset}, **PRESETS}


#: (flag, config field, type, help) of the per-method settings (objectives.py); choices where fixed
METHOD_FLAGS = (
    ("--beta", "beta", float, "beta: KL weight β (times the warm-up weight)"),
    ("--cycles", "cycles", int, "cyclical: number of cycles M over the run"),
    ("--cycle-ratio", "cycle_ratio", float, "cyclical: fraction R of each cycle with a rising weight"),
    ("--cycle-shape", "cycle_shape", ("linear", "sigmoid", "cosine"), "cyclical: shape of the rise"),
    ("--target-kl", "target_kl", float, "fb, pretrain-fb: free nats per sentence (default 5, 8); "
                                        "fb-dim: per dimension (default 0.25)"),
    ("--fb-scope", "fb_scope", ("sentence", "batch"), "fb: max(KL, λ) per sentence or on the batch mean"),
    ("--delta", "delta", float, "delta: committed rate δ, KL ≥ δ nats per dimension"),
    ("--kappa", "kappa", float, "vmf: fixed concentration κ"),
    ("--aggressive-check-every", "aggressive_check_every", int, "aggressive: inner-loop loss window (updates)"),
    ("--aggressive-max-steps", "aggressive_max_steps", int, "aggressive: at most this many encoder updates per batch"),
    ("--pretrain-epochs", "pretrain_epochs", int, "pretrain-fb: autoencoder epochs before the decoder reset"),
    ("--duvae-dropout", "duvae_dropout", float, "duvae: dropout probability on the posterior variance"),
    ("--bow-loss", "bow_loss", bool, "cvae, bn-cvae: add the bag-of-words loss (Zhao et al. 2017)"),
    ("--max-context", "max_context", int, "cvae, bn-cvae: keep the last this-many context utterances"),
)


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per method setting (:data:`METHOD_FLAGS`), defaults from :class:`TrainConfig`."""
    d = TrainConfig()
    group = p.add_argument_group("method settings (each used only by its --model)")
    for flag, field, kind, help_text in METHOD_FLAGS:
        if isinstance(kind, tuple):
            group.add_argument(flag, dest=field, choices=kind, default=getattr(d, field), help=help_text)
        elif kind is bool:
            group.add_argument(flag, dest=field, action="store_true", default=getattr(d, field), help=help_text)
        else:
            group.add_argument(flag, dest=field, type=kind, default=getattr(d, field), help=help_text)


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    def none_if_zero(v):
        return None if v in (0, None) else v
    values = dict(model=args.model, data=args.data, gamma=args.gamma, epochs=args.epochs,
                  warmup_epochs=args.warmup_epochs, kl_start=args.kl_start, batch_size=args.batch_size,
                  emb_dim=args.emb_dim, hidden_dim=args.hidden_dim, nz=args.nz, lr=args.lr,
                  optimizer=args.optimizer, seed=args.seed, device=args.device,
                  max_train=none_if_zero(args.max_train), max_eval=none_if_zero(args.max_eval),
                  max_tokens=none_if_zero(args.max_tokens), on_nonfinite=args.on_nonfinite,
                  precision="bf16" if getattr(args, "bf16", False) else "fp32")
    defaults = TrainConfig()
    values.update({field: getattr(args, field, getattr(defaults, field)) for _, field, _, _ in METHOD_FLAGS})
    if getattr(args, "preset", None):        # paper sizes; explicit --emb-dim/--hidden-dim win
        explicit = getattr(args, "_explicit_fields", set())
        values.update({k: v for k, v in preset_sizes()[args.preset].items() if k not in explicit})
    values.update(overrides)
    return TrainConfig(**values)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", help="run folder to create (must not exist or be empty)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to --epochs in total")
    p.add_argument("--no-progress", action="store_true")


def run_train(args: argparse.Namespace) -> int:
    from .train import train
    if args.resume:
        if not (Path(args.resume) / "config.json").is_file():
            raise ConfigError(f"{args.resume}: nothing to resume (not a run folder: no config.json)")
        saved = TrainConfig.load(Path(args.resume) / "config.json")
        epochs = args.epochs if args._explicit_epochs else saved.epochs
        run = train(saved.replace(epochs=epochs), args.resume, resume=True, progress=not args.no_progress)
    else:
        if not args.out:
            raise ConfigError("train needs --out DIR (or --resume DIR)")
        config = config_from_args(args)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out}: exists and is not a directory")
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: run folder exists and is not empty")
        try:
            run = train(config, out, progress=not args.no_progress)
        except _user_errors():
            if out.exists() and not (out / "checkpoint.pt").exists():
                import shutil
                shutil.rmtree(out, ignore_errors=True)   # nothing half-written left behind
            raise
    _report_reading(run.corpus)
    last = {r["split"]: r for r in run.history_rows}
    print(json.dumps({"out": str(run.path), "epochs": len(run.history_rows) // 2,
                      "train": last.get("train"), "valid": last.get("valid")}))
    return 0


# --- evaluate -------------------------------------------------------------------------------

def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--data", help="corpus to evaluate on (default: the run's own)")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--iw-samples", type=int, default=500, help="K importance samples for the NLL")
    p.add_argument("--max-sentences", type=int, default=0,
                   help="evaluate a seeded subsample of this many sentences (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import load_corpus
    from .metrics import evaluate
    from .objectives import make_method
    from .train import load_run
    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {args.iw_samples}")
    if args.max_sentences < 0:
        raise ConfigError(f"--max-sentences must be >= 0 (0: all), got {args.max_sentences}")
    run = load_run(args.run_dir, device=args.device)
    split = run.corpus.splits[args.split]
    method = make_method(run.config)   # cvae, bn-cvae: their own metrics (bnvae_core.cvae.evaluate_cvae)
    if args.data and method.conditional:
        raise ConfigError(f"--data is not supported for {run.config.model} runs (evaluate on the run's own data)")
    if args.data:
        other = load_corpus(args.data, max_tokens=run.config.max_tokens, vocab=run.corpus.vocab)
        split = other.splits[args.split]
    if args.max_sentences and args.max_sentences < len(split):
        rng = np.random.default_rng(args.seed)
        split = split.subset(np.sort(rng.choice(len(split), args.max_sentences, replace=False)))
    if method.conditional:
        result = method.evaluate(run.model, split, seed=args.seed)
    else:
        result = evaluate(run.model, split, iw_samples=args.iw_samples, seed=args.seed,
                          progress=not args.no_progress)
    result.update(model=run.config.model, split=args.split, data=args.data or run.config.data)
    print(json.dumps(result))
    return 0


COMMANDS = {
    "train": (add_train_arguments, run_train, "train a model into a run folder"),
    "evaluate": (add_evaluate_arguments, run_evaluate, "IW-NLL, PPL, KL, MI, AU of a run folder"),
}


#: command name → module that defines ``CLI_COMMAND = (add_arguments, run, help)``
MODULE_COMMANDS = {"classify": "classify", "compare": "compare", "bench": "benchmark",
                   "reproduce": "reproduce", "generate": "generate", "figures": "figures", "sweep": "sweep"}


def _register_module_commands() -> None:
    import importlib
    for name, module_name in MODULE_COMMANDS.items():
        try:
            module = importlib.import_module(f".{module_name}", __package__)
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{module_name}":
                raise
            continue
        COMMANDS.setdefault(name, module.CLI_COMMAND)


def version_line() -> str:
    """``bnvae_core 0.2.0 (torch 2.13.0+cpu; OpenMP wait policy PASSIVE)``: what ``--version`` prints."""
    import os

    import torch

    from . import __version__
    policy = os.environ.get("OMP_WAIT_POLICY") or ("spin count " + os.environ["GOMP_SPINCOUNT"]
                                                  if "GOMP_SPINCOUNT" in os.environ else "OpenMP default")
    return f"bnvae_core {__version__} (torch {torch.__version__}; OpenMP wait policy {policy})"


def build_parser() -> argparse.ArgumentParser:
    _register_module_commands()
    parser = argparse.ArgumentParser(prog="python -m bnvae_core",
                                     description="Posterior collapse and BN-VAE (Zhu et al. 2020).")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args._explicit_epochs = _option_given(argv, "--epochs")
    try:
        return COMMANDS[args.command][1](args)
    except _user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run folder keeps its last complete epoch (resume with --resume DIR)",
              file=sys.stderr)
        return 130
