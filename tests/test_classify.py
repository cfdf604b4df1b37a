"""Few-label classification on μ (paper §5.3): the protocol, its determinism, and the CLI contract."""
import json

import numpy as np
import pytest
import torch
from conftest import write_corpus

from bnvae_core.analysis.classify import (
    few_label_accuracy,
    labelled_data,
    sample_labelled,
    summarize,
)
from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.errors import ConfigError
from bnvae_core.training.loop import train

ANIMALS = "cat dog horse cow sheep goat lion tiger bear wolf fox deer".split()
ANIMAL_WORDS = "runs barks eats grass hunts sleeps roars in the forest field den".split()
MACHINES = "engine motor pump valve gear piston turbine drill lathe crane robot laser".split()
MACHINE_WORDS = "spins drives oil steel factory bolts metal welds cuts lifts heavy loads".split()


def _topic_sentences(rng, n, nouns, words, label):
    """``n`` lines ``label<TAB>noun w w …`` (4–8 tokens) from one topic's vocabulary only."""
    lines = []
    for _ in range(n):
        body = [rng.choice(nouns)] + list(rng.choice(words, size=rng.integers(3, 8)))
        lines.append(f"{label}\t{' '.join(body)}")
    return lines


def _two_topic_text(seed, n_per_topic):
    rng = np.random.default_rng(seed)
    lines = (_topic_sentences(rng, n_per_topic, ANIMALS, ANIMAL_WORDS, "animal")
             + _topic_sentences(rng, n_per_topic, MACHINES, MACHINE_WORDS, "machine"))
    return "\n".join(lines[i] for i in rng.permutation(len(lines))) + "\n"


@pytest.fixture(scope="module")
def two_topics(tmp_path_factory):
    """A BN-VAE trained (without labels) on two topics with disjoint vocabularies; its corpus dir."""
    root = tmp_path_factory.mktemp("topics")
    corpus = write_corpus(root / "corpus", _two_topic_text(0, 160), _two_topic_text(1, 30), _two_topic_text(2, 50))
    config = TrainConfig(model="bnvae", data=str(corpus), min_freq=1, max_train=None, max_eval=None,
                         emb_dim=16, hidden_dim=32, nz=8, epochs=8, warmup_epochs=0, device="cpu")
    return train(config, root / "run", progress=False), corpus


# --- sampling -----------------------------------------------------------------------------

def test_sampling_is_stratified_deterministic_and_seed_dependent():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    a, b, c = (sample_labelled(labels, 100, s) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert np.bincount(labels[a]).tolist() == [60, 30, 10]           # class proportions kept
    assert len(sample_labelled(labels, 2, 0)) == 2                   # fewer than classes: uniform
    assert np.array_equal(sample_labelled(labels, 1000, 0), np.arange(1000))
    with pytest.raises(ConfigError, match="only 1000"):
        sample_labelled(labels, 1001, 0)


def test_wordnet_class_schemes(tiny_bnvae):
    top = labelled_data(tiny_bnvae, "top10")
    assert top.n_classes == 10 and top.class_names[0] == "adj.all"
    assert set(np.unique(top.pool_labels)) == set(range(10)) and top.test_labels.max() < 10
    assert 0.1 < top.majority_accuracy() < 0.35
    pos = labelled_data(tiny_bnvae, "pos")
    assert set(pos.class_names) == {"adj", "adv", "noun", "verb"} and pos.class_names[0] == "noun"
    assert len(pos.pool) == len(tiny_bnvae.corpus.train)              # nothing left out
    every = labelled_data(tiny_bnvae, "all")
    assert every.n_classes > 30
    with pytest.raises(ConfigError, match="top<k>"):
        labelled_data(tiny_bnvae, "top1")


# --- the protocol -------------------------------------------------------------------------

def test_frozen_is_deterministic_per_seed_and_summarized(tiny_bnvae):
    first = few_label_accuracy(tiny_bnvae, 100, seeds=[0, 1, 2], mode="frozen")
    again = few_label_accuracy(tiny_bnvae, 100, seeds=[1], mode="frozen")
    assert list(first.seed) == [0, 1, 2] and (first.labels == 100).all()
    assert again.accuracy.iloc[0] == first.accuracy.iloc[1]
    assert first.accuracy.between(0, 1).all() and first.accuracy.nunique() > 1   # seeds draw other labels
    s = summarize(first)
    assert len(s) == 1 and s.n_seeds.iloc[0] == 3
    assert s.accuracy_mean.iloc[0] == pytest.approx(first.accuracy.mean())
    assert s.accuracy_std.iloc[0] == pytest.approx(first.accuracy.std(ddof=1))


def test_finetune_is_deterministic_and_leaves_the_run_untouched(tiny_bnvae):
    model = tiny_bnvae.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    kwargs = dict(seeds=[3], mode="finetune", finetune_epochs=1, min_finetune_steps=4)
    a = few_label_accuracy(tiny_bnvae, 64, **kwargs)
    b = few_label_accuracy(tiny_bnvae, 64, **kwargs)
    assert a.accuracy.iloc[0] == b.accuracy.iloc[0]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)     # weights and BN running stats
    assert torch.equal(torch.get_rng_state(), rng_before)            # global RNG not consumed


