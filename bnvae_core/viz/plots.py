"""Figures of posterior collapse and of BN-VAE's KL bound: DataFrames in, matplotlib Figures out.

Every function here is *pure*: it reads its arguments, draws on a new figure (or on the
``ax``/``axes`` it is given), and returns the :class:`matplotlib.figure.Figure`. No global
style is changed; colours come from seaborn's colour-blind-safe ``"colorblind"`` palette and
every axis that shows a KL, a reconstruction term or an ELBO says its unit (nats). Saving is
a separate step, :func:`save_figure` (PNG + SVG).

Inputs are the package's own tables:

* ``run.history`` (:class:`bnvae_core.training.run_folder.Run`): one row per epoch and split, columns
  ``epoch, split, rec, kl, au`` (+ ``elbo`` on valid rows) — :func:`training_curves`;
* :func:`bnvae_core.metrics.text.kl_per_example`: one row per sentence, columns ``length, kl,
  kl_0 … kl_{nz−1}`` — :func:`kl_distribution`, :func:`kl_cdf`, :func:`kl_vs_length`,
  :func:`per_dim_kl`, :func:`kl_violin_with_bounds`;
* numbers from a γ sweep — :func:`gamma_bound` (BN-VAE's bound ``E[KL] ≥ n γ²/2``, Zhu et al.
  2020 §3.2);
* pre-/post-BN posterior means (N, nz) — :func:`mu_before_after_bn`, :func:`gamma_explorer`;
* 2-D views of the posterior means, (N, 2) per model, with a label per sentence —
  :func:`latent_views` (:mod:`bnvae_core.analysis.latent`);
* few-label accuracies (:func:`bnvae_core.analysis.classify.summarize`) — :func:`accuracy_vs_labels`;
* a conditional VAE's ``run.history`` and :func:`bnvae_core.metrics.dialogue.bn_bound_report` —
  :func:`kl_au_figure`, :func:`kl_bounds_per_batch`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from ..io import atomic_write_bytes
from ..models.layers import nominal_kl_bound

#: metric column → (panel title, y label) of :func:`training_curves`
CURVE_METRICS = {
    "rec": ("reconstruction −E_q log p(x|z)", "nats per sentence"),
    "kl": ("KL(q(z|x) ‖ p(z))", "nats per sentence"),
    "elbo": ("ELBO", "nats per sentence"),
    "au": ("active units", "units (of nz)"),
}
KL_LABEL = "KL(q(z|x) ‖ p(z)) per sentence (nats)"


def palette(n: int) -> list:
    """``n`` distinct colours: seaborn's colour-blind-safe ``"colorblind"`` for up to 10, matplotlib's
    ``tab20`` for up to 20, evenly spaced ``husl`` hues beyond (never a repeated colour)."""
    n = max(n, 1)
    if n <= 10:
        return sns.color_palette("colorblind", n_colors=n)
    if n <= 20:
        return sns.color_palette("tab20", n_colors=n)
    return sns.color_palette("husl", n_colors=n)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def markers(n: int) -> list[str]:
    """``n`` marker shapes (cycled through :data:`MARKERS`): with :func:`palette` every series of a
    figure differs in colour, and neighbours also in shape."""
    return [MARKERS[i % len(MARKERS)] for i in range(max(n, 1))]


def _new_axes(ax=None, *, nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0)):
    """(figure, axes) — the figure of the given ``ax`` (a single Axes or an array), or a new one.

    New figures are plain :class:`Figure` objects, not registered with pyplot: nothing global
    changes, nothing is shown twice in a notebook, and nothing leaks when many are drawn."""
    if ax is not None:
        first = ax if isinstance(ax, Axes) else np.ravel(ax)[0]
        return first.figure, ax
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=nrows * ncols == 1)
    return fig, axes


def _legend(ax, **kwargs) -> None:
    """A legend, only when something on ``ax`` has a label (no warning otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _check_models(tables: Mapping[str, pd.DataFrame], needed: Sequence[str], what: str) -> None:
    if not tables:
        raise ValueError(f"{what}: no models given (expected a dict name → DataFrame)")
    for name, df in tables.items():
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ValueError(f"{what}: table of {name!r} lacks column(s) {', '.join(missing)}")


def training_curves(history_by_model: Mapping[str, pd.DataFrame],
                    metrics: Sequence[str] = ("rec", "kl", "elbo", "au"), axes=None,
                    bound: float | None = None) -> Figure:
    """One panel per metric over epochs; a colour per model, solid = train, dashed = valid.
    ``bound``: a dotted line on the KL panel (BN-VAE's ``n γ²/2``, in nats).

    ``history_by_model``: name → ``run.history`` (columns ``epoch, split, rec, kl, au``).
    The ELBO of train rows is ``−(rec + kl)`` (the logged train ``loss`` weights the KL by
    the warm-up weight, so it is not the ELBO until warm-up ends). Train KL/rec are averages
    over the epoch's batches in train mode (dropout, BN batch statistics); valid ones are
    measured after the epoch in eval mode."""
    unknown = [m for m in metrics if m not in CURVE_METRICS]
    if unknown:
        raise ValueError(f"training_curves: unknown metric(s) {unknown} (choose from {list(CURVE_METRICS)})")
    _check_models(history_by_model, ["epoch", "split"] + [m for m in metrics if m != "elbo"],
                  "training_curves")
    ncols = 2 if len(metrics) > 1 else 1
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = _new_axes(axes, nrows=nrows, ncols=ncols, figsize=(5.0 * ncols, 3.4 * nrows))
    flat = np.ravel(axes)
    colours, shapes = palette(len(history_by_model)), markers(len(history_by_model))
    for ax, metric in zip(flat, metrics):
        for colour, shape, (name, hist) in zip(colours, shapes, history_by_model.items()):
            for split, style in (("train", "-"), ("valid", "--")):
                rows = hist[hist["split"] == split].sort_values("epoch")
                if rows.empty:
                    continue
                if metric == "elbo":
                    y = rows["elbo"] if "elbo" in rows and rows["elbo"].notna().all() else -(rows["rec"] + rows["kl"])
                else:
                    y = rows[metric]
                ax.plot(rows["epoch"], y, style, color=colour, marker=shape, markersize=4,
                        label=f"{name} ({split})")
        title, ylabel = CURVE_METRICS[metric]
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if metric == "kl":
            if bound is not None:     # labelled on the line itself: a second legend would sit on the data
                ax.axhline(bound, color="black", linestyle=":", label=f"n γ²/2 = {bound:.2f} nats")
                ax.annotate(f"n γ²/2 = {bound:.2f} nats", xy=(0.99, bound), xycoords=("axes fraction", "data"),
                            xytext=(0, -3), textcoords="offset points", ha="right", va="top", fontsize="small")
            ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    flat[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def kl_distribution(df_by_model: Mapping[str, pd.DataFrame], kind: str = "hist", ax=None,
                    log: bool = False, bins: int = 40, bound: float | None = None) -> Figure:
    """Distribution of the per-sentence KL (column ``kl`` of :func:`metrics.kl_per_example`).

    ``kind='hist'``: step histograms per model on a shared binning (log-spaced bins when ``log``),
    each bar the *fraction of that model's sentences* in the bin, so models of very different
    scales stay visible on one log axis; ``kind='violin'``: one violin per model (KDE in log
    space when ``log``). ``bound``: a reference line, e.g. BN-VAE's ``n γ²/2`` (a bound on the
    *mean* KL of a training batch, not on every sentence's)."""
    _check_models(df_by_model, ["kl"], "kl_distribution")
    if kind not in ("hist", "violin"):
        raise ValueError(f"kl_distribution: kind must be 'hist' or 'violin', got {kind!r}")
    fig, ax = _new_axes(ax, figsize=(6.5, 4.0))
    colours = palette(len(df_by_model))
    if kind == "hist":
        values = np.concatenate([df["kl"].to_numpy(float) for df in df_by_model.values()])
        if log:
            low = max(float(values[values > 0].min()) if (values > 0).any() else 1e-6, 1e-6)
            edges = np.geomspace(low, max(float(values.max()), low * 10), bins + 1)
            ax.set_xscale("log")
        else:
            edges = np.linspace(min(0.0, float(values.min())), max(float(values.max()), 1e-3), bins + 1)
        for colour, (name, df) in zip(colours, df_by_model.items()):
            kl = df["kl"].to_numpy(float)
            ax.hist(np.clip(kl, edges[0], edges[-1]), bins=edges, weights=np.full(len(kl), 1.0 / len(kl)),
                    histtype="step", linewidth=1.8, color=colour, label=f"{name} (mean {kl.mean():.2f} nats)")
        ax.set_xlabel(KL_LABEL)
        ax.set_ylabel("fraction of sentences per bin")
    else:
        long = pd.concat([pd.DataFrame({"model": name, "kl": df["kl"].to_numpy(float)})
                          for name, df in df_by_model.items()], ignore_index=True)
        if log:
            long["kl"] = long["kl"].clip(lower=1e-6)
        sns.violinplot(data=long, x="model", y="kl", hue="model", palette=colours, cut=0,
                       inner="quartile", ax=ax, legend=False, density_norm="width", log_scale=log)
        ax.set_xlabel("model")
        ax.set_ylabel(KL_LABEL)
    if bound is not None:
        line = ax.axvline if kind == "hist" else ax.axhline
        line(bound, color="black", linestyle=":", label=f"n γ²/2 = {bound:.2f} nats")
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def kl_cdf(df_by_model: Mapping[str, pd.DataFrame], ax=None, thresholds: Sequence[float] = (),
           log: bool = True) -> Figure:
    """Fraction of sentences whose KL is below t, as a function of t (the empirical CDF).

    A collapsed model's curve jumps to 1 at t ≈ 0: every sentence is encoded as the prior.
    ``thresholds``: vertical reference lines."""
    _check_models(df_by_model, ["kl"], "kl_cdf")
    fig, ax = _new_axes(ax, figsize=(6.0, 4.0))
    for colour, (name, df) in zip(palette(len(df_by_model)), df_by_model.items()):
        kl = np.sort(df["kl"].to_numpy(float))
        frac = np.arange(1, len(kl) + 1) / len(kl)
        ax.step(np.maximum(kl, 1e-6) if log else kl, frac, where="post", color=colour, label=name)
    for t in thresholds:
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("threshold t on the per-sentence KL (nats)")
    ax.set_ylabel("fraction of sentences with KL < t")
    ax.set_ylim(0, 1.02)
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def kl_vs_length(df_by_model: Mapping[str, pd.DataFrame], ax=None, max_points: int = 2000,
                 seed: int = 0, bound: float | None = None) -> Figure:
    """Per-sentence KL against sentence length (tokens): faint points plus the mean per length.

    ``max_points`` sentences per model are drawn (a seeded subsample) so the figure stays light.
    ``bound``: a dotted horizontal line, BN-VAE's ``n γ²/2`` (a bound on the mean KL of a training
    batch, not on each sentence's)."""
    _check_models(df_by_model, ["kl", "length"], "kl_vs_length")
    fig, ax = _new_axes(ax, figsize=(6.5, 4.0))
    rng = np.random.default_rng(seed)
    for colour, (name, df) in zip(palette(len(df_by_model)), df_by_model.items()):
        shown = df if len(df) <= max_points else df.iloc[np.sort(rng.choice(len(df), max_points, replace=False))]
        ax.scatter(shown["length"], shown["kl"], s=6, alpha=0.25, color=colour, linewidths=0)
        means = df.groupby("length")["kl"].mean()
        ax.plot(means.index, means.to_numpy(), color=colour, marker="o", markersize=3,
                label=f"{name}: mean per length")
    if bound is not None:
        ax.axhline(bound, color="black", linestyle=":", label=f"n γ²/2 = {bound:.2f} nats (bounds the batch mean)")
    ax.set_xlabel("sentence length (tokens)")
    ax.set_ylabel(KL_LABEL)
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def per_dim_columns(df: pd.DataFrame) -> list[str]:
    """The per-dimension KL columns ``kl_0 … kl_{nz−1}`` of a :func:`kl_per_example` table, in order."""
    cols = [c for c in df.columns if c.startswith("kl_") and c[3:].isdigit()]
    return sorted(cols, key=lambda c: int(c[3:]))


def per_dim_kl(df_by_model: Mapping[str, pd.DataFrame], ax=None, sort: bool = True,
               threshold: float | None = None) -> Figure:
    """Mean KL of each latent dimension, ``E_x KL(q(z_j|x) ‖ N(0,1))``, one line per model.

    ``sort``: dimensions ordered by decreasing KL within each model (a "scree" plot); a collapsed
    model is flat at 0. ``threshold``: a horizontal reference (e.g. BN-VAE's γ²/2 per dimension)."""
    fig, ax = _new_axes(ax, figsize=(6.5, 4.0))
    if not df_by_model:
        raise ValueError("per_dim_kl: no models given")
    for colour, (name, df) in zip(palette(len(df_by_model)), df_by_model.items()):
        cols = per_dim_columns(df)
        if not cols:
            raise ValueError(f"per_dim_kl: table of {name!r} has no kl_0 … kl_(nz-1) columns")
        means = df[cols].mean().to_numpy(float)
        if sort:
            means = np.sort(means)[::-1]
        ax.plot(np.arange(len(means)), means, color=colour, marker="o", markersize=3,
                label=f"{name} (total {means.sum():.2f} nats)")
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle=":", label=f"γ²/2 = {threshold:.3f} nats")
    ax.set_xlabel("latent dimension j" + (" (sorted by KL)" if sort else ""))
    ax.set_ylabel("mean KL of dimension j (nats)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


#: BN-VAE's nominal bound n γ²/2 (one definition: :func:`bnvae_core.models.layers.nominal_kl_bound`)
nominal_bound = nominal_kl_bound


def gamma_bound(gammas: Sequence[float] | None = None, measured_train_kl: Sequence[float] | None = None,
                measured_eval_kl: Sequence[float] | None = None, nz: int = 32, ax=None,
                gamma_grid: Sequence[float] | None = None,
                extra_points: Mapping[str, Sequence[float]] | None = None,
                highlight: float | None = None, dodge: float = 0.0, legend_outside: bool = False) -> Figure:
    """The theoretical curve ``n γ²/2`` against γ, with measured KLs as points.

    ``gammas``: the γ of each measured run; ``measured_train_kl``: train-mode KL (BN with batch
    statistics: the bound holds) — filled circles; ``measured_eval_kl``: eval-mode KL (running
    statistics: approximate) — open squares; ``extra_points``: label → values aligned with
    ``gammas`` (e.g. the smallest batch KL), each with its own marker shape (▲, ▼, ◆, …; open
    and filled alternate); ``dodge``: the extra series are drawn this far apart in γ, centred on
    their γ (so series of nearly equal values stay distinguishable; the legend says so);
    ``highlight``: marks one γ on the curve (the slider of :mod:`bnvae_core.viz.widgets`);
    ``legend_outside``: the legend right of the axes, off the data."""
    fig, ax = _new_axes(ax, figsize=(10.0, 4.2) if legend_outside else (6.0, 4.2))   # room for a legend beside the axes
    lo = min([0.0] + list(gammas or []))
    hi = max([1.0] + list(gammas or []) + ([highlight] if highlight is not None else []))
    grid = np.asarray(gamma_grid if gamma_grid is not None else np.linspace(lo, hi * 1.05, 200), float)
    colours = palette(4 + len(extra_points or {}))
    ax.plot(grid, nominal_bound(grid, nz), color="black", label=f"bound n γ²/2 (n = {nz})")
    for (label, values, style), colour in zip(
            [("train-mode KL (batch statistics)", measured_train_kl, dict(marker="o")),
             ("eval-mode KL (running statistics)", measured_eval_kl,
              dict(marker="s", markerfacecolor="none", markeredgewidth=1.5))]
            + _extra_point_styles(extra_points or {}, dodge), colours):
        if values is None:
            continue
        if gammas is None or len(values) != len(gammas):
            raise ValueError(f"gamma_bound: {label}: need one value per gamma ({len(gammas or [])})")
        shift = style.pop("shift", 0.0)
        ax.plot(np.asarray(gammas, float) + shift, values, linestyle="none", color=colour, markersize=7,
                label=label, **style)
    if highlight is not None:
        ax.plot([highlight], nominal_bound([highlight], nz), marker="*", markersize=14, color=colours[-1],
                linestyle="none", label=f"γ = {highlight:.2f}: {nominal_bound([highlight], nz)[0]:.2f} nats")
    ax.set_xlabel("γ (fixed BN scale of μ)")
    ax.set_ylabel("KL per sentence (nats)")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylim(bottom=0)
    if legend_outside:
        _legend(ax, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def kl_floor_vs_spread(batch_var: Sequence[float], measured_floor: Sequence[float], gamma: float, nz: int,
                       eps: float = 1e-5, ax=None) -> Figure:
    """BN's KL floor against the spread of the pre-BN means: where the nominal bound fails.

    ``batch_var``: the (mean over dimensions) biased batch variance s² of the pre-BN μ of each
    crafted batch; ``measured_floor``: its ``½ mean_B ‖μ̂‖²`` (nats). Curve: the exact floor
    ``n γ² s²/(s²+ε) / 2`` (β = 0); horizontal: the nominal ``n γ²/2``; vertical: s² = ε."""
    fig, ax = _new_axes(ax, figsize=(6.0, 4.0))
    batch_var = np.asarray(batch_var, float)
    grid = np.geomspace(max(batch_var.min(), 1e-12) / 3, batch_var.max() * 3, 200)
    c = palette(2)
    ax.plot(grid, 0.5 * nz * gamma ** 2 * grid / (grid + eps), color=c[0],
            label="exact floor ½ n γ² s²/(s²+ε)")
    ax.plot(batch_var, measured_floor, "o", color=c[1], label="crafted batches: ½ mean ‖μ̂‖²")
    ax.axhline(0.5 * nz * gamma ** 2, color="black", linestyle=":", label=f"nominal n γ²/2 = {0.5 * nz * gamma ** 2:.2f} nats")
    ax.axvline(eps, color="grey", linestyle="--", linewidth=1, label=f"s² = ε = {eps:g}")
    ax.set_xscale("log")
    ax.set_xlabel("batch variance s² of the pre-BN means (mean over dimensions)")
    ax.set_ylabel("KL floor of the batch (nats)")
    _legend(ax, fontsize="small")
    fig.tight_layout()
    return fig


def mu_before_after_bn(mu_pre: np.ndarray, mu_post: np.ndarray, gamma: float | None = None,
                       axes=None, bins: int = 60, kl_per_dim: np.ndarray | None = None) -> Figure:
    """What BN does to the posterior means, and what of it enters the KL: three panels.

    ``mu_pre``, ``mu_post``: (N, nz) μ before BN (``model.encode_raw``) and after (``model.encode``).
    Left/middle: histograms of all N·nz entries before and after (after: with the prior N(0, 1)
    for reference). Right: per dimension j, what enters the KL — only the after-BN μ̂ does (the
    pre-BN μ is an internal activation, never a posterior mean): its mean-square part
    ``½ mean_x μ̂_j²`` (nats), the least ``E_x KL_j`` can be since ``KL_j ≥ ½ μ̂_j²``, and, with
    ``kl_per_dim`` (nz,), the whole ``E_x KL_j`` (e.g. the means of the ``kl_j`` columns of
    :func:`bnvae_core.metrics.text.kl_per_example`); dotted: γ²/2, where BN with batch statistics
    pins the mean-square part (plus β_j²/2)."""
    mu_pre, mu_post = np.asarray(mu_pre, float), np.asarray(mu_post, float)
    if mu_pre.ndim != 2 or mu_pre.shape != mu_post.shape:
        raise ValueError(f"mu_before_after_bn: need two (N, nz) arrays of equal shape, "
                         f"got {mu_pre.shape} and {mu_post.shape}")
    if kl_per_dim is not None and np.shape(kl_per_dim) != (mu_post.shape[1],):
        raise ValueError(f"mu_before_after_bn: kl_per_dim must have shape ({mu_post.shape[1]},), "
                         f"got {np.shape(kl_per_dim)}")
    fig, axes = _new_axes(axes, nrows=1, ncols=3, figsize=(14.0, 3.8))
    a_pre, a_post, a_dim = np.ravel(axes)[:3]
    c = palette(3)
    a_pre.hist(mu_pre.ravel(), bins=bins, density=True, color=c[0], alpha=0.8, label="before BN")
    a_pre.set_xlabel("μ_j(x) before BN (encoder output)")
    a_pre.set_ylabel("density")
    a_pre.set_title(f"before BN: sd {mu_pre.std():.3g}")
    a_pre.legend(fontsize="small", loc="upper left")
    a_post.hist(mu_post.ravel(), bins=bins, density=True, color=c[1], alpha=0.8, label="after BN")
    xs = np.linspace(min(-3.0, mu_post.min()), max(3.0, mu_post.max()), 200)
    a_post.plot(xs, np.exp(-xs ** 2 / 2) / np.sqrt(2 * np.pi), color="black", linestyle=":", label="prior N(0, 1)")
    a_post.set_xlabel("μ̂_j(x) after BN (latent units)")
    a_post.set_ylabel("density")
    a_post.set_title(f"after BN: sd {mu_post.std():.3g}")
    a_post.legend(fontsize="small", loc="upper left")
    j = np.arange(mu_post.shape[1])
    a_dim.plot(j, 0.5 * (mu_post ** 2).mean(0), marker="s", markersize=3, color=c[1], linestyle="none",
               label="½ mean_x μ̂_j² (after BN)")
    if kl_per_dim is not None:
        a_dim.plot(j, np.asarray(kl_per_dim, float), marker="o", markersize=4, color=c[2], linestyle="none",
                   markerfacecolor="none", label="E_x KL_j (whole KL)")
    if gamma is not None:
        a_dim.axhline(gamma ** 2 / 2, color="black", linestyle=":", label=f"γ²/2 = {gamma ** 2 / 2:.3g} nats")
    a_dim.set_ylim(bottom=0)
    a_dim.set_xlabel("latent dimension j")
    a_dim.set_ylabel("nats per sentence")
    a_dim.set_title("what enters the KL, per dimension")
    a_dim.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def gamma_explorer(gamma: float, mu_hat: np.ndarray, nz: int, beta: np.ndarray | None = None,
                   axes=None, gamma_max: float = 1.5, bins: int = 60) -> Figure:
    """The two views the γ slider redraws (:class:`bnvae_core.viz.widgets.GammaExplorer`).

    Left: the bound ``n γ²/2`` against γ with the current γ starred and the measured
    ``½ mean_x ‖μ̂(x)‖²`` of ``mu_hat`` (N, nz) — the KL floor this γ forces on the batch.
    Right: the histogram of all entries of ``mu_hat`` with the prior N(0, 1). ``beta`` (nz,):
    the learned shift, shown as the exact floor ``½ Σ_j (γ² + β_j²)``."""
    mu_hat = np.asarray(mu_hat, float)
    fig, axes = _new_axes(axes, nrows=1, ncols=2, figsize=(11.0, 3.8))
    a_bound, a_hist = np.ravel(axes)[:2]
    gamma_bound(nz=nz, ax=a_bound, gamma_grid=np.linspace(0, gamma_max, 200), highlight=gamma)
    c = palette(6)
    floor = 0.5 * float((mu_hat ** 2).sum(1).mean())
    a_bound.plot([gamma], [floor], marker="o", color=c[1], linestyle="none",
                 label=f"½ mean ‖μ̂‖² = {floor:.2f} nats")
    if beta is not None:
        exact = 0.5 * float(nz * gamma ** 2 + (np.asarray(beta, float) ** 2).sum())
        a_bound.plot([gamma], [exact], marker="x", color=c[2], markersize=9, linestyle="none",
                     label=f"½ Σ(γ² + β²) = {exact:.2f} nats (if s² ≫ ε)")
    a_bound.legend(fontsize="small")
    a_hist.hist(mu_hat.ravel(), bins=bins, density=True, color=c[0], alpha=0.8, label=f"μ̂_j(x), γ = {gamma:.2f}")
    xs = np.linspace(-3.0, 3.0, 200)
    a_hist.plot(xs, np.exp(-xs ** 2 / 2) / np.sqrt(2 * np.pi), color="black", linestyle=":", label="prior N(0, 1)")
    a_hist.set_xlim(-3.0, 3.0)
    a_hist.set_xlabel("μ̂_j(x) after BN (latent units)")
    a_hist.set_ylabel("density")
    a_hist.legend(fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, directory: str | Path, name: str, dpi: int = 150,
                data: pd.DataFrame | None = None) -> list[Path]:
    """Write ``directory/name.png`` and ``directory/name.svg`` (directory created) and, with ``data``,
    the numbers the figure shows as ``directory/name.csv`` (every figure has its data beside it);
    return the paths (PNG, SVG[, CSV])."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"save_figure: name must be a plain file stem, got {name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.svg"]
    # each file is rendered in memory and written whole (bnvae_core.io): never half a PNG
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(paths[0], png.getvalue())
    # no date and a fixed id salt: regenerating an unchanged figure gives the same SVG bytes,
    # so `make figures` does not churn git (PNG output is already byte-stable)
    svg = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    atomic_write_bytes(paths[1], svg.getvalue())
    if data is not None:
        paths.append(directory / f"{name}.csv")
        atomic_write_bytes(paths[2], data.to_csv(index=False).encode("utf-8"))
    return paths


def pareto_front(kl: Sequence[float], nll: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated points when a larger KL and a smaller NLL are both better
    (no other point has KL ≥ and NLL ≤ with one strict), sorted by KL."""
    kl, nll = np.asarray(kl, float), np.asarray(nll, float)
    keep = [i for i in range(len(kl))
            if not any((kl[j] >= kl[i]) and (nll[j] <= nll[i]) and ((kl[j] > kl[i]) or (nll[j] < nll[i]))
                       for j in range(len(kl)))]
    return np.array(sorted(keep, key=lambda i: kl[i]), dtype=int)


def kl_nll_frontier(results: pd.DataFrame, ax=None, x: str = "kl", y: str = "nll",
                    frontier: bool = True) -> Figure:
    """KL against NLL per method (the rate/fit trade-off): one colour per ``method``, each seed a
    faint point, the mean over seeds a large marker with ± 1 std bars on both axes.

    ``results``: one row per run with columns ``method`` and ``x``, ``y`` (nats; e.g.
    :func:`bnvae_core.experiments.compare.compare`). ``frontier``: a dashed line through the methods no other
    method beats on both axes (higher ``x``, lower ``y``; the legend names the axes). Colours
    :func:`palette` and shapes :func:`markers`: distinct for any number of methods; the mean markers
    are open, so methods with (nearly) the same numbers stay visible on top of each other. The
    legend sits right of the axes (off the data)."""
    missing = [c for c in ("method", x, y) if c not in results.columns]
    if missing:
        raise ValueError(f"kl_nll_frontier: results lack column(s) {', '.join(missing)}")
    if results.empty:
        raise ValueError("kl_nll_frontier: no results")
    fig, ax = _new_axes(ax, figsize=(7.0, 4.6))
    grouped = results.groupby("method", sort=False)
    means = grouped[[x, y]].mean()
    stds = grouped[[x, y]].std(ddof=1).fillna(0.0)
    for colour, shape, method in zip(palette(len(means)), markers(len(means)), means.index):
        rows = results[results["method"] == method]
        ax.scatter(rows[x], rows[y], s=12, alpha=0.35, color=colour, linewidths=0)
        ax.errorbar(means.loc[method, x], means.loc[method, y], xerr=stds.loc[method, x],
                    yerr=stds.loc[method, y], marker=shape, markersize=9, markerfacecolor="none",
                    markeredgewidth=1.6, color=colour, capsize=3, linestyle="none", label=method)
    short = {"kl": "KL", "nll": "NLL", "mi": "MI", "au": "AU", "ppl": "PPL"}
    if frontier and len(means) > 1:
        front = pareto_front(means[x].to_numpy(), means[y].to_numpy())
        ax.plot(means[x].to_numpy()[front], means[y].to_numpy()[front], color="grey", linestyle="--",
                linewidth=1, zorder=0, label=f"frontier (higher {short.get(x, x)}, lower {short.get(y, y)})")
    names = {"kl": "KL(q(z|x) ‖ p(z)) per sentence (nats)", "nll": "NLL −log p(x), IW estimate (nats per sentence)",
             "mi": "mutual information I(x; z) (nats)"}
    ax.set_xlabel(names.get(x, f"{x} (nats)"))
    ax.set_ylabel(names.get(y, f"{y} (nats)"))
    ax.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0)
    fig.tight_layout()
    return fig


def kl_schedules(weights: Mapping[str, Sequence[float]], steps_per_epoch: int | None = None, ax=None) -> Figure:
    """KL weight w_t against the training step, one line per schedule (name → weights per step,
    e.g. from :mod:`bnvae_core.methods.schedules`); ``steps_per_epoch`` adds epoch boundaries (dotted)."""
    if not weights:
        raise ValueError("kl_schedules: no schedules given")
    fig, ax = _new_axes(ax, figsize=(7.0, 3.6))
    longest = 0
    n = len(weights)
    for i, (colour, shape, (name, w)) in enumerate(zip(palette(n), markers(n), weights.items())):
        w = np.asarray(w, float)
        longest = max(longest, len(w))
        every = max(len(w) // 10, 1)          # ~10 markers per line, staggered so overlapping lines all show
        ax.plot(np.arange(len(w)), w, color=colour, linewidth=1.8, label=name, marker=shape, markersize=5,
                markevery=(i * every // n, every))
    if steps_per_epoch:
        for e in range(steps_per_epoch, longest, steps_per_epoch):
            ax.axvline(e, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("training step t (mini-batches)" + (f"; dotted: epochs of {steps_per_epoch} steps"
                                                     if steps_per_epoch else ""))
    ax.set_ylabel("KL weight w_t (multiplies KL in nats)")
    ax.set_ylim(-0.03, 1.05)
    _legend(ax, fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def posterior_mean_space(snapshots: pd.DataFrame, dim: int = 0, axes=None, max_snapshots: int = 4) -> Figure:
    """He et al. (2019, Fig. 1) posterior-mean space: per sentence, the approximate posterior mean
    μ_x,φ = E_q[z_dim] (x axis) against the model posterior mean μ_x,θ = E_p(z|x)[z_dim] (y axis),
    one panel per model (``snapshots['model']``), colour = training step; the diagonal is where
    the encoder matches the model (no lag); collapse puts every point at the origin.

    ``snapshots``: columns ``model, step, sentence, q_mean_<dim>, p_mean_<dim>`` (from
    :func:`bnvae_core.analysis.lagging.posterior_mean_snapshots`); at most ``max_snapshots`` steps per model
    are drawn (evenly spaced, the last included)."""
    qc, pc = f"q_mean_{dim}", f"p_mean_{dim}"
    missing = [c for c in ("model", "step", "sentence", qc, pc) if c not in snapshots.columns]
    if missing:
        raise ValueError(f"posterior_mean_space: snapshots lack column(s) {', '.join(missing)}")
    models = list(dict.fromkeys(snapshots["model"]))
    if not models:
        raise ValueError("posterior_mean_space: no snapshots")
    fig, axes = _new_axes(axes, nrows=1, ncols=len(models), figsize=(4.2 * len(models), 4.0))
    flat = np.ravel(axes) if not isinstance(axes, Axes) else [axes]
    for ax, model in zip(flat, models):
        rows = snapshots[snapshots["model"] == model]
        steps = np.sort(rows["step"].unique())
        if len(steps) > max_snapshots:
            steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_snapshots).round().astype(int))]
        colours = sns.color_palette("viridis", n_colors=len(steps))
        for colour, shape, step in zip(colours, markers(len(steps)), steps):
            r = rows[rows["step"] == step]
            ax.scatter(r[qc], r[pc], s=12, alpha=0.7, color=colour, marker=shape, linewidths=0,
                       label=f"step {int(step)}")
        values = np.concatenate([rows[qc].to_numpy(float), rows[pc].to_numpy(float)])
        lim = max(float(np.nanmax(np.abs(values))) if values.size else 1.0, 1e-3) * 1.1
        ax.plot([-lim, lim], [-lim, lim], color="black", linestyle=":", linewidth=1, label="μ_x,θ = μ_x,φ")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(str(model))
        ax.set_xlabel(f"approximate posterior mean E_q[z_{dim}] (latent units)")
        ax.set_ylabel(f"model posterior mean E_p(z|x)[z_{dim}] (latent units)")
        _legend(ax, fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
                frameon=False)                # below the panel, off the data
    fig.tight_layout()
    return fig


def lagging_gap(summary: pd.DataFrame, axes=None) -> Figure:
    """The lag of the encoder behind the model, per model against the training step, three panels:

    1. ``gap`` = mean_x ‖E_p(z|x)[z] − E_q[z]‖ (latent units: it grows with the scale of the codes);
    2. ``relative_gap`` = sqrt(mean_x ‖E_p(z|x)[z] − E_q[z]‖²) / p_spread, the gap in units of how
       much the model posterior means differ between sentences (scale-free; 1 = the codes predict
       the model's posterior means no better than one code for every sentence; dotted line);
    3. ``q_spread`` = sqrt(Σ_j Var_x E_q[z_j]), how much the codes differ between sentences (0:
       every sentence gets the same code, no information in z).

    ``summary``: one row per model and step with columns ``model, step, gap, relative_gap, q_spread``
    (:func:`bnvae_core.analysis.lagging.lag_summary`). Colours :func:`palette`, shapes
    :func:`markers`; the legend sits below the panels (off the data)."""
    missing = [c for c in ("model", "step", "gap", "relative_gap", "q_spread") if c not in summary.columns]
    if missing:
        raise ValueError(f"lagging_gap: summary lacks column(s) {', '.join(missing)} (use lag_summary)")
    models = list(dict.fromkeys(summary["model"]))
    if not models:
        raise ValueError("lagging_gap: empty summary")
    fig, axes = _new_axes(axes, nrows=1, ncols=3, figsize=(14.0, 4.0))
    panels = [("gap", "mean ‖E_p(z|x)[z] − E_q[z]‖ (latent units)", "absolute lag"),
              ("relative_gap", "rms lag / spread of E_p(z|x)[z] (ratio)", "lag relative to the model's spread"),
              ("q_spread", "spread of E_q[z] over sentences (latent units)", "how much the codes differ")]
    flat = np.ravel(axes)[:3]
    for colour, shape, model in zip(palette(len(models)), markers(len(models)), models):
        r = summary[summary["model"] == model].sort_values("step")
        for ax, (column, _, _) in zip(flat, panels):
            ax.plot(r["step"], r[column], marker=shape, markersize=4, color=colour, label=str(model))
    for ax, (column, ylabel, title) in zip(flat, panels):
        ax.set_xlabel("training step t (mini-batches)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    flat[1].axhline(1.0, color="black", linestyle=":", linewidth=1, label="1: no better than one code for all")
    handles, labels = flat[1].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    return fig


def kl_violin_with_bounds(df_by_model: Mapping[str, pd.DataFrame], bounds: Mapping[str, float],
                          log: bool = True, title: str | None = None, bound_label: str = "n γ²/2") -> Figure:
    """:func:`kl_distribution` as violins (one per model, per-sentence KL in nats) with each model's
    bound drawn as a short black bar across its violin.

    ``bounds``: model name → bound in nats (e.g. :func:`nominal_bound` of its γ); models without
    one (a plain VAE) get no bar. ``title``: the panel title."""
    fig = kl_distribution(df_by_model, kind="violin", log=log)
    ax = fig.axes[0]
    first = True
    for i, name in enumerate(df_by_model):              # the violins sit at x = 0, 1, … in this order
        if name in bounds:
            ax.hlines(bounds[name], i - 0.45, i + 0.45, color="black", linewidth=2,
                      label=bound_label if first else None)
            first = False
    _legend(ax, fontsize="small", loc="upper left")
    if title is not None:
        ax.set_title(title)
    return fig


#: marker shapes of :func:`latent_views`, one per label (a shape too, not only a colour)
LABEL_MARKERS = "osD^vPX*<>"


def latent_views(pca: Mapping[str, np.ndarray], tsne: Mapping[str, np.ndarray], labels: Sequence[str],
                 classes: Sequence[str] | None = None, pca_explained: Mapping[str, float] | None = None,
                 legend_title: str = "label", zoom_below: float = 0.2) -> Figure:
    """Two views of the posterior means per model: one column per model, PCA on top and t-SNE below,
    each point a sentence, coloured (and shaped) by its label.

    The PCA panels share their axes (units of z, the same limits for every model): scale is the
    point, so a collapsed model is a dot where a model that uses z is a cloud. A model whose PCA
    points all lie within ``zoom_below`` of the shared half-range gets an inset in the upper right
    of its panel with the same points zoomed (own ticks, titled "same points, zoomed ×k") and the
    zoomed region marked on the panel. The t-SNE panels have no units and each its own axes.
    The legend sits right of the panels, off the data.

    ``pca``, ``tsne``: model name → (N, 2) coordinates of the same N sentences (e.g.
    :func:`bnvae_core.analysis.latent.pca_2d` — centred, so the clouds sit at 0 —,
    :func:`~bnvae_core.analysis.latent.tsne_2d`); ``labels``: (N,) label names; ``classes``: the
    labels in legend order (default: order of first appearance); ``pca_explained``: model name →
    fraction of μ's variance the two PCs keep (shown in the title). Axes order in ``fig.axes``:
    the PCA row (models in order), then the t-SNE row."""
    if not pca:
        raise ValueError("latent_views: no models given")
    missing = [name for name in pca if name not in tsne]
    if missing:
        raise ValueError(f"latent_views: no t-SNE view for {missing}")
    labels = np.asarray(labels)
    classes = list(dict.fromkeys(labels.tolist())) if classes is None else list(classes)
    colours = dict(zip(classes, palette(len(classes))))
    shapes = dict(zip(classes, LABEL_MARKERS))
    names = list(pca)
    fig = Figure(figsize=(5.0 * len(names) + 2.0, 9.4), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)

    def scatter(ax, view, size=12):
        for c in classes:
            keep = labels == c
            ax.scatter(view[keep, 0], view[keep, 1], s=size, alpha=0.7, color=colours[c],
                       marker=shapes.get(c, "o"), label=c)

    extent = {name: float(np.abs(np.asarray(pca[name], float)).max()) if len(pca[name]) else 0.0 for name in names}
    half = 1.08 * max(max(extent.values()), 1e-12)
    for col, name in enumerate(names):
        ax = axes[0, col]
        scatter(ax, pca[name])
        kept = f" ({100 * pca_explained[name]:.0f}% of the variance)" if pca_explained is not None else ""
        ax.set_title(f"{name}: PCA{kept}")
        ax.set_xlim(-half, half)
        ax.set_ylim(-half, half)
        ax.set_xlabel("PC 1 (units of z, same axes for every model)")
        ax.set_ylabel("PC 2 (units of z)")
        if 0 < extent[name] < zoom_below * half:
            inset = ax.inset_axes([0.57, 0.53, 0.40, 0.38])
            scatter(inset, pca[name], size=5)
            r = 1.1 * extent[name]
            inset.set_xlim(-r, r)
            inset.set_ylim(-r, r)
            inset.tick_params(labelsize=7)
            inset.xaxis.set_major_locator(MaxNLocator(3))
            inset.yaxis.set_major_locator(MaxNLocator(3))
            inset.set_title(f"same points, zoomed ×{half / r:.0f}", fontsize=8)
            ax.indicate_inset_zoom(inset, edgecolor="black")
        tsne_ax = axes[1, col]
        scatter(tsne_ax, tsne[name])
        tsne_ax.set_title(f"{name}: t-SNE of standardized μ")
        tsne_ax.set_xlabel("t-SNE 1 (no units)")
        tsne_ax.set_ylabel("t-SNE 2 (no units)")
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, texts, title=legend_title, fontsize=8, markerscale=2, loc="outside right upper")
    return fig


#: (line style, marker) per way of using the labels (``mode`` of :func:`bnvae_core.analysis.classify.summarize`)
MODE_STYLES = {"reference": ("-", "D"), "frozen": ("--", "o"), "finetune": (":", "s"), "bow": ("-.", "^")}
#: what each ``mode`` is, as the legend of :func:`accuracy_vs_labels` names it after the features
MODE_LABELS = {"reference": "reference (the paper's protocol: fine-tuned encoder)",
               "frozen": "frozen (linear probe of μ)", "finetune": "finetune (quick, no validation)",
               "bow": "bag of words"}


def accuracy_vs_labels(summary: pd.DataFrame, majority: float | None = None,
                       label_sizes: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """Test accuracy (%) against the number of labelled sentences N (log axis), one line per
    ``model`` with ± 1 std error bars over seeds.

    ``summary``: :func:`bnvae_core.analysis.classify.summarize` rows, columns ``model, labels,
    accuracy_mean, accuracy_std`` (fractions) and optionally ``mode``. Colour = the features (the
    model name without its trailing ``", <mode>"``); line style and marker = the ``mode``
    (:data:`MODE_STYLES`); the legend names a line ``"<features>, <what the mode is>"``
    (:data:`MODE_LABELS`; a model name that does not end in its mode is shown as it is) and sits
    right of the axes, off the data. ``majority``: the majority-class accuracy (a fraction), a
    dotted line, and the y axis starts 5 points below it. ``label_sizes``: the x ticks (default:
    every N)."""
    missing = [c for c in ("model", "labels", "accuracy_mean", "accuracy_std") if c not in summary.columns]
    if missing:
        raise ValueError(f"accuracy_vs_labels: summary lacks column(s) {', '.join(missing)}")
    if summary.empty:
        raise ValueError("accuracy_vs_labels: empty summary")
    methods = list(dict.fromkeys(summary["model"]))
    modes = {m: str(summary.loc[summary["model"] == m, "mode"].iloc[0]) if "mode" in summary else "" for m in methods}
    features = {m: m.removesuffix(f", {modes[m]}") if modes[m] else m for m in methods}
    colours = dict(zip(dict.fromkeys(features.values()), palette(len(set(features.values())))))
    fig = Figure(figsize=(10.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for method in methods:
        rows = summary[summary["model"] == method].sort_values("labels")
        linestyle, marker = MODE_STYLES.get(modes[method], ("-", "o"))
        label = (f"{features[method]}, {MODE_LABELS.get(modes[method], modes[method])}"
                 if features[method] != method else method)
        ax.errorbar(rows.labels, 100 * rows.accuracy_mean, yerr=100 * rows.accuracy_std,
                    color=colours[features[method]], linestyle=linestyle, marker=marker, capsize=3, label=label)
    if majority is not None:
        ax.axhline(100 * majority, color="grey", linestyle=":", linewidth=1, label="majority class")
    sizes = sorted(summary["labels"].unique()) if label_sizes is None else list(label_sizes)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    if majority is not None:
        ax.set_ylim(bottom=max(0.0, 100 * majority - 5))
    ax.set_xlabel("labelled training sentences N (log scale)")
    ax.set_ylabel("test accuracy (%)")
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def kl_au_figure(history_by_model: Mapping[str, pd.DataFrame], nominal: float | None = None,
                 kl_title: str = "KL(q(z|x,c) ‖ p(z|c))", unit: str = "nats per response",
                 au_title: str = "active units, Var(μ_q − μ_p) > 0.01") -> Figure:
    """KL (left, nats) and active units (right) per epoch, one colour per model, solid = train,
    dashed = valid — a conditional VAE's training at a glance (its KL is to the learned prior
    p(z|c); the titles say so by default).

    ``history_by_model``: name → ``run.history`` (columns ``epoch, split, kl, au``). ``nominal``:
    a dotted reference line on the KL panel, e.g. BN-VAE's bound n γ²/2. The legend sits below
    the two panels (off the data); epochs are integer ticks."""
    _check_models(history_by_model, ["epoch", "split", "kl", "au"], "kl_au_figure")
    fig = Figure(figsize=(10, 4.3), layout="constrained")
    ax_kl, ax_au = fig.subplots(1, 2)
    for colour, (name, hist) in zip(palette(len(history_by_model)), history_by_model.items()):
        for split, style in (("train", "-"), ("valid", "--")):
            rows = hist[hist["split"] == split]
            ax_kl.plot(rows["epoch"], rows["kl"], style, marker="o", color=colour, label=f"{name} ({split})")
            ax_au.plot(rows["epoch"], rows["au"], style, marker="o", color=colour, label=f"{name} ({split})")
    if nominal is not None:
        ax_kl.axhline(nominal, color="grey", linestyle=":", label="nγ²/2 (BN-VAE's bound)")
    ax_kl.set(title=kl_title, xlabel="epoch", ylabel=unit)
    ax_au.set(title=au_title, xlabel="epoch", ylabel="units (of nz)")
    ax_kl.set_ylim(bottom=0)
    ax_au.set_ylim(bottom=0)
    for ax in (ax_kl, ax_au):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax_kl.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize="small")
    return fig


#: column of :func:`bnvae_core.metrics.dialogue.bn_bound_report` → legend label of :func:`kl_bounds_per_batch`
BOUND_COLUMNS = {"kl": "batch-mean KL", "bound_pointwise": "L₁ (always holds)", "bound_moments": "L₂ (always holds)",
                 "bnvae_bound": "½Σ(γ̃²+β²) (needs N(0, I) prior)", "nominal": "nγ²/2"}


def kl_bounds_per_batch(bounds: pd.DataFrame, model: str | None = None, ax=None, sort: bool = True) -> Figure:
    """A BN-CVAE's batch-mean KL and its lower bounds on training batches (nats per response), one
    line per column of :data:`BOUND_COLUMNS`, on a linear axis from 0.

    ``bounds``: :func:`bnvae_core.metrics.dialogue.bn_bound_report` (columns ``batch`` and those of
    :data:`BOUND_COLUMNS`). ``sort``: batches ordered by their KL (x = rank 1 … B, integer ticks),
    so that "KL ≥ L₁ ≥ L₂ on every batch" reads as three lines that never cross and the KL's
    range is its span; otherwise x is the batch number (1 … B). The two references that need a
    N(0, I) prior (½Σ(γ̃²+β²) and nγ²/2) are dotted. The legend sits right of the axes, off the
    data. ``model``: its name, for the title."""
    missing = [c for c in ("batch", *BOUND_COLUMNS) if c not in bounds.columns]
    if missing:
        raise ValueError(f"kl_bounds_per_batch: bounds lack column(s) {', '.join(missing)}")
    if bounds.empty:
        raise ValueError("kl_bounds_per_batch: no batches")
    rows = bounds.sort_values("kl", kind="stable") if sort else bounds.sort_values("batch", kind="stable")
    x = np.arange(1, len(rows) + 1)
    if ax is None:
        fig = Figure(figsize=(8.6, 3.8), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    for colour, (column, label) in zip(palette(len(BOUND_COLUMNS)), BOUND_COLUMNS.items()):
        dotted = column in ("bnvae_bound", "nominal")
        ax.plot(x, rows[column].to_numpy(), marker="o" if column == "kl" else None, markersize=4,
                linestyle=":" if dotted else "-", linewidth=2.0 if dotted else 1.5, color=colour, label=label)
    title = "KL and its lower bounds on training batches"
    ax.set(title=f"{model}: {title}" if model else title, ylabel="nats per response",
           xlabel="training batch, sorted by its KL" if sort else "training batch")
    ax.set_ylim(0, 1.08 * float(rows[list(BOUND_COLUMNS)].to_numpy().max()))
    ax.set_xlim(0.5, len(rows) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def nll_over_training(curves: pd.DataFrame, ax=None, title: str | None = None) -> Figure:
    """Validation IW-NLL (nats per sentence) after every epoch, one line per ``method`` (mean over
    seeds; the band: min–max over seeds when there are several). ``curves``: columns ``method,
    epoch, nll`` (:func:`bnvae_core.experiments.convergence.nll_over_training`)."""
    _check_models({"curves": curves}, ["method", "epoch", "nll"], "nll_over_training")
    fig, ax = _new_axes(ax, figsize=(6.4, 4.0))
    methods = list(dict.fromkeys(curves["method"]))
    for colour, method in zip(palette(len(methods)), methods):
        by_epoch = curves[curves["method"] == method].groupby("epoch")["nll"]
        mean = by_epoch.mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", markersize=3, color=colour, label=method)
        if by_epoch.count().max() > 1:
            ax.fill_between(mean.index, by_epoch.min().to_numpy(), by_epoch.max().to_numpy(), color=colour, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NLL (nats per sentence, IW)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    _legend(ax)
    fig.tight_layout()
    return fig


# --- the collapse report card (bnvae_core.analysis.diagnose) -------------------------------------

#: the panels of :func:`report_card`, in reading order (each Axes carries its name as its label)
REPORT_CARD_PANELS = ("per-dimension KL", "active units", "mutual information", "decoding gap",
                      "distinct decodings", "holes: prior density", "holes: aggregate posterior",
                      "KL decomposition", "summary")


#: nats: the decoding-gap panel spans at least this much, so that noise-sized differences look small
CARD_MIN_SPAN = 2.0


def report_card(report, figsize=(16.0, 13.0)) -> Figure:
    """The one-page collapse report card of a :class:`bnvae_core.analysis.diagnose.Report` (its
    numbers and tables only), nine panels on a 3 × 3 grid, labelled by :data:`REPORT_CARD_PANELS`:

    1. per-dimension KL ``(1/N) Σ_n KL(q(z_j|x_n) ‖ p(z_j))`` as bars, sorted, active units dark,
       with γ²/2 per dimension for a BN model (the nγ²/2 bound split evenly);
    2. Var_x E_q[z_j|x] per dimension (log axis) against the 0.01 threshold of the active units;
    3. the MI estimate with its bootstrap interval, its ceiling log N and the mean KL (MI ≤ KL);
    4. the reconstruction NLL under each code (posterior sample / mean, z = 0, prior sample) and the
       prior − posterior decoding gap;
    5. the fraction of distinct greedy decodings (prior samples, posterior means, the data);
    6. log p(z) at posterior means vs at prior samples (histograms);
    7. log q̄(z) of the aggregate posterior at the encoder's codes vs at prior samples: the holes;
    8. E_x KL = MI + KL(q̄ ‖ p) as stacked bars beside the analytic mean KL;
    9. the verdict, the numbers and the warnings as text.

    A model without a latent variable (``report.nz == 0``) gets the decoding and summary panels;
    the others say that there is no latent variable. Legends sit outside the data (below the
    panels); every axis says its unit."""
    fig, axes = _new_axes(None, nrows=3, ncols=3, figsize=figsize)
    fig.set_layout_engine("constrained")
    flat = np.ravel(axes)
    for ax, name in zip(flat, REPORT_CARD_PANELS):
        ax.set_label(name)
    draw = [_card_per_dim, _card_active_units, _card_mi, _card_decoding, _card_distinct, _card_prior_density,
            _card_aggregate_density, _card_decomposition]
    for ax, panel in zip(flat, draw):
        if report.nz == 0 and panel is not _card_decoding:
            _card_empty(ax, "no latent variable")
        else:
            panel(ax, report)
    _card_summary(flat[8], report)
    fig.suptitle(f"Collapse report card — {report.label} ({report.model}), {report.split} split, "
                 f"N = {report.n_sentences} sentences", fontsize="x-large")
    return fig


def _card_empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(ax.get_label())


def _card_legend(ax, ncol: int = 1) -> None:
    """A legend below the panel, outside the data."""
    _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=ncol, fontsize="small", frameon=False)


def _card_per_dim(ax, report) -> None:
    table = report.per_dim
    if table["kl"].isna().all():
        _card_empty(ax, f"per-dimension KL not defined for a {report.posterior} posterior\n"
                        f"(total KL {report.kl:.2f} nats per sentence)")
        return
    from matplotlib.patches import Patch

    order = table.sort_values("kl", ascending=False)
    colours = palette(2)
    ax.bar(np.arange(len(order)), order["kl"], color=[colours[0] if a else "lightgrey" for a in order["active"]])
    handles = [Patch(color=colours[0], label="active unit"), Patch(color="lightgrey", label="inactive unit")]
    if report.gamma is not None:
        label = f"γ²/2 = {report.gamma ** 2 / 2:.3f} (nγ²/2 = {report.kl_reference:.2f} in all)"
        handles.append(ax.axhline(report.gamma ** 2 / 2, color="black", linestyle=":", label=label))
    ax.set(title=f"KL per dimension (total {report.kl:.2f} nats)", xlabel="latent dimension (sorted by KL)",
           ylabel="mean KL of the dimension (nats)")
    ax.set_ylim(bottom=0)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, fontsize="small",
              frameon=False)


def _card_active_units(ax, report) -> None:
    table = report.per_dim.sort_values("var_mean", ascending=False)
    var = np.clip(table["var_mean"].to_numpy(float), 1e-10, None)
    colours = palette(2)
    ax.plot(np.arange(len(var)), var, marker="o", markersize=3, color=colours[0], label="Var_x E_q[z_j|x]")
    ax.axhline(report.au_threshold, color="black", linestyle=":", label=f"threshold {report.au_threshold:g}")
    ax.set_yscale("log")
    ax.set(title=f"active units: {report.au} of {report.nz}", xlabel="latent dimension (sorted by variance)",
           ylabel="variance of the posterior mean (z units²)")
    _card_legend(ax, ncol=2)


def _card_mi(ax, report) -> None:
    colours = palette(3)
    low, high = report.mi - report.mi_low, report.mi_high - report.mi
    ax.errorbar([0], [report.mi], yerr=[[max(low, 0.0)], [max(high, 0.0)]], fmt="o", color=colours[0],
                capsize=6, markersize=8, label=f"MI, {report.mi_level:.0%} bootstrap interval")
    ax.axhline(report.mi_ceiling, color=colours[1], linestyle="--", label=f"ceiling log N = {report.mi_ceiling:.2f}")
    ax.axhline(report.kl, color=colours[2], linestyle=":", label=f"mean KL = {report.kl:.2f} (MI ≤ KL)")
    ax.axhline(0, color="grey", linewidth=0.8)
    flag = " — see warnings" if any(w.startswith("MI =") for w in report.warnings) else ""
    ax.set(title=f"I(x; z) = {report.mi:.3f} [{report.mi_low:.3f}, {report.mi_high:.3f}] nats{flag}",
           ylabel="nats", xlim=(-1, 1))
    ax.set_xticks([0], ["mutual information"])
    top = max(report.mi_ceiling, report.kl, report.mi_high)
    ax.set_ylim(min(0.0, report.mi_low) - 0.05 * top, 1.08 * top)
    _card_legend(ax)


def _card_decoding(ax, report) -> None:
    table = report.decoding
    y = np.arange(len(table))[::-1]
    ax.plot(table["rec"], y, "o", color=palette(1)[0], markersize=8)
    for yy, value in zip(y, table["rec"]):
        ax.annotate(f"{value:.2f}", (value, yy), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize="small")
    ax.set_yticks(y, [f"z: {c}" if c in ("posterior sample", "posterior mean", "prior sample") else c
                      for c in table["code"]])
    ax.set_ylim(y.min() - 0.6, y.max() + 0.6)
    lo, hi = float(table["rec"].min()), float(table["rec"].max())
    half = max(hi - lo, CARD_MIN_SPAN) * 0.6                  # small differences look small
    ax.set_xlim((lo + hi) / 2 - half, (lo + hi) / 2 + half)
    gap = (f"{report.decoding_gap:.2f} ± {report.decoding_gap_se:.2f}" if np.isfinite(report.decoding_gap_se)
           else f"{report.decoding_gap:.2f}")
    ax.set(title=f"decoding gap, prior − posterior sample: {gap} nats",
           xlabel="reconstruction −log p(x|z) (nats per sentence)")


def _card_distinct(ax, report) -> None:
    table = report.decodings
    y = np.arange(len(table))[::-1]
    colours = palette(len(table))
    ax.barh(y, table["fraction_distinct"], color=colours)
    for yy, (_, row) in zip(y, table.iterrows()):
        ax.text(min(row["fraction_distinct"], 1.0) + 0.02, yy, f"{row['distinct']}/{row['n']}", va="center",
                fontsize="small")
    ax.set_yticks(y, list(table["source"]))
    ax.set_xlim(0, 1.15)
    ax.set(title="different z, same sentence? (greedy decoding)", xlabel="fraction of distinct sentences")


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _card_hist(ax, series: Mapping[str, np.ndarray], bins: int = 30) -> None:
    values = np.concatenate([v[np.isfinite(v)] for v in series.values()])
    edges = np.histogram_bin_edges(values, bins=bins)
    for colour, (name, v) in zip(palette(len(series)), series.items()):
        v = v[np.isfinite(v)]
        ax.hist(v, bins=edges, weights=np.full(len(v), 1 / max(len(v), 1)), histtype="step", linewidth=1.6,
                color=colour, label=name)
    ax.set_ylabel("fraction of codes")


def _card_prior_density(ax, report) -> None:
    holes = report.holes
    if holes["log_p_posterior_mean"].isna().all():
        _card_empty(ax, f"the {report.posterior} prior's density is constant:\nno log p(z) view")
        return
    _card_hist(ax, {"posterior means E_q[z|x]": holes["log_p_posterior_mean"].to_numpy(float),
                    "prior samples z ~ p(z)": holes["log_p_prior_sample"].to_numpy(float)})
    ax.set(title=f"log p(z): {report.typical_fraction:.0%} of posterior means in the prior's typical range",
           xlabel="log p(z) under the prior (nats)")
    _card_legend(ax, ncol=2)


def _card_aggregate_density(ax, report) -> None:
    holes = report.holes
    post = holes["log_qagg_posterior_sample"].to_numpy(float)
    _card_hist(ax, {"encoder's codes z ~ q(z|x) (leave-one-out)": post,
                    "prior samples z ~ p(z)": holes["log_qagg_prior_sample"].to_numpy(float)})
    ax.axvline(np.quantile(post, 0.05), color="black", linestyle=":", label="5 % quantile of the codes")
    ax.set(title=f"holes: {report.hole_fraction:.0%} of prior samples left of the line (≈ 5 % if none)",
           xlabel="log q̄(z), aggregate posterior (nats)")
    _card_legend(ax, ncol=2)


def _card_decomposition(ax, report) -> None:
    colours = palette(3)
    ax.bar([0], [report.kl], color=colours[0], width=0.6)
    ax.bar([1], [report.mi], color=colours[1], width=0.6, label="I(x; z)")
    ax.bar([1], [report.kl_aggregate], bottom=[report.mi], color=colours[2], width=0.6, label="KL(q̄ ‖ p)")
    err = [[max(report.kl_aggregate - report.kl_aggregate_low, 0)],
           [max(report.kl_aggregate_high - report.kl_aggregate, 0)]]
    ax.errorbar([1], [report.mi + report.kl_aggregate], yerr=err, fmt="none", color="black", capsize=5,
                label="KL(q̄ ‖ p) interval")
    if report.kl_reference is not None:
        ax.axhline(report.kl_reference, color="black", linestyle=":", label=f"nγ²/2 = {report.kl_reference:.2f}")
    ax.set_xticks([0, 1], ["E_x KL(q(z|x) ‖ p)\n(analytic)", "MI + KL(q̄ ‖ p)\n(Monte Carlo)"])
    ax.set(title=f"KL(q̄ ‖ p) = {report.kl_aggregate:.2f} nats", ylabel="nats per sentence", xlim=(-0.7, 1.7))
    _card_legend(ax, ncol=2)


def _card_summary(ax, report) -> None:
    import textwrap

    ax.axis("off")
    ax.set_title(f"verdict: {report.verdict}", loc="left", fontweight="bold")
    lines = [f"KL {report.kl:.2f} nats · AU {report.au}/{report.nz} · MI {report.mi:.2f} nats"
             if report.nz else "no latent variable", f"decoding gap {report.decoding_gap:.2f} nats",
             f"{report.n_sentences} of {report.split_sentences} {report.split} sentences, seed {report.seed}"]
    if report.nz:
        lines.append(f"distinct decodings: prior {report.distinct_prior:.0%}, posterior means "
                     f"{report.distinct_posterior:.0%}; holes {report.hole_fraction:.0%}")
        for _, row in report.decodings.iterrows():
            if row["source"] != "data":
                lines.append(_ellipsis(f"most common from {row['source']}s ({row['most_common_count']}/{row['n']}): "
                                       f"“{row['most_common']}”", 58))
    text = "\n".join(lines)
    for w in report.warnings:
        text += "\n\n" + textwrap.fill("⚠ " + w, 58)
    ax.text(0.0, 1.0, text, transform=ax.transAxes, va="top", ha="left",
            fontsize="medium" if text.count("\n") < 18 else "small")


# --- trained γ sweep: the explorer's view and its static overview (viz.widgets.TrainedGammaExplorer) --------

def _kl_edges(kl_tables: Mapping[float, pd.DataFrame], nz: int, bins: int, kl_max: float | None = None) -> np.ndarray:
    """Shared linear bin edges from 0 to past the largest per-sentence KL (or ``kl_max``) and the
    largest bound ``n γ²/2`` of the tables, so every bound line is in view."""
    top = kl_max if kl_max is not None else max(float(df["kl"].max()) for df in kl_tables.values())
    top = max(top, float(nominal_kl_bound(max(kl_tables), nz)), 1e-3)
    return np.linspace(0.0, top * 1.02, bins + 1)


def kl_histograms_by_gamma(kl_tables: Mapping[float, pd.DataFrame], nz: int, ax=None, bins: int = 40,
                           kl_max: float | None = None, colours: Sequence | None = None) -> Figure:
    """Per-sentence KL over a dataset (column ``kl`` of :func:`metrics.kl_per_example`), one step
    histogram per γ on shared bins (each bar the fraction of that model's sentences), each with its
    bound ``n γ²/2`` as a dotted vertical line of the same colour (label ``n γ²/2 = … nats``) — a bound
    on the *mean* KL of a training batch, not on every sentence's, so sentences may sit left of it."""
    _check_models({f"γ = {g}": df for g, df in kl_tables.items()}, ["kl"], "kl_histograms_by_gamma")
    fig, ax = _new_axes(ax, figsize=(6.5, 4.0))
    edges = _kl_edges(kl_tables, nz, bins, kl_max)
    colours = list(colours) if colours is not None else palette(len(kl_tables))
    for colour, (gamma, df) in zip(colours, kl_tables.items()):
        kl = df["kl"].to_numpy(float)
        ax.hist(np.clip(kl, edges[0], edges[-1]), bins=edges, weights=np.full(len(kl), 1.0 / len(kl)),
                histtype="step", linewidth=1.8, color=colour, label=f"γ = {gamma:g}: mean KL {kl.mean():.2f}")
        bound = float(nominal_kl_bound(gamma, nz))
        ax.axvline(bound, color=colour, linestyle=":", linewidth=1.6, label=f"n γ²/2 = {bound:.2f} nats")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(KL_LABEL + ", evaluation mode")
    ax.set_ylabel("fraction of sentences per bin")
    if len(kl_tables) > 2:      # many γ: the legend beside the axes, off the data
        _legend(ax, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        _legend(ax, fontsize="small")
    return fig


def _sweep_panel(ax, summary: pd.DataFrame, column: str, ylabel: str, highlight: float | None,
                 nz: int | None = None) -> None:
    """``summary[column]`` against γ (the index) as connected points; with ``nz``, the curve
    ``n γ²/2``; the ``highlight``ed γ starred."""
    gammas = summary.index.to_numpy(float)
    c = palette(3)
    if nz is not None:
        grid = np.linspace(0.0, max(gammas.max(), 1e-3) * 1.08, 200)
        ax.plot(grid, nominal_kl_bound(grid, nz), color="black", label=f"n γ²/2 (n = {nz})")
    ax.plot(gammas, summary[column].to_numpy(float), marker="o", color=c[0], label=ylabel.split(" (")[0])
    if highlight is not None and highlight in summary.index:
        ax.plot([highlight], [summary.loc[highlight, column]], marker="*", markersize=15, color=c[1],
                linestyle="none", label=f"γ = {highlight:g}: {summary.loc[highlight, column]:.2f}")
    ax.set_xlabel("γ (fixed BN scale of μ)")
    ax.set_ylabel(ylabel)
    _legend(ax, fontsize="small")


def trained_gamma_view(gamma: float, kl_table: pd.DataFrame, summary: pd.DataFrame, nz: int,
                       kl_max: float | None = None, bins: int = 40) -> Figure:
    """What the trained-γ explorer draws for the model trained with ``gamma``.

    Left: its per-sentence KL over the dataset (:func:`kl_histograms_by_gamma`, one model) with
    ``n γ²/2``; ``kl_max`` fixes the x range (at least to the bound) so moving the slider keeps the
    axes. Middle and right:
    ``summary`` (index γ; columns ``mean_kl``, ``nll`` — the models computed so far) — mean KL
    with the curve ``n γ²/2``, and IW-NLL, against γ, the current γ starred."""
    fig = Figure(figsize=(15.0, 3.9))
    a_hist, a_kl, a_nll = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.45, 1.0, 1.0]})
    kl_histograms_by_gamma({gamma: kl_table}, nz, ax=a_hist, bins=bins, kl_max=kl_max)
    a_hist.set_title(f"BN-VAE trained with γ = {gamma:g}", fontsize="medium")
    _sweep_panel(a_kl, summary, "mean_kl", "mean KL per sentence (nats)", gamma, nz=nz)
    a_kl.set_ylim(bottom=0)
    _sweep_panel(a_nll, summary, "nll", "IW-NLL per sentence (nats)", gamma)
    fig.tight_layout()
    return fig


# --- notebooks 01-03: the per-step log (collapse as it happens) ----------------------------

#: column of a per-step log (``run.step_rows``) → (panel title, y label) of :func:`step_curves`
STEP_PANELS = {
    "kl": ("KL of each training batch", "KL(q(z|x) ‖ p(z)), batch mean (nats per sentence)"),
    "rec": ("reconstruction of each training batch", "−E_q log p(x|z), batch mean (nats per sentence)"),
}


def step_curves(steps_by_model: Mapping[str, pd.DataFrame], bound: float | None = None,
                panels: Sequence[str] = ("kl", "rec"), steps_per_epoch: int | None = None,
                max_step: int | None = None, log_steps: bool = True, smooth: int = 1,
                axes=None, log_kl: bool = False) -> Figure:
    """Collapse as it happens: the per-step training log of each model, one colour per model, one
    panel per column of ``panels`` (:data:`STEP_PANELS`, stacked, sharing the step axis), and the
    KL weight w_t on a twin axis of the KL panel (grey, right-hand scale 0–1).

    ``steps_by_model``: name → the ``split == 'step'`` rows of ``run.history`` (columns ``step,
    kl, rec, kl_weight``; the batch-mean KL and reconstruction in nats per sentence, logged every
    ``log_every`` steps). ``bound``: a dotted line on the KL panel, BN-VAE's ``n γ²/2``.
    ``steps_per_epoch``: epoch boundaries (faint vertical lines). ``max_step``: the right end of the
    step axis (e.g. the total of a run still training). ``log_steps``: a logarithmic step axis, so
    the first dozens of steps (where a VAE's KL rises and collapses) and the thousands after are
    both visible. ``smooth``: a centred rolling mean over this many logged rows of the
    reconstruction (its batches differ in length, so raw values jump); the KL is drawn raw.
    ``log_kl``: a logarithmic KL axis, so a spike of tens of nats, the bound and a collapsed
    model's hundredths of a nat are all readable on one panel."""
    unknown = [p for p in panels if p not in STEP_PANELS]
    if unknown or not panels:
        raise ValueError(f"step_curves: panels must be some of {list(STEP_PANELS)}, got {list(panels)}")
    _check_models(steps_by_model, ["step", "kl_weight", *panels], "step_curves")
    fig, axes = _new_axes(axes, nrows=len(panels), ncols=1, figsize=(9.0, 3.3 * len(panels) + 0.4))
    flat = [axes] if isinstance(axes, Axes) else list(np.ravel(axes))
    colours = palette(len(steps_by_model))
    ends = [int(df["step"].max()) for df in steps_by_model.values() if len(df)]
    right = max_step if max_step is not None else max(ends + [1])
    weights = None
    for ax, panel in zip(flat, panels):
        for colour, (name, df) in zip(colours, steps_by_model.items()):
            rows = df.sort_values("step")
            y = rows[panel]
            if panel == "rec" and smooth > 1:
                y = y.rolling(smooth, center=True, min_periods=1).mean()
            ax.plot(rows["step"], y, color=colour, linewidth=1.2, label=name)
            if weights is None and len(rows):
                weights = rows[["step", "kl_weight"]]
        title, ylabel = STEP_PANELS[panel]
        ax.set_title(title + (f" (rolling mean of {smooth} logged batches)" if panel == "rec" and smooth > 1 else ""))
        ax.set_ylabel(ylabel, fontsize="small")
        if panel == "kl":
            if log_kl:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
            if bound is not None:
                ax.axhline(bound, color="black", linestyle=":", label=f"n γ²/2 = {bound:.2f} nats (BN-VAE's bound)")
        if steps_per_epoch:
            for e in range(steps_per_epoch, right + 1, steps_per_epoch):
                ax.axvline(e, color="grey", linewidth=0.5, alpha=0.4)
        if log_steps:
            ax.set_xscale("log")
        ax.set_xlim(1, max(right, 2))
    for ax, panel in zip(flat, panels):
        handles, labels = ax.get_legend_handles_labels()
        if panel == "kl" and weights is not None:
            twin = ax.twinx()
            twin.plot(weights["step"], weights["kl_weight"], color="grey", linestyle="--", linewidth=1.2,
                      label="KL weight w_t (right axis)")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("KL weight w_t", color="dimgrey")
            extra_h, extra_l = twin.get_legend_handles_labels()
            handles, labels = handles + extra_h, labels + extra_l
        if handles:
            ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.09, 1.0),
                      borderaxespad=0)
    flat[-1].set_xlabel("training step t (mini-batches)" + (", log scale" if log_steps else "")
                        + ("; faint lines: epochs" if steps_per_epoch else ""))
    fig.tight_layout()
    return fig


def gamma_sweep_overview(kl_tables: Mapping[float, pd.DataFrame], summary: pd.DataFrame, nz: int,
                         bins: int = 40) -> Figure:
    """Every model of a trained γ sweep at once (the static companion of the explorer): the
    per-sentence KL histograms with their bounds ``n γ²/2`` (:func:`kl_histograms_by_gamma`), mean
    KL against γ with the curve, and IW-NLL against γ (``summary``: index γ, ``mean_kl``, ``nll``)."""
    fig = Figure(figsize=(16.0, 4.2))
    a_hist, a_kl, a_nll = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.45, 1.0, 1.0]})
    kl_histograms_by_gamma(kl_tables, nz, ax=a_hist, bins=bins)
    _sweep_panel(a_kl, summary, "mean_kl", "mean KL per sentence (nats)", None, nz=nz)
    a_kl.set_ylim(bottom=0)
    _sweep_panel(a_nll, summary, "nll", "IW-NLL per sentence (nats)", None)
    fig.tight_layout()
    return fig


