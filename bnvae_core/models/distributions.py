r"""Latent distributions for the text-VAE baselines: diagonal Gaussians, δ-VAE and vMF.

Everything here is plain ``torch`` (and ``math``); no SciPy.  Shapes follow the paper's
reference code: the encoder gives ``mu, logvar: (batch, nz)``, samples are
``z: (batch, n_samples, nz)``.

How the baselines use these functions
-------------------------------------

**VAE / BN-VAE / CVAE** (Kingma & Welling 2014; Zhu et al., ACL 2020).  The posterior is
``q(z|x) = N(mu, diag(exp(logvar)))`` and the prior ``N(0, I)``; the ELBO's KL term is
:func:`gaussian_kl` (closed form), the samples come from :func:`reparameterize`.  BN-VAE
only changes how ``mu`` is produced (batch normalisation with a fixed scale γ), so it uses
the same helpers.  A CVAE with a learned prior ``p(z|c) = N(mu_p, diag(exp(logvar_p)))``
uses :func:`gaussian_kl_two`.  Importance-sampled NLL (below) and mutual information use
:func:`gaussian_log_density` for ``log q(z|x)`` and ``log p(z)``.

**δ-VAE** (Razavi, van den Oord, Poole & Vinyals, ICLR 2019, "Preventing posterior
collapse with δ-VAEs").  The posterior family is restricted so that the per-dimension KL to
``N(0, 1)`` can never fall below a "committed rate" δ, hence ``KL(q(z|x) || p) ≥ δ·nz``
for every ``x`` and the posterior cannot collapse.  Two forms are provided:

* *fixed variance* — :func:`delta_vae_sigma` gives the posterior std σ_δ < 1 whose
  zero-mean KL is exactly δ per dimension; with ``logvar = 2 log σ_δ`` fixed, the KL is
  :func:`delta_vae_kl` ``= δ·nz + ½‖mu‖² ≥ δ·nz``.
* *bounded variance* — the parameterisation in Razavi et al. (Sec. 3.1) and in the BN-VAE
  authors' code (``DeltaGaussianLSTMEncoder`` in github.com/valdersoul/bn-vae,
  ``modules/encoders/enc_lstm.py``), i.e. the δ-VAE baseline as the BN-VAE authors
  implemented it: σ is squashed into ``[σ_l, σ_u]`` (the two roots of ``σ² − log σ² − 1 = 2δ``,
  :func:`delta_vae_sigma_bounds`) and the mean is then set so that the KL is at least δ
  per dimension (:func:`delta_vae_constrain`).  The fixed-variance form is the special case
  σ = σ_l.

**vMF-VAE** (Xu & Durrett, EMNLP 2018, "Spherical latent spaces for stable variational
autoencoders"; also Guu et al. 2018, Davidson et al. 2018).  ``z`` lies on the unit sphere
S^{m-1} ⊂ R^m, the prior is uniform there (:func:`uniform_sphere_log_density`), and the
posterior is ``vMF(mu, κ)`` with ``mu`` the normalised encoder output and a *fixed*
concentration κ.  The KL (:func:`vmf_kl_to_uniform`) depends on κ and m only, not on
``mu``: it is a constant, so there is nothing for the optimiser to push to zero and no
collapse by construction (but also no per-example flexibility, which is BN-VAE's point).
Samples come from :func:`vmf_sample` (Wood 1994 rejection sampler + Householder
reflection; gradients reach ``mu``, none reach κ, which is a hyper-parameter).  Note that
the BN-VAE reference code computes the vMF KL with the formula of Guu et al. (its
``vMF._vmf_kld``), which its own comment says deviates from the exact one; for m = 32,
κ = 13 it gives ≈2.084 nats where the exact value (here) is ≈2.173.

**NLL by importance sampling** (Burda et al. 2016), for every model above::

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K,  z_k ~ q(z|x)

with, for Gaussian models, ``log q`` = :func:`gaussian_log_density` ``(z, mu, logvar)`` and
``log p`` = :func:`gaussian_log_density` ``(z, 0, 0)`` (or the CVAE prior); for vMF
models, ``z`` from :func:`vmf_sample`, ``log q`` = :func:`vmf_log_density` and
``log p`` = :func:`uniform_sphere_log_density` ``(m)``.

Bessel functions
----------------
The vMF normaliser needs ``log I_v(κ)`` for half-integer/integer orders up to m/2 (m up to
a few hundred) and κ up to thousands, where ``I_v`` itself overflows or underflows in
float64; ``torch.special`` only has orders 0 and 1.  :func:`log_bessel_iv` sums the
ascending series ``I_v(x) = Σ_k (x/2)^{2k+v} / (k! Γ(k+v+1))`` in log space.  All its
terms are positive, so the log-sum-exp has no cancellation, and only a window of
``O(√(x+v))`` terms around the largest one contributes above double precision, so it is
accurate (≈1e-14 relative) and cheap for any ``x ≥ 0`` and ``v > −1``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

__all__ = [
    "gaussian_kl", "gaussian_kl_per_dim", "gaussian_kl_two", "gaussian_log_density",
    "reparameterize",
    "delta_vae_sigma", "delta_vae_sigma_bounds", "delta_vae_kl", "delta_vae_constrain",
    "log_bessel_iv", "vmf_log_normalizer", "vmf_mean_cosine", "vmf_kl_to_uniform",
    "vmf_log_density", "vmf_sample", "uniform_sphere_log_density",
]

LOG_2PI = math.log(2.0 * math.pi)
Number = Union[float, int]


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Per-dimension KL(N(mu, diag σ²) || N(0, I)), σ² = exp(logvar).

    ``KL_j = ½ (mu_j² + σ_j² − log σ_j² − 1)``, shape ``(batch, nz)`` for
    ``mu, logvar: (batch, nz)`` (any broadcastable shapes work).  Used for the
    "active units" and per-dimension KL plots (BN-VAE, Zhu et al. 2020, Sec. 3).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL(N(mu, diag exp(logvar)) || N(0, I)) per example.

    ``KL = ½ Σ_j (mu_j² + σ_j² − log σ_j² − 1)``; ``mu, logvar: (batch, nz)`` →
    ``(batch,)``.  This is the ELBO's rate term for the VAE and BN-VAE (Kingma &
    Welling 2014, App. B).
    """
    return gaussian_kl_per_dim(mu, logvar).sum(dim=-1)


