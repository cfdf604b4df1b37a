"""The layers of the text VAE, read top to bottom.

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
   Its training path fuses the output layer and the cross-entropy (:func:`linear_cross_entropy`).
4. :func:`init_uniform_` — the reference codes' initialisation schemes.

Shapes: ``tokens: (batch, seq)`` word ids without ``<s>``/``</s>``, padded with 0;
``lengths: (batch,)``; ``z: (batch, nz)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig


class Encoder(nn.Module):
    """LSTM encoder: ``tokens (B, T)`` → ``μ (B, nz), log σ² (B, nz)``.

    ``n_stats = 1`` (the vMF posterior, whose concentration is fixed) outputs only μ and
    returns ``None`` for log σ²."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int, n_stats: int = 2):
        super().__init__()
        self.n_stats = n_stats
        self.embed = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.to_params = nn.Linear(hidden_dim, n_stats * nz, bias=False)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(self.embed(tokens))                       # (B, T, H)
        # unidirectional LSTM: the output at position len−1 is the final state of each
        # sentence; padding after it never influences it (no packing needed)
        last = out[torch.arange(len(tokens), device=tokens.device), (lengths - 1).clamp(min=0)]
        # .float(): under bf16 autocast the posterior (KL, BN) stays fp32; a no-op in fp32
        if self.n_stats == 1:
            return self.to_params(last).float(), None
        mu, logvar = self.to_params(last).float().chunk(2, dim=-1)
        return mu, logvar


def nominal_kl_bound(gammas, nz: int):
    """BN-VAE's lower bound on the expected KL of a training batch, ``n γ²/2`` nats (Zhu et al. 2020
    §3.2; exactly ½Σ_j(γ² s_j²/(s_j²+ε) + β_j²) ≥ that up to the s²/(s²+ε) factor): a float array
    shaped like ``gammas``."""
    return 0.5 * nz * np.asarray(gammas, dtype=float) ** 2


