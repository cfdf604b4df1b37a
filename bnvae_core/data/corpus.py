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

import gzip
import hashlib
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import CorpusError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPLITS = ("train", "valid", "test")
BUILTIN_CORPORA = ("wordnet",)

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """The ``words`` tokenizer: lowercase, then split into words and single punctuation marks
    (for raw text such as the WordNet glosses).

    >>> tokenize("A dog's bark (loud); e.g. 3 times!")
    ['a', "dog's", 'bark', '(', 'loud', ')', ';', 'e', '.', 'g', '.', '3', 'times', '!']
    """
    return _TOKEN_RE.findall(text.lower())


def tokenize_whitespace(text: str) -> list[str]:
    """The ``whitespace`` tokenizer: the text as it is, split on whitespace — what the reference
    codes do with the paper's pre-tokenized corpora (case and numbers kept; ``<unk>`` stays one
    token, the vocabulary's unknown word).

    >>> tokenize_whitespace("the <unk> was n't here , N years")
    ['the', '<unk>', 'was', "n't", 'here', ',', 'N', 'years']
    """
    return text.split()


TOKENIZERS = {"words": tokenize, "whitespace": tokenize_whitespace}

#: the sizes the built-in corpus is used at unless a config asks otherwise (the *teaching size*:
#: minutes on 2 CPU cores); any other corpus is used whole (:func:`effective_limits`)
BUILTIN_LIMITS = {"wordnet": dict(max_tokens=30, max_train=8000, max_eval=1000, max_vocab=6000, min_freq=2)}
#: a corpus used whole: every sentence, every training word in the vocabulary (as the reference code)
WHOLE = dict(max_tokens=0, max_train=0, max_eval=0, max_vocab=0, min_freq=1)


