"""Streaming load_corpus (issue 6): equal to encoding the token lists, and the memory bench runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_corpus

from bnvae_core.data.corpus import EncodedSplit, Vocab, load_corpus, read_raw_corpus

REPO = Path(__file__).resolve().parent.parent


def _reference(data, max_train, max_eval, min_freq, max_vocab, seed=0):
    """The list-based encoding that load_corpus streams (token lists → Vocab.build → from_sentences)."""
    raw = read_raw_corpus(data, None)
    rng = np.random.default_rng(seed)
    for name, limit in (("train", max_train), ("valid", max_eval), ("test", max_eval)):
        if limit is not None and len(raw[name].sentences) > limit:
            keep = np.sort(rng.choice(len(raw[name].sentences), size=limit, replace=False))
            raw[name].sentences = [raw[name].sentences[i] for i in keep]
            raw[name].labels = [raw[name].labels[i] for i in keep]
    vocab = Vocab.build(raw["train"].sentences, min_freq=min_freq, max_size=max_vocab)
    return vocab, raw


@pytest.mark.parametrize("max_train, max_eval, min_freq, max_vocab", [(None, None, 1, None), (7, 3, 2, 8), (5, None, 0, 6)])
def test_streamed_corpus_equals_list_encoding(tmp_path, max_train, max_eval, min_freq, max_vocab):
    train = "".join(f"{i % 3}\tthe cat {'sat ' * (i % 4)}on mat {i % 5}\n" for i in range(20))
    valid = "2\tthe dog sat\n0\tcats on mats\n7\ta new label\n1\tthe the the\n"
    root = write_corpus(tmp_path / "c", train, valid, "1\tmat\n\n0\tzebra cat\n")
    corpus = load_corpus(root, max_tokens=None, max_train=max_train, max_eval=max_eval, min_freq=min_freq,
                         max_vocab=max_vocab)
    vocab, raw = _reference(root, max_train, max_eval, min_freq, max_vocab)
    assert corpus.vocab.itos == vocab.itos
    index = {x: i for i, x in enumerate(corpus.label_names)}
    assert corpus.label_names[:3] == ["0", "1", "2"]
    for name in ("train", "valid", "test"):
        expected = EncodedSplit.from_sentences(raw[name].sentences, raw[name].labels, vocab, index)
        got = corpus.splits[name]
        assert got.ids.dtype == np.int32 and got.offsets.dtype == np.int64 and got.labels.dtype == np.int64
        assert np.array_equal(got.ids, expected.ids) and np.array_equal(got.offsets, expected.offsets)
        assert np.array_equal(got.labels, expected.labels)
    assert corpus.reading["test"]["skipped_blank"] == 1


def test_memory_bench_runs(tmp_path):
    out = tmp_path / "mem.csv"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "memory_corpus.py"), "--sizes", "2000",
                           "--work", str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["train_sentences"] == 2000 and row["batches"] == 2000 // 32 + (2000 % 32 > 1)
    assert row["load_peak_mb"] >= 0 and row["ids_mb"] > 0
    assert out.is_file() and out.with_suffix(".md").is_file()
