"""The text VAE: LSTM encoder → Gaussian posterior (optionally batch-normalized) → LSTM decoder.

Read top to bottom:

1. :class:`Encoder` — embeds ``x`` and runs an LSTM; its last hidden state is mapped to
   the posterior parameters ``μ, log σ²`` (``nz`` each).
2. :class:`BNHead` — BN-VAE's one-line fix (Zhu et al. 2020, §3): ``μ̂ = γ·(μ − E_B μ)/√(Var_B μ + ε) + β``
   per latent dimension, with γ a *fixed* hyper-parameter and β learned. Since
   ``KL ≥ ½ Σ_j μ̂_j²`` and the batch mean of ``μ̂_j²`` is ``γ² s_j²/(s_j²+ε) + β_j²``, the
   expected KL on every training batch is at least ``½ Σ_j (γ² + β_j²) ≥ n γ²/2`` (up to the
   ``s²/(s²+ε)`` factor). Evaluation uses BN's running statistics instead of the batch's.
3. :class:`Decoder` — an LSTM language model whose input at every step is the word embedding
   concatenated with ``z``, and whose initial state is ``c₀ = W z, h₀ = tanh(c₀)`` (as in the
   reference code of He et al. 2019 that BN-VAE builds on). With ``nz = 0`` it is a plain LSTM-LM.
4. :class:`TextVAE` — glues them: ``encode`` (μ, log σ²), ``reconstruction_nll`` (−log p(x|z)
   per sentence, summed over tokens and ``</s>``), ``sample`` (greedy/ancestral decoding).

Shapes: ``tokens: (batch, seq)`` word ids without ``<s>``/``</s>``, padded with 0;
``lengths: (batch,)``; ``z: (batch, nz)`` or ``(batch, k, nz)`` for k samples per sentence.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig


class Encoder(nn.Module):
    """LSTM encoder: ``tokens (B, T)`` → ``μ (B, nz), log σ² (B, nz)``."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.to_params = nn.Linear(hidden_dim, 2 * nz, bias=False)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(self.embed(tokens))                       # (B, T, H)
        # unidirectional LSTM: the output at position len−1 is the final state of each
        # sentence; padding after it never influences it (no packing needed)
        last = out[torch.arange(len(tokens), device=tokens.device), (lengths - 1).clamp(min=0)]
        mu, logvar = self.to_params(last).chunk(2, dim=-1)
        return mu, logvar


class BNHead(nn.Module):
    """Batch normalization of μ with fixed scale γ and learned shift β (BN-VAE, Zhu et al. 2020 §3.2).

    ``BatchNorm1d(nz, eps=1e-5, momentum=0.1)``: its weight is filled with γ and frozen
    (``requires_grad=False``), its bias β starts at 0 and is learned.

    A training batch of one sentence has no batch variance: it is normalized with the
    running statistics instead (as at evaluation), deliberately, so a stray singleton never
    crashes a run; the training batcher avoids singletons in the first place."""

    def __init__(self, nz: int, gamma: float, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(nz, eps=eps, momentum=momentum)
        self.bn.weight.requires_grad_(False)
        self.set_gamma(gamma)

    @property
    def gamma(self) -> float:
        return float(self.bn.weight[0])

    def set_gamma(self, gamma: float) -> None:
        with torch.no_grad():
            self.bn.weight.fill_(gamma)

    @property
    def beta(self) -> torch.Tensor:
        return self.bn.bias

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        if self.training and mu.shape[0] == 1:
            bn = self.bn
            return F.batch_norm(mu, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        if self.training:
            #: exact ½ Σ_j mean_B μ̂_j² of this training batch, ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²),
            #: with s² the biased batch variance of the pre-BN μ: the batch's KL is at least this
            self.last_kl_bound = self.kl_lower_bound(mu.detach().var(0, unbiased=False))
        return self.bn(mu)

    def kl_lower_bound(self, batch_var: torch.Tensor | None = None) -> torch.Tensor:
        """½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²): the exact mean of ½‖μ̂‖² over a training batch whose
        per-dimension (biased) variance of μ is ``batch_var`` (nz,); ``None`` gives ½ Σ_j (γ² + β_j²)."""
        w, b = self.bn.weight.detach(), self.bn.bias.detach()
        shrink = 1.0 if batch_var is None else batch_var / (batch_var + self.bn.eps)
        return 0.5 * (w ** 2 * shrink + b ** 2).sum()


class Decoder(nn.Module):
    """LSTM decoder p(x|z): input ``[emb(w_{t−1}); z]`` at every step, ``c₀ = W z``, ``h₀ = tanh(c₀)``.

    With ``nz = 0`` the same module is the LSTM language model baseline (zero initial state)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int,
                 dropout_in: float = 0.5, dropout_out: float = 0.5):
        super().__init__()
        self.nz = nz
        self.embed = nn.Embedding(vocab_size, emb_dim)
        self.dropout_in = nn.Dropout(dropout_in)
        self.dropout_out = nn.Dropout(dropout_out)
        self.lstm = nn.LSTM(emb_dim + nz, hidden_dim, batch_first=True)
        self.z_to_state = nn.Linear(nz, hidden_dim, bias=False) if nz > 0 else None
        self.out = nn.Linear(hidden_dim, vocab_size)

    def initial_state(self, z: torch.Tensor | None, batch: int):
        if z is None or self.z_to_state is None:
            return None
        c0 = self.z_to_state(z).unsqueeze(0)                         # (1, N, H)
        return torch.tanh(c0), c0

    def forward(self, inputs: torch.Tensor, z: torch.Tensor | None,
                state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``inputs (N, T)`` ids starting with ``<s>``; ``z (N, nz)`` → logits ``(N, T, V)``, state."""
        emb = self.dropout_in(self.embed(inputs))                    # (N, T, E)
        if self.nz > 0:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], dim=-1)
        if state is None:
            state = self.initial_state(z, inputs.shape[0])
        out, state = self.lstm(emb, state)
        return self.out(self.dropout_out(out)), state


