import numpy as np
import pytest
from conftest import write_corpus

from bnvae_core.data.corpus import (
    Vocab,
    bucket_batches,
    load_corpus,
    make_batch,
    read_split_file,
    tokenize,
)
from bnvae_core.errors import CorpusError


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A dog's bark (loud)!") == ["a", "dog's", "bark", "(", "loud", ")", "!"]


def test_vocab_specials_frequency_order_and_unk():
    v = Vocab.build([["b", "a", "b"], ["c", "b", "a"]], min_freq=2)
    assert v.itos[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert v.itos[4:] == ["b", "a"]          # by frequency
    assert v.encode(["a", "zzz"]) == [5, 3]
    assert v.decode([5, 4, 2, 5]) == ["a", "b"]  # stops at </s>


def test_builtin_wordnet_has_labels_and_disjoint_splits():
    c = load_corpus("wordnet", max_train=2000, max_eval=200)
    assert len(c.train) == 2000 and len(c.valid) == 200 and len(c.test) == 200
    assert "noun.animal" in c.label_names and (c.train.labels >= 0).all()
    assert c.train.n_tokens == int(c.train.lengths.sum()) + 2000


def test_directory_corpus_with_labels(tmp_path):
    root = write_corpus(tmp_path / "c", "1\tgood food here\n0\tbad service\n\n1\tnice place\n")
    c = load_corpus(root, min_freq=1)
    assert c.label_names == ["0", "1"]
    assert list(c.train.labels) == [1, 0, 1]
    assert c.skipped_blank["train"] == 1


@pytest.mark.parametrize("content, message, line", [
    (b"", "no sentences", None),
    (b"\n\n  \n", "no sentences", None),
    (b"ok line\n\xff\xfe bad\n", "UTF-8", 2),
    (b"ok\n\tno label\n", "empty label", 2),
    (b"ok\nlabel\t\n", "no text", 2),
    (b"a\x00b binary", "binary", None),
])
def test_bad_corpus_files_name_file_and_line(tmp_path, content, message, line):
    path = tmp_path / "train.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError) as err:
        read_split_file(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert err.value.line == line


def test_missing_split_file_and_unknown_name(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.txt").write_text("hello\n")
    with pytest.raises(CorpusError, match="valid.txt: file not found"):
        load_corpus(tmp_path / "c")
    with pytest.raises(CorpusError, match="no such corpus directory"):
        load_corpus(tmp_path / "nope")


def test_bom_and_crlf_load_cleanly(tmp_path):
    root = write_corpus(tmp_path / "c", b"\xef\xbb\xbfhello world\r\nsecond line\r\n")
    c = load_corpus(root, min_freq=1)
    assert [c.vocab.decode(c.train.sentence(i)) for i in range(2)] == [["hello", "world"], ["second", "line"]]


def test_bucketed_batches_cover_everything_once_with_little_padding():
    c = load_corpus("wordnet", max_train=1000, max_eval=100)
    batches = bucket_batches(c.train, 32, shuffle=True, seed=1, epoch=3, drop_singletons=True)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(c.train)))
    pad = sum(int(c.train.lengths[b].max() - c.train.lengths[b].min()) for b in batches) / len(batches)
    assert pad <= 1.0
    again = bucket_batches(c.train, 32, shuffle=True, seed=1, epoch=3, drop_singletons=True)
    assert all((a == b).all() for a, b in zip(batches, again))           # (seed, epoch) fixes the order
    other = bucket_batches(c.train, 32, shuffle=True, seed=1, epoch=4, drop_singletons=True)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(batches, other))


def test_singleton_batch_is_merged_for_training():
    c = load_corpus("wordnet", max_train=33, max_eval=10)
    assert [len(b) for b in bucket_batches(c.train, 32, drop_singletons=True)] == [33]
    batch = make_batch(c.train, [0, 1])
    assert batch.tokens.shape[0] == 2 and batch.n_tokens == int(c.train.lengths[:2].sum()) + 2
