"""BN-VAE's KL floor measured (notebook 3): ``E_B[KL] ≥ ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²) ≈ n γ²/2``
(Zhu et al. 2020 §3.2), with s_j² the (biased) variance of the pre-BN mean μ_j over the batch.

* :func:`floor_vs_spread` — the floor of crafted batches of a bare :class:`BNHead` against their
  spread s², where the ``s²/(s²+ε)`` factor shows;
* :func:`bound_sweep_table` — per trained BN-VAE of a γ sweep, train-mode batch KL against the
  bound, with the numbers the training log kept;
* :func:`floor_decomposition` — where a trained model's evaluation-mode floor comes from
  (variance of μ̂ vs its mean β, and the drift of the running variance).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.corpus import EncodedSplit
from ..metrics.text import kl_per_example, posterior_params, train_mode_batch_kl
from ..models.layers import BNHead, nominal_kl_bound
from .latent import pre_bn_means


def floor_vs_spread(gamma: float, nz: int, eps: float = 1e-5, deltas: Sequence[float] | None = None,
                    batch_size: int = 64, seed: int = 0) -> pd.DataFrame:
    """The KL floor of crafted batches against their spread, with nothing but a BN layer.

    For each spread δ (default 11 values from 1e-5 to 1, log-spaced) a batch of pre-BN means
    ``μ = 1 + δ·N(0, I)`` of shape (batch_size, nz) (seeded generator) goes through a fresh
    training-mode :class:`BNHead` (γ, ε). One row per δ: ``spread δ``, ``s² (mean over j)`` (the
    biased batch variance), the measured ``½ mean ‖μ̂‖² (nats)`` and the exact
    ``½Σ γ² s²/(s²+ε) (nats)`` (β = 0) — equal up to rounding, and far below n γ²/2 when s² ≪ ε."""
    deltas = np.geomspace(1e-5, 1.0, 11) if deltas is None else deltas
    generator = torch.Generator().manual_seed(seed)
    head = BNHead(nz, gamma=gamma, eps=eps).train()
    rows = []
    for delta in deltas:
        mu_pre = 1.0 + delta * torch.randn(batch_size, nz, generator=generator)
        with torch.no_grad():
            mu_hat = head(mu_pre)
        rows.append({"spread δ": delta, "s² (mean over j)": float(mu_pre.var(0, unbiased=False).mean()),
                     "½ mean ‖μ̂‖² (nats)": 0.5 * float(mu_hat.pow(2).sum(1).mean()),
                     "exact ½Σ γ² s²/(s²+ε) (nats)": float(head.last_kl_bound)})
    return pd.DataFrame(rows)


def bound_sweep_table(sweep: Mapping[float, object], nz: int, batch_size: int = 32,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[float, pd.DataFrame]]:
    """One row per γ of a sweep of trained BN-VAEs (``sweep``: γ → :class:`Run`), index ``γ``.

    Columns: ``n γ²/2``; over the train-mode batches of the final model
    (:func:`train_mode_batch_kl`, seeded, ``batch_size``): the mean and smallest batch KL, the mean
    exact floor and the smallest shrink factor mean_j s²/(s²+ε); ``½Σ(γ²+β²)``; from the training
    log (``run.history``): the last epoch's KL and smallest batch KL and the smallest
    ``kl − exact floor`` of any epoch; the evaluation-mode KL on the train sentences and on the
    last epoch's valid rows (nats). Also returns γ → the per-batch table of each model."""
    rows, batch_tables = [], {}
    for gamma, run in sweep.items():
        hist = run.history
        train_hist, valid_hist = hist[hist["split"] == "train"], hist[hist["split"] == "valid"]
        batches = train_mode_batch_kl(run.model, run.corpus.train, batch_size=batch_size, seed=seed)
        batch_tables[gamma] = batches
        rows.append({
            "γ": gamma, "n γ²/2": nominal_kl_bound(gamma, nz),
            "train-mode KL (final model)": batches["kl"].mean(),
            "smallest train-mode batch KL": batches["kl"].min(),
            "exact floor (mean over batches)": batches["bound"].mean(),
            "shrink factor (min over batches)": batches["shrink"].min(),
            "½Σ(γ²+β²)": float(run.model.bn_head.kl_lower_bound()),
            "history: last epoch kl": train_hist["kl"].iloc[-1],
            "history: last epoch kl_batch_min": train_hist["kl_batch_min"].iloc[-1],
            "history: min kl − exact floor": train_hist["kl_minus_batch_bound_min"].min(),
            "eval-mode KL (train sentences)": kl_per_example(run.model, run.corpus.train)["kl"].mean(),
            "history: eval-mode KL (valid, last epoch)": valid_hist["kl"].iloc[-1],
        })
    return pd.DataFrame(rows).set_index("γ"), batch_tables


def floor_decomposition(model, split: EncodedSplit) -> dict[str, float]:
    """Where the evaluation-mode KL floor ``½ E_x ‖μ̂‖²`` of a trained BN-VAE comes from, on ``split``.

    ``½ E_x ‖μ̂‖² = ½ Σ_j Var_x μ̂_j + ½ Σ_j (E_x μ̂_j)²`` (μ̂: (N, nz) post-BN means in evaluation
    mode). Also ``median_j Var_x μ_j / v̄_j``: how the data variance of the pre-BN means compares
    with BN's running variance v̄ (1: the running statistics match the data; < 1 shrinks the
    variance part below γ²), and ``½ Σ_j β_j²``, the learned shift's share. Nats."""
    data_var = pre_bn_means(model, split).var(0)                            # Var_x μ_j, (nz,)
    running_var = model.bn_head.bn.running_var.detach().cpu().numpy()       # v̄_j, (nz,)
    mu_hat, _ = posterior_params(model, split)                              # evaluation-mode μ̂, (N, nz)
    beta = model.bn_head.beta.detach().cpu().numpy()
    return {"median_j Var_x μ_j / v̄_j": float(np.median(data_var / running_var)),
            "½ Σ_j Var_x μ̂_j": 0.5 * float(mu_hat.var(0).sum()),
            "½ Σ_j β_j²": 0.5 * float((beta ** 2).sum()),
            "½ Σ_j (E_x μ̂_j)²": 0.5 * float((mu_hat.mean(0) ** 2).sum()),
            "eval-mode floor ½ E_x ‖μ̂‖²": 0.5 * float((mu_hat ** 2).sum(1).mean())}
