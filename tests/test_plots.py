"""Plot helpers (bnvae_core.plots), the γ slider (bnvae_core.widgets) and the train-mode batch KL
the notebooks plot: small synthetic tables, no training except one tiny BN-VAE at the end."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import TINY  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bnvae_core.methods import make_method  # noqa: E402
from bnvae_core.viz import plots  # noqa: E402
from bnvae_core.viz.widgets import GammaExplorer, batch_normalize_means  # noqa: E402

NZ = 4


def history(seed: int, epochs: int = 3) -> pd.DataFrame:
    """A run.history-like table: train rows (no elbo) and valid rows (with elbo)."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, epochs + 1):
        rec, kl = 50 - e + rng.random(), 2 * e * rng.random()
        rows.append({"epoch": e, "split": "train", "rec": rec, "kl": kl, "au": e, "loss": rec + kl})
        rows.append({"epoch": e, "split": "valid", "rec": rec - 1, "kl": kl, "au": e,
                     "elbo": -(rec - 1 + kl), "loss": rec - 1 + kl})
    return pd.DataFrame(rows)


def kl_table(seed: int, n: int = 50, scale: float = 1.0) -> pd.DataFrame:
    """A kl_per_example-like table: sentence, length, label, kl, kl_0 … kl_{NZ−1}."""
    rng = np.random.default_rng(seed)
    per_dim = scale * rng.exponential(size=(n, NZ))
    df = pd.DataFrame(per_dim, columns=[f"kl_{j}" for j in range(NZ)])
    df.insert(0, "kl", per_dim.sum(1))
    df.insert(0, "label", 0)
    df.insert(0, "length", rng.integers(3, 15, size=n))
    df.insert(0, "sentence", np.arange(n))
    return df


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