def effective_limits(data: str, **given) -> dict:
    """The limits :func:`load_corpus` gets for ``data``: each of ``max_tokens, max_train, max_eval,
    max_vocab, min_freq`` as given, or when None the data's own (:data:`BUILTIN_LIMITS` for the
    built-in corpus, :data:`WHOLE` otherwise); a limit of 0 means none (→ None)."""
    own = BUILTIN_LIMITS.get(str(data), WHOLE)
    out = {k: own[k] if given.get(k) is None else given[k] for k in WHOLE}
    return {k: (None if k != "min_freq" and v == 0 else v) for k, v in out.items()}


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
        return cls.from_counts(Counter(tok for sent in sentences for tok in sent), min_freq, max_size)

    @classmethod
    def from_counts(cls, counts: dict[str, int], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """:meth:`build` from token counts (tokens with count 0 are never kept)."""
        kept = sorted((t for t, c in counts.items() if c >= min_freq and c > 0), key=lambda t: (-counts[t], t))
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


def read_lines(path: Path, stats: dict | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; BOM and CRLF tolerated (and counted into
    ``stats['bom']``, ``stats['crlf_lines']`` when ``stats`` is given)."""
    if not path.is_file():
        raise CorpusError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        fh = open(path, "rb")     # read line by line: memory does not grow with the file
        head = fh.read(8192)
        fh.seek(0)
    except OSError as err:
        raise CorpusError(path, f"cannot read ({err.strerror or err})") from None
    with fh:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise CorpusError(path, "UTF-16 text (byte-order mark ff fe / fe ff); re-save it as UTF-8")
        if b"\x00" in head:
            raise CorpusError(path, "looks like a binary file (NUL bytes), expected UTF-8 text")
        stats = {} if stats is None else stats
        stats["bom"] = head.startswith(b"\xef\xbb\xbf")
        stats["crlf_lines"] = 0
        yield from _decode_lines(path, fh, stats)


def _decode_lines(path: Path, fh, stats: dict) -> Iterator[tuple[int, str]]:
    """The lines of the binary file ``fh`` decoded (see :func:`read_lines`); a final newline
    ends the last line, it does not start a blank one."""
    try:
        for number, line in enumerate(fh, start=1):
            if line.endswith(b"\n"):
                line = line[:-1]
            if number == 1 and stats["bom"]:
                line = line[3:]
            yield number, _decode_line(path, line, number, stats)
    except OSError as err:
        raise CorpusError(path, f"cannot read ({err.strerror or err})") from None


def _decode_line(path: Path, line: bytes, number: int, stats: dict) -> str:
    """One line (without its ``\\n``) as text: NUL bytes and invalid UTF-8 are errors naming the
    line; trailing CRs are removed and counted into ``stats['crlf_lines']``."""
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
    return text


def read_split_file(path: str | Path, max_tokens: int | None = None) -> RawSplit:
    """Read one corpus file: ``text`` or ``label<TAB>text`` per line.

    Blank lines are skipped (and counted). A line with a tab must have a non-empty label
    and non-empty text. If the file's first label is an integer, every label must be one
    (a stray non-integer label is an error naming its line). ``max_tokens`` drops longer
    sentences (counted; the paper's corpora are length-filtered the same way)."""
    sentences, labels, stats = [], [], {}
    for tokens, label in iter_split_file(path, max_tokens, stats):
        sentences.append(tokens)
        labels.append(label)
    return RawSplit(sentences, labels, stats["skipped_blank"], stats["skipped_long"], stats.get("bom", False),
                    stats.get("crlf_lines", 0))


def iter_split_file(path: str | Path, max_tokens: int | None = None, stats: dict | None = None,
                    tokenizer: str = "words") -> Iterator[tuple[list[str], str | None]]:
    """(tokens, label or ``None``) of each kept line of a corpus file, read line by line, with
    the checks of :func:`read_split_file`; ``stats`` receives ``skipped_blank``,
    ``skipped_long``, ``bom`` and ``crlf_lines``. The "no sentences" error comes at the end."""
    path = Path(path)
    stats = {} if stats is None else stats
    split_text = TOKENIZERS[tokenizer]
    n_kept, blank, long = 0, 0, 0
    first_label: tuple[int, str] | None = None   # (line, label) of the file's first label
    for number, line in read_lines(path, stats):
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
        tokens = split_text(text)
        if not tokens:
            blank += 1
            continue
        if max_tokens is not None and len(tokens) > max_tokens:
            long += 1
            continue
        n_kept += 1
        stats["skipped_blank"], stats["skipped_long"] = blank, long
        yield tokens, label
    stats["skipped_blank"], stats["skipped_long"] = blank, long
    if not n_kept:
        raise CorpusError(path, f"no sentences (empty file, or every line blank or too long: "
                                f"{blank} blank, {long} longer than max_tokens={max_tokens})")


def _is_int_label(label: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", label) is not None


def read_wordnet(max_tokens: int | None) -> dict[str, RawSplit]:
    """The built-in corpus: WordNet 3.0 glosses labelled by lexicographer file."""
    splits = {name: RawSplit([], []) for name in SPLITS}
    for split, tokens, lexname in iter_wordnet(max_tokens):
        splits[split].sentences.append(tokens)
        splits[split].labels.append(lexname)
    return splits


def iter_wordnet(max_tokens: int | None) -> Iterator[tuple[str, list[str], str]]:
    """(split, tokens, lexicographer file) of each kept gloss of the built-in corpus."""
    ref = resources.files("bnvae_core") / "corpora" / "wordnet_glosses.tsv.gz"
    with resources.as_file(ref) as path, gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            split, _pos, lexname, gloss = line.rstrip("\n").split("\t")
            tokens = tokenize(gloss)
            if tokens and (max_tokens is None or len(tokens) <= max_tokens):
                yield split, tokens, lexname


def read_raw_corpus(data: str | Path, max_tokens: int | None = None) -> dict[str, RawSplit]:
    """Tokenized train/valid/test of ``data``: ``'wordnet'`` or a corpus directory."""
    if str(data) in BUILTIN_CORPORA:
        return read_wordnet(max_tokens)
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
    #: how the text was split into tokens (``'words'`` or ``'whitespace'``)
    tokenizer: str = "words"
    #: the limits it was read with (None: no limit), see :func:`load_corpus`
    limits: dict = field(default_factory=dict)

    def selection_notes(self) -> list[str]:
        """One line per split whose sentences were not all used (long ones dropped, a seeded subset
        taken), e.g. ``'train: 8,000 of 105,874 sentences (a seeded subset, max_train=8000)'``."""
        notes = []
        for name, info in self.reading.items():
            read, kept, long = info.get("sentences_read"), info.get("sentences_kept"), info.get("skipped_long", 0)
            parts = []
            if read is not None and kept is not None and kept < read:
                limit = "max_train" if name == "train" else "max_eval"
                parts.append(f"{kept:,} of {read:,} sentences (a seeded subset, {limit}={self.limits.get(limit)})")
            if long:
                parts.append(f"{long:,} sentences longer than max_tokens={self.limits.get('max_tokens')} dropped")
            if parts:
                notes.append(f"{name}: " + "; ".join(parts))
        return notes

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
                seed: int = 0, vocab: Vocab | None = None, tokenizer: str = "words") -> Corpus:
    """Read, tokenize and encode ``data`` (``'wordnet'`` or a corpus directory).

    ``tokenizer``: ``'words'`` (:func:`tokenize`) or ``'whitespace'`` (:func:`tokenize_whitespace`;
    the built-in corpus is always read with ``words``). ``max_tokens`` drops longer sentences;
    ``max_train`` / ``max_eval`` keep a seeded random subset of train / of valid and test;
    the vocabulary is built from the (kept) training sentences unless ``vocab`` is given.
    Labels seen only outside train get their own ids after train's (they can be evaluated
    but a classifier trained on train never predicts them).

    Memory: files are read line by line and each sentence is turned into ids at once
    (:class:`_SplitCollector`: provisional ids, one per distinct word, in growing int32
    arrays), so no split is ever held as lists of tokens. After reading, the subsets are
    taken on the arrays, the vocabulary is built from the counts of the kept training ids
    (``np.bincount``) and the provisional ids are mapped to vocabulary ids with one look-up
    table. The result equals encoding the token lists (the previous implementation)."""
    types: dict[str, int] = {}            # word → provisional id, shared by the splits
    label_codes: dict[str, int] = {}      # label → provisional code, shared by the splits
    collectors = {name: _SplitCollector(types, label_codes) for name in SPLITS}
    reading = {n: {"skipped_blank": 0, "skipped_long": 0, "bom": False, "crlf_lines": 0} for n in SPLITS}
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    if str(data) in BUILTIN_CORPORA:
        tokenizer = "words"
        for split, tokens, label in iter_wordnet(max_tokens):
            collectors[split].add(tokens, label)
    else:
        root = Path(data)
        if not root.is_dir():
            raise CorpusError(root, "no such corpus directory (and not a built-in corpus name: "
                                    f"{', '.join(BUILTIN_CORPORA)})")
        for name in SPLITS:
            stats: dict = {}
            for tokens, label in iter_split_file(root / f"{name}.txt", max_tokens, stats, tokenizer):
                collectors[name].add(tokens, label)
            reading[name].update({k: stats[k] for k in reading[name]})
    rng = np.random.default_rng(seed)
    provisional = {}
    for name, limit in (("train", max_train), ("valid", max_eval), ("test", max_eval)):
        split = collectors[name].finish()
        reading[name]["sentences_read"] = len(split)
        if limit is not None and len(split) > limit:
            split = _take_sorted(split, np.sort(rng.choice(len(split), size=limit, replace=False)))
        provisional[name] = split
    words = list(types)                   # provisional id → word
    del types
    if vocab is None:
        vocab = _train_vocab(words, provisional["train"].ids, min_freq, max_vocab)
    to_vocab = np.fromiter((vocab.stoi.get(w, vocab.unk) for w in words), dtype=np.int32, count=len(words))
    del words
    label_names, to_label = _label_order(provisional, label_codes)
    splits = {}
    for name, s in provisional.items():
        for start in range(0, len(s.ids), 1 << 20):          # in place, in chunks: no second copy of the ids
            s.ids[start:start + (1 << 20)] = to_vocab[s.ids[start:start + (1 << 20)]]
        splits[name] = EncodedSplit(s.ids, s.offsets, to_label[s.labels])
    for name in SPLITS:
        reading[name]["sentences_kept"] = len(splits[name])
    return Corpus(vocab, label_names, splits, {n: reading[n]["skipped_blank"] for n in SPLITS}, reading,
                  tokenizer=tokenizer, limits=dict(max_tokens=max_tokens, max_train=max_train, max_eval=max_eval,
                                                   min_freq=min_freq, max_vocab=max_vocab))


def _train_vocab(words: list[str], train_ids: np.ndarray, min_freq: int, max_vocab: int | None) -> Vocab:
    """The vocabulary of the kept training sentences, from the counts of their provisional ids."""
    counts = np.zeros(len(words), dtype=np.int64)
    for start in range(0, len(train_ids), 1 << 20):     # chunks: bincount copies its input to int64
        counts += np.bincount(train_ids[start:start + (1 << 20)], minlength=len(words))
    return Vocab.from_counts({words[i]: int(counts[i]) for i in np.flatnonzero(counts)},
                             min_freq=min_freq, max_size=max_vocab)


def _label_order(provisional: dict, label_codes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """Label names — train's labels (sorted) first, then those seen only in valid/test — and the
    look-up table from provisional label codes to their index (last entry: code −1, unlabelled)."""
    label_of = list(label_codes)          # provisional code → label
    seen: list[int] = []
    train_codes: set[int] = set()
    for name in SPLITS:
        codes = provisional[name].labels
        present, first = np.unique(codes[codes >= 0], return_index=True)
        for code in present[np.argsort(first, kind="stable")]:
            if int(code) not in seen:
                seen.append(int(code))
        if name == "train":
            train_codes = {int(c) for c in present}
    train_labels = [label_of[c] for c in seen if c in train_codes]
    label_names = sorted(train_labels, key=_label_key) + sorted(
        [label_of[c] for c in seen if c not in train_codes], key=_label_key)
    to_label = np.full(len(label_of) + 1, -1, dtype=np.int64)
    for i, x in enumerate(label_names):
        to_label[label_codes[x]] = i
    return label_names, to_label


_CORPUS_CACHE: dict[tuple, Corpus] = {}


def builtin_corpus_file() -> Path:
    """The file of the built-in corpus (``bnvae_core/corpora/wordnet_glosses.tsv.gz``)."""
    return Path(str(resources.files("bnvae_core") / "corpora" / "wordnet_glosses.tsv.gz"))


def data_files(data: str | Path) -> list[Path]:
    """The files a corpus (or dialogue) directory is read from: ``train/valid/test`` ``.txt`` and
    ``.jsonl`` that exist; for the built-in corpus its packaged file; else none."""
    if str(data) in BUILTIN_CORPORA:
        return [builtin_corpus_file()]
    root = Path(data).expanduser()
    return [root / f"{s}{ext}" for s in SPLITS for ext in (".txt", ".jsonl") if (root / f"{s}{ext}").is_file()]


def files_signature(data: str | Path) -> tuple:
    """(name, size, mtime, inode) of :func:`data_files`: part of the per-process memo's key, so a
    file changed on disk is read again, never served from memory."""
    out = []
    for p in data_files(data):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def content_digest(*parts) -> str:
    """16 hex of the sha256 of splits (:class:`EncodedSplit`, or any with ``responses``/``utterances``)
    and arrays: the exact data a cached result was computed on, in a cache key."""
    digest = hashlib.sha256()
    for part in parts:
        if hasattr(part, "responses"):
            arrays = (part.responses.ids, part.responses.offsets, part.responses.labels, part.utterances.ids,
                      part.utterances.offsets, part.context_offsets)
        elif hasattr(part, "ids") and hasattr(part, "offsets"):
            arrays = (part.ids, part.offsets, part.labels)
        else:
            arrays = (np.asarray(part),)
        for a in arrays:
            digest.update(np.ascontiguousarray(a).tobytes())
            digest.update(b"|")
    return digest.hexdigest()[:16]


def cached_corpus(data: str | Path, *, max_tokens: int | None, max_train: int | None, max_eval: int | None,
                  min_freq: int, max_vocab: int | None, tokenizer: str = "words") -> Corpus:
    """:func:`load_corpus` with ``seed=0``, memoised per process on its arguments and on the files'
    size and modification time (the notebooks and the trainer share one corpus object per setting;
    a file changed on disk is read again)."""
    key = (str(data), max_tokens, max_train, max_eval, min_freq, max_vocab, tokenizer, files_signature(data))
    if key not in _CORPUS_CACHE:
        _CORPUS_CACHE[key] = load_corpus(data, max_tokens=max_tokens, max_train=max_train, max_eval=max_eval,
                                         min_freq=min_freq, max_vocab=max_vocab, seed=0, tokenizer=tokenizer)
    return _CORPUS_CACHE[key]


class _SplitCollector:
    """One split being read: provisional word ids (``array('i')``, int32), sentence lengths and
    label codes, appended sentence by sentence; the word → id and label → code dicts are shared."""

    def __init__(self, types: dict[str, int], label_codes: dict[str, int]):
        self.types, self.label_codes = types, label_codes
        self.ids, self.lengths, self.labels = array("i"), array("q"), array("q")

    def add(self, tokens: Sequence[str], label: str | None) -> None:
        types = self.types
        self.ids.extend([types.setdefault(t, len(types)) for t in tokens])
        self.lengths.append(len(tokens))
        self.labels.append(-1 if label is None else self.label_codes.setdefault(label, len(self.label_codes)))

    def finish(self) -> EncodedSplit:
        """An :class:`EncodedSplit` of provisional ids (the ids array is a view of the collected
        ``array('i')``, not a copy); the collector starts empty again."""
        ids = np.frombuffer(self.ids, dtype=np.int32) if len(self.ids) else np.zeros(0, np.int32)
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        labels = np.frombuffer(self.labels, dtype=np.int64).copy()
        self.ids, self.lengths, self.labels = array("i"), array("q"), array("q")
        return EncodedSplit(ids, offsets, labels)


def _take_sorted(split: EncodedSplit, keep: np.ndarray) -> EncodedSplit:
    """The sentences ``keep`` (sorted indices) of ``split``, without a Python loop over sentences."""
    lengths = split.lengths[keep]
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    mask = np.zeros(len(split), dtype=bool)
    mask[keep] = True
    return EncodedSplit(split.ids[np.repeat(mask, split.lengths)], offsets, split.labels[keep])


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
