"""Data of the conditional VAE: (context, response) pairs, their file format, and converters.

Format
------
A *dialogue directory* holds ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl``, one JSON
object per line::

    {"context": ["hi , how are you ?", "fine , and you ?"], "response": "good , thanks ."}

``context`` lists the utterances before the response, oldest first (a single string is read as
a one-utterance context); ``response`` is the text to generate. Extra keys are ignored (the
converters below keep speakers, topics or dialogue acts in them). Blank lines are skipped. A
line that is not such an object raises :class:`bnvae_core.errors.CorpusError` naming the file and
the line.

Reading follows the model of Zhao et al. (2017, §4): only the last ``max_context`` utterances of
a context are kept (their ``backward_size`` is 10), and every utterance — context or response —
is cut to its first ``max_tokens`` tokens (their ``max_utt_len``). Responses are *truncated*,
not dropped, so no turn of a dialogue disappears; the plain-text corpora of
:mod:`bnvae_core.data.corpus` drop long sentences instead.

Sources
-------
* ``data="wordnet"`` — **label-conditioned WordNet** (built in, needs nothing): the response is
  a gloss of the built-in corpus and the context is one utterance, its lexicographer label
  (``"noun.animal"``, tokenized ``noun . animal``). The kept sentences are the ones
  :func:`bnvae_core.data.corpus.load_corpus` keeps for the same sizes, so CVAE and VAE runs see the same glosses.
* ``data="chatterbot"`` (or ``"chatterbot:LANGUAGE"``) — the English (or other) conversations of
  the BSD-3-licensed ``chatterbot-corpus`` package (``pip install 'bnvae-core[dialogue]'``), read in
  memory; :func:`convert_chatterbot` writes the same pairs as a dialogue directory.
* :func:`convert_switchboard` — the SwitchBoard pickle of Zhao et al. 2017
  (``full_swda_clean_42da_sentiment_dialog_corpus.p``), for users who have it.

Encoding
--------
A :class:`DialogueSplit` keeps the responses as a :class:`~bnvae_core.data.corpus.EncodedSplit` (so the
length-bucketed batcher of :mod:`bnvae_core.data.corpus` works on it unchanged) and all context utterances
as a second one, with ``context_offsets`` saying which utterances belong to which example.
:meth:`DialogueSplit.make_batch` gives a :class:`DialogueBatch`: the response batch plus the
padded context tensor ``(B, U, T)``.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, CorpusError
from .corpus import (
    SPLITS,
    Batch,
    Corpus,
    EncodedSplit,
    Vocab,
    effective_limits,
    files_signature,
    make_batch,
    read_lines,
    read_wordnet,
    tokenize,
)

INSTALL_HINT = "pip install 'bnvae-core[dialogue]' (or: pip install chatterbot-corpus pyyaml)"


@dataclass
class RawDialogues:
    """Tokenized examples of one split: ``contexts[i]`` is a list of utterances (token lists),
    ``responses[i]`` a token list, ``labels[i]`` a condition label or ``None``."""
    contexts: list[list[list[str]]] = field(default_factory=list)
    responses: list[list[str]] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)

    def append(self, context, response, label=None) -> None:
        self.contexts.append(context)
        self.responses.append(response)
        self.labels.append(label)

    def __len__(self) -> int:
        return len(self.responses)

    def subset(self, keep: Sequence[int]) -> "RawDialogues":
        return RawDialogues([self.contexts[i] for i in keep], [self.responses[i] for i in keep],
                            [self.labels[i] for i in keep])


def _cut(tokens: list[str], max_tokens: int | None) -> list[str]:
    return tokens if max_tokens is None else tokens[:max_tokens]


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def parse_example(obj, *, max_tokens: int | None = None,
                  max_context: int | None = None) -> tuple[list[list[str]], list[str]]:
    """Tokenized ``(context, response)`` of one decoded JSON line; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError('expected a JSON object {"context": [...], "response": "..."}, '
                         f"got {_type_name(obj)}")
    missing = [key for key in ("context", "response") if key not in obj]
    if missing:
        raise ValueError(f"missing key {' and '.join(repr(k) for k in missing)} "
                         '(each line is {"context": [...], "response": "..."})')
    context, response = obj["context"], obj["response"]
    if isinstance(context, str):
        context = [context]
    if not isinstance(context, list):
        raise ValueError(f"'context' must be a list of strings, got {_type_name(context)}")
    if not context:
        raise ValueError("'context' is empty: give at least one utterance")
    utterances = []
    for k, utt in enumerate(context, start=1):
        if not isinstance(utt, str):
            raise ValueError(f"context utterance {k} must be a string, got {_type_name(utt)}")
        tokens = tokenize(utt)
        if not tokens:
            raise ValueError(f"context utterance {k} is empty")
        utterances.append(_cut(tokens, max_tokens))
    if not isinstance(response, str):
        raise ValueError(f"'response' must be a string, got {_type_name(response)}")
    tokens = tokenize(response)
    if not tokens:
        raise ValueError("'response' is empty")
    if max_context is not None:
        utterances = utterances[-max_context:]
    return utterances, _cut(tokens, max_tokens)


