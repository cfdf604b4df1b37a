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

The training step itself is :class:`bnvae_core.objectives.Aggressive`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


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


def is_decoder_parameter(name: str) -> bool:
    """Decoder θ vs inference network φ (encoder and its BN head), by parameter name."""
    return name.startswith("decoder.")


def keep_gradients_of(model: torch.nn.Module, part: str) -> None:
    """Drop (set to None) the gradients of every parameter not in ``part`` ('encoder' or 'decoder'),
    so the next ``optimizer.step()`` updates only that part (SGD and Adam skip gradient-less
    parameters, and their momentum/moment buffers stay untouched, exactly as with the separate
    encoder and decoder optimizers of the reference code)."""
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
    for name, p in model.named_parameters():
        if is_decoder_parameter(name) != (part == "decoder"):
            p.grad = None
