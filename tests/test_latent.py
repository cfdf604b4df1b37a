"""The latent-space helpers the notebooks import (bnvae_core.analysis.latent) and the BN floor
measurements of notebook 3 (bnvae_core.analysis.bn_floor): known inputs, known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

from bnvae_core.analysis.bn_floor import bound_sweep_table, floor_decomposition, floor_vs_spread
from bnvae_core.analysis.latent import (
    chance_label_agreement,
    cosine_similarities,
    decode_words,
    greedy_decode,
    nearest_neighbours,
    neighbour_label_agreement,
    neighbour_table,
    pca_2d,
    pre_bn_means,
    reconstruct,
    silhouette_table,
    standardize,
    tsne_2d,
)
from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import Vocab, make_batch
from bnvae_core.methods import make_method
from bnvae_core.metrics.text import kl_per_example, posterior_params
from bnvae_core.models.layers import nominal_kl_bound as nominal_floor
from bnvae_core.training.loop import corpus_for

SMALL = {**TINY, "max_train": 200, "max_eval": 40, "emb_dim": 16, "hidden_dim": 16, "nz": 4}


@pytest.fixture(scope="module")
def untrained():
    """An untrained BN-VAE (γ = 0.6) on 200 glosses, with non-trivial BN running statistics and shift."""
    config = TrainConfig(model="bnvae", gamma=0.6, **SMALL)
    corpus = corpus_for(config)
    torch.manual_seed(0)
    model = make_method(config).build_model(len(corpus.vocab)).eval()
    with torch.no_grad():
        model.bn_head.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
        model.bn_head.bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.25]))
        model.bn_head.bn.bias.copy_(torch.tensor([0.0, 0.5, -0.5, 1.0]))
    return model, corpus


# ---------------------------------------------------------------- words

def test_decode_words_stops_at_eos_and_skips_specials():
    vocab = Vocab(["a", "dog", "barks"])                    # ids 4, 5, 6 after <pad> <s> </s> <unk>
    assert decode_words(vocab, [1, 4, 5, 0, 6, 2, 6]) == "a dog barks"
    assert decode_words(vocab, np.array([4, 3, 2, 5])) == "a <unk>"
    assert decode_words(vocab, []) == ""


def test_greedy_decode_and_reconstruct(untrained):
    model, corpus = untrained
    split = corpus.test.subset([0, 1, 2])
    texts = reconstruct(model, split, corpus.vocab)
    mu, _ = posterior_params(model, split)
    assert texts == greedy_decode(model, torch.from_numpy(mu), corpus.vocab) and len(texts) == 3
    assert all(isinstance(t, str) for t in texts)
    same = greedy_decode(model, torch.zeros(2, model.nz), corpus.vocab)   # greedy: the same code, the same sentence
    assert len(same) == 2 and same[0] == same[1]


# ---------------------------------------------------------------- before BN

def test_pre_bn_means_are_the_encoder_means_in_split_order(untrained):
    model, corpus = untrained
    split = corpus.valid
    pre = pre_bn_means(model, split, batch_size=16)         # several length-bucketed batches
    assert pre.shape == (len(split), model.nz) and pre.dtype == np.float32
    for i in (0, 7, len(split) - 1):
        b = make_batch(split, [i])
        with torch.no_grad():
            one = model.encode_raw(b.tokens, b.lengths)[0][0].numpy()
        np.testing.assert_allclose(pre[i], one, rtol=1e-4, atol=1e-5)
    # evaluation-mode BN of the pre-BN means is the posterior mean μ̂
    bn = model.bn_head.bn
    expected = ((pre - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps) * 0.6
                + bn.bias.detach().numpy())
    np.testing.assert_allclose(posterior_params(model, split)[0], expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- projections

def test_standardize_zero_mean_unit_std_and_constant_columns():
    rng = np.random.default_rng(0)
    mu = np.column_stack([3 + 5 * rng.normal(size=50), np.full(50, 7.0), rng.normal(size=50)])
    z = standardize(mu)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), [1, 0, 1], atol=1e-9)


def test_pca_2d_finds_the_two_large_directions():
    rng = np.random.default_rng(0)
    mu = np.column_stack([3 * rng.normal(size=400), 1 * rng.normal(size=400), 0.01 * rng.normal(size=(400, 3))])
    coords, kept = pca_2d(mu)
    assert coords.shape == (400, 2)
    assert 0.999 < kept <= 1.0
    assert abs(np.corrcoef(coords[:, 0], mu[:, 0])[0, 1]) > 0.99     # PC 1: the largest-variance column
    assert abs(np.corrcoef(coords[:, 1], mu[:, 1])[0, 1]) > 0.99
    np.testing.assert_allclose(coords.var(0), [9, 1], rtol=0.2)      # in the units of μ (not standardized)


def test_tsne_2d_shape_seed_and_tiny_sets():
    rng = np.random.default_rng(0)
    mu = np.vstack([rng.normal(size=(15, 4)), 10 + rng.normal(size=(15, 4))])
    a, b = tsne_2d(mu, seed=3), tsne_2d(mu, seed=3)
    assert a.shape == (30, 2) and np.array_equal(a, b)
    # the two groups stay apart: every point's nearest neighbour in the plane is of its own group
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert ((d.argmin(1) < 15) == (np.arange(30) < 15)).all()
    assert tsne_2d(rng.normal(size=(5, 3))).shape == (5, 2)         # perplexity clipped below N − 1


# ---------------------------------------------------------------- neighbours

def test_cosine_similarities_values_and_diagonal():
    mu = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
    sim = cosine_similarities(mu)
    assert sim.shape == (4, 4) and np.all(np.isneginf(np.diag(sim)))
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(sim[off], sim.T[off])
    assert sim[0, 1] == pytest.approx(0.0) and sim[0, 2] == pytest.approx(2 ** -0.5)
    assert sim[1, 2] == pytest.approx(2 ** -0.5) and sim[3, 0] == 0.0     # a zero row: similarity 0


def test_nearest_neighbours_and_label_agreement():
    sim = cosine_similarities(np.array([[1.0, 0.1], [1.0, 0.2], [0.1, 1.0], [0.2, 1.0]]))
    nn = nearest_neighbours(sim, 1)
    assert nn.shape == (4, 1) and nn.ravel().tolist() == [1, 0, 3, 2]
    assert nearest_neighbours(sim, 3)[0].tolist() == [1, 3, 2]
    assert neighbour_label_agreement(nn, np.array([0, 0, 1, 1])) == 1.0
    assert neighbour_label_agreement(nn, np.array([0, 1, 0, 1])) == 0.0
    assert neighbour_label_agreement(nearest_neighbours(sim, 3), np.array([0, 0, 1, 1])) == pytest.approx(1 / 3)
    assert chance_label_agreement(np.array([0, 0, 1, 1])) == 0.5
    assert chance_label_agreement(np.array([2, 2, 2, 0])) == pytest.approx(0.75 ** 2 + 0.25 ** 2)


def test_neighbour_table_ranks_by_cosine():
    mu = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]])
    sims = {"A": cosine_similarities(mu), "B": cosine_similarities(mu[:, ::-1].copy())}
    texts, labels = ["w", "x", "y", "z"], ["L0", "L0", "L1", "L1"]
    table = neighbour_table(sims, texts, labels, queries=[0, 2], n=2)
    assert table.index.names == ["query", "model", "rank"] and len(table) == 2 * 2 * 2
    assert list(table.columns) == ["cosine", "neighbour", "its label"]
    first = table.loc[("[L0] w", "A")]
    assert first["neighbour"].tolist() == ["x", "z"] and first["its label"].tolist() == ["L0", "L1"]
    assert first["cosine"].is_monotonic_decreasing
    assert first["cosine"].iloc[0] == pytest.approx(sims["A"][0, 1])
    assert "w" not in table.loc[("[L0] w",)]["neighbour"].tolist()          # never the query itself


def test_silhouette_table_separated_clusters_beat_shuffled_labels():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    labels = np.repeat([0, 1, 2], 20)
    mu = centres[labels] + 0.3 * rng.normal(size=(60, 3))
    table = silhouette_table({"clustered": mu, "noise": rng.normal(size=(60, 3))}, labels,
                             {"clustered": mu[:, :2], "noise": rng.normal(size=(60, 2))}, seed=0,
                             plane_name="plane")
    assert list(table.index) == ["clustered", "noise"]
    assert list(table.columns) == ["μ, cosine", "μ standardized, Euclidean", "plane", "μ, cosine, shuffled labels"]
    assert table.loc["clustered", "μ, cosine"] > 0.8 and table.loc["clustered", "μ standardized, Euclidean"] > 0.7
    assert abs(table.loc["clustered", "μ, cosine, shuffled labels"]) < 0.1
    assert abs(table.loc["noise", "μ, cosine"]) < 0.1
    again = silhouette_table({"clustered": mu}, labels, {"clustered": mu[:, :2]}, seed=0)
    assert again.loc["clustered", "μ, cosine, shuffled labels"] == table.loc["clustered", "μ, cosine, shuffled labels"]


# ---------------------------------------------------------------- the BN floor

def test_floor_vs_spread_matches_the_exact_floor_and_reaches_the_nominal_bound():
    table = floor_vs_spread(gamma=0.6, nz=32, eps=1e-5, seed=0)
    assert len(table) == 11 and list(table.columns) == [
        "spread δ", "s² (mean over j)", "½ mean ‖μ̂‖² (nats)", "exact ½Σ γ² s²/(s²+ε) (nats)"]
    np.testing.assert_allclose(table["spread δ"], np.geomspace(1e-5, 1.0, 11))
    np.testing.assert_allclose(table["½ mean ‖μ̂‖² (nats)"], table["exact ½Σ γ² s²/(s²+ε) (nats)"],
                               rtol=1e-4, atol=1e-6)
    floor = table["½ mean ‖μ̂‖² (nats)"].to_numpy()
    assert floor[0] < 1e-3 and floor[-1] == pytest.approx(0.5 * 32 * 0.36, rel=1e-3)
    assert np.all(np.diff(floor) > 0)                                         # more spread, higher floor
    s2 = table["s² (mean over j)"].to_numpy()
    np.testing.assert_allclose(s2, table["spread δ"] ** 2, rtol=0.35)        # s² ≈ δ² (64 draws per dimension)
    small = floor_vs_spread(gamma=1.0, nz=4, deltas=[1.0], batch_size=8, seed=1)
    assert len(small) == 1 and small["½ mean ‖μ̂‖² (nats)"].iloc[0] == pytest.approx(2.0, rel=1e-3)


def test_nominal_floor():
    assert float(nominal_floor(0.6, 32)) == pytest.approx(5.76)
    np.testing.assert_allclose(nominal_floor([0.3, 1.0], 32), [1.44, 16.0])


def test_bound_sweep_table_on_a_trained_bnvae(tiny_bnvae):
    table, batches = bound_sweep_table({0.6: tiny_bnvae}, nz=32, batch_size=32, seed=0)
    assert list(table.index) == [0.6] and table.index.name == "γ" and list(batches) == [0.6]
    row, b = table.loc[0.6], batches[0.6]
    assert row["n γ²/2"] == pytest.approx(5.76)
    assert row["train-mode KL (final model)"] == pytest.approx(b["kl"].mean())
    assert row["smallest train-mode batch KL"] == pytest.approx(b["kl"].min())
    assert (b["kl"] >= b["bound"] - 1e-4 * np.maximum(1.0, b["bound"])).all()     # the floor holds per batch
    beta = tiny_bnvae.model.bn_head.beta.detach().cpu().numpy()
    assert row["½Σ(γ²+β²)"] == pytest.approx(0.5 * (32 * 0.36 + (beta ** 2).sum()), rel=1e-5)
    hist = tiny_bnvae.history
    assert row["history: last epoch kl"] == hist[hist["split"] == "train"]["kl"].iloc[-1]
    assert row["history: min kl − exact floor"] >= -1e-3
    assert row["eval-mode KL (train sentences)"] == pytest.approx(
        kl_per_example(tiny_bnvae.model, tiny_bnvae.corpus.train)["kl"].mean())


def test_floor_decomposition_variance_plus_mean_is_the_floor(tiny_bnvae):
    model, split = tiny_bnvae.model, tiny_bnvae.corpus.valid
    parts = floor_decomposition(model, split)
    assert list(parts) == ["median_j Var_x μ_j / v̄_j", "½ Σ_j Var_x μ̂_j", "½ Σ_j β_j²", "½ Σ_j (E_x μ̂_j)²",
                           "eval-mode floor ½ E_x ‖μ̂‖²"]
    assert parts["½ Σ_j Var_x μ̂_j"] + parts["½ Σ_j (E_x μ̂_j)²"] == pytest.approx(
        parts["eval-mode floor ½ E_x ‖μ̂‖²"], rel=1e-4)
    beta = model.bn_head.beta.detach().cpu().numpy()
    assert parts["½ Σ_j β_j²"] == pytest.approx(0.5 * float((beta ** 2).sum()))
    ratio = pre_bn_means(model, split).var(0) / model.bn_head.bn.running_var.detach().cpu().numpy()
    assert parts["median_j Var_x μ_j / v̄_j"] == pytest.approx(float(np.median(ratio)), rel=1e-6) and ratio.min() > 0
    mu_hat = posterior_params(model, split)[0]
    assert parts["eval-mode floor ½ E_x ‖μ̂‖²"] == pytest.approx(0.5 * float((mu_hat ** 2).sum(1).mean()), rel=1e-6)

