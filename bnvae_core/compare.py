"""Language modelling across methods: one grid of (method, γ, seed), the same data, the same metrics.

Zhu et al. (ACL 2020, §5.1, Table 2) compare BN-VAE with the methods people use against posterior
collapse on the same corpora and report, per method, the importance-weighted NLL, the perplexity,
the KL, the mutual information I(x; z) and the number of active units. :func:`compare` runs that
grid here:

* every configuration is trained through :func:`bnvae_core.train.cached_run` (config-hashed
  cache, so a second call loads it in seconds);
* every run is evaluated with :func:`bnvae_core.metrics.evaluate` on one split (default test):
  ``nll`` — IW-NLL with K importance samples, proposal q(z|x) (K = :data:`PAPER_IW_SAMPLES` = 500
  for reported numbers, as in the paper; the teaching notebook uses K = 100, whose estimate is
  slightly higher, i.e. looser), exact for ``lm``; ``ppl`` = exp(Σ NLL / Σ(|x| + 1));
  ``kl`` analytic, per sentence; ``mi`` with the whole split as the aggregate posterior; ``au``
  (Cov_x E_q[z_j] > 0.01); ``train_time_s`` = Σ ``time_s`` of the run's ``metrics.jsonl`` train
  rows (the training passes, validation excluded). The evaluation is cached next to the run
  (``eval-<split>-K<k>-seed<s>.json`` in its cache entry);
* :func:`summarize` gives mean ± std (ddof 1) over seeds per method.

``python -m bnvae_core compare --models lm,vae,bnvae --seeds 3 --out DIR`` writes
``DIR/results.csv`` (one row per run: :data:`RESULT_COLUMNS`), ``DIR/summary.csv`` (one row per
method: ``method, model, gamma, n_seeds`` and ``<metric>_mean``, ``<metric>_std``) and the
figures ``DIR/kl_vs_nll.{png,svg}`` and ``DIR/training_curves.{png,svg}``, and prints one JSON
object. Its size flags default to the *teaching comparison size* :data:`COMPARE_SIZE`.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .config import SMOKE_SIZE, ConfigError, TrainConfig

#: K of the IW-NLL for reported numbers (Zhu et al. 2020 §5, after Burda et al. 2016)
PAPER_IW_SAMPLES = 500

#: the teaching comparison size: 2000 WordNet glosses, emb 64, hidden 128, nz 32, 5 epochs with a
#: 3-epoch KL warm-up (so every warm-up method reaches the full ELBO), eval on 200 test sentences.
#: Wall times measured on 2 shared CPU cores are in notebooks/07_language_modeling.ipynb's closing note.
COMPARE_SIZE = dict(max_train=2000, max_eval=200, max_vocab=3000, emb_dim=64, hidden_dim=128, nz=32,
                    epochs=5, warmup_epochs=3)

#: methods of the default grid (the paper's language-modelling baselines; ``pretrain-fb``,
#: ``fb-dim`` and ``duvae`` can be added with ``--models``)
DEFAULT_MODELS = ("lm", "vae", "bnvae", "beta", "cyclical", "fb", "delta", "vmf", "aggressive")

#: γ values of BN-VAE in the default grid (applied to every method whose settings include γ)
DEFAULT_GAMMAS = (0.3, 0.6, 0.9)

#: metrics of every run (columns of results.csv, summarised in summary.csv)
METRICS = ("nll", "ppl", "kl", "mi", "au", "elbo", "rec", "train_time_s")

#: columns of results.csv, in order
RESULT_COLUMNS = ("method", "model", "gamma", "seed", *METRICS, "epochs", "split", "iw_samples",
                  "n_sentences", "n_tokens", "config_hash", "run_dir")


# --- the grid -------------------------------------------------------------------------------

def parse_list(text: str | Sequence, kind=str, what: str = "list") -> list:
    """``'a,b,c'`` (or a sequence) → ``[kind(a), kind(b), kind(c)]``; empty or bad items → :class:`ConfigError`."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(isinstance(s, str) and not s for s in items):
        raise ConfigError(f"--{what}: expected a comma-separated list, got {text!r}")
    try:
        return [kind(s) for s in items]
    except (TypeError, ValueError):
        raise ConfigError(f"--{what}: cannot read {text!r} as a list of {kind.__name__}") from None


