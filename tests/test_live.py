"""The live training curve (bnvae_core.viz.live.LiveCurve) and what notebook 1 reads off the per-step
log (bnvae_core.analysis.collapse.step_log_summary)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import TINY  # noqa: E402

from bnvae_core.analysis.collapse import step_log_summary  # noqa: E402
from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.training.loop import train  # noqa: E402
from bnvae_core.viz.live import LiveCurve, in_kernel  # noqa: E402

SMALL = {**TINY, "epochs": 1, "max_train": 200, "max_eval": 40, "emb_dim": 16, "hidden_dim": 16, "log_every": 2}


def test_live_curve_records_every_step_of_each_run_and_redraws_every_few():
    ticks = iter(np.arange(0.0, 1e4, 0.5))
    live = LiveCurve(every=3, bound=5.76, start=0.0, draw=True, clock=lambda: float(next(ticks)))
    runs = {}
    for name, model in (("VAE", "vae"), ("BN-VAE", "bnvae")):
        runs[name] = train(TrainConfig(model=model, **SMALL), None, progress=False, callbacks=[live.watch(name)])
    table = live.table
    assert list(table.columns) == ["model", "step", "epoch", "kl", "rec", "kl_weight", "elapsed_s"]
    for name, run in runs.items():
        rows = table[table["model"] == name]
        assert rows["step"].tolist() == list(range(1, len(rows) + 1))       # every step, in order
        logged = pd.DataFrame(run.step_rows)                                  # the run's own log agrees
        merged = logged.merge(rows, on="step", suffixes=("_log", "_live"))
        assert len(merged) == len(logged)
        np.testing.assert_allclose(merged["kl_live"], merged["kl_log"], rtol=1e-6)
        np.testing.assert_allclose(merged["kl_weight_live"], merged["kl_weight_log"])
    assert table["elapsed_s"].is_monotonic_increasing
    timing = live.timing
    n = {name: int((table["model"] == name).sum()) for name in runs}
    per_run = {name: 1 + n[name] // 3 + 1 for name in runs}                   # step 1, every 3rd, the end
    assert len(timing) == sum(per_run.values())
    assert timing["frame"].tolist() == list(range(1, len(timing) + 1))
    assert timing["elapsed_s"].is_monotonic_increasing and (timing["draw_s"] >= 0).all()
    assert timing.iloc[-1]["model"] == "BN-VAE" and timing.iloc[-1]["step"] == n["BN-VAE"]
    kl_ax = live.figure.axes[0]
    labels = [line.get_label() for line in kl_ax.get_lines()]
    assert labels[:2] == ["VAE", "BN-VAE"] and any(label.startswith("n γ²/2") for label in labels)


def test_live_curve_outside_a_kernel_only_records():
    assert not in_kernel()
    live = LiveCurve(every=1)                       # draw=None: draws only in a kernel
    run = train(TrainConfig(model="vae", **SMALL), None, progress=False, callbacks=[live])
    assert live.figure is None and live.timing.empty
    assert len(live.table) == run.epoch_rows[0]["step"]            # every step of the one epoch
    assert set(live.table["model"]) == {"vae"}      # unnamed: the config's model
    with pytest.raises(ValueError, match="every"):
        LiveCurve(every=0)


def log(kl, epochs=2):
    n = len(kl)
    steps = np.arange(1, n + 1)
    return pd.DataFrame({"step": steps * 10, "epoch": 1 + (steps - 1) * epochs // n, "kl": kl,
                         "kl_weight": np.linspace(0, 1, n)})


def test_step_log_summary_peak_collapse_and_last_epoch():
    vae = log([0.1, 3.0, 0.7, 0.2, 0.02, 0.6, 0.01, 0.03])       # the last KL ≥ 0.5 is at step 60
    bn = log([5.0, 7.0, 6.2, 6.0, 5.9, 6.1, 5.8, 6.0])
    table = step_log_summary({"VAE": vae, "BN-VAE": bn}).set_index("model")
    v, b = table.loc["VAE"], table.loc["BN-VAE"]
    assert v["peak_kl"] == 3.0 and v["peak_step"] == 20 and v["peak_kl_weight"] == pytest.approx(1 / 7)
    assert v["collapse_step"] == 70 and v["collapse_kl_weight"] == pytest.approx(6 / 7)
    assert v["last_epoch"] == 2 and v["last_epoch_mean_kl"] == pytest.approx(np.mean([0.02, 0.6, 0.01, 0.03]))
    assert v["last_epoch_max_kl"] == 0.6 and v["last_epoch_min_kl"] == 0.01
    assert np.isnan(b["collapse_step"]) and b["last_epoch_min_kl"] == 5.8
    assert table.loc["VAE", "steps_logged"] == 8 and table.loc["VAE", "last_step"] == 80
    never_high = step_log_summary({"x": log([0.1, 0.2])}).iloc[0]
    assert never_high["collapse_step"] == 10                      # below from the first logged step
    with pytest.raises(ValueError, match="lacks column"):
        step_log_summary({"x": log([0.1]).drop(columns="kl_weight")})


def test_replay_of_a_cached_log_equals_the_live_curve():
    """A cache hit trains nothing: the notebook replays the run's log (log_every=1) instead."""
    ticks = iter(np.arange(0.0, 1e4, 0.5))
    live = LiveCurve(every=1000, start=0.0, draw=True, clock=lambda: float(next(ticks)))
    run = train(TrainConfig(model="vae", **{**SMALL, "log_every": 1}), None, progress=False,
                callbacks=[live.watch("trained")])
    live.replay("replayed", run.step_rows)
    curves = live.by_model()
    cols = ["step", "epoch", "kl", "rec", "kl_weight"]
    pd.testing.assert_frame_equal(curves["trained"][cols].reset_index(drop=True),
                                  curves["replayed"][cols].reset_index(drop=True), rtol=1e-6)
    assert live.timing.iloc[-1]["model"] == "replayed"            # one frame drawn for the replay
    with pytest.raises(ValueError, match="lacks column"):
        live.replay("x", pd.DataFrame(run.step_rows).drop(columns="rec"))
