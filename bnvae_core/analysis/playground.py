"""What the latent playground and the trained-γ explorer compute (notebooks 3 and 4), without widgets.

A *run* here is anything with ``.model`` (a :class:`~bnvae_core.models.text_vae.TextVAE`) and
``.corpus`` (its :class:`~bnvae_core.data.corpus.Corpus`), e.g. a
:class:`~bnvae_core.training.run_folder.Run`. Sentences are given as token lists (see
:func:`sentence_tokens`) and encoded through each run's own vocabulary, so two models trained on
the same data see the same sentence even if their vocabularies differ.

* the code of a sentence: :func:`posterior_means` — μ(x), the posterior mean in evaluation mode
  (BN-VAE: after BN with its running statistics);
* interpolation: :func:`interpolate_codes`, ``z_t = (1 − t) z_a + t z_b`` for ``t`` evenly spaced
  in [0, 1], then greedy decoding — :func:`interpolation_table` (several models side by side);
* the prior: :func:`prior_samples` — ``z ~ p(z)`` (N(0, I), or uniform on the sphere for vMF),
  greedy or ancestral decoding, seeded — :func:`prior_samples_table`;
* neighbours in μ-space: :func:`nearest_sentences` (cosine, through
  :func:`bnvae_core.analysis.latent.cosine_similarities`);
* diversity of what a model generates: :func:`diversity` — distinct-1/2
  (:func:`bnvae_core.metrics.dialogue.distinct_n`) and self-BLEU
  (:func:`bnvae_core.metrics.dialogue.self_bleu`) — and :func:`diversity_table`;
* one trained model at a glance, for the γ explorer: :func:`trained_model_view` (per-sentence KL,
  IW-NLL on a fixed subset, prior samples, reconstructions of fixed sentences).

Everything is deterministic given its ``seed``; the caller's random state is left as it was.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch

from ..data.corpus import TOKENIZERS, Corpus, EncodedSplit
from ..errors import ConfigError
from ..metrics.dialogue import distinct_n, self_bleu
from ..metrics.text import iw_nll, kl_per_example, posterior_params
from ..models.layers import nominal_kl_bound
from .latent import cosine_similarities, decode_words, greedy_decode, nearest_neighbours

#: a sentence: an index into a split, a text (tokenized with the corpus's tokenizer) or a token list
Sentence = Union[int, str, Sequence[str]]


def sentence_tokens(corpus: Corpus, sentence: Sentence, split: str = "valid") -> list[str]:
    """The tokens of ``sentence``: an ``int`` is row i of ``corpus.splits[split]`` (decoded, so an
    unknown word is ``<unk>``); a ``str`` is tokenized with the corpus's own tokenizer
    (``corpus.tokenizer``); a list of strings is taken as it is."""
    if isinstance(sentence, (int, np.integer)):
        rows = corpus.splits[split]
        if not 0 <= int(sentence) < len(rows):
            raise ValueError(f"sentence index {sentence} outside the {split} split (0 … {len(rows) - 1})")
        return corpus.vocab.decode(rows.sentence(int(sentence)))
    if isinstance(sentence, str):
        return TOKENIZERS[corpus.tokenizer](sentence)
    return [str(t) for t in sentence]


def encode_sentences(corpus: Corpus, sentences: Sequence[Sequence[str]]) -> EncodedSplit:
    """Token lists → an unlabelled :class:`EncodedSplit` in ``corpus.vocab`` (unknown words → ``<unk>``)."""
    return EncodedSplit.from_sentences([list(s) for s in sentences], [None] * len(sentences), corpus.vocab, {})


def posterior_means(run, sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """(N, nz) posterior means μ(x) of N token lists under ``run.model`` (evaluation mode, no
    gradients; :func:`bnvae_core.metrics.text.posterior_params`)."""
    return posterior_params(run.model, encode_sentences(run.corpus, sentences))[0]


def decode_codes(run, z: np.ndarray | torch.Tensor, greedy: bool = True, seed: int = 0,
                 max_len: int = 30) -> list[str]:
    """One sentence (text) per row of ``z`` (N, nz): greedy (argmax) or ancestral decoding
    (``torch.multinomial`` with a CPU generator seeded with ``seed``)."""
    model = run.model
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(next(model.parameters()).device)
    if greedy and max_len == 30:
        return greedy_decode(model, z, run.corpus.vocab)
    gen = None if greedy else torch.Generator().manual_seed(seed)
    return [decode_words(run.corpus.vocab, s) for s in model.generate(z, max_len, greedy, generator=gen)]


def interpolate_codes(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(t (steps,), z (steps, nz)): the straight line ``z_t = (1 − t) z_a + t z_b`` between two
    codes (nz,), ``t = 0, 1/(steps−1), …, 1`` — so ``z_0 = z_a`` and ``z_{steps−1} = z_b`` exactly."""
    if steps < 2:
        raise ValueError(f"interpolate_codes: need steps >= 2, got {steps}")
    z_a, z_b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    if z_a.shape != z_b.shape or z_a.ndim != 1:
        raise ValueError(f"interpolate_codes: need two codes of shape (nz,), got {z_a.shape} and {z_b.shape}")
    t = np.linspace(0.0, 1.0, steps)
    z = (1.0 - t)[:, None] * z_a[None, :] + t[:, None] * z_b[None, :]
    z[-1] = z_b
    return t, z.astype(np.float32)


