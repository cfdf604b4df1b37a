"""Posterior families: what the metrics need to know about q(z|x), whatever the method.

A model's ``posterior`` (:class:`GaussianPosterior` or :class:`VMFPosterior`) gives the KL to
the prior, a reparameterized sampler, the log-densities of q and of the prior, and the mean
E_q[z], so :mod:`bnvae_core.metrics.text` serves every method with the same code.

Shapes: ``mu, logvar: (B, nz)``; ``z: (B, nz)`` or ``(B, k, nz)`` for k samples per sentence.
"""
from __future__ import annotations

import math

import torch

from . import distributions as _dist


class GaussianPosterior:
    """q(z|x) = N(μ, diag σ²) with prior N(0, I) (VAE, BN-VAE, β-VAE, FB, δ-VAE, DU-VAE, ...).

    Shapes: ``mu, logvar: (B, nz)``; ``z: (B, nz)`` or ``(B, k, nz)``."""
    kind = "gaussian"

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``½ (μ_j² + σ_j² − log σ_j² − 1)``, (B, nz)."""
        return _dist.gaussian_kl_per_dim(mu, logvar)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z)) per sentence, (B,)."""
        return self.kl_per_dim(mu, logvar).sum(-1)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """z = μ + σ ε (reparameterized): (B, nz), or (B, k, nz). With ``generator`` the noise is
        drawn on the generator's device in ``mu``'s dtype, then moved to ``mu``'s device."""
        if generator is None:
            return reparameterize(mu, logvar, k)
        shape = tuple(mu.shape) if k is None else (mu.shape[0], k, mu.shape[1])
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=generator.device).to(mu.device)
        std = (0.5 * logvar).exp()
        return mu + std * eps if k is None else mu.unsqueeze(1) + std.unsqueeze(1) * eps

    def log_density(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log q(z|x), summed over the last axis (shapes as :func:`log_normal`)."""
        return _dist.gaussian_log_density(z, mu, logvar)

    def prior_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I), summed over the last axis."""
        return _dist.gaussian_log_density(z)

    def mean(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """E_q[z] = μ (what active units measure)."""
        return mu

    def sample_prior(self, n: int, nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ N(0, I), (n, nz), on the generator's device (CPU by default)."""
        return torch.randn((n, nz), generator=generator, device=generator.device if generator else None)


class VMFPosterior:
    """q(z|x) = vMF(μ, κ) on the unit sphere S^{n−1}, κ fixed; prior uniform on the sphere
    (vMF-VAE, Xu & Durrett 2018). ``mu`` is a unit vector (B, n); ``logvar`` is ignored.

    The KL is the constant :func:`bnvae_core.models.distributions.vmf_kl_to_uniform` ``(κ, n)``,
    independent of μ (e.g. ≈ 2.17 nats for κ = 13, n = 32): it cannot collapse, nor adapt.
    Per-dimension KL is not defined for a vMF (the density does not factorize): NaN."""
    kind = "vmf"

    def __init__(self, kappa: float, nz: int):
        self.kappa, self.nz = float(kappa), int(nz)
        self.kl_value = _dist.vmf_kl_to_uniform(self.kappa, self.nz)
        self.mean_cosine = float(_dist.vmf_mean_cosine(self.kappa, self.nz))   # A_n(κ) = E[μ·z]

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        return torch.full_like(mu, float("nan"))

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        return mu.new_full(mu.shape[:-1], self.kl_value)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor | None, k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Wood's rejection sampler + Householder reflection (:func:`~bnvae_core.models.distributions.vmf_sample`);
        gradients reach μ. (B, nz) or (B, k, nz)."""
        n = 1 if k is None else k
        if generator is not None and generator.device != mu.device:
            z = _dist.vmf_sample(mu.to(generator.device), self.kappa, n, generator).to(mu.device)
        else:
            z = _dist.vmf_sample(mu, self.kappa, n, generator)
        return z.squeeze(1) if k is None else z

    def log_density(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        """log vMF(z; μ, κ) = log C_n(κ) + κ μ·z."""
        return _dist.vmf_log_density(z, mu, self.kappa)

    def prior_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """−log Area(S^{n−1}), a constant."""
        return z.new_full(z.shape[:-1], _dist.uniform_sphere_log_density(z.shape[-1]))

    def mean(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        """E_q[z] = A_n(κ) μ."""
        return self.mean_cosine * mu

    def sample_prior(self, n: int, nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ Uniform(S^{nz−1}) (normalized Gaussians), (n, nz)."""
        g = torch.randn((n, nz), generator=generator, device=generator.device if generator else None)
        return g / g.norm(dim=-1, keepdim=True)


#: DU-VAE's floor on the posterior variance, δ/(2πe) with δ = 1 (its ``delta_rate``): the
#: differential entropy ½ log(2πe σ²) of every posterior dimension stays ≥ 0
DUVAE_VAR_FLOOR = 1.0 / (2.0 * math.pi * math.e)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """z = μ + σ ε: (B, nz), or (B, k, nz) for k samples (:func:`bnvae_core.models.distributions.reparameterize`)."""
    z = _dist.reparameterize(mu, logvar, 1 if k is None else k)
    return z.squeeze(1) if k is None else z