def grid_configs(models: Iterable[str], seeds: int | Iterable[int] = 3, gammas: Iterable[float] = DEFAULT_GAMMAS,
                 base: TrainConfig | None = None) -> list[TrainConfig]:
    """The configs of the grid: each model × (each γ if the method has a ``gamma`` setting) × each seed.

    ``seeds``: a count S (seeds 0 … S−1) or the seeds themselves. ``base``: every other setting
    (default ``TrainConfig(**COMPARE_SIZE)``). Unknown or conditional (``cvae``) models are a
    :class:`ConfigError`."""
    from .objectives import METHODS, check_method_names
    base = base if base is not None else TrainConfig(**COMPARE_SIZE)
    models = list(models)
    seeds = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    gammas = [float(g) for g in gammas]
    if not models:
        raise ConfigError("compare: no models given")
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"compare: need at least one seed >= 0, got {seeds}")
    if not gammas:
        raise ConfigError("compare: no gammas given")
    check_method_names(models, noun="model")
    conditional = [m for m in models if METHODS[m].conditional]
    if conditional:
        raise ConfigError(f"{', '.join(conditional)}: conditional (dialogue) models have no language-model "
                          "NLL; compare them with their own notebook")
    configs = []
    for model in dict.fromkeys(models):          # de-duplicated, in order
        model_gammas = gammas if "gamma" in METHODS[model].settings else [base.gamma]
        for gamma in model_gammas:
            for seed in seeds:
                configs.append(base.replace(model=model, gamma=gamma, seed=seed))   # validates
    return configs


# --- one run ----------------------------------------------------------------------------------

def training_time(history_rows: Sequence[dict]) -> float:
    """Σ ``time_s`` of the train rows of a ``metrics.jsonl`` (seconds of training passes)."""
    return float(sum(r.get("time_s", 0.0) for r in history_rows if r.get("split") == "train"))


def evaluate_run(run, split: str = "test", iw_samples: int = 100, seed: int = 0) -> dict:
    """:func:`bnvae_core.metrics.evaluate` of ``run`` on ``split``, cached as
    ``eval-<split>-K<k>-seed<seed>.json`` in the run folder (when it has one)."""
    from .metrics import evaluate
    from .train import atomic_write_bytes
    path = Path(run.path) / f"eval-{split}-K{iw_samples}-seed{seed}.json" if run.path else None
    if path is not None and path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass                                  # recomputed below
    result = evaluate(run.model, run.corpus.splits[split], iw_samples=iw_samples, seed=seed)
    if path is not None:
        try:
            atomic_write_bytes(path, json.dumps(result).encode())
        except OSError:
            pass                                  # a read-only cache still gives results
    return result


def result_row(run, evaluation: dict, split: str) -> dict:
    """One row of results.csv (:data:`RESULT_COLUMNS`) from a run and its evaluation."""
    from .objectives import method_label
    c = run.config
    return {"method": method_label(c), "model": c.model, "gamma": c.gamma if "gamma" in _settings(c) else math.nan,
            "seed": c.seed, **{m: float(evaluation[m]) for m in METRICS if m != "train_time_s"},
            "train_time_s": training_time(run.history_rows), "epochs": sum(r.get("split") == "train"
                                                                           for r in run.history_rows),
            "split": split, "iw_samples": int(evaluation["iw_samples"]), "n_sentences": int(evaluation["n_sentences"]),
            "n_tokens": int(evaluation["n_tokens"]), "config_hash": c.hash(), "run_dir": str(run.path)}


def _settings(config) -> tuple[str, ...]:
    from .objectives import METHODS
    return METHODS[config.model].settings


# --- the comparison -----------------------------------------------------------------------------