def read_dialogue_file(path: str | Path, *, max_tokens: int | None = None,
                       max_context: int | None = None) -> RawDialogues:
    """Read one ``.jsonl`` file of the format above (UTF-8; BOM and CRLF tolerated).

    Raises :class:`CorpusError` naming the file and line of the first bad line, or the file if
    it holds no example."""
    path = Path(path)
    out = RawDialogues()
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(path, f"not valid JSON ({err.msg}, column {err.colno})", number) from None
        try:
            context, response = parse_example(obj, max_tokens=max_tokens, max_context=max_context)
        except ValueError as err:
            raise CorpusError(path, str(err), number) from None
        out.append(context, response)
    if not len(out):
        raise CorpusError(path, "no examples (empty file, or every line blank)")
    return out


def write_dialogue_file(path: str | Path, examples: Sequence[dict]) -> int:
    """Write ``examples`` (dicts with at least ``context`` and ``response``) as one JSON line each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")
    return len(examples)


def label_context(label: str) -> list[str]:
    """The context of the label-conditioned corpus: one utterance, the label itself."""
    return [label]


def _wordnet_dialogues(max_tokens: int | None) -> dict[str, RawDialogues]:
    out = {}
    for name, split in read_wordnet(max_tokens).items():
        out[name] = RawDialogues([[tokenize(lab)] for lab in split.labels], split.sentences, list(split.labels))
    return out


def chatterbot_conversations(language: str = "english",
                             source: str | Path | None = None) -> list[tuple[str, list[str]]]:
    """``(file name, turns)`` of every conversation in the chatterbot-corpus YAML files.

    ``source``: a directory of ``*.yml`` files in the package's format (``categories:`` and
    ``conversations:``, a list of lists of turns); default: the installed package's
    ``data/<language>``. Turns that are numbers are read as text; empty turns end a conversation
    there (what follows cannot be a response to what precedes); a conversation that is not a list
    is skipped with a warning naming the file (the English data has one). Raises
    :class:`CorpusError` naming the file (and line) for YAML that is not in this format."""
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"reading chatterbot-corpus needs PyYAML: {INSTALL_HINT}") from None
    if source is None:
        try:
            import chatterbot_corpus
        except ImportError:
            raise ConfigError(f"data 'chatterbot' needs the chatterbot-corpus package: {INSTALL_HINT}") from None
        source = Path(chatterbot_corpus.__file__).parent / "data" / language
    source = Path(source)
    if not source.is_dir():
        raise CorpusError(source, "no such directory of chatterbot-corpus YAML files")
    files = sorted(source.glob("*.yml")) + sorted(source.glob("*.yaml"))
    if not files:
        raise CorpusError(source, "no *.yml files")
    conversations = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise CorpusError(path, f"not valid UTF-8 ({err.reason})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            raise CorpusError(path, f"not valid YAML ({getattr(err, 'problem', None) or err})",
                              mark.line + 1 if mark is not None else None) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise CorpusError(path, "expected a mapping with a 'conversations' list (chatterbot-corpus format)")
        for k, conv in enumerate(doc["conversations"], start=1):
            if not isinstance(conv, list):   # e.g. a missing '- ' in the YAML: skip it, say so
                warnings.warn(f"{path}: conversation {k} is not a list of turns; skipped", stacklevel=2)
                continue
            turns = []
            for turn in conv:
                if isinstance(turn, (dict, list)):
                    raise CorpusError(path, f"conversation {k}: a turn is {_type_name(turn)}, expected text")
                text = "" if turn is None else str(turn).strip()
                if not text or not tokenize(text):
                    break
                turns.append(text)
            if len(turns) >= 2:
                conversations.append((path.name, turns))
    return conversations


def conversation_examples(turns: Sequence[str], max_context: int | None = 10) -> list[dict]:
    """Every turn after the first as a response to the (last ``max_context``) turns before it."""
    start = 0
    out = []
    for t in range(1, len(turns)):
        if max_context is not None:
            start = max(0, t - max_context)
        out.append({"context": list(turns[start:t]), "response": turns[t]})
    return out


def split_conversations(n: int, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                        seed: int = 0) -> list[str]:
    """Split name of each of ``n`` conversations: a seeded permutation cut into train/valid/test.
    Whole conversations go to one split, so no context is shared between train and test."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid, n_test = int(round(n * valid_fraction)), int(round(n * test_fraction))
    names = ["train"] * n
    for rank, i in enumerate(order):
        names[i] = "valid" if rank < n_valid else "test" if rank < n_valid + n_test else "train"
    return names


