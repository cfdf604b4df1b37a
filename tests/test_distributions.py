"""Tests for bnvae_core.distributions: every function against its formula.

References are independent of the code under test: SciPy's Bessel functions, Lambert W,
normal densities and quadrature (SciPy comes with the scikit-learn dependency), numeric
integration over the sphere, and Monte-Carlo estimates with fixed seeds, accepted within
5 standard errors.
"""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from bnvae_core.models.distributions import (
    delta_vae_constrain,
    delta_vae_kl,
    delta_vae_sigma,
    delta_vae_sigma_bounds,
    gaussian_kl,
    gaussian_kl_per_dim,
    gaussian_kl_two,
    gaussian_log_density,
    log_bessel_iv,
    reparameterize,
    uniform_sphere_log_density,
    vmf_kl_to_uniform,
    vmf_log_density,
    vmf_log_normalizer,
    vmf_mean_cosine,
    vmf_sample,
)

F64 = torch.float64
MS = (3, 16, 32, 64)
KAPPAS = (1.0, 13.0, 50.0, 100.0)
N_SIGMA = 5.0  # Monte-Carlo acceptance band, in standard errors


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _params(batch, nz, seed, scale=1.0):
    g = _gen(seed)
    mu = scale * torch.randn(batch, nz, generator=g, dtype=F64)
    logvar = torch.randn(batch, nz, generator=g, dtype=F64)
    return mu, logvar


def _unit(batch, m, seed):
    x = torch.randn(batch, m, generator=_gen(seed), dtype=F64)
    return x / x.norm(dim=-1, keepdim=True)


def _kl_1d_quad(mq, sq, mp, sp):
    """KL(N(mq, sq²) || N(mp, sp²)) by numeric integration of q log(q/p)."""
    q, p = stats.norm(mq, sq), stats.norm(mp, sp)
    val, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)),
                            mq - 30 * sq, mq + 30 * sq, points=[mq], limit=200,
                            epsabs=1e-13, epsrel=1e-11)
    return val


# ----------------------------------------------------------------------------------------
# Diagonal Gaussians
# ----------------------------------------------------------------------------------------

def test_gaussian_kl_matches_quadrature_and_torch():
    mu, logvar = _params(3, 4, seed=1)
    per_dim = gaussian_kl_per_dim(mu, logvar)
    assert per_dim.shape == (3, 4)
    sd = (0.5 * logvar).exp()
    for b in range(3):
        for j in range(4):
            ref = _kl_1d_quad(mu[b, j].item(), sd[b, j].item(), 0.0, 1.0)
            assert per_dim[b, j].item() == pytest.approx(ref, rel=1e-8, abs=1e-10)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (3,)
    torch.testing.assert_close(kl, per_dim.sum(-1))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sd), torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, ref.to(F64), rtol=1e-12, atol=1e-12)
    # the prior itself has KL 0
    assert gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0


def test_gaussian_kl_two_matches_quadrature_and_reduces_to_standard():
    mu_q, logvar_q = _params(2, 3, seed=2)
    mu_p, logvar_p = _params(2, 3, seed=3, scale=0.5)
    kl = gaussian_kl_two(mu_q, logvar_q, mu_p, logvar_p)
    assert kl.shape == (2,)
    sq, sp = (0.5 * logvar_q).exp(), (0.5 * logvar_p).exp()
    for b in range(2):
        ref = sum(_kl_1d_quad(mu_q[b, j].item(), sq[b, j].item(),
                              mu_p[b, j].item(), sp[b, j].item()) for j in range(3))
        assert kl[b].item() == pytest.approx(ref, rel=1e-8)
    zeros = torch.zeros_like(mu_q)
    torch.testing.assert_close(gaussian_kl_two(mu_q, logvar_q, zeros, zeros),
                               gaussian_kl(mu_q, logvar_q), rtol=1e-13, atol=1e-13)
    assert gaussian_kl_two(mu_q, logvar_q, mu_q, logvar_q).abs().max() < 1e-14


