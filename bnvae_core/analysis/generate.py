"""Text from conditional VAEs (notebook 6): responses to contexts, side by side, and the paper's
CVAE metrics table for several runs."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..data.dialogue import DialogueCorpus, label_context
from ..metrics.dialogue import cvae_elbo, evaluate_cvae, sample_split
from ..models.cvae import CVAE


def respond(model: CVAE, corpus: DialogueCorpus, contexts: Sequence[Sequence[str]], n: int = 5,
            greedy: bool = True, max_len: int = 30, seed: int = 0) -> list[list[str]]:
    """``n`` responses (text) to each context, a list of utterance strings (oldest first).
    For a label-conditioned model a context is ``label_context(label)``."""
    split = corpus.context_split([list(c) for c in contexts])
    samples = sample_split(model, split, n, greedy, max_len, seed)
    return [[" ".join(corpus.vocab.decode(ids)) for ids in per] for per in samples]


def samples_table(runs: dict, contexts: Sequence[Sequence[str]], n: int = 5, greedy: bool = True,
                  seed: int = 0) -> pd.DataFrame:
    """Responses of several runs to the same contexts, side by side: one row per (context, sample),
    one column per run name (``runs``: name → :class:`bnvae_core.training.run_folder.Run`)."""
    rows = {}
    for name, run in runs.items():
        texts = respond(run.model, run.corpus, contexts, n, greedy, seed=seed)
        for ctx, per in zip(contexts, texts):
            for k, t in enumerate(per):
                rows.setdefault((" | ".join(ctx), k + 1), {})[name] = t
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["context", "sample"])
    return df


def label_contexts(labels: Sequence[str]) -> list[list[str]]:
    """Contexts of a label-conditioned model for ``labels`` (e.g. ``["noun.animal"]``)."""
    return [label_context(lab) for lab in labels]


#: the columns of :func:`cvae_metrics_table`, in order (those :func:`evaluate_cvae` reports)
CVAE_TABLE_COLUMNS = ("kl", "au", "au_posterior", "ppl_rec", "ppl_elbo", "bleu_precision", "bleu_recall", "bleu_f1",
                      "intra_dist1", "intra_dist2", "inter_dist1", "inter_dist2", "unique", "mean_length")


def cvae_metrics_table(runs: dict, split_name: str = "test", n_samples: int = 10, max_examples: int | None = 200,
                       seed: int = 0) -> pd.DataFrame:
    """The paper's CVAE table for several runs: one row per run name (``runs``: name →
    :class:`bnvae_core.training.run_folder.Run`), float columns ``kl, au, au_posterior, ppl_rec,
    ppl_elbo``, BLEU precision/recall/F1, intra/inter distinct-1/2, ``unique`` (distinct responses
    out of ``n_samples`` per context) and ``mean_length`` — those :func:`evaluate_cvae` reports on
    the ``split_name`` split (``n_samples`` responses to each of ``max_examples`` contexts, seeded)."""
    rows = {name: evaluate_cvae(run.model, run.corpus.splits[split_name], n_samples=n_samples,
                                max_examples=max_examples, seed=seed) for name, run in runs.items()}
    reported = next(iter(rows.values()))
    return pd.DataFrame(rows).T[[k for k in CVAE_TABLE_COLUMNS if k in reported]].astype(float)


def cvae_active_units_table(runs: dict, splits: Sequence[str] = ("train", "valid"), max_examples: int | None = 2000,
                            seed: int = 0) -> pd.DataFrame:
    """Where a CVAE's active units come from: the same count measured two ways (notebook 6).

    For each run (name → run with ``.model`` a CVAE, ``.corpus`` its dialogue corpus, ``.epoch_rows``):

    * ``measured = "during training"``, ``split = "train"``: the last training epoch's row of
      ``metrics.jsonl`` — Var_x(μ_q − μ_p) > 0.01 accumulated over the epoch's batches in training
      mode, *while the weights move* (each batch is encoded by different weights);
    * ``measured = "after training"``, one row per ``splits`` entry: :func:`bnvae_core.metrics.dialogue.cvae_elbo`
      on the first ``max_examples`` examples of that split, evaluation mode, the final weights.

    Columns ``model, measured, split, examples, au, au_posterior, kl`` (``au_posterior``: Var μ_q >
    0.01, NaN for the training row). A collapsed CVAE counts many units during training (the drift
    of μ_q − μ_p over an epoch is variance too) and none after: the trained model's μ_q − μ_p is
    the same for every response."""
    rows = []
    for name, run in runs.items():
        last = [r for r in run.epoch_rows if r.get("split") == "train"][-1]
        rows.append({"model": name, "measured": "during training", "split": "train",
                     "examples": int(last.get("n_sentences", 0)), "au": int(last["au"]),
                     "au_posterior": float("nan"), "kl": float(last["kl"])})
        for split_name in splits:
            split = run.corpus.splits[split_name]
            if max_examples is not None and len(split) > max_examples:
                split = split.subset(np.arange(max_examples))
            res = cvae_elbo(run.model, split, seed=seed)
            rows.append({"model": name, "measured": "after training", "split": split_name, "examples": len(split),
                         "au": int(res["au"]), "au_posterior": float(res["au_posterior"]), "kl": float(res["kl"])})
    return pd.DataFrame(rows)


def training_history_table(runs: dict, splits: Sequence[str] = ("train", "valid")) -> pd.DataFrame:
    """The per-epoch rows of several runs' ``metrics.jsonl`` as one tidy table (the CSV of a
    KL-over-training figure): columns ``model, epoch, split, kl, au`` and, where logged,
    ``kl_weight, rec, loss`` — one row per (model, epoch, split in ``splits``)."""
    frames = []
    for name, run in runs.items():
        rows = pd.DataFrame([r for r in run.epoch_rows if r.get("split") in splits])
        keep = [c for c in ("epoch", "split", "kl", "au", "kl_weight", "rec", "loss") if c in rows.columns]
        frames.append(rows[keep].assign(model=name))
    table = pd.concat(frames, ignore_index=True)
    return table[["model", *[c for c in table.columns if c != "model"]]]