def chatterbot_examples(language: str = "english", source: str | Path | None = None,
                        max_context: int | None = 10, valid_fraction: float = 0.1,
                        test_fraction: float = 0.1, seed: int = 0) -> dict[str, list[dict]]:
    """The chatterbot-corpus conversations as ``{"train"|"valid"|"test": [example dicts]}``; each example
    also has ``"source"`` (the YAML file, i.e. the category) and ``"conversation"`` (its index)."""
    convs = chatterbot_conversations(language, source)
    names = split_conversations(len(convs), valid_fraction, test_fraction, seed)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for i, ((fname, turns), name) in enumerate(zip(convs, names)):
        for ex in conversation_examples(turns, max_context):
            out[name].append({**ex, "source": fname, "conversation": i})
    return out


def convert_chatterbot(out_dir: str | Path, language: str = "english", source: str | Path | None = None,
                       max_context: int | None = 10, valid_fraction: float = 0.1,
                       test_fraction: float = 0.1, seed: int = 0) -> dict[str, int]:
    """Write the chatterbot-corpus (BSD-3, ``pip install 'bnvae-core[dialogue]'``) as a dialogue directory.

    Each conversation ``[t₁, t₂, …, t_m]`` of the YAML files gives the pairs
    ``(context=[t₁…t_{k−1}], response=t_k)`` for k = 2…m (the last ``max_context`` turns kept);
    whole conversations are assigned to train/valid/test by a seeded permutation (80/10/10 by
    default). Returns the number of examples per split. The English data has about 2,000
    conversations, 2,400 pairs: small enough to train on a laptop, with many contexts that have
    several different answers (what a CVAE is for)."""
    examples = chatterbot_examples(language, source, max_context, valid_fraction, test_fraction, seed)
    out_dir = Path(out_dir)
    if any(not examples[name] for name in SPLITS):
        raise CorpusError(out_dir, "too few conversations to fill train, valid and test: "
                                   f"{', '.join(f'{n}: {len(examples[n])}' for n in SPLITS)}")
    return {name: write_dialogue_file(out_dir / f"{name}.jsonl", examples[name]) for name in SPLITS}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Loads plain data (dicts, lists, strings, numbers and numpy arrays) and refuses anything else:
    a pickle can run arbitrary code when loaded, this one cannot."""
    ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes",
                                         "int", "float", "bool", "complex")} | {
        ("__builtin__", n) for n in ("dict", "list", "tuple", "set", "frozenset", "unicode", "str",
                                     "int", "long", "float", "bool", "complex")} | {
        ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain data is allowed)")
        if module == "__builtin__":
            module, name = "builtins", {"unicode": "str", "long": "int"}.get(name, name)
        if module == "copy_reg":
            module = "copyreg"
        return super().find_class(module, name)


def read_switchboard_pickle(path: str | Path) -> dict:
    """The SwitchBoard pickle of Zhao et al. 2017 (a Python 2 pickle: ``{"train"|"valid"|"test": [dialog]}``,
    each dialog a dict with ``"utts"``: a list of ``(caller, text, features)``, ``features`` being
    ``[dialog_act, sentiment]`` or ``None``; ``"topic"``, ``"A"``, ``"B"``: meta data). Only plain
    data is unpickled (:class:`_DataOnlyUnpickler`)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        data = _DataOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as err:  # truncated, not a pickle, or refused
        raise CorpusError(path, f"cannot read the SwitchBoard pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(s), list) for s in SPLITS):
        raise CorpusError(path, "expected a dict with 'train', 'valid' and 'test' lists of dialogs "
                                "(the pickle of Zhao et al. 2017)")
    return data


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def switchboard_examples(data: dict, path: str | Path = "<switchboard>",
                         max_context: int | None = 10) -> dict[str, list[dict]]:
    """(context, response) examples of every turn after the first of every dialog, with the extra keys
    ``speakers`` (callers of the context), ``response_speaker``, ``topic``, ``dialog_act`` (or null)
    and ``dialog`` (index in its split). Turns whose text is empty are left out of contexts and
    responses."""
    out: dict[str, list[dict]] = {}
    for name in SPLITS:
        rows = []
        for d, dialog in enumerate(data[name]):
            utts = dialog.get("utts") if isinstance(dialog, dict) else None
            if not isinstance(utts, list):
                raise CorpusError(path, f"{name} dialog {d}: no 'utts' list")
            turns = []
            for k, utt in enumerate(utts):
                if not isinstance(utt, (list, tuple)) or len(utt) < 2:
                    raise CorpusError(path, f"{name} dialog {d}, utterance {k}: expected (caller, text, features)")
                text = _text(utt[1]).strip()
                if text and tokenize(text):
                    feat = utt[2] if len(utt) > 2 else None
                    act = _text(feat[0]) if isinstance(feat, (list, tuple)) and feat else None
                    turns.append((_text(utt[0]), text, act))
            for t in range(1, len(turns)):
                ctx = turns[max(0, t - max_context) if max_context else 0:t]
                rows.append({"context": [u[1] for u in ctx], "response": turns[t][1],
                             "speakers": [u[0] for u in ctx], "response_speaker": turns[t][0],
                             "topic": _text(dialog.get("topic", "")), "dialog_act": turns[t][2], "dialog": d})
        out[name] = rows
    return out


def convert_switchboard(pickle_path: str | Path, out_dir: str | Path,
                        max_context: int | None = 10) -> dict[str, int]:
    """Convert the SwitchBoard pickle of Zhao et al. 2017 into a dialogue directory.

    Every utterance after the first of a dialog becomes a response to the (up to ``max_context``,
    Zhao's ``backward_size``) utterances before it, as in their data loader (which also uses the
    first utterance, with a start-of-dialog token as context; here it is only context). The
    original keeps the text as written; tokenization happens when the directory is read.
    Returns the number of examples per split."""
    examples = switchboard_examples(read_switchboard_pickle(pickle_path), pickle_path, max_context)
    return {name: write_dialogue_file(Path(out_dir) / f"{name}.jsonl", examples[name]) for name in SPLITS}


@dataclass
class DialogueBatch(Batch):
    """A :class:`~bnvae_core.data.corpus.Batch` of responses plus their contexts:
    ``context`` (B, U, T) utterance token ids padded with 0 (U = most utterances in the batch,
    T = longest utterance); ``context_lengths`` (B, U) tokens per utterance (0 for padding
    utterances, which come after the real ones); ``context_sizes`` (B,) utterances per example."""
    context: torch.Tensor
    context_lengths: torch.Tensor
    context_sizes: torch.Tensor

    def to(self, device) -> "DialogueBatch":
        return DialogueBatch(self.tokens.to(device, non_blocking=True), self.lengths.to(device),
                             self.labels.to(device), self.index, self.context.to(device, non_blocking=True),
                             self.context_lengths.to(device), self.context_sizes.to(device))


@dataclass
class DialogueSplit:
    """Encoded examples of one split. ``responses``: the responses (with the labels);
    ``utterances``: all context utterances in order; example ``i``'s context is utterances
    ``context_offsets[i]`` to ``context_offsets[i+1]``.

    It has what :func:`bnvae_core.data.corpus.bucket_batches` needs (``len``, ``lengths``), so batching by
    response length is the one of the plain corpora."""
    responses: EncodedSplit
    utterances: EncodedSplit
    context_offsets: np.ndarray    # (n + 1,) int64

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def lengths(self) -> np.ndarray:
        """(n,) response lengths in tokens, without ``</s>``."""
        return self.responses.lengths

    @property
    def labels(self) -> np.ndarray:
        return self.responses.labels

    @property
    def n_tokens(self) -> int:
        """Predicted response tokens: words plus one ``</s>`` each (the PPL denominator)."""
        return self.responses.n_tokens

    def sentence(self, i: int) -> np.ndarray:
        """Token ids of response ``i``."""
        return self.responses.sentence(i)

    def context(self, i: int) -> list[np.ndarray]:
        """Token ids of the utterances of context ``i``, oldest first."""
        return [self.utterances.sentence(int(k))
                for k in range(self.context_offsets[i], self.context_offsets[i + 1])]

    def subset(self, index: Sequence[int]) -> "DialogueSplit":
        index = np.asarray(index, dtype=np.int64)
        utt_index = [k for i in index for k in range(self.context_offsets[i], self.context_offsets[i + 1])]
        sizes = np.diff(self.context_offsets)[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return DialogueSplit(self.responses.subset(index), self.utterances.subset(utt_index), offsets)

    def make_batch(self, index: Sequence[int]) -> DialogueBatch:
        index = np.asarray(index, dtype=np.int64)
        b = make_batch(self.responses, index)
        sizes = np.diff(self.context_offsets)[index]
        utt_lengths = self.utterances.lengths
        U = int(sizes.max())
        T = max(1, max(int(utt_lengths[self.context_offsets[i]:self.context_offsets[i + 1]].max()) for i in index))
        context = np.zeros((len(index), U, T), dtype=np.int64)
        lengths = np.zeros((len(index), U), dtype=np.int64)
        for row, i in enumerate(index):
            for u, k in enumerate(range(self.context_offsets[i], self.context_offsets[i + 1])):
                ids = self.utterances.sentence(int(k))
                context[row, u, :len(ids)] = ids
                lengths[row, u] = len(ids)
        return DialogueBatch(b.tokens, b.lengths, b.labels, b.index, torch.from_numpy(context),
                             torch.from_numpy(lengths), torch.from_numpy(sizes.astype(np.int64)))

    @classmethod
    def encode(cls, raw: RawDialogues, vocab: Vocab, label_index: dict[str, int]) -> "DialogueSplit":
        responses = EncodedSplit.from_sentences(raw.responses, raw.labels, vocab, label_index)
        flat = [utt for ctx in raw.contexts for utt in ctx]
        utterances = EncodedSplit.from_sentences(flat, [None] * len(flat), vocab, label_index)
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in raw.contexts], out=offsets[1:])
        return cls(responses, utterances, offsets)