# --- notebooks 04–06 (latent space, classification, conditional generation) ------------------------

#: the diversity numbers :func:`latent_playground_figure` draws, and their axis labels
PLAYGROUND_METRICS = {"unique_fraction": "unique sentences / n", "distinct_1": "distinct-1",
                      "distinct_2": "distinct-2", "self_bleu": "self-BLEU (1 = all alike)"}


def _text_table(ax, texts: pd.DataFrame, title: str, width: int = 58) -> None:
    """A table of sentences drawn as text (rows: the index, columns: models), long ones shortened."""
    ax.axis("off")
    cells = [[_ellipsis(str(v), width) for v in row] for row in texts.to_numpy()]
    index = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in texts.index]
    table = ax.table(cellText=cells, rowLabels=index, colLabels=list(texts.columns), loc="upper center",
                     cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.25)
    ax.set_title(f"{title}  ({texts.index.name})", fontsize="medium", loc="left")


def latent_playground_figure(texts: pd.DataFrame, diversity: pd.DataFrame, width: int = 58) -> Figure:
    """What the latent playground (:class:`bnvae_core.viz.widgets.LatentPlayground`) shows, as a
    static figure: for each ``source`` (e.g. "interpolation", "prior samples") a table of the
    generated sentences (rows: positions, columns: models; sentences longer than ``width``
    characters shortened with "…"), and below a bar chart of their diversity — one group per
    number of :data:`PLAYGROUND_METRICS`, one bar per (source, model), all in [0, 1].

    ``texts``, ``diversity``: :func:`bnvae_core.analysis.playground.playground_tables` (columns
    ``source, position, model, text`` and ``source, model`` + the metrics). A model that decodes
    every z to the same sentence has unique/n = 1/n, low distinct-n and self-BLEU 1."""
    missing = [c for c in ("source", "position", "model", "text") if c not in texts.columns]
    missing += [c for c in ("source", "model", *PLAYGROUND_METRICS) if c not in diversity.columns]
    if missing:
        raise ValueError(f"latent_playground_figure: missing column(s) {', '.join(missing)}")
    sources = list(dict.fromkeys(texts["source"]))
    models = list(dict.fromkeys(texts["model"]))
    heights = [0.6 + 0.3 * texts[texts.source == s].position.nunique() for s in sources] + [2.8]
    fig = Figure(figsize=(6.0 * len(models) + 1.5, sum(heights)), layout="constrained")
    axes = fig.subplots(len(sources) + 1, 1, gridspec_kw={"height_ratios": heights})
    for ax, source in zip(axes, sources):
        wide = texts[texts.source == source].pivot(index="position", columns="model", values="text")
        wide = wide[[m for m in models if m in wide.columns]]
        wide.index.name = "t" if source.startswith("interp") else "sample"
        _text_table(ax, wide, source, width)
    ax = axes[-1]
    bars = diversity[["source", "model"]].drop_duplicates().to_records(index=False).tolist()
    colours = dict(zip(models, palette(len(models))))
    hatches = dict(zip(sources, ["", "//", "..", "xx"]))
    x = np.arange(len(PLAYGROUND_METRICS))
    w = 0.8 / max(len(bars), 1)
    for i, (source, model) in enumerate(bars):
        row = diversity[(diversity.source == source) & (diversity.model == model)].iloc[0]
        values = [float(row[m]) for m in PLAYGROUND_METRICS]
        ax.bar(x - 0.4 + (i + 0.5) * w, values, width=w, color=colours.get(model), hatch=hatches.get(source, ""),
               edgecolor="black", linewidth=0.5, label=f"{model}, {source}")
    ax.set_xticks(x, list(PLAYGROUND_METRICS.values()))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction")
    ax.set_title("diversity of the generated sentences", fontsize="medium", loc="left")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


