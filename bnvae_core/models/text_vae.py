"""The text VAE: LSTM encoder → posterior head (optionally batch-normalized) → LSTM decoder.

:class:`TextVAE` glues the layers of :mod:`bnvae_core.models.layers`: ``encode`` (μ, log σ²),
``reconstruction_nll`` (−log p(x|z) per sentence, summed over tokens and ``</s>``),
``generate`` (greedy/ancestral decoding), and ``posterior`` (:mod:`bnvae_core.models.posteriors`)
so the metrics work for every method. The *method* builds it
(:meth:`bnvae_core.methods.base.Method.build_model`) and says which head it has:

* ``posterior='none'`` — no encoder, ``nz = 0``: the LSTM language model;
* ``'gaussian'`` — q = N(μ, σ²); with ``bn='fixed'`` μ goes through :class:`BNHead` with fixed
  γ (BN-VAE), with ``bn='learned'`` learnable scales renormalized to γ (DU-VAE);
* ``'delta'`` — the encoder outputs pass :func:`~bnvae_core.models.distributions.delta_vae_constrain`
  (KL ≥ δ per dimension);
* ``'vmf'`` — the unit direction of the encoder output, fixed κ;
* ``var_dropout=True`` — DU-VAE's dropout on σ² and variance floor 1/(2πe).

Shapes: ``tokens: (batch, seq)`` word ids without ``<s>``/``</s>``, padded with 0;
``lengths: (batch,)``; ``z: (batch, nz)`` or ``(batch, k, nz)`` for k samples per sentence.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from . import distributions as _dist
from .layers import BNHead, Decoder, Encoder, decoder_io, encoder_io, init_uniform_
from .posteriors import DUVAE_VAR_FLOOR, GaussianPosterior, VMFPosterior

POSTERIORS = ("none", "gaussian", "delta", "vmf")


#: evaluation (:meth:`TextVAE._eval_nll`) on CPU: decoder sequences per LSTM pass, and target
#: tokens per block of the output layer (tuned with ``bench/scenarios.py``; results do not depend on them)
EVAL_ROWS_PER_PASS = 128


EVAL_TOKENS_PER_BLOCK = 1024


def _block_nll(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
               buffers: dict, block: int) -> torch.Tensor:
    """``−log softmax(h Wᵀ + b)[y]`` per row for one block of evaluation tokens, ``h: (n, H)`` →
    ``(n,)`` fp32 (no gradient). The ``(n, V)`` logits and log-probabilities go into buffers of
    ``block`` rows kept in ``buffers`` across blocks: a fresh 20 MB tensor per block costs page
    faults that made the old ``F.linear`` + ``F.cross_entropy`` block 14 % slower (``bench/README.md``)."""
    n, V = h.shape[0], weight.shape[0]
    key = (h.dtype, h.device)
    if key not in buffers:
        buffers[key] = (torch.empty(block, V, dtype=h.dtype, device=h.device),
                        torch.empty(block, V, dtype=torch.float32, device=h.device))
    logits_buf, logp_buf = buffers[key]
    if bias is None:
        logits = torch.mm(h, weight.t(), out=logits_buf[:n])                              # (n, V)
    else:
        logits = torch.addmm(bias, h, weight.t(), out=logits_buf[:n])
    logp = torch.log_softmax(logits, 1, dtype=torch.float32, out=logp_buf[:n])           # fp32
    return -logp.gather(1, targets.unsqueeze(1)).squeeze(1)


class TextVAE(nn.Module):
    """Encoder + posterior head + decoder, sized by ``config`` (``emb_dim``, ``hidden_dim``, ``nz``,
    dropouts, init), with the head the method asks for (see the module docstring).

    ``config.gamma`` is γ of a BN head, ``config.delta`` δ of the δ-VAE, ``config.kappa`` κ of
    the vMF posterior, ``config.duvae_dropout`` the σ² dropout of DU-VAE."""

    def __init__(self, config: TrainConfig, vocab_size: int, *, posterior: str = "gaussian",
                 bn: str | None = None, var_dropout: bool = False):
        super().__init__()
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
        if bn not in (None, "fixed", "learned"):
            raise ValueError(f"bn must be None, 'fixed' or 'learned', got {bn!r}")
        self.config = config
        self.nz = 0 if posterior == "none" else config.nz
        self.posterior_kind = posterior
        self.encoder = (Encoder(vocab_size, config.emb_dim, config.hidden_dim, config.nz,
                                n_stats=1 if posterior == "vmf" else 2) if self.nz else None)
        self.bn_head = (BNHead(config.nz, config.gamma, learn_gamma=bn == "learned")
                        if bn is not None and self.nz else None)
        #: DU-VAE: dropout probability on the posterior variance during training (0: none)
        self.var_dropout = float(config.duvae_dropout) if var_dropout else 0.0
        self.var_floor = DUVAE_VAR_FLOOR if var_dropout else 0.0
        self.posterior = VMFPosterior(config.kappa, config.nz) if posterior == "vmf" else GaussianPosterior()
        self.decoder = Decoder(vocab_size, config.emb_dim, config.hidden_dim, self.nz,
                               config.dropout_in, config.dropout_out)
        self.reset_parameters()

    def reset_parameters(self, prefix: str = "") -> None:
        """Uniform ±init_range for weights, ±init_emb_range for embeddings, per ``config.init_scheme``
        (:func:`init_uniform_`: ``'he'`` everything, ``'bnvae'`` all but the encoder).

        ``prefix``: only parameters whose name starts with it, e.g. ``"decoder."`` to reset the
        decoder after pre-training the encoder (Li et al. 2019)."""
        keep = "encoder." if getattr(self.config, "init_scheme", "he") == "bnvae" else None
        init_uniform_(self, self.config, bn_prefix="bn_head", prefix=prefix, keep_default=keep)

    # --- inference network -------------------------------------------------------------------
    def encode_raw(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's outputs before the posterior head (BN, δ constraint, …): ``μ`` (B, nz) and
        ``log σ²`` (B, nz; None for vMF). The encoder reads ``<s> x </s>`` (:func:`encoder_io`)."""
        return self.encoder(*encoder_io(tokens, lengths))

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``μ, log σ²``, each (B, nz); μ is batch-normalized for BN-VAE.

        * ``delta``: ``(μ, log σ²) = delta_vae_constrain(raw μ, raw log σ², δ)``, KL ≥ δ per dimension.
        * ``vmf``: μ is the unit direction of the encoder output; the second tensor is **not** a
          variance but the constant ``−log κ`` (so shapes stay uniform) — use ``model.posterior``.
        * ``duvae``: σ² → Dropout_p(σ²) during training (zeroed with probability p, else scaled by
          1/(1−p)), then ``log(σ² + 1/(2πe))`` always (DU-VAE, Shen et al. 2021)."""
        mu, logvar = self.encode_raw(tokens, lengths)
        if self.posterior_kind == "vmf":
            mu = mu / mu.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return mu, torch.full_like(mu, -math.log(self.posterior.kappa))
        if self.posterior_kind == "delta":
            mu, logvar = _dist.delta_vae_constrain(mu, logvar, self.config.delta)
        if self.bn_head is not None:
            mu = self.bn_head(mu)
        if self.var_floor > 0:
            var = logvar.exp()
            if self.training and self.var_dropout > 0:
                var = F.dropout(var, p=self.var_dropout, training=True)
            logvar = (var + self.var_floor).log()
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
        if torch.is_grad_enabled() or self.training:
            nll = self.decoder.target_nll(inputs, targets, z)
        else:
            nll = self._eval_nll(inputs, targets, z)
        return nll if k is None else nll.view(-1, k)

    def _eval_nll(self, inputs: torch.Tensor, targets: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Evaluation-only (no gradient, no dropout) −log p(x|z) per row ``(N,)``: the same sums
        as the cross-entropy path, computed faster for IW-NLL's many samples:

        * the decoder LSTM runs over at most :data:`EVAL_ROWS_PER_PASS` sequences at a time on
          CPU (larger passes spill the caches; all rows at once on CUDA), the rows sorted by
          length so that each pass stops at its own longest row (the LSTM is causal: trailing
          padding never changes the outputs at real positions);
        * the output layer runs only at real (non-padded) target positions, in blocks of
          :data:`EVAL_TOKENS_PER_BLOCK` whose ``(block, V)`` logits (and log-softmax, fp32)
          stay in cache: no ``(N, T, V)`` tensor is ever written to memory."""
        N, dev = inputs.shape[0], inputs.device
        on_cpu = dev.type == "cpu"
        rows = EVAL_ROWS_PER_PASS if on_cpu else N
        block = EVAL_TOKENS_PER_BLOCK if on_cpu else 16 * EVAL_TOKENS_PER_BLOCK
        weight, bias = self.decoder.out.weight, self.decoder.out.bias
        if torch.is_autocast_enabled(dev.type):       # the GEMM in autocast's dtype, softmax in fp32
            dtype = torch.get_autocast_dtype(dev.type)
            weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
        buffers = {}                                  # (block, V) logits and log-probs, reused
        nll = torch.empty(N, dtype=torch.float32, device=dev)
        steps = (targets != -100).sum(1)                                                # (N,) decoder steps
        order = torch.argsort(steps, descending=True, stable=True) if rows < N else None
        for s in range(0, N, rows):
            if order is None:
                pick, T = slice(None), targets.shape[1]
            else:
                pick = order[s:s + rows]
                T = int(steps[pick[0]])
            tgt = targets[pick, :T].t()                                                 # (T, r)
            hidden, _ = self.decoder.hidden_states(inputs[pick, :T], None if z is None else z[pick])
            # time-major: the LSTM's (r, T, H) batch-first output is a transposed view of its
            # (T, r, H) buffer, which flattens without a copy
            hidden = hidden.transpose(0, 1)                                             # (T, r, H)
            keep = (tgt != -100).reshape(-1)
            h = hidden.reshape(-1, hidden.shape[-1])[keep]                              # (n_tok, H)
            y = tgt.reshape(-1)[keep]
            tok = torch.empty(y.shape[0], dtype=torch.float32, device=dev)
            for u in range(0, y.shape[0], block):
                tok[u:u + block] = _block_nll(h[u:u + block], weight, bias, y[u:u + block], buffers, block)
            per_position = torch.zeros(tgt.numel(), dtype=torch.float32, device=dev)
            per_position[keep] = tok
            nll[pick] = per_position.view(tgt.shape).sum(0)
        return nll

    @torch.no_grad()
    def generate(self, z: torch.Tensor | None, max_len: int = 30, greedy: bool = True,
                 n: int | None = None, generator: torch.Generator | None = None) -> list[list[int]]:
        """Decode one sentence per row of ``z (N, nz)`` (or ``n`` sentences from the LM); ids without ``</s>``."""
        was_training = self.training
        self.eval()
        try:
            N = z.shape[0] if z is not None else n
            return self.decoder.decode(z, N, next(self.parameters()).device, max_len, greedy, generator)
        finally:
            self.train(was_training)
