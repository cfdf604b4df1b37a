"""The straightforward training loop a user would write first: the yardstick for ``bnvae_core``.

Same model as :class:`bnvae_core.model.TextVAE` (LSTM encoder → Gaussian q(z|x) → LSTM decoder
with ``[emb; z]`` input and ``c₀ = W z``, dropout 0.5 in/out, SGD lr 1.0, clip 5), written the
plain way: ``nn.LSTM`` on padded tensors, logits for every position, ``F.cross_entropy``,
``.item()`` of the loss every step (as a progress print would). Batches hold sentences of one
length only (the easiest case for a padded loop: no padding at all).

It is *not* part of the library and shares no code with it on purpose.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PlainVAE(nn.Module):
    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int, dropout: float = 0.5):
        super().__init__()
        self.enc_embed = nn.Embedding(vocab_size, emb_dim)
        self.enc_lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.to_params = nn.Linear(hidden_dim, 2 * nz, bias=False)
        self.dec_embed = nn.Embedding(vocab_size, emb_dim)
        self.dec_lstm = nn.LSTM(emb_dim + nz, hidden_dim, batch_first=True)
        self.z_to_c = nn.Linear(nz, hidden_dim, bias=False)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.drop = nn.Dropout(dropout)
        for p in self.parameters():
            nn.init.uniform_(p, -0.01, 0.01)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        """``words (B, L)`` sentences of one length → mean over the batch of −ELBO (one sample)."""
        B = words.shape[0]
        _, (h, _) = self.enc_lstm(self.enc_embed(words))
        mu, logvar = self.to_params(h[-1]).chunk(2, -1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        inputs = torch.cat([words.new_ones(B, 1), words], 1)               # <s> w1 .. wL
        targets = torch.cat([words, words.new_full((B, 1), 2)], 1)          # w1 .. wL </s>
        emb = self.drop(self.dec_embed(inputs))
        emb = torch.cat([emb, z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], -1)
        c0 = self.z_to_c(z).unsqueeze(0)
        out, _ = self.dec_lstm(emb, (torch.tanh(c0), c0))
        logits = self.out(self.drop(out))
        rec = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              reduction="none").view(B, -1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
        return (rec + kl).mean()


def same_length_batches(lengths: np.ndarray, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Full batches of sentence indices of exactly one length each, in a seeded random order."""
    rng = np.random.default_rng(seed)
    batches = []
    for L in np.unique(lengths):
        idx = rng.permutation(np.flatnonzero(lengths == L))
        batches += [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class BaselineBench:
    """The plain loop on the sentences of an :class:`bnvae_core.data.EncodedSplit`."""

    def __init__(self, split, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int, batch_size: int,
                 seed: int = 0):
        torch.manual_seed(seed)
        self.split = split
        self.model = PlainVAE(vocab_size, emb_dim, hidden_dim, nz).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1.0)
        self.batches = same_length_batches(split.lengths, batch_size, seed)
        self._i = 0

    def next_index(self) -> np.ndarray:
        index = self.batches[self._i % len(self.batches)]
        self._i += 1
        return index

    def time_step(self, index: np.ndarray) -> tuple[float, int]:
        """(seconds, target tokens) of one step on the sentences ``index`` (all of one length)."""
        t0 = time.perf_counter()
        words = torch.from_numpy(np.stack([self.split.sentence(int(i)) for i in index]).astype(np.int64))
        loss = self.model(words)
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        loss.item()
        return time.perf_counter() - t0, words.numel() + len(index)


def bench_baseline(split, vocab_size: int, emb_dim: int, hidden_dim: int, nz: int, batch_size: int = 32,
                   steps: int = 100, warmup_steps: int = 10, seed: int = 0) -> dict:
    bb = BaselineBench(split, vocab_size, emb_dim, hidden_dim, nz, batch_size, seed)
    for _ in range(warmup_steps):
        bb.time_step(bb.next_index())
    times, tokens = [], 0
    for _ in range(steps):
        dt, n = bb.time_step(bb.next_index())
        times.append(dt)
        tokens += n
    return {"train_tokens_per_s": tokens / sum(times),
            "train_step_ms_median": 1e3 * statistics.median(times)}
