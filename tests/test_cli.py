"""The command-line contract: what ``python -m bnvae_core train`` / ``evaluate`` write and print,
and how they fail: every user error exits 2 with one ``error: ...`` line on stderr, no traceback,
before any work starts, and leaves no run folder behind.

The contract tests run the real command in subprocesses; the many error cases call
:func:`bnvae_core.cli.main` in-process (same code path, without paying for a Python start each).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import epoch_rows, write_corpus
from test_reliability import without_timing, write_toy_corpus

from bnvae_core.cli import main as cli
from bnvae_core.cli.args import config_from_args
from bnvae_core.io import read_jsonl as read_metrics
from bnvae_core.methods import make_method

REPO = Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--max-tokens", "30", "--max-train", "200", "--max-eval", "50", "--emb-dim", "16", "--hidden-dim", "32", "--epochs", "2",
              "--device", "cpu", "--no-progress"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bnvae_core", *args], cwd=REPO, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- contract -----------------------------------------------------------------------------------

def test_train_then_evaluate_on_wordnet(tmp_path):
    """``train --data wordnet --model {vae,bnvae} ... --out DIR`` writes config.json, metrics.jsonl and
    model.pt and prints one JSON object; ``evaluate DIR --iw-samples 5 --max-sentences 20`` prints
    one JSON object with the paper's metrics."""
    models = ("vae", "bnvae")
    procs = {m: _popen("train", "--data", "wordnet", "--model", m, *TINY_FLAGS, "--out", str(tmp_path / m))
             for m in models}
    for m, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "Traceback" not in err
        printed = json.loads(out)                                 # exactly one JSON object
        assert printed["out"] == str(tmp_path / m) and printed["epochs"] == 2
        folder = tmp_path / m
        assert {"config.json", "metrics.jsonl", "model.pt"} <= {p.name for p in folder.iterdir()}
        config = json.loads((folder / "config.json").read_text())
        assert config["model"] == m and config["data"] == "wordnet" and config["emb_dim"] == 16
        rows = epoch_rows(read_metrics(folder / "metrics.jsonl"))
        assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "valid"), (2, "train"), (2, "valid")]
        for r in rows:
            assert {"epoch", "split", "loss", "rec", "kl", "au"} <= set(r)
            assert r["split"] in {"train", "valid"} and isinstance(r["au"], int)
            assert all(isinstance(r[k], float) and r[k] == r[k] for k in ("loss", "rec", "kl"))
        assert torch.load(folder / "model.pt", weights_only=True)
    procs = {m: _popen("evaluate", str(tmp_path / m), "--iw-samples", "5", "--max-sentences", "20", "--no-progress")
             for m in models}
    for m, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        result = json.loads(out)
        assert {"nll", "ppl", "kl", "mi", "au", "elbo", "n_sentences", "n_tokens"} <= set(result)
        assert result["n_sentences"] == 20 and result["n_tokens"] > 20 and result["ppl"] > 1
        assert result["nll"] <= -result["elbo"] + 1.0             # IW bound ≈ below −ELBO
        assert result["model"] == m


