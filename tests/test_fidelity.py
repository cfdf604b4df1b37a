"""Faithful to the reference codes (valdersoul/bn-vae, jxhe/vae-lagging-encoder): the lr schedule,
the encoder's input and init, the bias-free output layer, whitespace tokenization of the paper's
corpora, constant β, the paper's classification protocol, the data used whole, and metrics that
leave the caller's random state alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, write_corpus
from test_classify import two_topics  # noqa: F401  (fixture)

from bnvae_core.analysis.classify import few_label_accuracy, labelled_data, reference_accuracy, sample_labelled
from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import BUILTIN_LIMITS, effective_limits, load_corpus, tokenize_whitespace
from bnvae_core.data.hub import looks_pretokenized, reading_settings
from bnvae_core.methods import make_method
from bnvae_core.metrics.text import iw_nll
from bnvae_core.models.layers import encoder_io
from bnvae_core.training.loop import LrPlateau, TrainState

# --- the lr schedule (bn-vae text_anneal_fb.py) ----------------------------------------------------


def _schedule(losses, **changes):
    """Run LrPlateau over a sequence of validation losses; per epoch: (lr after it, best?, decay?, stopped)."""
    plateau = LrPlateau(TrainConfig(**changes))
    state, out = TrainState(lr=1.0), []
    for epoch, loss in enumerate(losses):
        best, decay = plateau.after_validation(state, epoch, loss)
        out.append((state.lr, best, decay, state.stopped))
        if state.stopped:
            break
    return out


def test_no_decay_in_the_first_15_epochs_even_on_a_plateau():
    flat = [10.0] + [11.0] * 14                           # 14 bad epochs after the first
    assert all(lr == 1.0 for lr, *_ in _schedule(flat))
    out = _schedule([10.0] + [11.0] * 20)
    assert [lr for lr, *_ in out][15] == 0.5              # epoch 16 (0-based 15): the first allowed decay


def test_decay_compares_with_the_loss_since_the_last_decay_and_stops_after_the_fifth():
    losses = [10.0, 9.0] + [9.5] * 13 + [9.6]             # best 9.0; 14 worse epochs; the gate opens at 15
    losses += [9.55]                                       # below the decay epoch's 9.6 (not the best 9.0): resets
    losses += [9.7 + 0.01 * i for i in range(40)]          # then worse and worse
    out = _schedule(losses)
    decays = [i for i, (_, _, decay, _) in enumerate(out) if decay]
    assert decays == [15, 21, 26, 31, 36]                  # 5 worse epochs between decays, counted from 9.55
    assert out[-1][3] and len(out) == 37 and out[-1][0] == pytest.approx(1 / 32)   # stopped right after the 5th
    assert [best for _, best, *_ in out[:3]] == [True, True, False]


def test_ties_do_not_count_as_worse_and_best_weights_follow_the_global_best():
    out = _schedule([5.0] + [5.0] * 30)                   # equal losses: never "not improved"
    assert all(lr == 1.0 for lr, *_ in out) and out[0][1] and not any(best for _, best, *_ in out[1:])


def test_max_lr_decays_zero_never_decays():
    assert all(lr == 1.0 and not stop for lr, _, _, stop in _schedule([1.0] + [2.0] * 40, max_lr_decays=0))


def test_training_keeps_the_lr_through_epoch_15_on_a_plateauing_run(tmp_path):
    """The issue's measurement: without the epoch-15 guard a small run halved its lr during warm-up."""
    config = TrainConfig(model="bnvae", gamma=0.9, **{**TINY, "max_train": 300, "epochs": 8, "emb_dim": 16,
                                                      "hidden_dim": 16, "lr_patience": 1})
    from bnvae_core.training.loop import train
    run = train(config, tmp_path / "run", progress=False)
    assert {r["lr"] for r in run.epoch_rows} == {1.0}


# --- model: encoder input, init, output layer ---------------------------------------------------------

def test_encoder_reads_start_and_end_symbols():
    tokens = torch.tensor([[5, 6, 7], [8, 0, 0]])
    out, lengths = encoder_io(tokens, torch.tensor([3, 1]))
    assert out.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]] and lengths.tolist() == [5, 3]


