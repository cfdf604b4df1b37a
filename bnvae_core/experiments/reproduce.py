"""Reproduce the paper's tables on one dataset: ``python -m bnvae_core reproduce --dataset NAME``.

Zhu et al. (ACL 2020) report, per dataset, a **language-modelling table** (Table 2/3: NLL,
KL, MI, AU and PPL of the test set, NLL by importance weighting with K = 500 samples) and, on
short Yelp, a **few-label classification table** (Table 5: accuracy of a classifier on the
posterior mean μ with 100/500/1k/2k labelled sentences). This module trains the paper's
methods on a dataset, evaluates them and writes both tables and their figures.

Steps:

1. **Configs** (:func:`reproduce_configs`): one :class:`~bnvae_core.config.TrainConfig` per
   (method, seed), with the dataset's *preset* network sizes (:data:`bnvae_core.data.hub.PRESETS`:
   short Yelp emb 128/hid 512, Yahoo and Yelp 512/1024, PTB 256/256). The hub's corpora are
   used whole (no subset, no length filter, no vocabulary cap: they are published
   preprocessed); ``wordnet`` keeps the library's default teaching sizes, so its runs are the
   notebooks' cached models. ``smoke=True`` shrinks everything to :data:`~bnvae_core.config.SMOKE_SIZE`.
2. **Training** through :func:`bnvae_core.experiments.sweep.run_sweep`: every run is a config-hashed
   cache entry (:func:`~bnvae_core.training.cache.cached_run`), trained in this process, in
   ``workers`` local processes, or as Ray tasks (``ray``, on a cluster with
   ``gpus_per_trial``/``cpus_per_trial``). A second call trains nothing.
3. **Evaluation**, inside each trial (:func:`reproduce_trial`, the sweep's ``evaluate`` hook),
   by :func:`bnvae_core.experiments.evaluation.evaluate_run` on the test split (IW-NLL with
   K = ``iw_samples``, default 500); the result is stored in the run folder, so it too is
   computed once.
4. **Classification** where the corpus has labels, inside each trial too
   (:func:`run_classification`): :func:`bnvae_core.analysis.classify.few_label_accuracy`
   with **the paper's protocol** (mode ``reference``: the authors' fine-tuning of encoder + linear
   layer, selected on the labelled validation split) for every label size that fits the
   labelled pool, ``label_seeds`` training seeds per trained model on one labelled set, plus the
   bag-of-words baseline (in the first trial with an encoder). Where the dataset's directory
   holds a few-label file ``train.<n>.txt`` (the paper's short Yelp files, as the hub stores them;
   or your own corpus's) that file *is* the labelled set, otherwise it is drawn from train with
   seed 0; the few-label corpus directory built from a file lies in the run folder
   (``label_files/``). WordNet is
   labelled by lexicographer file (``classes``, default the 10 most frequent).
5. **Outputs** in ``out``, from the rows the trials send back (the driver loads no model):
   ``lm_runs.csv`` (one row per run, with ``status``/``error``/``attempts``: a trial that
   failed after its retries is listed, not tabulated), ``lm_table.csv`` and ``lm_table.md``
   (mean ± std over seeds), ``classification_runs.csv``, ``classification_table.csv``/``.md``
   (accuracy %, mean ± std), ``figures/*.png|svg``, and ``reproduce.json`` (what was run, notes
   such as label sizes left out, the failed trials)
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.classify import PAPER_LABEL_SIZES, few_label_accuracy, labelled_data
from ..config import SMOKE_SIZE, TrainConfig
from ..data.corpus import BUILTIN_CORPORA
from ..data.hub import PRESETS, REGISTRY, resolve_data
from ..errors import ConfigError, RunError
from ..io import atomic_write_text, read_jsonl
from ..methods import method_class, method_label
from ..viz.plots import palette, save_figure, training_curves
from .evaluation import evaluate_run
from .grid import grid_configs
from .sweep import DEFAULT_RETRIES, failure_summary, run_sweep, trial_label

#: the methods of the paper's LM tables that this library implements, in the paper's row order
#: (LSTM-LM, VAE, β-VAE, cyclic annealing, free bits, lagging/aggressive, FB with pretraining, δ-VAE, vMF, BN-VAE)
PAPER_METHODS = ("lm", "vae", "beta", "cyclical", "fb", "aggressive", "pretrain-fb", "delta", "vmf", "bnvae")
#: the default selection: every paper method but the slow aggressive inner loop (ask for it with --methods)
DEFAULT_METHODS = tuple(m for m in PAPER_METHODS if m != "aggressive")
#: label sizes of the paper's classification table (short Yelp)
LABEL_SIZES = PAPER_LABEL_SIZES
#: the reference runs of the paper's corpora (bn-vae configs and README: up to 100 epochs, KL warm-up
#: from 0 over 10 epochs, the lr schedule of bnvae_core.training.loop.LrPlateau); the hub's corpora are
#: also used whole (the data's own limits) and split on whitespace (config.tokenizer 'auto')
PAPER_RUN = dict(epochs=100, warmup_epochs=10, kl_start=0.0)
LM_COLUMNS = ("nll", "kl", "mi", "au", "ppl")


def dataset_settings(dataset: str) -> dict:
    """TrainConfig overrides for ``dataset``: its preset sizes and its run length.

    ``wordnet``: the defaults (the notebooks' models, teaching size). A hub dataset or ``name:n``
    few-label subset: its preset (``DatasetSpec.preset``) and :data:`PAPER_RUN`. A corpus
    directory or a registered name: the default sizes and :data:`PAPER_RUN`. The corpus is read
    as the config's data defaults say (whole, except the built-in corpus)."""
    if dataset in BUILTIN_CORPORA:
        return dict(data=dataset, **PRESETS.get(dataset, {}))
    name = dataset.rpartition(":")[0] if ":" in dataset and dataset.rpartition(":")[2].isdigit() else dataset
    preset = PRESETS.get(name) or (REGISTRY[name].preset if name in REGISTRY else {})
    return dict(data=dataset, **PAPER_RUN, **preset)


def run_length_note(config: TrainConfig, dataset: str) -> str:
    """How a row's training compares with the paper's run: ``'paper: 100 epochs'``, ``'reduced: 8 of
    100 epochs'``, or ``'teaching: 12 epochs'`` on the built-in corpus."""
    if dataset in BUILTIN_CORPORA:
        return f"teaching: {config.epochs} epochs"
    full = PAPER_RUN["epochs"]
    return f"paper: {full} epochs" if config.epochs >= full else f"reduced: {config.epochs} of {full} epochs"


def reproduce_configs(dataset: str, methods: Sequence[str] = DEFAULT_METHODS, seeds: int = 1, *,
                      epochs: int | None = None, smoke: bool = False, **overrides) -> list[TrainConfig]:
    """One config per (method, seed) in that order (:func:`~bnvae_core.experiments.grid.grid_configs`):
    :func:`dataset_settings` + ``overrides`` (+ :data:`SMOKE_SIZE` when ``smoke``; ``epochs`` wins over both)."""
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    settings = {**dataset_settings(dataset), **overrides, **(SMOKE_SIZE if smoke else {})}
    if epochs is not None:
        settings["epochs"] = epochs
    return grid_configs(TrainConfig(**settings), methods, seeds, conditional=False)


def _mean_std(values: pd.Series) -> tuple[float, float]:
    v = values.astype(float).to_numpy()
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def lm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per method, in ``runs`` order: ``method, label, n_seeds`` and
    ``<metric>_mean, <metric>_std`` for NLL, KL, MI (nats), AU (count), PPL."""
    rows = []
    for method, group in runs.groupby("method", sort=False):
        row = {"method": method, "label": group["label"].iloc[0], "n_seeds": len(group),
               "run": group["run"].iloc[0] if "run" in group else ""}
        for col in LM_COLUMNS:
            row[f"{col}_mean"], row[f"{col}_std"] = _mean_std(group[col])
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float, n_seeds: int, digits: int) -> str:
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n_seeds > 1 else f"{mean:.{digits}f}"


def lm_markdown(table: pd.DataFrame, dataset: str, iw_samples: int) -> str:
    """The LM table as Markdown (NLL/KL/MI in nats per sentence, PPL per token)."""
    lines = [f"Language modelling on **{dataset}** (test split; NLL by importance weighting, K = {iw_samples}; "
             "NLL, KL, MI in nats per sentence; mean ± std over seeds)", "",
             "| Model | NLL | KL | MI | AU | PPL | seeds | run |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in table.iterrows():
        cells = [_fmt(r[f"{c}_mean"], r[f"{c}_std"], r["n_seeds"], 1 if c in ("au", "ppl") else 2)
                 for c in LM_COLUMNS]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['n_seeds']} | {r.get('run', '')} |")
    return "\n".join(lines) + "\n"


def _label_file_corpus(dataset: str, n: int, work: Path) -> tuple[str, str] | None:
    """(corpus directory, its description) whose train split is the dataset's own ``train.<n>.txt``
    (the paper's few-label file of short Yelp, as the hub stores it), or ``None`` where there is none.

    The directory is built under ``work`` (``train.txt`` = a copy of the label file, ``valid.txt``
    and ``test.txt`` hard links to the dataset's, copies where links fail)."""
    import shutil

    if dataset in BUILTIN_CORPORA:
        return None
    directory = Path(resolve_data(dataset))
    src = directory / f"train.{n}.txt"
    if not src.is_file():
        return None
    target = work / f"train_{n}"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target / "train.txt")
    for split in ("valid", "test"):
        (target / f"{split}.txt").unlink(missing_ok=True)
        try:
            os.link(directory / f"{split}.txt", target / f"{split}.txt")
        except OSError:
            shutil.copyfile(directory / f"{split}.txt", target / f"{split}.txt")
    return str(target), f"label file {src}"


def run_classification(run, dataset: str, label_sizes: Sequence[int], label_seeds: int, classes: str,
                       work: Path, *, bow: bool = False, progress: bool = False) -> tuple[list[dict], list[str]]:
    """Few-label accuracy of one trained run (the paper's protocol, mode ``reference``) for every label
    size, and with ``bow`` the bag-of-words baseline on the same labels; ``([], [])`` for a run without an encoder.

    Runs inside the run's trial (see :func:`reproduce_trial`). Returns (one row per label size ×
    label seed, notes about sizes left out). ``work``: where the few-label corpus directories
    built from ``train.<n>.txt`` files go (the trial uses its run folder, which every node sees)."""
    if getattr(run.model, "encoder", None) is None:
        return [], []
    notes, tables = [], []
    labelled = labelled_data(run, classes=classes)
    for n in label_sizes:
        label_file = _label_file_corpus(dataset, n, work)
        if label_file is None and n > len(labelled.pool):
            notes.append(f"{n} labels left out: the labelled training pool has {len(labelled.pool)} sentences")
            continue
        if label_file is not None:     # the file is the labelled set (all of it)
            kwargs, source = dict(data=label_file[0], seeds=label_seeds), label_file[1]
        else:
            kwargs, source = dict(labelled=labelled, seeds=label_seeds), "drawn from train (seed 0)"
        t = few_label_accuracy(run, n, mode="reference", classes=classes, cache=True, progress=progress,
                               **kwargs)
        t["train_seed"], t["label_source"] = run.config.seed, source
        tables.append(t)
        if bow:
            t = few_label_accuracy(run, n, mode="bow", classes=classes, cache=True, **kwargs)
            t["train_seed"], t["label_source"] = -1, source
            tables.append(t)
    rows = pd.concat(tables, ignore_index=True).to_dict("records") if tables else []
    return rows, notes


def reproduce_trial(run, *, dataset: str, iw_samples: int, classify: dict | None = None,
                    bow_hash: str | None = None) -> dict:
    """``reproduce``'s ``evaluate`` hook, run inside each trial (on whichever node trained it): the
    test-set evaluation (:func:`~bnvae_core.experiments.evaluation.evaluate_run`: IW-NLL with K =
    ``iw_samples``, PPL, KL, MI, AU), whether the corpus has labels, and — with ``classify``
    (:func:`run_classification`'s ``label_sizes``, ``label_seeds``, ``classes``) on a labelled
    corpus — the classification rows (the BoW baseline in the trial whose config hash is
    ``bow_hash``). The driver only gathers these columns."""
    result = evaluate_run(run, iw_samples=iw_samples)
    columns = {k: result[k] for k in ("nll", "ppl", "kl", "mi", "au", "elbo", "rec", "n_sentences")}
    columns["labelled"] = bool((run.corpus.train.labels >= 0).any())
    if classify is not None and columns["labelled"]:
        rows, notes = run_classification(run, dataset, work=Path(run.path) / "label_files",
                                         bow=run.config.hash() == bow_hash, **classify)
        columns.update(classification=rows, classification_notes=notes)
    return columns


def classification_table(results: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Accuracy (%) mean ± std over all (training seed, label seed) pairs, per model × label size."""
    rows = []
    for (model, n), group in results.groupby(["model", "labels"], sort=False):
        mean, std = _mean_std(100 * group["accuracy"])
        rows.append({"method": model, "label": labels.get(model, "BoW (TF-IDF) baseline"), "labels": int(n),
                     "accuracy_mean": mean, "accuracy_std": std, "n_fits": len(group),
                     "majority_accuracy": 100 * float(group["majority_accuracy"].iloc[0]),
                     "n_classes": int(group["n_classes"].iloc[0]), "n_test": int(group["n_test"].iloc[0]),
                     "label_source": group["label_source"].iloc[0]})
    return pd.DataFrame(rows)


def classification_markdown(table: pd.DataFrame, dataset: str, classes: str) -> str:
    sizes = sorted(table["labels"].unique())
    first = table.iloc[0]
    lines = [f"Few-label classification on **{dataset}** ({first['n_classes']} classes"
             f"{'' if dataset not in ('wordnet',) else f', {classes} lexicographer files'}; the paper's protocol: "
             f"encoder + linear layer fine-tuned, selected on labelled valid; test accuracy %, mean ± std over fits; "
             f"{first['n_test']} test sentences; "
             f"majority class {first['majority_accuracy']:.1f} %)", "",
             "| Model | " + " | ".join(f"#label {n}" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for method, group in table.groupby("method", sort=False):
        by_n = {int(r["labels"]): r for _, r in group.iterrows()}
        cells = [_fmt(by_n[n]["accuracy_mean"], by_n[n]["accuracy_std"], by_n[n]["n_fits"], 1) if n in by_n else "–"
                 for n in sizes]
        lines.append(f"| {group['label'].iloc[0]} | " + " | ".join(cells) + " |")
    sources = sorted(set(table["label_source"]))
    lines += ["", "Labelled sentences: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def lm_figure(runs: pd.DataFrame, dataset: str):
    """Four panels (NLL, KL, MI in nats; AU): one point per run, a bar per method (its mean)."""
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(runs["method"]))
    labels = [runs.loc[runs.method == m, "label"].iloc[0] for m in methods]
    colours = palette(len(methods))
    fig = Figure(figsize=(10, 6.5))
    axes = fig.subplots(2, 2)
    panels = (("nll", "test NLL (nats per sentence)"), ("kl", "KL(q(z|x) ‖ p(z)) (nats)"),
              ("mi", "mutual information I(x; z) (nats)"), ("au", "active units (count)"))
    x = np.arange(len(methods))
    for ax, (col, ylabel) in zip(axes.ravel(), panels):
        means = [runs.loc[runs.method == m, col].astype(float).mean() for m in methods]
        ax.bar(x, means, color=colours, alpha=0.6, label="mean over seeds")
        for i, m in enumerate(methods):
            vals = runs.loc[runs.method == m, col].astype(float)
            ax.plot(np.full(len(vals), i), vals, "o", color="black", markersize=3,
                    label="one seed" if i == 0 else None)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize="small")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("method")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(f"{dataset}: test-set metrics per method")
    fig.tight_layout()
    return fig


def classification_figure(table: pd.DataFrame, dataset: str):
    """Accuracy (%) against the number of labelled sentences (log axis), one line per model."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    methods = list(dict.fromkeys(table["method"]))
    for colour, (method, marker) in zip(palette(len(methods)), zip(methods, "osD^v<>ph*")):
        rows = table[table.method == method].sort_values("labels")
        ax.errorbar(rows["labels"], rows["accuracy_mean"], yerr=rows["accuracy_std"], marker=marker,
                    color=colour, capsize=3, label=rows["label"].iloc[0])
    ax.axhline(table["majority_accuracy"].iloc[0], color="grey", linestyle=":", label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training sentences (count, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}: few-label classification on μ")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _lm_outputs(table: pd.DataFrame, configs: Sequence[TrainConfig], dataset: str, iw_samples: int,
                out: Path) -> tuple[dict, list[str]]:
    """``lm_runs.csv`` (every trial, failed ones with their error), the LM table and figures of the
    trials that succeeded, and the training curves of their seed-0 runs (read from the run folders)."""
    rows = []
    for config, (_, r) in zip(configs, table.iterrows()):
        ok = r["status"] == "ok"
        rows.append({"method": config.model, "label": method_label(config), "seed": config.seed,
                     "run": run_length_note(config, dataset), "status": r["status"], "error": r["error"],
                     "attempts": r["attempts"],
                     **{k: r[k] if ok else math.nan for k in ("nll", "ppl", "kl", "mi", "au", "elbo", "rec")},
                     "n_sentences": r["n_sentences"] if ok else math.nan, "iw_samples": iw_samples,
                     "config_hash": config.hash(), "run_dir": r["run_dir"]})
    lm_runs = pd.DataFrame(rows)
    written, notes = {"lm_runs": out / "lm_runs.csv"}, []
    atomic_write_text(written["lm_runs"], lm_runs.to_csv(index=False))
    done = lm_runs[lm_runs.status == "ok"]
    if done.empty:
        return written, ["every trial failed: no LM table"]
    lm = lm_table(done)
    written.update(lm_table=out / "lm_table.csv", lm_table_md=out / "lm_table.md")
    atomic_write_text(written["lm_table"], lm.to_csv(index=False))
    atomic_write_text(written["lm_table_md"], lm_markdown(lm, dataset, iw_samples))
    written["lm_figure"] = save_figure(lm_figure(done, dataset), out / "figures", "lm_metrics")[0]
    curves = {}
    for _, r in done[done.seed == 0].iterrows():
        try:
            curves[r["label"]] = pd.DataFrame(read_jsonl(Path(r["run_dir"]) / "metrics.jsonl"))
        except RunError as err:
            notes.append(f"no training curve for {r['label']}: {err}")
    if any(not h.empty for h in curves.values()):
        curves = {k: h for k, h in curves.items() if not h.empty}
        written["curves_figure"] = save_figure(training_curves(curves), out / "figures", "training_curves")[0]
    return written, notes


def _classification_outputs(table: pd.DataFrame, configs: Sequence[TrainConfig], dataset: str, classes: str,
                            out: Path) -> tuple[dict, list[str]]:
    """The classification table and figure from the rows the trials sent back (the models' rows in
    ``configs`` order, then the BoW baseline's)."""
    done = table[table.status == "ok"]
    if done.empty:                  # every trial failed: reproduce.json lists them
        return {}, []
    if "labelled" not in done or not done["labelled"].astype(bool).any():
        return {}, [f"{dataset}: the training split has no labels, so no classification table"]
    rows, notes = [], []
    for _, r in done.iterrows():
        if isinstance(r.get("classification"), list):
            rows += r["classification"]
            notes = notes or list(r["classification_notes"])
    results = pd.DataFrame(rows)
    if results.empty:
        return {}, notes + ["no run with an encoder: no classification table"]
    results = pd.concat([results[results.model != "bow"], results[results.model == "bow"]], ignore_index=True)
    if not (results.model == "bow").any():
        notes.append("no BoW baseline: the trial that computes it failed")
    ctable = classification_table(results, {c.model: method_label(c) for c in configs})
    written = {"classification_runs": out / "classification_runs.csv",
               "classification_table": out / "classification_table.csv",
               "classification_table_md": out / "classification_table.md"}
    atomic_write_text(written["classification_runs"], results.to_csv(index=False))
    atomic_write_text(written["classification_table"], ctable.to_csv(index=False))
    atomic_write_text(written["classification_table_md"], classification_markdown(ctable, dataset, classes))
    written["classification_figure"] = save_figure(classification_figure(ctable, dataset), out / "figures",
                                                   "classification")[0]
    return written, notes


def _check_reproduce_options(iw_samples: int, label_seeds: int, label_sizes: Sequence[int], out: Path) -> None:
    if iw_samples < 1:
        raise ConfigError(f"iw_samples must be >= 1, got {iw_samples}")
    if label_seeds < 1:
        raise ConfigError(f"label_seeds must be >= 1, got {label_seeds}")
    if any(n < 1 for n in label_sizes):
        raise ConfigError(f"label sizes must be >= 1, got {list(label_sizes)}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")


def reproduce(dataset: str, out: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS, seeds: int = 1,
              epochs: int | None = None, iw_samples: int = 500, smoke: bool = False, workers: int = 1,
              ray: bool | str = False, cache_root: str | Path | None = None, label_sizes: Sequence[int] = LABEL_SIZES,
              label_seeds: int = 5, classes: str = "top10", classify: bool = True, progress: bool = False,
              cpus_per_trial: float = 1, gpus_per_trial: float = 0, retries: int = DEFAULT_RETRIES,
              tensorboard: str | Path | None = None, log=None, **overrides) -> dict:
    """Train, evaluate and tabulate (see the module docstring); return ``{name: path}`` of the outputs.

    Training, evaluation and classification run in the sweep's trials (:func:`reproduce_trial`;
    ``workers``, ``ray``, ``cpus_per_trial``, ``gpus_per_trial``, ``retries``, ``tensorboard``,
    ``log``: see :func:`~bnvae_core.experiments.sweep.run_sweep`); this function only gathers their
    rows. A trial that still fails after its retries is a row of ``lm_runs.csv`` with its error;
    the tables are made from the others, and ``reproduce.json`` lists it under ``failed`` (with
    ``failure_summary``, the one line the command line prints before exiting with status 1)."""
    out = Path(out)
    _check_reproduce_options(iw_samples, label_seeds, label_sizes, out)
    configs = reproduce_configs(dataset, methods, seeds, epochs=epochs, smoke=smoke, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    spec = (dict(label_sizes=[int(n) for n in label_sizes], label_seeds=label_seeds, classes=classes)
            if classify else None)
    bow_hash = next((c.hash() for c in configs if method_class(c.model).posterior != "none"), None)
    hook = functools.partial(reproduce_trial, dataset=dataset, iw_samples=iw_samples, classify=spec, bow_hash=bow_hash)
    table = run_sweep(configs, cache_root=cache_root, workers=workers, ray=ray, cpus_per_trial=cpus_per_trial,
                      gpus_per_trial=gpus_per_trial, retries=retries, evaluate=hook, tensorboard=tensorboard,
                      progress=progress, log=log)
    written, notes = _lm_outputs(table, configs, dataset, iw_samples, out)
    if classify:
        more, cnotes = _classification_outputs(table, configs, dataset, classes, out)
        written.update(more)
        notes += cnotes
    failed = [{"trial": trial_label(c), "config_hash": c.hash(), "error": r["error"], "attempts": int(r["attempts"])}
              for c, (_, r) in zip(configs, table.iterrows()) if r["status"] != "ok"]
    notes += [f"{f['trial']} failed after {f['attempts']} attempt(s): {f['error']}" for f in failed]
    meta = {"dataset": dataset, "methods": list(methods), "seeds": seeds, "smoke": smoke, "iw_samples": iw_samples,
            "epochs": configs[0].epochs, "emb_dim": configs[0].emb_dim, "hidden_dim": configs[0].hidden_dim,
            "configs": [c.to_dict() for c in configs], "notes": notes, "failed": failed,
            "failure_summary": failure_summary(table), "outputs": {k: str(v) for k, v in written.items()}}
    written["meta"] = out / "reproduce.json"
    atomic_write_text(written["meta"], json.dumps(meta, indent=1) + "\n")
    return written
