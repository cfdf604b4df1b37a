"""CVAE / BN-CVAE (bnvae_core.cvae) and its data (bnvae_core.dialogue): formats, bounds, training, CLI."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import bucket_batches, load_corpus, tokenize
from bnvae_core.data.dialogue import (
    convert_chatterbot,
    convert_switchboard,
    load_dialogue_corpus,
    read_dialogue_file,
    write_dialogue_file,
)
from bnvae_core.errors import ConfigError, CorpusError
from bnvae_core.methods import make_method
from bnvae_core.metrics.dialogue import (
    bleu_precision_recall,
    distinct_n,
    response_metrics,
)
from bnvae_core.models.cvae import (
    CVAE,
    gaussian_kl_two,
    kl_bound_moments,
    kl_bound_pointwise,
)
from bnvae_core.models.layers import BNHead
from bnvae_core.training.loop import train
from bnvae_core.training.run_folder import load_run

#: a CVAE small enough to train in a second or two on 200 label-conditioned glosses
SMALL = dict(data="wordnet", max_train=200, max_eval=40, max_tokens=20, emb_dim=16, hidden_dim=32, nz=8,
             epochs=2, warmup_epochs=0, device="cpu", max_vocab=1000)

DIALOGUES = [
    {"context": ["hi , how is it going ?"], "response": "good , and you ?"},
    {"context": ["hi , how is it going ?", "good , and you ?"], "response": "fine , thanks ."},
    {"context": ["what is your name ?"], "response": "my name is bot ."},
    {"context": "what is your name ?", "response": "i am a bot .", "speaker": "B"},   # string context, extra key
    {"context": ["do you like music ?"], "response": "yes , i like jazz ."},
    {"context": ["do you like music ?", "yes , i like jazz .", "which one ?"], "response": "cool jazz ."},
]


def dialogue_dir(root, n_copies=6):
    for name in ("train", "valid", "test"):
        write_dialogue_file(root / f"{name}.jsonl", DIALOGUES * (n_copies if name == "train" else 1))
    return root


@pytest.fixture(scope="module")
def tiny_cvae_runs(tmp_path_factory):
    """cvae and bn-cvae on label-conditioned WordNet, trained through the project's loop."""
    root = tmp_path_factory.mktemp("cvae")
    return {m: train(TrainConfig(model=m, **SMALL), root / m, progress=False) for m in ("cvae", "bn-cvae")}


# --- the jsonl format ---------------------------------------------------------------------------

def test_jsonl_reads_contexts_responses_bom_crlf_blank_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(d) for d in DIALOGUES[:4]]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines[:2] + ["", "  "] + lines[2:]).encode() + b"\r\n")
    raw = read_dialogue_file(path)
    assert len(raw) == 4
    assert raw.contexts[1] == [tokenize("hi , how is it going ?"), tokenize("good , and you ?")]
    assert raw.contexts[3] == [tokenize("what is your name ?")]          # a string is one utterance
    assert raw.responses[2] == ["my", "name", "is", "bot", "."]
    cut = read_dialogue_file(path, max_tokens=2, max_context=1)          # Zhao et al.'s truncation
    assert cut.contexts[1] == [["good", ","]] and cut.responses[0] == ["good", ","]