def all_labels(ax) -> str:
    return ax.get_xlabel() + " " + ax.get_ylabel()


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """The helpers never register figures with pyplot (no global state)."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def test_training_curves_one_panel_per_metric_train_and_valid_lines():
    fig = plots.training_curves({"VAE": history(0), "BN-VAE": history(1)})
    assert isinstance(fig, Figure)
    axes = visible_axes(fig)
    assert len(axes) == 4
    for ax in axes:
        assert len(ax.get_lines()) == 2 * 2                     # 2 models × (train, valid)
    for ax in axes[:3]:                                        # rec, KL, ELBO
        assert "nats" in ax.get_ylabel()
    assert "active units" in axes[3].get_title()
    # train ELBO is −(rec + kl) (no elbo column on train rows); valid uses the logged elbo
    elbo_ax = axes[2]
    h = history(0)
    train = h[h.split == "train"]
    np.testing.assert_allclose(elbo_ax.get_lines()[0].get_ydata(), -(train.rec + train.kl))
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["VAE (train)", "VAE (valid)", "BN-VAE (train)", "BN-VAE (valid)"]


def test_training_curves_subset_and_errors():
    fig = plots.training_curves({"m": history(0)}, metrics=("kl",))
    assert len(visible_axes(fig)) == 1
    with pytest.raises(ValueError, match="unknown metric"):
        plots.training_curves({"m": history(0)}, metrics=("nope",))
    with pytest.raises(ValueError, match="lacks column"):
        plots.training_curves({"m": history(0).drop(columns="kl")})
    with pytest.raises(ValueError, match="no models"):
        plots.training_curves({})


@pytest.mark.parametrize("kind,log", [("hist", False), ("hist", True), ("violin", False), ("violin", True)])
def test_kl_distribution(kind, log):
    fig = plots.kl_distribution({"a": kl_table(0), "b": kl_table(1, scale=3)}, kind=kind, log=log, bound=2.0)
    (ax,) = visible_axes(fig)
    assert "nats" in all_labels(ax)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("2.00 nats" in t for t in legend)               # the bound line
    if kind == "hist":
        assert len(ax.patches) == 2                            # one step histogram per model
        assert legend[0].startswith("a (mean")


def test_kl_distribution_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        plots.kl_distribution({"a": kl_table(0)}, kind="pie")


def test_kl_cdf_reaches_one_and_draws_thresholds():
    fig = plots.kl_cdf({"a": kl_table(0), "b": kl_table(1)}, thresholds=[0.5, 1.0])
    (ax,) = visible_axes(fig)
    steps = [line for line in ax.get_lines() if line.get_label() in ("a", "b")]
    assert len(steps) == 2 and all(line.get_ydata()[-1] == pytest.approx(1.0) for line in steps)
    assert len(ax.get_lines()) == 4
    assert "nats" in ax.get_xlabel()


def test_kl_vs_length_mean_per_length():
    df = kl_table(0)
    fig = plots.kl_vs_length({"a": df})
    (ax,) = visible_axes(fig)
    (line,) = ax.get_lines()
    expected = df.groupby("length")["kl"].mean()
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    assert "nats" in ax.get_ylabel() and "tokens" in ax.get_xlabel()


def test_per_dim_kl_sorted_means():
    df = kl_table(0)
    fig = plots.per_dim_kl({"a": df, "b": kl_table(2)}, threshold=0.18)
    (ax,) = visible_axes(fig)
    assert len(ax.get_lines()) == 3
    y = ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(y, np.sort(df[[f"kl_{j}" for j in range(NZ)]].mean().to_numpy())[::-1])
    assert "nats" in ax.get_ylabel()
    with pytest.raises(ValueError, match="kl_0"):
        plots.per_dim_kl({"a": df[["kl", "length"]]})


def test_per_dim_columns_numeric_order():
    df = pd.DataFrame(np.zeros((1, 12)), columns=[f"kl_{j}" for j in range(12)]).assign(kl=0.0, kl_max=1.0)
    assert plots.per_dim_columns(df) == [f"kl_{j}" for j in range(12)]


def test_gamma_bound_curve_and_points():
    gammas = [0.3, 0.6, 0.9]
    fig = plots.gamma_bound(gammas, measured_train_kl=[2, 6, 13], measured_eval_kl=[3, 7, 14], nz=32,
                            extra_points={"smallest batch KL": [1.5, 5.8, 12.9]})
    (ax,) = visible_axes(fig)
    curve, train, evals, extra = ax.get_lines()
    np.testing.assert_allclose(curve.get_ydata(), 16 * curve.get_xdata() ** 2)     # n γ²/2, n = 32
    np.testing.assert_allclose(train.get_xdata(), gammas)
    np.testing.assert_allclose(evals.get_ydata(), [3, 7, 14])
    assert extra.get_label() == "smallest batch KL"
    assert "nats" in ax.get_ylabel() and "γ" in ax.get_xlabel()
    assert plots.nominal_bound(0.6, 32) == pytest.approx(5.76)


def test_gamma_bound_only_curve_and_mismatch():
    fig = plots.gamma_bound(nz=8, highlight=0.5)
    (ax,) = visible_axes(fig)
    assert len(ax.get_lines()) == 2
    assert ax.get_lines()[1].get_ydata()[0] == pytest.approx(8 * 0.25 / 2)
    with pytest.raises(ValueError, match="one value per gamma"):
        plots.gamma_bound([0.3, 0.6], measured_train_kl=[1.0], nz=8)


def test_kl_floor_vs_spread_curve_matches_bn_head():
    rng = np.random.default_rng(0)
    spreads = np.geomspace(1e-5, 1.0, 6)
    var, floor = [], []
    for d in spreads:
        pre = 1.0 + d * rng.normal(size=(64, NZ))
        var.append(float(pre.var(0).mean()))
        floor.append(batch_normalize_means(pre, 0.6)[1])
    fig = plots.kl_floor_vs_spread(var, floor, gamma=0.6, nz=NZ)
    (ax,) = visible_axes(fig)
    curve, points = ax.get_lines()[:2]
    np.testing.assert_allclose(points.get_ydata(), floor)
    assert floor[0] < 0.1 * NZ * 0.18 and floor[-1] == pytest.approx(NZ * 0.18, rel=1e-3)
    assert "nats" in ax.get_ylabel()


def test_mu_before_after_bn_three_panels():
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(100, NZ))                           # s² ≫ ε: no shrinkage
    post, _ = batch_normalize_means(pre, gamma=0.6)
    kl_dim = 0.5 * (post ** 2).mean(0) + 0.1                   # the whole KL_j ≥ its mean part
    fig = plots.mu_before_after_bn(pre, post, gamma=0.6, kl_per_dim=kl_dim)
    axes = visible_axes(fig)
    assert len(axes) == 3
    assert "nats" in axes[2].get_ylabel() and "enters the KL" in axes[2].get_title()
    mean_part, whole, floor = axes[2].get_lines()[:3]
    np.testing.assert_allclose(mean_part.get_ydata(), 0.5 * 0.36, rtol=1e-3)   # BN pins ½ mean μ̂_j² at γ²/2 (β = 0)
    np.testing.assert_allclose(whole.get_ydata(), kl_dim)
    assert floor.get_ydata()[0] == pytest.approx(0.18)
    # only the after-BN μ̂ enters the KL: no pre-BN series in the right panel (no "KL floor before BN")
    assert not any("before" in line.get_label() for line in axes[2].get_lines())
    with pytest.raises(ValueError, match="equal shape"):
        plots.mu_before_after_bn(pre, post[:, :2])
    with pytest.raises(ValueError, match="kl_per_dim"):
        plots.mu_before_after_bn(pre, post, kl_per_dim=kl_dim[:3])


def test_drawing_into_given_axes_returns_that_figure():
    fig = Figure()
    ax = fig.subplots()
    assert plots.kl_distribution({"a": kl_table(0)}, ax=ax) is fig
    fig2 = Figure()
    axes = fig2.subplots(2, 2)
    assert plots.training_curves({"a": history(0)}, axes=axes) is fig2


def test_save_figure_writes_png_and_svg(tmp_path):
    fig = plots.kl_cdf({"a": kl_table(0)})
    paths = plots.save_figure(fig, tmp_path / "sub", "kl_cdf")
    assert [p.name for p in paths] == ["kl_cdf.png", "kl_cdf.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:2000]
    with pytest.raises(ValueError, match="plain file stem"):
        plots.save_figure(fig, tmp_path, "a/b")


# --- the γ slider ---------------------------------------------------------------------------

def test_batch_normalize_means_exact_floor():
    """½ mean ‖μ̂‖² = ½ Σ_j (γ² s²/(s²+ε) + β_j²): ≈ n γ²/2 + ½Σβ² for spread means, far less for s² ≪ ε."""
    rng = np.random.default_rng(0)
    beta = np.array([0.5, 0.0, -0.2, 0.1])
    spread = rng.normal(size=(64, NZ))
    mu_hat, floor = batch_normalize_means(spread, 0.6, beta)
    assert floor == pytest.approx(0.5 * float((mu_hat ** 2).sum(1).mean()), rel=1e-5)
    assert floor == pytest.approx(NZ * 0.36 / 2 + 0.5 * (beta ** 2).sum(), rel=1e-4)
    _, tiny = batch_normalize_means(1.0 + 1e-5 * rng.normal(size=(64, NZ)), 0.6)   # s² ≈ 1e-10 ≪ ε
    assert tiny < 0.01 * NZ * 0.36 / 2
    with pytest.raises(ValueError, match="N >= 2"):
        batch_normalize_means(spread[:1], 0.6)
    with pytest.raises(ValueError, match="beta"):
        batch_normalize_means(spread, 0.6, beta[:2])


def test_gamma_explorer_slider_redraws():
    rng = np.random.default_rng(1)
    explorer = GammaExplorer(rng.normal(size=(80, NZ)), beta=torch.zeros(NZ), gamma=0.6)
    assert explorer.n_updates == 1
    first_fig, first_floor = explorer.figure, explorer.kl_floor
    assert first_floor == pytest.approx(NZ * 0.36 / 2, rel=1e-3)
    star_before = [line for line in first_fig.axes[0].get_lines() if line.get_marker() == "*"][0].get_ydata()[0]

    explorer.slider.value = 1.0                                  # what moving the slider does
    assert explorer.n_updates == 2 and explorer.gamma == 1.0
    assert explorer.figure is not first_fig
    assert explorer.kl_floor == pytest.approx(NZ * 1.0 / 2, rel=1e-3)
    assert np.abs(explorer.mu_hat).max() > 1.0 / 0.6 * np.abs(batch_normalize_means(explorer.mu_pre, 0.6)[0]).max() - 1e-4
    star_after = [line for line in explorer.figure.axes[0].get_lines() if line.get_marker() == "*"][0].get_ydata()[0]
    assert star_before == pytest.approx(NZ * 0.36 / 2) and star_after == pytest.approx(NZ / 2)
    assert "nats" in explorer.figure.axes[0].get_ylabel()
    assert len(explorer.figure_for(0.3).axes) == 2


# --- the train-mode batch KL (metrics.train_mode_batch_kl) -----------------------------------

def test_train_mode_batch_kl_bound_holds_and_model_untouched(tiny_bnvae):
    from bnvae_core.config import TrainConfig
    from bnvae_core.metrics.text import train_mode_batch_kl
    model = tiny_bnvae.model
    running, was_training = model.bn_head.bn.running_var.clone(), model.training
    table = train_mode_batch_kl(model, tiny_bnvae.corpus.valid, batch_size=32)
    assert len(table) == -(-len(tiny_bnvae.corpus.valid) // 32) and table["size"].sum() == len(tiny_bnvae.corpus.valid)
    assert (table["kl"] >= table["bound"] - 1e-4 * table["bound"].abs().clip(lower=1)).all()
    assert table["nominal"].iloc[0] == pytest.approx(32 * 0.36 / 2)
    assert ((table["shrink"] > 0) & (table["shrink"] <= 1)).all()
    assert torch.equal(model.bn_head.bn.running_var, running)          # running statistics unchanged
    assert model.training == was_training
    with pytest.raises(ValueError, match="BN head"):
        train_mode_batch_kl(make_method(TrainConfig(model="vae", **TINY)).build_model(50), tiny_bnvae.corpus.valid)


# --- comparison and lagging-encoder figures (notebooks 07, 08) -----------------------------------

def comparison_results() -> pd.DataFrame:
    """A compare()-like table: 3 methods × 2 seeds."""
    rows = []
    for method, kl, nll in (("LSTM-LM", 0.0, 40.0), ("VAE", 0.1, 39.5), ("BN-VAE (γ=0.6)", 6.0, 39.0)):
        for seed in (0, 1):
            rows.append({"method": method, "seed": seed, "kl": kl + 0.1 * seed, "nll": nll + 0.2 * seed})
    return pd.DataFrame(rows)


def test_pareto_front():
    # (kl, nll): C dominates A (more KL, less NLL); B and C are both on the front
    assert plots.pareto_front([1.0, 0.0, 2.0], [5.0, 3.0, 4.0]).tolist() == [1, 2]
    assert plots.pareto_front([1.0, 1.0], [2.0, 2.0]).tolist() == [0, 1]   # ties dominate nobody


def test_kl_nll_frontier():
    fig = plots.kl_nll_frontier(comparison_results())
    ax = fig.axes[0]
    assert "nats" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    labels = ax.get_legend_handles_labels()[1]
    assert set(labels) >= {"LSTM-LM", "VAE", "BN-VAE (γ=0.6)"}
    assert any("frontier" in label for label in labels)
    with pytest.raises(ValueError, match="lack"):
        plots.kl_nll_frontier(comparison_results().drop(columns="nll"))


def test_kl_nll_frontier_eleven_methods_distinct_and_legend_names_its_axes():
    rows = [{"method": f"m{i}", "seed": s, "mi": 0.1 * i, "nll": 40 - 0.1 * i + s} for i in range(11) for s in (0, 1)]
    fig = plots.kl_nll_frontier(pd.DataFrame(rows), x="mi")
    ax = fig.axes[0]
    means = [c for c in ax.get_lines() if c.get_marker() in plots.MARKERS]
    styles = {(matplotlib.colors.to_hex(line.get_color()), line.get_marker()) for line in means}
    assert len(styles) == 11 and len({colour for colour, _ in styles}) == 11
    labels = ax.get_legend_handles_labels()[1]
    frontier = [label for label in labels if label.startswith("frontier")]
    assert frontier == ["frontier (higher MI, lower NLL)"] and "KL" not in frontier[0]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1   # right of the axes


def test_kl_schedules():
    from bnvae_core.methods.schedules import cyclical_weight, linear_warmup_weight
    T = 40
    fig = plots.kl_schedules({"warm-up": [linear_warmup_weight(t, 20) for t in range(T)],
                              "cyclical": [cyclical_weight(t, T, 2, 0.5) for t in range(T)]}, steps_per_epoch=10)
    ax = fig.axes[0]
    assert len(ax.get_lines()) >= 2 and "KL weight" in ax.get_ylabel()
    with pytest.raises(ValueError):
        plots.kl_schedules({})


def snapshots() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("VAE", "BN-VAE"):
        for step in (0, 10, 20, 30, 40, 50):
            q, p = rng.normal(size=8) * step / 50, rng.normal(size=8)
            for i in range(8):
                rows.append({"model": model, "step": step, "sentence": i, "q_mean_0": q[i], "p_mean_0": p[i],
                             "gap": abs(p[i] - q[i]), "q_norm": abs(q[i]), "p_norm": abs(p[i])})
    return pd.DataFrame(rows)


def test_posterior_mean_space_and_lagging_gap():
    fig = plots.posterior_mean_space(snapshots(), max_snapshots=3)
    assert len(visible_axes(fig)) == 2
    for ax in fig.axes:
        assert "E_q" in ax.get_xlabel() and "E_p" in ax.get_ylabel()
        assert sum(label.startswith("step") for label in ax.get_legend_handles_labels()[1]) == 3
    from bnvae_core.analysis.lagging import lag_summary
    fig = plots.lagging_gap(lag_summary(snapshots()))
    assert len(fig.axes) == 3
    for ax in fig.axes:        # one line per model (+ the dotted ratio-1 line on the relative panel)
        assert [line.get_label() for line in ax.get_lines()][:2] == ["VAE", "BN-VAE"]
    assert fig.axes[0].get_lines()[0].get_marker() != fig.axes[0].get_lines()[1].get_marker()
    assert all(ax.get_legend() is None for ax in fig.axes) and fig.legends    # legend off the data
    with pytest.raises(ValueError, match="lag_summary"):
        plots.lagging_gap(snapshots())
    with pytest.raises(ValueError, match="lack"):
        plots.posterior_mean_space(snapshots().drop(columns="p_mean_0"))


def test_kl_violin_with_bounds_one_bar_per_bounded_model():
    tables = {"VAE": kl_table(0, scale=0.01), "γ=0.3": kl_table(1), "γ=0.6": kl_table(2, scale=3)}
    bounds = {"γ=0.3": 1.44, "γ=0.6": 5.76}
    fig = plots.kl_violin_with_bounds(tables, bounds, title="per-sentence KL")
    (ax,) = visible_axes(fig)
    bars = [c for c in ax.collections if isinstance(c, matplotlib.collections.LineCollection)
            and len(c.get_segments()) == 1 and np.allclose(c.get_colors(), [[0, 0, 0, 1]])
            and np.isclose(c.get_segments()[0][0, 1], c.get_segments()[0][1, 1])
            and np.isclose(c.get_segments()[0][1, 0] - c.get_segments()[0][0, 0], 0.9)]
    assert len(bars) == 2
    segments = sorted(tuple(np.round(b.get_segments()[0].ravel(), 6)) for b in bars)
    assert segments == [(0.55, 1.44, 1.45, 1.44), (1.55, 5.76, 2.45, 5.76)]   # across violins 1 and 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend.count("n γ²/2") == 1
    assert ax.get_title() == "per-sentence KL" and "nats" in ax.get_ylabel()
    plain = plots.kl_violin_with_bounds(tables, {}, log=False)
    assert plain.axes[0].get_title() == "" and plain.axes[0].get_yscale() == "linear"


def latent_coords(seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2))


def test_latent_views_pca_row_on_shared_axes_tsne_row_free_zoom_inset_for_a_dot():
    labels = ["noun.act"] * 10 + ["verb.motion"] * 12 + ["adj.all"] * 8
    pca = {"VAE": 0.01 * latent_coords(0), "BN-VAE": 2.0 * latent_coords(1)}     # a dot and a cloud
    tsne = {"VAE": latent_coords(2), "BN-VAE": 30 * latent_coords(3)}
    fig = plots.latent_views(pca, tsne, labels, classes=["adj.all", "noun.act", "verb.motion"],
                             pca_explained={"VAE": 0.123, "BN-VAE": 0.5}, legend_title="lexicographer file")
    axes = visible_axes(fig)
    assert len(axes) == 4                                        # PCA row, then t-SNE row
    titles = [ax.get_title() for ax in axes]
    assert titles == ["VAE: PCA (12% of the variance)", "BN-VAE: PCA (50% of the variance)",
                      "VAE: t-SNE of standardized μ", "BN-VAE: t-SNE of standardized μ"]
    for ax, view in zip(axes, [pca["VAE"], pca["BN-VAE"], tsne["VAE"], tsne["BN-VAE"]]):
        counts = [len(c.get_offsets()) for c in ax.collections]
        assert counts == [8, 10, 12]                                   # one scatter per label, in class order
        np.testing.assert_allclose(ax.collections[2].get_offsets(), view[10:22])   # verb.motion's points
    # scale is the point: both PCA panels have the same limits, which hold the larger cloud
    assert axes[0].get_xlim() == axes[1].get_xlim() and axes[0].get_ylim() == axes[1].get_ylim()
    half = np.abs(pca["BN-VAE"]).max()
    assert axes[0].get_xlim()[1] >= half and axes[0].get_xlim()[1] < 1.2 * half
    assert axes[2].get_xlim() != axes[3].get_xlim()                  # t-SNE: each its own axes
    # the dot gets a zoomed inset with the same points; the cloud does not
    (inset,) = axes[0].child_axes
    assert not axes[1].child_axes
    np.testing.assert_allclose(inset.collections[2].get_offsets(), pca["VAE"][10:22])
    assert inset.get_xlim()[1] < 0.1 * axes[0].get_xlim()[1] and "zoomed ×" in inset.get_title()
    assert "units of z" in axes[0].get_xlabel() and "no units" in axes[2].get_xlabel()
    # the legend is the figure's, outside the panels
    assert all(ax.get_legend() is None for ax in axes)
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "lexicographer file"
    assert [t.get_text() for t in legend.get_texts()] == ["adj.all", "noun.act", "verb.motion"]
    one = plots.latent_views({"m": latent_coords(0)}, {"m": latent_coords(1)}, labels)
    assert len(one.axes) == 2 and one.axes[0].get_title() == "m: PCA" and not one.axes[0].child_axes
    with pytest.raises(ValueError, match="t-SNE"):
        plots.latent_views({"m": latent_coords(0)}, {}, labels)


def accuracy_summary() -> pd.DataFrame:
    rows = []
    for model, mode, base in (("VAE, reference", "reference", 0.32), ("VAE, frozen", "frozen", 0.3),
                              ("BN-VAE, frozen", "frozen", 0.5), ("bag of words", "bow", 0.4)):
        for n, gain in ((100, 0.0), (500, 0.1)):
            rows.append({"model": model, "mode": mode, "labels": n, "accuracy_mean": base + gain,
                         "accuracy_std": 0.01, "n_seeds": 2})
    return pd.DataFrame(rows)


def test_accuracy_vs_labels_colour_by_features_style_by_mode_legend_names_the_protocol():
    fig = plots.accuracy_vs_labels(accuracy_summary(), majority=0.2, title="few labels")
    (ax,) = visible_axes(fig)
    lines = {c.get_label(): c.lines[0] for c in ax.containers}      # errorbar: (data line, caps, bars)
    lines |= {line.get_label(): line for line in ax.get_lines() if line.get_label() == "majority class"}
    reference, frozen = "VAE, reference (the paper's protocol: fine-tuned encoder)", "VAE, frozen (linear probe of μ)"
    assert set(lines) == {reference, frozen, "BN-VAE, frozen (linear probe of μ)", "bag of words", "majority class"}
    bn = lines["BN-VAE, frozen (linear probe of μ)"]
    np.testing.assert_allclose(np.asarray(bn.get_ydata(), float), [50, 60])   # percent
    np.testing.assert_allclose(np.asarray(bn.get_xdata(), float), [100, 500])
    assert lines[reference].get_color() == lines[frozen].get_color()      # same features, same colour
    assert lines[frozen].get_color() != bn.get_color()
    assert (lines[reference].get_linestyle(), lines[reference].get_marker()) == ("-", "D")
    assert (lines[frozen].get_linestyle(), lines[frozen].get_marker()) == ("--", "o")
    assert (lines["bag of words"].get_linestyle(), lines["bag of words"].get_marker()) == ("-.", "^")
    np.testing.assert_allclose(lines["majority class"].get_ydata(), [20, 20])
    assert ax.get_ylim()[0] == pytest.approx(15) and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "500"]
    assert ax.get_title() == "few labels" and "%" in ax.get_ylabel()
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1   # right of the axes, off the data
    with pytest.raises(ValueError, match="accuracy_std"):
        plots.accuracy_vs_labels(accuracy_summary().drop(columns="accuracy_std"))


def test_kl_au_figure_train_solid_valid_dashed():
    fig = plots.kl_au_figure({"CVAE": history(0), "BN-CVAE": history(1)}, nominal=5.76)
    ax_kl, ax_au = fig.axes
    assert len(ax_kl.get_lines()) == 2 * 2 + 1 and len(ax_au.get_lines()) == 2 * 2
    h = history(1)
    valid = h[h.split == "valid"]
    bn_valid = [line for line in ax_kl.get_lines() if line.get_label() == "BN-CVAE (valid)"][0]
    np.testing.assert_allclose(bn_valid.get_ydata(), valid.kl)
    assert bn_valid.get_linestyle() == "--"
    np.testing.assert_allclose(ax_kl.get_lines()[-1].get_ydata(), [5.76, 5.76])
    assert ax_kl.get_ylim()[0] == 0 and "nats" in ax_kl.get_ylabel() and "units" in ax_au.get_ylabel()
    assert ax_kl.get_legend() is None and len(fig.legends) == 1                 # below the panels
    assert [t.get_text() for t in fig.legends[0].get_texts()][-1].startswith("nγ²/2")
    assert len(plots.kl_au_figure({"CVAE": history(0)}).axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="au"):
        plots.kl_au_figure({"CVAE": history(0).drop(columns="au")})


def test_kl_bounds_per_batch_linear_from_zero_sorted_integer_batches_legend_outside():
    n = 6
    kl = np.array([5.0, 4.0, 6.0, 4.4, 5.5, 4.2])
    bounds = pd.DataFrame({"batch": np.arange(n), "kl": kl, "bound_pointwise": kl - 0.5,
                           "bound_moments": kl - 1.5, "bnvae_bound": np.full(n, 6.5), "nominal": np.full(n, 5.76)})
    fig = plots.kl_bounds_per_batch(bounds, model="BN-CVAE (γ=0.6)")
    (ax,) = visible_axes(fig)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == list(plots.BOUND_COLUMNS.values())
    order = np.argsort(kl, kind="stable")
    for line, column in zip(lines, plots.BOUND_COLUMNS):
        np.testing.assert_allclose(line.get_ydata(), bounds[column].to_numpy()[order])   # sorted by KL
        np.testing.assert_allclose(line.get_xdata(), np.arange(1, n + 1))
        assert line.get_linestyle() == (":" if column in ("bnvae_bound", "nominal") else "-")
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 6.5
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_title().startswith("BN-CVAE (γ=0.6): KL") and "sorted" in ax.get_xlabel()
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1   # right of the axes
    unsorted = plots.kl_bounds_per_batch(bounds, sort=False).axes[0]
    np.testing.assert_allclose(unsorted.get_lines()[0].get_ydata(), kl)
    assert unsorted.get_xlabel() == "training batch"
    with pytest.raises(ValueError, match="bound_moments"):
        plots.kl_bounds_per_batch(bounds.drop(columns="bound_moments"))


def test_latent_playground_figure_text_tables_then_diversity_bars():
    texts = pd.DataFrame({"source": ["interpolation"] * 4 + ["prior samples"] * 2,
                          "position": [0.0, 0.0, 1.0, 1.0, 1, 1], "model": ["VAE", "BN-VAE"] * 3,
                          "text": ["a b", "a b", "a b", "a very long sentence " * 6, "c", "d"]})
    metrics = {m: [0.5, 1.0, 0.25, 0.75] for m in plots.PLAYGROUND_METRICS}
    diversity = pd.DataFrame({"source": ["interpolation", "interpolation", "prior samples", "prior samples"],
                              "model": ["VAE", "BN-VAE", "VAE", "BN-VAE"], **metrics})
    fig = plots.latent_playground_figure(texts, diversity, width=30)
    interp_ax, samples_ax, bars_ax = fig.axes
    cells = interp_ax.tables[0].get_celld()
    shown = {cells[key].get_text().get_text() for key in cells}
    assert {"VAE", "BN-VAE", "a b"} <= shown
    assert any(t.endswith("…") and len(t) == 30 for t in shown)          # long sentences shortened
    assert "interpolation" in interp_ax.get_title(loc="left") and "prior samples" in samples_ax.get_title(loc="left")
    assert len(bars_ax.patches) == 4 * len(plots.PLAYGROUND_METRICS)      # (source, model) × metric
    heights = [p.get_height() for p in bars_ax.patches[:len(plots.PLAYGROUND_METRICS)]]
    np.testing.assert_allclose(heights, [0.5] * len(plots.PLAYGROUND_METRICS))   # VAE, interpolation
    assert [t.get_text() for t in bars_ax.get_legend().get_texts()][0] == "VAE, interpolation"
    assert bars_ax.get_ylim() == (0, 1.05)
    with pytest.raises(ValueError, match="self_bleu"):
        plots.latent_playground_figure(texts, diversity.drop(columns="self_bleu"))


def step_log(kl, epochs: int = 2, warmup: int | None = None) -> pd.DataFrame:
    """A run.step_rows-like table: one row per step, ``len(kl)`` steps over ``epochs`` epochs."""
    n = len(kl)
    steps = np.arange(1, n + 1)
    warmup = warmup or n
    return pd.DataFrame({"split": "step", "step": steps, "epoch": 1 + (steps - 1) * epochs // n,
                         "kl": np.asarray(kl, float), "rec": 50.0 - steps / n,
                         "kl_weight": np.minimum(1.0, (steps - 1) / warmup), "lr": 1.0})


def test_step_curves_kl_and_weight_and_bound():
    vae = step_log([0.1, 3.0, 1.5, 0.2, 0.02, 0.01, 0.01, 0.02])
    bn = step_log([5.0, 7.0, 6.2, 6.0, 5.9, 6.1, 5.8, 6.0])
    fig = plots.step_curves({"VAE": vae, "BN-VAE": bn}, bound=5.76, steps_per_epoch=4, smooth=3)
    kl_ax, rec_ax = [ax for ax in visible_axes(fig) if ax.get_title()][:2]
    assert "KL" in kl_ax.get_title() and "nats" in kl_ax.get_ylabel() and kl_ax.get_xscale() == "log"
    curves = {line.get_label(): line for line in kl_ax.get_lines()}
    np.testing.assert_allclose(curves["VAE"].get_ydata(), vae["kl"])
    np.testing.assert_allclose(curves["BN-VAE"].get_xdata(), bn["step"])
    bound = [line for label, line in curves.items() if label.startswith("n γ²/2")]
    assert bound and bound[0].get_ydata()[0] == pytest.approx(5.76)
    twin = [ax for ax in fig.axes if ax is not kl_ax and ax.bbox.bounds == kl_ax.bbox.bounds]
    assert twin, "the KL weight is drawn on a twin axis of the KL panel"
    np.testing.assert_allclose(twin[0].get_lines()[0].get_ydata(), vae["kl_weight"])
    assert twin[0].get_ylim() == (0, 1.05)
    legend = [t.get_text() for t in kl_ax.get_legend().get_texts()]
    assert "KL weight w_t (right axis)" in legend and "VAE" in legend
    # the legend sits right of the axes, off the data
    assert kl_ax.get_legend().get_bbox_to_anchor().x0 > kl_ax.get_window_extent().x1 - 1
    # the reconstruction is smoothed by a centred rolling mean of 3 logged rows
    np.testing.assert_allclose(rec_ax.get_lines()[0].get_ydata(),
                               vae["rec"].rolling(3, center=True, min_periods=1).mean())
    assert "nats" in rec_ax.get_ylabel()


def test_step_curves_log_kl_axis():
    fig = plots.step_curves({"VAE": step_log([0.1, 30.0, 0.02, 0.01])}, panels=("kl",), bound=5.76, log_kl=True)
    (ax,) = [ax for ax in visible_axes(fig) if ax.get_title()]
    assert ax.get_yscale() == "log"
    low, high = ax.get_ylim()
    assert low <= 0.01 and high >= 30.0                     # the spike and the collapsed values both on the axis


def test_step_curves_one_panel_linear_and_errors():
    fig = plots.step_curves({"VAE": step_log([1.0, 0.5, 0.1])}, panels=("kl",), log_steps=False, max_step=10)
    titled = [ax for ax in visible_axes(fig) if ax.get_title()]
    assert len(titled) == 1 and titled[0].get_xscale() == "linear" and titled[0].get_xlim() == (1, 10)
    with pytest.raises(ValueError, match="panels"):
        plots.step_curves({"VAE": step_log([1.0])}, panels=("elbo",))
    with pytest.raises(ValueError, match="lacks column"):
        plots.step_curves({"VAE": step_log([1.0]).drop(columns="kl_weight")})


def test_training_curves_draw_the_bound_on_the_kl_panel():
    fig = plots.training_curves({"VAE": history(0)}, bound=5.76)
    kl_ax = [ax for ax in visible_axes(fig) if ax.get_title().startswith("KL")][0]
    assert any(line.get_label().startswith("n γ²/2") and line.get_ydata()[0] == pytest.approx(5.76)
               for line in kl_ax.get_lines())


def test_kl_vs_length_draws_the_bound():
    fig = plots.kl_vs_length({"a": kl_table(0)}, bound=5.76)
    (ax,) = visible_axes(fig)
    mean_line, bound = ax.get_lines()
    assert bound.get_label().startswith("n γ²/2") and bound.get_ydata()[0] == pytest.approx(5.76)


def test_gamma_bound_extra_series_are_distinguishable():
    gammas = [0.3, 0.6]
    same = [1.0, 5.0]                                           # two series with equal values
    fig = plots.gamma_bound(gammas, measured_train_kl=[2, 6], nz=32, dodge=0.02, legend_outside=True,
                            extra_points={"a": same, "b": same})
    (ax,) = visible_axes(fig)
    a, b = ax.get_lines()[2:4]
    assert a.get_marker() != b.get_marker()
    assert a.get_markerfacecolor() != b.get_markerfacecolor()   # one filled, one open
    np.testing.assert_allclose(b.get_xdata() - a.get_xdata(), 0.02)
    np.testing.assert_allclose((a.get_xdata() + b.get_xdata()) / 2, gammas)   # centred on their γ
    assert "drawn" in a.get_label() and "γ" in a.get_label()
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1


def test_report_card_table_holds_what_the_card_shows():
    from bnvae_core.analysis.diagnose import Report
    report = Report(model="bnvae", label="BN-VAE", run_dir=None, split="test", n_sentences=10, split_sentences=10,
                    seed=0, nz=2, posterior="gaussian", kl=3.0, au=2, mi=1.5, verdict="informative",
                    per_dim=pd.DataFrame({"dim": [0, 1], "kl": [1.0, 2.0], "var_mean": [0.5, 0.7],
                                          "active": [True, True]}),
                    decoding=pd.DataFrame({"code": ["posterior mean", "prior sample"], "rec": [30.0, 40.0],
                                           "per_token": [3.0, 4.0]}))
    table = plots.report_card_table(report)
    assert list(table["dim"]) == [0, 1] and table["kl"].sum() == pytest.approx(3.0)
    assert (table["card_verdict"] == "informative").all() and (table["card_mi"] == 1.5).all()
    assert (table["card_kl"] == 3.0).all() and table["card_rec_prior sample"].iloc[0] == 40.0
    empty = plots.report_card_table(Report(model="lm", label="LM", run_dir=None, split="test", n_sentences=5,
                                           split_sentences=5, seed=0, nz=0, posterior="none"))
    assert len(empty) == 1 and empty["card_nz"].iloc[0] == 0
