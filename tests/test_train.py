import json

import pytest
import torch
from conftest import TINY

from bnvae_core.config import TrainConfig
from bnvae_core.errors import ConfigError
from bnvae_core.io import read_jsonl as read_metrics
from bnvae_core.methods import make_method
from bnvae_core.training.cache import cached_run
from bnvae_core.training.loop import train
from bnvae_core.training.run_folder import load_run


def test_config_json_round_trip_and_hash(tmp_path):
    c = TrainConfig(model="vae", gamma=0.3, max_train=None, epochs=3)
    c.save(tmp_path / "config.json")
    back = TrainConfig.load(tmp_path / "config.json")
    assert back == c and back.hash() == c.hash()
    assert c.replace(device="cuda").hash() == c.hash()        # device does not change the model
    assert c.replace(seed=1).hash() != c.hash()
    with pytest.raises(ConfigError, match="unknown config keys: bogus"):
        TrainConfig.from_dict({**c.to_dict(), "bogus": 1})


@pytest.mark.parametrize("bad, match", [
    (dict(model="nope"), "unknown model"), (dict(gamma=-1.0), "gamma must be >= 0"),
    (dict(gamma=0.0), "gamma = 0"), (dict(nz=0), r"nz must be in \[1, 65536\], got 0"),
    (dict(batch_size=1), "batch_size 1"), (dict(optimizer="rmsprop"), "optimizer"),
])
def test_impossible_settings_fail_before_any_work(bad, match):
    """Field ranges fail when the config is made, method-level checks when its method is: both
    before a corpus is read or a model built."""
    with pytest.raises(ConfigError, match=match):
        make_method(TrainConfig(**bad))


def test_run_folder_contents_and_metrics_contract(tiny_bnvae):
    path = tiny_bnvae.path
    assert {"config.json", "metrics.jsonl", "model.pt", "checkpoint.pt", "summary.json"} <= {p.name for p in path.iterdir()}
    rows = read_metrics(path / "metrics.jsonl")
    epochs = [r for r in rows if r["split"] != "step"]
    assert [(r["epoch"], r["split"]) for r in epochs[:4]] == [(1, "train"), (1, "valid"), (2, "train"), (2, "valid")]
    for r in epochs:
        assert {"epoch", "split", "loss", "rec", "kl", "au"} <= set(r)
    steps = [r for r in rows if r["split"] == "step"]           # the per-step log: step 1, then every 50
    assert steps[0]["step"] == 1 and all(r["step"] % 50 == 0 for r in steps[1:]) and len(steps) > 2
    for r in steps:
        assert set(r) == {"split", "epoch", "step", "kl", "rec", "kl_weight", "lr"}
    last_train = epochs[-2]
    assert max(r["step"] for r in steps) <= last_train["step"]
    # each step row sits before the train row of its epoch
    assert [r["split"] for r in rows].index("train") > [r["split"] for r in rows].index("step")
    state = torch.load(path / "model.pt", weights_only=True)
    assert "bn_head.bn.weight" in state and torch.allclose(state["bn_head.bn.weight"], torch.tensor(0.6))


def test_kl_warmup_is_linear_per_step(tmp_path):
    config = TrainConfig(model="vae", **{**TINY, "epochs": 2, "warmup_epochs": 4, "max_train": 320})
    run = train(config, tmp_path / "run", progress=False)
    weights = [r["kl_weight"] for r in run.history_rows if r["split"] == "train"]
    assert weights == pytest.approx([0.25, 0.5])              # end of epoch 1 and 2 of 4


def test_cache_hit_loads_the_same_model(tmp_path):
    config = TrainConfig(model="bnvae", **{**TINY, "epochs": 1, "max_train": 200, "max_eval": 50})
    first = cached_run(config, root=tmp_path, progress=False)
    second = cached_run(config, root=tmp_path, progress=False)
    assert second.path == first.path and second.path.parent == tmp_path
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a.cpu(), b.cpu()), name
    assert second.history_rows == first.history_rows
    assert len(list(tmp_path.iterdir())) == 1                  # no temp folders left behind
    assert json.loads((first.path / "summary.json").read_text())["config_hash"] == config.hash()


def test_load_run_rejects_incomplete_folder(tmp_path):
    from bnvae_core.errors import RunError
    (tmp_path / "config.json").write_text(TrainConfig().to_json())
    with pytest.raises(RunError, match="model.pt missing"):
        load_run(tmp_path)
