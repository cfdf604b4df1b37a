"""Conditional VAE (CVAE) with a batch-normalized inference network: responses to contexts.

The paper extends BN-VAE to the CVAE of dialogue response generation (Zhu et al. 2020, §4.3);
the model is the CVAE of Zhao et al. (2017, §3; kgCVAE without the knowledge part).

Model
-----
Read top to bottom (shapes: ``B`` examples, ``U`` context utterances, ``T`` tokens, ``H`` =
``hidden_dim``, ``n`` = ``nz``):

1. :class:`UtteranceEncoder` — one LSTM over the tokens of an utterance, its last state (·, H).
   It encodes every context utterance *and* the response ``x`` (shared, as in Zhao et al.).
2. Context encoder (hierarchical): a second LSTM over the utterance vectors of a context
   ``(B, U, H)``; its state after the last utterance is the context vector ``c`` (B, H).
3. Prior network p(z|c) = N(μ_p(c), diag σ_p²(c)): ``Linear(H, H) → tanh → Linear(H, 2n)``.
4. Recognition network q(z|x,c) = N(μ_q, diag σ_q²): ``Linear([x; c], 2n)``. **BN-CVAE**
   (``bn-cvae``): μ_q goes through :class:`bnvae_core.model.BNHead` — ``BatchNorm1d(n)`` with fixed
   scale γ and learned shift β, exactly BN-VAE's head.
5. Decoder p(x|z,c): :class:`bnvae_core.model.Decoder` with the latent ``[c; z]`` (H + n): it is
   appended to every input embedding and sets the initial state.
6. Optional bag-of-words loss (``bow_loss``, Zhao et al. §3.2): ``f([z; c])`` (an MLP, H hidden
   units) gives one distribution over the vocabulary from which every word of ``x`` must be
   predictable, ``−Σ_t log softmax(f)_{x_t}``; it forces z to carry the words of the response.

Training loss per example: ``−log p(x|z,c) + w_t·KL(q(z|x,c) ‖ p(z|c)) [+ bow]``, one
reparameterized ``z ~ q``, ``w_t`` the KL warm-up weight of :mod:`bnvae_core.train`.

The KL between two Gaussians, and what the BN bound becomes
-----------------------------------------------------------
Per dimension j (μ̂_q is μ_q after BN, σ_p, μ_p depend on c)::

    KL = ½ Σ_j [ log σ_pj²/σ_qj² + (σ_qj² + (μ̂_qj − μ_pj)²)/σ_pj² − 1 ]
       = ½ Σ_j [ (r_j − 1 − log r_j) + (μ̂_qj − μ_pj)²/σ_pj² ],      r_j = σ_qj²/σ_pj².

Since ``r − 1 − log r ≥ 0`` (equality at r = 1), every example and, averaged, every batch B obeys

    (1)  E_B KL ≥ L₁ = ½ Σ_j E_B[(μ̂_qj − μ_pj)²/σ_pj²].

BN fixes the batch moments of μ̂_q: ``E_B μ̂_qj = β_j`` and ``Var_B μ̂_qj = γ² s_j²/(s_j²+ε) =: γ̃_j²``
(``s_j²`` the batch variance of μ_q before BN). Let ``m_j, τ_j`` be the batch mean and standard
deviation of μ_pj and ``S_j = max_B σ_pj``. Then ``E_B[(μ̂_q − μ_p)²] = (β_j − m_j)² + Var_B(μ̂_qj − μ_pj)``
and ``Var(a − b) ≥ (sd a − sd b)²`` (Cauchy–Schwarz), so

    (2)  E_B KL ≥ L₁ ≥ L₂ = ½ Σ_j [ (β_j − m_j)² + (γ̃_j − τ_j)² ] / S_j².

What holds:

* **Standard-normal prior** (μ_p = 0, σ_p = 1): m = τ = 0, S = 1 and L₂ = ½ Σ_j (γ̃_j² + β_j²),
  BN-VAE's bound, ≥ nγ²/2 up to the factor s²/(s²+ε). A CVAE with a fixed N(0, I) prior is BN-VAE
  whose decoder also reads c, and the bound carries over unchanged.
* **Learned prior**: (1) and (2) hold on every training batch. (2) is small only if the prior
  network reproduces the batch moments of μ̂_q in every dimension — mean β_j and spread γ̃_j —
  or if σ_p is large (which the KL pays for through ``log σ_p²/σ_q²`` instead).

What does **not** hold: nγ²/2 (or ½ Σ_j (γ² + β_j²)) is *not* a lower bound of the CVAE's KL.
If μ̂_q(x, c) depends on c only, the prior network can output μ_p(c) = μ̂_q and σ_p = σ_q, and
the KL is 0 although BN still keeps ``Var_B μ̂_q = γ²``: the spread γ then comes from the
different *contexts* of the batch. That is posterior collapse of a CVAE, q(z|x,c) = p(z|c), and
BN on the recognition mean alone does not exclude it — it only forces a collapsed posterior's
means to differ across the contexts of a batch by γ. Note also the factor s²/(s²+ε) in γ̃: with
the ±0.01 initialisation the recognition mean barely varies at first (s² ≪ ε = 1e-5), so early
in training γ̃ ≈ 0 and even the N(0, I) bound is only ½Σβ². ``tests/test_cvae.py`` checks (1), (2),
the standard-normal case and this counterexample. Outside training BN uses running statistics,
so none of these batch statements is exact at evaluation. :func:`bn_bound_report` measures
KL, L₁, L₂ and nγ²/2 on training batches of a trained model.

Evaluation
----------
* ``rec``, ``kl`` (nats per response), reconstruction perplexity ``ppl_rec = exp(Σ rec / Σ (|x|+1))``
  (z from q, as Zhao et al. report it) and ``ppl_elbo`` from −ELBO (an upper bound of the true PPL).
* Active units. With a learned prior, Burda et al.'s ``Var_x E_q[z_j] > 0.01`` counts dimensions
  that vary with the context even when q(z|x,c) = p(z|c); ``au`` therefore counts dimensions with
  ``Var_{(x,c)}(μ_qj − μ_pj) > 0.01`` — what the response adds to the prior's guess — and
  ``au_posterior`` is Burda's count on μ_q. The training rows of ``metrics.jsonl`` use the first.
* For N = 10 responses sampled per context (z ~ p(z|c), greedy decoding, so all diversity
  comes from z): BLEU precision (mean over the samples) and recall (max over the samples) of
  smoothed sentence BLEU against the reference (nltk, smoothing method 7, uniform 1–3-gram
  weights, as in Zhao et al.'s code; ``pip install 'bnvae-core[dialogue]'``), and distinct-1/2
  (distinct n-grams / n-grams; *intra*: within the N samples of a context, averaged; *inter*:
  over all samples, Li et al. 2016, Gu et al. 2019), plus the mean number of distinct responses
  among the N.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .dialogue import DialogueBatch, DialogueCorpus, DialogueSplit, corpus_for_config, label_context
from .model import BNHead, Decoder, decoder_io, init_uniform_, reparameterize
from .objectives import LossTerms, Method, register_method

CVAE_MODELS = ("cvae", "bn-cvae")


# --- the KL and its bounds ------------------------------------------------------------------------

def gaussian_kl_two(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                    logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) per dimension, shape of ``mu_q`` (closed form):
    ``½ [log σ_p²/σ_q² + (σ_q² + (μ_q − μ_p)²)/σ_p² − 1]``."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)


def kl_bound_pointwise(mu_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """L₁ = ½ Σ_j mean_B (μ_qj − μ_pj)²/σ_pj² (a scalar) for ``(B, n)`` inputs: the batch-mean KL is
    at least this, whatever the variances (module docstring, (1))."""
    return 0.5 * ((mu_q - mu_p).pow(2) / logvar_p.exp()).mean(0).sum()


def kl_bound_moments(mu_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """L₂ = ½ Σ_j [(mean_B μ_qj − mean_B μ_pj)² + (sd_B μ_qj − sd_B μ_pj)²] / max_B σ_pj² (a scalar),
    biased batch moments; ≤ L₁ for any inputs (module docstring, (2)). After BN in training mode,
    ``mean_B μ̂_qj = β_j`` and ``sd_B μ̂_qj = γ̃_j``; with μ_p = 0, σ_p = 1 it is ½ Σ_j (γ̃_j² + β_j²)."""
    mean_gap = mu_q.mean(0) - mu_p.mean(0)
    sd_gap = mu_q.var(0, unbiased=False).sqrt() - mu_p.var(0, unbiased=False).sqrt()
    return 0.5 * ((mean_gap.pow(2) + sd_gap.pow(2)) / logvar_p.exp().max(0).values).sum()


# --- the model ------------------------------------------------------------------------------------

class UtteranceEncoder(nn.Module):
    """Embedding + LSTM: ``tokens (N, T), lengths (N,)`` → last state ``(N, H)``.

    Rows of length 0 (padding utterances) give the state after the first (padding) token; the
    context encoder never reads them."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))                                 # (N, T, H)
        return out[torch.arange(len(tokens), device=tokens.device), (lengths - 1).clamp(min=0)]