def interpolation_table(runs: Mapping[str, object], a: Sequence[str], b: Sequence[str], steps: int = 7,
                        max_len: int = 30) -> pd.DataFrame:
    """Greedy decodings along the line between the posterior means of two sentences, per model.

    ``runs``: model name → run; ``a``, ``b``: token lists. For each model, ``z_a = μ(a)``,
    ``z_b = μ(b)`` (:func:`posterior_means`) and the ``steps`` points of :func:`interpolate_codes`
    are decoded greedily. Index ``t`` (0 … 1, rounded to 3 decimals), one text column per model;
    the first and last rows are the models' greedy reconstructions of ``a`` and ``b``."""
    columns = {}
    for name, run in runs.items():
        mu = posterior_means(run, [a, b])
        t, z = interpolate_codes(mu[0], mu[1], steps)
        columns[name] = decode_codes(run, z, max_len=max_len)
    return pd.DataFrame(columns, index=pd.Index(np.round(t, 3), name="t"))


def prior_samples(run, n: int, seed: int = 0, greedy: bool = True, max_len: int = 30) -> list[str]:
    """``n`` sentences decoded from ``z ~ p(z)`` (``model.posterior.sample_prior``, (n, nz), a CPU
    generator seeded with ``seed``); greedy, or ancestral with the same generator continued."""
    model = run.model
    if model.nz == 0:
        raise ValueError("prior_samples: the model has no latent code (nz = 0)")
    gen = torch.Generator().manual_seed(seed)
    z = model.posterior.sample_prior(n, model.nz, generator=gen)
    device = next(model.parameters()).device
    ids = model.generate(z.to(device), max_len=max_len, greedy=greedy, generator=None if greedy else gen)
    return [decode_words(run.corpus.vocab, s) for s in ids]


def prior_samples_table(runs: Mapping[str, object], n: int = 8, seed: int = 0, greedy: bool = True,
                        max_len: int = 30) -> pd.DataFrame:
    """:func:`prior_samples` of several models with the same seed: index ``sample`` 1 … n, one
    text column per model."""
    columns = {name: prior_samples(run, n, seed, greedy, max_len) for name, run in runs.items()}
    return pd.DataFrame(columns, index=pd.Index(np.arange(1, n + 1), name="sample"))


def nearest_sentences(mu_query: np.ndarray, mu_pool: np.ndarray, texts: Sequence[str], k: int = 5,
                      exclude: int | None = None) -> pd.DataFrame:
    """The ``k`` pool sentences whose posterior means are most cosine-similar to the query's.

    ``mu_query`` (nz,), ``mu_pool`` (N, nz) with its N ``texts``; ``exclude``: a pool row never
    returned (the query itself when it is in the pool). Uses
    :func:`~bnvae_core.analysis.latent.cosine_similarities` on the N + 1 rows (cost O(N²·nz):
    keep the pool to a few thousand sentences). Columns ``rank`` (1 … k), ``cosine``, ``neighbour``."""
    sim = cosine_similarities(np.vstack([np.asarray(mu_query, np.float64)[None], np.asarray(mu_pool, np.float64)]))
    row = sim[:1, 1:].copy()
    if exclude is not None:
        row[0, exclude] = -np.inf
    k = min(k, len(texts) - (exclude is not None))
    best = nearest_neighbours(row, k)[0]
    return pd.DataFrame({"rank": np.arange(1, k + 1), "cosine": row[0, best],
                         "neighbour": [texts[j] for j in best]})


def diversity(sentences: Sequence[str], bleu: bool | None = None) -> dict:
    """Diversity of generated sentences (texts, whitespace-separated tokens).

    ``n``; ``unique`` (distinct sentences); ``distinct_1``, ``distinct_2`` (distinct n-grams /
    n-grams over all sentences, Li et al. 2016); ``self_bleu`` (mean BLEU of each sentence against
    all the others, Zhu et al. 2018: 1 when all are the same, lower for varied ones;
    :func:`bnvae_core.metrics.dialogue.self_bleu`); ``mean_length`` (tokens). ``bleu=None``
    computes self-BLEU when nltk is installed and gives NaN otherwise; ``True`` raises
    :class:`~bnvae_core.errors.ConfigError` without nltk; ``False`` skips it (NaN)."""
    tokens = [s.split() for s in sentences]
    out = {"n": len(tokens), "unique": len({tuple(t) for t in tokens}),
           "distinct_1": distinct_n(tokens, 1), "distinct_2": distinct_n(tokens, 2),
           "self_bleu": float("nan"), "mean_length": float(np.mean([len(t) for t in tokens])) if tokens else 0.0}
    if bleu is not False:
        try:
            out["self_bleu"] = self_bleu(tokens)
        except ConfigError:
            if bleu:
                raise
    return out


