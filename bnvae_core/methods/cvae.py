"""The conditional methods ``cvae`` and ``bn-cvae`` (Zhu et al. 2020 §4.3, after Zhao et al. 2017).

They train :class:`~bnvae_core.models.cvae.CVAE` on (context, response) pairs: their corpus,
batches, loss and validation row are their own (:mod:`bnvae_core.data.dialogue`,
:mod:`bnvae_core.metrics.dialogue`); the trainer is the same as every other method's.
"""
from __future__ import annotations

import torch

from ..data.dialogue import (
    DialogueBatch,
    DialogueCorpus,
    DialogueSplit,
    corpus_for_config,
)
from ..metrics.dialogue import cvae_elbo, evaluate_cvae
from ..models.cvae import CVAE, kl_bound_moments, kl_bound_pointwise
from ..models.posteriors import reparameterize
from .base import LossTerms, Method


class CVAEMethod(Method):
    """CVAE: ``−log p(x|z,c) + w_t·KL(q(z|x,c) ‖ p(z|c))`` (+ the bag-of-words loss if ``bow_loss``).

    Its corpus, model, batches, loss and validation row are its own (:meth:`load_corpus`,
    :meth:`build_model`, :meth:`make_batch`, :meth:`batch_loss`, :meth:`validation_row`)."""
    name = "cvae"
    label = "CVAE"
    conditional = True

    def load_corpus(self) -> DialogueCorpus:
        return corpus_for_config(self.config)

    def build_model(self, vocab_size: int) -> CVAE:
        return CVAE(self.config, vocab_size, bn=self.bn is not None)

    def make_batch(self, split: DialogueSplit, index) -> DialogueBatch:
        return split.make_batch(index)

    def loss(self, model, tokens, lengths, kl_weight):
        raise TypeError(f"{self.name} needs the context of each response: use batch_loss(model, batch, w)")

    def train_step(self, ctx, batch: DialogueBatch, kl_weight: float) -> LossTerms:
        return self.batch_loss(ctx.model, batch, kl_weight)

    def batch_loss(self, model: CVAE, batch: DialogueBatch, kl_weight: float) -> LossTerms:
        """Loss terms of one batch. ``extra``: ``mu`` = μ_q − μ_p (what the training rows' AU uses),
        ``mu_q``, ``mu_p``, ``logvar_p``, ``kl_bound_pointwise`` (L₁), ``kl_bound_moments`` (L₂), ``bow``."""
        out = model(batch)
        z = reparameterize(out.mu_q, out.logvar_q)
        rec = model.reconstruction_nll(batch.tokens, batch.lengths, z, out.c)
        kl = out.kl()
        loss = rec + kl_weight * kl
        extra = {"mu": (out.mu_q - out.mu_p).detach(), "mu_q": out.mu_q.detach(), "mu_p": out.mu_p.detach(),
                 "logvar_p": out.logvar_p.detach()}
        with torch.no_grad():
            extra["kl_bound_pointwise"] = kl_bound_pointwise(out.mu_q, out.mu_p, out.logvar_p)
            extra["kl_bound_moments"] = kl_bound_moments(out.mu_q, out.mu_p, out.logvar_p)
        if model.bow_net is not None:
            bow = model.bow_nll(batch.tokens, batch.lengths, z, out.c)
            loss = loss + bow
            extra["bow"] = bow.detach()
        return LossTerms(loss.mean(), rec, kl, extra)

    def validation_row(self, model: CVAE, corpus: DialogueCorpus, seed: int) -> dict:
        """The valid row of ``metrics.jsonl``: ``loss`` (−ELBO), ``rec``, ``kl``, ``elbo``, ``au``,
        ``au_posterior``, ``ppl_elbo``, ``ppl_rec``."""
        res = cvae_elbo(model, corpus.valid, seed=seed)
        return {k: res[k] for k in ("loss", "rec", "kl", "elbo", "au", "au_posterior", "ppl_elbo", "ppl_rec")}

    def evaluate(self, model: CVAE, split: DialogueSplit, **kwargs) -> dict:
        return evaluate_cvae(model, split, **kwargs)


class BNCVAEMethod(CVAEMethod):
    """BN-CVAE: the CVAE objective on a model whose recognition mean goes through :class:`BNHead`."""
    name = "bn-cvae"
    label = "BN-CVAE"
    bn = "fixed"