def test_gaussian_log_density_matches_scipy_with_sample_axis():
    batch = nz_samples = 4  # n_samples == batch: the case plain broadcasting gets wrong
    nz = 3
    mu, logvar = _params(batch, nz, seed=4)
    z = reparameterize(mu, logvar, nz_samples, generator=_gen(5))
    out = gaussian_log_density(z, mu, logvar)
    assert out.shape == (batch, nz_samples)
    for b in range(batch):
        mvn = stats.multivariate_normal(mu[b].numpy(), np.diag(logvar[b].exp().numpy()))
        np.testing.assert_allclose(out[b].numpy(), mvn.logpdf(z[b].numpy()), rtol=1e-12)
    # standard normal prior by default; scalar / (nz,) parameters broadcast
    np.testing.assert_allclose(gaussian_log_density(z).numpy(),
                               stats.norm.logpdf(z.numpy()).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(gaussian_log_density(z, torch.zeros(nz), 0.0).numpy(),
                               stats.norm.logpdf(z.numpy()).sum(-1), rtol=1e-12)
    # all pairs (sample i, posterior j), as in the aggregate-posterior MI estimate
    zs = z[:, 0]                                           # (batch, nz)
    pair = gaussian_log_density(zs.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    assert pair.shape == (batch, batch)
    for i in range(batch):
        for j in range(batch):
            ref = stats.norm.logpdf(zs[i].numpy(), mu[j].numpy(),
                                    (0.5 * logvar[j]).exp().numpy()).sum()
            assert pair[i, j].item() == pytest.approx(ref, rel=1e-12)


def test_reparameterize_moments_gradients_and_seed():
    mu = torch.tensor([[0.5, -2.0, 0.0], [3.0, 0.1, -0.7]], dtype=F64, requires_grad=True)
    logvar = torch.tensor([[0.0, -1.0, 1.5], [-3.0, 0.3, 0.0]], dtype=F64, requires_grad=True)
    n = 20000
    z = reparameterize(mu, logvar, n, generator=_gen(6))
    assert z.shape == (2, n, 3)
    sd = (0.5 * logvar).exp().detach()
    mean_err = (z.detach().mean(1) - mu.detach()).abs()
    assert (mean_err < N_SIGMA * sd / math.sqrt(n)).all(), mean_err
    std_err = (z.detach().std(1) - sd).abs()
    assert (std_err < N_SIGMA * sd / math.sqrt(2 * n)).all(), std_err
    z.sum().backward()                    # dz/dmu = 1, dz/dlogvar = ½ σ ε = ½ (z − mu)
    torch.testing.assert_close(mu.grad, torch.full_like(mu, n))
    torch.testing.assert_close(logvar.grad, 0.5 * (z.detach() - mu.detach().unsqueeze(1)).sum(1))
    torch.testing.assert_close(reparameterize(mu, logvar, 5, generator=_gen(7)),
                               reparameterize(mu, logvar, 5, generator=_gen(7)))


# ----------------------------------------------------------------------------------------
# δ-VAE
# ----------------------------------------------------------------------------------------

DELTAS = (0.01, 0.1, 0.15, 0.5, 1.0, 3.0, 10.0)


@pytest.mark.parametrize("delta", DELTAS)
def test_delta_vae_sigma_gives_kl_delta_and_matches_lambert_w(delta):
    sigma = delta_vae_sigma(delta)
    assert 0 < sigma < 1
    logvar = torch.full((1, 8), 2 * math.log(sigma), dtype=F64)
    kl_dim = gaussian_kl_per_dim(torch.zeros_like(logvar), logvar)
    assert (kl_dim - delta).abs().max().item() < 1e-12     # brief asks 1e-6
    # closed forms: σ_l² = −W_0(−e^{−1−2δ}), σ_u² = −W_{−1}(−e^{−1−2δ})
    arg = -math.exp(-1 - 2 * delta)
    lo, hi = delta_vae_sigma_bounds(delta)
    assert lo == sigma
    assert lo ** 2 == pytest.approx(-special.lambertw(arg, 0).real, rel=1e-12)
    assert hi ** 2 == pytest.approx(-special.lambertw(arg, -1).real, rel=1e-12)
    assert hi > 1
    assert 0.5 * (hi ** 2 - math.log(hi ** 2) - 1) == pytest.approx(delta, rel=1e-12)


def test_delta_vae_sigma_reference_values_and_errors():
    assert delta_vae_sigma(0.1) == pytest.approx(0.70231006, abs=1e-8)
    assert delta_vae_sigma(0.15) == pytest.approx(0.64118103, abs=1e-8)
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            delta_vae_sigma(bad)


@pytest.mark.parametrize("delta", (0.1, 0.15, 1.0))
def test_delta_vae_kl_never_below_delta_nz(delta):
    g = _gen(8)
    nz = 16
    mu = torch.cat([torch.zeros(1, nz, dtype=F64),
                    1e-4 * torch.randn(3, nz, generator=g, dtype=F64),
                    torch.randn(20, nz, generator=g, dtype=F64),
                    10 * torch.randn(3, nz, generator=g, dtype=F64)])
    kl = delta_vae_kl(mu, delta)
    assert kl.shape == (mu.shape[0],)
    assert (kl >= delta * nz).all()
    assert kl[0].item() == pytest.approx(delta * nz, rel=1e-14)
    logvar = torch.full_like(mu, 2 * math.log(delta_vae_sigma(delta)))
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(delta_vae_kl(mu, delta, per_dim=True),
                               gaussian_kl_per_dim(mu, logvar), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("delta", (0.1, 0.15, 2.0))
def test_delta_vae_constrain_keeps_kl_at_least_delta(delta):
    g = _gen(9)
    raw_mu = torch.cat([10 * torch.randn(50, 8, generator=g, dtype=F64),
                        torch.full((1, 8), -60.0, dtype=F64), torch.full((1, 8), 60.0, dtype=F64)])
    raw_logvar = torch.cat([10 * torch.randn(50, 8, generator=g, dtype=F64),
                            torch.full((1, 8), -60.0, dtype=F64), torch.full((1, 8), 60.0, dtype=F64)])
    raw_mu.requires_grad_(True)
    raw_logvar.requires_grad_(True)
    eps = 1e-6
    mu, logvar = delta_vae_constrain(raw_mu, raw_logvar, delta, eps=eps)
    lo, hi = delta_vae_sigma_bounds(delta)
    sigma = (0.5 * logvar).exp()
    assert (sigma >= lo * (1 - 1e-12)).all() and (sigma <= hi * (1 + 1e-12)).all()
    assert (mu >= 0).all()
    kl_dim = gaussian_kl_per_dim(mu, logvar)
    assert (kl_dim >= delta).all()
    expected = delta + 0.5 * torch.relu(raw_mu.detach()) + 0.5 * eps
    torch.testing.assert_close(kl_dim.detach(), expected, rtol=1e-10, atol=1e-10)
    # saturated variance: exactly the two roots
    assert sigma[-2].detach().numpy() == pytest.approx(lo, rel=1e-12)
    assert sigma[-1].detach().numpy() == pytest.approx(hi, rel=1e-12)
    kl_dim.sum().backward()
    assert torch.isfinite(raw_mu.grad).all() and torch.isfinite(raw_logvar.grad).all()


# ----------------------------------------------------------------------------------------
# Bessel functions
# ----------------------------------------------------------------------------------------

def _scipy_log_iv(v, x):
    return float(np.log(special.ive(v, x)) + x)


@pytest.mark.parametrize("m", MS)
def test_log_bessel_iv_matches_scipy(m):
    xs = (1e-3, 0.3) + KAPPAS + (500.0, 5000.0)
    for v in (m / 2 - 1, m / 2):
        for x in xs:
            ref = _scipy_log_iv(v, x)
            got = log_bessel_iv(v, x)
            assert got.dtype == F64
            assert abs(got.item() - ref) <= 1e-12 * max(1.0, abs(ref)), (v, x, got.item(), ref)
    # tensor in, same shape and dtype out
    x = torch.tensor([[1.0, 13.0, 50.0], [100.0, 0.5, 7.0]])
    out = log_bessel_iv(m / 2, x)
    assert out.shape == (2, 3) and out.dtype == torch.float32
    ref = np.log(special.ive(m / 2, x.double().numpy())) + x.double().numpy()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)


def test_log_bessel_iv_closed_forms_zero_and_gradient():
    x = torch.tensor([1e-4, 0.2, 1.0, 13.0, 50.0, 100.0, 700.0], dtype=F64)
    # I_{1/2}(x) = √(2/(πx)) sinh x ; log sinh x = x + log1p(−e^{−2x}) − log 2
    ref = 0.5 * torch.log(2 / (math.pi * x)) + x + torch.log1p(-torch.exp(-2 * x)) - math.log(2)
    torch.testing.assert_close(log_bessel_iv(0.5, x), ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(log_bessel_iv(0, x), torch.log(torch.special.i0e(x)) + x,
                               rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(log_bessel_iv(1, x), torch.log(torch.special.i1e(x)) + x,
                               rtol=1e-13, atol=1e-13)
    assert log_bessel_iv(0, 0.0).item() == 0.0
    assert log_bessel_iv(1.5, 0.0).item() == -math.inf
    # huge arguments do not overflow: log I_v(x) ≈ x − ½ log(2πx) for x ≫ v²
    assert log_bessel_iv(0.5, 1e6).item() == pytest.approx(1e6 - 0.5 * math.log(2 * math.pi * 1e6),
                                                           abs=1e-6)
    with pytest.raises(ValueError):
        log_bessel_iv(-1.5, 1.0)
    with pytest.raises(ValueError):
        log_bessel_iv(1.0, -1.0)
    # d/dx log I_v(x) = I_{v+1}(x)/I_v(x) + v/x
    for v in (0.5, 7.0, 31.0):
        xg = torch.tensor([0.7, 13.0, 100.0], dtype=F64, requires_grad=True)
        log_bessel_iv(v, xg).sum().backward()
        ref = special.ive(v + 1, xg.detach().numpy()) / special.ive(v, xg.detach().numpy()) \
            + v / xg.detach().numpy()
        np.testing.assert_allclose(xg.grad.numpy(), ref, rtol=1e-11)


# ----------------------------------------------------------------------------------------
# von Mises–Fisher
# ----------------------------------------------------------------------------------------

def _scipy_vmf_kl(kappa, m):
    """κ A + log C + log Area, written with SciPy only."""
    v = m / 2 - 1
    a = special.ive(m / 2, kappa) / special.ive(v, kappa)
    log_c = v * np.log(kappa) - (m / 2) * np.log(2 * np.pi) - (np.log(special.ive(v, kappa)) + kappa)
    log_area = np.log(2) + (m / 2) * np.log(np.pi) - special.gammaln(m / 2)
    return kappa * a + log_c + log_area


@pytest.mark.parametrize("m", MS)
def test_vmf_closed_forms_match_scipy(m):
    assert uniform_sphere_log_density(m) == pytest.approx(
        -(np.log(2) + (m / 2) * np.log(np.pi) - special.gammaln(m / 2)), rel=1e-14)
    for kappa in KAPPAS:
        a = special.ive(m / 2, kappa) / special.ive(m / 2 - 1, kappa)
        assert vmf_mean_cosine(kappa, m).item() == pytest.approx(a, rel=1e-12)
        assert vmf_kl_to_uniform(kappa, m) == pytest.approx(_scipy_vmf_kl(kappa, m), rel=1e-12)
    assert uniform_sphere_log_density(3) == pytest.approx(-math.log(4 * math.pi), rel=1e-15)


@pytest.mark.parametrize("kappa", (0.5, 1.0, 13.0, 50.0, 100.0))
def test_vmf_density_integrates_to_one_on_s2(kappa):
    """2-D quadrature over S²: Gauss–Legendre in θ ∈ [0, π], periodic trapezoid in φ."""
    mu = torch.tensor([[0.3, -0.5, 0.8]], dtype=F64)
    mu = mu / mu.norm()
    nodes, weights = np.polynomial.legendre.leggauss(300)
    theta = 0.5 * np.pi * (nodes + 1)
    w_theta = 0.5 * np.pi * weights
    n_phi = 600
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    z = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1)
    z = torch.from_numpy(z.reshape(1, -1, 3))
    dens = vmf_log_density(z, mu, kappa).exp().reshape(len(theta), n_phi).numpy()
    total = (w_theta[:, None] * np.sin(th) * dens).sum() * (2 * np.pi / n_phi)
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("m", (2,) + MS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_vmf_density_integrates_to_one_in_any_dimension(m, kappa):
    """∫_{S^{m-1}} f(mu·z) dz = Area(S^{m-2}) ∫_{-1}^{1} f(t) (1 − t²)^{(m−3)/2} dt."""
    log_c = vmf_log_normalizer(kappa, m).item()
    if m == 2:  # circle: ∫_0^{2π} C e^{κ cos φ} dφ, trapezoid is spectral for periodic
        phi = 2 * np.pi * np.arange(4000) / 4000
        total = np.exp(log_c + kappa * np.cos(phi)).sum() * 2 * np.pi / 4000
    else:
        log_area = np.log(2) + ((m - 1) / 2) * np.log(np.pi) - special.gammaln((m - 1) / 2)
        t_peak = (-(m - 3) + math.sqrt((m - 3) ** 2 + 4 * kappa ** 2)) / (2 * kappa)
        f = lambda t: np.exp(log_c + kappa * t + log_area + (m - 3) / 2 * np.log1p(-t * t))
        total, _ = integrate.quad(f, -1, 1, points=[t_peak], limit=400,
                                  epsabs=1e-13, epsrel=1e-12)
    assert total == pytest.approx(1.0, abs=1e-9)


# (m, κ): small/large concentration in small/large dimension, incl. the BN-VAE code's m=32, κ=13
SAMPLE_CASES = [(3, 1.0), (3, 50.0), (16, 13.0), (32, 13.0), (32, 100.0), (64, 50.0), (64, 1.0)]


@pytest.mark.parametrize("m,kappa", SAMPLE_CASES)
def test_vmf_sample_unit_norm_and_moments(m, kappa):
    n = 10000
    mu = _unit(2, m, seed=m)                                   # 2 rows → 20k samples
    z = vmf_sample(mu, kappa, n, generator=_gen(10 + m))
    assert z.shape == (2, n, m) and z.dtype == F64
    assert (z.norm(dim=-1) - 1).abs().max().item() < 1e-12
    w = (z * mu.unsqueeze(1)).sum(-1).reshape(-1)              # cosines to the mean direction
    a = vmf_mean_cosine(kappa, m).item()
    N = w.numel()
    # E[w] = A_m(κ)
    assert abs(w.mean().item() - a) < N_SIGMA * w.std().item() / math.sqrt(N)
    # E[w²] = 1 − (m−1) A_m(κ)/κ   (from E[zzᵀ] = (A/κ) I + (1 − mA/κ) mu muᵀ)
    w2 = w ** 2
    assert abs(w2.mean().item() - (1 - (m - 1) * a / kappa)) < N_SIGMA * w2.std().item() / math.sqrt(N)
    # E[z] = A mu: the part orthogonal to mu averages out, coordinate by coordinate
    resid = (z - a * mu.unsqueeze(1))
    se = resid.std(dim=1) / math.sqrt(n)
    assert (resid.mean(dim=1).abs() < N_SIGMA * se + 1e-12).all()


@pytest.mark.parametrize("m,kappa", [(3, 13.0), (16, 13.0), (32, 13.0), (64, 100.0)])
def test_vmf_sample_cosine_distribution_ks(m, kappa):
    """w = mu·z has density ∝ e^{κw}(1 − w²)^{(m−3)/2}: Kolmogorov–Smirnov against it."""
    mu = _unit(1, m, seed=20 + m)
    z = vmf_sample(mu, kappa, 20000, generator=_gen(30 + m))
    w = (z[0] @ mu[0]).numpy()
    grid = np.linspace(-1, 1, 400001)
    with np.errstate(divide="ignore"):
        log_jac = (m - 3) / 2 * np.log1p(-grid * grid) if m > 3 else 0.0
    logf = kappa * grid + log_jac
    f = np.exp(logf - logf.max())
    cdf = integrate.cumulative_trapezoid(f, grid, initial=0)
    cdf /= cdf[-1]
    res = stats.kstest(w, lambda t: np.interp(t, grid, cdf))
    # fixed seeds, so deterministic; 1e-4 = the false-alarm rate if the sampler is exact
    assert res.pvalue > 1e-4, res


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_vmf_kl_matches_monte_carlo(m, kappa):
    """KL = E_q[log q(z) − log p(z)], estimated with 20k samples from two different mu."""
    mu = _unit(2, m, seed=40 + m)
    z = vmf_sample(mu, kappa, 10000, generator=_gen(int(50 + m + kappa)))
    log_ratio = vmf_log_density(z, mu, kappa) - uniform_sphere_log_density(m)   # (2, 10000)
    kl = vmf_kl_to_uniform(kappa, m)
    for row in log_ratio:  # the same constant for either mean direction
        se = row.std().item() / math.sqrt(row.numel())
        assert abs(row.mean().item() - kl) < N_SIGMA * se, (row.mean().item(), kl, se)


@pytest.mark.parametrize("m", MS)
def test_vmf_kappa_to_zero_is_uniform(m):
    mu = _unit(3, m, seed=60)
    z = _unit(3, m, seed=61).unsqueeze(1)
    uni = uniform_sphere_log_density(m)
    assert torch.equal(vmf_log_density(z, mu, 0.0), torch.full((3, 1), uni, dtype=F64))
    assert (vmf_log_density(z, mu, 1e-8) - uni).abs().max().item() < 1e-7
    assert vmf_kl_to_uniform(0.0, m) == 0.0
    assert vmf_mean_cosine(0.0, m).item() == 0.0
    # KL → 0 like κ²/(2m) (variance of w under the uniform is 1/m)
    for kappa in (1e-2, 1e-1):
        assert vmf_kl_to_uniform(kappa, m) == pytest.approx(kappa ** 2 / (2 * m), rel=kappa)
    kls = [vmf_kl_to_uniform(k, m) for k in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert all(a < b for a, b in zip(kls, kls[1:]))
    # the sampler at κ = 0 is uniform: E[w] = 0, E[w²] = 1/m
    s = vmf_sample(mu[:1], 0.0, 20000, generator=_gen(62))
    w = (s[0] @ mu[0])
    se = w.std().item() / math.sqrt(w.numel())
    assert abs(w.mean().item()) < N_SIGMA * se
    assert abs((w ** 2).mean().item() - 1 / m) < N_SIGMA * (w ** 2).std().item() / math.sqrt(w.numel())


def test_vmf_log_density_shapes_and_kappa_tensor():
    m = 5
    mu = _unit(4, m, seed=70)
    z = vmf_sample(mu, 7.0, 4, generator=_gen(71))     # n_samples == batch on purpose
    out = vmf_log_density(z, mu, 7.0)
    assert out.shape == (4, 4)
    log_c = vmf_log_normalizer(7.0, m).item()
    for b in range(4):
        np.testing.assert_allclose(out[b].numpy(), log_c + 7.0 * (z[b] @ mu[b]).numpy(), rtol=1e-13)
    # tensor κ per row, broadcast against (batch, n_samples)
    kap = torch.tensor([[1.0], [2.0], [7.0], [30.0]], dtype=F64)
    out_t = vmf_log_density(z, mu, kap)
    for b in range(4):
        np.testing.assert_allclose(out_t[b].numpy(),
                                   vmf_log_density(z[b:b + 1], mu[b:b + 1], kap[b].item())[0].numpy(),
                                   rtol=1e-13)


def test_vmf_sample_float32_gradient_seed_and_special_directions():
    m, kappa = 8, 20.0
    raw = 3.0 * torch.randn(3, m, generator=_gen(80))
    raw[1] = 0.0
    raw[1, 0] = 2.0                        # mu = e_1 exactly: Householder is the identity
    raw[2] = 0.0
    raw[2, 0] = -0.5                       # mu = −e_1
    raw.requires_grad_(True)
    z = vmf_sample(raw, kappa, 4000, generator=_gen(81))
    assert z.dtype == torch.float32
    assert (z.norm(dim=-1) - 1).abs().max().item() < 1e-5
    mu = (raw / raw.norm(dim=-1, keepdim=True)).detach()
    w = (z.detach() * mu.unsqueeze(1)).sum(-1)
    a = vmf_mean_cosine(kappa, m).item()
    for row in w:
        assert abs(row.mean().item() - a) < N_SIGMA * row.std().item() / math.sqrt(row.numel())
    (z * torch.randn(z.shape, generator=_gen(82))).sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    z1 = vmf_sample(raw.detach(), kappa, 3, generator=_gen(83))
    z2 = vmf_sample(raw.detach(), kappa, 3, generator=_gen(83))
    assert torch.equal(z1, z2)
    with pytest.raises(ValueError):
        vmf_sample(raw.detach(), -1.0)
    with pytest.raises(ValueError):
        vmf_kl_to_uniform(1.0, 1)
