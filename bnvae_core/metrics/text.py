"""Metrics of text VAEs, with the definitions the field uses (He et al. 2019, Zhu et al. 2020 §5).

All functions put the model in evaluation mode (dropout off; BN-VAE's BN uses its *running*
statistics, so the training-batch KL bound holds only approximately here) and run under
``torch.inference_mode``. ``split`` is a :class:`bnvae_core.data.corpus.EncodedSplit`.

* **ELBO** = E_q[log p(x|z)] − KL(q(z|x)‖p(z)), one sample of z per sentence; ``rec`` is
  −E_q[log p(x|z)], ``kl`` the analytic KL, both averaged over sentences (nats per sentence).
* **IW-NLL** (Burda et al. 2016): −log p(x) ≈ −log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),
  z_k ~ q(z|x). It is ≤ −ELBO in expectation and tightens as K grows; the reported numbers use
  K = 500. Samples are drawn in chunks of ``chunk`` so memory stays bounded.
* **PPL** = exp(Σ_x NLL(x) / Σ_x (|x| + 1)): words plus one ``</s>`` per sentence.
* **MI** I(x; z) under q (Hoffman & Johnson 2016; He et al. 2019 eq. 5):
  I = E_x E_{q(z|x)}[log q(z|x) − log q(z)], with the aggregate posterior
  q(z) ≈ (1/N) Σ_{x'} q(z|x') over the **whole dataset** of N sentences. With the sampled
  log q(z_i|x_i) in the first term the estimate is ≤ log N exactly. (The per-batch estimate of
  He et al.'s code uses the B sentences of a batch for q(z), which caps it at log B.)
* **Active units** (Burda et al. 2016): dimensions j with Cov_x(E_{q(z|x)}[z_j]) > 0.01.

Every method's posterior goes through ``model.posterior`` (:mod:`bnvae_core.models.text_vae`), so the
same code serves them all; how each NLL is computed:

* Gaussian posteriors (``vae``, ``bnvae``, ``beta``, ``cyclical``, ``fb``, ``fb-dim``,
  ``aggressive``, ``pretrain-fb``, ``delta``, ``duvae``): IW-NLL with proposal q = N(μ, σ²) (for
  ``delta`` the δ-constrained μ, σ; for ``duvae`` σ² + 1/(2πe), no dropout at evaluation) and
  prior N(0, I).
* ``vmf``: IW-NLL with the vMF proposal vMF(μ, κ) (Wood's sampler) and the uniform prior on
  S^{n−1}; the KL is the constant KL(vMF(κ) ‖ uniform); per-dimension KL is NaN; active units
  use E_q[z] = A_n(κ) μ.
* ``lm`` (no latent, ``nz = 0``): the exact NLL −log p(x) = Σ_t −log p(w_t | w_<t), for any K;
  KL = MI = AU = 0.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from ..data.corpus import EncodedSplit, bucket_batches, iterate_batches, make_batch
from ..devices import autocast_context
from ..models.distributions import gaussian_kl_per_dim
from ..models.text_vae import TextVAE


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Evaluation mode + ``torch.inference_mode`` (+ bf16 autocast when ``model.config.precision == 'bf16'``)."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast_context(getattr(model, "config", None), _device(model)):
            yield
    finally:
        model.train(was)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def posterior_params(model: TextVAE, split: EncodedSplit, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """μ and log σ² of every sentence in ``split`` order: two (N, nz) float arrays ((N, 0) for ``lm``).
    For ``vmf`` μ is the unit mean direction and the second array is ``−log κ`` (see ``TextVAE.encode``)."""
    N, nz = len(split), model.nz
    mu, logvar = np.zeros((N, nz), np.float32), np.zeros((N, nz), np.float32)
    if nz == 0:
        return mu, logvar
    dev = _device(model)
    with eval_mode(model):
        for b in iterate_batches(split, batch_size):
            m, lv = model.encode(b.tokens.to(dev), b.lengths.to(dev))
            mu[b.index.numpy()] = m.float().cpu().numpy()
            logvar[b.index.numpy()] = lv.float().cpu().numpy()
    return mu, logvar


def elbo(model: TextVAE, split: EncodedSplit, batch_size: int = 128, seed: int = 0) -> dict:
    """Mean ``rec``, ``kl``, ``elbo`` (= −rec − kl), ``loss`` (= rec + kl) per sentence, and the sizes."""
    gen = torch.Generator().manual_seed(seed)
    dev = _device(model)
    rec_sum = kl_sum = 0.0
    with eval_mode(model):
        for b in iterate_batches(split, batch_size):
            tokens, lengths = b.tokens.to(dev), b.lengths.to(dev)
            if model.nz == 0:
                rec = model.reconstruction_nll(tokens, lengths, None)
                kl = torch.zeros_like(rec)
            else:
                mu, logvar = model.encode(tokens, lengths)
                z = model.posterior.sample(mu, logvar, generator=gen)
                rec = model.reconstruction_nll(tokens, lengths, z)
                kl = model.posterior.kl(mu, logvar)
            rec_sum += float(rec.sum())
            kl_sum += float(kl.sum())
    n = len(split)
    return {"rec": rec_sum / n, "kl": kl_sum / n, "elbo": -(rec_sum + kl_sum) / n,
            "loss": (rec_sum + kl_sum) / n, "n_sentences": n, "n_tokens": split.n_tokens}


def kl_per_example(model: TextVAE, split: EncodedSplit, batch_size: int = 256) -> pd.DataFrame:
    """Analytic KL of every sentence: columns ``sentence, length, label, kl`` and ``kl_0 … kl_{nz−1}``
    (per-dimension KL, nats; NaN for ``vmf``, whose constant KL does not split over dimensions;
    no ``kl_j`` columns and ``kl`` = 0 for ``lm``)."""
    mu, logvar = posterior_params(model, split, batch_size)
    mu_t, lv_t = torch.from_numpy(mu).double(), torch.from_numpy(logvar).double()
    per_dim = model.posterior.kl_per_dim(mu_t, lv_t).numpy() if model.nz else np.zeros((len(split), 0))
    total = model.posterior.kl(mu_t, lv_t).numpy() if model.nz else np.zeros(len(split))
    df = pd.DataFrame(per_dim, columns=[f"kl_{j}" for j in range(per_dim.shape[1])])
    df.insert(0, "kl", total)
    df.insert(0, "label", split.labels)
    df.insert(0, "length", split.lengths)
    df.insert(0, "sentence", np.arange(len(split)))
    return df


def train_mode_batch_kl(model: TextVAE, split: EncodedSplit, batch_size: int = 32, seed: int = 0) -> pd.DataFrame:
    """BN-VAE's KL on training-style batches, with BN using each batch's *own* statistics.

    This is where the bound of Zhu et al. (2020, §3.2) holds: per batch B, since
    KL ≥ ½‖μ̂‖² per sentence and mean_B μ̂_j² = γ² s_j²/(s_j²+ε) + β_j² exactly,
    ``kl ≥ bound = ½ Σ_j (γ² s_j²/(s_j²+ε) + β_j²)``, and ``bound ≈ n γ²/2 + ½Σβ²`` once
    ``shrink`` = mean_j s_j²/(s_j²+ε) ≈ 1 (s_j²: biased batch variance of the pre-BN μ_j).
    Batches are the length-bucketed ones of training (:func:`data.bucket_batches`, seeded).

    One row per batch: ``batch, size, kl`` (mean per-sentence KL, nats), ``bound``,
    ``nominal`` (n γ²/2), ``shrink``. The model is untouched: a copy runs in train mode
    (the running statistics of ``model`` do not move), without gradients."""
    import copy

    if getattr(model, "bn_head", None) is None:
        raise ValueError("train_mode_batch_kl: the model has no BN head (not a BN-VAE)")
    probe = copy.deepcopy(model).train()
    head, dev, rows = probe.bn_head, _device(model), []
    with torch.no_grad():
        for i, index in enumerate(bucket_batches(split, batch_size, shuffle=True, seed=seed,
                                                 drop_singletons=True)):
            b = make_batch(split, index).to(dev)
            s2 = probe.encode_raw(b.tokens, b.lengths)[0].var(0, unbiased=False)
            mu, logvar = probe.encode(b.tokens, b.lengths)
            rows.append({"batch": i, "size": len(b), "kl": float(gaussian_kl_per_dim(mu, logvar).sum(-1).mean()),
                         "bound": float(head.last_kl_bound) if len(b) > 1 else float("nan"),
                         "nominal": 0.5 * model.nz * head.gamma ** 2,
                         "shrink": float((s2 / (s2 + head.bn.eps)).mean())})
    return pd.DataFrame(rows)


def active_units(model: TextVAE, split: EncodedSplit, threshold: float = 0.01,
                 batch_size: int = 256) -> tuple[int, np.ndarray]:
    """(number of active units, (nz,) variance over the data of E_q[z_j|x] (= μ_j(x); A_n(κ) μ_j(x) for vMF))."""
    if model.nz == 0:
        return 0, np.zeros(0)
    mu, logvar = posterior_params(model, split, batch_size)
    mu = model.posterior.mean(torch.from_numpy(mu).double(), torch.from_numpy(logvar).double()).numpy()
    var = mu.astype(np.float64).var(axis=0, ddof=1 if len(mu) > 1 else 0)
    return int((var > threshold).sum()), var


def mutual_information(model: TextVAE, split: EncodedSplit, n_samples: int = 1, seed: int = 0,
                       chunk: int = 512, batch_size: int = 256) -> float:
    """I(x; z) with the whole-dataset aggregate posterior (see module docstring); ≤ log N.

    Cost O(n_samples · N² · nz): for each sampled z_i, log q(z_i|x_j) against all N sentences."""
    if model.nz == 0:
        return 0.0
    mu_np, lv_np = posterior_params(model, split, batch_size)
    mu, logvar = torch.from_numpy(mu_np).double(), torch.from_numpy(lv_np).double()
    N = mu.shape[0]
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    post = model.posterior
    for _ in range(n_samples):
        z = post.sample(mu, logvar, generator=gen)                              # (N, nz)
        log_q_own = post.log_density(z, mu, logvar)                             # (N,)
        log_agg = torch.empty(N, dtype=mu.dtype)
        for s in range(0, N, chunk):
            zc = z[s:s + chunk].unsqueeze(1)                                    # (c, 1, nz)
            log_agg[s:s + chunk] = torch.logsumexp(post.log_density(zc, mu.unsqueeze(0), logvar.unsqueeze(0)), 1)
        total += float((log_q_own - (log_agg - math.log(N))).mean())
    return total / n_samples


def iw_nll(model: TextVAE, split: EncodedSplit, k: int = 500, chunk: int = 100, batch_size: int = 16,
           seed: int = 0, progress: bool = False) -> np.ndarray:
    """Per-sentence importance-weighted NLL (nats), shape (N,), in ``split`` order.

    −log p(x) ≈ −[logsumexp_k (log p(x|z_k) + log p(z_k) − log q(z_k|x)) − log K]. For the
    LSTM-LM (no latent) it is the exact NLL. All ``chunk`` samples of a batch go through the
    decoder in one pass. Proposal q and prior p are ``model.posterior``'s (module docstring).
    Seeded with ``seed`` on a forked RNG: the caller's random state is left as it was."""
    dev = _device(model)
    batches = list(iterate_batches(split, batch_size))
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"IW-NLL (K={k})", unit="batch")
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), eval_mode(model):
        torch.manual_seed(seed)
        return _iw_nll_batches(model, batches, len(split), k, chunk, dev)


