"""The lagging-encoder diagnostic of He et al. (ICLR 2019, §3, Fig. 1): posterior-mean space over training.

For a sentence x, He et al. compare two points of the latent space:

* the **approximate posterior mean** μ_x,φ = E_q(z|x)[z] (the encoder's answer; μ for a Gaussian q);
* the **model posterior mean** μ_x,θ = E_p(z|x)[z] under the decoder's true posterior
  p(z|x) ∝ p(x|z) p(z). It is intractable; as in He et al. it is estimated by self-normalised
  importance sampling with q as proposal: with z_k ~ q(z|x), k = 1 … K,

      w_k = p(x|z_k) p(z_k) / q(z_k|x),     μ_x,θ ≈ Σ_k w_k z_k / Σ_k w_k

  (:func:`posterior_means`; the same weights as the IW-NLL of :mod:`bnvae_core.metrics.text`).

Early in training the encoder *lags*: the points (μ_x,φ, μ_x,θ) leave the diagonal μ_x,θ = μ_x,φ,
and the decoder learns to ignore z before the encoder catches up, until both collapse to the
prior mean 0. Aggressive training (:mod:`bnvae_core.methods.aggressive`) keeps the points near the
diagonal; BN-VAE keeps μ_x,φ spread by construction (its BN fixes the batch variance of μ_j).

:func:`posterior_mean_snapshots` trains a config with the standard trainer
(:class:`bnvae_core.training.loop.Trainer`, in memory) and a callback,
:class:`PosteriorMeanSnapshots`, that measures both means of a fixed set of validation sentences
every few steps. Results are cached as CSV (config hash + diagnostic settings) under
``cache_dir()/lagging``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import TrainConfig
from ..data.corpus import EncodedSplit, iterate_batches
from ..io import atomic_write_text
from ..methods import method_label
from ..metrics.text import eval_mode
from ..training.cache import cache_dir, entry_name
from ..training.loop import Callback, Trainer


def posterior_means(model, split: EncodedSplit, k: int = 100, chunk: int = 50, batch_size: int = 32,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(approximate posterior means E_q[z], model posterior means E_p(z|x)[z]) of every sentence of
    ``split``: two (N, nz) float64 arrays, in split order (module docstring for the estimator).

    ``k`` importance samples per sentence (drawn in chunks of ``chunk``), seeded with ``seed``
    without touching the global RNG state. Runs in evaluation mode (no dropout; BN running stats)."""
    if model.nz == 0:
        raise ValueError("posterior_means: the model has no latent variable (lm)")
    if k < 1:
        raise ValueError(f"posterior_means: k must be >= 1, got {k}")
    N, nz = len(split), model.nz
    q_mean, p_mean = np.zeros((N, nz)), np.zeros((N, nz))
    dev = next(model.parameters()).device
    post = model.posterior
    with torch.random.fork_rng(devices=[]), eval_mode(model):
        torch.manual_seed(seed)
        for b in iterate_batches(split, batch_size):
            tokens, lengths = b.tokens.to(dev), b.lengths.to(dev)
            mu, logvar = model.encode(tokens, lengths)
            log_w, zs = [], []
            for s in range(0, k, chunk):
                z = post.sample(mu, logvar, min(chunk, k - s))                        # (B, c, nz)
                log_px_z = -model.reconstruction_nll(tokens, lengths, z)              # (B, c)
                log_w.append((log_px_z + post.prior_log_density(z)
                              - post.log_density(z, mu.unsqueeze(1), logvar.unsqueeze(1))).double())
                zs.append(z.double())
            weights = torch.softmax(torch.cat(log_w, 1), dim=1)                        # (B, K)
            idx = b.index.numpy()
            p_mean[idx] = (weights.unsqueeze(-1) * torch.cat(zs, 1)).sum(1).cpu().numpy()
            q_mean[idx] = post.mean(mu.double(), logvar.double()).cpu().numpy()
    return q_mean, p_mean


def snapshot_rows(model, probe: EncodedSplit, label: str, step: int, epoch: float, kl_weight: float,
                  k: int, seed: int) -> list[dict]:
    """One row per probe sentence: ``model, step, epoch, kl_weight, sentence, gap`` (‖μ_θ − μ_φ‖),
    ``q_norm`` (‖μ_φ‖), ``p_norm`` and ``q_mean_j``, ``p_mean_j`` for every latent dimension j."""
    q, p = posterior_means(model, probe, k=k, seed=seed)
    rows = []
    for i in range(len(probe)):
        row = {"model": label, "step": step, "epoch": epoch, "kl_weight": kl_weight, "sentence": i,
               "gap": float(np.linalg.norm(p[i] - q[i])), "q_norm": float(np.linalg.norm(q[i])),
               "p_norm": float(np.linalg.norm(p[i]))}
        row.update({f"q_mean_{j}": float(q[i, j]) for j in range(q.shape[1])})
        row.update({f"p_mean_{j}": float(p[i, j]) for j in range(p.shape[1])})
        rows.append(row)
    return rows


