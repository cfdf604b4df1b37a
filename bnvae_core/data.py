"""Data: tokenization, vocabulary, corpora and length-bucketed batching.

A *corpus directory* has the format of the paper's reference code: ``train.txt``,
``valid.txt`` and ``test.txt``, one sentence per line, either ``text`` or
``label<TAB>text`` (integer or string labels). The name ``wordnet`` selects the built-in
corpus of WordNet 3.0 glosses (``bnvae_core/corpora``), labelled by lexicographer file.

Sentences are held as token ids only: one flat ``int32`` array per split plus offsets, so
a corpus of millions of sentences costs little more than its ids.

Bad input raises :class:`CorpusError`, whose message names the file and the line.
"""
from __future__ import annotations

import dataclasses
import gzip
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPLITS = ("train", "valid", "test")
BUILTIN_CORPORA = ("wordnet",)

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


class CorpusError(ValueError):
    """A corpus file could not be read; the message names the file and (if known) the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


def tokenize(text: str) -> list[str]:
    """Lowercase, then split into words and single punctuation marks.

    >>> tokenize("A dog's bark (loud); e.g. 3 times!")
    ['a', "dog's", 'bark', '(', 'loud', ')', ';', 'e', '.', 'g', '.', '3', 'times', '!']
    """
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """Token ↔ id map. Ids 0–3 are ``<pad> <s> </s> <unk>``; the rest by frequency, then alphabet."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = [PAD, BOS, EOS, UNK] + [t for t in tokens if t not in (PAD, BOS, EOS, UNK)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad, self.bos, self.eos, self.unk = 0, 1, 2, 3

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None) -> "Vocab":
        """Vocabulary of the tokens seen at least ``min_freq`` times, at most ``max_size`` (specials included)."""
        counts = Counter(tok for sent in sentences for tok in sent)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - 4)]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens for ``ids``, stopping at ``</s>`` and skipping ``<pad>``/``<s>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.itos[i])
        return out


@dataclass
class RawSplit:
    """Tokenized sentences of one split with their labels (``None`` where unlabelled)."""
    sentences: list[list[str]]
    labels: list[str | None]
    skipped_blank: int = 0   #: blank lines (or lines without any token) skipped
    skipped_long: int = 0    #: lines longer than ``max_tokens`` dropped
    bom: bool = False        #: the file started with a UTF-8 byte-order mark (removed)
    crlf_lines: int = 0      #: lines that ended in CRLF (the CR removed)


