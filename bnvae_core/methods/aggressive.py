"""Aggressive inference-network training against the lagging encoder (He et al., ICLR 2019).

He et al. observe that early in training the approximate posterior q(z|x) *lags* behind the
model's true posterior p(z|x), and the decoder learns to ignore z before the encoder has
caught up. Their fix (Algorithm 1) alternates:

1. **inner loop** — update only the encoder φ, on fresh random training mini-batches, until
   the ELBO stops improving ("until convergence");
2. **one decoder step** — update only the decoder θ on the original mini-batch;

and runs this *aggressive* mode only at the start: after every epoch the mutual information
I(x; z) under q is measured on the validation set, and as soon as it stops climbing the
method switches to ordinary VAE training (both φ and θ updated on every batch).

The stop rules, as in the authors' code (``jxhe/vae-lagging-encoder``, ``text.py``):

* **inner loop** (:class:`InnerLoopStopRule`): the per-token loss (−ELBO with the current KL
  weight, summed over sentences, divided by the predicted tokens) is accumulated over windows
  of ``check_every`` = 15 encoder updates; after each full window it is compared with the
  previous window's, and the loop stops when it got *worse* (``previous − current < 0``; an
  equal loss continues). The first window is compared with +∞ (the code's 1e4), so at least
  ``check_every`` updates are made. The loop also stops after ``max_steps`` = 100 updates
  (the code's ``while sub_iter < 100`` allows 99; the paper says 100).
* **aggressive phase** (:func:`aggressive_phase_over`): ends after the first epoch whose
  validation MI is lower than the previous epoch's (``current − previous < 0``), the previous
  MI starting at 0.

The method is :class:`Aggressive` (its encoder-only updates go through the trainer's update step,
``ctx.update(loss, only='encoder')``, :func:`bnvae_core.training.step.update`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import Method


@dataclass
class InnerLoopStopRule:
    """Decides when the encoder-only inner loop stops; feed it each update's loss with :meth:`update`.

    ``update(loss_sum, n_tokens)`` is called after every encoder update with that mini-batch's
    summed loss (nats) and its number of predicted tokens; it returns True when the loop must
    stop now. ``steps`` counts the updates made, ``window_losses`` the per-token loss of every
    completed window (for plots and tests)."""
    check_every: int = 15
    max_steps: int = 100
    steps: int = 0
    previous: float = math.inf
    window_loss: float = 0.0
    window_tokens: int = 0
    window_losses: list = field(default_factory=list)
    stopped_by: str | None = None      #: 'no-improvement' or 'max-steps' once stopped

    def __post_init__(self):
        if self.check_every < 1 or self.max_steps < 1:
            raise ValueError(f"check_every and max_steps must be >= 1, got {self.check_every}, {self.max_steps}")

    def update(self, loss_sum: float, n_tokens: int) -> bool:
        self.steps += 1
        self.window_loss += float(loss_sum)
        self.window_tokens += int(n_tokens)
        if self.steps % self.check_every == 0:
            current = self.window_loss / max(self.window_tokens, 1)
            self.window_losses.append(current)
            if self.previous - current < 0:
                self.stopped_by = "no-improvement"
                return True
            self.previous = current
            self.window_loss, self.window_tokens = 0.0, 0
        if self.steps >= self.max_steps:
            self.stopped_by = "max-steps"
            return True
        return False


def aggressive_phase_over(previous_mi: float, current_mi: float) -> bool:
    """True when the validation MI went down this epoch (``current − previous < 0``): stop being aggressive."""
    return current_mi - previous_mi < 0


class Aggressive(Method):
    """``aggressive``: He et al. (2019), see this module's docstring. While aggressive, each
    step runs the encoder-only inner loop (first on the current batch, then on random training
    batches) until :class:`InnerLoopStopRule` says stop, then one
    decoder-only update on the current batch (the loop's step on a loss whose posterior
    parameters are detached, so only the decoder gets gradients; the gradient norm is then
    clipped over the decoder alone, where the reference code clips over both); after the first
    epoch whose validation MI drops, it trains as a plain VAE. Adds ``aggressive`` and
    ``inner_steps_mean`` to the train rows."""
    name = "aggressive"
    label = "Aggressive"

    def __init__(self, config):
        super().__init__(config)
        self.aggressive = True
        self.previous_mi = 0.0
        self.inner_steps: list[int] = []

    def train_step(self, ctx, batch, kl_weight):
        if not self.aggressive:
            return super().train_step(ctx, batch, kl_weight)
        model = ctx.model
        rule = InnerLoopStopRule(self.config.aggressive_check_every, self.config.aggressive_max_steps)
        b = batch
        while True:
            terms = self.loss(model, b.tokens, b.lengths, kl_weight)
            if not torch.isfinite(terms.loss):
                return terms                      # the loop stops or skips the batch
            ctx.update(terms.loss, only="encoder")
            if rule.update(float((terms.rec + kl_weight * terms.kl).detach().sum()), b.n_tokens):
                break
            b = ctx.random_train_batch()
        self.inner_steps.append(rule.steps)
        mu, logvar = model.encode(batch.tokens, batch.lengths)
        return self.loss_given_posterior(model, batch.tokens, batch.lengths, mu.detach(), logvar.detach(),
                                         kl_weight)

    def before_epoch(self, ctx):
        self.inner_steps = []

    def after_epoch(self, ctx, train_row, valid_row):
        train_row["aggressive"] = self.aggressive
        train_row["inner_steps_mean"] = float(np.mean(self.inner_steps)) if self.inner_steps else 0.0
        if self.aggressive:
            mi = valid_row["mi"]
            if aggressive_phase_over(self.previous_mi, mi):
                self.aggressive = False
            self.previous_mi = mi

    def state_dict(self):
        return {"aggressive": self.aggressive, "previous_mi": self.previous_mi}

    def load_state_dict(self, state):
        self.aggressive = bool(state.get("aggressive", True))
        self.previous_mi = float(state.get("previous_mi", 0.0))