class PosteriorMeanSnapshots(Callback):
    """A trainer callback: :func:`snapshot_rows` of the ``probe`` sentences before the first step,
    every ``every`` optimizer steps, and at the end (if the last step was not a multiple of ``every``)."""

    def __init__(self, probe: EncodedSplit, label: str, every: int = 10, k: int = 50, seed: int = 0):
        self.probe, self.label, self.every, self.k, self.seed = probe, label, every, k, seed
        self.rows: list[dict] = []

    def _take(self, trainer, kl_weight: float) -> None:
        step = trainer.state.step
        self.rows += snapshot_rows(trainer.model, self.probe, self.label, step, step / trainer.steps_per_epoch,
                                   kl_weight, self.k, self.seed)

    def on_fit_start(self, trainer) -> None:
        self._take(trainer, trainer.kl_weight(0))

    def on_step(self, trainer, batch, terms, kl_weight: float) -> None:
        if trainer.state.step % self.every == 0:
            self._take(trainer, kl_weight)

    def on_fit_end(self, trainer) -> None:
        if trainer.state.step % self.every:
            self._take(trainer, trainer.kl_weight())


def posterior_mean_snapshots(config: TrainConfig, *, sentences: int = 50, every: int = 10, k: int = 50,
                             label: str | None = None, root: str | Path | None = None,
                             use_cache: bool = True) -> pd.DataFrame:
    """Train ``config`` (from scratch, seeded, in memory) with the standard :class:`Trainer` and take
    :class:`PosteriorMeanSnapshots` of ``sentences`` fixed validation sentences (a seeded subset)
    at step 0, every ``every`` training steps and at the end. Cached as CSV under ``root``
    (default ``cache_dir()/lagging``). ``label``: the ``model`` column (default
    :func:`bnvae_core.methods.method_label`)."""
    if sentences < 1 or every < 1:
        raise ValueError(f"posterior_mean_snapshots: sentences and every must be >= 1, got {sentences}, {every}")
    label = label if label is not None else method_label(config)
    root = Path(root) if root is not None else cache_dir() / "lagging"
    path = root / f"{entry_name(config)}-n{sentences}-every{every}-k{k}.csv"     # a changed corpus: a new file
    if use_cache and path.exists():
        df = pd.read_csv(path)
        df["model"] = label
        return df
    trainer = Trainer(config)
    valid = trainer.corpus.valid
    rng = np.random.default_rng(config.seed)
    probe = valid.subset(np.sort(rng.choice(len(valid), min(sentences, len(valid)), replace=False)))
    snapshots = PosteriorMeanSnapshots(probe, label, every, k, config.seed)
    trainer.callbacks.append(snapshots)
    trainer.fit()
    df = pd.DataFrame(snapshots.rows)
    if use_cache:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, df.to_csv(index=False))
    return df


def lag_summary(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Per model and step, over the probe sentences x (μ_θ = E_p(z|x)[z], μ_φ = E_q[z], both (nz,)):

    * ``gap`` = mean_x ‖μ_θ − μ_φ‖ and ``q_norm``, ``p_norm`` (means of ‖μ_φ‖, ‖μ_θ‖), latent units;
    * the spreads ``q_spread`` = sqrt(Σ_j Var_x μ_φ,j), ``p_spread`` = sqrt(Σ_j Var_x μ_θ,j)
      (0: every sentence gets the same mean);
    * ``rms_gap`` = sqrt(mean_x ‖μ_θ − μ_φ‖²);
    * ``relative_gap`` = ``rms_gap`` / ``p_spread``: the gap in units of how much the model's
      posterior means differ between sentences. It is scale-free, so models whose latent spaces
      have very different scales compare: 0 when the encoder matches the model on every
      sentence, and 1 for an encoder that gives every sentence the *average* model mean, because
      for any constant code c, mean_x ‖μ_θ − c‖² = p_spread² + ‖mean_x μ_θ − c‖² ≥ p_spread²
      (≥ 1: the codes predict the model posterior means no better than one code for all
      sentences). NaN where ``p_spread`` is 0."""
    q_cols = [c for c in snapshots.columns if c.startswith("q_mean_")]
    p_cols = [c for c in snapshots.columns if c.startswith("p_mean_")]
    if not q_cols or len(q_cols) != len(p_cols):
        raise ValueError("lag_summary: snapshots need q_mean_j and p_mean_j columns for every dimension j")
    snapshots = snapshots.copy()
    diff = snapshots[p_cols].to_numpy(float) - snapshots[q_cols].to_numpy(float)
    snapshots["_sq_gap"] = (diff ** 2).sum(axis=1)
    grouped = snapshots.groupby(["model", "step"], sort=False)
    table = grouped[["gap", "q_norm", "p_norm"]].mean()
    table["q_spread"] = np.sqrt(grouped[q_cols].var(ddof=0).sum(axis=1))
    table["p_spread"] = np.sqrt(grouped[p_cols].var(ddof=0).sum(axis=1))
    table["rms_gap"] = np.sqrt(grouped["_sq_gap"].mean())
    table["relative_gap"] = table["rms_gap"] / table["p_spread"].where(table["p_spread"] > 0)
    return table.reset_index()


def final_lag(summary: pd.DataFrame) -> pd.DataFrame:
    """The last snapshot of each model of a :func:`lag_summary` table (one row per model, in the
    order the models first appear): where each method ends up after training."""
    if summary.empty or not {"model", "step"} <= set(summary.columns):
        raise ValueError("final_lag: need a non-empty lag_summary table (columns model, step, …)")
    order = list(dict.fromkeys(summary["model"]))
    last = summary.loc[summary.groupby("model", sort=False)["step"].idxmax()]
    return last.set_index("model").loc[order].reset_index()