def decoder_io(tokens: torch.Tensor, lengths: torch.Tensor, bos: int = 1, eos: int = 2):
    """Decoder inputs ``<s> w₁…w_T`` and targets ``w₁…w_T </s>`` (padding → −100), each (B, T+1)."""
    B = tokens.shape[0]
    inputs = torch.cat([tokens.new_full((B, 1), bos), tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_zeros((B, 1))], dim=1)
    targets[torch.arange(B, device=tokens.device), lengths] = eos
    positions = torch.arange(targets.shape[1], device=tokens.device)
    targets = targets.masked_fill(positions.unsqueeze(0) > lengths.unsqueeze(1), -100)
    return inputs, targets


class TextVAE(nn.Module):
    """Encoder + (BN) Gaussian posterior + decoder. ``config.model`` picks the posterior head:
    ``bnvae`` (and BN variants) get a :class:`BNHead`; ``lm`` has no encoder and ``nz = 0``."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.nz = 0 if config.model == "lm" else config.nz
        self.encoder = Encoder(vocab_size, config.emb_dim, config.hidden_dim, config.nz) if self.nz else None
        self.bn_head = BNHead(config.nz, config.gamma) if uses_bn(config) else None
        self.decoder = Decoder(vocab_size, config.emb_dim, config.hidden_dim, self.nz,
                               config.dropout_in, config.dropout_out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ±init_range for weights, ±init_emb_range for embeddings (paper's reference)."""
        r, re_ = self.config.init_range, self.config.init_emb_range
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("bn_head"):
                if name.endswith("bias"):
                    nn.init.zeros_(p)
            elif "embed" in name:
                nn.init.uniform_(p, -re_, re_)
            else:
                nn.init.uniform_(p, -r, r)

    # --- inference network -------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``μ, log σ²``, each (B, nz); μ is batch-normalized for BN-VAE."""
        mu, logvar = self.encoder(tokens, lengths)
        if self.bn_head is not None:
            mu = self.bn_head(mu)
        return mu, logvar

    # --- generative network ------------------------------------------------------------------
    def reconstruction_nll(self, tokens: torch.Tensor, lengths: torch.Tensor,
                           z: torch.Tensor | None) -> torch.Tensor:
        """−log p(x|z) per sentence, summed over its words and ``</s>``.

        ``z``: (B, nz) → (B,); or (B, k, nz) for k samples per sentence → (B, k), computed in
        one decoder pass over B·k rows."""
        inputs, targets = decoder_io(tokens, lengths)
        k = None
        if z is not None and z.dim() == 3:
            B, k, _ = z.shape
            inputs = inputs.repeat_interleave(k, dim=0)
            targets = targets.repeat_interleave(k, dim=0)
            z = z.reshape(B * k, -1)
        logits, _ = self.decoder(inputs, z)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              ignore_index=-100, reduction="none").view(targets.shape).sum(1)
        return nll if k is None else nll.view(-1, k)

    @torch.no_grad()
    def generate(self, z: torch.Tensor | None, max_len: int = 30, greedy: bool = True,
                 n: int | None = None, generator: torch.Generator | None = None) -> list[list[int]]:
        """Decode one sentence per row of ``z (N, nz)`` (or ``n`` sentences from the LM); ids without ``</s>``."""
        was_training = self.training
        self.eval()
        N = z.shape[0] if z is not None else n
        device = next(self.parameters()).device
        word = torch.full((N, 1), 1, dtype=torch.long, device=device)
        state, done, out = None, torch.zeros(N, dtype=torch.bool, device=device), []
        for _ in range(max_len):
            logits, state = self.decoder(word, z, state)
            if greedy:
                word = logits[:, -1].argmax(-1, keepdim=True)
            else:
                word = torch.multinomial(logits[:, -1].softmax(-1), 1, generator=generator)
            out.append(word.squeeze(1))
            done |= word.squeeze(1) == 2
            if done.all():
                break
        self.train(was_training)
        seqs = torch.stack(out, 1).tolist()
        return [s[: s.index(2)] if 2 in s else s for s in seqs]


def uses_bn(config: TrainConfig) -> bool:
    """Methods whose posterior mean goes through the BN head."""
    return config.model in ("bnvae", "bn-cvae") or config.model.startswith("bnvae")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per dimension: ½ (μ² + σ² − log σ² − 1), shape of ``mu``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """z = μ + σ ε: (B, nz), or (B, k, nz) for k samples."""
    std = (0.5 * logvar).exp()
    if k is None:
        return mu + std * torch.randn_like(std)
    eps = torch.randn(mu.shape[0], k, mu.shape[1], device=mu.device, dtype=mu.dtype)
    return mu.unsqueeze(1) + std.unsqueeze(1) * eps


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last dim (broadcasting)."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
