"""The claims the project teaches, as tests that can fail."""
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import bucket_batches, load_corpus, make_batch
from bnvae_core.methods import make_method
from bnvae_core.metrics.text import (
    active_units,
    elbo,
    iw_nll,
    mutual_information,
    perplexity,
)
from bnvae_core.models.distributions import gaussian_kl_per_dim as gaussian_kl
from bnvae_core.models.layers import BNHead
from bnvae_core.training.loop import train


@pytest.mark.parametrize("gamma", [0.3, 0.6, 1.0])
def test_bn_kl_bound_holds_on_every_training_batch(gamma):
    """KL of every training batch ≥ ½Σ(γ² s²/(s²+ε) + β²) exactly, and ≥ nγ²/2 (up to the s²/(s²+ε)
    factor) once the encoder separates sentences: n = 32, γ .3 → 1.44, .6 → 5.76, 1.0 → 16 nats."""
    torch.manual_seed(0)
    config = TrainConfig(model="bnvae", gamma=gamma, **{**TINY, "max_train": 640})
    corpus = load_corpus("wordnet", max_train=640, max_eval=50, max_tokens=20, max_vocab=2000)
    model = make_method(config).build_model(len(corpus.vocab))
    method = make_method(config)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    nominal = config.nz * gamma ** 2 / 2
    checked_nominal = 0
    for epoch in range(3):
        for index in bucket_batches(corpus.train, 32, shuffle=True, seed=0, epoch=epoch, drop_singletons=True):
            b = make_batch(corpus.train, index)
            terms = method.loss(model, b.tokens, b.lengths, kl_weight=1.0)
            batch_kl = float(terms.kl.detach().mean())
            exact = float(model.bn_head.last_kl_bound)
            assert batch_kl >= exact - 1e-4 * max(1.0, exact)
            beta_term = 0.5 * float((model.bn_head.beta.detach() ** 2).sum())
            with torch.no_grad():
                mu_pre, _ = model.encode_raw(b.tokens, b.lengths)
                s2 = mu_pre.var(0, unbiased=False)
            shrink = float((s2 / (s2 + 1e-5)).mean())            # ½γ²Σ_j s_j²/(s_j²+ε) = nominal·shrink
            assert batch_kl >= nominal * shrink + beta_term - 1e-3
            if shrink > 0.99:
                checked_nominal += 1
                assert batch_kl >= 0.99 * nominal
            opt.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    assert checked_nominal > 10
    assert model.bn_head.gamma == pytest.approx(gamma)      # γ is fixed, never learned
    assert not model.bn_head.bn.weight.requires_grad and model.bn_head.beta.requires_grad


def test_near_identical_batch_falls_below_the_nominal_bound():
    """μ̂ mean square = γ² s²/(s²+ε) + β²: with s² ≪ ε the batch KL bound collapses towards β²."""
    head = BNHead(32, gamma=0.6).train()
    mu = 1.0 + 1e-4 * torch.randn(64, 32)                     # s² ≈ 1e-8 ≪ ε = 1e-5
    mu_hat = head(mu)
    kl_floor = 0.5 * float(mu_hat.detach().pow(2).sum(1).mean())
    assert kl_floor < 0.01 * 32 * 0.36 / 2
    assert kl_floor == pytest.approx(float(head.last_kl_bound), rel=1e-3)


def test_batch_of_one_uses_running_statistics_instead_of_crashing():
    head = BNHead(4, gamma=0.5).train()
    out = head(torch.randn(1, 4))
    assert out.shape == (1, 4) and torch.isfinite(out).all()


def test_bnvae_keeps_all_units_active_and_kl_above_bound(tiny_bnvae):
    run = tiny_bnvae
    train_rows = [r for r in run.history_rows if r["split"] == "train"]
    assert train_rows[-1]["kl"] >= 5.76                     # n γ²/2 for γ = 0.6
    assert train_rows[-1]["kl_batch_min"] >= 5.76 * 0.99
    assert train_rows[-1]["kl_minus_batch_bound_min"] >= -1e-3
    au, var = active_units(run.model, run.corpus.valid)
    assert au == 32 and (var > 0.01).all()


