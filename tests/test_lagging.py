"""The lagging-encoder diagnostic (bnvae_core.lagging): the importance-sampled model posterior mean
against numeric integration, and the snapshot loop's contract."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bnvae_core.analysis.lagging import (
    lag_summary,
    posterior_mean_snapshots,
    posterior_means,
)
from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import make_batch
from bnvae_core.methods import make_method
from bnvae_core.metrics.text import eval_mode
from bnvae_core.training.loop import corpus_for

MICRO = dict(data="wordnet", max_train=200, max_eval=40, max_tokens=12, max_vocab=500, emb_dim=16,
             hidden_dim=32, nz=1, epochs=1, warmup_epochs=0, device="cpu")


def exact_posterior_mean(model, split, grid=np.linspace(-7, 7, 1401)):
    """E_p(z|x)[z] for nz = 1 by the trapezoid rule on p(x|z) N(z; 0, 1) over ``grid``."""
    z = torch.tensor(grid, dtype=torch.float32).view(1, -1, 1)
    out = np.zeros(len(split))
    with eval_mode(model):
        for i in range(len(split)):
            b = make_batch(split, [i])
            tokens, lengths = b.tokens, b.lengths
            log_joint = (-model.reconstruction_nll(tokens, lengths, z)[0].double().numpy()
                         - 0.5 * grid ** 2)
            w = np.exp(log_joint - log_joint.max())
            out[i] = np.trapezoid(w * grid, grid) / np.trapezoid(w, grid)
    return out


@pytest.fixture(scope="module")
def informative_model():
    """A nz = 1 model whose decoder depends strongly on z (so p(z|x) is far from the prior)."""
    config = TrainConfig(model="vae", **MICRO)
    corpus = corpus_for(config)
    torch.manual_seed(0)
    model = make_method(config).build_model(len(corpus.vocab))
    with torch.no_grad():                     # make z matter: large weights from z into the decoder
        for name, p in model.named_parameters():
            if name == "decoder.z_to_state.weight":
                p.normal_(0.0, 3.0)
            elif name == "decoder.out.weight":
                p.normal_(0.0, 1.0)
    return model, corpus.valid.subset(np.arange(6))


def test_importance_sampled_mean_matches_numeric_integration(informative_model):
    model, split = informative_model
    q, p = posterior_means(model, split, k=4000, chunk=500, seed=1)
    exact = exact_posterior_mean(model, split)
    assert q.shape == p.shape == (len(split), 1)
    assert np.abs(exact).max() > 0.2, "the test model's posterior should move away from 0"
    assert np.allclose(p[:, 0], exact, atol=0.03), (p[:, 0], exact)


def test_posterior_means_are_seeded_and_leave_the_global_rng(informative_model):
    model, split = informative_model
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = posterior_means(model, split, k=20, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = posterior_means(model, split, k=20, seed=7)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    with pytest.raises(ValueError):
        posterior_means(model, split, k=0)


def test_snapshots_contract_and_cache(tmp_path):
    config = TrainConfig(model="bnvae", gamma=0.6, **MICRO)
    df = posterior_mean_snapshots(config, sentences=5, every=3, k=5, root=tmp_path)
    n_batches_total = df.step.max()
    steps = sorted(df.step.unique())
    assert steps[0] == 0 and steps[1] == 3 and steps[-1] == n_batches_total
    assert (df.groupby("step").size() == 5).all()
    assert {"model", "step", "epoch", "kl_weight", "sentence", "gap", "q_norm", "p_norm",
            "q_mean_0", "p_mean_0"} <= set(df.columns)
    assert np.allclose(df.gap, (df.p_mean_0 - df.q_mean_0).abs())
    assert math.isclose(df.epoch.max(), 1.0)
    assert set(df.model) == {"BN-VAE (γ=0.6)"}
    cached = list(tmp_path.glob("*.csv"))
    assert len(cached) == 1
    again = posterior_mean_snapshots(config, sentences=5, every=3, k=5, root=tmp_path, label="BN")
    assert set(again.model) == {"BN"} and np.allclose(again.gap, df.gap)
    summary = lag_summary(df)
    assert len(summary) == len(steps)
    last = df[df.step == df.step.max()]
    assert summary.q_spread.iloc[-1] == pytest.approx(last.q_mean_0.std(ddof=0))


def _two_model_snapshots():
    rows = []
    for model, scale, noise in (("wide", 3.0, 0.3), ("narrow", 0.1, 0.3)):
        rng = np.random.default_rng(1)
        for step in (0, 10):
            p = rng.normal(size=20) * scale
            q = p + rng.normal(size=20) * noise
            for i in range(20):
                rows.append({"model": model, "step": step, "sentence": i, "q_mean_0": q[i], "p_mean_0": p[i],
                             "gap": abs(p[i] - q[i]), "q_norm": abs(q[i]), "p_norm": abs(p[i])})
    return pd.DataFrame(rows)


def test_relative_gap_is_scale_free_and_one_for_a_constant_code():
    df = _two_model_snapshots()
    s = lag_summary(df)
    # the same absolute noise: equal absolute gaps, but a much smaller relative gap for the wide model
    wide, narrow = s[s.model == "wide"].iloc[-1], s[s.model == "narrow"].iloc[-1]
    assert wide.gap == pytest.approx(narrow.gap, rel=0.5)
    assert wide.relative_gap < 0.2 < 1.0 < narrow.relative_gap
    # a constant code (every sentence gets the mean of the model means) has relative gap exactly 1
    const = df.copy()
    const["q_mean_0"] = const.groupby(["model", "step"])["p_mean_0"].transform("mean")
    assert np.allclose(lag_summary(const).relative_gap, 1.0)
    with pytest.raises(ValueError):
        lag_summary(df.drop(columns="p_mean_0"))


def test_final_lag_one_row_per_model_at_its_last_step():
    from bnvae_core.analysis.lagging import final_lag
    s = lag_summary(_two_model_snapshots())
    last = final_lag(s)
    assert list(last.model) == ["wide", "narrow"] and (last.step == 10).all()
    with pytest.raises(ValueError):
        final_lag(s.iloc[:0])
