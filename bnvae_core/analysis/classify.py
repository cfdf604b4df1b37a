"""Few-label classification on the posterior mean μ (Zhu et al. 2020 §5.3, after Li et al. 2019).

The protocol: train the VAE on the training sentences **without** their labels; then, for
each seed, draw ``N`` labelled training sentences (N = 100, 500, 1000, 2000 in the paper),
train a classifier whose input is the posterior mean ``μ(x)`` (nz numbers per sentence), and
report its accuracy on the labelled **test** split; mean ± std over ≥ 5 seeds. A collapsed
VAE has ``μ(x) ≈ μ(x')`` for all sentences, so its classifier can do little better than
predicting the majority class; BN-VAE keeps every dimension of μ active.

Four ways to use the labelled sentences (``mode``; on the command line ``--protocol``):

* ``reference`` — **the paper's protocol**, as the authors' code runs it (:func:`reference_accuracy`):
  the encoder (BN in train mode) plus dropout 0.5 and a linear layer on μ, fine-tuned with SGD
  lr 1.0 on batches of 16, the checkpoint selected on the cross-entropy of the labelled
  *validation* split, the lr halved after 2 bad epochs, at most 5 times. One labelled set (the
  reference's fixed label file; here drawn with seed 0), the seeds vary the training.
* ``frozen`` — **the teaching view**, a linear probe of what μ already holds: the encoder is
  fixed; ``μ`` is standardized (per-dimension mean/std of the N
  labelled sentences, :class:`sklearn.preprocessing.StandardScaler`) and fed to a multinomial
  :class:`sklearn.linear_model.LogisticRegression` (L2, C = 1). Standardizing makes the
  comparison about the *information* in μ, not its scale (BN-VAE's μ has scale ≈ γ).
* ``finetune`` — a quick fine-tune: a linear layer ``nz → C`` on μ is trained **jointly with the encoder**
  (copies; the run's model is never changed): cross-entropy, Adam (lr 1e-3 for the encoder,
  1e-2 for the new layer), batches of 32, ``finetune_epochs`` passes but at least
  ``min_finetune_steps`` steps (100 labels are only 4 batches an epoch). No early stopping:
  with 100 labels there is no labelled validation set to stop on. **BN-VAE's BatchNorm stays
  in evaluation mode** (its running statistics from unsupervised training are frozen, β is
  still trained): the small, class-skewed labelled batches then change neither the
  normalization nor the statistics, and the test sentences are encoded exactly as during
  training. The encoder has no dropout, so nothing else depends on train/eval mode.
* ``bow`` — the baseline without any VAE: TF-IDF bag of words (:class:`TfidfVectorizer`) of
  the same N sentences, tokenized the same way and restricted to the run's vocabulary (other
  words are ``<unk>``), with the same logistic regression.

Labels. A corpus directory gives each sentence its own label (``label<TAB>text``). The
built-in WordNet corpus is labelled by lexicographer file (45 classes, from ``adj.all`` with
12% of the glosses down to ``noun.motive`` with 0.03%); ``classes`` picks what to predict:

* ``"top10"`` (default; ``"top<k>"`` for any k) — the k most frequent labels of the train
  split; sentences with other labels are left out of both the labelled pool and the test
  set. For WordNet the top 10 cover 64% of the glosses, the largest holds 19% of them (the
  majority-class accuracy is reported next to every result), and every class has enough
  examples that 100 labels still see each one. A corpus with ≤ k labels keeps all of them.
* ``"all"`` — every label as given (45 WordNet lexicographer files; rare classes make the
  few-label task mostly a lottery).
* ``"pos"`` — the part before the first ``.`` (WordNet: ``adj/adv/noun/verb``; 70% of the
  glosses are nouns, so accuracy starts at 0.70).

Sampling. For each seed the N labelled sentences are drawn from the (label-filtered) train
split of the run's corpus — the sentences the VAE saw unlabelled — stratified by class
(:class:`~sklearn.model_selection.StratifiedShuffleSplit`, ``random_state=seed``) where that is
possible (N ≥ number of classes and every class has ≥ 2 sentences), uniformly otherwise. The
draw depends only on (seed, N), so frozen, finetune and bow with the same seed see the same
sentences (paired comparison). The test split is always evaluated in full.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.corpus import EncodedSplit, Vocab, bucket_batches, content_digest, load_corpus, make_batch
from ..data.hub import reading_settings
from ..errors import ConfigError, UnknownDatasetError
from ..io import atomic_write_text
from ..metrics.text import posterior_params
from ..models.layers import encoder_io

#: ``reference``: the paper's protocol (the authors' code); ``frozen``: the teaching view (a probe on a
#: frozen μ); ``finetune``: a quick fine-tune without validation; ``bow``: the baseline without a VAE
MODES = ("reference", "frozen", "finetune", "bow")
PAPER_LABEL_SIZES = (100, 500, 1000, 2000)
RESULTS_VERSION = 2   #: bump when a change to this module changes the numbers (invalidates cached tables)


@dataclass
class LabelledData:
    """Labelled sentences for the protocol: the pool the N labels are drawn from, and the test set.

    ``pool_labels`` (n_pool,) and ``test_labels`` (n_test,) are class ids into ``class_names``;
    classes ``0 … n_train_classes−1`` occur in the pool (most frequent first), any further
    ones only in the test set (they count as errors: no classifier can predict them)."""
    pool: EncodedSplit
    pool_labels: np.ndarray
    test: EncodedSplit
    test_labels: np.ndarray
    class_names: list[str]
    n_train_classes: int
    vocab: Vocab
    classes: str
    data: str
    #: the labelled validation split (the reference protocol selects its checkpoint on it)
    valid: EncodedSplit | None = None
    valid_labels: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return self.n_train_classes

    def majority_accuracy(self) -> float:
        """Test accuracy of always predicting the pool's most frequent class (class 0)."""
        return float((self.test_labels == 0).mean())


