"""How collapsed is a model, read off per-sentence KL tables (notebook 2).

The tables are those of :func:`bnvae_core.metrics.text.kl_per_example`: one row per sentence,
columns ``sentence, length, label, kl`` (nats) and ``kl_0 … kl_{nz−1}``; the functions here take
a dict model name → table and return one row per model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

#: nats; a sentence whose KL is below t is (almost) encoded as the prior
THRESHOLDS = (0.01, 0.1, 1.0)


def fraction_below(tables: Mapping[str, pd.DataFrame], thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """Fraction of sentences with KL < t, one row per model, one column ``"KL < t nats"`` per
    threshold t, then the mean and the median per-sentence KL (nats). A collapsed model has
    (nearly) every sentence below the smallest threshold."""
    return pd.DataFrame({name: {f"KL < {t:g} nats": float((df["kl"] < t).mean()) for t in thresholds}
                         | {"mean KL (nats)": float(df["kl"].mean()), "median KL (nats)": float(df["kl"].median())}
                         for name, df in tables.items()}).T


def length_kl_correlation(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Pearson correlation between sentence length (tokens) and per-sentence KL: one row
    ``"Pearson r(length, KL)"``, one column per model; NaN where the KL is constant (a fully
    collapsed model, whose KL does not vary)."""
    return pd.DataFrame({name: [float(np.corrcoef(df["length"], df["kl"])[0, 1]) if df["kl"].std() > 0
                                else float("nan")]
                         for name, df in tables.items()}, index=["Pearson r(length, KL)"])


def step_log_summary(steps_by_model: Mapping[str, pd.DataFrame], collapsed_below: float = 0.5) -> pd.DataFrame:
    """What the per-step training log says about collapse, one row per model (notebook 1).

    ``steps_by_model``: name → the ``split == 'step'`` rows of ``run.history`` (columns ``epoch,
    step, kl, kl_weight``: the batch-mean KL in nats per sentence and the KL weight w_t it was
    trained with). Columns:

    * ``peak_kl``, ``peak_step``, ``peak_kl_weight``: the largest logged batch KL, its step and w_t;
    * ``collapse_step``, ``collapse_kl_weight``: the first logged step from which every later logged
      KL stays below ``collapsed_below`` nats, and w_t there (NaN when the last one is not below);
    * ``last_epoch``, ``last_epoch_mean_kl``, ``last_epoch_max_kl``, ``last_epoch_min_kl``: the
      logged KLs of the last epoch (mean, max, min);
    * ``steps_logged``, ``last_step``."""
    rows = []
    for name, df in steps_by_model.items():
        missing = [c for c in ("epoch", "step", "kl", "kl_weight") if c not in df.columns]
        if missing:
            raise ValueError(f"step_log_summary: log of {name!r} lacks column(s) {', '.join(missing)}")
        if df.empty:
            raise ValueError(f"step_log_summary: log of {name!r} has no rows")
        log = df.sort_values("step").reset_index(drop=True)
        kl = log["kl"].to_numpy(float)
        peak = int(np.argmax(kl))
        above = np.flatnonzero(kl >= collapsed_below)
        start = int(above[-1]) + 1 if above.size else 0       # every logged KL from here on is below
        collapsed = start < len(log)
        last = log[log["epoch"] == log["epoch"].max()]["kl"]
        rows.append({"model": name, "peak_kl": float(kl[peak]), "peak_step": int(log["step"][peak]),
                     "peak_kl_weight": float(log["kl_weight"][peak]),
                     "collapse_step": int(log["step"][start]) if collapsed else np.nan,
                     "collapse_kl_weight": float(log["kl_weight"][start]) if collapsed else np.nan,
                     "last_epoch": int(log["epoch"].max()), "last_epoch_mean_kl": float(last.mean()),
                     "last_epoch_max_kl": float(last.max()), "last_epoch_min_kl": float(last.min()),
                     "steps_logged": len(log), "last_step": int(log["step"].iloc[-1])})
    return pd.DataFrame(rows)
