"""The reproduction runner (bnvae_core.reproduce): configs per dataset, end-to-end CLI at smoke size."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from conftest import write_corpus

from bnvae_core.cli.main import main
from bnvae_core.config import SMOKE_SIZE, TrainConfig
from bnvae_core.errors import ConfigError
from bnvae_core.experiments.reproduce import PAPER_RUN, dataset_settings, reproduce, reproduce_configs, run_length_note


def test_dataset_settings_use_the_paper_presets():
    assert dataset_settings("wordnet") == dict(data="wordnet", emb_dim=128, hidden_dim=256)
    yahoo = dataset_settings("yahoo")
    assert (yahoo["emb_dim"], yahoo["hidden_dim"]) == (512, 1024)
    assert {k: yahoo[k] for k in PAPER_RUN} == PAPER_RUN == dict(epochs=100, warmup_epochs=10, kl_start=0.0)
    assert "max_train" not in yahoo                                  # the hub's corpora are used whole
    ptb = TrainConfig(**dataset_settings("ptb"))
    assert run_length_note(ptb, "ptb") == "paper: 100 epochs"
    assert run_length_note(ptb.replace(epochs=8), "ptb") == "reduced: 8 of 100 epochs"
    assert run_length_note(TrainConfig(), "wordnet") == "teaching: 12 epochs"
    assert (dataset_settings("short_yelp:100")["emb_dim"], dataset_settings("short_yelp:100")["hidden_dim"]) == (128, 512)
    assert (dataset_settings("ptb")["emb_dim"], dataset_settings("ptb")["hidden_dim"]) == (256, 256)
    own = dataset_settings("/some/corpus")
    assert own["data"] == "/some/corpus" and "emb_dim" not in own and own["epochs"] == 100


def test_configs_per_method_and_seed():
    configs = reproduce_configs("wordnet", ["vae", "bnvae"], seeds=2, epochs=3, smoke=True, device="cpu")
    assert [(c.model, c.seed) for c in configs] == [("vae", 0), ("vae", 1), ("bnvae", 0), ("bnvae", 1)]
    assert all(c.epochs == 3 and c.hidden_dim == SMOKE_SIZE["hidden_dim"] for c in configs)
    full = reproduce_configs("wordnet", ["bnvae"])[0]
    assert full.hash() == TrainConfig(model="bnvae").hash()      # the notebooks' cached model
    with pytest.raises(ConfigError, match="unknown model"):
        reproduce_configs("wordnet", ["nope"])
    with pytest.raises(ConfigError, match="conditional"):
        reproduce_configs("wordnet", ["cvae"])


def test_cli_wordnet_end_to_end(tmp_path, capsys):
    """The whole runner on the built-in corpus at smoke size: LM table, classification table, figures."""
    out = tmp_path / "out"
    args = ["reproduce", "--dataset", "wordnet", "--methods", "vae", "bnvae", "--seeds", "1", "--epochs", "1",
            "--iw-samples", "5", "--smoke", "--label-sizes", "100", "5000", "--label-seeds", "2", "--device", "cpu",
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert any("5000 labels left out" in note for note in printed["notes"])
    runs = pd.read_csv(out / "lm_runs.csv")
    assert list(runs.method) == ["vae", "bnvae"] and (runs.iw_samples == 5).all()
    assert runs[["nll", "ppl", "kl", "mi", "au"]].notna().all().all() and (runs.nll > 0).all()
    table = pd.read_csv(out / "lm_table.csv")
    assert list(table.method) == ["vae", "bnvae"] and "nll_mean" in table and "ppl_std" in table
    md = (out / "lm_table.md").read_text()
    assert "| VAE |" in md and "BN-VAE" in md and "K = 5" in md
    cls = pd.read_csv(out / "classification_table.csv")
    assert set(cls.method) == {"vae", "bnvae", "bow"} and set(cls.labels) == {100}
    assert ((0 <= cls.accuracy_mean) & (cls.accuracy_mean <= 100)).all()
    assert (cls.n_fits[cls.method != "bow"] == 2).all()
    assert "#label 100" in (out / "classification_table.md").read_text()
    for stem in ("lm_metrics", "training_curves", "classification"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 0
    meta = json.loads((out / "reproduce.json").read_text())
    assert meta["dataset"] == "wordnet" and len(meta["configs"]) == 2
    # second call: trained runs and their evaluations come from the cache, same numbers
    assert main(args) == 0
    capsys.readouterr()
    assert pd.read_csv(out / "lm_runs.csv").nll.tolist() == pytest.approx(runs.nll.tolist())
    for run_dir in runs.run_dir:
        assert list((tmp_path / "cache" / run_dir.rsplit("/", 1)[-1] / "eval").glob("test-K5-*.json"))


def _labelled_lines(n: int, seed: int) -> str:
    rng = random.Random(seed)
    good, bad = ["great", "tasty", "friendly", "lovely"], ["awful", "cold", "rude", "slow"]
    lines = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(good if label else bad, k=3) + rng.choices(["the", "food", "was", "staff"], k=4)
        rng.shuffle(words)
        lines.append(f"{label}\t{' '.join(words)}")
    return "\n".join(lines) + "\n"


def test_hub_dataset_uses_the_paper_label_file(tmp_path, monkeypatch):
    """short_yelp placed by hand in $BNVAE_DATA with its train.100.txt: the 100-label row uses that file."""
    monkeypatch.setenv("BNVAE_DATA", str(tmp_path / "data"))
    corpus = write_corpus(tmp_path / "data" / "short_yelp", _labelled_lines(300, 0), _labelled_lines(60, 1),
                          _labelled_lines(60, 2))
    (corpus / "train.100.txt").write_text(_labelled_lines(100, 3))
    written = reproduce("short_yelp", tmp_path / "out", methods=["bnvae"], epochs=1, iw_samples=3, smoke=True,
                        cache_root=tmp_path / "cache", label_sizes=[100, 200], label_seeds=2, device="cpu")
    cls = pd.read_csv(written["classification_table"])
    by = {(r.method, r.labels): r for r in cls.itertuples()}
    assert by[("bnvae", 100)].label_source.startswith("label file") and "train.100.txt" in by[("bnvae", 100)].label_source
    assert by[("bnvae", 100)].n_fits == 2                      # the file, two training seeds (the paper: 10)
    assert by[("bnvae", 200)].label_source == "drawn from train (seed 0)" and by[("bnvae", 200)].n_fits == 2
    config = TrainConfig.from_dict(json.loads((tmp_path / "out" / "reproduce.json").read_text())["configs"][0])
    assert config.max_train == SMOKE_SIZE["max_train"] and config.max_tokens is None and config.min_freq is None
    assert config.tokenizer == "auto" and config.epochs == 1   # the hub's corpus: whitespace, used whole


def test_unlabelled_corpus_has_no_classification_table(tmp_path):
    corpus = write_corpus(tmp_path / "c", "\n".join(" ".join(["a", "b", "c", "d"][i % 4:] + ["e"]) for i in range(80)))
    written = reproduce(str(corpus), tmp_path / "out", methods=["vae"], epochs=1, iw_samples=2, smoke=True,
                        cache_root=tmp_path / "cache", device="cpu")
    assert "classification_table" not in written
    notes = json.loads(written["meta"].read_text())["notes"]
    assert any("no labels" in n for n in notes)


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["reproduce", "--dataset", "wordnet", "--methods", "cvae", "--out", str(tmp_path / "o")]) == 2
    assert "conditional" in capsys.readouterr().err
    assert main(["reproduce", "--dataset", "no_such_dataset", "--methods", "vae", "--smoke", "--epochs", "1",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no_such_dataset" in err and "Traceback" not in err
    assert main(["reproduce", "--dataset", "wordnet", "--iw-samples", "0", "--out", str(tmp_path / "o")]) == 2


def test_cli_failed_trials_are_listed_and_exit_1(tmp_path, capsys):
    """Trials that fail (a corpus with a NUL byte: CorpusError inside each trial) are rows of
    lm_runs.csv with their error and reproduce.json's 'failed'; one summary line, exit status 1."""
    bad = write_corpus(tmp_path / "bad", train=b"a b c\n\x00 binary\n", valid="a b c\n", test="a b c\n")
    out = tmp_path / "out"
    args = ["reproduce", "--dataset", str(bad), "--methods", "vae", "bnvae", "--smoke", "--epochs", "1",
            "--iw-samples", "2", "--retries", "1", "--device", "cpu", "--cache", str(tmp_path / "cache"),
            "--out", str(out), "--no-progress"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["failed"] == 2
    summary = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(summary) == 1 and summary[0].startswith("error: 2 of 2 trials failed: vae seed=0")
    assert "attempt 1 of 2 failed: CorpusError" in captured.err
    runs = pd.read_csv(out / "lm_runs.csv")
    assert list(runs.status) == ["failed", "failed"] and list(runs.attempts) == [2, 2]
    assert runs.error.str.startswith("CorpusError: ").all() and runs.nll.isna().all()
    meta = json.loads((out / "reproduce.json").read_text())
    assert [f["attempts"] for f in meta["failed"]] == [2, 2] and "lm_table" not in meta["outputs"]
    assert "every trial failed: no LM table" in meta["notes"]


def test_cli_preset_fills_sizes_explicit_flags_win():
    from bnvae_core.cli.args import config_from_args
    from bnvae_core.cli.main import build_parser
    parser = build_parser()
    yahoo = config_from_args(parser.parse_args(["train", "--preset", "yahoo"]))
    assert (yahoo.emb_dim, yahoo.hidden_dim) == (512, 1024)
    mixed = config_from_args(parser.parse_args(["train", "--preset", "short_yelp", "--hidden-dim=64"]))
    assert (mixed.emb_dim, mixed.hidden_dim) == (128, 64)
    plain = config_from_args(parser.parse_args(["train", "--emb-dim", "16"]))
    assert (plain.emb_dim, plain.hidden_dim) == (16, TrainConfig().hidden_dim)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--preset", "nope"])


@pytest.mark.ray
def test_reproduce_on_the_cluster_evaluates_inside_the_trials(ray_cluster, tmp_path, monkeypatch):
    """reproduce --ray ADDRESS on the two-node test cluster: the trials train, evaluate and classify;
    the driver only gathers their rows (here it could not evaluate, classify or load a run)."""
    from bnvae_core.experiments import reproduce as module
    from bnvae_core.training import run_folder

    def driver_must_not(*args, **kwargs):
        raise AssertionError("the driver evaluated, classified or loaded a run itself")

    for target, name in ((module, "evaluate_run"), (module, "few_label_accuracy"), (run_folder, "load_run")):
        monkeypatch.setattr(target, name, driver_must_not)
    written = reproduce("wordnet", tmp_path / "out", methods=["vae", "bnvae"], epochs=1, iw_samples=2,
                        smoke=True, ray=ray_cluster, cache_root=tmp_path / "cache", label_sizes=[100],
                        label_seeds=1, device="cpu")
    runs = pd.read_csv(written["lm_runs"])
    assert list(runs.method) == ["vae", "bnvae"] and set(runs.status) == {"ok"}
    assert runs[["nll", "kl", "mi", "au"]].notna().all().all()
    assert all((tmp_path / "cache").resolve() == type(tmp_path)(d).parent for d in runs.run_dir)
    cls = pd.read_csv(written["classification_table"])
    assert set(cls.method) == {"vae", "bnvae", "bow"} and list(cls.method) == ["vae", "bnvae", "bow"]
    meta = json.loads(written["meta"].read_text())
    assert meta["failed"] == [] and meta["failure_summary"] is None
