"""What the latent code holds: posterior means as points, their projections and neighbours, and the
sentences a decoder makes of them (notebooks 1, 3 and 4).

* words: :func:`decode_words` (ids → text), :func:`greedy_decode` (codes ``z`` → sentences),
  :func:`reconstruct` (sentences → their posterior mean μ(x) → greedy decoding);
* before the BN layer: :func:`pre_bn_means`, the encoder's μ(x) that BN-VAE then normalizes;
* projections of μ: :func:`standardize`, :func:`pca_2d`, :func:`tsne_2d`;
* neighbours in μ: :func:`cosine_similarities`, :func:`nearest_neighbours`,
  :func:`neighbour_label_agreement`, :func:`chance_label_agreement`, :func:`neighbour_table`;
* clusters: :func:`silhouette_table`.

Everything takes numpy arrays (``mu: (N, nz)``, one row per sentence) or a model and an
:class:`~bnvae_core.data.corpus.EncodedSplit`; nothing here draws (see :mod:`bnvae_core.viz.plots`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.corpus import EncodedSplit, Vocab, iterate_batches
from ..metrics.text import posterior_params


def decode_words(vocab: Vocab, ids: Iterable[int]) -> str:
    """The sentence of token ``ids`` (seq,) as one space-separated string (stops at ``</s>``,
    skips ``<pad>``/``<s>``; :meth:`Vocab.decode`)."""
    return " ".join(vocab.decode(ids))


def greedy_decode(model, z: torch.Tensor, vocab: Vocab) -> list[str]:
    """One greedy decoding per code: ``z: (N, nz)`` → N sentences (text), via ``model.generate``."""
    return [decode_words(vocab, ids) for ids in model.generate(z, greedy=True)]


def reconstruct(model, split: EncodedSplit, vocab: Vocab) -> list[str]:
    """Greedy reconstructions of the N sentences of ``split``: each sentence is encoded to its
    posterior mean μ(x) (N, nz) (evaluation mode, :func:`posterior_params`) and decoded greedily.
    A decoder that ignores z returns (nearly) the same sentence for every input."""
    mu, _ = posterior_params(model, split)
    return greedy_decode(model, torch.from_numpy(mu), vocab)


def pre_bn_means(model, split: EncodedSplit, batch_size: int = 256) -> np.ndarray:
    """(N, nz) float32 encoder means μ(x) *before* the BN layer (``model.encoder``), in ``split``
    order; no gradients, the model's mode unchanged (the encoder has no dropout or BN)."""
    out = np.zeros((len(split), model.nz), np.float32)
    device = next(model.parameters()).device
    with torch.no_grad():
        for b in iterate_batches(split, batch_size):
            b = b.to(device)
            out[b.index.numpy()] = model.encode_raw(b.tokens, b.lengths)[0].cpu().numpy()
    return out


def standardize(mu: np.ndarray) -> np.ndarray:
    """(N, nz) → (N, nz): each dimension shifted to mean 0 and scaled to standard deviation 1
    over the N rows (a constant dimension stays 0), so that the *pattern* of μ counts, not its scale."""
    return (mu - mu.mean(0)) / (mu.std(0) + 1e-12)


def pca_2d(mu: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """(N, nz) → ((N, 2) coordinates on the two principal directions of μ (units of z, not
    standardized), fraction of the total variance of μ those two directions keep)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(mu)
    return pca.transform(mu), pca.explained_variance_ratio_.sum()


def tsne_2d(mu: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, nz) → (N, 2) t-SNE of the standardized μ (:func:`standardize`); perplexity
    ``min(30, max(2, (N − 1)/3))``, so tiny sets stay below t-SNE's limit N − 1; PCA initialisation."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(mu) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(standardize(mu))


def cosine_similarities(mu: np.ndarray) -> np.ndarray:
    """(N, nz) → (N, N) cosine similarity between the rows of μ, with −∞ on the diagonal (no
    sentence is its own neighbour). Zero rows count as similarity 0 to everything."""
    unit = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim


def nearest_neighbours(similarities: np.ndarray, k: int) -> np.ndarray:
    """(N, N) similarities → (N, k) indices of each row's k most similar rows, most similar first."""
    return np.argsort(-similarities, axis=1)[:, :k]


def neighbour_label_agreement(neighbours: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of (sentence, neighbour) pairs with the same label: ``neighbours (N, k)`` indices
    (:func:`nearest_neighbours`), ``labels (N,)`` integer classes."""
    labels = np.asarray(labels)
    return float((labels[neighbours] == labels[:, None]).mean())


def chance_label_agreement(labels: np.ndarray) -> float:
    """The agreement :func:`neighbour_label_agreement` reaches with random neighbours,
    ``Σ_c p_c²`` (p_c: share of class c among the N ``labels``, non-negative integers)."""
    labels = np.asarray(labels)
    share = np.bincount(labels) / len(labels)
    return float((share ** 2).sum())


def neighbour_table(similarities: Mapping[str, np.ndarray], texts: Sequence[str], label_names: Sequence[str],
                    queries: Sequence[int], n: int = 3) -> pd.DataFrame:
    """The ``n`` nearest neighbours of each query sentence under each model, side by side.

    ``similarities``: model name → (N, N) (:func:`cosine_similarities`); ``texts``, ``label_names``:
    the N sentences and their label names; ``queries``: row indices. Index ``(query, model, rank)``
    (the query shown as ``"[label] text"``); columns ``cosine, neighbour, its label``."""
    table = []
    for q in queries:
        for name, sim in similarities.items():
            for rank, j in enumerate(np.argsort(-sim[q])[:n], start=1):
                table.append({"query": f"[{label_names[q]}] {texts[q]}", "model": name, "rank": rank,
                              "cosine": sim[q, j], "neighbour": texts[j], "its label": label_names[j]})
    return pd.DataFrame(table).set_index(["query", "model", "rank"])


def silhouette_table(mus: Mapping[str, np.ndarray], labels: np.ndarray, planes: Mapping[str, np.ndarray],
                     seed: int = 0, plane_name: str = "t-SNE plane") -> pd.DataFrame:
    """Silhouette scores of the labels (−1 … 1; 0: no cluster structure), one row per model.

    ``mus``: model name → μ (N, nz); ``labels`` (N,); ``planes``: model name → (N, 2) 2-D view
    (e.g. :func:`tsne_2d`; its column is ``plane_name``). Columns: μ with cosine distance, standardized
    μ with Euclidean distance, the 2-D plane, and μ (cosine) with the labels shuffled (seeded) — the
    chance level."""
    from sklearn.metrics import silhouette_score

    shuffled = np.random.default_rng(seed).permutation(labels)
    rows = []
    for name, mu in mus.items():
        rows.append({"model": name,
                     "μ, cosine": silhouette_score(mu, labels, metric="cosine"),
                     "μ standardized, Euclidean": silhouette_score(standardize(mu), labels),
                     plane_name: silhouette_score(planes[name], labels),
                     "μ, cosine, shuffled labels": silhouette_score(mu, shuffled, metric="cosine")})
    return pd.DataFrame(rows).set_index("model")
