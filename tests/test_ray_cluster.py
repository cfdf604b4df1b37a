"""Sweeps on a real two-node Ray cluster on this host (the ``ray_cluster`` fixture of conftest.py):
a trial that fails is retried, then reported, and every other trial's results and test-set
evaluations come back; data and cache locations reach the workers; GPUs are scheduled per
trial; a request the cluster cannot meet fails at once with one line. Then the pure pieces of
the cluster checks, without a cluster."""
from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_corpus

from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.errors import ClusterError
from bnvae_core.experiments.grid import grid_configs
from bnvae_core.experiments.sweep import (
    evaluate_columns,
    failure_summary,
    run_sweep,
    trial_label,
    trial_nodes,
    visibility_problems,
)
from bnvae_core.training.cache import entry_path

#: seconds per trial: 200 glosses, one epoch of a 16-unit LSTM
MICRO = dict(data="wordnet", max_train=200, max_eval=50, max_tokens=15, emb_dim=16, hidden_dim=16, nz=4,
             epochs=1, warmup_epochs=0, device="cpu", max_vocab=500)
MICRO_FLAGS = ["--data", "wordnet", "--max-train", "200", "--max-eval", "50", "--max-tokens", "15", "--emb-dim", "16",
               "--hidden-dim", "16", "--nz", "4", "--epochs", "1", "--warmup-epochs", "0"]


def _bad_corpus(root: Path) -> Path:
    """A corpus directory only the failing trial uses: its train.txt holds a NUL byte, so reading it
    raises CorpusError inside the trial, on whichever node runs it (never on the driver)."""
    return write_corpus(root, train=b"a b c\n\x00 binary\n", valid="a b c\n", test="a b c\n")


