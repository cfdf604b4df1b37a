"""Notebook 6's tables (analysis.generate): the per-epoch history as one tidy CSV and the CVAE's
active units measured during training and after it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bnvae_core.analysis import generate
from bnvae_core.analysis.generate import cvae_active_units_table, training_history_table


def rows(kls, au_train=32, au_valid=0):
    out = []
    for epoch, kl in enumerate(kls, 1):
        out += [{"epoch": epoch, "split": "train", "kl": kl, "au": au_train, "n_sentences": 100, "kl_weight": 1.0},
                {"epoch": epoch, "split": "valid", "kl": kl / 2, "au": au_valid},
                {"epoch": epoch, "split": "step", "step": 3 * epoch, "kl": 99.0}]
    return out


def test_training_history_table_keeps_epoch_rows_of_each_model():
    runs = {"CVAE": SimpleNamespace(epoch_rows=rows([1.0, 0.5])), "BN": SimpleNamespace(epoch_rows=rows([7.0, 1.4]))}
    table = training_history_table(runs)
    assert list(table.columns[:5]) == ["model", "epoch", "split", "kl", "au"]
    assert len(table) == 8 and set(table.split) == {"train", "valid"}          # step rows left out
    bn = table[(table.model == "BN") & (table.split == "train")]
    np.testing.assert_allclose(bn.kl, [7.0, 1.4])
    assert list(training_history_table(runs, splits=("valid",)).split.unique()) == ["valid"]


def test_cvae_active_units_table_during_and_after_training(monkeypatch):
    calls = []

    def fake_elbo(model, split, seed=0):
        calls.append((model, len(split), seed))
        return {"au": 0 if model == "collapsed" else 30, "au_posterior": 5, "kl": 0.25}

    class Split(list):
        def subset(self, index):
            return Split(self[i] for i in index)

    monkeypatch.setattr(generate, "cvae_elbo", fake_elbo)
    corpus = SimpleNamespace(splits={"train": Split(range(50)), "valid": Split(range(8))})
    runs = {"CVAE": SimpleNamespace(model="collapsed", corpus=corpus, epoch_rows=rows([1.0, 0.6])),
            "BN": SimpleNamespace(model="bn", corpus=corpus, epoch_rows=rows([7.0, 1.4], au_train=31))}
    table = cvae_active_units_table(runs, max_examples=20, seed=3)
    assert list(table.columns) == ["model", "measured", "split", "examples", "au", "au_posterior", "kl"]
    t = table.set_index(["model", "measured", "split"])
    assert t.loc[("CVAE", "during training", "train")].au == 32          # the last training row
    assert t.loc[("CVAE", "during training", "train")].kl == pytest.approx(0.6)
    assert np.isnan(t.loc[("CVAE", "during training", "train")].au_posterior)
    assert t.loc[("CVAE", "after training", "train")].au == 0
    assert t.loc[("BN", "during training", "train")].au == 31 and t.loc[("BN", "after training", "valid")].au == 30
    assert t.loc[("CVAE", "after training", "train")].examples == 20      # capped at max_examples
    assert t.loc[("CVAE", "after training", "valid")].examples == 8
    assert calls == [("collapsed", 20, 3), ("collapsed", 8, 3), ("bn", 20, 3), ("bn", 8, 3)]