def test_bnvae_init_leaves_the_encoder_at_pytorch_defaults_and_has_no_output_bias():
    config = TrainConfig(model="bnvae", emb_dim=16, hidden_dim=16)
    assert config.init_scheme == "bnvae"
    torch.manual_seed(0)
    model = make_method(config).build_model(200)
    assert "decoder.out.bias" not in model.state_dict()
    assert float(model.encoder.embed.weight.detach().std()) > 0.5                          # N(0, 1), not ±0.1
    assert float(model.decoder.embed.weight.abs().max()) <= config.init_emb_range
    assert float(model.decoder.lstm.weight_ih_l0.abs().max()) <= config.init_range
    he = make_method(config.replace(init_scheme="he")).build_model(200)
    assert float(he.encoder.embed.weight.abs().max()) <= config.init_emb_range


# --- tokenization and the data used whole ----------------------------------------------------------

def test_whitespace_tokenizer_keeps_unk_as_one_token(tmp_path):
    text = "the <unk> was n't here , N years\nthe <unk> said N\n"
    root = write_corpus(tmp_path / "ptb", text)
    assert tokenize_whitespace("a <unk> N") == ["a", "<unk>", "N"]
    assert looks_pretokenized(root)
    path, reading = reading_settings(str(root))
    assert reading["tokenizer"] == "whitespace" and reading["max_train"] is None and reading["min_freq"] == 1
    corpus = load_corpus(path, **reading)
    first = corpus.train.sentence(0)
    assert len(first) == 8 and first[1] == corpus.vocab.unk                    # "<unk>" is the unknown word
    assert "N" in corpus.vocab.stoi and "<" not in corpus.vocab.stoi
    assert corpus.train.n_tokens == 8 + 4 + 2                                 # words + one </s> per sentence
    words = load_corpus(path, **{**reading, "tokenizer": "words"})
    assert len(words.train.sentence(0)) == 10                                 # < unk > split in three


def test_teaching_sizes_belong_to_the_builtin_corpus():
    assert effective_limits("wordnet") == {**BUILTIN_LIMITS["wordnet"]}
    assert effective_limits("/some/dir") == dict(max_tokens=None, max_train=None, max_eval=None, max_vocab=None,
                                                 min_freq=1)
    assert effective_limits("wordnet", max_train=0)["max_train"] is None       # 0: no limit
    assert reading_settings("wordnet")[1]["tokenizer"] == "words"


def test_a_corpus_directory_is_used_whole_and_subsetting_is_said(tmp_path, capsys):
    lines = "".join(f"word{i % 7} and more words {i}\n" for i in range(120))
    root = write_corpus(tmp_path / "c", lines, lines[:600], lines[:600])
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--epochs", "1", "--emb-dim", "8", "--hidden-dim", "8",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["n_train"] == 120 and "subset" not in capsys.readouterr().err
    assert main(["train", "--data", str(root), "--max-train", "50", "--epochs", "1", "--emb-dim", "8",
                 "--hidden-dim", "8", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "sub")]) == 0
    assert "train: 50 of 120 sentences (a seeded subset, max_train=50)" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--iw-samples", "2", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_sentences"] == result["sentences_in_split"] and result["unk_fraction"] >= 0


# --- β-VAE, metrics' random state -------------------------------------------------------------------

def test_beta_vae_is_constant_beta_without_warmup_by_default():
    method = make_method(TrainConfig(model="beta", beta=0.2, warmup_epochs=10))
    assert [method.kl_weight(s, 100) for s in (0, 500, 5000)] == [0.2, 0.2, 0.2]


def test_iw_nll_leaves_the_callers_random_state_alone(tiny_bnvae):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    iw_nll(tiny_bnvae.model, tiny_bnvae.corpus.valid.subset(np.arange(5)), k=3, seed=7)
    assert torch.equal(torch.rand(3), expected)


# --- the paper's classification protocol --------------------------------------------------------------

def test_reference_protocol_selects_on_the_labelled_validation_split(two_topics):  # noqa: F811
    run, _ = two_topics
    data = labelled_data(run, classes="all")
    assert data.valid is not None and len(data.valid) == len(data.valid_labels)
    index = sample_labelled(data.pool_labels, 20, 0)
    details: dict = {}
    acc = reference_accuracy(run.model, data.pool.subset(index), data.pool_labels[index], data.valid,
                             data.valid_labels, data.test, data.test_labels, data.n_train_classes, seed=0,
                             max_epochs=30, details=details)
    losses = details["valid_losses"]
    assert details["best_epoch"] == int(np.argmin(losses)) + 1                 # the kept weights: best valid loss
    assert details["decays"] <= 5 and (details["decays"] == 5 or details["epochs"] == 30)
    assert 0.5 < acc <= 1.0                                                    # two separable topics
    table = few_label_accuracy(run, 20, seeds=2, mode="reference", classes="all")
    assert list(table["mode"]) == ["reference"] * 2 and table["accuracy"].notna().all()
