"""Sweeps (bnvae_core.sweep): the grid, local worker processes, the CLI, and Ray tasks."""
from __future__ import annotations

import json
import sys

import pytest

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


def test_local_processes_write_the_cache_entries(tmp_path):
    configs = grid_configs(TrainConfig(**MICRO), ["vae", "bnvae"], seeds=1, gammas=[0.5])
    table = run_sweep(configs, cache_root=tmp_path / "cache", workers=2, out=tmp_path / "out")
    assert list(table.config_hash) == [c.hash() for c in configs]
    assert len(set(table.pid)) >= 1
    for config, run_dir in zip(configs, table.run_dir):
        assert run_dir.endswith(entry_name(config)) and f"{config.model}-{config.hash()}-" in run_dir
        assert (tmp_path / "cache" / entry_name(config) / "summary.json").is_file()
    assert (tmp_path / "out" / "sweep.csv").is_file()
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [TrainConfig.from_dict(d).hash() for d in saved] == [c.hash() for c in configs]
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
    monkeypatch.setitem(sys.modules, "ray", None)         # as if ray were not installed
    assert main(args + ["--ray"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "pip install" in err and "Traceback" not in err


@pytest.mark.ray
def test_ray_tasks_write_the_same_run_folders(tmp_path):
    """A local Ray instance (2 CPUs): each trial a Ray task; the folders are those of the local executor."""
    ray = pytest.importorskip("ray")
    configs = grid_configs(TrainConfig(**MICRO), ["vae", "bnvae"], seeds=1, gammas=[0.5])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = run_sweep(configs, cache_root=tmp_path / "cache", ray=True)
    finally:
        ray.shutdown()
    assert list(table.config_hash) == [c.hash() for c in configs]
    for config, run_dir in zip(configs, table.run_dir):
        assert run_dir == str((tmp_path / "cache" / entry_name(config)).resolve())
        assert (tmp_path / "cache" / entry_name(config) / "model.pt").is_file()
    local = run_sweep(configs, cache_root=tmp_path / "cache", workers=1)   # cache hits
    assert list(local.run_dir) == list(table.run_dir)
    assert list(local.valid_loss) == pytest.approx(list(table.valid_loss))