@dataclass
class CVAEOutput:
    """Everything but the decoder: ``c`` (B, H); ``mu_q, logvar_q, mu_p, logvar_p`` (B, n), μ_q after BN."""
    c: torch.Tensor
    mu_q: torch.Tensor
    logvar_q: torch.Tensor
    mu_p: torch.Tensor
    logvar_p: torch.Tensor

    def kl(self) -> torch.Tensor:
        """KL(q(z|x,c) ‖ p(z|c)) per example, (B,)."""
        return gaussian_kl_two(self.mu_q, self.logvar_q, self.mu_p, self.logvar_p).sum(-1)


class CVAE(nn.Module):
    """Hierarchical context encoder, prior and recognition networks, decoder from ``[c; z]`` (module docstring).

    ``config.model``: ``cvae`` or ``bn-cvae`` (μ_q through :class:`BNHead`, fixed ``config.gamma``).
    ``bn_head`` is ``None`` on purpose: the training loop logs BN-VAE's bound ½Σ(γ²+β²) for a
    ``bn_head``, and that is not a bound here; the BN module is ``recognition_bn``."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.nz = n = config.nz
        E, H = config.emb_dim, config.hidden_dim
        self.utterance_encoder = UtteranceEncoder(vocab_size, E, H)
        self.context_encoder = nn.LSTM(H, H, batch_first=True)
        self.prior_net = nn.Sequential(nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 2 * n))
        self.recognition_net = nn.Linear(2 * H, 2 * n)
        self.recognition_bn = BNHead(n, config.gamma) if config.model == "bn-cvae" else None
        self.bn_head = None
        self.decoder = Decoder(vocab_size, E, H, H + n, config.dropout_in, config.dropout_out)
        self.bow_net = (nn.Sequential(nn.Linear(H + n, H), nn.Tanh(), nn.Linear(H, vocab_size))
                        if getattr(config, "bow_loss", False) else None)
        self.last_batch_var: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As :meth:`bnvae_core.model.TextVAE.reset_parameters`: uniform ±init_range for weights,
        ±init_emb_range for embeddings, BN shift β = 0 (γ fixed)."""
        init_uniform_(self, self.config, bn_prefix="recognition_bn")

    # --- inference ----------------------------------------------------------------------------
    def encode_context(self, context: torch.Tensor, context_lengths: torch.Tensor,
                       context_sizes: torch.Tensor) -> torch.Tensor:
        """``context (B, U, T)``, ``context_lengths (B, U)``, ``context_sizes (B,)`` → ``c (B, H)``."""
        B, U, T = context.shape
        utt = self.utterance_encoder(context.reshape(B * U, T), context_lengths.reshape(B * U))
        out, _ = self.context_encoder(utt.view(B, U, -1))                      # (B, U, H)
        return out[torch.arange(B, device=context.device), (context_sizes - 1).clamp(min=0)]

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_p, log σ_p² of p(z|c), each (B, n)."""
        mu, logvar = self.prior_net(c).chunk(2, dim=-1)
        return mu, logvar

    def recognize(self, tokens: torch.Tensor, lengths: torch.Tensor,
                  c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_q (batch-normalized for BN-CVAE), log σ_q² of q(z|x,c), each (B, n)."""
        x = self.utterance_encoder(tokens, lengths)
        mu, logvar = self.recognition_net(torch.cat([x, c], dim=-1)).chunk(2, dim=-1)
        if self.recognition_bn is not None:
            if self.training and mu.shape[0] > 1:
                self.last_batch_var = mu.detach().var(0, unbiased=False)
            mu = self.recognition_bn(mu)
        return mu, logvar

    def forward(self, batch: DialogueBatch) -> CVAEOutput:
        c = self.encode_context(batch.context, batch.context_lengths, batch.context_sizes)
        mu_p, logvar_p = self.prior(c)
        mu_q, logvar_q = self.recognize(batch.tokens, batch.lengths, c)
        return CVAEOutput(c, mu_q, logvar_q, mu_p, logvar_p)

    # --- generation -----------------------------------------------------------------------------
    @staticmethod
    def latent(c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The decoder's latent ``[c; z]``: (B, H + n), or (B, k, H + n) for z (B, k, n)."""
        if z.dim() == 3:
            c = c.unsqueeze(1).expand(-1, z.shape[1], -1)
        return torch.cat([c, z], dim=-1)

    def reconstruction_nll(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor,
                           c: torch.Tensor) -> torch.Tensor:
        """−log p(x|z,c) per response, summed over its words and ``</s>``: (B,), or (B, k) for z (B, k, n)."""
        inputs, targets = decoder_io(tokens, lengths)
        latent = self.latent(c, z)
        k = None
        if latent.dim() == 3:
            B, k, _ = latent.shape
            inputs, targets = inputs.repeat_interleave(k, 0), targets.repeat_interleave(k, 0)
            latent = latent.reshape(B * k, -1)
        nll = self.decoder.target_nll(inputs, targets, latent)
        return nll if k is None else nll.view(-1, k)

    def bow_nll(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor,
                c: torch.Tensor) -> torch.Tensor:
        """Bag-of-words loss −Σ_t log softmax(f([z; c]))_{x_t} over the words of each response, (B,)."""
        log_probs = self.bow_net(torch.cat([z, c], dim=-1)).log_softmax(-1)         # (B, V)
        picked = log_probs.gather(1, tokens)                                        # (B, T)
        mask = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
        return -(picked * mask).sum(1)

    @torch.no_grad()
    def generate(self, latent: torch.Tensor, max_len: int = 30, greedy: bool = True,
                 generator: torch.Generator | None = None) -> list[list[int]]:
        """Decode one response per row of ``latent (N, H + n)``; ids without ``</s>``."""
        was_training = self.training
        self.eval()
        try:
            return self.decoder.decode(latent, latent.shape[0], latent.device, max_len, greedy, generator)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample_responses(self, batch: DialogueBatch, n: int = 10, greedy: bool = True, max_len: int = 30,
                         generator: torch.Generator | None = None) -> list[list[list[int]]]:
        """``n`` responses per context of ``batch``: z ~ p(z|c), then (greedy) decoding. Returns
        ``[example][sample]`` lists of token ids (``batch.tokens`` is not read)."""
        was_training = self.training
        self.eval()
        try:
            c = self.encode_context(batch.context, batch.context_lengths, batch.context_sizes)
            mu_p, logvar_p = self.prior(c)
            B = c.shape[0]
            eps = torch.randn((B, n, self.nz), generator=generator).to(c.device, c.dtype)
            z = mu_p.unsqueeze(1) + (0.5 * logvar_p).exp().unsqueeze(1) * eps       # (B, n, nz)
            ids = self.generate(self.latent(c, z).reshape(B * n, -1), max_len, greedy, generator)
        finally:
            self.train(was_training)
        return [ids[i * n:(i + 1) * n] for i in range(B)]


# --- the objectives -------------------------------------------------------------------------------

class CVAEMethod(Method):
    """CVAE: ``−log p(x|z,c) + w_t·KL(q(z|x,c) ‖ p(z|c))`` (+ the bag-of-words loss if ``bow_loss``).

    ``conditional``: the training loop takes its corpus, model, batches and validation metrics
    from this class (:meth:`load_corpus`, :meth:`build_model`, :meth:`make_batch`,
    :meth:`batch_loss`, :meth:`validation_metrics`)."""
    name = "cvae"
    conditional = True
    uses_bn = False

    def load_corpus(self) -> DialogueCorpus:
        return corpus_for_config(self.config)

    def build_model(self, vocab_size: int) -> CVAE:
        return CVAE(self.config, vocab_size)

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

    def validation_metrics(self, model: CVAE, split: DialogueSplit, seed: int = 0) -> dict:
        """The valid row of ``metrics.jsonl``: ``loss`` (−ELBO), ``rec``, ``kl``, ``elbo``, ``au``,
        ``au_posterior``, ``ppl_elbo``, ``ppl_rec``."""
        res = cvae_elbo(model, split, seed=seed)
        return {k: res[k] for k in ("loss", "rec", "kl", "elbo", "au", "au_posterior", "ppl_elbo", "ppl_rec")}

    def evaluate(self, model: CVAE, split: DialogueSplit, **kwargs) -> dict:
        return evaluate_cvae(model, split, **kwargs)


class BNCVAEMethod(CVAEMethod):
    """BN-CVAE: the CVAE objective on a model whose recognition mean goes through :class:`BNHead`."""
    name = "bn-cvae"
    uses_bn = True


for _cls in (CVAEMethod, BNCVAEMethod):
    register_method(_cls)


def is_conditional(config: TrainConfig) -> bool:
    return config.model in CVAE_MODELS


# --- metrics ---------------------------------------------------------------------------------------

def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(split: DialogueSplit, batch_size: int):
    from .data import bucket_batches
    for index in bucket_batches(split, batch_size):
        yield split.make_batch(index)


def cvae_elbo(model: CVAE, split: DialogueSplit, batch_size: int = 128, seed: int = 0,
              threshold: float = 0.01) -> dict:
    """One pass over ``split`` in evaluation mode (BN with running statistics), one z ~ q per example.

    Returns mean ``rec``, ``kl``, ``loss`` (= rec + kl), ``elbo`` per response; ``ppl_rec`` =
    exp(Σ rec / tokens), ``ppl_elbo`` = exp(Σ (rec + kl) / tokens); ``au`` (Var(μ_q − μ_p) > threshold),
    ``au_posterior`` (Var μ_q > threshold); ``n_sentences``, ``n_tokens``; and the (N, n) arrays
    ``mu_q``, ``mu_p``, ``logvar_q``, ``logvar_p`` in split order."""
    gen = torch.Generator().manual_seed(seed)
    dev = _device(model)
    N, n = len(split), model.nz
    arrays = {k: np.zeros((N, n), np.float32) for k in ("mu_q", "mu_p", "logvar_q", "logvar_p")}
    rec_sum = kl_sum = 0.0
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in _batches(split, batch_size):
                b = b.to(dev)
                out = model(b)
                eps = torch.randn(out.mu_q.shape, generator=gen).to(dev, out.mu_q.dtype)
                z = out.mu_q + (0.5 * out.logvar_q).exp() * eps
                rec_sum += float(model.reconstruction_nll(b.tokens, b.lengths, z, out.c).sum())
                kl_sum += float(out.kl().sum())
                idx = b.index.numpy()
                for k in arrays:
                    arrays[k][idx] = getattr(out, k).float().cpu().numpy()
    finally:
        model.train(was)
    ddof = 1 if N > 1 else 0
    gap_var = (arrays["mu_q"] - arrays["mu_p"]).astype(np.float64).var(0, ddof=ddof)
    q_var = arrays["mu_q"].astype(np.float64).var(0, ddof=ddof)
    tokens = split.n_tokens
    return {"rec": rec_sum / N, "kl": kl_sum / N, "loss": (rec_sum + kl_sum) / N, "elbo": -(rec_sum + kl_sum) / N,
            "ppl_rec": math.exp(rec_sum / tokens), "ppl_elbo": math.exp((rec_sum + kl_sum) / tokens),
            "au": int((gap_var > threshold).sum()), "au_posterior": int((q_var > threshold).sum()),
            "n_sentences": N, "n_tokens": tokens, **arrays}


def distinct_n(responses: Sequence[Sequence], n: int) -> float:
    """Distinct n-grams / n-grams over ``responses`` (token sequences); 0.0 when there is no n-gram."""
    grams = [tuple(r[i:i + n]) for r in responses for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _nltk_bleu():
    try:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    except ImportError:
        raise ConfigError("BLEU needs nltk: pip install 'bnvae-core[dialogue]' (or: pip install nltk)") from None
    return sentence_bleu, SmoothingFunction().method7


def bleu_precision_recall(reference: Sequence, hypotheses: Sequence[Sequence],
                          weights: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)) -> tuple[float, float]:
    """(precision, recall) of N hypotheses against one reference (Zhao et al. 2017, §5.2):
    smoothed sentence BLEU (nltk, smoothing method 7) of each hypothesis; precision = mean,
    recall = max. An empty hypothesis scores 0. Tokens may be strings or ids."""
    sentence_bleu, smoothing = _nltk_bleu()
    ref = [str(t) for t in reference]
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for hyp in hypotheses:
            hyp = [str(t) for t in hyp]
            scores.append(float(sentence_bleu([ref], hyp, weights=weights, smoothing_function=smoothing))
                          if hyp and ref else 0.0)
    return float(np.mean(scores)), float(np.max(scores))


def response_metrics(samples: Sequence[Sequence[Sequence]], references: Sequence[Sequence] | None = None,
                     bleu: bool = True) -> dict:
    """Diversity (and, with ``references``, BLEU) of ``samples[example][k]`` token sequences:
    ``intra_dist1/2``, ``inter_dist1/2``, ``unique`` (mean distinct responses per example),
    ``mean_length``; ``bleu_precision``, ``bleu_recall``, ``bleu_f1`` (harmonic mean)."""
    res = {"intra_dist1": float(np.mean([distinct_n(s, 1) for s in samples])),
           "intra_dist2": float(np.mean([distinct_n(s, 2) for s in samples])),
           "inter_dist1": distinct_n([r for s in samples for r in s], 1),
           "inter_dist2": distinct_n([r for s in samples for r in s], 2),
           "unique": float(np.mean([len({tuple(r) for r in s}) for s in samples])),
           "mean_length": float(np.mean([len(r) for s in samples for r in s]))}
    if references is not None and bleu:
        pr = np.array([bleu_precision_recall(ref, s) for ref, s in zip(references, samples)])
        p, r = float(pr[:, 0].mean()), float(pr[:, 1].mean())
        res.update(bleu_precision=p, bleu_recall=r, bleu_f1=2 * p * r / (p + r) if p + r > 0 else 0.0)
    return res


def sample_split(model: CVAE, split: DialogueSplit, n: int = 10, greedy: bool = True, max_len: int = 30,
                 seed: int = 0, batch_size: int = 64) -> list[list[list[int]]]:
    """``n`` sampled responses (token ids) for every context of ``split``, in split order."""
    gen = torch.Generator().manual_seed(seed)
    dev = _device(model)
    out: list = [None] * len(split)
    for start in range(0, len(split), batch_size):
        index = np.arange(start, min(start + batch_size, len(split)))
        b = split.make_batch(index).to(dev)
        for i, s in zip(index, model.sample_responses(b, n, greedy, max_len, gen)):
            out[int(i)] = s
    return out


def evaluate_cvae(model: CVAE, split: DialogueSplit, *, n_samples: int = 10, max_examples: int | None = 200,
                  seed: int = 0, greedy: bool = True, max_len: int = 30, bleu: bool | None = None) -> dict:
    """The paper's CVAE table on one split: ``kl``, ``au``, ``au_posterior``, ``rec``, ``ppl_rec``,
    ``ppl_elbo``, ``elbo`` over the whole split; BLEU precision/recall/F1 and distinct-1/2 over
    ``n_samples`` responses for each of ``max_examples`` contexts (a seeded subset; ``None``: all).

    ``bleu=None`` computes BLEU when nltk is installed and leaves it out otherwise."""
    res = cvae_elbo(model, split, seed=seed)
    result = {k: res[k] for k in ("kl", "au", "au_posterior", "rec", "ppl_rec", "ppl_elbo", "elbo",
                                  "n_sentences", "n_tokens")}
    sub = split
    if max_examples is not None and len(split) > max_examples:
        rng = np.random.default_rng(seed)
        sub = split.subset(np.sort(rng.choice(len(split), max_examples, replace=False)))
    if bleu is None:
        try:
            _nltk_bleu()
            bleu = True
        except ConfigError:
            bleu = False
    samples = sample_split(model, sub, n_samples, greedy, max_len, seed)
    refs = [sub.sentence(i).tolist() for i in range(len(sub))]
    result.update(response_metrics(samples, refs, bleu=bleu))
    result.update(n_samples=n_samples, n_examples=len(sub), decoding="greedy" if greedy else "sampling")
    return result


# --- for people: text in, text out ------------------------------------------------------------------

def respond(model: CVAE, corpus: DialogueCorpus, contexts: Sequence[Sequence[str]], n: int = 5,
            greedy: bool = True, max_len: int = 30, seed: int = 0) -> list[list[str]]:
    """``n`` responses (text) to each context, a list of utterance strings (oldest first).
    For a label-conditioned model a context is ``label_context(label)``."""
    split = corpus.context_split([list(c) for c in contexts])
    samples = sample_split(model, split, n, greedy, max_len, seed)
    return [[" ".join(corpus.vocab.decode(ids)) for ids in per] for per in samples]


def samples_table(runs: dict, contexts: Sequence[Sequence[str]], n: int = 5, greedy: bool = True,
                  seed: int = 0) -> pd.DataFrame:
    """Responses of several runs to the same contexts, side by side: one row per (context, sample),
    one column per run name (``runs``: name → :class:`bnvae_core.train.Run`)."""
    rows = {}
    for name, run in runs.items():
        texts = respond(run.model, run.corpus, contexts, n, greedy, seed=seed)
        for ctx, per in zip(contexts, texts):
            for k, t in enumerate(per):
                rows.setdefault((" | ".join(ctx), k + 1), {})[name] = t
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["context", "sample"])
    return df