def _read_lines(path: Path, stats: dict | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; BOM and CRLF tolerated (and counted into
    ``stats['bom']``, ``stats['crlf_lines']`` when ``stats`` is given)."""
    if not path.is_file():
        raise CorpusError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(path, f"cannot read ({err.strerror or err})") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(path, "UTF-16 text (byte-order mark ff fe / fe ff); re-save it as UTF-8")
    if b"\x00" in raw[:8192]:
        raise CorpusError(path, "looks like a binary file (NUL bytes), expected UTF-8 text")
    stats = {} if stats is None else stats
    stats["bom"] = raw.startswith(b"\xef\xbb\xbf")
    stats["crlf_lines"] = 0
    if stats["bom"]:
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line; it does not start a blank one
    for number, line in enumerate(lines, start=1):
        if b"\x00" in line:
            raise CorpusError(path, "NUL byte: looks like binary data, expected UTF-8 text", number)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(path, f"not valid UTF-8 (byte {err.start}: {line[err.start:err.start + 1]!r})",
                              number) from None
        if text.endswith("\r"):
            stats["crlf_lines"] += 1
            text = text.rstrip("\r")
        yield number, text


def read_split_file(path: str | Path, max_tokens: int | None = None) -> RawSplit:
    """Read one corpus file: ``text`` or ``label<TAB>text`` per line.

    Blank lines are skipped (and counted). A line with a tab must have a non-empty label
    and non-empty text. If the file's first label is an integer, every label must be one
    (a stray non-integer label is an error naming its line). ``max_tokens`` drops longer
    sentences (counted; the paper's corpora are length-filtered the same way)."""
    path = Path(path)
    sentences, labels, blank, long = [], [], 0, 0
    first_label: tuple[int, str] | None = None   # (line, label) of the file's first label
    stats: dict = {}
    for number, line in _read_lines(path, stats):
        if not line.strip():
            blank += 1
            continue
        label = None
        if "\t" in line:
            label, text = line.split("\t", 1)
            label = label.strip()
            if not label:
                raise CorpusError(path, "empty label before the tab", number)
            if "\t" in text:
                raise CorpusError(path, "more than one tab: expected 'label<TAB>text'", number)
            if not text.strip():
                raise CorpusError(path, f"label {label!r} has no text after the tab", number)
            if first_label is None:
                first_label = (number, label)
            elif _is_int_label(first_label[1]) and not _is_int_label(label):
                raise CorpusError(path, f"label {label!r} is not an integer, but the file's labels are "
                                        f"(line {first_label[0]}: {first_label[1]!r})", number)
        else:
            text = line
        tokens = tokenize(text)
        if not tokens:
            blank += 1
            continue
        if max_tokens is not None and len(tokens) > max_tokens:
            long += 1
            continue
        sentences.append(tokens)
        labels.append(label)
    if not sentences:
        raise CorpusError(path, f"no sentences (empty file, or every line blank or too long: "
                                f"{blank} blank, {long} longer than max_tokens={max_tokens})")
    return RawSplit(sentences, labels, blank, long, stats.get("bom", False), stats.get("crlf_lines", 0))


def _is_int_label(label: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", label) is not None


def _read_wordnet(max_tokens: int | None) -> dict[str, RawSplit]:
    """The built-in corpus: WordNet 3.0 glosses labelled by lexicographer file."""
    splits = {name: RawSplit([], []) for name in SPLITS}
    ref = resources.files("bnvae_core") / "corpora" / "wordnet_glosses.tsv.gz"
    with resources.as_file(ref) as path, gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            split, _pos, lexname, gloss = line.rstrip("\n").split("\t")
            tokens = tokenize(gloss)
            if tokens and (max_tokens is None or len(tokens) <= max_tokens):
                splits[split].sentences.append(tokens)
                splits[split].labels.append(lexname)
    return splits


def read_raw_corpus(data: str | Path, max_tokens: int | None = None) -> dict[str, RawSplit]:
    """Tokenized train/valid/test of ``data``: ``'wordnet'`` or a corpus directory."""
    if str(data) in BUILTIN_CORPORA:
        return _read_wordnet(max_tokens)
    root = Path(data)
    if not root.is_dir():
        raise CorpusError(root, "no such corpus directory (and not a built-in corpus name: "
                                f"{', '.join(BUILTIN_CORPORA)})")
    return {name: read_split_file(root / f"{name}.txt", max_tokens) for name in SPLITS}


@dataclass
class EncodedSplit:
    """Token ids of one split: sentence ``i`` is ``ids[offsets[i]:offsets[i+1]]`` (no ``<s>``/``</s>``)."""
    ids: np.ndarray        # (total_tokens,) int32
    offsets: np.ndarray    # (n + 1,) int64
    labels: np.ndarray     # (n,) int64, -1 where unlabelled

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[str]], labels: Sequence[str | None],
                       vocab: Vocab, label_index: dict[str, int]) -> "EncodedSplit":
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
        offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((vocab.stoi.get(t, vocab.unk) for s in sentences for t in s),
                          dtype=np.int32, count=int(offsets[-1]))
        lab = np.array([label_index[x] if x is not None else -1 for x in labels], dtype=np.int64)
        return cls(ids, offsets, lab)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """(n,) number of tokens of each sentence, without ``</s>``."""
        return np.diff(self.offsets)

    def sentence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, index: Sequence[int]) -> "EncodedSplit":
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate([self.sentence(int(i)) for i in index]) if len(index) else self.ids[:0]
        return EncodedSplit(ids.astype(np.int32), offsets, self.labels[index])

    @property
    def n_tokens(self) -> int:
        """Predicted tokens: every word plus one ``</s>`` per sentence (the PPL denominator)."""
        return int(self.offsets[-1]) + len(self)


@dataclass
class Corpus:
    """An encoded corpus: vocabulary, label names and the three splits."""
    vocab: Vocab
    label_names: list[str]
    splits: dict[str, EncodedSplit]
    skipped_blank: dict[str, int] = field(default_factory=dict)
    #: per split: what reading tolerated — ``skipped_blank``, ``skipped_long`` (> max_tokens)
    #: line counts, ``bom`` (a removed byte-order mark), ``crlf_lines`` (CRs removed)
    reading: dict[str, dict] = field(default_factory=dict)

    @property
    def train(self) -> EncodedSplit:
        return self.splits["train"]

    @property
    def valid(self) -> EncodedSplit:
        return self.splits["valid"]

    @property
    def test(self) -> EncodedSplit:
        return self.splits["test"]