def test_plain_vae_collapses_on_small_corpus(tiny_vae, tiny_bnvae):
    vae_kl = elbo(tiny_vae.model, tiny_vae.corpus.valid)["kl"]
    bn_kl = elbo(tiny_bnvae.model, tiny_bnvae.corpus.valid)["kl"]
    au, _ = active_units(tiny_vae.model, tiny_vae.corpus.valid)
    assert vae_kl < 0.5 and au <= 1
    assert bn_kl > 10 * max(vae_kl, 0.1)


def test_iw_nll_below_negative_elbo_and_not_growing_with_k(tiny_bnvae):
    model, split = tiny_bnvae.model, tiny_bnvae.corpus.valid.subset(np.arange(60))
    neg_elbo = np.mean([elbo(model, split, seed=s)["loss"] for s in range(5)])
    nll = {k: iw_nll(model, split, k=k, seed=1).mean() for k in (1, 10, 100)}
    assert nll[100] <= neg_elbo
    assert nll[1] == pytest.approx(neg_elbo, rel=0.03)            # K=1 is the ELBO itself
    assert nll[10] <= nll[1] + 0.05 and nll[100] <= nll[10] + 0.05  # tighter as K grows


def test_mutual_information_at_most_log_n(tiny_bnvae, tiny_vae):
    split = tiny_bnvae.corpus.valid
    mi_bn = mutual_information(tiny_bnvae.model, split, n_samples=2)
    mi_vae = mutual_information(tiny_vae.model, split, n_samples=2)
    # the estimator (sampled log q(z|x) − log of the aggregate posterior) is noisy around 0 for a
    # collapsed model and can dip slightly below it; it never exceeds log N
    assert -0.01 <= mi_vae < mi_bn <= math.log(len(split)) + 1e-9
    assert mi_vae < 0.2


def test_perplexity_counts_end_of_sentence():
    c = load_corpus("wordnet", max_train=50, max_eval=20)
    nll = np.full(len(c.valid), 2.0)
    assert perplexity(nll, c.valid) == pytest.approx(math.exp(2.0 * 20 / (c.valid.lengths.sum() + 20)))


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5) * 0.3
    z = mu + (0.5 * logvar).exp() * torch.randn(200000, 3, 5)
    log_q = -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi))
    log_p = -0.5 * (z ** 2 + math.log(2 * math.pi))
    mc = (log_q - log_p).mean(0)
    assert torch.allclose(gaussian_kl(mu, logvar), mc, atol=0.02)


def test_decoder_uses_z_at_every_step_and_in_its_initial_state():
    config = TrainConfig(model="vae", emb_dim=8, hidden_dim=16, nz=4, dropout_in=0, dropout_out=0, init_range=0.3)
    model = make_method(config).build_model(20).eval()
    assert model.decoder.lstm.input_size == 8 + 4
    tokens, lengths = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    z1, z2 = torch.zeros(1, 4), torch.ones(1, 4)
    a = model.reconstruction_nll(tokens, lengths, z1)
    b = model.reconstruction_nll(tokens, lengths, z2)
    assert not torch.allclose(a, b)
    many = model.reconstruction_nll(tokens, lengths, torch.stack([z1, z2], 1))   # (B, k, nz) path
    assert torch.allclose(many, torch.stack([a, b], 1), atol=1e-5)


@pytest.mark.parametrize("scheme", ["bnvae", "he"])
def test_first_epoch_batch_kl_with_each_init_scheme(scheme, tmp_path):
    """BN-VAE's own init (encoder at PyTorch's defaults): every training batch of the first epoch
    already has KL ≥ 0.9·nγ²/2. He et al.'s ±0.01 encoder: pre-BN variances ≈ 1e-8 ≪ ε, so BN
    shrinks μ̂ by s²/(s²+ε) and the first batches' KL is far below the nominal bound (but still
    on the exact floor ½Σ(γ²s²/(s²+ε) + β²))."""
    run = train(TrainConfig(model="bnvae", gamma=0.6, init_scheme=scheme, **{**TINY, "epochs": 1}),
                tmp_path / "run", progress=False)
    first = run.epoch_rows[0]
    assert first["kl_minus_batch_bound_min"] >= -1e-3
    if scheme == "bnvae":
        assert first["kl_batch_min"] >= 0.9 * 5.76
    else:
        assert first["kl_batch_min"] < 0.5 * 5.76