def class_mapper(classes: str, train_names: Sequence[str]):
    """A function label name → class name (``None``: leave the sentence out)."""
    if classes == "all":
        return lambda name: name
    if classes == "pos":
        return lambda name: name.split(".", 1)[0]
    if classes.startswith("top") and classes[3:].isdigit() and int(classes[3:]) >= 2:
        k = int(classes[3:])
        counts = Counter(train_names)
        kept = set(sorted(counts, key=lambda name: (-counts[name], name))[:k])
        return lambda name: name if name in kept else None
    raise ConfigError(f"classes must be 'all', 'pos' or 'top<k>' with k >= 2 (e.g. 'top10'), got {classes!r}")


def labelled_data(run, classes: str = "top10", data: str | None = None, split: str = "test") -> LabelledData:
    """The labelled pool (train split) and evaluation split (``split``) of ``run``'s corpus.

    ``data``: another corpus (name or directory) to classify instead, encoded with the run's
    vocabulary; ``None`` uses the run's own corpus (its train subset is the pool)."""
    if data is None:
        corpus, data_name = run.corpus, str(run.config.data)
    else:
        try:
            resolved, reading = reading_settings(data, run.corpus.tokenizer, max_tokens=run.config.max_tokens)
        except UnknownDatasetError as err:
            raise ConfigError(str(err)) from None
        corpus = load_corpus(resolved, **reading, vocab=run.corpus.vocab)
        data_name = str(data)
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")

    def names(s: EncodedSplit) -> list[str | None]:
        return [corpus.label_names[i] if i >= 0 else None for i in s.labels]

    train_names, eval_names = names(corpus.train), names(corpus.splits[split])
    if all(n is None for n in train_names):
        raise ConfigError(f"{data_name}: the train split has no labels (expected 'label<TAB>text' lines)")
    mapper = class_mapper(classes, [n for n in train_names if n is not None])
    pool_cls = [mapper(n) if n is not None else None for n in train_names]
    eval_cls = [mapper(n) if n is not None else None for n in eval_names]
    counts = Counter(c for c in pool_cls if c is not None)
    class_names = sorted(counts, key=lambda c: (-counts[c], c))
    n_train_classes = len(class_names)
    class_names += sorted({c for c in eval_cls if c is not None} - set(class_names))
    index = {c: i for i, c in enumerate(class_names)}
    pool_keep = np.array([i for i, c in enumerate(pool_cls) if c is not None], dtype=np.int64)
    eval_keep = np.array([i for i, c in enumerate(eval_cls) if c is not None], dtype=np.int64)
    valid_cls = [mapper(n) if n is not None else None for n in names(corpus.valid)]
    valid_keep = np.array([i for i, c in enumerate(valid_cls) if c in index and index[c] < n_train_classes],
                          dtype=np.int64)
    if len(eval_keep) == 0:
        raise ConfigError(f"{data_name}: the {split} split has no labelled sentences of the chosen classes "
                          f"({classes})")
    return LabelledData(
        pool=corpus.train.subset(pool_keep),
        pool_labels=np.array([index[pool_cls[i]] for i in pool_keep], dtype=np.int64),
        test=corpus.splits[split].subset(eval_keep),
        test_labels=np.array([index[eval_cls[i]] for i in eval_keep], dtype=np.int64),
        class_names=class_names, n_train_classes=n_train_classes, vocab=corpus.vocab,
        classes=classes, data=data_name,
        valid=corpus.valid.subset(valid_keep) if len(valid_keep) else None,
        valid_labels=np.array([index[valid_cls[i]] for i in valid_keep], dtype=np.int64) if len(valid_keep) else None)