@dataclass
class DialogueCorpus(Corpus):
    """An encoded dialogue corpus (``splits`` are :class:`DialogueSplit`). ``label_conditioned``:
    the context of every example is its label (:func:`label_context`), as for ``data="wordnet"``."""
    label_conditioned: bool = False

    def encode_context(self, utterances: Sequence[str]) -> tuple[list[np.ndarray], list[str]]:
        """Token ids of each utterance (cut to the reading's ``max_tokens``) and the words that are not
        in the vocabulary (read as ``<unk>``)."""
        ids, unknown = [], []
        for k, utt in enumerate(utterances, start=1):
            tokens = tokenize(utt)
            if not tokens:
                raise ConfigError(f"context utterance {k} is empty")
            unknown += [t for t in tokens if t not in self.vocab.stoi]
            ids.append(np.asarray(self.vocab.encode(tokens), dtype=np.int32))
        return ids, unknown

    def context_split(self, contexts: Sequence[Sequence[str]]) -> DialogueSplit:
        """A split of the given contexts (lists of utterance strings) with empty-response placeholders
        (one ``<unk>``), for sampling responses to contexts that are not in the data."""
        flat = [ids for ctx in contexts for ids in self.encode_context(ctx)[0]]
        offsets = np.zeros(len(contexts) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in contexts], out=offsets[1:])
        utt_off = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum([len(u) for u in flat], out=utt_off[1:])
        utterances = EncodedSplit(np.concatenate(flat).astype(np.int32) if flat else np.zeros(0, np.int32),
                                  utt_off, np.full(len(flat), -1, np.int64))
        n = len(contexts)
        responses = EncodedSplit(np.full(n, self.vocab.unk, np.int32), np.arange(n + 1, dtype=np.int64),
                                 np.full(n, -1, np.int64))
        return DialogueSplit(responses, utterances, offsets)