class BNHead(nn.Module):
    """Batch normalization of μ with fixed scale γ and learned shift β (BN-VAE, Zhu et al. 2020 §3.2).

    ``BatchNorm1d(nz, eps=1e-5, momentum=0.1)``: its weight is filled with γ and frozen
    (``requires_grad=False``), its bias β starts at 0 and is learned.

    A training batch of one sentence has no batch variance: it is normalized with the
    running statistics instead (as at evaluation), deliberately, so a stray singleton never
    crashes a run; the training batcher avoids singletons in the first place.

    ``learn_gamma=True`` (the ``duvae`` method, after DU-VAE, Shen et al. 2021): the scales
    are learned per dimension but *renormalized* to root-mean-square γ at every forward,
    ``γ_j = γ · v_j / √(mean_k v_k²)`` with ``v`` the learned weight (differentiably, where
    the DU-VAE code rescales the weight in place), so ``Σ_j γ_j² = n γ²`` and the same
    ``n γ²/2`` bound holds while the KL can be spread unevenly over the dimensions."""

    def __init__(self, nz: int, gamma: float, eps: float = 1e-5, momentum: float = 0.1,
                 learn_gamma: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm1d(nz, eps=eps, momentum=momentum)
        self.learn_gamma = learn_gamma
        self.bn.weight.requires_grad_(learn_gamma)
        self.set_gamma(gamma)

    @property
    def gamma(self) -> float:
        """γ, the (root-mean-square) scale: ``½ Σ_j γ_j² = n γ²/2``."""
        if self.learn_gamma:
            return self.target_gamma
        return float(self.bn.weight[0])

    def set_gamma(self, gamma: float) -> None:
        self.target_gamma = float(gamma)
        with torch.no_grad():
            self.bn.weight.fill_(gamma)

    def weight(self) -> torch.Tensor:
        """The scales γ_j actually applied, (nz,): the fixed γ, or the renormalized learned ones."""
        w = self.bn.weight
        if not self.learn_gamma:
            return w
        return w * (self.target_gamma / w.pow(2).mean().sqrt().clamp_min(1e-12))

    @property
    def beta(self) -> torch.Tensor:
        return self.bn.bias

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if self.training and mu.shape[0] == 1:
            return F.batch_norm(mu, bn.running_mean, bn.running_var, self.weight(), bn.bias, False, 0.0, bn.eps)
        if self.training:
            #: exact ½ Σ_j mean_B μ̂_j² of this training batch, ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²),
            #: with s² the biased batch variance of the pre-BN μ: the batch's KL is at least this
            self.last_kl_bound = self.kl_lower_bound(mu.detach().var(0, unbiased=False))
        if not self.learn_gamma:
            return bn(mu)
        if self.training:
            bn.num_batches_tracked.add_(1)
        return F.batch_norm(mu, bn.running_mean, bn.running_var, self.weight(), bn.bias,
                            self.training, bn.momentum, bn.eps)

    def kl_lower_bound(self, batch_var: torch.Tensor | None = None) -> torch.Tensor:
        """½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²): the exact mean of ½‖μ̂‖² over a training batch whose
        per-dimension (biased) variance of μ is ``batch_var`` (nz,); ``None`` gives ½ Σ_j (γ² + β_j²)."""
        w, b = self.weight().detach(), self.bn.bias.detach()
        shrink = 1.0 if batch_var is None else batch_var / (batch_var + self.bn.eps)
        return 0.5 * (w ** 2 * shrink + b ** 2).sum()


class RandDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` (zero each element with probability ``p``, scale the rest by
    ``1/(1−p)``) whose mask on the CPU comes from ``torch.rand(…) ≥ p``: the same distribution,
    drawn about 4× faster than the ``bernoulli_`` kernel ``F.dropout`` uses there (measured at the
    decoder's sizes: 0.6 vs 2.2 ms for a 352 × 512 tensor; ``bench/README.md``). Other devices
    use ``F.dropout``. No parameters, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p >= 1:
            return F.dropout(x, self.p, training=True)
        mask = torch.rand(x.shape, device=x.device).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * mask.to(x.dtype)


#: below this target probability :class:`_LinearCrossEntropy` takes the NLL from a log-softmax
#: of that row instead of ``−log p`` (fp32 ``p`` loses precision in the subnormal range)
_TINY_PROB = 1e-30


def _nll_from_softmax(logits: torch.Tensor, probs: torch.Tensor, targets: torch.Tensor,
                      host_sync: bool) -> torch.Tensor:
    """``−log probs[r, targets_r]`` per row, where ``probs = softmax(logits)`` (both ``(N, V)``).

    ``host_sync=True`` (CPU): ``−log p`` read off ``probs``, and a log-softmax of only the rows
    whose ``p < 1e-30`` (one host check). ``False`` (GPU): a log-softmax of every row, which
    costs one more pass but no synchronisation."""
    if not host_sync:
        return -torch.log_softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    p_target = probs[torch.arange(targets.shape[0], device=targets.device), targets]
    nll = -p_target.log()
    tiny = p_target < _TINY_PROB
    if bool(tiny.any()):
        nll[tiny] = -torch.log_softmax(logits[tiny], dim=1).gather(1, targets[tiny].unsqueeze(1)).squeeze(1)
    return nll


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row ``−log softmax(h Wᵀ + b)[y]`` (0 where ``y = −100``) with its softmax gradient
    formed in the forward pass.

    ``∂nll_r/∂logits_r = softmax_r − onehot(y_r)``: the forward computes the softmax ``P`` once,
    reads ``nll = −log P[y]`` off it (:func:`_nll_from_softmax`) and turns it into that matrix
    in place, so no ``(N, V)`` log-probabilities, one-hot gradient or log-softmax backward pass
    are ever written (they were 4 % of a training step). The backward scales rows by the
    incoming gradient (zero for ignored rows) and runs the two GEMMs ``∂h = (P − Y) W`` and
    ``∂W = (P − Y)ᵀ h``. Under autocast the GEMMs run in its dtype and the softmax in fp32, as
    with ``F.linear`` + ``F.cross_entropy``."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets):
        logits = F.linear(hidden, weight, bias)                                # (N, V), autocast dtype
        compute_dtype = logits.dtype
        logits = logits.float()
        grad_logits = torch.softmax(logits, dim=1)                             # P, fp32
        valid = targets != -100
        rows = torch.arange(targets.shape[0], device=targets.device)
        safe = targets.clamp(min=0)
        nll = _nll_from_softmax(logits, grad_logits, safe, host_sync=logits.device.type == "cpu")
        del logits
        nll.masked_fill_(~valid, 0.0)
        grad_logits[rows, safe] -= 1.0                                         # P − onehot(y)
        ctx.save_for_backward(hidden, weight, grad_logits.to(compute_dtype), valid)
        return nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_nll):
        hidden, weight, grad_logits, valid = ctx.saved_tensors
        dtype = grad_logits.dtype
        scale = (grad_nll * valid).to(dtype).unsqueeze(1)                       # (N, 1)
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_logits @ weight.to(dtype)).mul_(scale).to(hidden.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_logits.t() @ (hidden.to(dtype) * scale)).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = (grad_logits.t() @ scale).squeeze(1).float()
        return grad_hidden, grad_weight, grad_bias, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), targets, ignore_index=-100,
    reduction='none')`` in fp32, computed by :class:`_LinearCrossEntropy`.

    ``hidden: (N, H)``, ``weight: (V, H)``, ``bias: (V,)``, ``targets: (N,)`` → ``(N,)``."""
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets)


class Decoder(nn.Module):
    """LSTM decoder p(x|z): input ``[emb(w_{t−1}); z]`` at every step, ``c₀ = W z``, ``h₀ = tanh(c₀)``.

    With ``nz = 0`` the same module is the LSTM language model baseline (zero initial state)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int,
                 dropout_in: float = 0.5, dropout_out: float = 0.5):
        super().__init__()
        self.nz = nz
        self.embed = nn.Embedding(vocab_size, emb_dim)
        self.dropout_in = RandDropout(dropout_in)
        self.dropout_out = RandDropout(dropout_out)
        self.lstm = nn.LSTM(emb_dim + nz, hidden_dim, batch_first=True)
        self.z_to_state = nn.Linear(nz, hidden_dim, bias=False) if nz > 0 else None
        # no bias, as the reference code's ``pred_linear`` (bn-vae / He et al. ``dec_lstm.py``)
        self.out = nn.Linear(hidden_dim, vocab_size, bias=False)

    def initial_state(self, z: torch.Tensor | None, batch: int):
        if z is None or self.z_to_state is None:
            return None
        c0 = self.z_to_state(z).unsqueeze(0)                         # (1, N, H)
        return torch.tanh(c0), c0

    def hidden_states(self, inputs: torch.Tensor, z: torch.Tensor | None,
                      state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``inputs (N, T)`` ids starting with ``<s>``; ``z (N, nz)`` → the inputs of the output
        layer ``(N, T, H)`` (LSTM outputs after ``dropout_out``), state. One fused ``nn.LSTM``
        call over all T steps; z is concatenated to the embeddings once per batch."""
        emb = self.dropout_in(self.embed(inputs))                    # (N, T, E)
        if self.nz > 0:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], dim=-1)
        if state is None:
            state = self.initial_state(z, inputs.shape[0])
        out, state = self.lstm(emb, state)
        return self.dropout_out(out), state

    def forward(self, inputs: torch.Tensor, z: torch.Tensor | None,
                state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``inputs (N, T)`` ids starting with ``<s>``; ``z (N, nz)`` → logits ``(N, T, V)``, state."""
        hidden, state = self.hidden_states(inputs, z, state)
        return self.out(hidden), state

    def target_nll(self, inputs: torch.Tensor, targets: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """``−log p(targets | inputs, z)`` per row, summed over positions: ``inputs, targets (N, T)``
        (targets −100 at padding) → ``(N,)`` fp32. The training path: differentiable, with
        dropout in training mode; the output layer and softmax are :func:`linear_cross_entropy`."""
        hidden, _ = self.hidden_states(inputs, z)
        nll = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), self.out.weight, self.out.bias,
                                   targets.reshape(-1))
        return nll.view(targets.shape).sum(1)

    def decode(self, cond: torch.Tensor | None, n: int, device: torch.device | str, max_len: int = 30,
               greedy: bool = True, generator: torch.Generator | None = None) -> list[list[int]]:
        """Left-to-right decoding of ``n`` sentences from ``<s>``, each conditioned on its row of
        ``cond (n, nz)`` (``None`` for the LM): greedy (argmax) or ancestral sampling (on the CPU,
        so a CPU ``generator`` works whatever the device). Stops when every row has produced
        ``</s>`` or after ``max_len`` words; returns the ids before ``</s>``. Call in eval mode."""
        word = torch.full((n, 1), 1, dtype=torch.long, device=device)
        state, done, out = None, torch.zeros(n, dtype=torch.bool, device=device), []
        for _ in range(max_len):
            logits, state = self(word, cond, state)
            if greedy:
                word = logits[:, -1].argmax(-1, keepdim=True)
            else:
                probs = logits[:, -1].float().softmax(-1)
                word = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
            out.append(word.squeeze(1))
            done |= word.squeeze(1) == 2
            if done.all():
                break
        seqs = torch.stack(out, 1).tolist() if out else [[] for _ in range(n)]
        return [s[: s.index(2)] if 2 in s else s for s in seqs]


def encoder_io(tokens: torch.Tensor, lengths: torch.Tensor, bos: int = 1, eos: int = 2):
    """What the encoder reads, ``<s> w₁…w_T </s>`` (padding 0 after), (B, T+2), and the lengths + 2
    — as the reference codes' encoders, which read the whole ``<s> … </s>`` tensor."""
    B = tokens.shape[0]
    out = torch.cat([tokens.new_full((B, 1), bos), tokens, tokens.new_zeros((B, 1))], dim=1)
    out[torch.arange(B, device=tokens.device), lengths + 1] = eos
    return out, lengths + 2


def decoder_io(tokens: torch.Tensor, lengths: torch.Tensor, bos: int = 1, eos: int = 2):
    """Decoder inputs ``<s> w₁…w_T`` and targets ``w₁…w_T </s>`` (padding → −100), each (B, T+1)."""
    B = tokens.shape[0]
    inputs = torch.cat([tokens.new_full((B, 1), bos), tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_zeros((B, 1))], dim=1)
    targets[torch.arange(B, device=tokens.device), lengths] = eos
    positions = torch.arange(targets.shape[1], device=tokens.device)
    targets = targets.masked_fill(positions.unsqueeze(0) > lengths.unsqueeze(1), -100)
    return inputs, targets


def init_uniform_(module: nn.Module, config: TrainConfig, bn_prefix: str, prefix: str = "",
                  keep_default: str | None = None) -> None:
    """The reference codes' initialisation, in place: uniform ±``config.init_range`` for weights,
    ±``config.init_emb_range`` for embeddings, and the BN shift β (parameters under ``bn_prefix``)
    set to 0; the fixed γ and frozen parameters are left alone. Only names starting with ``prefix``;
    names starting with ``keep_default`` keep the default initialisation they were built with.

    Two schemes (``config.init_scheme``, applied by :meth:`TextVAE.reset_parameters`):

    * ``'he'`` — He et al. 2019 (jxhe/vae-lagging-encoder ``modules/encoders/enc_lstm.py`` and
      ``dec_lstm.py``, ``reset_parameters``): every parameter U(±0.01), embeddings U(±0.1).
    * ``'bnvae'`` — the BN-VAE code (valdersoul/bn-vae ``modules/encoders/enc_lstm.py``,
      ``GaussianLSTMEncoder.reset_parameters``), where that loop is commented out for the encoder:
      the encoder keeps PyTorch's defaults (LSTM U(±1/√H), Linear Kaiming-uniform, embedding
      N(0, 1)); the decoder is initialised as He et al.'s. With ±0.01 the pre-BN variance of μ
      starts near 1e-8 ≪ ε, so BN shrinks μ̂ (the factor s²/(s²+ε)) until the encoder grows."""
    r, r_emb = config.init_range, config.init_emb_range
    for name, p in module.named_parameters():
        if not p.requires_grad or not name.startswith(prefix):
            continue
        if name.startswith(bn_prefix):
            if name.endswith("bias"):
                nn.init.zeros_(p)
        elif keep_default is not None and name.startswith(keep_default):
            continue
        elif "embed" in name:
            nn.init.uniform_(p, -r_emb, r_emb)
        else:
            nn.init.uniform_(p, -r, r)
