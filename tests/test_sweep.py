"""Sweeps (bnvae_core.sweep): the grid, local worker processes, the CLI, and Ray tasks."""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from conftest import ray_connected, write_corpus

from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.errors import ConfigError
from bnvae_core.experiments.grid import grid_configs
from bnvae_core.experiments.sweep import run_sweep
from bnvae_core.training.cache import entry_name

#: seconds per trial: 200 glosses, one epoch of a 16-unit LSTM
MICRO = dict(data="wordnet", max_train=200, max_eval=50, max_tokens=15, emb_dim=16, hidden_dim=16, nz=4,
             epochs=1, warmup_epochs=0, device="cpu", max_vocab=500)


def test_grid_sweeps_gamma_only_for_bn_methods():
    configs = grid_configs(TrainConfig(**MICRO), ["vae", "bnvae"], seeds=2, gammas=[0.3, 0.6])
    keys = [(c.model, c.gamma, c.seed) for c in configs]
    assert keys == [("vae", 0.6, 0), ("vae", 0.6, 1),
                    ("bnvae", 0.3, 0), ("bnvae", 0.3, 1), ("bnvae", 0.6, 0), ("bnvae", 0.6, 1)]
    assert len({c.hash() for c in configs}) == len(configs)
    assert [c.seed for c in grid_configs(TrainConfig(**MICRO), ["vae"], seeds=[3, 5])] == [3, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=["nope"]), "unknown model 'nope'"),
    (dict(methods=[]), "no methods given"),
    (dict(methods=["vae"], seeds=0), "at least one seed"),
    (dict(methods=["bnvae"], gammas=[0.0]), "gamma = 0"),
])
def test_grid_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        grid_configs(TrainConfig(**MICRO), **{"seeds": 1, **kwargs})


def _bad_corpus(root):
    """A corpus that fails inside the trial (a NUL byte in train.txt: CorpusError), never on the driver."""
    return write_corpus(root, train=b"a b c\n\x00 binary\n", valid="a b c\n", test="a b c\n")


def test_local_processes_write_the_cache_entries(tmp_path, capsys):
    configs = grid_configs(TrainConfig(**MICRO), ["vae", "bnvae"], seeds=1, gammas=[0.5])
    bad = configs[0].replace(data=str(_bad_corpus(tmp_path / "bad")))
    table = run_sweep(configs + [bad], cache_root=tmp_path / "cache", workers=2, retries=1, out=tmp_path / "out")
    assert list(table.status) == ["ok", "ok", "failed"] and list(table.attempts) == [1, 1, 2]
    assert table.error.iloc[2].startswith("CorpusError: ") and table.data.iloc[2] == str(tmp_path / "bad")
    assert "attempt 1 of 2 failed: CorpusError" in capsys.readouterr().err
    table = table.iloc[:2]
    assert list(table.config_hash) == [c.hash() for c in configs]
    assert len(set(table.pid)) >= 1
    for config, run_dir in zip(configs, table.run_dir):
        assert run_dir.endswith(entry_name(config)) and f"{config.model}-{config.hash()}-" in run_dir
        assert (tmp_path / "cache" / entry_name(config) / "summary.json").is_file()
    assert (tmp_path / "out" / "sweep.csv").is_file()
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [TrainConfig.from_dict(d).hash() for d in saved] == [c.hash() for c in configs + [bad]]
    # the same sweep again, in this process: every trial is a cache hit, same folders
    again = run_sweep(configs, cache_root=tmp_path / "cache", workers=1)
    assert list(again.run_dir) == list(table.run_dir)
    assert (again.wall_s < 30).all()
    assert list(again.valid_loss) == pytest.approx(list(table.valid_loss))