def test_same_command_same_seed_same_metrics(tmp_path, capsys):
    toy = write_toy_corpus(tmp_path / "toy", n_train=200, n_eval=40)
    flags = ["--data", str(toy), "--max-train", "0", "--max-eval", "0", "--emb-dim", "16", "--hidden-dim", "32",
             "--nz", "8", "--epochs", "2", "--warmup-epochs", "1", "--device", "cpu", "--no-progress"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert cli.main(["train", *flags, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    a, b, c = (without_timing(read_metrics(tmp_path / n / "metrics.jsonl")) for n in "abc")
    assert a == b and len(epoch_rows(a)) == 4
    assert [r["loss"] for r in epoch_rows(a)] != [r["loss"] for r in epoch_rows(c)]
    capsys.readouterr()


def test_notes_what_reading_tolerated(tmp_path, capsys):
    toy = write_toy_corpus(tmp_path / "toy", n_train=60, n_eval=20)
    text = (toy / "train.txt").read_text()
    (toy / "train.txt").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode() + b"\n\n")
    code = cli.main(["train", "--data", str(toy), "--max-train", "0", "--max-eval", "0", "--emb-dim", "8",
                     "--hidden-dim", "8", "--nz", "2", "--epochs", "1", "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0
    assert "note: train: 2 blank lines skipped, 60 CRLF line ends, a UTF-8 BOM removed" in err


# --- errors -------------------------------------------------------------------------------------

def _fails_cleanly(capsys, argv, *expected, out_dir=None):
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if out_dir is not None:
        assert not Path(out_dir).exists(), f"{out_dir} left behind"
    return lines[0]


GOOD = "1\tthe cat sat\n2\ta dog ran\n1\tthe dog sat\n"

BAD_CORPORA = {
    # case: ({split: content}, expected text in the one error line (the file is always named))
    "empty file": ({"train": b""}, ["train.txt", "no sentences"]),
    "only blank lines": ({"train": b"\n \n\n"}, ["train.txt", "3 blank"]),
    "non-UTF-8": ({"valid": b"1\tok\n1\tcaf\xe9\n"}, ["valid.txt, line 2", "UTF-8"]),
    "label without text": ({"train": b"1\tthe cat\n2\t\n"}, ["train.txt, line 2", "no text"]),
    "non-parsable label": ({"test": b"1\tthe cat\none\tthe dog\n"}, ["test.txt, line 2", "not an integer"]),
    "binary file": ({"train": bytes(range(256)) * 4}, ["train.txt", "binary"]),
    "every line too long": ({"train": b"w " * 50 + b"\n"}, ["train.txt", "longer than max_tokens=30"]),
}


@pytest.mark.parametrize("case", list(BAD_CORPORA))
def test_bad_corpus_exits_2_with_one_error_line_and_no_run_folder(tmp_path, capsys, monkeypatch, case):
    files, expected = BAD_CORPORA[case]
    root = write_corpus(tmp_path / "c", GOOD)
    for split, content in files.items():
        (root / f"{split}.txt").write_bytes(content)
    monkeypatch.setenv("BNVAE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    _fails_cleanly(capsys, ["train", "--data", str(root), *TINY_FLAGS, "--out", str(out)], *expected, out_dir=out)


def test_missing_corpus_directory_and_split_file(tmp_path, capsys):
    out = tmp_path / "run"
    _fails_cleanly(capsys, ["train", "--data", str(tmp_path / "nope"), *TINY_FLAGS, "--out", str(out)],
                   "nope", "neither an existing directory nor a known dataset", out_dir=out)
    root = write_corpus(tmp_path / "c", GOOD)
    (root / "valid.txt").unlink()
    _fails_cleanly(capsys, ["train", "--data", str(root), *TINY_FLAGS, "--out", str(out)],
                   "valid.txt: file not found", out_dir=out)


def test_bad_corpus_in_a_real_process_has_no_traceback(tmp_path):
    root = write_corpus(tmp_path / "c", GOOD, valid=b"1\tok\n\xff\xfe\n")
    p = _popen("train", "--data", str(root), *TINY_FLAGS, "--out", str(tmp_path / "run"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {root / 'valid.txt'}, line 2: not valid UTF-8 (byte 0: b'\\xff')"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--gamma", "-0.5"], "gamma must be >= 0"),
    (["--gamma", "0"], "gamma = 0 for bnvae"),
    (["--gamma", "nan"], "gamma must be a finite number"),
    (["--nz", "0"], "nz must be in [1, 65536], got 0"),
    (["--batch-size", "1"], "batch_size 1 cannot be batch-normalized"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--epochs", "-1"], "epochs must be >= 1"),
    (["--lr", "0"], "lr must be > 0"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--max-train", "-5"], "max_train must be >= 0"),
    (["--warmup-epochs", "-2"], "warmup_epochs must be >= 0"),
    (["--kl-start", "1.5"], "kl_start must be in [0, 1]"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, monkeypatch, flags, expected):
    import bnvae_core.methods.base as base_module
    monkeypatch.setattr(base_module, "cached_corpus", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "run"
    _fails_cleanly(capsys, ["train", *TINY_FLAGS, *flags, "--out", str(out)], expected, out_dir=out)


def test_documented_argument_choices_that_are_not_errors():
    """γ is unused by the plain VAE (γ = 0 is fine there), and the VAE trains with batch size 1."""
    args = cli.build_parser().parse_args(["train", "--model", "vae", "--gamma", "0", "--batch-size", "1"])
    config = config_from_args(args)
    make_method(config)                                              # no method-level problem either
    assert config.model == "vae" and config.gamma == 0 and config.batch_size == 1


def test_unknown_dataset_name(tmp_path, capsys):
    out = tmp_path / "run"
    _fails_cleanly(capsys, ["train", "--data", "no-such-dataset", *TINY_FLAGS, "--out", str(out)],
                   "'no-such-dataset' is neither an existing directory nor a known dataset", "wordnet",
                   out_dir=out)


def test_run_folder_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails_cleanly(capsys, ["train", *TINY_FLAGS, "--out", str(tmp_path / "file")], "not a directory")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    _fails_cleanly(capsys, ["train", *TINY_FLAGS, "--out", str(tmp_path / "full")], "not empty")
    _fails_cleanly(capsys, ["train", "--resume", str(tmp_path / "nope")], "nothing to resume")
    _fails_cleanly(capsys, ["train", *TINY_FLAGS], "needs --out")
    _fails_cleanly(capsys, ["evaluate", str(tmp_path / "nope")], "not a finished run folder")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_bytes(b"\xff not json")
    _fails_cleanly(capsys, ["train", "--resume", str(tmp_path / "bad")], "config.json", "cannot read config")


def test_evaluate_argument_errors(tmp_path, capsys):
    for flags, expected in ((["--iw-samples", "0"], "--iw-samples must be >= 1"),
                            (["--max-sentences", "-3"], "--max-sentences must be >= 0")):
        _fails_cleanly(capsys, ["evaluate", str(tmp_path), *flags], expected)


def test_nonfinite_training_exits_2_and_leaves_no_folder(tmp_path, capsys):
    toy = write_toy_corpus(tmp_path / "toy", n_train=100, n_eval=20)
    out = tmp_path / "run"
    _fails_cleanly(capsys, ["train", "--data", str(toy), "--max-train", "0", "--max-eval", "0", "--emb-dim", "8",
                            "--hidden-dim", "8", "--nz", "2", "--epochs", "2", "--lr", "1e30", "--device", "cpu",
                            "--no-progress", "--out", str(out)],
                   "non-finite", "epoch 1, step", "none yet", out_dir=out)


def test_resume_takes_epochs_and_device_and_refuses_other_settings(tmp_path, capsys):
    """--resume continues the saved run: --epochs (any spelling argparse accepts) and --device may
    change; any other setting is refused in one line instead of being silently ignored."""
    from bnvae_core.cli.commands.train import resume_config
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    for flags in (["--epochs", "3"], ["--epochs=3"], ["--epo", "3"]):
        args = cli.build_parser().parse_args(["train", "--resume", str(out), *flags])
        assert resume_config(args).epochs == 3
    args = cli.build_parser().parse_args(["train", "--resume", str(out)])
    assert resume_config(args).epochs == 1
    _fails_cleanly(capsys, ["train", "--resume", str(out), "--lr", "0.5", "--emb-dim", "8"],
                   "only --epochs and --device may change", "--lr", "--emb-dim")