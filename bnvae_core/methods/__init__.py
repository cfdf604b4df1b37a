"""The method registry: every training method by its command-line name, written out.

This is the only place a method is looked up by name; everything below (config, data,
models, metrics) is told what to do by the method object itself. To add a baseline, write
one :class:`~bnvae_core.methods.base.Method` subclass and add it to :data:`METHODS` (inside
the package) or call :func:`register_method` (from outside, e.g. a notebook)::

    from bnvae_core.methods import register_method
    from bnvae_core.methods.base import Method

    @register_method
    class HalfKL(Method):
        name, label = "half-kl", "½-KL VAE"
        def objective_kl(self, kl, mu, logvar, model):
            return 0.5 * kl

With ``rec_i = −log p(x_i|z_i)`` (one sample z_i ~ q(z|x_i)), ``KL_i = KL(q(z|x_i) ‖ p(z))``,
``KL_ij`` its j-th dimension, ``w_t`` the KL weight and ``B`` the batch:

==============  ===========================================================================
``lm``          ``mean_i rec_i`` with no latent at all (LSTM language model; KL = MI = AU = 0)
``vae``         ``mean_i (rec_i + w_t KL_i)``, w_t linear warm-up (Bowman et al. 2016)
``bnvae``       same objective; μ batch-normalized with fixed γ (Zhu et al. 2020)
``beta``        ``mean_i (rec_i + β w_t KL_i)`` (β-VAE, Higgins et al. 2017; ``--beta``)
``cyclical``    ``mean_i (rec_i + w_t KL_i)``, w_t cyclical (Fu et al. 2019, :mod:`.schedules`)
``fb``          ``mean_i (rec_i + w_t max(KL_i, λ))`` (free bits per sentence), or with
                ``fb_scope='batch'`` ``mean_i rec_i + w_t max(mean_i KL_i, λ)`` (Li et al. 2019)
``fb-dim``      ``mean_i rec_i + w_t Σ_j max(mean_i KL_ij, λ)`` (Kingma et al. 2016, λ per dim)
``delta``       VAE objective, posterior constrained so KL_ij ≥ δ (Razavi et al. 2019)
``vmf``         VAE objective, q = vMF(μ, κ), p uniform on the sphere: KL constant (Xu & Durrett 2018)
``aggressive``  VAE objective, encoder-only inner loop while MI climbs (He et al. 2019)
``pretrain-fb`` encoder pre-trained as an AE (w = 0), decoder reset, then
                ``mean_i (rec_i + w_t Σ_j max(KL_ij, λ/n))`` (Li et al. 2019)
``duvae``       VAE objective; BN on μ with learnable renormalized γ, dropout on σ² (Shen et al. 2021)
``cvae``        ``rec_i + w_t KL(q(z|x_i,c_i) ‖ p(z|c_i))`` on (context, response) pairs (Zhao et al. 2017)
``bn-cvae``     the CVAE with BN-VAE's head on the recognition mean (Zhu et al. 2020 §4.3)
==============  ===========================================================================
"""
from __future__ import annotations

from ..config import TrainConfig
from ..errors import ConfigError
from .aggressive import Aggressive
from .base import Method
from .cvae import BNCVAEMethod, CVAEMethod
from .text import (
    BNVAE,
    DUVAE,
    VMFVAE,
    BetaVAE,
    Cyclical,
    DeltaVAE,
    FreeBits,
    FreeBitsPerDim,
    LanguageModel,
    PretrainFB,
)

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    LanguageModel, Method, BNVAE, BetaVAE, Cyclical, FreeBits, FreeBitsPerDim, DeltaVAE, VMFVAE,
    Aggressive, PretrainFB, DUVAE, CVAEMethod, BNCVAEMethod)}


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``cls`` selectable as ``train --model cls.name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method: {cls!r} is not a Method subclass")
    METHODS[cls.name] = cls
    return cls


def check_method_names(names, noun: str = "method") -> None:
    """ConfigError listing the known methods if any of ``names`` is not registered
    (``noun``: what the caller's flag calls them, 'model' or 'method')."""
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        what = f"{noun} {unknown[0]!r}" if len(unknown) == 1 else f"{noun}s {', '.join(map(repr, unknown))}"
        raise ConfigError(f"unknown {what} (choose from: {', '.join(METHODS)})")


def method_class(name: str) -> type[Method]:
    """The method registered as ``name`` (ConfigError listing the known ones otherwise)."""
    check_method_names([name], "model")
    return METHODS[name]


def make_method(config: TrainConfig) -> Method:
    """The method object of ``config.model``, after its checks (:meth:`Method.check`): a
    :class:`ConfigError` lists every problem."""
    cls = method_class(config.model)
    problems = cls.check(config)
    if problems:
        raise ConfigError("; ".join(problems))
    return cls(config)


def method_settings(config: TrainConfig) -> dict:
    """``{field: value}`` of the settings that define ``config.model``'s method (for tables/legends)."""
    return {name: getattr(config, name) for name in method_class(config.model).settings()}


#: how legends write the method settings
_SYMBOLS = {"gamma": "γ", "beta": "β", "delta": "δ", "kappa": "κ", "target_kl": "λ", "cycles": "M", "cycle_ratio": "R"}


def method_label(config: TrainConfig) -> str:
    """A short legend label, e.g. ``'BN-VAE (γ=0.6)'``, ``'β-VAE (β=0.5)'``."""
    cls = method_class(config.model)
    shown = {k: v for k, v in method_settings(config).items() if k in _SYMBOLS}
    if "target_kl" in shown:
        shown["target_kl"] = cls(config).target_kl
    parts = [f"{_SYMBOLS[k]}={v:g}" for k, v in shown.items()]
    if config.model == "beta" and config.beta_warmup:
        parts.append("annealed")
    return f"{cls.label} (" + ", ".join(parts) + ")" if parts else cls.label