def test_cli_sweep_and_errors(tmp_path, capsys, monkeypatch):
    args = ["sweep", "--methods", "bnvae", "--gammas", "0.4", "--data", "wordnet", "--max-train", "200",
            "--max-eval", "50", "--max-tokens", "15", "--emb-dim", "16", "--hidden-dim", "16", "--nz", "4",
            "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trials"] == 1 and "bnvae-" in result["run_dirs"][0]
    assert main(args[:-3] + ["--workers", "0", "--out", str(tmp_path / "o2")]) == 2
    assert "workers must be >= 1" in capsys.readouterr().err
    assert main(args[:-3] + ["--gpus-per-trial", "1", "--out", str(tmp_path / "o3")]) == 2
    assert "--gpus-per-trial schedules GPUs on a Ray cluster" in capsys.readouterr().err
    assert main(args[:-3] + ["--data", "no_such_corpus", "--out", str(tmp_path / "o4")]) == 2   # before any trial
    assert "'no_such_corpus' is neither an existing directory nor a known dataset" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # as if tensorboard were not installed
    assert main(args[:-3] + ["--tensorboard", str(tmp_path / "tb"), "--out", str(tmp_path / "o5")]) == 2
    assert "--tensorboard needs the optional package 'tensorboard'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)         # as if ray were not installed
    assert main(args + ["--ray"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "pip install" in err and "Traceback" not in err


def test_cli_exit_status_counts_the_failed_trials(tmp_path, capsys):
    """Exit 1 and one summary line when trials fail after their retries; the table is still written."""
    args = ["sweep", "--methods", "vae", "bnvae", "--data", str(_bad_corpus(tmp_path / "bad")), "--max-train", "200",
            "--emb-dim", "16", "--hidden-dim", "16", "--nz", "4", "--epochs", "1", "--device", "cpu",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--no-progress", "--retries", "0"]
    assert main(args) == 1
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["trials"] == 2 and printed["failed"] == 2 and printed["run_dirs"] == [None, None]
    summary = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(summary) == 1 and summary[0].startswith("error: 2 of 2 trials failed: vae seed=0 [")
    assert "CorpusError" in summary[0] and summary[0].endswith("sweep.csv: status, error)")
    saved = pd.read_csv(tmp_path / "out" / "sweep.csv")
    assert list(saved.status) == ["failed", "failed"] and list(saved.attempts) == [1, 1]


def test_tensorboard_events_beside_metrics(tmp_path):
    """--tensorboard: the Trainer's callback writes step and epoch scalars; a cache hit writes its
    history (epoch rows and the step rows of metrics.jsonl, at x = optimizer step) into a new folder."""
    pytest.importorskip("tensorboard", reason="the tensorboard package (test extra) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    configs = grid_configs(TrainConfig(**{**MICRO, "batch_size": 16}), ["bnvae"], seeds=1, gammas=[0.5])
    run_sweep(configs, cache_root=tmp_path / "cache", tensorboard=tmp_path / "tb")
    run_sweep(configs, cache_root=tmp_path / "cache", tensorboard=tmp_path / "tb2")      # a cache hit
    for board, step_tags in ((tmp_path / "tb", True), (tmp_path / "tb2", False)):
        (folder,) = board.iterdir()
        assert folder.name.startswith("bnvae-gamma0.5-seed0-")
        events = EventAccumulator(str(folder))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"train/loss", "train/kl", "valid/loss", "valid/au"} <= tags
        assert ("step/loss" in tags) == step_tags            # the live callback's batch loss
        assert "step/kl_weight" in tags and "step/kl" in tags
        assert all(e.step >= 1 for e in events.Scalars("step/kl"))
        assert [e.step for e in events.Scalars("valid/loss")] == [1]


@pytest.mark.ray
def test_ray_tasks_write_the_same_run_folders(ray_cluster, tmp_path):
    """``ray=True`` with Ray already initialised (here: connected to the two-node test cluster): each
    trial a Ray task; the folders are those of the local executor."""
    configs = grid_configs(TrainConfig(**MICRO), ["vae", "bnvae"], seeds=1, gammas=[0.5])
    with ray_connected(ray_cluster):
        table = run_sweep(configs, cache_root=tmp_path / "cache", ray=True)
    assert list(table.config_hash) == [c.hash() for c in configs] and set(table.status) == {"ok"}
    for config, run_dir in zip(configs, table.run_dir):
        assert run_dir == str((tmp_path / "cache" / entry_name(config)).resolve())
        assert (tmp_path / "cache" / entry_name(config) / "model.pt").is_file()
    local = run_sweep(configs, cache_root=tmp_path / "cache", workers=1)   # cache hits
    assert list(local.run_dir) == list(table.run_dir)
    assert list(local.valid_loss) == pytest.approx(list(table.valid_loss))