def sample_labelled(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of the sentences with class ids ``labels`` (n_pool,): stratified by
    class when possible, else uniform; deterministic in (seed, n). ``n == len(labels)`` → all."""
    n_pool = len(labels)
    if n < 1:
        raise ConfigError(f"the number of labelled sentences must be >= 1, got {n}")
    if n > n_pool:
        raise ConfigError(f"{n} labelled sentences requested but the train split has only {n_pool} "
                          "of the chosen classes")
    if n == n_pool:
        return np.arange(n_pool)
    from sklearn.model_selection import StratifiedShuffleSplit
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=seed)
        chosen, _ = next(splitter.split(np.zeros(n_pool), labels))
    except ValueError:   # n < number of classes, a class with one sentence, ...
        chosen = np.random.default_rng([seed, n]).choice(n_pool, size=n, replace=False)
    return np.sort(chosen)


def _logistic_regression_accuracy(x_train, y_train, x_test, y_test, seed: int) -> float:
    """Multinomial L2 logistic regression (C = 1, lbfgs); a single training class → predict it."""
    from sklearn.linear_model import LogisticRegression
    if len(np.unique(y_train)) < 2:
        return float((y_test == y_train[0]).mean())
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    clf.fit(x_train, y_train)
    return float((clf.predict(x_test) == y_test).mean())


def frozen_accuracy(mu_train: np.ndarray, y_train: np.ndarray, mu_test: np.ndarray, y_test: np.ndarray,
                    seed: int = 0) -> float:
    """Accuracy of logistic regression on standardized μ: ``mu_*`` (n, nz), ``y_*`` (n,) class ids."""
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(mu_train)
    return _logistic_regression_accuracy(scaler.transform(mu_train), y_train, scaler.transform(mu_test),
                                         y_test, seed)


def _texts(split: EncodedSplit, vocab: Vocab) -> list[str]:
    return [" ".join(vocab.itos[int(i)] for i in split.sentence(k)) for k in range(len(split))]


def bow_accuracy(train: EncodedSplit, y_train: np.ndarray, test: EncodedSplit, y_test: np.ndarray,
                 vocab: Vocab, seed: int = 0) -> float:
    """Baseline: TF-IDF bag of words of the labelled sentences → logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    vectorizer = TfidfVectorizer(tokenizer=str.split, lowercase=False, token_pattern=None)
    x_train = vectorizer.fit_transform(_texts(train, vocab))
    return _logistic_regression_accuracy(x_train, y_train, vectorizer.transform(_texts(test, vocab)), y_test, seed)


class EncoderClassifier(nn.Module):
    """``tokens (B, T), lengths (B,)`` → logits ``(B, C)``: the VAE's encoder, BN head (if any)
    and a new linear layer on μ. :meth:`train` keeps the BN head in evaluation mode (see module doc)."""

    def __init__(self, model, n_classes: int):
        super().__init__()
        self.encoder = copy.deepcopy(model.encoder)
        self.bn_head = copy.deepcopy(model.bn_head)
        self.head = nn.Linear(model.nz, n_classes)

    def train(self, mode: bool = True) -> "EncoderClassifier":
        super().train(mode)
        if self.bn_head is not None:
            self.bn_head.eval()
        return self

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder(*encoder_io(tokens, lengths))
        if self.bn_head is not None:
            mu = self.bn_head(mu)
        return self.head(mu)


def finetune_accuracy(model, train: EncodedSplit, y_train: np.ndarray, test: EncodedSplit, y_test: np.ndarray,
                      n_classes: int, seed: int = 0, epochs: int = 10, min_steps: int = 100,
                      batch_size: int = 32, lr_encoder: float = 1e-3, lr_head: float = 1e-2) -> float:
    """Accuracy after training a linear layer on μ jointly with (a copy of) the encoder.

    Steps: ``max(epochs · ⌈N/batch_size⌉, min_steps)``, batches of similar length, reshuffled
    every pass with ``seed``. The global torch RNG is left as it was."""
    device = next(model.parameters()).device
    n_batches = math.ceil(len(train) / batch_size)
    total_steps = max(epochs * n_batches, min_steps)
    y_train_t = torch.as_tensor(y_train, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = EncoderClassifier(model, n_classes).to(device)
        encoder_params = [p for n, p in clf.named_parameters() if not n.startswith("head.") and p.requires_grad]
        optimizer = torch.optim.Adam([{"params": encoder_params, "lr": lr_encoder},
                                      {"params": clf.head.parameters(), "lr": lr_head}])
        clf.train()
        step, epoch = 0, 0
        while step < total_steps:
            for index in bucket_batches(train, batch_size, shuffle=True, seed=seed, epoch=epoch):
                b = make_batch(train, index)
                logits = clf(b.tokens.to(device), b.lengths.to(device))
                loss = nn.functional.cross_entropy(logits, y_train_t[b.index.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(clf.parameters(), 5.0)
                optimizer.step()
                step += 1
                if step >= total_steps:
                    break
            epoch += 1
        clf.eval()
        predictions = np.zeros(len(test), dtype=np.int64)
        with torch.inference_mode():
            for index in bucket_batches(test, 256):
                b = make_batch(test, index)
                predictions[b.index.numpy()] = clf(b.tokens.to(device), b.lengths.to(device)).argmax(-1).cpu().numpy()
    return float((predictions == y_test).mean())


class ReferenceClassifier(nn.Module):
    """The discriminator of the authors' code (bohanli ``discriminator_linear.py``, used by bn-vae's
    ``t_s_f.py``): the VAE's encoder (a copy, BN head included and **in train mode** while
    training, as ``discriminator.train()`` leaves it), dropout 0.5 on μ, and a linear layer
    ``nz → C``. ``tokens (B, T), lengths (B,)`` → logits ``(B, C)``."""

    def __init__(self, model, n_classes: int):
        super().__init__()
        self.encoder = copy.deepcopy(model.encoder)
        self.bn_head = copy.deepcopy(model.bn_head)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(model.nz, n_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder(*encoder_io(tokens, lengths))
        if self.bn_head is not None:
            mu = self.bn_head(mu)
        return self.head(self.dropout(mu))


def _predict(clf: nn.Module, split: EncodedSplit, device) -> torch.Tensor:
    """Logits of every sentence of ``split`` in evaluation mode, (N, C), in split order."""
    clf.eval()
    logits = None
    with torch.inference_mode():
        for index in bucket_batches(split, 128):
            b = make_batch(split, index)
            out = clf(b.tokens.to(device), b.lengths.to(device)).float()
            logits = out.new_zeros(len(split), out.shape[1]) if logits is None else logits
            logits[b.index.to(device)] = out
    return logits


def reference_accuracy(model, train: EncodedSplit, y_train: np.ndarray, valid: EncodedSplit, y_valid: np.ndarray,
                       test: EncodedSplit, y_test: np.ndarray, n_classes: int, seed: int = 0,
                       max_epochs: int = 100, batch_size: int = 16, details: dict | None = None) -> float:
    """Test accuracy with the authors' protocol (valdersoul/bn-vae ``t_s_f.py``; bohanli ``text_ss_ft.py``):

    :class:`ReferenceClassifier` fine-tuned as a whole (encoder included) with SGD lr 1.0, batches
    of 16 (one-sentence batches skipped), gradient norm clipped at 5; after every epoch the
    cross-entropy on the labelled **validation** split selects the weights kept; after 2 epochs
    whose loss exceeds the best since the last decay the lr is halved and the best weights
    reloaded; it stops after the 5th decay or ``max_epochs`` (100). The test accuracy is that
    of the selected weights. Where this differs on purpose: our batches group sentences of
    similar length (the reference: equal length). The global torch RNG is left as it was.
    ``details`` (a dict, if given) receives ``valid_losses`` (per epoch), ``best_epoch`` (1-based),
    ``decays`` and ``epochs``."""
    device = next(model.parameters()).device
    y_train_t, y_valid_t = torch.as_tensor(y_train, device=device), torch.as_tensor(y_valid, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = ReferenceClassifier(model, n_classes).to(device)
        lr, best, plateau, bad, decays = 1.0, math.inf, math.inf, 0, 0
        best_state, losses, best_epoch = copy.deepcopy(clf.state_dict()), [], 0
        optimizer = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=lr)
        for epoch in range(max_epochs):
            clf.train()
            for index in bucket_batches(train, batch_size, shuffle=True, seed=seed, epoch=epoch):
                if len(index) < 2:
                    continue
                b = make_batch(train, index)
                loss = nn.functional.cross_entropy(clf(b.tokens.to(device), b.lengths.to(device)),
                                                   y_train_t[b.index.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(clf.parameters(), 5.0)
                optimizer.step()
            val = float(nn.functional.cross_entropy(_predict(clf, valid, device), y_valid_t))
            losses.append(val)
            if val < best:
                best, best_state, best_epoch = val, copy.deepcopy(clf.state_dict()), epoch + 1
            if not val > plateau:
                plateau, bad = val, 0
                continue
            bad += 1
            if bad >= 2:
                plateau, bad, lr, decays = val, 0, lr * 0.5, decays + 1
                clf.load_state_dict(best_state)
                optimizer = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=lr)
                if decays >= 5:
                    break
        clf.load_state_dict(best_state)
        predictions = _predict(clf, test, device).argmax(-1).cpu().numpy()
    if details is not None:
        details.update(valid_losses=losses, best_epoch=best_epoch, decays=decays, epochs=len(losses))
    return float((predictions == y_test).mean())


def _seed_list(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds: empty list")
    return seeds


def few_label_accuracy(run, n_labels: int | Iterable[int], seeds: int | Iterable[int] = 5,
                       mode: str = "reference", *, classes: str = "top10", data: str | None = None,
                       labelled: LabelledData | None = None, finetune_epochs: int = 10,
                       min_finetune_steps: int = 100, progress: bool = False, cache: bool = False) -> pd.DataFrame:
    """Test accuracy with ``n_labels`` labelled train sentences, one row per (n_labels, seed).

    ``run``: a :class:`bnvae_core.training.run_folder.Run` (its model is never modified); ``seeds``: a count
    (seeds 0 … S−1) or explicit seeds; ``mode``: ``reference`` (the paper's protocol: one fixed
    labelled set, drawn with seed 0 — the reference's fixed label file — and the seeds vary the
    training), ``frozen`` (the teaching view), ``finetune`` or ``bow`` (see the module docstring;
    for these the seed draws the labelled set too); ``classes``/``data``: see :func:`labelled_data`
    (or pass ``labelled`` to reuse one). Columns: ``model`` (the run's method, ``bow`` for the
    baseline), ``mode, labels, seed, accuracy`` (fraction in [0, 1]), ``majority_accuracy``,
    ``n_classes, n_test, n_pool, classes, time_s``.

    ``cache=True`` stores the table as ``<run folder>/classify/<mode>-<hash>.csv``, keyed by
    every argument that changes it and by the run's ``model.pt`` (size, mtime), and returns it
    from there next time (a notebook's second open then takes seconds)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if finetune_epochs < 1:
        raise ConfigError(f"finetune_epochs must be >= 1, got {finetune_epochs}")
    sizes = [int(n_labels)] if isinstance(n_labels, (int, np.integer)) else [int(n) for n in n_labels]
    seed_list = _seed_list(seeds)
    data_ = labelled if labelled is not None else labelled_data(run, classes=classes, data=data)
    _check_request(run, data_, sizes, mode)
    key = {"version": RESULTS_VERSION, "mode": mode, "classes": data_.classes, "data": data_.data,
           "n_pool": len(data_.pool), "n_test": len(data_.test), "sizes": sizes, "seeds": seed_list,
           "config": run.config.hash(),
           "content": content_digest(data_.pool, data_.pool_labels, data_.test, data_.test_labels)}
    if mode == "finetune":
        key.update(finetune_epochs=finetune_epochs, min_finetune_steps=min_finetune_steps)
    cache_file = _results_cache_file(run, key) if cache else None
    if cache_file is not None and cache_file.exists():
        try:
            return pd.read_csv(cache_file)
        except (OSError, ValueError, pd.errors.ParserError):
            pass   # unreadable: recompute and overwrite
    fit = _fitter(run, data_, mode, finetune_epochs, min_finetune_steps)
    jobs = [(n, s) for n in sizes for s in seed_list]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc=f"{run.config.model} {mode}", unit="fit")
    rows = []
    for n, seed in jobs:
        t0 = time.perf_counter()
        index = sample_labelled(data_.pool_labels, n, 0 if mode == "reference" else seed)
        rows.append({"model": "bow" if mode == "bow" else run.config.model, "mode": mode, "labels": n,
                     "seed": seed, "accuracy": fit(index, seed), "majority_accuracy": data_.majority_accuracy(),
                     "n_classes": data_.n_train_classes, "n_test": len(data_.test), "n_pool": len(data_.pool),
                     "classes": data_.classes, "time_s": time.perf_counter() - t0})
    table = pd.DataFrame(rows)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(exist_ok=True)
            atomic_write_text(cache_file, table.to_csv(index=False))
        except OSError:
            pass   # a read-only run folder: the results are still returned
    return table


def _check_request(run, data_: LabelledData, sizes: list[int], mode: str) -> None:
    """Errors before any work: label counts the pool cannot give, a model without μ, no validation split."""
    for n in sizes:
        if not 1 <= n <= len(data_.pool):
            raise ConfigError(f"labels must be between 1 and {len(data_.pool)} (labelled train sentences of "
                              f"the chosen classes), got {n}")
    if mode != "bow" and getattr(run.model, "encoder", None) is None:
        raise ConfigError(f"model {run.config.model!r} has no encoder, so no μ to classify (use mode 'bow')")
    if mode == "reference" and data_.valid is None:
        raise ConfigError(f"{data_.data}: the reference protocol selects on labelled validation sentences, and the "
                          "valid split has none of the chosen classes (use --protocol frozen)")


def _fitter(run, data_: LabelledData, mode: str, finetune_epochs: int, min_finetune_steps: int):
    """``fit(index, seed) -> accuracy`` for ``mode``, with what every fit shares computed once."""
    if mode == "frozen":
        mu_pool, _ = posterior_params(run.model, data_.pool)
        mu_test, _ = posterior_params(run.model, data_.test)
        return lambda index, seed: frozen_accuracy(mu_pool[index], data_.pool_labels[index], mu_test,
                                                   data_.test_labels, seed)
    if mode == "bow":
        return lambda index, seed: bow_accuracy(data_.pool.subset(index), data_.pool_labels[index], data_.test,
                                                data_.test_labels, data_.vocab, seed)
    if mode == "finetune":
        return lambda index, seed: finetune_accuracy(run.model, data_.pool.subset(index), data_.pool_labels[index],
                                                     data_.test, data_.test_labels, data_.n_train_classes, seed,
                                                     epochs=finetune_epochs, min_steps=min_finetune_steps)
    return lambda index, seed: reference_accuracy(run.model, data_.pool.subset(index), data_.pool_labels[index],
                                                  data_.valid, data_.valid_labels, data_.test, data_.test_labels,
                                                  data_.n_train_classes, seed)


def _results_cache_file(run, key: dict) -> Path | None:
    """``<run folder>/classify/<mode>-<hash of key and model.pt's size and mtime>.csv``; ``None`` without a folder."""
    if getattr(run, "path", None) is None or not (Path(run.path) / "model.pt").exists():
        return None
    stat = (Path(run.path) / "model.pt").stat()
    key = {**key, "model_pt": [stat.st_size, stat.st_mtime_ns]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(run.path) / "classify" / f"{key['mode']}-{digest}.csv"


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (model, mode, labels): ``accuracy_mean, accuracy_std`` (sample std,
    ddof = 1; 0 for one seed), ``n_seeds, majority_accuracy, n_test`` and a ``text`` column
    ``"71.3 ± 1.2"`` (percent) for tables."""
    keys = [k for k in ("model", "mode", "labels") if k in results.columns]
    out = (results.groupby(keys, sort=False)
           .agg(accuracy_mean=("accuracy", "mean"),
                accuracy_std=("accuracy", lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0),
                n_seeds=("seed", "nunique"), majority_accuracy=("majority_accuracy", "first"),
                n_test=("n_test", "first"))
           .reset_index())
    out["text"] = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(out.accuracy_mean, out.accuracy_std)]
    return out


def accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The text of :func:`summarize` (``"71.3 ± 1.2"``, percent) as a table: one row per ``model``
    (in the order they first appear), one column ``"<N> labels"`` per label size (ascending)."""
    models = list(dict.fromkeys(summary.model))
    table = summary.pivot(index="model", columns="labels", values="text").reindex(models)
    table.columns = [f"{n} labels" for n in table.columns]
    return table