def label_contexts(labels: Sequence[str]) -> list[list[str]]:
    """Contexts of a label-conditioned model for ``labels`` (e.g. ``["noun.animal"]``)."""
    return [label_context(lab) for lab in labels]


@torch.no_grad()
def bn_bound_report(model: CVAE, split: DialogueSplit, batch_size: int = 32, n_batches: int = 20,
                    seed: int = 0) -> pd.DataFrame:
    """KL and its lower bounds on training-mode batches (BN with batch statistics) of ``split``.

    Columns per batch: ``kl`` (batch mean), ``bound_pointwise`` (L₁), ``bound_moments`` (L₂),
    ``bnvae_bound`` (½Σ(γ̃²+β²), BN-VAE's bound, which needs a N(0, I) prior) and ``nominal``
    (nγ²/2). Runs on a copy of the model, so its running statistics are untouched."""
    from .data import bucket_batches
    m = copy.deepcopy(model).train()
    dev = _device(m)
    rows = []
    for k, index in enumerate(bucket_batches(split, batch_size, shuffle=True, seed=seed, drop_singletons=True)):
        if k >= n_batches:
            break
        out = m(split.make_batch(index).to(dev))
        row = {"batch": k, "kl": float(out.kl().mean()),
               "bound_pointwise": float(kl_bound_pointwise(out.mu_q, out.mu_p, out.logvar_p)),
               "bound_moments": float(kl_bound_moments(out.mu_q, out.mu_p, out.logvar_p))}
        if m.recognition_bn is not None and m.last_batch_var is not None:
            row["bnvae_bound"] = float(m.recognition_bn.kl_lower_bound(m.last_batch_var))
            row["nominal"] = 0.5 * m.nz * m.recognition_bn.gamma ** 2
        rows.append(row)
    return pd.DataFrame(rows)
