"""Interactive views for the notebooks (ipywidgets), with their logic testable without a kernel.

:class:`GammaExplorer` — a slider over BN-VAE's fixed scale γ (Zhu et al. 2020 §3.2). For each
γ it batch-normalizes the same pre-BN posterior means with :class:`bnvae_core.models.layers.BNHead`
(batch statistics, as in training) and redraws :func:`bnvae_core.viz.plots.gamma_explorer`: the
bound ``n γ²/2`` with the measured ``½ mean ‖μ̂‖²``, and the distribution of μ̂.

The slider's callback only calls :meth:`GammaExplorer.update`, which recomputes
:attr:`mu_hat`, :attr:`kl_floor` and :attr:`figure`; a test sets ``explorer.slider.value`` and
checks those changed. Showing the figure needs a running kernel; everything else does not.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.layers import BNHead
from .plots import gamma_explorer


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
        """Put the current figure into the Output widget by setting its ``outputs`` state.

        Deliberately not ``with self.output: clear_output(); display(...)``: that routes
        IOPub messages through the Output widget's capture, which headless executors
        (nbclient/papermill) emulate and which can leave a cell hanging
        (jupyter/nbclient#312); replacing the state is one comm message."""
        from IPython import get_ipython
        if get_ipython() is None:       # plain Python (tests): nothing to display into
            return
        self.output.outputs = ()
        self.output.append_display_data(self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)
