"""Tables the notebooks used to build inline, now in the package: per-sentence KL summaries
(analysis.collapse), the few-label accuracy table (analysis.classify), the CVAE metrics table
(analysis.generate) and the index's notebook titles (experiments.figures)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bnvae_core.analysis import generate
from bnvae_core.analysis.classify import accuracy_table, summarize
from bnvae_core.analysis.collapse import THRESHOLDS, fraction_below, length_kl_correlation
from bnvae_core.analysis.generate import CVAE_TABLE_COLUMNS, cvae_metrics_table
from bnvae_core.experiments.figures import notebook_paths, notebook_title

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def kl_table(kl, length=None) -> pd.DataFrame:
    kl = np.asarray(kl, float)
    return pd.DataFrame({"length": np.arange(3, 3 + len(kl)) if length is None else length, "kl": kl})


def test_fraction_below_counts_and_summaries():
    tables = {"collapsed": kl_table([0.001, 0.002, 0.005, 0.05]), "healthy": kl_table([0.05, 0.5, 2.0, 4.0])}
    out = fraction_below(tables)
    assert list(out.index) == ["collapsed", "healthy"]
    assert list(out.columns) == ["KL < 0.01 nats", "KL < 0.1 nats", "KL < 1 nats", "mean KL (nats)", "median KL (nats)"]
    assert out.loc["collapsed"].iloc[:3].tolist() == [0.75, 1.0, 1.0]
    assert out.loc["healthy"].iloc[:3].tolist() == [0.0, 0.25, 0.5]
    assert out.loc["healthy", "mean KL (nats)"] == pytest.approx(6.55 / 4)
    assert out.loc["healthy", "median KL (nats)"] == pytest.approx(1.25)
    custom = fraction_below(tables, thresholds=[3])
    assert list(custom.columns)[0] == "KL < 3 nats" and custom.loc["healthy", "KL < 3 nats"] == 0.75
    assert THRESHOLDS == (0.01, 0.1, 1.0)


def test_length_kl_correlation_signs_and_constant_kl():
    lengths = np.array([3, 5, 8, 13])
    out = length_kl_correlation({"grows": kl_table(2.0 * lengths, lengths), "shrinks": kl_table(-lengths + 20, lengths),
                                 "collapsed": kl_table(np.zeros(4), lengths)})
    assert list(out.index) == ["Pearson r(length, KL)"] and list(out.columns) == ["grows", "shrinks", "collapsed"]
    assert out.loc["Pearson r(length, KL)", "grows"] == pytest.approx(1.0)
    assert out.loc["Pearson r(length, KL)", "shrinks"] == pytest.approx(-1.0)
    assert np.isnan(out.loc["Pearson r(length, KL)", "collapsed"])


def test_accuracy_table_rows_in_run_order_columns_by_label_size():
    results = pd.DataFrame([
        {"model": m, "mode": "frozen", "labels": n, "seed": s, "accuracy": acc, "majority_accuracy": 0.2, "n_test": 95}
        for m, base in (("VAE, frozen", 0.3), ("BN-VAE, frozen", 0.5), ("bag of words", 0.4))
        for n in (500, 100) for s, acc in ((0, base), (1, base + 0.02))])
    table = accuracy_table(summarize(results))
    assert list(table.index) == ["VAE, frozen", "BN-VAE, frozen", "bag of words"]     # as they first appear
    assert list(table.columns) == ["100 labels", "500 labels"]                          # ascending
    assert table.loc["BN-VAE, frozen", "100 labels"] == "51.0 ± 1.4"


def test_cvae_metrics_table_columns_order_and_arguments(monkeypatch):
    calls = []

    def fake_evaluate(model, split, *, n_samples, max_examples, seed):
        calls.append((model, split, n_samples, max_examples, seed))
        return {"extra": "ignored", "unique": 3, "kl": model * 1.5, "au": 2, "bleu_f1": 0.25}

    monkeypatch.setattr(generate, "evaluate_cvae", fake_evaluate)
    runs = {name: SimpleNamespace(model=m, corpus=SimpleNamespace(splits={"test": f"{name}-test", "valid": "v"}))
            for name, m in (("CVAE", 1), ("BN-CVAE", 2))}
    table = cvae_metrics_table(runs, n_samples=7, max_examples=11, seed=5)
    assert list(table.index) == ["CVAE", "BN-CVAE"]
    assert list(table.columns) == ["kl", "au", "bleu_f1", "unique"]       # CVAE_TABLE_COLUMNS order, reported only
    assert all(c in CVAE_TABLE_COLUMNS for c in table.columns)
    assert (table.dtypes == float).all() and table.loc["BN-CVAE", "kl"] == 3.0
    assert calls == [(1, "CVAE-test", 7, 11, 5), (2, "BN-CVAE-test", 7, 11, 5)]
    cvae_metrics_table(runs, split_name="valid")
    assert calls[-1] == (2, "v", 10, 200, 0)


def _notebook(path: Path, cells: list[dict]) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    return path


def md(text) -> dict:
    return {"cell_type": "markdown", "source": text}


def test_notebook_title_first_heading_of_first_markdown_cell(tmp_path):
    code = {"cell_type": "code", "source": "# not a title\n"}
    assert notebook_title(_notebook(tmp_path / "01_a.ipynb", [code, md(["intro\n", "#  The title \n", "# second"])])) \
        == "The title"
    assert notebook_title(_notebook(tmp_path / "02_b.ipynb", [md("## only a subheading"), md("# later")])) == "02_b"
    assert notebook_title(_notebook(tmp_path / "03_c.ipynb", [code])) == "03_c"
    assert notebook_title(_notebook(tmp_path / "04_d.ipynb", [])) == "04_d"


def test_notebook_titles_of_the_suite():
    titles = {p.name: notebook_title(p) for p in notebook_paths(NOTEBOOKS)}
    assert titles["00_index.ipynb"].startswith("0 · Index")
    assert titles["01_posterior_collapse.ipynb"].startswith("1 · Posterior collapse")
    assert all(not t.startswith("#") and t != Path(name).stem for name, t in titles.items())
