"""Language modelling across methods: one grid of (method, γ, seed), the same data, the same metrics.

Zhu et al. (ACL 2020, §5.1, Table 2) compare BN-VAE with the methods people use against posterior
collapse on the same corpora and report, per method, the importance-weighted NLL, the perplexity,
the KL, the mutual information I(x; z) and the number of active units. :func:`compare` runs that
grid here:

* the grid is :func:`bnvae_core.experiments.grid.grid_configs` (methods × γ for BN methods × seeds);
* every configuration is trained through :func:`bnvae_core.training.cache.cached_run` (config-hashed
  cache, so a second call loads it in seconds);
* every run is evaluated with :func:`bnvae_core.experiments.evaluation.evaluate_run` on one split (default test):
  ``nll`` — IW-NLL with K importance samples, proposal q(z|x) (K = :data:`PAPER_IW_SAMPLES` = 500
  for reported numbers, as in the paper; the teaching notebook uses K = 100, whose estimate is
  slightly higher, i.e. looser), exact for ``lm``; ``ppl`` = exp(Σ NLL / Σ(|x| + 1));
  ``kl`` analytic, per sentence; ``mi`` with the whole split as the aggregate posterior; ``au``
  (Cov_x E_q[z_j] > 0.01); ``train_time_s`` = Σ ``time_s`` of the run's ``metrics.jsonl`` train
  rows (the training passes, validation excluded). The evaluation is cached in the run folder;
* :func:`summarize` gives mean ± std (ddof 1) over seeds per method.

``python -m bnvae_core compare --models lm,vae,bnvae --seeds 3 --out DIR`` writes
``DIR/results.csv`` (one row per run: :data:`RESULT_COLUMNS`), ``DIR/summary.csv`` (one row per
method: ``method, model, gamma, n_seeds`` and ``<metric>_mean``, ``<metric>_std``) and the
figures ``DIR/kl_vs_nll.{png,svg}`` and ``DIR/training_curves.{png,svg}``, and prints one JSON
object. Its size flags default to the *teaching comparison size* :data:`COMPARE_SIZE`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..config import SMOKE_SIZE, TrainConfig
from ..errors import ConfigError
from ..io import atomic_write_text, read_jsonl
from ..methods import method_class, method_label
from ..training.cache import cached_run
from ..viz import plots
from .evaluation import evaluate_run
from .grid import grid_configs

#: K of the IW-NLL for reported numbers (Zhu et al. 2020 §5, after Burda et al. 2016)
PAPER_IW_SAMPLES = 500

#: the teaching comparison size: 1000 WordNet glosses, emb 64, hidden 128, nz 32, 5 epochs with a
#: 3-epoch KL warm-up (so every warm-up method reaches the full ELBO), eval on 200 test sentences.
#: Sized so that notebook 08's grid (about 30 runs) fits its time budget on 2 cores; the measured
#: times are rendered in that notebook's closing note (figures/08_timing.csv).
COMPARE_SIZE = dict(max_train=1000, max_eval=200, max_vocab=2000, emb_dim=64, hidden_dim=128, nz=32,
                    epochs=5, warmup_epochs=3)

#: aggressive training at teaching size (notebooks 07 and 08): the inner loop's loss windows of 5
#: encoder updates, at most 15 per decoder step (He et al. and the paper: windows of 15, at most 100).
#: The stop rule still decides ("until the encoder's loss stops improving"), at about a sixth of the
#: cost, which keeps both notebooks within their time budgets on 2 cores.
TEACHING_AGGRESSIVE = dict(aggressive_check_every=5, aggressive_max_steps=15)

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


def training_time(history_rows: Sequence[dict]) -> float:
    """Σ ``time_s`` of the train rows of a ``metrics.jsonl`` (seconds of training passes)."""
    return float(sum(r.get("time_s", 0.0) for r in history_rows if r.get("split") == "train"))


def result_row(run, evaluation: dict, split: str) -> dict:
    """One row of results.csv (:data:`RESULT_COLUMNS`) from a run and its evaluation."""
    c = run.config
    return {"method": method_label(c), "model": c.model,
            "gamma": c.gamma if "gamma" in method_class(c.model).settings() else math.nan,
            "seed": c.seed, **{m: float(evaluation[m]) for m in METRICS if m != "train_time_s"},
            "train_time_s": training_time(run.history_rows), "epochs": sum(r.get("split") == "train"
                                                                           for r in run.history_rows),
            "split": split, "iw_samples": int(evaluation["iw_samples"]), "n_sentences": int(evaluation["n_sentences"]),
            "n_tokens": int(evaluation["n_tokens"]), "config_hash": c.hash(), "run_dir": str(run.path)}


def compare(models: Iterable[str] = DEFAULT_MODELS, seeds: int | Iterable[int] = 3,
            gammas: Iterable[float] = DEFAULT_GAMMAS, base: TrainConfig | None = None, *,
            iw_samples: int = PAPER_IW_SAMPLES, split: str = "test", eval_seed: int = 0,
            out: str | Path | None = None, root: str | Path | None = None,
            progress: bool = False, workers: int = 1, extra: Sequence[TrainConfig] = ()) -> pd.DataFrame:
    """Train (cached) and evaluate the grid of :func:`grid_configs`; one row per run (:data:`RESULT_COLUMNS`).

    ``iw_samples``: K of the IW-NLL (the paper's 500 by default). ``root``: cache folder of
    :func:`~bnvae_core.training.cache.cached_run` (default ``$BNVAE_CACHE`` or ``~/.cache/bnvae/runs``).
    ``out``: also write ``results.csv``, ``summary.csv`` and the figures there
    (:func:`write_outputs`). ``extra``: further configs appended to the grid (e.g. aggressive
    training with fewer seeds). ``workers`` > 1: the runs missing from the cache are first trained
    *and evaluated* by :func:`bnvae_core.experiments.sweep.run_sweep` in that many local processes
    (both cores of a small machine), then read from the cache; the numbers are those of
    ``workers=1``. The wall time of the call is ``result.attrs['wall_s']``."""
    if iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {iw_samples}")
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    t0 = time.perf_counter()
    configs = grid_configs(base if base is not None else TrainConfig(**COMPARE_SIZE), models, seeds, gammas,
                           conditional=False) + list(extra)
    if workers > 1:
        from functools import partial

        from .sweep import run_sweep
        run_sweep(configs, cache_root=root, workers=workers, progress=False, log=lambda message: None,
                  evaluate=partial(_evaluate_in_trial, split=split, iw_samples=iw_samples, seed=eval_seed))
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


def _evaluate_in_trial(run, split: str, iw_samples: int, seed: int) -> dict:
    """:func:`evaluate_run` inside a sweep trial (cached in the run folder, read back by :func:`compare`)."""
    evaluation = evaluate_run(run, split, iw_samples, seed)
    return {f"eval_{m}": evaluation[m] for m in ("nll", "kl", "mi", "au")}


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
    out = {}
    for method, rows in results.groupby("method", sort=False):
        chosen = rows[rows["seed"] == (seed if seed is not None else rows["seed"].min())]
        if not chosen.empty:
            out[method] = pd.DataFrame(read_jsonl(Path(chosen["run_dir"].iloc[0]) / "metrics.jsonl"))
    return out


def write_outputs(results: pd.DataFrame, out: str | Path) -> dict:
    """``out/results.csv``, ``out/summary.csv``, ``out/kl_vs_nll.{png,svg}``,
    ``out/training_curves.{png,svg}``; returns ``{name: path}``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.csv", "summary": out / "summary.csv"}
    atomic_write_text(paths["results"], results.to_csv(index=False))
    atomic_write_text(paths["summary"], summarize(results).to_csv(index=False))
    fig = plots.kl_nll_frontier(results)
    paths["kl_vs_nll"] = plots.save_figure(fig, out, "kl_vs_nll")[0]
    fig = plots.training_curves(histories(results), metrics=("rec", "kl", "elbo", "au"))
    paths["training_curves"] = plots.save_figure(fig, out, "training_curves")[0]
    return paths


def seed_influence(results: pd.DataFrame, metrics: Sequence[str] = ("nll", "kl", "mi")) -> pd.DataFrame:
    """How much one seed moves each method's mean: one row per method and metric with ``mean``,
    ``median``, ``std`` (ddof 1) over seeds, the ``extreme_seed`` (the seed farthest from the median),
    its ``extreme_value``, ``mean_minus_median`` and ``extreme_share`` = |extreme − median| / Σ_s |v_s −
    median| (1: the whole spread is that one seed; NaN when every seed agrees). Methods with one
    seed get ``extreme_seed`` NaN."""
    missing = [c for c in ("method", "seed", *metrics) if c not in results.columns]
    if missing:
        raise ValueError(f"seed_influence: results lack column(s) {', '.join(missing)}")
    rows = []
    for method, group in results.groupby("method", sort=False):
        for m in metrics:
            values = group[m].to_numpy(float)
            median = float(np.median(values))
            dev = np.abs(values - median)
            i = int(np.argmax(dev))
            several = len(values) > 1
            rows.append({"method": method, "metric": m, "n_seeds": len(values), "mean": float(values.mean()),
                         "median": median, "std": float(values.std(ddof=1)) if several else math.nan,
                         "extreme_seed": int(group["seed"].iloc[i]) if several else math.nan,
                         "extreme_value": float(values[i]) if several else math.nan,
                         "mean_minus_median": float(values.mean()) - median,
                         "extreme_share": float(dev[i] / dev.sum()) if several and dev.sum() > 0 else math.nan})
    return pd.DataFrame(rows)


def bnvae_sweep_config(gamma: float, seed: int = 0, smoke: bool = False) -> TrainConfig:
    """The BN-VAE of the γ sweep at the teaching comparison size (:data:`COMPARE_SIZE`, or
    :data:`~bnvae_core.config.SMOKE_SIZE` on top with ``smoke``): the config notebook 08 trains for
    every (γ, seed) of its grid. Other notebooks that train BN-VAE at several γ (the trained γ
    explorer) use this same config, so every model is trained once and shared through the cache."""
    size = {**COMPARE_SIZE, **(SMOKE_SIZE if smoke else {})}
    return TrainConfig(model="bnvae", gamma=gamma, seed=seed, **size)
