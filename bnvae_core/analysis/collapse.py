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
