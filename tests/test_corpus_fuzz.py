"""Messy corpora: every bad input either loads cleanly (and says what it tolerated) or raises one
:class:`~bnvae_core.data.CorpusError` that names the file and the line — never anything else.

The parametrized cases are the catalogue of issue 9; the hypothesis properties throw random
bytes and random ``label<TAB>text`` mixtures at the reader.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnvae_core.data.corpus import SPLITS, load_corpus, read_split_file
from bnvae_core.errors import CorpusError

GOOD = "1\tthe cat sat\n2\ta dog ran\n1\tthe dog sat\n"


# --- catalogue: clear errors ------------------------------------------------------------------

@pytest.mark.parametrize("case, files, bad_file, message, line", [
    ("empty file", {"train": b""}, "train.txt", "no sentences", None),
    ("only blank lines", {"train": b"\n   \n\t\n\r\n"}, "train.txt", "4 blank", None),
    ("non-UTF-8 bytes", {"valid": b"1\tok\n2\tfine\n1\tcaf\xe9 au lait\n"}, "valid.txt", "not valid UTF-8", 3),
    ("label line without text", {"train": b"1\tthe cat\n2\t   \n"}, "train.txt", "has no text", 2),
    ("empty label", {"train": b"1\tthe cat\n\tno label\n"}, "train.txt", "empty label", 2),
    ("non-parsable label", {"test": b"1\tthe cat\n2\ta dog\nx2\tthe bird\n"}, "test.txt",
     "is not an integer", 3),
    ("two tabs", {"train": b"1\tthe cat\n1\tthe\tcat\n"}, "train.txt", "more than one tab", 2),
    ("binary file", {"train": bytes(range(256)) * 8}, "train.txt", "binary", None),
    ("NUL byte late in a text file", {"train": b"the cat\n" * 2000 + b"a\x00b\n"}, "train.txt", "NUL", 2001),
    ("UTF-16 file", {"train": "the cat sat\n".encode("utf-16")}, "train.txt", "UTF-16", None),
    ("every line too long", {"train": b"one two three four\n" * 3}, "train.txt",
     "3 longer than max_tokens=2", None),
])
def test_bad_corpus_raises_one_clear_error(tmp_path, case, files, bad_file, message, line):
    root = write_corpus(tmp_path / "c", GOOD)
    for split, content in files.items():
        (root / f"{split}.txt").write_bytes(content)
    max_tokens = 2 if case == "every line too long" else 30
    with pytest.raises(CorpusError) as err:
        load_corpus(root, max_tokens=max_tokens, min_freq=1)
    text = str(err.value)
    assert str(root / bad_file) in text and message in text, text
    assert err.value.line == line and err.value.path == str(root / bad_file)
    if line is not None:
        assert f"line {line}:" in text


def test_missing_directory_and_missing_split_file(tmp_path):
    with pytest.raises(CorpusError, match="no such corpus directory"):
        load_corpus(tmp_path / "nope")
    root = write_corpus(tmp_path / "c", GOOD)
    (root / "test.txt").unlink()
    with pytest.raises(CorpusError, match=r"test\.txt: file not found"):
        load_corpus(root)
    (root / "test.txt").mkdir()
    with pytest.raises(CorpusError, match=r"test\.txt: not a regular file"):
        load_corpus(root)


# --- catalogue: clean loads that report what they tolerated -------------------------------------

def test_bom_crlf_and_blank_lines_load_and_are_counted(tmp_path):
    root = write_corpus(tmp_path / "c", b"\xef\xbb\xbf1\tthe cat\r\n\r\n2\ta dog\r\n\n\n1\tthe dog\n")
    c = load_corpus(root, min_freq=1)
    assert len(c.train) == 3 and c.label_names == ["1", "2"]
    assert [c.vocab.decode(c.train.sentence(i)) for i in range(3)] == [["the", "cat"], ["a", "dog"], ["the", "dog"]]
    assert c.reading["train"] == {"skipped_blank": 3, "skipped_long": 0, "bom": True, "crlf_lines": 3,
                                  "sentences_read": 3, "sentences_kept": 3}
    assert c.skipped_blank["train"] == 3


def test_label_seen_only_in_test_gets_an_id_after_trains(tmp_path):
    root = write_corpus(tmp_path / "c", GOOD, test="7\tthe cat\n1\ta dog\n")
    c = load_corpus(root, min_freq=1)
    assert c.label_names == ["1", "2", "7"]          # train's labels first, then the unseen one
    assert set(c.train.labels.tolist()) == {0, 1} and c.test.labels.tolist() == [2, 0]


def test_ten_thousand_token_line(tmp_path):
    long_line = " ".join(["word"] * 10_000)
    root = write_corpus(tmp_path / "c", f"1\tthe cat\n2\t{long_line}\n1\ta dog\n")
    c = load_corpus(root, max_tokens=30, min_freq=1)     # dropped and counted
    assert len(c.train) == 2 and c.reading["train"]["skipped_long"] == 1
    c = load_corpus(root, max_tokens=None, min_freq=1)   # kept when there is no limit
    assert int(c.train.lengths.max()) == 10_000


def test_string_labels_and_unlabelled_lines_mix(tmp_path):
    """String labels are allowed (only a file that *starts* with integer labels must keep them);
    an unlabelled line in a labelled file gets label -1."""
    root = write_corpus(tmp_path / "c", "noun.animal\tthe cat\nverb.motion\ta dog ran\njust text\n")
    c = load_corpus(root, min_freq=1)
    assert c.label_names == ["noun.animal", "verb.motion"] and c.train.labels.tolist() == [0, 1, -1]


@pytest.mark.parametrize("labels", [["²", "1"], ["--5", "3"], ["-", "-1"], ["١٢", "7"]])
def test_odd_label_strings_sort_without_crashing(tmp_path, labels):
    root = write_corpus(tmp_path / "c", "".join(f"{lab}\tthe cat\n" for lab in labels))
    assert sorted(load_corpus(root, min_freq=1).label_names) == sorted(labels)


# --- properties ------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check_raw(raw) -> None:
    assert len(raw.sentences) == len(raw.labels) > 0
    assert all(sent and all(tok and not tok.isspace() for tok in sent) for sent in raw.sentences)
    assert all(lab is None or (lab and "\t" not in lab) for lab in raw.labels)


@FUZZ
@given(st.binary(max_size=600) | st.lists(st.sampled_from(
    [b"\n", b"\r\n", b"\t", b"1", b"-", b"a b", b"\xef\xbb\xbf", b"\xff", b"\x00", b"\xc3\xa9", b" "]),
    max_size=60).map(b"".join))
def test_random_bytes_load_or_raise_corpus_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_bytes(data)
        try:
            raw = read_split_file(path, max_tokens=30)
        except CorpusError as err:
            assert str(path) in str(err)
        else:
            _check_raw(raw)


_LABEL = st.sampled_from(["", " ", "1", "2", "-3", "10", "x", "noun.animal", "²", "--5", "-", "١٢", "a b"])
_TEXT = st.sampled_from(["", " ", "the cat sat", "a dog", "!!", "Ünïcödé wörds", "x " * 40, "\u2028",
                         "tab\there", "\x0c"]) | st.text(max_size=20)
_LINE = st.tuples(st.booleans(), _LABEL, _TEXT, st.sampled_from(["\n", "\r\n"])).map(
    lambda t: (f"{t[1]}\t{t[2]}" if t[0] else t[2]) + t[3])
_FILE = st.tuples(st.booleans(), st.lists(_LINE, max_size=12)).map(
    lambda t: ("\ufeff" if t[0] else "") + "".join(t[1]))


@FUZZ
@given(st.fixed_dictionaries({name: _FILE for name in SPLITS}), st.sampled_from([None, 5, 30]))
def test_random_label_text_mixtures_load_or_raise_corpus_error(files, max_tokens):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_corpus(Path(tmp) / "c", files["train"], files["valid"], files["test"])
        try:
            c = load_corpus(root, max_tokens=max_tokens, min_freq=1)
        except CorpusError as err:
            assert str(root) in str(err)
            return
        n_train_labels = len({lab for lab in c.train.labels.tolist() if lab >= 0})
        for split in c.splits.values():
            assert len(split) > 0 and (split.lengths > 0).all()
            assert ((split.labels >= -1) & (split.labels < len(c.label_names))).all()
            assert np.array_equal(split.offsets[1:] - split.offsets[:-1], split.lengths)
        assert (c.train.labels < n_train_labels).all()   # train's labels come first
