"""Interactive views for the notebooks (ipywidgets), with their logic testable without a kernel.

* :class:`TrainedGammaExplorer` — a slider over the γ values of a *trained* BN-VAE sweep (Zhu et
  al. 2020 §3.2): each position shows a different model — its per-sentence KL over the data with
  ``n γ²/2``, its IW-NLL, samples from the prior and reconstructions — with
  :meth:`~TrainedGammaExplorer.overview_figure`, every γ at once, as the static figure beside it.
* :class:`LatentPlayground` — several models side by side (VAE vs BN-VAE): interpolation between
  two sentences, samples from the prior, nearest neighbours in μ-space, and the diversity
  (distinct-n, self-BLEU) of what they generate. The computations are
  :mod:`bnvae_core.analysis.playground`; this module only wires widgets to them.
* :class:`GammaExplorer` — a what-if slider over γ for ONE fixed batch of pre-BN means: for each
  γ it batch-normalizes them with :class:`bnvae_core.models.layers.BNHead` (batch statistics, as
  in training) and redraws :func:`bnvae_core.viz.plots.gamma_explorer`, the bound ``n γ²/2`` with
  the batch's ``½ mean ‖μ̂‖²`` — equal to the formula by construction (step 2 of the derivation),
  not a measurement of a model trained with that γ; :class:`TrainedGammaExplorer` is that.

Every callback only calls a method (``update``, ``select``, ``interpolate``, ``sample``,
``neighbours``) that recomputes the object's attributes; a test sets a widget's value (or calls
the method) and checks them. Showing figures needs a running kernel; everything else does not.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis.playground import (
    diversity_table,
    interpolation_table,
    nearest_sentences,
    posterior_means,
    prior_samples_table,
    sentence_tokens,
    subset_index,
    trained_model_view,
)
from ..errors import BnvaeError
from ..models.layers import BNHead
from .plots import gamma_explorer, gamma_sweep_overview, trained_gamma_view


def batch_normalize_means(mu_pre: np.ndarray | torch.Tensor, gamma: float,
                          beta: np.ndarray | torch.Tensor | None = None,
                          eps: float = 1e-5) -> tuple[np.ndarray, float]:
    """μ̂ of pre-BN means ``mu_pre`` (N, nz) treated as one training batch, and its exact KL floor.

    Runs a fresh :class:`BNHead` (scale γ, shift ``beta`` (nz,) or 0) in training mode, so
    ``μ̂_j = γ (μ_j − mean_B μ_j)/√(s_j² + ε) + β_j`` with the batch's biased variance s_j².
    Returns ``(μ̂ (N, nz), ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²))``; the second equals
    ``½ mean_x ‖μ̂(x)‖²``, the least KL this batch can have (KL ≥ ½ ‖μ̂‖² per sentence)."""
    mu = torch.as_tensor(np.asarray(mu_pre, dtype=np.float32))
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"batch_normalize_means: need (N >= 2, nz) pre-BN means, got shape {tuple(mu.shape)}")
    head = BNHead(mu.shape[1], gamma, eps=eps).train()
    if beta is not None:
        beta = torch.as_tensor(np.asarray(beta, dtype=np.float32))
        if beta.shape != (mu.shape[1],):
            raise ValueError(f"batch_normalize_means: beta must have shape ({mu.shape[1]},), got {tuple(beta.shape)}")
        with torch.no_grad():
            head.beta.copy_(beta)
    with torch.no_grad():
        mu_hat = head(mu)
    return mu_hat.numpy(), float(head.last_kl_bound)


def show_figure(output, figure) -> None:
    """Put ``figure`` into the ``output`` widget (an ipywidgets Output) by setting its ``outputs`` state.

    Deliberately not ``with output: clear_output(); display(...)``: that routes IOPub messages
    through the Output widget's capture, which headless executors (nbclient/papermill) emulate
    and which can leave a cell hanging (jupyter/nbclient#312); replacing the state is one comm
    message. Outside IPython (tests) there is nothing to display into: a no-op."""
    from IPython import get_ipython
    if get_ipython() is None:
        return
    output.outputs = ()
    output.append_display_data(figure)


class GammaExplorer:
    """An ipywidgets slider over γ redrawing the bound and the distribution of μ̂.

    ``mu_pre`` (N, nz): pre-BN posterior means (``model.encode_raw(tokens, lengths)[0]``) of one batch
    or a whole split; ``beta`` (nz,): the trained BN shift (``model.bn_head.beta``) or None.

    Attributes after every change of ``slider.value``: ``gamma``, ``mu_hat`` (N, nz),
    ``kl_floor`` (½ Σ_j(γ² s_j²/(s_j²+ε) + β_j²), nats), ``figure`` (a new Figure), ``n_updates``.
    Display it in a notebook as the last expression of a cell (or ``display(explorer.widget)``)."""

    def __init__(self, mu_pre, beta=None, gamma: float = 0.6, eps: float = 1e-5,
                 gamma_min: float = 0.05, gamma_max: float = 1.5, step: float = 0.05):
        import ipywidgets as widgets

        self.mu_pre = np.asarray(mu_pre, dtype=np.float32)
        self.beta = None if beta is None else np.asarray(
            beta.detach().cpu() if isinstance(beta, torch.Tensor) else beta, dtype=np.float32)
        self.eps, self.gamma_max = eps, gamma_max
        self.nz = self.mu_pre.shape[1] if self.mu_pre.ndim == 2 else 0
        self.n_updates = 0
        self.slider = widgets.FloatSlider(value=gamma, min=gamma_min, max=gamma_max, step=step,
                                          description="γ", continuous_update=False, readout_format=".2f")
        self.output = widgets.Output()
        self.widget = widgets.VBox([self.slider, self.output])
        self.slider.observe(self._on_change, names="value")
        self.update(gamma)

    def figure_for(self, gamma: float):
        """The figure for ``gamma`` (the same drawing as the slider's, for static copies)."""
        mu_hat, _ = batch_normalize_means(self.mu_pre, gamma, self.beta, self.eps)
        return gamma_explorer(gamma, mu_hat, self.nz, beta=self.beta, gamma_max=self.gamma_max)

    def update(self, gamma: float):
        """Recompute everything for ``gamma`` and redraw; returns the new figure."""
        self.gamma = float(gamma)
        self.mu_hat, self.kl_floor = batch_normalize_means(self.mu_pre, self.gamma, self.beta, self.eps)
        self.figure = gamma_explorer(self.gamma, self.mu_hat, self.nz, beta=self.beta, gamma_max=self.gamma_max)
        self.n_updates += 1
        self._show()
        return self.figure

    def _on_change(self, change: dict) -> None:
        self.update(change["new"])

    def _show(self) -> None:
        show_figure(self.output, self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


def _escape(text) -> str:
    from html import escape
    return escape(str(text))


def _table_html(df: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """A DataFrame as an HTML table (text escaped, floats rounded), for an ``ipywidgets.HTML``."""
    return df.to_html(escape=True, float_format=float_format.format, border=0, na_rep="—")


class TrainedGammaExplorer:
    """A slider over the γ of a *trained* BN-VAE sweep: each position is a different model.

    ``runs``: γ → run (``.model``, ``.corpus``; e.g. ``{g: cached_run(TrainConfig(model="bnvae",
    gamma=g, ...)) for g in GAMMAS}``, the same data settings for all). For the selected model it
    shows, from :func:`bnvae_core.analysis.playground.trained_model_view`:

    * the per-sentence KL over the ``split`` (evaluation mode) with the line ``n γ²/2``, beside mean
      KL and IW-NLL against γ for the sweep (:func:`bnvae_core.viz.plots.trained_gamma_view`);
    * its IW-NLL (K = ``iw_samples``) on ``nll_sentences`` fixed (seeded) sentences of the split;
    * ``n_samples`` greedy decodings of z ~ N(0, I) (seed ``seed``) and greedy reconstructions of
      fixed sentences (``sentences``: indices into the split, texts or token lists; default
      ``n_reconstructions`` seeded ones).

    Every model's numbers are computed once and kept (``views``: γ → dict); ``precompute=True``
    computes them all up front, so moving the slider only redraws. Attributes after every change
    of ``slider.value`` (or :meth:`select`): ``gamma``, ``kl_table``, ``mean_kl``, ``bound``,
    ``nll``, ``samples`` (list of texts), ``reconstructions`` (DataFrame), ``figure`` (a new
    Figure), ``n_updates``; :meth:`summary` tabulates the models computed so far and
    :meth:`overview_figure` draws all of them (a static copy for readers without a kernel)."""

    def __init__(self, runs: Mapping[float, object], *, gamma: float | None = None, split: str = "valid",
                 sentences: Sequence | None = None, n_reconstructions: int = 3, n_samples: int = 5,
                 nll_sentences: int = 100, iw_samples: int = 20, seed: int = 0, precompute: bool = True):
        import ipywidgets as widgets

        if not runs:
            raise ValueError("TrainedGammaExplorer: no runs given (expected a dict γ → trained run)")
        self.runs = {float(g): run for g, run in sorted(runs.items())}
        self.gammas = list(self.runs)
        first = self.runs[self.gammas[0]]
        rows = first.corpus.splits[split]
        _warn_if_splits_differ(self.runs, split)
        if sentences is None:
            sentences = [int(i) for i in subset_index(len(rows), n_reconstructions, seed)]
        self.sentences = [sentence_tokens(first.corpus, s, split) for s in sentences]
        self.nll_index = subset_index(min(len(r.corpus.splits[split]) for r in self.runs.values()), nll_sentences, seed)
        self.split, self.n_samples, self.iw_samples, self.seed = split, n_samples, iw_samples, seed
        self.views: dict[float, dict] = {}
        self.n_updates = 0
        start = self._key(gamma if gamma is not None else self.gammas[len(self.gammas) // 2])
        self.slider = widgets.SelectionSlider(options=[(f"{g:g}", g) for g in self.gammas], value=start,
                                              description="γ", continuous_update=False)
        self.output = widgets.Output()
        self.text = widgets.HTML()
        self.widget = widgets.VBox([self.slider, self.output, self.text])
        self.slider.observe(self._on_change, names="value")
        if precompute:
            for g in self.gammas:
                self.view(g)
        self.update(start)

    def _key(self, gamma: float) -> float:
        for g in self.gammas:
            if abs(g - float(gamma)) < 1e-9:
                return g
        raise ValueError(f"no model trained with γ = {gamma}; trained: {', '.join(f'{g:g}' for g in self.gammas)}")

    def view(self, gamma: float) -> dict:
        """The numbers of the model trained with ``gamma``, computed on first use and kept."""
        g = self._key(gamma)
        if g not in self.views:
            self.views[g] = trained_model_view(self.runs[g], self.split, nll_index=self.nll_index,
                                               sentences=self.sentences, n_samples=self.n_samples,
                                               iw_samples=self.iw_samples, seed=self.seed)
        return self.views[g]

    def summary(self) -> pd.DataFrame:
        """One row per model computed so far: index γ; ``bound`` (n γ²/2), ``mean_kl``, ``nll`` (nats)."""
        rows = {g: {k: v[k] for k in ("bound", "mean_kl", "nll")} for g, v in sorted(self.views.items())}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("γ")

    def select(self, gamma: float):
        """Move the slider to ``gamma`` (one of the trained values) and update; returns the new figure."""
        g = self._key(gamma)
        if self.slider.value == g:
            return self.update(g)
        self.slider.value = g           # the observer calls update
        return self.figure

    def update(self, gamma: float):
        """Show the model trained with ``gamma``: set the attributes, redraw; returns the new figure."""
        v = self.view(gamma)
        self.gamma = self._key(gamma)
        self.kl_table, self.mean_kl, self.bound, self.nll = v["kl_table"], v["mean_kl"], v["bound"], v["nll"]
        self.samples, self.reconstructions = v["samples"], v["reconstructions"]
        kl_max = max(max(float(w["kl_table"]["kl"].max()), w["bound"] or 0.0) for w in self.views.values())
        self.figure = trained_gamma_view(self.gamma, self.kl_table, self.summary(), v["nz"], kl_max=kl_max)
        self.text.value = self._html(v)
        self.n_updates += 1
        show_figure(self.output, self.figure)
        return self.figure

    def overview_figure(self):
        """Every model of the sweep in one static figure (:func:`bnvae_core.viz.plots.gamma_sweep_overview`)."""
        for g in self.gammas:
            self.view(g)
        nz = self.views[self.gammas[0]]["nz"]
        return gamma_sweep_overview({g: self.views[g]["kl_table"] for g in self.gammas}, self.summary(), nz)

    def _html(self, v: dict) -> str:
        bound = "" if v["bound"] is None else f" (n γ²/2 = {v['bound']:.2f})"
        head = (f"<b>γ = {self.gamma:g}</b>: mean KL {v['mean_kl']:.2f} nats{bound} over {len(v['kl_table'])} "
                f"{_escape(self.split)} sentences; IW-NLL {v['nll']:.2f} nats (K = {v['iw_samples']}, "
                f"{v['nll_sentences']} fixed sentences)")
        samples = "".join(f"<li>{_escape(s) or '<i>(empty)</i>'}</li>" for s in v["samples"])
        return (f"<div>{head}<br><b>Samples from the prior</b> (z ~ N(0, I), greedy):<ol>{samples}</ol>"
                f"<b>Reconstructions</b> (greedy decoding of μ(x)):{_table_html(v['reconstructions'])}</div>")

    def _on_change(self, change: dict) -> None:
        self.update(change["new"])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


def _warn_if_splits_differ(runs: Mapping, split: str) -> None:
    import warnings

    first = next(iter(runs.values())).corpus.splits[split]
    for key, run in runs.items():
        other = run.corpus.splits[split]
        if len(other) != len(first) or not np.array_equal(other.ids, first.ids):
            warnings.warn(f"the {split} split of the run for {key} differs from the first run's: the NLL "
                          "sentences and the histograms are not the same sentences across models")
            return


class LatentPlayground:
    """Play with the latent space of several models side by side (e.g. ``{"VAE": vae_run, "BN-VAE": bn_run}``).

    Three tabs, each a method that recomputes its attributes and its HTML (testable without a kernel):

    * **interpolate** — :meth:`interpolate(a, b, steps) <interpolate>`: the greedy decodings of
      ``steps`` points on the line between the posterior means of sentences ``a`` and ``b``, per
      model (:func:`bnvae_core.analysis.playground.interpolation_table`) → ``interpolation``
      (index t, one column per model) and ``interpolation_diversity``;
    * **sample from the prior** — :meth:`sample(n, seed, greedy) <sample>`: ``n`` decodings of
      z ~ p(z), greedy or ancestral, seeded → ``samples``, ``sample_diversity``;
    * **nearest neighbours** — :meth:`neighbours(query, k) <neighbours>`: the ``k`` sentences of the
      pool whose μ is most cosine-similar to the query's, per model → ``neighbour_table``
      (index (model, rank); columns ``cosine, neighbour``).

    Diversity tables (:func:`bnvae_core.analysis.playground.diversity_table`): one row per model;
    ``unique`` sentences, ``distinct_1``/``distinct_2`` and ``self_bleu`` (NaN without nltk).
    Sentences (``a``, ``b``, ``query``) are pool indices, texts or token lists; the pool is the
    first ``max_pool`` sentences of the first run's ``split``, and the text boxes suggest them."""

    def __init__(self, runs: Mapping[str, object], *, split: str = "valid", a=0, b=1, steps: int = 7,
                 n_samples: int = 8, seed: int = 0, greedy: bool = True, query=0, k: int = 5,
                 max_pool: int = 1000, max_len: int = 30):
        if not runs:
            raise ValueError("LatentPlayground: no runs given (expected a dict name → trained run)")
        self.runs = dict(runs)
        self.corpus = next(iter(self.runs.values())).corpus
        rows = self.corpus.splits[split]
        self.pool_tokens = [sentence_tokens(self.corpus, i, split) for i in range(min(max_pool, len(rows)))]
        self.pool_texts = [" ".join(t) for t in self.pool_tokens]
        self._pool_index = {t: i for i, t in reversed(list(enumerate(self.pool_texts)))}
        self._pool_mu: dict[str, np.ndarray] = {}
        self.max_len, self._quiet = max_len, False
        self._build_widgets(a, b, steps, n_samples, seed, greedy, query, k)
        self.interpolate()
        self.sample()
        self.neighbours()

    def _build_widgets(self, a, b, steps, n_samples, seed, greedy, query, k) -> None:
        import ipywidgets as widgets

        def box(value, description):
            return widgets.Combobox(value=self._text(value), options=self.pool_texts, description=description,
                                    ensure_option=False, continuous_update=False,
                                    layout=widgets.Layout(width="90%"))
        self.a_box, self.b_box, self.query_box = box(a, "from"), box(b, "to"), box(query, "sentence")
        self.steps_slider = widgets.IntSlider(value=steps, min=2, max=15, description="steps", continuous_update=False)
        self.n_slider = widgets.IntSlider(value=n_samples, min=1, max=30, description="samples",
                                          continuous_update=False)
        self.seed_box = widgets.IntText(value=seed, description="seed")
        self.decoding = widgets.ToggleButtons(options=["greedy", "sampling"], value="greedy" if greedy else "sampling")
        self.resample = widgets.Button(description="new seed")
        self.k_slider = widgets.IntSlider(value=k, min=1, max=20, description="k", continuous_update=False)
        self.interpolation_html, self.samples_html, self.neighbours_html = (widgets.HTML() for _ in range(3))
        self.tabs = widgets.Tab(children=[
            widgets.VBox([self.a_box, self.b_box, self.steps_slider, self.interpolation_html]),
            widgets.VBox([widgets.HBox([self.n_slider, self.seed_box, self.resample]), self.decoding,
                          self.samples_html]),
            widgets.VBox([self.query_box, self.k_slider, self.neighbours_html])])
        for i, title in enumerate(("interpolate", "sample from the prior", "nearest neighbours")):
            self.tabs.set_title(i, title)
        self.widget = self.tabs
        for w in (self.a_box, self.b_box, self.steps_slider):
            w.observe(lambda _: self._from_widgets(self.interpolate, self.interpolation_html), names="value")
        for w in (self.n_slider, self.seed_box, self.decoding):
            w.observe(lambda _: self._from_widgets(self.sample, self.samples_html), names="value")
        for w in (self.query_box, self.k_slider):
            w.observe(lambda _: self._from_widgets(self.neighbours, self.neighbours_html), names="value")
        self.resample.on_click(lambda _: setattr(self.seed_box, "value", self.seed_box.value + 1))

    def _from_widgets(self, method, html) -> None:
        """A widget changed: recompute (unless a method is setting the widgets itself); a bad
        sentence shows its message instead of a traceback."""
        if self._quiet:
            return
        try:
            method()
        except (ValueError, BnvaeError) as err:
            html.value = f"<i>{_escape(err)}</i>"

    def _set(self, **values) -> None:
        """Set widget values without triggering the observers (a method's own arguments)."""
        self._quiet = True
        try:
            for name, value in values.items():
                if value is not None:
                    getattr(self, name).value = value
        finally:
            self._quiet = False

    def _text(self, sentence) -> str:
        if isinstance(sentence, (int, np.integer)):
            return self.pool_texts[int(sentence)]
        return sentence if isinstance(sentence, str) else " ".join(sentence)

    def tokens(self, sentence) -> list[str]:
        """Tokens of a pool index, a text (a pool sentence's own tokens, else the corpus's tokenizer)
        or a token list."""
        text = self._text(sentence)
        if text in self._pool_index:
            return self.pool_tokens[self._pool_index[text]]
        tokens = sentence_tokens(self.corpus, text) if isinstance(sentence, str) else list(sentence)
        if not tokens:
            raise ValueError(f"no words in {text!r}")
        return tokens

    def pool_means(self, name: str) -> np.ndarray:
        """(N_pool, nz) posterior means of the pool under model ``name`` (computed once)."""
        if name not in self._pool_mu:
            self._pool_mu[name] = posterior_means(self.runs[name], self.pool_tokens)
        return self._pool_mu[name]

    def interpolate(self, a=None, b=None, steps: int | None = None) -> pd.DataFrame:
        """Interpolate between ``a`` and ``b`` (default: the text boxes) in ``steps`` points, per model."""
        self._set(a_box=None if a is None else self._text(a), b_box=None if b is None else self._text(b),
                  steps_slider=steps)
        a_tok, b_tok = self.tokens(self.a_box.value), self.tokens(self.b_box.value)
        self.interpolation = interpolation_table(self.runs, a_tok, b_tok, self.steps_slider.value, self.max_len)
        self.interpolation_diversity = diversity_table(self.interpolation)
        self.interpolation_html.value = (
            "<b>Greedy decodings of z<sub>t</sub> = (1 − t) μ(a) + t μ(b)</b>" + _table_html(self.interpolation)
            + "<b>Diversity of these sentences</b>" + _table_html(self.interpolation_diversity))
        return self.interpolation

    def sample(self, n: int | None = None, seed: int | None = None, greedy: bool | None = None) -> pd.DataFrame:
        """``n`` sentences from z ~ p(z) per model, the same z for every model of the same size (``seed``)."""
        self._set(n_slider=n, seed_box=seed, decoding=None if greedy is None else ("greedy" if greedy else "sampling"))
        greedy = self.decoding.value == "greedy"
        self.samples = prior_samples_table(self.runs, self.n_slider.value, self.seed_box.value, greedy, self.max_len)
        self.sample_diversity = diversity_table(self.samples)
        how = "greedy" if greedy else "ancestral sampling"
        self.samples_html.value = (f"<b>z ~ p(z), seed {self.seed_box.value}, {how} decoding</b>"
                                   + _table_html(self.samples)
                                   + "<b>Diversity</b>" + _table_html(self.sample_diversity))
        return self.samples

    def neighbours(self, query=None, k: int | None = None) -> pd.DataFrame:
        """The ``k`` pool sentences nearest to ``query`` in μ-space (cosine), per model."""
        self._set(query_box=None if query is None else self._text(query), k_slider=k)
        tokens = self.tokens(self.query_box.value)
        exclude = self._pool_index.get(" ".join(tokens))
        tables = {name: nearest_sentences(posterior_means(run, [tokens])[0], self.pool_means(name), self.pool_texts,
                                          self.k_slider.value, exclude=exclude).set_index("rank")
                  for name, run in self.runs.items()}
        self.neighbour_table = pd.concat(tables, names=["model", "rank"])
        self.neighbours_html.value = (f"<b>Nearest to “{_escape(' '.join(tokens))}” by cosine of μ</b> "
                                      f"(among {len(self.pool_texts)} sentences)" + _table_html(self.neighbour_table))
        return self.neighbour_table

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)
