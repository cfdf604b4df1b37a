"""The trained-γ explorer and the latent playground (viz.widgets, analysis.playground), without a kernel:
setting a widget's value (or calling its method) recomputes the attributes checked here.

The explorer runs on a two-model γ sweep trained here at tiny size (cached in $BNVAE_CACHE, as
the notebooks' sweep is); the playground on the session's tiny VAE and BN-VAE (conftest.py)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bnvae_core.analysis import playground  # noqa: E402
from bnvae_core.analysis.latent import cosine_similarities, reconstruct  # noqa: E402
from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.errors import ConfigError  # noqa: E402
from bnvae_core.metrics.dialogue import distinct_n, self_bleu  # noqa: E402
from bnvae_core.metrics.text import iw_nll, kl_per_example, posterior_params  # noqa: E402
from bnvae_core.training.cache import cached_run  # noqa: E402
from bnvae_core.viz import plots  # noqa: E402
from bnvae_core.viz.widgets import LatentPlayground, TrainedGammaExplorer  # noqa: E402

#: a γ sweep small enough to train in seconds: 300 sentences, 2 epochs, nz = 8
SWEEP = dict(data="wordnet", max_train=300, max_eval=100, max_tokens=20, emb_dim=16, hidden_dim=32, nz=8,
             epochs=2, warmup_epochs=0, device="cpu", max_vocab=1000, init_scheme="bnvae")
GAMMAS = (0.3, 0.9)


@pytest.fixture(scope="module")
def sweep():
    return {g: cached_run(TrainConfig(model="bnvae", gamma=g, **SWEEP), progress=False) for g in GAMMAS}


@pytest.fixture(scope="module")
def explorer(sweep):
    return TrainedGammaExplorer(sweep, gamma=0.3, n_samples=3, n_reconstructions=2, nll_sentences=20, iw_samples=5)


@pytest.fixture(scope="module")
def playground_widget(tiny_vae, tiny_bnvae):
    return LatentPlayground({"VAE": tiny_vae, "BN-VAE": tiny_bnvae}, steps=5, n_samples=6, k=3, max_pool=150)


def bound_line(fig, axis: int = 0):
    """The x of the histogram's ``n γ²/2`` line (its label starts so)."""
    lines = [ln for ln in fig.axes[axis].get_lines() if ln.get_label().startswith("n γ²/2 =")]
    assert len(lines) == 1, [ln.get_label() for ln in fig.axes[axis].get_lines()]
    return lines[0].get_xdata()[0]


# --- the trained-γ explorer ----------------------------------------------------------------------

def test_selecting_a_gamma_shows_that_trained_model(explorer, sweep):
    assert explorer.gammas == list(GAMMAS) and explorer.slider.options == (("0.3", 0.3), ("0.9", 0.9))
    assert set(explorer.views) == set(GAMMAS)                       # precomputed: the slider only redraws
    assert explorer.gamma == 0.3
    first = dict(kl=explorer.kl_table, nll=explorer.nll, fig=explorer.figure, samples=explorer.samples,
                 n=explorer.n_updates)
    assert bound_line(explorer.figure) == pytest.approx(0.5 * 8 * 0.3 ** 2)

    explorer.slider.value = 0.9                                     # what moving the slider does
    assert explorer.n_updates == first["n"] + 1 and explorer.gamma == 0.9
    assert explorer.figure is not first["fig"]
    assert not explorer.kl_table["kl"].equals(first["kl"]["kl"])
    assert explorer.nll != first["nll"]
    assert bound_line(explorer.figure) == pytest.approx(0.5 * 8 * 0.9 ** 2)
    assert explorer.figure.axes[0].get_xlim()[1] > explorer.bound        # the line is in view
    assert explorer.bound == pytest.approx(0.5 * 8 * 0.9 ** 2)

    # the numbers are the model's own: eval-mode KL over the whole valid split, IW-NLL on the fixed subset
    model, valid = sweep[0.9].model, sweep[0.9].corpus.valid
    pd.testing.assert_frame_equal(explorer.kl_table, kl_per_example(model, valid))
    assert len(explorer.kl_table) == len(valid)
    nll = iw_nll(model, valid.subset(explorer.nll_index), k=5, seed=0)
    assert explorer.nll == pytest.approx(float(nll.mean())) and len(explorer.nll_index) == 20
    assert explorer.mean_kl == pytest.approx(float(explorer.kl_table["kl"].mean()))
    assert len(explorer.samples) == 3 and list(explorer.reconstructions.columns) == ["sentence", "reconstruction"]
    assert "IW-NLL" in explorer.text.value and "γ = 0.9" in explorer.text.value

    cached = explorer.views[0.3]
    assert explorer.select(0.3) is explorer.figure and explorer.gamma == 0.3
    assert explorer.views[0.3] is cached and explorer.kl_table is first["kl"]   # memoised, not recomputed
    assert explorer.nll == first["nll"] and explorer.samples == first["samples"]
    with pytest.raises(ValueError, match="trained: 0.3, 0.9"):
        explorer.select(0.5)