def diversity_table(texts: pd.DataFrame, bleu: bool | None = None) -> pd.DataFrame:
    """:func:`diversity` of each column of ``texts`` (one column of generated sentences per model,
    e.g. :func:`interpolation_table`, :func:`prior_samples_table`): one row per model."""
    return pd.DataFrame({name: diversity(list(texts[name]), bleu) for name in texts.columns}).T.rename_axis("model")


def subset_index(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``min(size, n)`` sorted row indices of ``range(n)``, a seeded choice without replacement."""
    size = min(size, n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def trained_model_view(run, split: str = "valid", *, nll_index: Sequence[int], sentences: Sequence[Sequence[str]],
                       n_samples: int = 5, iw_samples: int = 20, seed: int = 0, max_len: int = 30) -> dict:
    """What the γ explorer shows for one trained model ``run`` (a BN-VAE of a γ sweep, or any text VAE).

    * ``kl_table``: :func:`~bnvae_core.metrics.text.kl_per_example` on ``run.corpus.splits[split]``
      (evaluation mode, every sentence); ``mean_kl``: its mean (nats);
    * ``gamma``: the BN scale γ (None without a BN head), ``bound``: ``n γ²/2`` (None without);
    * ``nll``: mean IW-NLL (K = ``iw_samples``, seeded) over the rows ``nll_index`` of that split;
    * ``samples``: ``n_samples`` greedy decodings of z ~ p(z) (:func:`prior_samples`, seeded);
    * ``reconstructions``: DataFrame ``sentence, reconstruction`` — the greedy decoding of μ(x) for
      each token list in ``sentences`` (:func:`posterior_means`)."""
    model, corpus = run.model, run.corpus
    rows = corpus.splits[split]
    kl_table = kl_per_example(model, rows)
    head = getattr(model, "bn_head", None)
    gamma = None if head is None else float(head.gamma)
    nll = iw_nll(model, rows.subset(np.asarray(nll_index, dtype=np.int64)), k=iw_samples, seed=seed)
    texts = [" ".join(s) for s in sentences]
    recon = decode_codes(run, posterior_means(run, sentences), max_len=max_len) if len(sentences) else []
    return {"gamma": gamma, "bound": None if gamma is None else float(nominal_kl_bound(gamma, model.nz)),
            "nz": model.nz, "kl_table": kl_table, "mean_kl": float(kl_table["kl"].mean()),
            "nll": float(nll.mean()), "iw_samples": iw_samples, "nll_sentences": len(nll),
            "samples": prior_samples(run, n_samples, seed=seed, max_len=max_len),
            "reconstructions": pd.DataFrame({"sentence": texts, "reconstruction": recon})}


def playground_tables(generated: Mapping[str, pd.DataFrame], bleu: bool | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The static record of a latent playground (notebook 4's CSVs), from the tables it generated.

    ``generated``: what was generated → a table with one text column per model, e.g.
    ``{"interpolation": interpolation_table(...), "prior samples": prior_samples_table(...)}``
    (index ``t`` or ``sample``). Returns

    * ``texts``: one row per (source, position, model): columns ``source``, ``position`` (the
      table's index value: t in [0, 1] or the sample number), ``model``, ``text``;
    * ``diversity``: :func:`diversity` of each (source, model): columns ``source``, ``model``, ``n``,
      ``unique``, ``unique_fraction`` (unique / n), ``distinct_1``, ``distinct_2``, ``self_bleu``,
      ``mean_length``."""
    texts, rows = [], []
    for source, table in generated.items():
        long = table.rename_axis("position").reset_index().melt(id_vars="position", var_name="model",
                                                               value_name="text")
        texts.append(long.assign(source=source)[["source", "position", "model", "text"]])
        for model in table.columns:
            d = diversity(list(table[model]), bleu)
            rows.append({"source": source, "model": model, "n": d["n"], "unique": d["unique"],
                         "unique_fraction": d["unique"] / d["n"] if d["n"] else float("nan"),
                         "distinct_1": d["distinct_1"], "distinct_2": d["distinct_2"],
                         "self_bleu": d["self_bleu"], "mean_length": d["mean_length"]})
    return pd.concat(texts, ignore_index=True), pd.DataFrame(rows)