def test_results_cache_returns_the_same_table(two_topics):
    run, _ = two_topics
    fresh = few_label_accuracy(run, [10, 20], seeds=2, mode="frozen", cache=True)
    files = list((run.path / "classify").glob("frozen-*.csv"))
    assert len(files) == 1
    cached = few_label_accuracy(run, [10, 20], seeds=2, mode="frozen", cache=True)
    assert cached[["labels", "seed", "accuracy"]].equals(fresh[["labels", "seed", "accuracy"]])
    few_label_accuracy(run, [10], seeds=2, mode="frozen", cache=True)      # other arguments, other file
    assert len(list((run.path / "classify").glob("frozen-*.csv"))) == 2


def test_bnvae_mu_classifies_two_topics_well_above_chance(two_topics):
    run, _ = two_topics
    frozen = few_label_accuracy(run, 20, seeds=3, mode="frozen")
    assert (frozen.majority_accuracy == 0.5).all() and (frozen.n_classes == 2).all()
    # chance is 0.5; over 3 × 100 test sentences 0.65 is ~5 standard errors above it. Across
    # training seeds 0–4 this model gives 0.72–1.0 (mean 0.90), so a fixed 0.8 was seed luck.
    assert frozen.accuracy.mean() > 0.65
    bow = few_label_accuracy(run, 20, seeds=3, mode="bow")
    assert (bow.model == "bow").all() and bow.accuracy.mean() > 0.9
    tuned = few_label_accuracy(run, 20, seeds=1, mode="finetune", finetune_epochs=2, min_finetune_steps=10)
    assert tuned.accuracy.iloc[0] > 0.6


# --- command line ---------------------------------------------------------------------------

def test_cli_prints_one_json_object(tiny_bnvae, capsys):
    assert main(["classify", str(tiny_bnvae.path), "--labels", "100", "--seeds", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"labels", "accuracy_mean", "accuracy_std", "n_test"} <= set(out)
    assert out["labels"] == 100 and out["seeds"] == 2 and len(out["accuracies"]) == 2
    assert out["n_test"] == len(labelled_data(tiny_bnvae).test) and out["n_classes"] == 10
    assert 0 <= out["accuracy_mean"] <= 1 and out["accuracy_std"] >= 0
    assert out["accuracy_mean"] == pytest.approx(np.mean(out["accuracies"]))


def test_cli_on_another_labelled_corpus(two_topics, capsys):
    run, corpus = two_topics
    assert main(["classify", str(run.path), "--data", str(corpus), "--labels", "20", "--seeds", "2",
                 "--protocol", "bow"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_test"] == 100 and out["n_classes"] == 2 and out["protocol"] == "bow"
    assert out["accuracy_mean"] > 0.9


@pytest.mark.parametrize("extra, message", [
    (["--labels", "0"], "--labels must be >= 1"),
    (["--labels", "1000000"], "labels must be between 1 and"),
    (["--labels", "10", "--seeds", "0"], "--seeds must be >= 1"),
    (["--labels", "10", "--classes", "biggest"], "classes must be"),
    (["--labels", "10", "--data", "{unlabelled}"], "has no labels"),
    (["--labels", "10", "--data", "{missing}"], "missing"),
])
def test_cli_bad_arguments_exit_2(tiny_bnvae, tmp_path, capsys, extra, message):
    unlabelled = write_corpus(tmp_path / "plain", "a sentence without label\nanother one here\n")
    extra = [e.format(unlabelled=unlabelled, missing=tmp_path / "missing") for e in extra]
    assert main(["classify", str(tiny_bnvae.path)] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_missing_run_folder_and_bad_mode_exit_2(tmp_path, capsys):
    assert main(["classify", str(tmp_path / "nope"), "--labels", "10"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as exc:                       # argparse: invalid choice
        main(["classify", str(tmp_path), "--labels", "10", "--protocol", "magic"])
    assert exc.value.code == 2