def test_explorer_summary_and_static_overview(explorer):
    summary = explorer.summary()
    assert list(summary.index) == list(GAMMAS) and list(summary.columns) == ["bound", "mean_kl", "nll"]
    assert summary["bound"].tolist() == pytest.approx([0.5 * 8 * g ** 2 for g in GAMMAS])
    fig = explorer.overview_figure()
    assert len(fig.axes) == 3
    bounds = sorted(ln.get_xdata()[0] for ln in fig.axes[0].get_lines() if ln.get_label().startswith("n γ²/2 ="))
    assert bounds == pytest.approx([0.5 * 8 * g ** 2 for g in GAMMAS])
    nll_points = fig.axes[2].get_lines()[0]
    assert list(nll_points.get_ydata()) == pytest.approx(summary["nll"].tolist())
    assert "nats" in fig.axes[1].get_ylabel() and "nats" in fig.axes[2].get_ylabel()


def test_explorer_computes_lazily_without_precompute(sweep):
    lazy = TrainedGammaExplorer(sweep, gamma=0.9, sentences=["a dog", 0], n_samples=2, nll_sentences=10,
                                iw_samples=2, precompute=False)
    assert set(lazy.views) == {0.9} and lazy.sentences[0] == ["a", "dog"]
    lazy.select(0.3)
    assert set(lazy.views) == {0.3, 0.9} and lazy.n_updates == 2
    with pytest.raises(ValueError, match="no runs"):
        TrainedGammaExplorer({})


# --- the analysis behind the playground ----------------------------------------------------------

def test_interpolate_codes_is_the_straight_line():
    z_a, z_b = np.array([0.0, 2.0, -1.0]), np.array([1.0, 0.0, 3.0])
    t, z = playground.interpolate_codes(z_a, z_b, 5)
    assert t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and z.shape == (5, 3)
    np.testing.assert_array_equal(z[0], z_a.astype(np.float32))
    np.testing.assert_array_equal(z[-1], z_b.astype(np.float32))
    np.testing.assert_allclose(z[2], (z_a + z_b) / 2)
    with pytest.raises(ValueError, match="steps >= 2"):
        playground.interpolate_codes(z_a, z_b, 1)
    with pytest.raises(ValueError, match="shape"):
        playground.interpolate_codes(z_a, z_b[:2], 3)


def test_diversity_of_identical_vs_varied_sentences():
    same = ["the cat sat on the mat"] * 4
    varied = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "rain fell all night long"]
    d_same, d_varied = playground.diversity(same), playground.diversity(varied)
    assert d_same["self_bleu"] == pytest.approx(1.0)                 # every sentence has itself as a reference
    assert d_varied["self_bleu"] < 0.5
    assert d_same["unique"] == 1 and d_varied["unique"] == 4
    assert d_same["distinct_1"] == pytest.approx(5 / 24)             # {the, cat, sat, on, mat} of 24 words
    assert d_same["distinct_2"] == pytest.approx(5 / 20)
    assert d_varied["distinct_1"] > d_same["distinct_1"] and d_varied["distinct_2"] > d_same["distinct_2"]
    assert distinct_n([s.split() for s in varied], 2) == d_varied["distinct_2"]
    assert np.isnan(self_bleu([["one", "sentence", "only"]]))
    assert self_bleu([["a", "dog"]] * 3) == pytest.approx(1.0)       # short sentences too (n-grams up to their length)
    assert self_bleu([[], ["a", "b", "c"]]) == 0.0                   # an empty sentence scores 0, and is no reference
    table = playground.diversity_table(pd.DataFrame({"same": same, "varied": varied}))
    assert list(table.index) == ["same", "varied"] and table.loc["same", "self_bleu"] == pytest.approx(1.0)


def test_self_bleu_without_nltk_is_a_clear_error_or_skipped(monkeypatch):
    from bnvae_core.metrics import dialogue

    def missing(*args, **kwargs):
        raise ConfigError("BLEU needs nltk: pip install 'bnvae-core[dialogue]' (or: pip install nltk)")
    monkeypatch.setattr(dialogue, "_nltk_bleu", missing)
    with pytest.raises(ConfigError, match="nltk"):
        self_bleu([["a", "b"], ["a", "c"]])
    skipped = playground.diversity(["a b c", "a b d"])
    assert np.isnan(skipped["self_bleu"]) and skipped["distinct_1"] == pytest.approx(4 / 6)
    with pytest.raises(ConfigError, match="nltk"):
        playground.diversity(["a b c", "a b d"], bleu=True)


def test_nearest_sentences_rank_by_cosine_and_skip_the_query():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(30, 4))
    texts = [f"s{i}" for i in range(30)]
    table = playground.nearest_sentences(pool[7], pool, texts, k=4, exclude=7)
    sim = cosine_similarities(pool)[7]
    expected = np.argsort(-sim)[:4]
    assert table["neighbour"].tolist() == [texts[j] for j in expected] and "s7" not in table["neighbour"].tolist()
    np.testing.assert_allclose(table["cosine"], sim[expected])
    assert table["rank"].tolist() == [1, 2, 3, 4] and table["cosine"].is_monotonic_decreasing
    assert playground.nearest_sentences(pool[7], pool, texts, k=4)["neighbour"].iloc[0] == "s7"