def compare(models: Iterable[str] = DEFAULT_MODELS, seeds: int | Iterable[int] = 3,
            gammas: Iterable[float] = DEFAULT_GAMMAS, base: TrainConfig | None = None, *,
            iw_samples: int = PAPER_IW_SAMPLES, split: str = "test", eval_seed: int = 0,
            out: str | Path | None = None, root: str | Path | None = None,
            progress: bool = False) -> pd.DataFrame:
    """Train (cached) and evaluate the grid of :func:`grid_configs`; one row per run (:data:`RESULT_COLUMNS`).

    ``iw_samples``: K of the IW-NLL (the paper's 500 by default). ``root``: cache folder of
    :func:`~bnvae_core.train.cached_run` (default ``$BNVAE_CACHE`` or ``~/.cache/bnvae/runs``).
    ``out``: also write ``results.csv``, ``summary.csv`` and the figures there
    (:func:`write_outputs`). The wall time of the call is ``result.attrs['wall_s']``."""
    from .train import cached_run
    if iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {iw_samples}")
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    t0 = time.perf_counter()
    configs = grid_configs(models, seeds, gammas, base)
    rows = []
    iterator = configs
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(configs, desc="compare", unit="run")
    for config in iterator:
        run = cached_run(config, root=root, progress=False)
        rows.append(result_row(run, evaluate_run(run, split, iw_samples, eval_seed), split))
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    if out is not None:
        write_outputs(results, out)
    results.attrs["wall_s"] = time.perf_counter() - t0
    return results