def _iw_nll_batches(model: TextVAE, batches, n: int, k: int, chunk: int, dev: torch.device) -> np.ndarray:
    out = np.zeros(n, np.float64)
    for b in batches:
        tokens, lengths = b.tokens.to(dev), b.lengths.to(dev)
        if model.nz == 0:
            out[b.index.numpy()] = model.reconstruction_nll(tokens, lengths, None).double().cpu().numpy()
            continue
        mu, logvar = model.encode(tokens, lengths)
        post = model.posterior
        log_w = []
        for s in range(0, k, chunk):
            z = post.sample(mu, logvar, min(chunk, k - s))                          # (B, c, nz)
            log_px_z = -model.reconstruction_nll(tokens, lengths, z)                # (B, c)
            log_pz = post.prior_log_density(z)
            log_qz = post.log_density(z, mu.unsqueeze(1), logvar.unsqueeze(1))
            log_w.append((log_px_z + log_pz - log_qz).double())
        log_w = torch.cat(log_w, 1)
        out[b.index.numpy()] = (-(torch.logsumexp(log_w, 1) - math.log(k))).cpu().numpy()
    return out


def exp_or_inf(x: float) -> float:
    """exp(x), but inf instead of an OverflowError (a diverging run's perplexity)."""
    return math.exp(x) if x < 709.0 else math.inf


def perplexity(nll_per_sentence: np.ndarray, split: EncodedSplit) -> float:
    """exp(Σ NLL / Σ (tokens + 1)): the ``</s>`` of every sentence counts as a predicted token."""
    return float(math.exp(nll_per_sentence.sum() / split.n_tokens))


def evaluate(model: TextVAE, split: EncodedSplit, iw_samples: int = 500, seed: int = 0,
             progress: bool = False, mi_samples: int = 1) -> dict:
    """Everything the paper's tables report, on one split: ``nll, ppl, kl, mi, au, elbo, rec`` and sizes."""
    res = elbo(model, split, seed=seed)
    nll = iw_nll(model, split, k=iw_samples, seed=seed, progress=progress)
    au, _ = active_units(model, split)
    return {"nll": float(nll.mean()), "ppl": perplexity(nll, split), "kl": res["kl"],
            "mi": mutual_information(model, split, n_samples=mi_samples, seed=seed), "au": au,
            "elbo": res["elbo"], "rec": res["rec"], "n_sentences": len(split),
            "n_tokens": split.n_tokens, "iw_samples": iw_samples}
