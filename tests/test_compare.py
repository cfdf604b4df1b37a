"""The comparison across methods (bnvae_core.compare): a tiny grid, the CSV contract, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bnvae_core.cli import main as cli  # noqa: E402
from bnvae_core.config import TrainConfig
from bnvae_core.errors import ConfigError  # noqa: E402
from bnvae_core.experiments.compare import (  # noqa: E402
    RESULT_COLUMNS,
    compare,
    format_summary,
    histories,
    summarize,
    training_time,
)
from bnvae_core.experiments.grid import grid_configs
from bnvae_core.io import read_jsonl as read_metrics  # noqa: E402
from bnvae_core.training.cache import entry_name  # noqa: E402

#: seconds per run: 200 glosses, 1 epoch, emb 16, hidden 32
MICRO = dict(data="wordnet", max_train=200, max_eval=40, max_tokens=15, max_vocab=500, emb_dim=16,
             hidden_dim=32, nz=4, epochs=1, warmup_epochs=1, device="cpu")
MICRO_FLAGS = ["--max-train", "200", "--max-eval", "40", "--max-tokens", "15", "--max-vocab", "500",
               "--emb-dim", "16", "--hidden-dim", "32", "--nz", "4", "--epochs", "1", "--warmup-epochs", "1",
               "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """lm, vae and BN-VAE at two γ, two seeds each, IW-NLL with K = 5; written to an out folder."""
    root = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("compare")
    results = compare(["lm", "vae", "bnvae"], seeds=2, gammas=[0.3, 0.9], base=TrainConfig(**MICRO),
                      iw_samples=5, out=out, root=root)
    return results, out, root


def test_one_row_per_run_with_the_documented_columns(grid):
    results, _, _ = grid
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert len(results) == 2 * (1 + 1 + 2)                      # lm, vae, bnvae × 2 γ; × 2 seeds
    assert sorted(results.groupby("method").size().tolist()) == [2, 2, 2, 2]
    assert set(results.loc[results.model == "bnvae", "gamma"]) == {0.3, 0.9}
    assert results.loc[results.model != "bnvae", "gamma"].isna().all()   # γ means nothing there
    assert (results.iw_samples == 5).all() and (results.split == "test").all()
    assert results.attrs["wall_s"] > 0


def test_metrics_are_consistent(grid):
    results, _, _ = grid
    lm = results[results.model == "lm"]
    assert (lm[["kl", "mi", "au"]] == 0).all().all()              # no latent
    assert np.allclose(lm.nll, lm.rec)                           # exact NLL = its reconstruction term
    assert (results.nll > 0).all() and (results.kl >= 0).all()
    # PPL = exp(Σ NLL / Σ (|x| + 1)) with the mean NLL over n sentences
    assert np.allclose(results.ppl, np.exp(results.nll * results.n_sentences / results.n_tokens))
    latent = results[results.model != "lm"]
    assert (latent.nll <= -latent.elbo + 1.0).all()              # IW bound not far above −ELBO (1 sample)
    for _, row in results.iterrows():                            # training time from metrics.jsonl
        rows = read_metrics(f"{row.run_dir}/metrics.jsonl")
        assert math.isclose(row.train_time_s, sum(r["time_s"] for r in rows if r["split"] == "train"))
        assert row.train_time_s == training_time(rows) > 0


def test_csvs_and_figures_are_written(grid):
    results, out, _ = grid
    on_disk = pd.read_csv(out / "results.csv")
    assert list(on_disk.columns) == list(RESULT_COLUMNS)
    assert np.allclose(on_disk.nll, results.nll)
    summary = pd.read_csv(out / "summary.csv")
    assert summary.method.tolist() == list(dict.fromkeys(results.method))
    assert (summary.n_seeds == 2).all()
    for name in ("kl_vs_nll", "training_curves"):
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 0


def test_second_call_is_cached(grid, tmp_path):
    results, _, root = grid
    again = compare(["lm", "vae", "bnvae"], seeds=2, gammas=[0.3, 0.9], base=TrainConfig(**MICRO),
                    iw_samples=5, root=root)
    pd.testing.assert_frame_equal(again, results, check_like=False)
    assert again.attrs["wall_s"] < max(results.attrs["wall_s"], 5.0)
    entry = root / entry_name(TrainConfig(model='lm', **MICRO))
    assert any(p.name.startswith("test-K5-") for p in (entry / "eval").iterdir())   # one evaluation cache


def test_summary_mean_and_std_over_seeds():
    results = pd.DataFrame({"method": ["A", "A", "B"], "model": ["vae", "vae", "lm"], "gamma": [np.nan] * 3,
                            "seed": [0, 1, 0], "nll": [10.0, 12.0, 7.0], "kl": [1.0, 3.0, 0.0]})
    s = summarize(results, metrics=("nll", "kl"))
    assert s.method.tolist() == ["A", "B"]
    assert s.nll_mean.tolist() == [11.0, 7.0]
    assert s.nll_std[0] == pytest.approx(math.sqrt(2.0))        # ddof 1
    assert math.isnan(s.nll_std[1])                              # one seed: no spread
    shown = format_summary(s, metrics=("nll", "kl"))
    assert shown.loc["A", "NLL (nats)"] == "11.00 ± 1.41"
    assert shown.loc["B", "NLL (nats)"] == "7.00"
    with pytest.raises(ValueError, match="lack"):
        summarize(results.drop(columns="seed"), metrics=("nll",))


def test_histories_one_per_method(grid):
    results, _, _ = grid
    hist = histories(results)
    assert list(hist) == list(dict.fromkeys(results.method))
    assert all({"epoch", "split", "rec", "kl"} <= set(h.columns) for h in hist.values())


def test_grid_configs():
    base = TrainConfig(**MICRO)
    configs = grid_configs(base, ["vae", "bnvae", "duvae", "vae"], seeds=[3, 5], gammas=[0.5, 1.0])
    assert [(c.model, c.gamma, c.seed) for c in configs] == [
        ("vae", base.gamma, 3), ("vae", base.gamma, 5),
        ("bnvae", 0.5, 3), ("bnvae", 0.5, 5), ("bnvae", 1.0, 3), ("bnvae", 1.0, 5),
        ("duvae", 0.5, 3), ("duvae", 0.5, 5), ("duvae", 1.0, 3), ("duvae", 1.0, 5)]
    assert all(c.emb_dim == 16 for c in configs)
    with pytest.raises(ConfigError, match="unknown model"):
        grid_configs(base, ["vae", "nope"])
    with pytest.raises(ConfigError, match="conditional"):
        grid_configs(base, ["cvae"], conditional=False)
    with pytest.raises(ConfigError, match="seed"):
        grid_configs(base, ["vae"], seeds=0)
    with pytest.raises(ConfigError, match="gamma"):
        grid_configs(base, ["bnvae"], gammas=[0.0])    # BN-VAE with γ = 0 is invalid


def test_cli_writes_results_and_prints_json(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = cli.main(["compare", "--models", "lm,bnvae", "--gammas", "0.6", "--seeds", "1", "--iw-samples", "3",
                     "--out", str(out), "--cache", str(tmp_path / "cache"), *MICRO_FLAGS])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 2 and report["iw_samples"] == 3
    assert report["methods"] == ["LSTM-LM", "BN-VAE (γ=0.6)"]
    assert [r["method"] for r in report["table"]] == report["methods"]
    assert (out / "results.csv").exists() and (out / "summary.csv").exists()
    assert all(tmp_path.joinpath(p).exists() for p in report["figures"])
    assert pd.read_csv(out / "results.csv").model.tolist() == ["lm", "bnvae"]


@pytest.mark.parametrize("flags, message", [
    (["--models", "vae,nope"], "unknown model"),
    (["--models", "vae,"], "--models"),
    (["--seeds", "0"], "--seeds"),
    (["--iw-samples", "0"], "--iw-samples"),
    (["--gammas", "0.3,abc"], "--gammas"),
    (["--gammas", "0"], "gamma"),
    (["--models", "cvae"], "conditional"),
    (["--epochs", "-1"], "epochs"),
])
def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys, flags, message):
    code = cli.main(["compare", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "cache"),
                     "--models", "bnvae", *MICRO_FLAGS, *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())   # nothing trained


def test_cli_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "o").write_text("x")
    code = cli.main(["compare", "--out", str(tmp_path / "o"), "--models", "lm", *MICRO_FLAGS])
    assert code == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_seed_influence_names_the_seed_that_moves_the_mean():
    from bnvae_core.experiments.compare import seed_influence
    results = pd.DataFrame({"method": ["A"] * 3 + ["B"] * 3 + ["C"], "seed": [0, 1, 2] * 2 + [0],
                            "nll": [40.0, 40.2, 46.0, 41.0, 41.1, 40.9, 39.0]})
    table = seed_influence(results, metrics=("nll",)).set_index("method")
    assert table.loc["A", "extreme_seed"] == 2 and table.loc["A", "median"] == pytest.approx(40.2)
    assert table.loc["A", "mean_minus_median"] == pytest.approx((40.0 + 40.2 + 46.0) / 3 - 40.2)
    assert table.loc["A", "extreme_share"] == pytest.approx(5.8 / (0.2 + 5.8))
    assert table.loc["B", "extreme_share"] == pytest.approx(0.5)                     # two equal deviations
    assert math.isnan(table.loc["C", "extreme_seed"]) and math.isnan(table.loc["C", "std"])
    with pytest.raises(ValueError, match="lack"):
        seed_influence(results.drop(columns="nll"))


def test_bnvae_sweep_config_is_the_comparison_grids_config():
    """The γ sweep shared with the trained γ explorer is the very config the comparison trains."""
    from bnvae_core.config import SMOKE_SIZE
    from bnvae_core.experiments.compare import COMPARE_SIZE, bnvae_sweep_config
    for smoke in (False, True):
        base = TrainConfig(**{**COMPARE_SIZE, **(SMOKE_SIZE if smoke else {})})
        grid = grid_configs(base, ["vae", "bnvae"], seeds=2, gammas=[0.3, 0.9], conditional=False)
        shared = [bnvae_sweep_config(g, seed=s, smoke=smoke) for g in (0.3, 0.9) for s in (0, 1)]
        assert [c.hash() for c in grid if c.model == "bnvae"] == [c.hash() for c in shared]


def test_workers_train_in_processes_and_give_the_same_rows(grid, tmp_path):
    """compare(workers=2) trains and evaluates the missing runs in two processes, then reads the cache:
    the same numbers as in-process training (seeded), and a second call is a cache hit."""
    results, _, _ = grid
    extra = grid_configs(TrainConfig(**MICRO), ["vae"], seeds=[5])
    parallel = compare(["lm", "vae"], seeds=2, base=TrainConfig(**MICRO), iw_samples=5, root=tmp_path,
                       workers=2, extra=extra)
    assert list(parallel.seed) == [0, 1, 0, 1, 5]
    same = results[results.model.isin(["lm", "vae"])].reset_index(drop=True)
    np.testing.assert_allclose(parallel.nll.iloc[:4], same.nll, rtol=1e-5)
    assert all((Path(d) / "eval").is_dir() for d in parallel.run_dir)      # evaluated inside the workers