def load_corpus(data: str | Path, *, max_tokens: int | None = 30, max_train: int | None = None,
                max_eval: int | None = None, min_freq: int = 2, max_vocab: int | None = 10000,
                seed: int = 0, vocab: Vocab | None = None) -> Corpus:
    """Read, tokenize and encode ``data`` (``'wordnet'`` or a corpus directory).

    ``max_train`` / ``max_eval`` keep a seeded random subset of train / of valid and test;
    the vocabulary is built from the (kept) training sentences unless ``vocab`` is given.
    Labels seen only outside train get their own ids after train's (they can be evaluated
    but a classifier trained on train never predicts them)."""
    raw = read_raw_corpus(data, max_tokens)
    rng = np.random.default_rng(seed)
    for name, limit in (("train", max_train), ("valid", max_eval), ("test", max_eval)):
        split = raw[name]
        if limit is not None and len(split.sentences) > limit:
            keep = np.sort(rng.choice(len(split.sentences), size=limit, replace=False))
            raw[name] = dataclasses.replace(split, sentences=[split.sentences[i] for i in keep],
                                            labels=[split.labels[i] for i in keep])
    if vocab is None:
        vocab = Vocab.build(raw["train"].sentences, min_freq=min_freq, max_size=max_vocab)
    label_names: list[str] = []
    for name in SPLITS:
        for lab in raw[name].labels:
            if lab is not None and lab not in label_names:
                label_names.append(lab)
    train_labels = [x for x in label_names if x in set(raw["train"].labels)]
    label_names = sorted(train_labels, key=_label_key) + sorted(
        [x for x in label_names if x not in train_labels], key=_label_key)
    index = {x: i for i, x in enumerate(label_names)}
    splits = {name: EncodedSplit.from_sentences(raw[name].sentences, raw[name].labels, vocab, index)
              for name in SPLITS}
    reading = {n: {"skipped_blank": raw[n].skipped_blank, "skipped_long": raw[n].skipped_long,
                   "bom": raw[n].bom, "crlf_lines": raw[n].crlf_lines} for n in SPLITS}
    return Corpus(vocab, label_names, splits, {n: raw[n].skipped_blank for n in SPLITS}, reading)


def _label_key(label: str):
    return (0, int(label), "") if _is_int_label(label) else (1, 0, label)


@dataclass
class Batch:
    """A padded batch. ``tokens``: (batch, seq) ids without ``<s>``/``</s>``, padded with 0;
    ``lengths``: (batch,); ``labels``: (batch,) (-1 unlabelled); ``index``: (batch,) sentence ids."""
    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.tokens.to(device, non_blocking=True), self.lengths.to(device),
                     self.labels.to(device), self.index)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_tokens(self) -> int:
        """Predicted tokens in the batch, one ``</s>`` per sentence included."""
        return int(self.lengths.sum()) + len(self)


def make_batch(split: EncodedSplit, index: Sequence[int]) -> Batch:
    index = np.asarray(index, dtype=np.int64)
    lengths = split.lengths[index]
    tokens = np.zeros((len(index), max(int(lengths.max()), 1)), dtype=np.int64)
    for row, i in enumerate(index):
        tokens[row, : lengths[row]] = split.sentence(int(i))
    return Batch(torch.from_numpy(tokens), torch.from_numpy(lengths), torch.from_numpy(split.labels[index]),
                 torch.from_numpy(index))


def bucket_batches(split: EncodedSplit, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                   epoch: int = 0, drop_singletons: bool = False) -> list[np.ndarray]:
    """Sentence indices grouped into batches of similar length.

    Sentences are sorted by length (ties broken by a seeded permutation when ``shuffle``)
    and cut into runs of ``batch_size``, so padding is at most a token or two; the order
    of the batches is then shuffled with ``seed`` and ``epoch``. The result depends only
    on (seed, epoch), which is what makes a resumed run see the same data order.

    ``drop_singletons``: merge a final batch of one sentence into its neighbour (for
    training, where batch normalization needs at least two sentences)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    rng = np.random.default_rng([seed, epoch])
    tiebreak = rng.permutation(n) if shuffle else np.arange(n)
    order = tiebreak[np.argsort(split.lengths[tiebreak], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_singletons and len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def iterate_batches(split: EncodedSplit, batch_size: int, **kwargs) -> Iterator[Batch]:
    """:func:`bucket_batches` turned into padded :class:`Batch` objects."""
    for index in bucket_batches(split, batch_size, **kwargs):
        yield make_batch(split, index)