@pytest.mark.ray
def test_two_node_sweep_survives_a_failing_trial(ray_cluster, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("BNVAE_DATA", str(tmp_path / "data"))     # not what the nodes were started with

    def env_and_eval(run):          # defined here: pickled by value, so the workers need not import tests/
        import os
        return {"env_cache": os.environ.get("BNVAE_CACHE"), "env_data": os.environ.get("BNVAE_DATA"),
                **evaluate_columns(run, iw_samples=3)}

    base = TrainConfig(**MICRO)
    configs = grid_configs(base, ["vae", "bnvae"], seeds=1, gammas=[0.5])
    configs.append(base.replace(model="vae", data=str(_bad_corpus(tmp_path / "bad")), seed=0))
    logs: list[str] = []
    t0 = time.monotonic()
    table = run_sweep(configs, cache_root=tmp_path / "cache", ray=ray_cluster, retries=1, evaluate=env_and_eval,
                      tensorboard=tmp_path / "tb", out=tmp_path / "out", log=logs.append)
    print(f"two-node sweep of 3 trials: {time.monotonic() - t0:.1f} s")
    assert list(table.status) == ["ok", "ok", "failed"]
    failed = table.iloc[2]
    assert failed.error.startswith("CorpusError: ") and "NUL byte" in failed.error and failed.attempts == 2
    assert failed.data == str(tmp_path / "bad") and failed.config_hash == configs[2].hash()
    assert any(line.startswith(f"[{trial_label(configs[2])}] attempt 1 of 2 failed: CorpusError") for line in logs)
    assert any(f"[{trial_label(configs[2])}] failed after 2 attempt(s)" in line for line in logs)
    assert any("3 trial(s) on 2 Ray node(s)" in line for line in logs)
    assert failure_summary(table).startswith(f"1 of 3 trials failed: vae seed=0 [{configs[2].hash()[:8]}]: CorpusError")
    cache = (tmp_path / "cache").resolve()
    for config, (_, row) in zip(configs[:2], table.iloc[:2].iterrows()):
        run_dir = entry_path(config, cache)
        assert row.run_dir == str(run_dir) and (run_dir / "model.pt").is_file() and row.attempts == 1
        assert row.env_cache == str(cache) and row.env_data == str((tmp_path / "data").resolve())
        assert all(math.isfinite(row[c]) for c in ("test_nll", "test_ppl", "test_kl", "test_mi", "test_au"))
        assert row.device == "cpu" and list((run_dir / "eval").glob("test-K3-*.json"))   # evaluated in the trial
        assert list((tmp_path / "tb").glob(f"{config.model}-gamma{config.gamma:g}-seed0-*/events.out.tfevents.*"))
    saved = pd.read_csv(tmp_path / "out" / "sweep.csv")
    assert list(saved.status) == ["ok", "ok", "failed"] and "NUL byte" in saved.error.iloc[2]
    assert not list(cache.glob(".bnvae-visible-*"))          # the probe's markers are cleaned up
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # ray.init's SIGTERM handler is gone again


@pytest.mark.ray
def test_gpu_trials_are_scheduled_on_the_gpu_node(ray_cluster, tmp_path):
    """--gpus-per-trial 0.5 reaches Ray: the trial may only go to the node that declares a GPU, and Ray
    hands it that GPU (CUDA_VISIBLE_DEVICES; a trial without num_gpus sees none). Without a real
    device, --device auto then trains on the CPU."""
    def gpu_view(run):
        import os

        import ray
        return {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpu_ids": json.dumps(ray.get_gpu_ids()),
                "node": ray.get_runtime_context().get_node_id()}

    configs = [TrainConfig(**{**MICRO, "device": "auto"}, model="vae")]
    logs: list[str] = []
    table = run_sweep(configs, cache_root=tmp_path / "cache", ray=ray_cluster, gpus_per_trial=0.5,
                      evaluate=gpu_view, log=logs.append)
    row = table.iloc[0]
    assert row.status == "ok" and any("1 trial(s) on 1 Ray node(s)" in line for line in logs)
    assert row.cuda_visible == "0" and json.loads(row.gpu_ids) == [0]
    assert row.device == "cpu"


@pytest.mark.ray
def test_cli_refuses_what_the_cluster_cannot_schedule(ray_cluster, tmp_path, capsys):
    """Two GPUs per trial on a cluster with one: exit 2 at once, one line, nothing trained (Ray
    would have left the trials pending forever)."""
    args = ["sweep", "--methods", "vae", *MICRO_FLAGS, "--device", "cpu", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-progress", "--ray", ray_cluster, "--gpus-per-trial", "2"]
    t0 = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - t0 < 60
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no node of the Ray cluster has 1 CPU(s) and 2 GPU(s)")
    assert not list((tmp_path / "cache").glob("vae-*"))


# --- the cluster checks, without a cluster ---------------------------------------------------------

def _node(cpu: float, gpu: float = 0, alive: bool = True, name: str = "n") -> dict:
    resources = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}       # ray.nodes() leaves out absent resources
    return {"NodeID": name, "Alive": alive, "NodeManagerHostname": name, "NodeManagerAddress": "10.0.0.1",
            "Resources": resources}


def test_trial_nodes_refuse_gpus_on_a_cluster_without_any():
    with pytest.raises(ClusterError, match=r"--gpus-per-trial 0.25: the Ray cluster has no GPU .* wait forever"):
        trial_nodes([_node(8, name="a"), _node(8, name="b")], 1, 0.25)
    with pytest.raises(ClusterError, match="no node of the Ray cluster has 4 CPU"):
        trial_nodes([_node(2, gpu=1)], 4, 0.5)
    nodes = [_node(4, name="cpu"), _node(4, gpu=2, name="gpu"), _node(4, gpu=2, alive=False, name="dead")]
    assert [n["NodeID"] for n in trial_nodes(nodes, 1, 0.5)] == ["gpu"]
    assert [n["NodeID"] for n in trial_nodes(nodes, 1, 0)] == ["cpu", "gpu"]


def test_visibility_problems_name_the_node_and_the_folder():
    nodes = [_node(1, name="a"), _node(1, name="b"), _node(1, name="c")]
    results = [{"host": "a", "seen": [True, True]}, {"host": "b", "seen": [False, True]}, None]
    problems = visibility_problems(nodes, results, ["/shared/cache", "/data"])
    assert [p for p, _ in problems] == ["/shared/cache", None]
    assert problems[0][1].startswith("/shared/cache is not visible from b (10.0.0.1")
    assert "did not run" in problems[1][1]


def test_run_sweep_reports_the_unreachable_cache_root_in_one_line(tmp_path, monkeypatch):
    """The driver side of the probe: a node that does not see the marker stops the sweep before any trial."""
    from bnvae_core.experiments import sweep

    class FakeRay:
        def nodes(self):
            return [_node(1, name="head"), _node(1, name="far")]

    monkeypatch.setattr(sweep, "_probe", lambda ray, nodes, paths, env: [
        (paths[0], f"{paths[0]} is not visible from far (10.0.0.1; CPU 1, GPU 0)")])
    with pytest.raises(ClusterError, match=r"cache root must be one folder that every Ray node sees .* far"):
        sweep.check_cluster(FakeRay(), 1, 0, str(tmp_path), {})
