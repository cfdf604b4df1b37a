"""The text-VAE methods: what each minimises, computed from the same model outputs.

Each is a small :class:`~bnvae_core.methods.base.Method` subclass (the plain ``vae`` is the
base class itself); the registry (:mod:`bnvae_core.methods`) lists them with their objectives.
The ``max(·, λ)`` forms of the free-bits methods have the gradients of the reference codes'
masks (``1[KL > λ]·KL``); their value differs by a constant, so the logged training loss stays
an upper bound on −ELBO.
"""
from __future__ import annotations

import math
import time

import torch

from .base import LossTerms, Method, TrainContext
from .schedules import cyclical_weight


class LanguageModel(Method):
    """``lm``: the decoder alone, ``nz = 0`` (no encoder); loss = mean_i −log p(x_i). KL ≡ 0."""
    name = "lm"
    label = "LSTM-LM"
    posterior = "none"
    uses_warmup = False

    def loss(self, model, tokens, lengths, kl_weight):
        rec = model.reconstruction_nll(tokens, lengths, None)
        kl = torch.zeros_like(rec)
        return LossTerms(rec.mean(), rec, kl, {"objective_kl": kl})


class BNVAE(Method):
    """``bnvae``: the VAE objective on a model whose μ goes through :class:`~bnvae_core.models.layers.BNHead`
    (fixed γ, learned β), so E_batch[KL] ≥ ½Σ_j(γ² + β_j²) ≥ nγ²/2 (Zhu et al. 2020 §3)."""
    name = "bnvae"
    label = "BN-VAE"
    bn = "fixed"


class BetaVAE(Method):
    """``beta``: β-VAE (Higgins et al. 2017) as the BN-VAE authors' code runs it (``text_beta.py``):
    ``mean_i (rec_i + β KL_i)`` with a **constant** β from the first step (no warm-up), and the
    weights kept and the lr schedule driven by the validation ``rec + β·KL`` (not the ELBO).
    ``beta_warmup=True``: the KL weight is β times the linear warm-up weight instead (this
    package's earlier form; a table says which one it used through ``method_label``)."""
    name = "beta"
    label = "β-VAE"

    def kl_weight(self, step, steps_per_epoch):
        if not self.config.beta_warmup:
            return self.config.beta
        return self.config.beta * super().kl_weight(step, steps_per_epoch)

    def selection_loss(self, valid_row):
        return valid_row["rec"] + self.config.beta * valid_row["kl"]


class Cyclical(Method):
    """``cyclical``: w_t = :func:`~bnvae_core.methods.schedules.cyclical_weight` over the run's
    ``epochs × batches`` steps (``cycles``, ``cycle_ratio``, ``cycle_shape``; Fu et al. 2019).
    Replaces the warm-up (``warmup_epochs``/``kl_start`` are ignored)."""
    name = "cyclical"
    label = "Cyclical"
    uses_warmup = False

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

    def objective_kl(self, kl, mu, logvar, model):
        if self.config.fb_scope == "batch":
            return kl.mean().clamp_min(self.target_kl)
        return kl.clamp_min(self.target_kl)


class FreeBitsPerDim(FreeBits):
    """``fb-dim``: free bits per latent dimension ("free bits", Kingma et al. 2016, appendix):
    ``Σ_j max(mean_i KL_ij, λ)``, λ = ``target_kl`` nats *per dimension* (default 0.25)."""
    name = "fb-dim"
    label = "FB (per dim)"
    default_target_kl = 0.25

    def objective_kl(self, kl, mu, logvar, model):
        return model.posterior.kl_per_dim(mu, logvar).mean(0).clamp_min(self.target_kl).sum()


class DeltaVAE(Method):
    """``delta``: δ-VAE with the BN-VAE authors' posterior (``DeltaGaussianLSTMEncoder``):
    σ ∈ [σ_l, σ_u] and μ set so that KL_ij = δ + ½ relu(raw μ_ij) + ½·10⁻⁶ ≥ δ
    (:func:`bnvae_core.models.distributions.delta_vae_constrain`); prior N(0, I) (not Razavi et al.'s
    AR(1) prior). The objective is the plain ELBO; KL_i ≥ δ·n always. ``delta`` default 0.15."""
    name = "delta"
    label = "δ-VAE"
    posterior = "delta"


class VMFVAE(Method):
    """``vmf``: q(z|x) = vMF(μ/‖μ‖, κ) on S^{n−1} with fixed κ (default 13), uniform prior; the
    KL is the constant :func:`bnvae_core.models.distributions.vmf_kl_to_uniform` (≈2.17 nats for κ=13,
    n=32), so the objective is effectively the reconstruction term (Xu & Durrett 2018)."""
    name = "vmf"
    label = "vMF-VAE"
    posterior = "vmf"


class DUVAE(Method):
    """``duvae`` (after DU-VAE, Shen et al. 2021): BN on μ with *learnable* scales renormalized to
    root-mean-square γ (so Σ_j γ_j² = nγ², the BN-VAE bound, but spread freely over dimensions),
    and Dropout(p = ``duvae_dropout``) on the posterior variance σ² during training, with the
    variance floor 1/(2πe) of DU-VAE's code (``delta_rate`` 1) added always. (The DU-VAE code
    applies floor and dropout only once the KL weight reaches 1; here they are always on.)"""
    name = "duvae"
    label = "DU-VAE"
    bn = "learned"
    var_dropout = True


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
                if not torch.isfinite(terms.loss) or not ctx.update(terms.loss, optimizer):
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