def read_raw_dialogues(data: str | Path, *, max_tokens: int | None = 30,
                       max_context: int | None = 10) -> tuple[dict[str, RawDialogues], bool]:
    """Tokenized splits of ``data`` and whether they are label-conditioned.

    ``data``: ``'wordnet'`` (label-conditioned glosses), ``'chatterbot'`` / ``'chatterbot:LANGUAGE'``
    (needs the ``dialogue`` extra), or a dialogue directory (``train.jsonl``, ``valid.jsonl``, ``test.jsonl``)."""
    data = str(data)
    if data == "wordnet":
        return _wordnet_dialogues(max_tokens), True
    if data == "chatterbot" or data.startswith("chatterbot:"):
        language = data.partition(":")[2] or "english"
        examples = chatterbot_examples(language, max_context=max_context)
        raw = {}
        for name in SPLITS:
            raw[name] = RawDialogues()
            for ex in examples[name]:
                raw[name].append(*parse_example(ex, max_tokens=max_tokens, max_context=max_context))
        return raw, False
    root = Path(data).expanduser()
    if not root.is_dir():
        raise CorpusError(root, "no such dialogue directory (and not one of: wordnet, chatterbot, "
                                "chatterbot:LANGUAGE)")
    if not (root / "train.jsonl").exists() and (root / "train.txt").exists():
        raise CorpusError(root, "holds train.txt, a plain-text corpus: conditional models read a dialogue "
                                "directory (train.jsonl, valid.jsonl, test.jsonl) or data 'wordnet'")
    return {name: read_dialogue_file(root / f"{name}.jsonl", max_tokens=max_tokens, max_context=max_context)
            for name in SPLITS}, False