#: marker shapes of :func:`gamma_bound`'s extra series (the measured ones are ● and □)
EXTRA_MARKERS = ("^", "v", "D", "P", "X", "<", ">")


def _extra_point_styles(extra_points: Mapping[str, Sequence[float]], dodge: float) -> list:
    """(label, values, style) of each extra series: its own shape, open/filled alternating, and a
    ``shift`` in γ of ``dodge`` between neighbours (centred)."""
    m = len(extra_points)
    out = []
    for k, (label, values) in enumerate(extra_points.items()):
        shift = (k - (m - 1) / 2) * dodge
        style = dict(marker=EXTRA_MARKERS[k % len(EXTRA_MARKERS)], shift=shift)
        if k % 2:
            style.update(markerfacecolor="none", markeredgewidth=1.5)
        if shift:
            label = f"{label} (drawn {shift:+.3g} in γ)"
        out.append((label, values, style))
    return out


# --- notebooks 07 (annealing, lagging) and 08 (language modelling across methods) ------------------

#: the scalars of a report card that :func:`report_card_table` repeats on every row
REPORT_CARD_SCALARS = ("label", "model", "split", "n_sentences", "verdict", "kl", "au", "nz", "mi", "mi_low",
                       "mi_high", "mi_ceiling", "kl_aggregate", "decoding_gap", "decoding_gap_se",
                       "distinct_prior", "distinct_posterior", "typical_fraction", "hole_fraction")


def report_card_table(report) -> pd.DataFrame:
    """The numbers :func:`report_card` draws, as one table (the CSV saved beside the card): one row
    per latent dimension (``dim, kl, var_mean, active`` of ``report.per_dim``; one row with ``dim``
    NaN for a model without a latent variable), with the card's scalars
    (:data:`REPORT_CARD_SCALARS`) repeated on every row and, as ``rec_<code>`` columns, the
    reconstruction NLL under each code of the decoding panel."""
    per_dim = report.per_dim.copy() if len(report.per_dim) else pd.DataFrame({"dim": [np.nan]})
    for name in REPORT_CARD_SCALARS:
        per_dim[f"card_{name}"] = getattr(report, name)
    if len(report.decoding) and {"code", "rec"} <= set(report.decoding.columns):
        for code, rec in zip(report.decoding["code"], report.decoding["rec"]):
            per_dim[f"card_rec_{code}"] = rec
    return per_dim
