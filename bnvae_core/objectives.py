"""Objectives: what each method minimises, computed from the same model outputs.

Every method is a :class:`Method` subclass registered under its command-line name
(``train --model NAME``). A method says

* what the model looks like — class attributes ``has_latent``, ``posterior`` (``'gaussian'``,
  ``'delta'``, ``'vmf'``), ``uses_bn`` / ``learn_gamma`` (BN head on μ), ``var_dropout``
  (:class:`bnvae_core.model.TextVAE` reads them);
* the KL weight at each step (:meth:`Method.kl_weight`; linear warm-up unless overridden);
* the loss (:meth:`Method.loss` → :class:`LossTerms`: the scalar to back-propagate plus the
  per-sentence reconstruction and *true* KL that the metrics log); most methods only change
  the KL term that gets weighted, :meth:`Method.objective_kl`;
* optionally its own training work or phases (:meth:`Method.train_step`,
  :meth:`Method.before_epoch`, :meth:`Method.after_epoch`), which the loop in
  :mod:`bnvae_core.train` calls with a :class:`TrainContext`. ``train_step`` returns the
  terms whose ``loss`` the loop then back-propagates, clips and steps on (by default just
  :meth:`Method.loss`; ``aggressive`` first runs its encoder-only inner loop there).

Adding a baseline is one small subclass here, never a fork of the training loop. With
``rec_i = −log p(x_i|z_i)`` (one sample z_i ~ q(z|x_i)), ``KL_i = KL(q(z|x_i) ‖ p(z))``,
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
==============  ===========================================================================

The ``max(·, λ)`` forms have the gradients of the reference codes' masks (``1[KL > λ]·KL``);
their value differs by a constant, so the logged training loss stays an upper bound on −ELBO.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .aggressive import InnerLoopStopRule, aggressive_phase_over, keep_gradients_of
from .model import TextVAE
from .schedules import cyclical_weight, linear_warmup_weight


@dataclass
class LossTerms:
    """``loss``: scalar to minimise; ``rec``, ``kl``: (B,) per sentence, in nats (KL not weighted,
    the true KL(q‖p) whatever the objective does with it); ``extra``: ``mu``, ``logvar`` (B, nz)
    and ``objective_kl`` (the KL term that was weighted: (B,) or a scalar)."""
    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    extra: dict = field(default_factory=dict)


@dataclass
class TrainContext:
    """What a method's training hooks may use; the loop sets ``epoch`` before each epoch.

    ``optimizer`` is the loop's current optimizer (``get_optimizer()``: it is rebuilt when the
    learning rate decays); ``make_optimizer()`` builds a fresh one over the model's trainable
    parameters at the current learning rate; ``batch(index)`` makes a training batch on the device."""
    config: object
    model: TextVAE
    corpus: object
    device: torch.device
    get_optimizer: Callable[[], torch.optim.Optimizer]
    make_optimizer: Callable[[], torch.optim.Optimizer]
    state: dict
    epoch: int = 0
    _train_index: list | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.get_optimizer()

    def clip_gradients(self) -> torch.Tensor:
        """Clip the gradient norm of all parameters at ``clip_grad`` (none if ≤ 0); returns the norm."""
        clip = self.config.clip_grad if self.config.clip_grad > 0 else math.inf
        return clip_gradients_(self.model.parameters(), clip)

    def batch(self, index):
        from .data import make_batch
        return make_batch(self.corpus.train, index).to(self.device)

    def train_batch_indices(self, *, shuffle: bool = False, epoch: int = 0) -> list[np.ndarray]:
        """The training batches (index arrays), as the loop forms them (singletons merged)."""
        from .data import bucket_batches
        if shuffle:
            return bucket_batches(self.corpus.train, self.config.batch_size, shuffle=True,
                                  seed=self.config.seed, epoch=epoch, drop_singletons=True)
        if self._train_index is None:
            self._train_index = bucket_batches(self.corpus.train, self.config.batch_size, drop_singletons=True)
        return self._train_index

    def random_train_batch(self):
        """A uniformly random training batch (Python's ``random``, seeded and checkpointed by the loop)."""
        import random
        index = self.train_batch_indices()
        return self.batch(index[random.randrange(len(index))])


def clip_gradients_(parameters, max_norm: float) -> torch.Tensor:
    """Gradient-norm clipping as ``torch.nn.utils.clip_grad_norm_``: the total 2-norm
    ``‖g‖ = √(Σ_p ‖g_p‖²)`` over all gradients, and every gradient scaled by
    ``max_norm / (‖g‖ + 10⁻⁶)`` when that is below 1. Returns ``‖g‖`` (non-finite if a gradient is).

    On the CPU the scaling is skipped when nothing is clipped (``clip_grad_norm_`` multiplies
    by exactly 1.0 then): one read-and-write pass over all gradients fewer on most steps. On
    other devices the clamped factor is applied unconditionally, so no host sync is added."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g).float() for g in grads]))
    if math.isinf(max_norm):
        return norm
    factor = max_norm / (norm + 1e-6)
    if grads[0].device.type == "cpu" and not bool(factor < 1):
        return norm
    factor = factor.clamp(max=1.0)
    for g in grads:
        g.mul_(factor.to(g.dtype))
    return norm


def optimizer_step(ctx: TrainContext, loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None,
                   only: str | None = None) -> bool:
    """zero_grad → backward → clip (norm over all parameters) → [keep only ``only``'s gradients,
    'encoder' or 'decoder'] → step. A non-finite gradient norm skips the step; returns whether it stepped."""
    optimizer = optimizer if optimizer is not None else ctx.optimizer
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not torch.isfinite(ctx.clip_gradients()):
        optimizer.zero_grad(set_to_none=True)
        return False
    if only is not None:
        keep_gradients_of(ctx.model, only)
    optimizer.step()
    return True


class Method:
    """Base class and ``vae``: the ELBO with linear KL warm-up, ``mean_i (rec_i + w_t KL_i)``."""
    name = "vae"
    label = "VAE"
    has_latent = True
    posterior = "gaussian"
    uses_bn = False
    learn_gamma = False
    var_dropout = False
    #: the config fields that define this method (beyond the shared sizes and optimisation)
    settings: tuple[str, ...] = ("warmup_epochs", "kl_start")
    #: True for methods whose examples carry a context (``cvae``, ``bn-cvae``, :mod:`bnvae_core.cvae`):
    #: the training loop then takes the corpus (``load_corpus``) and the validation row
    #: (``validation_metrics``) from the method
    conditional = False
    #: λ of the free-bits methods when ``config.target_kl`` is None (see :attr:`target_kl`)
    default_target_kl: float | None = None

    def __init__(self, config):
        self.config = config

    @property
    def target_kl(self) -> float | None:
        """λ (nats) of the free-bits methods: ``config.target_kl``, else the method's default."""
        return self.config.target_kl if self.config.target_kl is not None else self.default_target_kl

    def build_model(self, vocab_size: int) -> torch.nn.Module:
        """The model this method trains (default: :class:`~bnvae_core.model.TextVAE`)."""
        return TextVAE(self.config, vocab_size)

    def make_batch(self, split, index):
        """The batch of ``split`` at ``index`` (default: :func:`bnvae_core.data.make_batch`)."""
        from .data import make_batch
        return make_batch(split, index)

    # --- schedule -----------------------------------------------------------------------
    def kl_weight(self, step: int, steps_per_epoch: int) -> float:
        """w_t at 0-based training ``step``: linear warm-up over ``warmup_epochs`` from ``kl_start``."""
        c = self.config
        return linear_warmup_weight(step, c.warmup_epochs * steps_per_epoch, c.kl_start)

    # --- objective ----------------------------------------------------------------------
    def objective_kl(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     model: TextVAE) -> torch.Tensor:
        """The KL term the objective weights: (B,) per sentence, or a scalar for the batch.
        Here the true KL, ``kl`` (B,)."""
        return kl

    def loss(self, model: TextVAE, tokens: torch.Tensor, lengths: torch.Tensor,
             kl_weight: float) -> LossTerms:
        """``mean_i (rec_i + w · objective_kl_i)`` with one reparameterized z_i ~ q(z|x_i)."""
        mu, logvar = model.encode(tokens, lengths)
        return self.loss_given_posterior(model, tokens, lengths, mu, logvar, kl_weight)

    def loss_given_posterior(self, model: TextVAE, tokens: torch.Tensor, lengths: torch.Tensor,
                             mu: torch.Tensor, logvar: torch.Tensor, kl_weight: float) -> LossTerms:
        """:meth:`loss` from already computed posterior parameters ``mu, logvar`` (B, nz)."""
        z = model.posterior.sample(mu, logvar)
        rec = model.reconstruction_nll(tokens, lengths, z)
        kl = model.posterior.kl(mu, logvar)
        term = self.objective_kl(kl, mu, logvar, model)
        return LossTerms((rec + kl_weight * term).mean(), rec, kl,
                         {"mu": mu, "logvar": logvar, "objective_kl": term})

    # --- training hooks (defaults: the plain loop) --------------------------------------
    def train_step(self, ctx: TrainContext, batch, kl_weight: float) -> LossTerms:
        """The terms of ``batch`` whose ``loss`` the loop back-propagates and steps on (then
        checks for non-finite loss/gradients, per ``on_nonfinite``). A method may do extra
        optimizer work here first; the default is :meth:`loss`."""
        return self.loss(ctx.model, batch.tokens, batch.lengths, kl_weight)

    def before_epoch(self, ctx: TrainContext) -> None:
        """Called at the start of every epoch (inside its timing)."""

    def after_epoch(self, ctx: TrainContext, train_row: dict, valid_row: dict) -> None:
        """Called after the epoch's validation; may add columns to the two history rows."""

    def state_dict(self) -> dict:
        """Method state to checkpoint (plain Python values)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def method_settings(config) -> dict:
    """``{field: value}`` of the settings that define ``config.model``'s method (for tables/legends)."""
    cls = METHODS[config.model]
    return {name: getattr(config, name) for name in cls.settings}


def method_label(config) -> str:
    """A short legend label, e.g. ``'BN-VAE (γ=0.6)'``, ``'β-VAE (β=0.5)'``."""
    cls = METHODS[config.model]
    symbols = {"gamma": "γ", "beta": "β", "delta": "δ", "kappa": "κ", "target_kl": "λ",
               "cycles": "M", "cycle_ratio": "R"}
    shown = {k: v for k, v in method_settings(config).items() if k in symbols}
    if "target_kl" in shown:
        shown["target_kl"] = getattr(METHODS[config.model](config), "target_kl", shown["target_kl"])
    if not shown:
        return cls.label
    return f"{cls.label} (" + ", ".join(f"{symbols[k]}={v:g}" for k, v in shown.items()) + ")"


class LanguageModel(Method):
    """``lm``: the decoder alone, ``nz = 0`` (no encoder); loss = mean_i −log p(x_i). KL ≡ 0."""
    name = "lm"
    label = "LSTM-LM"
    has_latent = False
    posterior = "none"
    settings = ()

    def loss(self, model, tokens, lengths, kl_weight):
        rec = model.reconstruction_nll(tokens, lengths, None)
        kl = torch.zeros_like(rec)
        return LossTerms(rec.mean(), rec, kl, {"objective_kl": kl})


class BNVAE(Method):
    """``bnvae``: the VAE objective on a model whose μ goes through :class:`~bnvae_core.model.BNHead`
    (fixed γ, learned β), so E_batch[KL] ≥ ½Σ_j(γ² + β_j²) ≥ nγ²/2 (Zhu et al. 2020 §3)."""
    name = "bnvae"
    label = "BN-VAE"
    uses_bn = True
    settings = ("gamma", "warmup_epochs", "kl_start")


class BetaVAE(Method):
    """``beta``: KL weight β·w_t (β < 1 trades a worse ELBO for more information in z).
    Set ``warmup_epochs=0`` for the constant-β objective of Higgins et al. (2017)."""
    name = "beta"
    label = "β-VAE"
    settings = ("beta", "warmup_epochs", "kl_start")

    def kl_weight(self, step, steps_per_epoch):
        return self.config.beta * super().kl_weight(step, steps_per_epoch)


class Cyclical(Method):
    """``cyclical``: w_t = :func:`~bnvae_core.schedules.cyclical_weight` over the run's
    ``epochs × batches`` steps (``cycles``, ``cycle_ratio``, ``cycle_shape``; Fu et al. 2019).
    Replaces the warm-up (``warmup_epochs``/``kl_start`` are ignored)."""
    name = "cyclical"
    label = "Cyclical"
    settings = ("cycles", "cycle_ratio", "cycle_shape")

    def kl_weight(self, step, steps_per_epoch):
        c = self.config
        return cyclical_weight(step, c.epochs * steps_per_epoch, c.cycles, c.cycle_ratio, c.cycle_shape)


class FreeBits(Method):
    """``fb``: free bits per sentence, the KL term ``max(KL_i, λ)`` (no pressure on a sentence's KL
    below λ nats). ``fb_scope='batch'``: ``max(mean_i KL_i, λ)``, the batch-level variant in the
    code of Li et al. 2019 (``--fb 3``). λ = ``target_kl`` (default 5 nats)."""
    name = "fb"
    label = "FB"
    default_target_kl = 5.0
    settings = ("target_kl", "fb_scope", "warmup_epochs", "kl_start")

    def objective_kl(self, kl, mu, logvar, model):
        if getattr(self.config, "fb_scope", "sentence") == "batch":
            return kl.mean().clamp_min(self.target_kl)
        return kl.clamp_min(self.target_kl)


class FreeBitsPerDim(FreeBits):
    """``fb-dim``: free bits per latent dimension ("free bits", Kingma et al. 2016, appendix):
    ``Σ_j max(mean_i KL_ij, λ)``, λ = ``target_kl`` nats *per dimension* (default 0.25)."""
    name = "fb-dim"
    label = "FB (per dim)"
    default_target_kl = 0.25
    settings = ("target_kl", "warmup_epochs", "kl_start")

    def objective_kl(self, kl, mu, logvar, model):
        return model.posterior.kl_per_dim(mu, logvar).mean(0).clamp_min(self.target_kl).sum()


class DeltaVAE(Method):
    """``delta``: δ-VAE with the BN-VAE authors' posterior (``DeltaGaussianLSTMEncoder``):
    σ ∈ [σ_l, σ_u] and μ set so that KL_ij = δ + ½ relu(raw μ_ij) + ½·10⁻⁶ ≥ δ
    (:func:`bnvae_core.distributions.delta_vae_constrain`); prior N(0, I) (not Razavi et al.'s
    AR(1) prior). The objective is the plain ELBO; KL_i ≥ δ·n always. ``delta`` default 0.15."""
    name = "delta"
    label = "δ-VAE"
    posterior = "delta"
    settings = ("delta", "warmup_epochs", "kl_start")


class VMFVAE(Method):
    """``vmf``: q(z|x) = vMF(μ/‖μ‖, κ) on S^{n−1} with fixed κ (default 13), uniform prior; the
    KL is the constant :func:`bnvae_core.distributions.vmf_kl_to_uniform` (≈2.17 nats for κ=13,
    n=32), so the objective is effectively the reconstruction term (Xu & Durrett 2018)."""
    name = "vmf"
    label = "vMF-VAE"
    posterior = "vmf"
    settings = ("kappa", "warmup_epochs", "kl_start")


class DUVAE(Method):
    """``duvae`` (after DU-VAE, Shen et al. 2021): BN on μ with *learnable* scales renormalized to
    root-mean-square γ (so Σ_j γ_j² = nγ², the BN-VAE bound, but spread freely over dimensions),
    and Dropout(p = ``duvae_dropout``) on the posterior variance σ² during training, with the
    variance floor 1/(2πe) of DU-VAE's code (``delta_rate`` 1) added always. (The DU-VAE code
    applies floor and dropout only once the KL weight reaches 1; here they are always on.)"""
    name = "duvae"
    label = "DU-VAE"
    uses_bn = True
    learn_gamma = True
    var_dropout = True
    settings = ("gamma", "duvae_dropout", "warmup_epochs", "kl_start")


class Aggressive(Method):
    """``aggressive``: He et al. (2019), see :mod:`bnvae_core.aggressive`. While aggressive, each
    step runs the encoder-only inner loop (first on the current batch, then on random training
    batches) until :class:`~bnvae_core.aggressive.InnerLoopStopRule` says stop, then one
    decoder-only update on the current batch (the loop's step on a loss whose posterior
    parameters are detached, so only the decoder gets gradients; the gradient norm is then
    clipped over the decoder alone, where the reference code clips over both); after the first
    epoch whose validation MI drops, it trains as a plain VAE. Adds ``aggressive`` and
    ``inner_steps_mean`` to the train rows."""
    name = "aggressive"
    label = "Aggressive"
    settings = ("aggressive_check_every", "aggressive_max_steps", "warmup_epochs", "kl_start")

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
            optimizer_step(ctx, terms.loss, only="encoder")
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


class PretrainFB(Method):
    """``pretrain-fb`` (Li et al. 2019): before the first epoch, ``pretrain_epochs`` epochs of the
    autoencoder objective (KL weight 0, z still sampled from q; its own fresh optimizer), then the
    decoder is re-initialized and the model is trained with their free bits (``--fb 2`` of their
    code): ``Σ_j max(KL_ij, λ/n)`` per sentence, λ = ``target_kl`` (default 8 nats, their README).
    The pre-training time is part of the first epoch's ``time_s``; the first train row gets
    ``pretrain_rec`` (the AE's last-epoch reconstruction) and ``pretrain_time_s``."""
    name = "pretrain-fb"
    label = "Pretrain+FB"
    default_target_kl = 8.0
    settings = ("target_kl", "pretrain_epochs", "warmup_epochs", "kl_start")

    def __init__(self, config):
        super().__init__(config)
        self.pretrained = False
        self._report: dict = {}

    def objective_kl(self, kl, mu, logvar, model):
        per_dim = model.posterior.kl_per_dim(mu, logvar)
        return per_dim.clamp_min(self.target_kl / per_dim.shape[-1]).sum(-1)

    def pretrain(self, ctx: TrainContext) -> dict:
        """The AE phase and the decoder reset; returns ``{'pretrain_rec', 'pretrain_time_s'}``."""
        t0 = time.perf_counter()
        model, optimizer = ctx.model, ctx.make_optimizer()
        rec_sum, n = 0.0, 0
        for e in range(self.config.pretrain_epochs):
            rec_sum, n = 0.0, 0
            # a data order of its own: epochs 10⁶ + e never collide with the main phase's
            for index in ctx.train_batch_indices(shuffle=True, epoch=10 ** 6 + e):
                b = ctx.batch(index)
                terms = Method.loss(self, model, b.tokens, b.lengths, 0.0)
                if not torch.isfinite(terms.loss) or not optimizer_step(ctx, terms.loss, optimizer):
                    continue
                rec_sum += float(terms.rec.detach().sum())
                n += len(b)
        model.reset_parameters(prefix="decoder.")
        self.pretrained = True
        return {"pretrain_rec": rec_sum / n if n else math.nan, "pretrain_time_s": time.perf_counter() - t0}

    def before_epoch(self, ctx):
        if not self.pretrained:
            self._report = self.pretrain(ctx)

    def after_epoch(self, ctx, train_row, valid_row):
        if self._report:
            train_row.update(self._report)
            self._report = {}

    def state_dict(self):
        return {"pretrained": self.pretrained}

    def load_state_dict(self, state):
        self.pretrained = bool(state.get("pretrained", False))


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``cls`` selectable as ``train --model cls.name`` (and in ``config.MODELS``)."""
    METHODS[cls.name] = cls
    from . import config as _config
    _config.MODELS = tuple(METHODS)
    return cls


for _cls in (LanguageModel, Method, BNVAE, BetaVAE, Cyclical, FreeBits, FreeBitsPerDim, DeltaVAE,
             VMFVAE, Aggressive, PretrainFB, DUVAE):
    register_method(_cls)


def check_method_names(names, noun: str = "method") -> None:
    """ConfigError listing the known methods if any of ``names`` is not registered
    (``noun``: what the caller's flag calls them, 'model' or 'method')."""
    from .config import ConfigError
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown {noun}(s) {', '.join(unknown)} (choose from: {', '.join(METHODS)})")


def make_method(config) -> Method:
    return METHODS[config.model](config)


from . import cvae as _cvae  # noqa: E402,F401  registers cvae and bn-cvae (bnvae_core/cvae.py imports this module)