@pytest.mark.parametrize("line, message", [
    ('{"context": ["hi"], "response": "yo"', "not valid JSON"),
    ('["hi", "yo"]', "expected a JSON object"),
    ('{"context": ["hi"]}', "missing key 'response'"),
    ('{"response": "yo"}', "missing key 'context'"),
    ('{"context": [], "response": "yo"}', "'context' is empty"),
    ('{"context": ["hi", 3], "response": "yo"}', "context utterance 2 must be a string"),
    ('{"context": ["hi", "  "], "response": "yo"}', "context utterance 2 is empty"),
    ('{"context": {"a": 1}, "response": "yo"}', "'context' must be a list"),
    ('{"context": ["hi"], "response": ""}', "'response' is empty"),
    ('{"context": ["hi"], "response": null}', "'response' must be a string"),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "valid.jsonl"
    path.write_text(json.dumps(DIALOGUES[0]) + "\n\n" + line + "\n")
    with pytest.raises(CorpusError, match=message) as err:
        read_dialogue_file(path)
    assert f"{path}, line 3:" in str(err.value)


def test_missing_or_plain_text_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no such dialogue directory"):
        load_dialogue_corpus(tmp_path / "nope")
    (tmp_path / "train.txt").write_text("a sentence\n")
    with pytest.raises(CorpusError, match="plain-text corpus"):
        load_dialogue_corpus(tmp_path)
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(CorpusError, match="train.jsonl: no examples"):
        load_dialogue_corpus(tmp_path)


def test_dialogue_batches_pad_contexts(tmp_path):
    corpus = load_dialogue_corpus(dialogue_dir(tmp_path), min_freq=1)
    split = corpus.test
    b = split.make_batch(np.arange(len(split)))
    assert b.context.shape == (6, 3, 7) and b.context_sizes.tolist() == [1, 2, 1, 1, 1, 3]
    assert b.context_lengths[5].tolist() == [5, 6, 3] and b.context_lengths[0].tolist() == [7, 0, 0]
    assert corpus.vocab.decode(b.context[1, 1].tolist()) == tokenize("good , and you ?")
    assert corpus.vocab.decode(b.tokens[4, :int(b.lengths[4])].tolist()) == tokenize("yes , i like jazz .")
    assert not corpus.label_conditioned and corpus.label_names == []
    sub = split.subset([5, 1])
    assert [len(sub.context(i)) for i in range(2)] == [3, 2] and len(sub) == 2


def test_label_conditioned_wordnet_keeps_the_glosses_of_the_plain_corpus():
    dc = load_dialogue_corpus("wordnet", max_train=200, max_eval=40, max_tokens=20)
    plain = load_corpus("wordnet", max_train=200, max_eval=40, max_tokens=20)
    assert dc.label_conditioned
    for i in (0, 7, 199):
        words = dc.vocab.decode(dc.train.sentence(i).tolist())
        assert words == [w if w in dc.vocab.stoi else "<unk>" for w in plain.vocab.decode(plain.train.sentence(i))]
        label = dc.label_names[dc.train.labels[i]]
        assert label == plain.label_names[plain.train.labels[i]]
        assert [dc.vocab.decode(u.tolist()) for u in dc.train.context(i)] == [tokenize(label)]


# --- converters -----------------------------------------------------------------------------------

CHATTERBOT_YAML = """categories:
- greetings
conversations:
- - Hello
  - Hi
- - Hi, How is it going?
  - Good
  - And you?
- - What year?
  - 1963
- Not a conversation
- - Only one turn
"""


def test_chatterbot_converter_on_a_handmade_yaml(tmp_path):
    pytest.importorskip("yaml")
    src = tmp_path / "yaml"
    src.mkdir()
    for k in range(4):
        (src / f"topic{k}.yml").write_text(CHATTERBOT_YAML)
    with pytest.warns(UserWarning, match="conversation 4 is not a list of turns; skipped"):
        counts = convert_chatterbot(tmp_path / "out", source=src, valid_fraction=0.25, test_fraction=0.25)
    assert sum(counts.values()) == 4 * 4                # 3 usable conversations per file: 1 + 2 + 1 pairs
    assert all(counts[s] > 0 for s in ("train", "valid", "test"))
    rows = [json.loads(line) for s in ("train", "valid", "test")
            for line in (tmp_path / "out" / f"{s}.jsonl").read_text().splitlines()]
    assert {"context": ["Hi, How is it going?", "Good"], "response": "And you?"} in \
        [{k: r[k] for k in ("context", "response")} for r in rows]
    assert {"context": ["What year?"], "response": "1963"} in [{k: r[k] for k in ("context", "response")} for r in rows]
    # whole conversations go to one split: no (source, conversation) is in two splits
    seen = {}
    for s in ("train", "valid", "test"):
        for line in (tmp_path / "out" / f"{s}.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert seen.setdefault((r["source"], r["conversation"]), s) == s
    corpus = load_dialogue_corpus(tmp_path / "out", min_freq=1)
    assert len(corpus.train) == counts["train"]


def test_chatterbot_bad_yaml_names_the_file(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "bad.yml").write_text("conversations:\n- - a\n  - [b\n")
    with pytest.raises(CorpusError, match=r"bad.yml, line \d+: not valid YAML"):
        convert_chatterbot(tmp_path / "out", source=tmp_path)
    (tmp_path / "bad.yml").write_text("categories: [x]\n")
    with pytest.raises(CorpusError, match="bad.yml: expected a mapping with a 'conversations' list"):
        convert_chatterbot(tmp_path / "out", source=tmp_path)


def _switchboard_dialog(topic, turns):
    meta = {"age": 40, "education": 2, "sex": "FEMALE"}
    return {"A": meta, "B": meta, "topic": topic,
            "utts": [("A" if k % 2 == 0 else "B", text, ["sd", [0.0, 0.0, 1.0]]) for k, text in enumerate(turns)]}


def test_switchboard_converter(tmp_path):
    data = {"train": [_switchboard_dialog("music", ["okay .", "so what music do you like ?", "",
                                                    "i like jazz .", "me too ."])],
            "valid": [_switchboard_dialog("pets", ["do you have a dog ?", "yes ."])],
            "test": [_switchboard_dialog("pets", ["cats ?", "no ."])]}
    path = tmp_path / "swda.p"
    path.write_bytes(pickle.dumps(data, protocol=2))
    counts = convert_switchboard(path, tmp_path / "swda", max_context=2)
    assert counts == {"train": 3, "valid": 1, "test": 1}        # the empty turn is left out
    rows = [json.loads(line) for line in (tmp_path / "swda" / "train.jsonl").read_text().splitlines()]
    assert rows[2]["context"] == ["so what music do you like ?", "i like jazz ."]    # last 2 utterances
    assert rows[2]["response"] == "me too ." and rows[2]["response_speaker"] == "A"
    assert rows[0]["topic"] == "music" and rows[0]["dialog_act"] == "sd"
    assert len(load_dialogue_corpus(tmp_path / "swda", min_freq=1).train) == 3


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_switchboard_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps({"train": [_Evil()], "valid": [], "test": []}))
    with pytest.raises(CorpusError, match="refusing to load"):
        convert_switchboard(path, tmp_path / "out")
    path.write_bytes(pickle.dumps({"train": []}))
    with pytest.raises(CorpusError, match="expected a dict with 'train', 'valid' and 'test'"):
        convert_switchboard(path, tmp_path / "out")


# --- the KL between two Gaussians and the BN bound --------------------------------------------------

def test_two_gaussian_kl_matches_torch_and_is_zero_for_equal_gaussians():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(5, 4, generator=g) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, (0.5 * lq).exp()),
                                            torch.distributions.Normal(mp, (0.5 * lp).exp()))
    assert torch.allclose(gaussian_kl_two(mq, lq, mp, lp), ref, atol=1e-5)
    assert torch.allclose(gaussian_kl_two(mq, lq, mq, lq), torch.zeros(5, 4), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_batch_kl_is_above_both_bounds_for_any_gaussians(seed):
    """E_B KL ≥ L₁ ≥ L₂ (module docstring (1), (2)) hold for arbitrary means and variances."""
    g = torch.Generator().manual_seed(seed)
    B, n = 16, 6
    mq, mp = 2 * torch.randn(B, n, generator=g), torch.randn(B, n, generator=g)
    lq, lp = torch.randn(B, n, generator=g), torch.randn(B, n, generator=g)
    kl = gaussian_kl_two(mq, lq, mp, lp).sum(-1).mean()
    l1, l2 = kl_bound_pointwise(mq, mp, lp), kl_bound_moments(mq, mp, lp)
    assert kl >= l1 - 1e-5 and l1 >= l2 - 1e-5 and l2 > 0


def test_nominal_bn_bound_does_not_hold_with_a_learned_prior():
    """The counterexample: BN keeps Var_B μ̂_q = γ², but a prior that equals the posterior makes KL = 0."""
    torch.manual_seed(0)
    n, gamma = 8, 0.6
    bn = BNHead(n, gamma).train()
    contexts = torch.randn(32, n) * 3                  # μ_q depends on the context only (a collapsed posterior)
    with torch.no_grad():
        mu_q = bn(contexts)
    assert torch.allclose(mu_q.var(0, unbiased=False), torch.full((n,), gamma ** 2), rtol=1e-3)
    logvar = torch.zeros(32, n) - 1.0
    kl = float(gaussian_kl_two(mu_q, logvar, mu_q.clone(), logvar).sum(-1).mean())
    assert kl == pytest.approx(0.0, abs=1e-6) and kl < n * gamma ** 2 / 2
    assert float(kl_bound_moments(mu_q, mu_q, logvar)) == pytest.approx(0.0, abs=1e-6)


def _train_steps(config, steps=12, freeze_standard_prior=False):
    """Yield (terms, model) for ``steps`` SGD steps of a CVAE on label-conditioned WordNet."""
    torch.manual_seed(0)
    corpus = load_dialogue_corpus("wordnet", max_train=SMALL["max_train"], max_eval=SMALL["max_eval"],
                                  max_tokens=SMALL["max_tokens"], max_vocab=SMALL["max_vocab"])   # the fixture's
    method = make_method(config)
    model = method.build_model(len(corpus.vocab))
    if freeze_standard_prior:              # p(z|c) = N(0, I): zero and freeze the prior net's output layer
        last = model.prior_net[-1]
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        last.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    batches = bucket_batches(corpus.train, 32, shuffle=True, seed=0, drop_singletons=True)
    for step in range(steps):
        b = method.make_batch(corpus.train, batches[step % len(batches)])
        terms = method.batch_loss(model, b, 1.0)
        yield terms, model
        opt.zero_grad()
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


def test_bn_cvae_training_batches_obey_the_learned_prior_bounds():
    """On every training batch: BN fixes the moments of μ̂_q (mean β, variance γ̃²), and E_B KL ≥ L₁ ≥ L₂."""
    config = TrainConfig(model="bn-cvae", gamma=0.6, **SMALL)
    for terms, model in _train_steps(config):
        mu_q, bn = terms.extra["mu_q"], model.recognition_bn
        gamma_eff2 = bn.gamma ** 2 * model.last_batch_var / (model.last_batch_var + bn.bn.eps)
        assert torch.allclose(mu_q.mean(0), bn.beta.detach(), atol=1e-4)
        assert torch.allclose(mu_q.var(0, unbiased=False), gamma_eff2, rtol=1e-3, atol=1e-6)
        kl, l1, l2 = (float(terms.kl.detach().mean()), float(terms.extra["kl_bound_pointwise"]),
                      float(terms.extra["kl_bound_moments"]))
        assert kl >= l1 - 1e-4 * max(1.0, l1) and l1 >= l2 - 1e-4 * max(1.0, l2)


def test_standard_normal_prior_gives_back_the_bnvae_bound():
    """With p(z|c) = N(0, I), L₂ is ½Σ(γ̃² + β²), BN-VAE's bound, and the batch KL stays above it."""
    config = TrainConfig(model="bn-cvae", gamma=0.6, **SMALL)
    for terms, model in _train_steps(config, freeze_standard_prior=True):
        assert float(terms.extra["mu_p"].abs().max()) == 0.0 and float(terms.extra["logvar_p"].abs().max()) == 0.0
        bnvae_bound = float(model.recognition_bn.kl_lower_bound(model.last_batch_var))
        assert float(terms.extra["kl_bound_moments"]) == pytest.approx(bnvae_bound, rel=1e-4, abs=1e-6)
        assert float(terms.kl.detach().mean()) >= bnvae_bound - 1e-4 * max(1.0, bnvae_bound)
    # (it reaches nγ²/2 only once the batch variance s² of μ_q before BN is ≫ ε = 1e-5; with the
    # ±0.01 initialisation it starts far below, so early batches have a bound near ½Σβ²)


def test_bag_of_words_loss_adds_a_term_with_gradients():
    config = TrainConfig(model="cvae", bow_loss=True, **SMALL)
    terms, model = next(_train_steps(config, steps=1))
    assert "bow" in terms.extra and float(terms.extra["bow"].min()) > 0
    assert float(terms.loss.detach()) == pytest.approx(float((terms.rec + terms.kl + terms.extra["bow"]).detach().mean()), rel=1e-5)
    terms.loss.backward()
    assert model.bow_net[0].weight.grad is not None and float(model.bow_net[0].weight.grad.abs().sum()) > 0


def test_config_fields_validate_and_keep_old_hashes():
    assert "bow_loss" not in json.dumps(TrainConfig().hash()) and TrainConfig().bow_loss is False
    assert TrainConfig(bow_loss=False, max_context=10).hash() == TrainConfig().hash()
    assert TrainConfig(model="cvae", bow_loss=True).hash() != TrainConfig(model="cvae").hash()
    with pytest.raises(ConfigError, match="max_context must be >= 1"):
        TrainConfig(model="cvae", max_context=0)
    with pytest.raises(ConfigError, match="bow_loss must be bool"):
        TrainConfig(model="cvae", bow_loss=1)
    with pytest.raises(ConfigError, match="gamma = 0 for bn-cvae"):
        make_method(TrainConfig(model="bn-cvae", gamma=0.0))


# --- evaluation -------------------------------------------------------------------------------------

def test_distinct_n_and_bleu_precision_recall():
    assert distinct_n([["a", "b", "a"], ["a", "b"]], 1) == pytest.approx(2 / 5)
    assert distinct_n([["a", "b", "a"], ["a", "b"]], 2) == pytest.approx(2 / 3)
    assert distinct_n([["a"]], 2) == 0.0
    pytest.importorskip("nltk")
    ref = "the cat sat on the mat".split()
    p, r = bleu_precision_recall(ref, [ref, []])            # an empty response scores 0
    assert r >= 1.0 and p == pytest.approx(r / 2)            # (smoothing method 7 lifts a perfect match above 1)
    p2, r2 = bleu_precision_recall(ref, ["the cat sat on a hat".split()] * 2)
    assert 0 < p2 == r2 < 1
    m = response_metrics([[ref, ref], [["a"], ["b"]]], [ref, ["a"]])
    assert m["unique"] == 1.5 and m["intra_dist1"] == pytest.approx((5 / 12 + 1) / 2)
    assert 0 < m["bleu_precision"] <= m["bleu_recall"] <= 1


# --- training, loading, CLI --------------------------------------------------------------------------

def test_cvae_and_bn_cvae_train_through_the_loop(tiny_cvae_runs):
    for name, run in tiny_cvae_runs.items():
        rows = run.epoch_rows
        assert [r["split"] for r in rows] == ["train", "valid"] * 2
        assert run.step_rows and run.step_rows[0]["step"] == 1
        valid = rows[-1]
        for key in ("loss", "rec", "kl", "au", "au_posterior", "ppl_rec", "ppl_elbo"):
            assert np.isfinite(valid[key])
        assert valid["loss"] == pytest.approx(valid["rec"] + valid["kl"])
        assert isinstance(run.model, CVAE) and not hasattr(run.model, "bn_head")   # no BN-VAE bound claimed
        assert "kl_bound" not in rows[0]
        assert (run.model.recognition_bn is not None) == (name == "bn-cvae")
        loaded = load_run(run.path)
        assert isinstance(loaded.model, CVAE) and loaded.corpus.label_conditioned
    ev = make_method(tiny_cvae_runs["bn-cvae"].config).evaluate(
        tiny_cvae_runs["bn-cvae"].model, tiny_cvae_runs["bn-cvae"].corpus.test, max_examples=8, n_samples=3)
    assert ev["n_examples"] == 8 and 1 <= ev["unique"] <= 3 and 0 <= ev["inter_dist2"] <= 1


def test_cli_generate_and_evaluate(tiny_cvae_runs, capsys):
    path = str(tiny_cvae_runs["bn-cvae"].path)
    assert main(["generate", path, "--label", "noun.animal", "--n", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["generate", path, "--label", "noun.animal", "--n", "2", "--json", "--sample"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["context"] == ["noun.animal"] and len(out["responses"]) == 2
    for argv, message in ((["--label", "noun.nothing"], "unknown label 'noun.nothing'"),
                          (["--context", "hi"], "this model is label-conditioned: give --label"),
                          (["--label", "noun.animal", "--n", "0"], "--n must be >= 1")):
        assert main(["generate", path, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert main(["evaluate", path, "--max-sentences", "10", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "bn-cvae" and {"kl", "au", "ppl_rec", "inter_dist1"} <= set(result)


def test_cli_trains_a_dialogue_directory_and_answers_a_context(tmp_path, capsys):
    data = dialogue_dir(tmp_path / "dialogues")
    out = tmp_path / "run"
    assert main(["train", "--model", "cvae", "--data", str(data), "--epochs", "1", "--emb-dim", "8",
                 "--hidden-dim", "16", "--nz", "4", "--max-eval", "0", "--bow-loss", "--max-context", "2",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    config = TrainConfig.load(out / "config.json")
    assert config.bow_loss and config.max_context == 2
    assert main(["generate", str(out), "--context", "hi , how is it going ?", "--context", "good , and you ?",
                 "--context", "zyzzyva", "--n", "2"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "read as <unk>: zyzzyva" in captured.err
    assert main(["generate", str(out), "--label", "noun.animal"]) == 2
    assert "--label is for label-conditioned models" in capsys.readouterr().err