def gaussian_kl_two(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                    mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    r"""KL(N(mu_q, diag σ_q²) || N(mu_p, diag σ_p²)) per example, ``(batch,)``.

    ``KL = ½ Σ_j [log σ_p² − log σ_q² + (σ_q² + (mu_q − mu_p)²) / σ_p² − 1]``.

    All arguments ``(batch, nz)`` (or broadcastable).  For a CVAE with a learned prior
    ``p(z|c)`` (Zhao et al. 2017; BN-VAE's CVAE extension, Zhu et al. 2020 Sec. 5);
    with ``mu_p = 0, logvar_p = 0`` it equals :func:`gaussian_kl`.
    """
    var_ratio = (logvar_q - logvar_p).exp()
    mahal = (mu_q - mu_p).pow(2) * (-logvar_p).exp()
    return 0.5 * (var_ratio + mahal - 1.0 - (logvar_q - logvar_p)).sum(dim=-1)


def _align_params(z: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Insert singleton sample axes into ``param: (batch, d)`` to match ``z: (batch, *S, d)``."""
    if param.dim() >= 2 and z.dim() > param.dim():
        extra = z.dim() - param.dim()
        param = param.reshape(param.shape[:-1] + (1,) * extra + param.shape[-1:])
    return param


def gaussian_log_density(z: torch.Tensor, mu: Union[torch.Tensor, Number] = 0.0,
                         logvar: Union[torch.Tensor, Number] = 0.0) -> torch.Tensor:
    r"""log N(z; mu, diag exp(logvar)), summed over the last axis.

    ``log N = −½ Σ_j [(z_j − mu_j)² / σ_j² + log σ_j² + log 2π]``.

    Shapes: ``z: (batch, *S, nz)`` with ``mu, logvar: (batch, nz)`` — the parameters of
    row ``b`` are used for every sample ``z[b, ...]`` (``S`` = any number of sample axes,
    e.g. ``z: (batch, n_samples, nz)`` from :func:`reparameterize`), giving
    ``(batch, *S)``.  If ``z`` and the parameters have the same number of axes, or the
    parameters are scalars or ``(nz,)``, ordinary broadcasting applies; e.g.
    ``z: (n, 1, nz)`` against ``mu: (1, batch, nz)`` gives all pairs ``(n, batch)``, as
    needed for the aggregate posterior in the mutual-information estimate.  The prior
    ``N(0, I)`` is ``gaussian_log_density(z)``.  Used for importance-sampled NLL.
    """
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    mu, logvar = _align_params(z, mu), _align_params(z, logvar)
    per_dim = (z - mu).pow(2) * (-logvar).exp() + logvar + LOG_2PI
    return -0.5 * per_dim.sum(dim=-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Samples ``z = mu + σ ⊙ ε``, ε ~ N(0, I), shape ``(batch, n_samples, nz)``.

    ``mu, logvar: (batch, nz)``; differentiable in both (the reparameterisation trick,
    Kingma & Welling 2014).  ``generator`` makes the noise reproducible.
    """
    batch, nz = mu.shape
    eps = torch.randn((batch, n_samples, nz), generator=generator,
                      dtype=mu.dtype, device=mu.device)
    return mu.unsqueeze(1) + eps * (0.5 * logvar).exp().unsqueeze(1)


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not (delta > 0.0 and math.isfinite(delta)):
        raise ValueError(f"delta (the committed rate, nats per dimension) must be > 0, got {delta}")
    return delta


def _solve_log_variance(delta: float, lo: float, hi: float) -> float:
    """Root u of f(u) = e^u − u − 1 − 2δ in [lo, hi] (f changes sign there), u = log σ²."""
    def f(u: float) -> float:
        return math.expm1(u) - u - 2.0 * delta

    flo = f(lo)
    for _ in range(200):  # bisection: the bracket width ≤ 2δ+1 halves each step
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if fm == 0.0:
            return mid
        if (fm > 0) == (flo > 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    u = 0.5 * (lo + hi)
    for _ in range(3):  # Newton polish: f'(u) = e^u − 1 ≠ 0 away from the double root u = 0
        d = math.expm1(u)
        if d == 0.0:
            break
        u -= f(u) / d
    return u


def delta_vae_sigma_bounds(delta: float) -> Tuple[float, float]:
    r"""The two stds ``σ_l < 1 < σ_u`` whose zero-mean KL to N(0, 1) is exactly δ.

    They solve ``½(σ² − log σ² − 1) = δ``, i.e. ``s − log s − 1 − 2δ = 0`` for ``s = σ²``
    (Razavi et al. 2019, Sec. 3.1: the "committed rate" region; the BN-VAE code obtains the
    same roots with SymPy).  In closed form ``s_l = −W_0(−e^{−1−2δ})`` and
    ``s_u = −W_{−1}(−e^{−1−2δ})`` (Lambert W); here they are found by bisection on
    ``u = log s`` — in ``[−1−2δ, 0]`` for the lower root, ``[0, 2√δ]`` for the upper one
    (``e^u − u − 1 ≥ u²/2`` for ``u ≥ 0``) — then polished with Newton steps.
    Any σ ∈ [σ_l, σ_u] with a suitable mean keeps the KL ≥ δ; see
    :func:`delta_vae_constrain`.
    """
    delta = _check_delta(delta)
    u_l = _solve_log_variance(delta, -1.0 - 2.0 * delta, 0.0)
    u_u = _solve_log_variance(delta, 0.0, 2.0 * math.sqrt(delta))
    return math.exp(0.5 * u_l), math.exp(0.5 * u_u)


def delta_vae_sigma(delta: float) -> float:
    r"""Fixed posterior std σ_δ of the fixed-variance δ-VAE.

    The smaller root (σ_δ < 1) of ``½(σ² − log σ² − 1) = δ``, the per-dimension KL of
    ``N(0, σ²)`` to ``N(0, 1)``: with every posterior variance fixed to σ_δ², the KL of any
    posterior ``N(mu, σ_δ² I)`` is ``δ·nz + ½‖mu‖² ≥ δ·nz`` (:func:`delta_vae_kl`).  The
    root below 1 is the one used because it makes the posterior *narrower* than the prior
    (a noisy but informative code); the other root σ_u > 1 would give a posterior wider
    than the prior, which no encoder wants.  E.g. δ = 0.1 → σ_δ ≈ 0.7023,
    δ = 0.15 → σ_δ ≈ 0.6412.  Solved as in :func:`delta_vae_sigma_bounds`.
    """
    return delta_vae_sigma_bounds(delta)[0]


def delta_vae_kl(mu: torch.Tensor, delta: float, per_dim: bool = False) -> torch.Tensor:
    r"""KL of the fixed-variance δ-VAE posterior ``N(mu, σ_δ² I)`` to ``N(0, I)``.

    ``KL = Σ_j (δ + ½ mu_j²) = δ·nz + ½‖mu‖²``, exactly :func:`gaussian_kl` with
    ``logvar = 2 log σ_δ`` (σ_δ from :func:`delta_vae_sigma`), since
    ``½(σ_δ² − log σ_δ² − 1) = δ``.  ``mu: (batch, nz)`` → ``(batch,)``, or
    ``(batch, nz)`` with ``per_dim=True``.  Never below ``δ·nz``.
    """
    delta = _check_delta(delta)
    kl = delta + 0.5 * mu.pow(2)
    return kl if per_dim else kl.sum(dim=-1)


def delta_vae_constrain(raw_mu: torch.Tensor, raw_logvar: torch.Tensor, delta: float,
                        eps: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Map unconstrained encoder outputs to a δ-VAE posterior ``(mu, logvar)``, KL ≥ δ per dim.

    Razavi et al. (2019, Sec. 3.1) parameterisation, as in the BN-VAE authors'
    ``DeltaGaussianLSTMEncoder``::

        σ   = σ_l + (σ_u − σ_l) · sigmoid(raw_logvar)                 ∈ [σ_l, σ_u]
        mu  = sqrt( 2δ + 1 + log σ² − σ² + relu(raw_mu) + eps )       ≥ 0

    where ``[σ_l, σ_u]`` = :func:`delta_vae_sigma_bounds` ``(δ)``, on which
    ``2δ + 1 + log σ² − σ² ≥ 0``.  Substituting, the per-dimension KL is
    ``½(mu² + σ² − log σ² − 1) = δ + ½ relu(raw_mu) + ½ eps ≥ δ`` whatever the raw
    inputs.  ``eps`` keeps the square root differentiable at its lower end (the reference
    code uses the same 1e-6).  (The reference code also clips the sigmoid to ≥ 0.02; here
    it is left unclipped.)  The posterior mean is non-negative in every dimension, as in the
    reference code.  ``raw_mu, raw_logvar: (batch, nz)`` → ``mu, logvar: (batch, nz)``;
    the KL is then :func:`gaussian_kl` ``(mu, logvar)``.
    """
    sigma_l, sigma_u = delta_vae_sigma_bounds(delta)
    sigma = sigma_l + (sigma_u - sigma_l) * torch.sigmoid(raw_logvar)
    logvar = 2.0 * sigma.log()
    slack = (2.0 * delta + 1.0 + logvar - sigma.pow(2)).clamp_min(0.0)
    mu = (slack + torch.relu(raw_mu) + eps).sqrt()
    return mu, logvar


def _as_float64(x: Union[torch.Tensor, Number]) -> Tuple[torch.Tensor, torch.dtype]:
    """``x`` as a float64 tensor, and the dtype to return: x's own if it is a floating
    tensor, else float64 (Python numbers, integer tensors)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64), (x.dtype if x.is_floating_point() else torch.float64)
    return torch.tensor(float(x), dtype=torch.float64), torch.float64


def log_bessel_iv(v: float, x: Union[torch.Tensor, Number]) -> torch.Tensor:
    r"""``log I_v(x)``, modified Bessel function of the first kind, for ``v > −1``, ``x ≥ 0``.

    Computed in float64 from the ascending series
    ``I_v(x) = Σ_{k≥0} (x/2)^{2k+v} / (k! Γ(k+v+1))`` (Abramowitz & Stegun 9.6.10) as a
    log-sum-exp of ``t_k = (2k+v) log(x/2) − lgamma(k+1) − lgamma(k+v+1)``.  All terms are
    positive (no cancellation) and ``t_k`` is concave in ``k`` with its maximum at
    ``k* ≈ (√(v² + x²) − v − 2)/2``; the sum is taken over
    ``2W + 1`` consecutive ``k`` from ``max(0, k* − W)``, ``W = ⌈√(200(k*+1))⌉ + 30``;
    the first terms left out are more than 100 nats below the largest (checked for
    ``x ≤ 1e7``, ``v ≤ 1000``), so the relative error is at the level of
    double rounding (checked against ``scipy.special.ive`` in the tests) while the cost is
    ``O(√x)`` terms.  ``log I_v(0)`` is ``0`` for ``v = 0`` and ``−inf`` otherwise.

    ``x``: a number or tensor (any shape); returns a tensor of ``x``'s shape, with ``x``'s
    floating dtype (float64 for a number).  Differentiable in ``x``
    (``d/dx log I_v = I_{v+1}/I_v + v/x``).
    """
    v = float(v)
    if not v > -1.0:
        raise ValueError(f"log_bessel_iv needs order v > -1, got {v}")
    xt, out_dtype = _as_float64(x)
    x64 = xt
    if (x64 < 0).any():
        raise ValueError("log_bessel_iv needs x >= 0")
    flat = x64.reshape(-1)
    if flat.numel() == 0:
        return x64.to(out_dtype)
    with torch.no_grad():
        kstar = ((torch.sqrt(v * v + flat * flat) - v - 2.0) * 0.5).clamp_min(0.0).floor()
        width = int(math.ceil(math.sqrt(200.0 * (float(kstar.max()) + 1.0)))) + 30
        start = (kstar - width).clamp_min(0.0)
        k = start.unsqueeze(-1) + torch.arange(2 * width + 1, dtype=torch.float64,
                                               device=flat.device)
    log_half_x = torch.log(flat.clamp_min(1e-300) * 0.5).unsqueeze(-1)
    terms = (2.0 * k + v) * log_half_x - torch.lgamma(k + 1.0) - torch.lgamma(k + v + 1.0)
    out = torch.logsumexp(terms, dim=-1)
    if v != 0.0:  # I_v(0) = 0 for v ≠ 0; the clamp above would give a large negative number
        out = torch.where(flat == 0, torch.full_like(out, -math.inf), out)
    return out.reshape(x64.shape).to(out_dtype)


def _check_dim(m: int) -> int:
    if int(m) != m or m < 2:
        raise ValueError(f"the vMF needs an ambient dimension m >= 2, got {m}")
    return int(m)


def uniform_sphere_log_density(m: int) -> float:
    r"""``log(1 / Area(S^{m-1}))`` with ``Area(S^{m-1}) = 2 π^{m/2} / Γ(m/2)``.

    The vMF-VAE prior's log density (constant on the sphere), e.g. ``−log 4π`` for m = 3.
    """
    m = _check_dim(m)
    return math.lgamma(m / 2.0) - math.log(2.0) - (m / 2.0) * math.log(math.pi)


def vmf_log_normalizer(kappa: Union[torch.Tensor, Number], m: int) -> torch.Tensor:
    r"""``log C_m(κ)``, ``C_m(κ) = κ^{m/2−1} / ((2π)^{m/2} I_{m/2−1}(κ))``.

    The vMF density on S^{m-1} is ``C_m(κ) exp(κ mu·z)``.  At κ = 0 this is the uniform
    density, ``log C_m(0) = −log Area(S^{m-1})`` (the limit is taken explicitly).  Returns a
    tensor of κ's shape (float64 for a number).
    """
    m = _check_dim(m)
    k64, out_dtype = _as_float64(kappa)
    v = m / 2.0 - 1.0
    # log C = v log κ − (m/2) log 2π − log I_v(κ); for v > 0 and κ → 0 the two κ-dependent
    # parts cancel, so write log I_v(κ) = v log(κ/2) + log S with S = Σ (κ/2)^{2k}/(k!Γ(k+v+1))
    log_c = (v * math.log(2.0) - (m / 2.0) * LOG_2PI
             - (log_bessel_iv(v, k64) - v * torch.log(k64.clamp_min(1e-300) * 0.5)))
    log_c = torch.where(k64 == 0, torch.full_like(log_c, uniform_sphere_log_density(m)), log_c)
    return log_c.to(out_dtype)


def vmf_mean_cosine(kappa: Union[torch.Tensor, Number], m: int) -> torch.Tensor:
    r"""``A_m(κ) = I_{m/2}(κ) / I_{m/2−1}(κ) = E_{z~vMF(mu,κ)}[mu·z]``  (0 at κ = 0, → 1 as κ → ∞)."""
    m = _check_dim(m)
    k64, out_dtype = _as_float64(kappa)
    a = torch.exp(log_bessel_iv(m / 2.0, k64) - log_bessel_iv(m / 2.0 - 1.0, k64))
    return torch.where(k64 == 0, torch.zeros_like(a), a).to(out_dtype)


def vmf_kl_to_uniform(kappa: Number, m: int) -> float:
    r"""``KL(vMF(mu, κ) || Uniform(S^{m-1}))`` in nats — a constant, independent of ``mu``.

    ``KL = E_q[log q − log p] = κ A_m(κ) + log C_m(κ) + log Area(S^{m-1})``
    (Davidson et al. 2018, App. B; Xu & Durrett 2018, Sec. 3), with ``A_m`` from
    :func:`vmf_mean_cosine`, ``C_m`` from :func:`vmf_log_normalizer` and
    ``Area = 2π^{m/2}/Γ(m/2)``.  Behaves like ``κ²/(2m)`` as κ → 0 and grows like
    ``((m−1)/2) log κ`` for large κ.  Used as the (constant) rate term of the vMF-VAE.
    """
    m = _check_dim(m)
    kappa = float(kappa)
    if not kappa >= 0.0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    kl = (kappa * float(vmf_mean_cosine(kappa, m)) + float(vmf_log_normalizer(kappa, m))
          - uniform_sphere_log_density(m))
    return max(kl, 0.0)  # a KL; guards a −1e-16 rounding at κ ≈ 0


def vmf_log_density(z: torch.Tensor, mu: torch.Tensor,
                    kappa: Union[torch.Tensor, Number]) -> torch.Tensor:
    r"""``log vMF(z; mu, κ) = log C_m(κ) + κ mu·z`` for unit vectors ``z`` and ``mu``.

    Shapes as in :func:`gaussian_log_density`: ``z: (batch, *S, m)`` with
    ``mu: (batch, m)`` uses row ``b`` of ``mu`` for every ``z[b, ...]`` → ``(batch, *S)``;
    equal numbers of axes broadcast normally.  ``kappa``: a number, or a tensor
    broadcastable to the output shape.  Inputs are not renormalised.  ``log q(z|x)`` of
    the vMF-VAE in importance-sampled NLL.
    """
    m = z.shape[-1]
    mu = _align_params(z, mu.to(z.dtype))
    kt = _as_float64(kappa)[0].to(z.device)
    log_c = vmf_log_normalizer(kt, m).to(device=z.device, dtype=z.dtype)
    return log_c + kt.to(z.dtype) * (z * mu).sum(dim=-1)


def _sample_vmf_cosine(kappa: float, m: int, n: int, generator: Optional[torch.Generator],
                       device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Wood (1994) rejection sampler for w = mu·z; returns (w, 1 − w), float64, shape (n,)."""
    mm1 = m - 1.0
    # b = (−2κ + √(4κ² + (m−1)²)) / (m−1), written without cancellation
    b = mm1 / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + mm1 * mm1))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + mm1 * math.log1p(-x0 * x0) if x0 < 1.0 else -math.inf
    w = torch.empty(n, dtype=torch.float64, device=device)
    one_minus_w = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    for _ in range(1000):  # acceptance is > 0.5 for every (κ, m): a few rounds suffice
        if todo.numel() == 0:
            break
        k = todo.numel()
        # Beta((m−1)/2, (m−1)/2) as (1 + u_1)/2, u uniform on S^{m-1}: u_1 has density
        # ∝ (1 − t²)^{(m−3)/2}; only randn/rand, so an explicit generator is honoured.
        g = torch.randn((k, m), generator=generator, dtype=torch.float64, device=device)
        beta = 0.5 * (1.0 + g[:, 0] / g.norm(dim=1))
        denom = 1.0 - (1.0 - b) * beta
        omw = 2.0 * b * beta / denom               # 1 − W, exact algebra, no cancellation
        ww = 1.0 - omw
        u = torch.rand(k, generator=generator, dtype=torch.float64, device=device)
        accept = kappa * ww + mm1 * torch.log1p(-x0 * ww) - c >= torch.log(u)
        idx = todo[accept]
        w[idx], one_minus_w[idx] = ww[accept], omw[accept]
        todo = todo[~accept]
    if todo.numel():  # pragma: no cover
        raise RuntimeError("vMF rejection sampler did not terminate")
    return w, one_minus_w


def vmf_sample(mu: torch.Tensor, kappa: Number, n_samples: int = 1,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Samples ``z ~ vMF(mu, κ)`` on S^{m-1}, shape ``(batch, n_samples, m)``.

    ``mu: (batch, m)`` unit mean directions (normalised here, so raw encoder outputs are
    fine), ``kappa``: fixed concentration ≥ 0 (a number).  Algorithm (Wood 1994, as used by
    Xu & Durrett 2018 and Davidson et al. 2018):

    1. the cosine ``w = mu·z`` by Wood's rejection sampler from its marginal density
       ``∝ e^{κw} (1 − w²)^{(m−3)/2}`` on [−1, 1] (envelope: a transformed
       Beta((m−1)/2, (m−1)/2));
    2. ``z' = (w, √(1 − w²) v)`` with ``v`` uniform on S^{m-2}, i.e. a sample around the
       first basis vector ``e_1``;
    3. the Householder reflection ``H = I − 2 u uᵀ``, ``u = (e_1 − mu)/‖e_1 − mu‖``, which
       maps ``e_1`` to ``mu``: ``z = H z'``.

    Gradients flow to ``mu`` through step 3; none flow to κ (a hyper-parameter in the
    vMF-VAE).  κ = 0 gives the uniform distribution exactly.  ``generator`` makes the
    samples reproducible.  Random numbers are drawn in float64 on ``mu``'s device and the
    result has ``mu``'s dtype.
    """
    kappa = float(kappa)
    if not (kappa >= 0.0 and math.isfinite(kappa)):
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa}")
    batch, m = mu.shape
    m = _check_dim(m)
    n = batch * n_samples
    w, omw = _sample_vmf_cosine(kappa, m, n, generator, mu.device)
    v = torch.randn((n, m - 1), generator=generator, dtype=torch.float64, device=mu.device)
    v = v / v.norm(dim=1, keepdim=True)
    sin = torch.sqrt(omw * (2.0 - omw))            # √(1 − w²) = √((1 − w)(1 + w))
    z0 = torch.cat([w.unsqueeze(1), sin.unsqueeze(1) * v], dim=1)
    z0 = z0.to(mu.dtype).reshape(batch, n_samples, m)

    mu_hat = mu / mu.norm(dim=-1, keepdim=True)
    e1 = torch.zeros_like(mu_hat)
    e1[:, 0] = 1.0
    diff = e1 - mu_hat
    norm = diff.norm(dim=-1, keepdim=True)
    # mu ≈ e_1: H = I (avoids 0/0); safe division keeps gradients finite there
    tiny = 1e-6 if mu.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-12
    use = norm > tiny
    u = torch.where(use, diff / torch.where(use, norm, torch.ones_like(norm)),
                    torch.zeros_like(diff))
    u = u.unsqueeze(1)                               # (batch, 1, m)
    return z0 - 2.0 * (z0 * u).sum(dim=-1, keepdim=True) * u
