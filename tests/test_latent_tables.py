"""The tables notebook 4 writes as CSV (analysis.latent.latent_points_table, latent_summary): every
number its prose quotes, checked on synthetic posterior means whose answer is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnvae_core.analysis.latent import latent_points_table, latent_summary


def clustered(n_per: int = 20, classes: int = 3, nz: int = 8, spread: float = 0.05, seed: int = 0):
    """μ of `classes` tight clusters around orthogonal directions, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per)
    centres = 3.0 * np.eye(nz)[:classes]
    return centres[labels] + spread * rng.normal(size=(len(labels), nz)), labels


def test_latent_summary_tells_a_collapsed_code_from_a_clustered_one():
    mu_good, labels = clustered()
    rng = np.random.default_rng(1)
    mu_dead = np.full_like(mu_good, 0.3) + 1e-3 * rng.normal(size=mu_good.shape)   # one point, all the same way
    mus = {"dead": mu_dead, "good": mu_good}
    planes = {name: mu[:, :2] for name, mu in mus.items()}
    logvars = {"dead": np.zeros_like(mu_dead), "good": np.full_like(mu_good, np.log(0.25))}
    pca = {name: mu[:, :2] - mu[:, :2].mean(0) for name, mu in mus.items()}
    table = latent_summary(mus, labels, planes, active_units={"dead": 0, "good": 3}, logvars=logvars,
                           pca=pca, k=5, seed=0).set_index("model")
    assert list(table.index) == ["dead", "good"]
    dead, good = table.loc["dead"], table.loc["good"]
    assert dead.total_variance == pytest.approx(mu_dead.var(0, ddof=1).sum())
    assert dead.total_variance < 1e-4 < 1.0 < good.total_variance
    assert good.max_dim_std == pytest.approx(mu_good.std(0, ddof=1).max())
    assert (dead.active_units, good.active_units) == (0, 3)
    assert (dead.mean_posterior_std, good.mean_posterior_std) == (pytest.approx(1.0), pytest.approx(0.5))
    assert good.pca_half_range == pytest.approx(np.abs(pca["good"]).max())
    assert dead.mean_cosine > 0.99 and good.mean_cosine < 0.5
    assert good.knn_agreement == 1.0                       # tight clusters: every neighbour shares the label
    assert good.silhouette_cosine > 0.9 > good.silhouette_cosine_shuffled
    assert good.silhouette_tsne > 0.5
    assert table.chance_agreement.nunique() == 1 and good.chance_agreement == pytest.approx(1 / 3)
    assert set(table.k) == {5} and set(table.n_sentences) == {60}


def test_latent_summary_needs_only_the_means():
    mu, labels = clustered(n_per=6)
    table = latent_summary({"m": mu}, labels, {"m": mu[:, :2]})
    for optional in ("active_units", "mean_posterior_std", "pca_half_range"):
        assert optional not in table.columns


def test_latent_points_table_one_row_per_model_and_sentence():
    labels = np.array(["a", "b", "a"])
    pca = {"VAE": np.arange(6.0).reshape(3, 2), "BN-VAE": -np.arange(6.0).reshape(3, 2)}
    tsne = {"VAE": np.ones((3, 2)), "BN-VAE": np.zeros((3, 2))}
    table = latent_points_table(pca, tsne, labels, explained={"VAE": 0.9, "BN-VAE": 0.4})
    assert list(table.columns) == ["model", "sentence", "label", "pc1", "pc2", "tsne1", "tsne2", "pca_explained"]
    assert len(table) == 6 and list(table.model.unique()) == ["VAE", "BN-VAE"]
    bn = table[table.model == "BN-VAE"]
    np.testing.assert_allclose(bn[["pc1", "pc2"]].to_numpy(), pca["BN-VAE"])
    assert list(bn.label) == ["a", "b", "a"] and list(bn.sentence) == [0, 1, 2]
    assert set(bn.pca_explained) == {0.4}
    roundtrip = pd.read_csv(pd.io.common.StringIO(table.to_csv(index=False)))
    pd.testing.assert_frame_equal(roundtrip, table)
    with pytest.raises(ValueError, match="t-SNE"):
        latent_points_table(pca, {"VAE": np.ones((2, 2)), "BN-VAE": np.ones((3, 2))}, labels)


def test_playground_tables_long_texts_and_diversity_per_source_and_model():
    from bnvae_core.analysis.playground import playground_tables
    interp = pd.DataFrame({"VAE": ["a b c"] * 3, "BN-VAE": ["a b c", "a b d", "x y z"]},
                          index=pd.Index([0.0, 0.5, 1.0], name="t"))
    samples = pd.DataFrame({"VAE": ["a b c", "a b c"], "BN-VAE": ["p q", "r s"]},
                           index=pd.Index([1, 2], name="sample"))
    texts, div = playground_tables({"interpolation": interp, "prior samples": samples}, bleu=False)
    assert list(texts.columns) == ["source", "position", "model", "text"] and len(texts) == 10
    row = texts[(texts.source == "interpolation") & (texts.model == "BN-VAE") & (texts.position == 0.5)]
    assert list(row.text) == ["a b d"]
    div = div.set_index(["source", "model"])
    vae, bn = div.loc[("interpolation", "VAE")], div.loc[("interpolation", "BN-VAE")]
    assert (vae["n"], vae["unique"], vae["unique_fraction"]) == (3, 1, pytest.approx(1 / 3))
    assert vae.distinct_1 == pytest.approx(3 / 9) and bn.distinct_1 == pytest.approx(7 / 9)   # a b c d x y z
    assert div.loc[("prior samples", "BN-VAE")].unique_fraction == 1.0
    assert np.isnan(vae.self_bleu)                                   # bleu=False: skipped
