"""The :class:`Method` interface: what a training method decides, and the plain VAE that it is by default.

A method says

* what the model looks like — class attributes ``posterior`` (``'none'``, ``'gaussian'``,
  ``'delta'``, ``'vmf'``), ``bn`` (None, ``'fixed'``: BN-VAE's head, ``'learned'``: DU-VAE's) and
  ``var_dropout``, which :meth:`Method.build_model` hands to
  :class:`~bnvae_core.models.text_vae.TextVAE` (a method may build any other model);
* which settings it reads (the config fields declared with ``methods=(name,)``, plus the warm-up
  unless ``uses_warmup = False``) and which combinations are impossible (:meth:`Method.check`);
* its data (:meth:`Method.load_corpus`, :meth:`Method.make_batch`);
* the KL weight at each step (:meth:`Method.kl_weight`; linear warm-up unless overridden);
* the loss (:meth:`Method.loss` → :class:`LossTerms`: the scalar to back-propagate plus the
  per-sentence reconstruction and *true* KL that the metrics log); most methods only change
  the KL term that gets weighted, :meth:`Method.objective_kl`;
* optionally its own training work or phases (:meth:`Method.train_step`,
  :meth:`Method.before_epoch`, :meth:`Method.after_epoch`), which the trainer in
  :mod:`bnvae_core.training.loop` calls with a :class:`TrainContext`;
* what it reports (:meth:`Method.validation_row`, :meth:`Method.epoch_columns`,
  :meth:`Method.evaluate`).

The trainer knows nothing of the model: it asks the method. A new baseline is one subclass
and one line in the registry (:mod:`bnvae_core.methods`), never a fork of the training loop.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..config import TrainConfig, settings_of
from ..data.corpus import (
    Batch,
    Corpus,
    EncodedSplit,
    bucket_batches,
    cached_corpus,
    make_batch,
)
from ..data.hub import reading_settings
from ..metrics.text import active_units, elbo, evaluate, exp_or_inf, mutual_information
from ..models.text_vae import TextVAE
from .schedules import linear_warmup_weight


@dataclass
class LossTerms:
    """``loss``: scalar to minimise; ``rec``, ``kl``: (B,) per sentence, in nats (KL not weighted,
    the true KL(q‖p) whatever the objective does with it); ``extra``: ``mu``, ``logvar`` (B, nz),
    ``objective_kl`` (the KL term that was weighted: (B,) or a scalar) and, for a BN head on a
    training batch, ``kl_floor`` = ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²), the exact floor of the batch's mean KL."""
    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    extra: dict = field(default_factory=dict)


#: ``update(loss, optimizer=None, only=None) -> bool``: zero_grad, backward, clip, finite check,
#: [keep only 'encoder' or 'decoder' gradients], step (see :func:`bnvae_core.training.step.update`)
UpdateFn = Callable[..., bool]


@dataclass
class TrainContext:
    """What a method's training hooks may use; the trainer sets ``epoch`` before each epoch.

    ``optimizer`` is the trainer's current optimizer (``get_optimizer()``: it is rebuilt when the
    learning rate decays); ``make_optimizer()`` builds a fresh one over the model's trainable
    parameters at the current learning rate; ``update`` is *the* update step of the trainer
    (:func:`bnvae_core.training.step.update`), bound to this model and its clipping."""
    config: TrainConfig
    model: torch.nn.Module
    corpus: Corpus
    device: torch.device
    get_optimizer: Callable[[], torch.optim.Optimizer]
    make_optimizer: Callable[[], torch.optim.Optimizer]
    update: UpdateFn
    state: dict
    epoch: int = 0
    _train_index: list | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.get_optimizer()

    def batch(self, index) -> Batch:
        """The training batch at ``index`` (an array of sentence indices), on the device."""
        return make_batch(self.corpus.train, index).to(self.device)

    def train_batch_indices(self, *, shuffle: bool = False, epoch: int = 0) -> list[np.ndarray]:
        """The training batches (index arrays), as the trainer forms them (singletons merged)."""
        if shuffle:
            return bucket_batches(self.corpus.train, self.config.batch_size, shuffle=True,
                                  seed=self.config.seed, epoch=epoch, drop_singletons=True)
        if self._train_index is None:
            self._train_index = bucket_batches(self.corpus.train, self.config.batch_size, drop_singletons=True)
        return self._train_index

    def random_train_batch(self) -> Batch:
        """A uniformly random training batch (Python's ``random``, seeded and checkpointed by the trainer)."""
        index = self.train_batch_indices()
        return self.batch(index[random.randrange(len(index))])