# --- the latent playground on the tiny VAE and BN-VAE ---------------------------------------------

def test_interpolation_endpoints_decode_like_the_endpoint_means(playground_widget, tiny_vae, tiny_bnvae):
    pg = playground_widget
    table = pg.interpolate(a=3, b=10, steps=5)
    assert list(table.columns) == ["VAE", "BN-VAE"] and table.index.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert pg.a_box.value == pg.pool_texts[3] and pg.steps_slider.value == 5
    for name, run in (("VAE", tiny_vae), ("BN-VAE", tiny_bnvae)):
        ends = reconstruct(run.model, run.corpus.valid.subset([3, 10]), run.corpus.vocab)
        assert [table[name].iloc[0], table[name].iloc[-1]] == ends
    assert list(pg.interpolation_diversity.index) == ["VAE", "BN-VAE"]
    assert "distinct_1" in pg.interpolation_diversity.columns and "self_bleu" in pg.interpolation_html.value

    pg.steps_slider.value = 3                                       # the widget recomputes
    assert len(pg.interpolation) == 3
    pg.b_box.value = "a small domesticated animal"                   # free text: the corpus's tokenizer
    assert pg.interpolation.index.tolist() == [0.0, 0.5, 1.0]
    pg.a_box.value = "   "                                          # no words: a message, not a traceback
    assert "no words" in pg.interpolation_html.value


def test_prior_samples_are_seeded_and_their_diversity_is_reported(playground_widget, tiny_vae, tiny_bnvae):
    """Seeded, one column per model, diversity = the definitions of each column. (Whether the
    collapsed VAE's samples are less diverse than BN-VAE's is not asserted: at this size both
    greedy decoders mostly say the same two words, and which of them varies more depends on the
    seed — the definitions are tested on crafted sentences above.)"""
    pg = playground_widget
    first = pg.sample(n=6, seed=0, greedy=True).copy()
    assert first.shape == (6, 2) and list(first.columns) == ["VAE", "BN-VAE"]
    assert pg.sample(seed=0).equals(first) and pg.seed_box.value == 0   # deterministic given the seed
    for name in first.columns:
        expected = playground.diversity(list(first[name]))
        assert pg.sample_diversity.loc[name].to_dict() == pytest.approx(expected, nan_ok=True)
    pg.decoding.value = "sampling"                                    # the widget recomputes
    assert pg.samples.equals(playground.prior_samples_table({"VAE": tiny_vae, "BN-VAE": tiny_bnvae}, 6, 0,
                                                            greedy=False))
    pg.resample.click()                                               # "new seed": seed + 1
    assert pg.seed_box.value == 1 and not pg.samples.equals(first)
    assert not pg.sample(seed=2, greedy=False)["BN-VAE"].equals(pg.sample(seed=3, greedy=False)["BN-VAE"])
    assert "ancestral" in pg.samples_html.value and "self_bleu" in pg.samples_html.value


def test_neighbours_in_mu_space(playground_widget, tiny_bnvae):
    pg = playground_widget
    table = pg.neighbours(query=4, k=3)
    assert table.index.names == ["model", "rank"] and len(table) == 6
    assert pg.pool_texts[4] not in table["neighbour"].tolist()        # the query is not its own neighbour
    mu, _ = posterior_params(tiny_bnvae.model, tiny_bnvae.corpus.valid.subset(np.arange(150)))
    expected = np.argsort(-cosine_similarities(mu)[4])[:3]
    assert table.loc["BN-VAE", "neighbour"].tolist() == [pg.pool_texts[j] for j in expected]
    pg.k_slider.value = 2
    assert len(pg.neighbour_table) == 4
    assert pg.pool_means("VAE").shape == (150, tiny_bnvae.model.nz)


def test_sweep_plots_draw_each_bound():
    rng = np.random.default_rng(0)
    tables = {g: pd.DataFrame({"kl": rng.exponential(4 * g, size=50)}) for g in (0.2, 0.5, 0.8)}
    summary = pd.DataFrame({"bound": [0.5 * 4 * g ** 2 for g in tables], "mean_kl": [1.0, 2.0, 3.0],
                            "nll": [40.0, 39.0, 39.5]}, index=pd.Index(list(tables), name="γ"))
    fig = plots.kl_histograms_by_gamma(tables, nz=4)
    bounds = [ln.get_xdata()[0] for ln in fig.axes[0].get_lines()]
    assert bounds == pytest.approx([0.5 * 4 * g ** 2 for g in tables])
    view = plots.trained_gamma_view(0.5, tables[0.5], summary, nz=4, kl_max=20.0)
    assert len(view.axes) == 3 and view.axes[0].get_xlim()[1] == pytest.approx(20.4)
    stars = [ln for ln in view.axes[2].get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == 39.0
    with pytest.raises(ValueError, match="no models"):
        plots.kl_histograms_by_gamma({}, nz=4)
