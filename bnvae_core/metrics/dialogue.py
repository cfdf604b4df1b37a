"""Metrics of the conditional VAE (Zhu et al. 2020 §4.3; Zhao et al. 2017) on (context, response) pairs.

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
* Self-BLEU (:func:`self_bleu`, Zhu et al. 2018): how much N generated sentences repeat each
  other — each one's BLEU against the others (1: all the same).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.corpus import bucket_batches
from ..data.dialogue import DialogueSplit
from ..errors import ConfigError
from ..models.cvae import CVAE, kl_bound_moments, kl_bound_pointwise


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(split: DialogueSplit, batch_size: int):
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


def _nltk_bleu(method: int = 7):
    """(nltk's ``sentence_bleu``, its smoothing function ``method``), or a ConfigError saying how to get nltk."""
    try:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    except ImportError:
        raise ConfigError("BLEU needs nltk: pip install 'bnvae-core[dialogue]' (or: pip install nltk)") from None
    return sentence_bleu, getattr(SmoothingFunction(), f"method{method}")


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


@torch.no_grad()
def bn_bound_report(model: CVAE, split: DialogueSplit, batch_size: int = 32, n_batches: int = 20,
                    seed: int = 0) -> pd.DataFrame:
    """KL and its lower bounds on training-mode batches (BN with batch statistics) of ``split``.

    Columns per batch: ``kl`` (batch mean), ``bound_pointwise`` (L₁), ``bound_moments`` (L₂),
    ``bnvae_bound`` (½Σ(γ̃²+β²), BN-VAE's bound, which needs a N(0, I) prior) and ``nominal``
    (nγ²/2). Runs on a copy of the model, so its running statistics are untouched."""
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


def self_bleu(sentences: Sequence[Sequence], max_n: int = 3) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen) of N ≥ 2 token sequences: the mean over i of the
    sentence BLEU of sentence i against the other N − 1 as its references — high when the
    sentences repeat each other.

    As Texygen: nltk's ``sentence_bleu`` with smoothing method 1 and uniform weights over the
    1 … ``max_n``-grams, except that a sentence shorter than ``max_n`` tokens uses its own length
    as the largest n, so N copies of any non-empty sentence score exactly 1 (method 7, which
    :func:`bleu_precision_recall` uses after Zhao et al., can exceed 1 on an exact match). An empty
    sentence scores 0 and is no reference; fewer than 2 sentences give NaN. Tokens may be strings
    or ids. Needs nltk (:class:`~bnvae_core.errors.ConfigError` otherwise)."""
    if len(sentences) < 2:
        return float("nan")
    sentence_bleu, smoothing = _nltk_bleu(method=1)
    sents = [[str(t) for t in s] for s in sentences]
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, hyp in enumerate(sents):
            refs = [r for j, r in enumerate(sents) if j != i and r]
            order = min(max_n, len(hyp))
            scores.append(float(sentence_bleu(refs, hyp, weights=(1 / order,) * order, smoothing_function=smoothing))
                          if hyp and refs else 0.0)
    return float(np.mean(scores))
