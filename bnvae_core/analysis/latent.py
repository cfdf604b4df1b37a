"""What the latent code holds: posterior means as points, their projections and neighbours, and the
sentences a decoder makes of them (notebooks 1, 3 and 4).

* words: :func:`decode_words` (ids → text), :func:`greedy_decode` (codes ``z`` → sentences),
  :func:`reconstruct` (sentences → their posterior mean μ(x) → greedy decoding);
* before the BN layer: :func:`pre_bn_means`, the encoder's μ(x) that BN-VAE then normalizes;
* projections of μ: :func:`standardize`, :func:`pca_2d`, :func:`tsne_2d`;
* neighbours in μ: :func:`cosine_similarities`, :func:`nearest_neighbours`,
  :func:`neighbour_label_agreement`, :func:`chance_label_agreement`, :func:`neighbour_table`;
* clusters: :func:`silhouette_table`;
* tables for notebook 4's CSVs: :func:`latent_points_table` (the points of its figure),
  :func:`latent_summary` (every number its prose quotes, one row per model).

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


def latent_points_table(pca: Mapping[str, np.ndarray], tsne: Mapping[str, np.ndarray], labels: Sequence[str],
                        explained: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The points of :func:`bnvae_core.viz.plots.latent_views` as one tidy table (its CSV): one row per
    (model, sentence), columns ``model, sentence`` (row index into the N sentences), ``label``,
    ``pc1, pc2`` (units of z), ``tsne1, tsne2`` (no units) and, with ``explained``, ``pca_explained``
    (the fraction of μ's variance the two PCs keep, the same on every row of a model).

    ``pca``, ``tsne``: model name → (N, 2) coordinates of the same N sentences; ``labels`` (N,)."""
    labels = np.asarray(labels)
    frames = []
    for name, view in pca.items():
        view, plane = np.asarray(view, float), np.asarray(tsne[name], float)
        if not len(view) == len(plane) == len(labels):
            raise ValueError(f"latent_points_table: {name!r} has {len(view)} PCA and {len(plane)} t-SNE points "
                             f"for {len(labels)} labels")
        frame = pd.DataFrame({"model": name, "sentence": np.arange(len(labels)), "label": labels,
                              "pc1": view[:, 0], "pc2": view[:, 1], "tsne1": plane[:, 0], "tsne2": plane[:, 1]})
        if explained is not None:
            frame["pca_explained"] = float(explained[name])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def latent_summary(mus: Mapping[str, np.ndarray], labels: np.ndarray, planes: Mapping[str, np.ndarray], *,
                   active_units: Mapping[str, int] | None = None, logvars: Mapping[str, np.ndarray] | None = None,
                   pca: Mapping[str, np.ndarray] | None = None, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """Every number notebook 4 quotes about the posterior means, one row per model (its CSV).

    ``mus``: model name → μ (N, nz) of the same N sentences; ``labels`` (N,) integer classes;
    ``planes``: model name → (N, 2) t-SNE view (:func:`tsne_2d`). Columns:

    * ``n_sentences``; ``total_variance`` Σ_j Var_x μ_j (ddof 1); ``max_dim_std`` max_j sd_x μ_j;
      ``active_units`` (given: :func:`bnvae_core.metrics.text.active_units`, Var_x μ_j > 0.01);
    * with ``logvars`` (model → log σ² (N, nz)): ``mean_posterior_std``, the mean of σ_j(x) over
      sentences and dimensions — the noise z carries around μ;
    * with ``pca`` (model → (N, 2), :func:`pca_2d`): ``pca_half_range``, max |coordinate|, the
      half-width of the model's PCA cloud in units of z;
    * ``mean_cosine``: mean cosine similarity between two different sentences' μ (near 1: all
      means point the same way);
    * the silhouettes of :func:`silhouette_table` (``silhouette_cosine``, ``silhouette_standardized``,
      ``silhouette_tsne``, ``silhouette_cosine_shuffled``);
    * ``knn_agreement``: :func:`neighbour_label_agreement` of the ``k`` nearest neighbours by cosine;
      ``chance_agreement``: :func:`chance_label_agreement` (the same on every row); ``k``."""
    labels = np.asarray(labels)
    silhouettes = silhouette_table(mus, labels, planes, seed=seed)
    renamed = dict(zip(silhouettes.columns, ["silhouette_cosine", "silhouette_standardized", "silhouette_tsne",
                                              "silhouette_cosine_shuffled"]))
    silhouettes = silhouettes.rename(columns=renamed)
    chance = chance_label_agreement(labels)
    rows = []
    for name, mu in mus.items():
        mu = np.asarray(mu, np.float64)
        ddof = 1 if len(mu) > 1 else 0
        sim = cosine_similarities(mu)
        off_diagonal = sim[np.isfinite(sim)]
        row = {"model": name, "n_sentences": len(mu), "total_variance": float(mu.var(0, ddof=ddof).sum()),
               "max_dim_std": float(mu.std(0, ddof=ddof).max())}
        if active_units is not None:
            row["active_units"] = int(active_units[name])
        if logvars is not None:
            row["mean_posterior_std"] = float(np.exp(0.5 * np.asarray(logvars[name], np.float64)).mean())
        if pca is not None:
            row["pca_half_range"] = float(np.abs(np.asarray(pca[name], float)).max())
        row["mean_cosine"] = float(off_diagonal.mean()) if off_diagonal.size else float("nan")
        row.update(silhouettes.loc[name].to_dict())
        row.update(knn_agreement=neighbour_label_agreement(nearest_neighbours(sim, k), labels),
                   chance_agreement=chance, k=k)
        rows.append(row)
    return pd.DataFrame(rows)
