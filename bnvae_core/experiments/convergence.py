"""NLL over training: when does BN-VAE's NLL go below the VAE's and the LSTM-LM's?

The paper's language-modelling tables (Zhu et al. 2020, Table 2) report BN-VAE with a lower
NLL than the VAE and the LSTM-LM, on models trained to convergence (up to 100 epochs with the
reference schedule). Short runs can show the opposite: a collapsed VAE *is* an LSTM-LM, which
is quick to train, while BN-VAE pays its KL (≥ nγ²/2 nats per sentence) from the first step
and only wins once its decoder has learnt to use z. :func:`nll_over_training` trains each
config with the standard trainer and a callback, :class:`EpochNLL`, that measures the
importance-weighted NLL of a fixed, seeded subset of the validation split after every epoch
(the weights as they are then, not the best ones); :func:`overtake_epochs` reads off the
first epoch from which a method's NLL stays below every other method's.

Each curve is cached as CSV under ``cache_dir()/convergence`` (the cache entry name — config
hash and data digest — plus the measurement settings), so a second call reads it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..io import atomic_write_text
from ..methods import method_label
from ..metrics.text import iw_nll, perplexity
from ..training.cache import cache_dir, cached_run, entry_name
from ..training.loop import Callback, Trainer


class EpochNLL(Callback):
    """After every epoch: IW-NLL (K = ``k``) of ``sentences`` seeded validation sentences, and the
    epoch's training and validation rows' KL, with the lr of that epoch."""

    def __init__(self, sentences: int = 500, k: int = 20, seed: int = 0):
        self.sentences, self.k, self.seed = sentences, k, seed
        self.rows: list[dict] = []
        self.probe = None

    def on_fit_start(self, trainer) -> None:
        valid = trainer.corpus.valid
        n = min(self.sentences, len(valid))
        self.probe = valid.subset(np.sort(np.random.default_rng(self.seed).choice(len(valid), n, replace=False)))

    def on_epoch_end(self, trainer, train_row: dict, valid_row: dict) -> None:
        nll = iw_nll(trainer.model, self.probe, k=self.k, seed=self.seed)
        self.rows.append({"epoch": train_row["epoch"], "nll": float(nll.mean()), "ppl": perplexity(nll, self.probe),
                          "kl_valid": valid_row.get("kl"), "kl_train": train_row["kl"], "lr": train_row["lr"],
                          "step": train_row["step"], "time_s": train_row["time_s"]})


def nll_curve(config: TrainConfig, *, sentences: int = 500, k: int = 20, root: str | Path | None = None,
              use_cache: bool = True, progress: bool = False) -> pd.DataFrame:
    """One config's :class:`EpochNLL` rows (columns ``epoch, nll, ppl, kl_valid, kl_train, lr, step,
    time_s`` plus ``method``, ``model``, ``seed``), cached as CSV. The model is trained through the
    run cache (:func:`~bnvae_core.training.cache.cached_run`), so ``reproduce``/``evaluate`` of the
    same config later load it instead of training again; a cached run without its curve is trained
    again in memory to measure it."""
    root = Path(root) if root is not None else cache_dir() / "convergence"
    path = root / f"{entry_name(config)}-n{sentences}-k{k}.csv"
    if use_cache and path.exists():
        return pd.read_csv(path)
    curve = EpochNLL(sentences, k, seed=0)
    cached_run(config, progress=progress, callbacks=[curve])
    if not curve.rows:                        # the run came from the cache: measure it again
        Trainer(config, callbacks=[curve]).fit()
    df = pd.DataFrame(curve.rows)
    df.insert(0, "method", method_label(config))
    df.insert(1, "model", config.model)
    df.insert(2, "seed", config.seed)
    if use_cache:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, df.to_csv(index=False))
    return df


def nll_over_training(configs: Sequence[TrainConfig], **kwargs) -> pd.DataFrame:
    """:func:`nll_curve` of every config, one table (``method`` tells them apart)."""
    return pd.concat([nll_curve(c, **kwargs) for c in configs], ignore_index=True)


def final_test_metrics(configs: Sequence[TrainConfig], *, iw_samples: int = 100,
                       progress: bool = False) -> pd.DataFrame:
    """The test-split metrics of each config's trained (validation-selected) model, one row per
    config: ``method, model, seed`` and :func:`~bnvae_core.experiments.evaluation.evaluate_run`'s
    ``nll`` (IW-NLL, K = ``iw_samples``), ``ppl``, ``kl``, ``mi``, ``au``, ``n_sentences``,
    ``n_tokens``. The models come from the run cache (the same entries :func:`nll_curve` trains)."""
    from .evaluation import evaluate_run
    rows = []
    for config in configs:
        run = cached_run(config, progress=progress)
        metrics = evaluate_run(run, "test", iw_samples=iw_samples)
        rows.append({"method": method_label(config), "model": config.model, "seed": config.seed,
                     **{k: metrics[k] for k in ("nll", "ppl", "kl", "mi", "au", "n_sentences", "n_tokens")},
                     "iw_samples": iw_samples})
    return pd.DataFrame(rows)


def overtake_epochs(curves: pd.DataFrame, method: str) -> dict[str, int | None]:
    """For every other method of ``curves``: the first epoch from which ``method``'s NLL is below
    that method's at every later epoch both have (None: never, within the curves)."""
    mine = curves[curves["method"] == method].groupby("epoch")["nll"].mean()
    out = {}
    for other, rows in curves[curves["method"] != method].groupby("method", sort=False):
        theirs = rows.groupby("epoch")["nll"].mean()
        epochs = [e for e in mine.index if e in theirs.index]
        below = [mine[e] < theirs[e] for e in epochs]
        first = None
        for i, e in enumerate(epochs):
            if all(below[i:]):
                first = int(e)
                break
        out[other] = first
    return out
