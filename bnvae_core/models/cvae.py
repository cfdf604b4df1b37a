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
   (``bn-cvae``): μ_q goes through :class:`bnvae_core.models.layers.BNHead` — ``BatchNorm1d(n)`` with fixed
   scale γ and learned shift β, exactly BN-VAE's head.
5. Decoder p(x|z,c): :class:`bnvae_core.models.layers.Decoder` with the latent ``[c; z]`` (H + n): it is
   appended to every input embedding and sets the initial state.
6. Optional bag-of-words loss (``bow_loss``, Zhao et al. §3.2): ``f([z; c])`` (an MLP, H hidden
   units) gives one distribution over the vocabulary from which every word of ``x`` must be
   predictable, ``−Σ_t log softmax(f)_{x_t}``; it forces z to carry the words of the response.

Training loss per example: ``−log p(x|z,c) + w_t·KL(q(z|x,c) ‖ p(z|c)) [+ bow]``, one
reparameterized ``z ~ q``, ``w_t`` the KL warm-up weight of :mod:`bnvae_core.training`.

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

The training method is :mod:`bnvae_core.methods.cvae`, the metrics :mod:`bnvae_core.metrics.dialogue`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrainConfig
from ..data.dialogue import DialogueBatch
from .layers import BNHead, Decoder, decoder_io, init_uniform_


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

    ``bn=True`` (``bn-cvae``): μ_q goes through :class:`BNHead` with the fixed ``config.gamma``
    (the module ``recognition_bn``; BN-VAE's ½Σ(γ²+β²) is *not* a bound of this KL, see above)."""

    def __init__(self, config: TrainConfig, vocab_size: int, bn: bool = False):
        super().__init__()
        self.config = config
        self.nz = n = config.nz
        E, H = config.emb_dim, config.hidden_dim
        self.utterance_encoder = UtteranceEncoder(vocab_size, E, H)
        self.context_encoder = nn.LSTM(H, H, batch_first=True)
        self.prior_net = nn.Sequential(nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 2 * n))
        self.recognition_net = nn.Linear(2 * H, 2 * n)
        self.recognition_bn = BNHead(n, config.gamma) if bn else None
        self.decoder = Decoder(vocab_size, E, H, H + n, config.dropout_in, config.dropout_out)
        self.bow_net = (nn.Sequential(nn.Linear(H + n, H), nn.Tanh(), nn.Linear(H, vocab_size))
                        if config.bow_loss else None)
        self.last_batch_var: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As :meth:`bnvae_core.models.text_vae.TextVAE.reset_parameters`: uniform ±init_range for weights,
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