def summarize(results: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and std (ddof 1; NaN for one seed) over seeds per method: columns ``method, model,
    gamma, n_seeds`` and ``<metric>_mean``, ``<metric>_std``, in the order methods first appear."""
    missing = [c for c in ("method", "model", "gamma", "seed", *metrics) if c not in results.columns]
    if missing:
        raise ValueError(f"summarize: results lack column(s) {', '.join(missing)}")
    grouped = results.groupby("method", sort=False, dropna=False)
    table = grouped.agg(model=("model", "first"), gamma=("gamma", "first"), n_seeds=("seed", "nunique"))
    for m in metrics:
        table[f"{m}_mean"] = grouped[m].mean()
        table[f"{m}_std"] = grouped[m].std(ddof=1)
    return table.reset_index()


def format_summary(summary: pd.DataFrame, metrics: Sequence[str] = ("nll", "ppl", "kl", "mi", "au", "train_time_s"),
                   digits: dict | None = None) -> pd.DataFrame:
    """The summary as strings ``'mean ± std'`` per metric (for display), indexed by method."""
    digits = {"nll": 2, "ppl": 1, "kl": 2, "mi": 2, "au": 1, "train_time_s": 0, "elbo": 2, "rec": 2,
              **(digits or {})}
    names = {"nll": "NLL (nats)", "ppl": "PPL", "kl": "KL (nats)", "mi": "MI (nats)", "au": "AU",
             "train_time_s": "train time (s)", "elbo": "ELBO (nats)", "rec": "rec (nats)"}
    shown = pd.DataFrame(index=summary["method"].to_list())
    shown.index.name = "method"
    for m in metrics:
        d = digits.get(m, 2)
        shown[names.get(m, m)] = [f"{mean:.{d}f}" + ("" if not np.isfinite(std) else f" ± {std:.{d}f}")
                                  for mean, std in zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
    shown["seeds"] = summary["n_seeds"].to_list()
    return shown


def histories(results: pd.DataFrame, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """method → ``metrics.jsonl`` (as a DataFrame) of one run per method (``seed``: default the smallest)."""
    from .train import read_metrics
    out = {}
    for method, rows in results.groupby("method", sort=False):
        chosen = rows[rows["seed"] == (seed if seed is not None else rows["seed"].min())]
        if not chosen.empty:
            out[method] = pd.DataFrame(read_metrics(Path(chosen["run_dir"].iloc[0]) / "metrics.jsonl"))
    return out


def write_outputs(results: pd.DataFrame, out: str | Path) -> dict:
    """``out/results.csv``, ``out/summary.csv``, ``out/kl_vs_nll.{png,svg}``,
    ``out/training_curves.{png,svg}``; returns ``{name: path}``."""
    from . import plots
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.csv", "summary": out / "summary.csv"}
    results.to_csv(paths["results"], index=False)
    summarize(results).to_csv(paths["summary"], index=False)
    fig = plots.kl_nll_frontier(results)
    paths["kl_vs_nll"] = plots.save_figure(fig, out, "kl_vs_nll")[0]
    fig = plots.training_curves(histories(results), metrics=("rec", "kl", "elbo", "au"))
    paths["training_curves"] = plots.save_figure(fig, out, "training_curves")[0]
    return paths


# --- command line ---------------------------------------------------------------------------------

#: (flag, config field, type) of the size flags; defaults from :data:`COMPARE_SIZE`, else TrainConfig
SIZE_FLAGS = (("--epochs", "epochs", int), ("--warmup-epochs", "warmup_epochs", int),
              ("--max-train", "max_train", int), ("--max-eval", "max_eval", int),
              ("--max-vocab", "max_vocab", int), ("--max-tokens", "max_tokens", int),
              ("--emb-dim", "emb_dim", int), ("--hidden-dim", "hidden_dim", int), ("--nz", "nz", int),
              ("--batch-size", "batch_size", int), ("--lr", "lr", float))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import add_method_arguments
    d = {**TrainConfig().to_dict(), **COMPARE_SIZE}
    p.add_argument("--data", default="wordnet", help="'wordnet' (built in), a dataset name, or a corpus directory")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated methods (see 'train --model')")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds per method (seeds 0 … S−1)")
    p.add_argument("--gammas", default=",".join(map(str, DEFAULT_GAMMAS)),
                   help="comma-separated γ for the methods with a γ (bnvae, duvae)")
    p.add_argument("--out", required=True, help="folder for results.csv, summary.csv and the figures")
    p.add_argument("--iw-samples", type=int, default=PAPER_IW_SAMPLES,
                   help=f"K importance samples of the IW-NLL (paper: {PAPER_IW_SAMPLES})")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--smoke", action="store_true", help="smoke size (bnvae_core.config.SMOKE_SIZE) over the size flags")
    p.add_argument("--cache", default=None, help="cache folder of the trained runs (default: $BNVAE_CACHE or "
                                                 "~/.cache/bnvae/runs)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    size = p.add_argument_group("sizes (default: the teaching comparison size, bnvae_core.compare.COMPARE_SIZE; "
                                "0 for max-*: no limit)")
    for flag, field, kind in SIZE_FLAGS:
        size.add_argument(flag, dest=field, type=kind, default=d[field])
    add_method_arguments(p)


def base_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The grid's base config: size flags (or SMOKE_SIZE with ``--smoke``), method flags, data, device."""
    from .cli import METHOD_FLAGS
    values = {field: getattr(args, field) for _, field, _ in SIZE_FLAGS}
    for name in ("max_train", "max_eval", "max_vocab", "max_tokens"):
        if values[name] == 0:
            values[name] = None
    if args.smoke:
        values.update(SMOKE_SIZE)
    values.update({field: getattr(args, field) for _, field, _, _ in METHOD_FLAGS if hasattr(args, field)})
    return TrainConfig(data=args.data, device=args.device, **values)


def run(args: argparse.Namespace) -> int:
    models = parse_list(args.models, str, "models")
    gammas = parse_list(args.gammas, float, "gammas")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {args.iw_samples}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    base = base_config_from_args(args)
    grid_configs(models, args.seeds, gammas, base)       # every error before any training
    results = compare(models, args.seeds, gammas, base, iw_samples=args.iw_samples, split=args.split,
                      out=out, root=args.cache, progress=not args.no_progress)
    summary = summarize(results)
    print(json.dumps({"out": str(out), "runs": len(results), "methods": summary["method"].to_list(),
                      "results": str(out / "results.csv"), "summary": str(out / "summary.csv"),
                      "figures": [str(out / f"{n}.{e}") for n in ("kl_vs_nll", "training_curves")
                                  for e in ("png", "svg")],
                      "iw_samples": args.iw_samples, "split": args.split,
                      "wall_s": round(results.attrs["wall_s"], 2),
                      "table": json.loads(summary.to_json(orient="records"))}))
    return 0


CLI_COMMAND = (add_arguments, run, "language modelling across methods: train (cached) and evaluate a "
                                   "grid of methods × seeds, write results.csv, summary.csv and figures")

__all__ = ["COMPARE_SIZE", "DEFAULT_MODELS", "DEFAULT_GAMMAS", "PAPER_IW_SAMPLES", "compare", "grid_configs",
           "summarize", "format_summary", "histories", "evaluate_run", "write_outputs", "training_time"]
