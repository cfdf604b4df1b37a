"""Objectives: what each method minimises, computed from the same model outputs.

Every method is a :class:`Method` registered under its command-line name. Its
:meth:`Method.loss` takes the model, a batch and the current KL weight (the warm-up
schedule) and returns a :class:`LossTerms`: the scalar to back-propagate plus the
per-sentence reconstruction and KL that the metrics log. Adding a baseline is one small
subclass here, never a fork of the training loop.

* ``vae`` — the ELBO with linear KL warm-up (Bowman et al. 2016):
  ``loss = E_q[−log p(x|z)] + w_t · KL(q(z|x) ‖ N(0, I))``, one reparameterized sample.
* ``bnvae`` — the same objective; the difference is in the model (μ batch-normalized with
  fixed γ, :class:`bnvae_core.model.BNHead`), which bounds the KL from below (Zhu et al. 2020).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .model import TextVAE, gaussian_kl, reparameterize


@dataclass
class LossTerms:
    """``loss``: scalar to minimise; ``rec``, ``kl``: (B,) per sentence, in nats (KL not weighted)."""
    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    extra: dict = field(default_factory=dict)


class Method:
    """Base class: the plain VAE objective with KL weight ``kl_weight``."""
    name = "vae"
    has_latent = True

    def __init__(self, config):
        self.config = config

    def kl_terms(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-sentence KL (B,) that the objective weights; analytic Gaussian KL here."""
        return gaussian_kl(mu, logvar).sum(-1)

    def loss(self, model: TextVAE, tokens: torch.Tensor, lengths: torch.Tensor,
             kl_weight: float) -> LossTerms:
        mu, logvar = model.encode(tokens, lengths)
        z = reparameterize(mu, logvar)
        rec = model.reconstruction_nll(tokens, lengths, z)
        kl = gaussian_kl(mu, logvar).sum(-1)
        return LossTerms((rec + kl_weight * self.kl_terms(mu, logvar)).mean(), rec, kl,
                         {"mu": mu, "logvar": logvar})


class BNVAE(Method):
    """BN-VAE: the VAE objective on a model whose μ goes through :class:`BNHead`."""
    name = "bnvae"


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``cls`` selectable as ``train --model cls.name``."""
    METHODS[cls.name] = cls
    return cls


for _cls in (Method, BNVAE):
    register_method(_cls)


def make_method(config) -> Method:
    return METHODS[config.model](config)