_CACHE: dict[tuple, DialogueCorpus] = {}


def load_dialogue_corpus(data: str | Path, *, max_tokens: int | None = 30, max_train: int | None = None,
                         max_eval: int | None = None, min_freq: int = 2, max_vocab: int | None = 10000,
                         max_context: int | None = 10, seed: int = 0) -> DialogueCorpus:
    """Read, tokenize and encode ``data`` (see :func:`read_raw_dialogues`); memoised per process.

    ``max_train`` / ``max_eval`` keep a seeded subset of train / of valid and test, drawn exactly
    as :func:`bnvae_core.data.corpus.load_corpus` draws it (for ``'wordnet'`` the same glosses). The
    vocabulary counts the training responses and context utterances."""
    key = (str(data), max_tokens, max_train, max_eval, min_freq, max_vocab, max_context, seed, files_signature(data))
    if key in _CACHE:
        return _CACHE[key]
    raw, label_conditioned = read_raw_dialogues(data, max_tokens=max_tokens, max_context=max_context)
    rng = np.random.default_rng(seed)
    for name, limit in (("train", max_train), ("valid", max_eval), ("test", max_eval)):
        if limit is not None and len(raw[name]) > limit:
            raw[name] = raw[name].subset(np.sort(rng.choice(len(raw[name]), size=limit, replace=False)))
    train = raw["train"]
    vocab = Vocab.build(train.responses + [u for ctx in train.contexts for u in ctx],
                        min_freq=min_freq, max_size=max_vocab)
    seen = [lab for name in SPLITS for lab in raw[name].labels if lab is not None]
    label_names = sorted(set(train.labels) - {None}) + sorted(set(seen) - set(train.labels))
    index = {lab: i for i, lab in enumerate(label_names)}
    splits = {name: DialogueSplit.encode(raw[name], vocab, index) for name in SPLITS}
    corpus = DialogueCorpus(vocab, label_names, splits, {name: 0 for name in SPLITS},
                            label_conditioned=label_conditioned)
    _CACHE[key] = corpus
    return corpus


def corpus_for_config(config) -> DialogueCorpus:
    """The dialogue corpus a :class:`~bnvae_core.config.TrainConfig` of a conditional model trains on."""
    limits = effective_limits(config.data, max_tokens=config.max_tokens, max_train=config.max_train,
                              max_eval=config.max_eval, min_freq=config.min_freq, max_vocab=config.max_vocab)
    return load_dialogue_corpus(config.data, **limits, max_context=config.max_context, seed=0)


__all__ = ["RawDialogues", "DialogueBatch", "DialogueSplit", "DialogueCorpus", "read_dialogue_file",
           "write_dialogue_file", "parse_example", "label_context", "chatterbot_conversations",
           "chatterbot_examples", "conversation_examples", "convert_chatterbot", "read_switchboard_pickle",
           "switchboard_examples", "convert_switchboard", "read_raw_dialogues", "load_dialogue_corpus",
           "corpus_for_config"]
