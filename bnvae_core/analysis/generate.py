"""(moved from cvae)"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..data.dialogue import DialogueCorpus, label_context
from ..metrics.dialogue import sample_split
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