class Method:
    """Base class and ``vae``: the ELBO with linear KL warm-up, ``mean_i (rec_i + w_t KL_i)``."""
    name = "vae"
    label = "VAE"
    posterior = "gaussian"
    bn: str | None = None
    var_dropout = False
    #: the KL weight follows the linear warm-up (``warmup_epochs``, ``kl_start``)
    uses_warmup = True
    #: examples carry a context (``cvae``, ``bn-cvae``): ``evaluate --data`` cannot swap corpora
    conditional = False
    #: λ of the free-bits methods when ``config.target_kl`` is None (see :attr:`target_kl`)
    default_target_kl: float | None = None

    def __init__(self, config: TrainConfig):
        self.config = config

    # --- what the method is made of ------------------------------------------------------
    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The config fields that define this method beyond the shared sizes and optimisation."""
        return settings_of(cls.name) + (("warmup_epochs", "kl_start") if cls.uses_warmup else ())

    @classmethod
    def check(cls, config: TrainConfig) -> list[str]:
        """Settings this method cannot train with (each a sentence); empty when ``config`` is fine.

        A BN head needs γ > 0 (γ = 0 pins every μ to β: no information in μ) and training
        batches of at least 2 sentences (no batch statistics otherwise); vMF needs ``nz ≥ 2``."""
        problems = []
        if cls.bn is not None and config.gamma == 0:
            problems.append(f"gamma = 0 for {cls.name} pins every μ to β (no information in μ); "
                            "use --model vae for a plain VAE or a gamma > 0")
        if cls.bn is not None and config.batch_size == 1:
            problems.append("batch_size 1 cannot be batch-normalized during training; use >= 2")
        if cls.posterior == "vmf" and config.nz < 2:
            problems.append(f"vmf needs nz >= 2 (a sphere S^(nz-1)), got {config.nz}")
        return problems

    @property
    def target_kl(self) -> float | None:
        """λ (nats) of the free-bits methods: ``config.target_kl``, else the method's default."""
        return self.config.target_kl if self.config.target_kl is not None else self.default_target_kl

    def build_model(self, vocab_size: int) -> torch.nn.Module:
        """The model this method trains: a :class:`TextVAE` with this method's head."""
        return TextVAE(self.config, vocab_size, posterior=self.posterior, bn=self.bn, var_dropout=self.var_dropout)

    # --- data ----------------------------------------------------------------------------
    def load_corpus(self) -> Corpus:
        """The corpus ``config`` names (built-in, hub dataset or directory), read as
        :func:`~bnvae_core.data.hub.reading_settings` says (tokenizer; the data's own limits where the
        config leaves them at None), memoised per process; the subsets are seeded with 0, so runs
        with different seeds see the same sentences."""
        c = self.config
        path, kwargs = reading_settings(c.data, c.tokenizer, max_tokens=c.max_tokens, max_train=c.max_train,
                                        max_eval=c.max_eval, min_freq=c.min_freq, max_vocab=c.max_vocab)
        return cached_corpus(path, **kwargs)

    def make_batch(self, split: EncodedSplit, index) -> Batch:
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
        extra = {"mu": mu, "logvar": logvar, "objective_kl": term}
        if model.bn_head is not None and model.training and len(tokens) > 1:
            extra["kl_floor"] = model.bn_head.last_kl_bound
        return LossTerms((rec + kl_weight * term).mean(), rec, kl, extra)

    # --- training hooks (defaults: the plain loop) --------------------------------------
    def train_step(self, ctx: TrainContext, batch: Batch, kl_weight: float) -> LossTerms:
        """The terms of ``batch`` whose ``loss`` the trainer back-propagates and steps on (then
        checks for non-finite loss/gradients, per ``on_nonfinite``). A method may do extra
        optimizer work here first (with ``ctx.update``); the default is :meth:`loss`."""
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

    # --- what it reports ----------------------------------------------------------------
    def epoch_columns(self, model: TextVAE) -> dict:
        """Extra columns of an epoch's train row: for a BN head, ``kl_bound`` = ½ Σ_j (γ_j² + β_j²)
        and ``kl_bound_nominal`` = n γ²/2."""
        head = getattr(model, "bn_head", None)
        if head is None:
            return {}
        return {"kl_bound": float(head.kl_lower_bound()), "kl_bound_nominal": 0.5 * model.nz * head.gamma ** 2}

    def validation_row(self, model: TextVAE, corpus: Corpus, seed: int) -> dict:
        """The valid row of ``metrics.jsonl``: ``loss`` (−ELBO, what the lr schedule watches),
        ``rec``, ``kl``, ``elbo``, ``au``, ``mi``, ``ppl_elbo``."""
        val = elbo(model, corpus.valid, seed=seed)
        au, _ = active_units(model, corpus.valid)
        return {"loss": val["loss"], "rec": val["rec"], "kl": val["kl"], "elbo": val["elbo"], "au": au,
                "mi": mutual_information(model, corpus.valid, seed=seed),
                "ppl_elbo": exp_or_inf(val["loss"] * val["n_sentences"] / val["n_tokens"])}

    def selection_loss(self, valid_row: dict) -> float:
        """The validation number that selects the weights kept and drives the lr schedule: −ELBO."""
        return valid_row["loss"]

    def evaluate(self, model: TextVAE, split: EncodedSplit, **kwargs) -> dict:
        """Test metrics of a trained model (:func:`bnvae_core.metrics.text.evaluate`)."""
        return evaluate(model, split, **kwargs)
