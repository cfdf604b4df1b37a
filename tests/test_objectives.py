"""Every method in one objective API (issue 5): each trains and evaluates, and the parts that
make a method what it is are checked against their formulas, not just "it runs"."""
import json
import math

import numpy as np
import pytest
import torch

from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.data.corpus import load_corpus, make_batch
from bnvae_core.errors import ConfigError
from bnvae_core.methods import METHODS, make_method, method_label
from bnvae_core.methods.aggressive import InnerLoopStopRule, aggressive_phase_over
from bnvae_core.methods.base import TrainContext
from bnvae_core.methods.schedules import cyclical_weight, linear_warmup_weight
from bnvae_core.metrics.text import elbo, evaluate, iw_nll, kl_per_example
from bnvae_core.models import distributions as dist
from bnvae_core.models.posteriors import DUVAE_VAR_FLOOR, reparameterize
from bnvae_core.training.loop import train
from bnvae_core.training.run_folder import load_checkpoint
from bnvae_core.training.step import update

ALL_METHODS = ("lm", "vae", "bnvae", "beta", "cyclical", "fb", "fb-dim", "delta", "vmf", "aggressive",
               "pretrain-fb", "duvae")

#: seconds per method on a loaded 2-core machine: 96 sentences, 6 batches of 16
MICRO = dict(data="wordnet", max_train=96, max_eval=32, max_tokens=12, emb_dim=8, hidden_dim=16, nz=4,
             max_vocab=300, batch_size=16, epochs=1, warmup_epochs=0, device="cpu",
             aggressive_check_every=2, aggressive_max_steps=4, pretrain_epochs=1)


@pytest.fixture(scope="module")
def micro_corpus():
    return load_corpus("wordnet", max_train=96, max_eval=32, max_tokens=12, max_vocab=300)


def micro_model(model_name, corpus, **changes):
    torch.manual_seed(0)
    config = TrainConfig(model=model_name, **{**MICRO, **changes})
    return config, make_method(config).build_model(len(corpus.vocab))


def context(config, model, corpus, get_optimizer, make_optimizer) -> TrainContext:
    """A training context as the trainer builds one, with ``update`` bound to ``model``."""
    def bound_update(loss, optimizer=None, only=None):
        opt = optimizer if optimizer is not None else get_optimizer()
        return bool(torch.isfinite(update(model, opt, loss, config.clip_grad, only)))
    return TrainContext(config, model, corpus, torch.device("cpu"), get_optimizer=get_optimizer,
                        make_optimizer=make_optimizer, update=bound_update, state={})


def test_registry_has_every_method_of_the_issue():
    assert set(ALL_METHODS) <= set(METHODS)
    assert method_label(TrainConfig(model="bnvae", gamma=0.7)) == "BN-VAE (γ=0.7)"
    assert method_label(TrainConfig(model="fb-dim")) == "FB (per dim) (λ=0.25)"    # the method's default λ


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_method_trains_one_epoch_and_evaluates_finite(name, tmp_path):
    run = train(TrainConfig(model=name, **MICRO), tmp_path / "run", progress=False)
    train_row, valid_row = run.epoch_rows
    assert all(math.isfinite(train_row[k]) for k in ("loss", "rec", "kl"))
    res = evaluate(run.model, run.corpus.test, iw_samples=4)
    for key in ("nll", "ppl", "kl", "mi", "elbo", "rec"):
        assert math.isfinite(res[key]), (name, key, res[key])
    assert 0 <= res["au"] <= MICRO["nz"]
    if name == "lm":
        assert run.model.encoder is None and run.model.nz == 0
        assert res["kl"] == 0 and res["mi"] == 0 and res["au"] == 0
        assert res["nll"] == pytest.approx(res["rec"], rel=1e-6)           # exact NLL, no latent
    if name == "vmf":
        assert res["kl"] == pytest.approx(dist.vmf_kl_to_uniform(13.0, MICRO["nz"]), rel=1e-5)
    if name == "delta":
        assert res["kl"] >= 0.15 * MICRO["nz"] - 1e-4
    if name == "aggressive":
        assert train_row["aggressive"] is True and 2 <= train_row["inner_steps_mean"] <= 4
        assert set(load_checkpoint(run.path / "checkpoint.pt")["method"]) == {"aggressive", "previous_mi"}
    if name == "pretrain-fb":
        assert math.isfinite(train_row["pretrain_rec"]) and train_row["pretrain_time_s"] <= train_row["time_s"]


# --- schedules ----------------------------------------------------------------------------

def test_linear_warmup_formula():
    assert linear_warmup_weight(0, 100, 0.1) == pytest.approx(0.1)
    assert linear_warmup_weight(50, 100, 0.1) == pytest.approx(0.55)
    assert linear_warmup_weight(100, 100) == 1.0 and linear_warmup_weight(250, 100) == 1.0
    assert linear_warmup_weight(0, 0) == 1.0                                 # no warm-up
    beta = make_method(TrainConfig(model="beta", beta=0.3, warmup_epochs=2, kl_start=0.0))
    assert beta.kl_weight(0, 10) == beta.kl_weight(5, 10) == 0.3             # the reference: constant β
    assert beta.selection_loss({"rec": 10.0, "kl": 2.0, "loss": 12.0}) == pytest.approx(10.6)   # rec + β·KL
    annealed = make_method(TrainConfig(model="beta", beta=0.3, warmup_epochs=2, kl_start=0.0, beta_warmup=True))
    assert annealed.kl_weight(5, 10) == pytest.approx(0.3 * 0.25)            # β × warm-up
    assert annealed.kl_weight(40, 10) == pytest.approx(0.3)
    assert method_label(annealed.config) == "β-VAE (β=0.3, annealed)"


def test_cyclical_schedule_at_known_steps():
    """Fu et al. (2019) eq. 6 with T = 100, M = 4 (L = 25), R = 0.5: rise over 12.5 steps, then 1."""
    w = [cyclical_weight(t, 100, 4, 0.5, "linear") for t in range(100)]
    assert w[0] == 0 and w[5] == pytest.approx(0.4) and w[12] == pytest.approx(0.96)
    assert w[13] == 1 and w[24] == 1
    assert w[25] == 0 and w[30] == pytest.approx(0.4) and w[99] == 1     # each cycle restarts
    assert w[:25] == w[25:50] == w[50:75] == w[75:]
    assert cyclical_weight(100, 100, 4, 0.5) == 1.0                       # beyond the run: plateau
    # the shapes at v = τ/R: sigmoid 1/(1+e^{−(12v−6)}), cosine ½ − ½cos(πv)
    assert cyclical_weight(5, 100, 4, 0.5, "cosine") == pytest.approx(0.5 - 0.5 * math.cos(0.4 * math.pi))
    assert cyclical_weight(5, 100, 4, 0.5, "sigmoid") == pytest.approx(1 / (1 + math.exp(-(12 * 0.4 - 6))))
    assert cyclical_weight(0, 100, 4, 0.5, "sigmoid") == pytest.approx(1 / (1 + math.exp(6)))
    # a method uses it over epochs × batches steps, ignoring the warm-up settings
    cyc = make_method(TrainConfig(model="cyclical", epochs=4, cycles=2, cycle_ratio=0.25, warmup_epochs=10))
    assert cyc.kl_weight(10, 25) == pytest.approx(10 / 12.5) and cyc.kl_weight(50, 25) == 0.0
    assert cyc.kl_weight(60, 25) == pytest.approx(0.8) and cyc.kl_weight(63, 25) == 1.0


def test_training_loop_logs_the_methods_schedule(tmp_path):
    config = TrainConfig(model="cyclical", **{**MICRO, "epochs": 2, "cycles": 3, "cycle_shape": "cosine"})
    run = train(config, tmp_path / "run", progress=False)
    rows = [r for r in run.history_rows if r["split"] == "train"]
    total = rows[-1]["step"]
    for r in rows:
        assert r["kl_weight"] == pytest.approx(cyclical_weight(r["step"], total, 3, 0.5, "cosine"))


# --- free bits ----------------------------------------------------------------------------

def test_fb_kl_term_is_max_of_kl_and_target(micro_corpus):
    config, model = micro_model("fb", micro_corpus, target_kl=5.0)
    fb = make_method(config)
    kl = torch.tensor([1.0, 6.0, 4.9, 5.1], requires_grad=True)
    term = fb.objective_kl(kl, None, None, model)
    assert torch.equal(term, torch.maximum(kl, torch.tensor(5.0)))
    term.sum().backward()
    assert kl.grad.tolist() == [0.0, 1.0, 0.0, 1.0]            # the reference code's mask 1[KL > λ]
    batch = make_method(config.replace(fb_scope="batch"))
    with torch.no_grad():
        assert float(batch.objective_kl(kl, None, None, model)) == 5.0          # max(mean 4.25, 5)
        assert float(batch.objective_kl(kl * 2, None, None, model)) == pytest.approx(8.5)
    # in the loss: mean_i (rec_i + w·max(KL_i, λ)) with the true KL logged
    b = make_batch(micro_corpus.train, np.arange(8))
    terms = fb.loss(model, b.tokens, b.lengths, kl_weight=0.7)
    assert torch.equal(terms.extra["objective_kl"], terms.kl.clamp_min(5.0))
    expected = (terms.rec + 0.7 * terms.kl.clamp_min(5.0)).mean()
    assert float(terms.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_fb_per_dimension_and_pretrain_fb_terms(micro_corpus):
    torch.manual_seed(1)
    mu, logvar = torch.randn(6, 4), 0.3 * torch.randn(6, 4)
    per_dim = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1)                   # (B, n)
    config, model = micro_model("fb-dim", micro_corpus, target_kl=0.4)
    term = make_method(config).objective_kl(per_dim.sum(1), mu, logvar, model)
    assert float(term) == pytest.approx(float(per_dim.mean(0).clamp_min(0.4).sum()))   # Kingma et al. 2016
    config, model = micro_model("pretrain-fb", micro_corpus, target_kl=2.0)
    term = make_method(config).objective_kl(per_dim.sum(1), mu, logvar, model)
    assert torch.allclose(term, per_dim.clamp_min(2.0 / 4).sum(1))          # Li et al. 2019: λ/n per dim
    assert make_method(TrainConfig(model="fb")).target_kl == 5.0
    assert make_method(TrainConfig(model="pretrain-fb")).target_kl == 8.0


# --- δ-VAE --------------------------------------------------------------------------------

def test_delta_vae_kl_at_least_delta_per_dimension_always(micro_corpus):
    delta = 0.15
    gen = torch.Generator().manual_seed(0)
    for scale in (0.01, 1.0, 30.0):                           # any encoder output, even extreme ones
        raw_mu, raw_lv = scale * torch.randn(500, 8, generator=gen), scale * torch.randn(500, 8, generator=gen)
        mu, logvar = dist.delta_vae_constrain(raw_mu, raw_lv, delta)
        per_dim = dist.gaussian_kl_per_dim(mu, logvar)
        assert (per_dim >= delta - 1e-5).all()
        # the formula: KL_j = δ + ½ relu(raw μ_j) + ½·1e-6
        assert torch.allclose(per_dim, delta + 0.5 * torch.relu(raw_mu) + 0.5e-6, rtol=1e-4, atol=1e-4)
    # the variance bounds: the roots of ½(σ² − log σ² − 1) = δ
    s_l, s_u = dist.delta_vae_sigma_bounds(delta)
    for s in (s_l, s_u):
        assert 0.5 * (s * s - math.log(s * s) - 1) == pytest.approx(delta, abs=1e-12)
    # through the model, with random (large) weights: every sentence's KL ≥ δ·n
    config, model = micro_model("delta", micro_corpus, init_range=0.5)
    b = make_batch(micro_corpus.train, np.arange(32))
    mu, logvar = model.eval().encode(b.tokens, b.lengths)
    assert (model.posterior.kl(mu, logvar) >= delta * config.nz - 1e-4).all()
    assert (logvar.exp().sqrt() >= s_l - 1e-6).all() and (logvar.exp().sqrt() <= s_u + 1e-6).all()


# --- vMF ----------------------------------------------------------------------------------

def test_vmf_kl_is_constant_in_mu_and_equals_the_closed_form(micro_corpus):
    kappa, m = 13.0, 8
    config, model = micro_model("vmf", micro_corpus, nz=m, kappa=kappa, init_range=0.3)
    b = make_batch(micro_corpus.train, np.arange(24))
    with torch.no_grad():
        mu, logvar = model.eval().encode(b.tokens, b.lengths)
    assert torch.allclose(mu.norm(dim=1), torch.ones(24), atol=1e-5)               # unit mean directions
    assert len(set(mu[:, 0].tolist())) > 1                                          # different μ ...
    kl = model.posterior.kl(mu, logvar)
    assert torch.allclose(kl, torch.full_like(kl, float(kl[0])))                   # ... the same KL
    # closed form vs numerical integration over the cosine w = μ·z, whose marginal density is
    # ∝ e^{κw}(1−w²)^{(m−3)/2} under the vMF and ∝ (1−w²)^{(m−3)/2} under the uniform prior
    w = np.linspace(-1, 1, 400001)
    base = (1 - w ** 2) ** ((m - 3) / 2)
    log_zq = kappa + np.log(np.trapezoid(np.exp(kappa * (w - 1)) * base, w))
    log_zu = np.log(np.trapezoid(base, w))
    mean_w = np.trapezoid(w * np.exp(kappa * (w - 1)) * base, w) / np.trapezoid(np.exp(kappa * (w - 1)) * base, w)
    kl_numeric = kappa * mean_w - (log_zq - log_zu)
    assert float(kl[0]) == pytest.approx(kl_numeric, rel=1e-5)
    # the IW-NLL's proposal and prior: E_q[log q(z|x) − log p(z)] over vMF samples is that KL
    gen = torch.Generator().manual_seed(0)
    z = model.posterior.sample(mu.double(), None, k=4000, generator=gen)          # (24, 4000, m)
    assert torch.allclose(z.norm(dim=-1), torch.ones(()).double(), atol=1e-9)
    log_ratio = model.posterior.log_density(z, mu.double(), None) - model.posterior.prior_log_density(z)
    assert float(log_ratio.mean()) == pytest.approx(kl_numeric, abs=0.02)
    assert float((z * mu.double().unsqueeze(1)).sum(-1).mean()) == pytest.approx(mean_w, abs=0.005)
    assert np.isnan(kl_per_example(model, micro_corpus.valid)["kl_0"]).all()      # not per dimension


# --- aggressive training ------------------------------------------------------------------

def reference_stop_step(losses, tokens, check_every, max_steps):
    """He et al.'s inner loop, transcribed: windows of ``check_every`` updates; stop after the first
    window whose per-token loss is above the previous window's, or after ``max_steps`` updates."""
    previous, window_loss, window_tokens = 1e4, 0.0, 0
    for step in range(1, max_steps + 1):
        window_loss += losses[step - 1]
        window_tokens += tokens[step - 1]
        if step % check_every == 0:
            current = window_loss / window_tokens
            if previous - current < 0:
                return step
            previous, window_loss, window_tokens = current, 0.0, 0
    return max_steps


def run_rule(rule, losses, tokens):
    for loss, n in zip(losses, tokens):
        if rule.update(loss, n):
            return rule.steps
    raise AssertionError("the rule never stopped")


def test_aggressive_inner_loop_stop_rule_on_scripted_sequences():
    # improving, improving, worse → stops at the end of the third window
    rule = InnerLoopStopRule(check_every=3, max_steps=100)
    assert run_rule(rule, [5, 5, 5, 4, 4, 4, 4, 4, 4.3] + [0] * 50, [1] * 59) == 9
    assert rule.stopped_by == "no-improvement" and rule.window_losses == pytest.approx([5, 4, 4.1])
    # an equal window is not worse: continue, until max_steps
    rule = InnerLoopStopRule(check_every=3, max_steps=7)
    assert run_rule(rule, [4] * 20, [1] * 20) == 7 and rule.stopped_by == "max-steps"
    # per token: a larger sum over more tokens can be an improvement
    rule = InnerLoopStopRule(check_every=2, max_steps=6)
    assert run_rule(rule, [10, 10, 12, 12, 20, 20], [2, 2, 3, 3, 2, 2]) == 6     # 5 → 4 → 10: stop at 6
    assert rule.window_losses == pytest.approx([5, 4, 10]) and rule.stopped_by == "no-improvement"
    # the first window is compared with +∞: never stops there
    rule = InnerLoopStopRule(check_every=4, max_steps=100)
    assert run_rule(rule, [1e6] * 4 + [2e6] * 4, [1] * 8) == 8
    # against the transcription of the reference loop, on random sequences
    rng = np.random.default_rng(0)
    for _ in range(300):
        k, max_steps = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        tokens = rng.integers(5, 40, max_steps)
        losses = list(tokens * rng.normal(4.0, 0.3, max_steps))          # per-token loss ≈ 4 ± 0.3
        tokens = list(tokens)
        assert run_rule(InnerLoopStopRule(k, max_steps), losses, tokens) == \
            reference_stop_step(losses, tokens, k, max_steps)


def test_aggressive_phase_ends_when_validation_mi_drops(micro_corpus):
    assert not aggressive_phase_over(0.0, 0.5) and not aggressive_phase_over(0.5, 0.5)
    assert aggressive_phase_over(0.5, 0.4)
    method = make_method(TrainConfig(model="aggressive"))
    flags = []
    for mi in (0.1, 0.3, 0.2, 0.5):                           # MI climbs, climbs, drops: aggressive off
        row = {}
        method.after_epoch(None, row, {"mi": mi})
        flags.append((row["aggressive"], method.aggressive))
    assert flags == [(True, True), (True, True), (True, False), (False, False)]
    state = method.state_dict()
    again = make_method(TrainConfig(model="aggressive"))
    again.load_state_dict(state)
    assert again.aggressive is False and again.previous_mi == 0.2


def test_aggressive_step_updates_only_the_encoder_then_leaves_the_decoder_step(micro_corpus):
    config, model = micro_model("aggressive", micro_corpus)
    method = make_method(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    ctx = context(config, model, micro_corpus, get_optimizer=lambda: optimizer, make_optimizer=lambda: None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    b = make_batch(micro_corpus.train, np.arange(16))
    terms = method.train_step(ctx, b, kl_weight=1.0)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("encoder.") for k in changed)     # the inner loop: encoder only
    assert 2 <= method.inner_steps[-1] <= 4
    optimizer.zero_grad(set_to_none=True)
    terms.loss.backward()                                      # what the loop steps on: decoder only
    grads = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(k.startswith("decoder.") for k in grads)


# --- LM, pretrain-fb, DU-VAE ----------------------------------------------------------------

def test_lm_nll_equals_the_iw_path_with_no_latent(micro_corpus):
    config, model = micro_model("lm", micro_corpus)
    split = micro_corpus.valid
    model.eval()
    with torch.no_grad():
        b = make_batch(split, np.arange(len(split)))
        exact = model.reconstruction_nll(b.tokens, b.lengths, None).double().numpy()   # Σ_t −log p(w_t|w_<t)
    for k in (1, 7):
        assert np.allclose(iw_nll(model, split, k=k), exact, rtol=1e-5)
    res = evaluate(model, split, iw_samples=3)
    assert res["nll"] == pytest.approx(exact.mean(), rel=1e-5) == pytest.approx(elbo(model, split)["loss"], rel=1e-5)
    assert (res["kl"], res["mi"], res["au"]) == (0, 0, 0)
    assert res["ppl"] == pytest.approx(math.exp(exact.sum() / split.n_tokens), rel=1e-5)


def test_pretrain_fb_pretrains_the_encoder_and_resets_the_decoder(micro_corpus):
    config, model = micro_model("pretrain-fb", micro_corpus, pretrain_epochs=2)
    method = make_method(config)
    enc_before = model.encoder.to_params.weight.detach().clone()
    ctx = context(config, model, micro_corpus, get_optimizer=lambda: None,
                  make_optimizer=lambda: torch.optim.SGD(model.parameters(), lr=1.0))
    trained_decoder = {}
    reset = model.reset_parameters

    def spy(prefix=""):                       # the decoder as the AE phase left it, before the reset
        trained_decoder.update({k: v.detach().clone() for k, v in model.decoder.named_parameters()})
        reset(prefix)
    model.reset_parameters = spy
    model.train()
    report = method.pretrain(ctx)
    assert method.pretrained and math.isfinite(report["pretrain_rec"])
    assert not torch.equal(model.encoder.to_params.weight, enc_before)          # the encoder learned
    assert float(trained_decoder["out.weight"].abs().max()) > config.init_range  # so did the decoder ...
    for name, p in model.decoder.named_parameters():                            # ... which is fresh again
        bound = config.init_emb_range if "embed" in name else config.init_range
        assert float(p.detach().abs().max()) <= bound, name
        assert not torch.equal(p, trained_decoder[name]), name
    method.before_epoch(ctx)                                                    # only once
    assert method.state_dict() == {"pretrained": True}


def test_duvae_renormalized_gamma_and_variance_dropout(micro_corpus):
    config, model = micro_model("duvae", micro_corpus, gamma=0.5, duvae_dropout=0.5)
    head = model.bn_head
    assert head.learn_gamma and head.bn.weight.requires_grad
    with torch.no_grad():
        head.bn.weight.copy_(torch.tensor([0.1, 2.0, 1.0, 0.3]))                # as if learned
    w = head.weight().detach()
    assert float(w.pow(2).mean().sqrt()) == pytest.approx(0.5)                  # RMS γ_j = γ
    assert float(head.kl_lower_bound()) == pytest.approx(0.5 * 4 * 0.25 + 0.5 * float(head.beta.detach().pow(2).sum()))
    model.train()
    b = make_batch(micro_corpus.train, np.arange(32))
    with torch.no_grad():
        mu, logvar = model.encode(b.tokens, b.lengths)
    floor = math.log(DUVAE_VAR_FLOOR)
    dropped = (logvar - floor).abs() < 1e-6
    assert 0.25 < float(dropped.float().mean()) < 0.75                           # p = 0.5 of σ² zeroed
    assert float(model.posterior.kl(mu, logvar).mean()) >= float(head.last_kl_bound) - 1e-4
    model.eval()
    _, logvar_eval = model.encode(b.tokens, b.lengths)
    assert (logvar_eval > floor).all()                                          # no dropout at evaluation


def test_gaussian_helpers_have_one_implementation():
    torch.manual_seed(3)
    a = reparameterize(torch.zeros(2, 3), torch.zeros(2, 3))
    torch.manual_seed(3)
    assert torch.equal(a, dist.reparameterize(torch.zeros(2, 3), torch.zeros(2, 3)).squeeze(1))


# --- config and command line ----------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (dict(cycle_shape="square"), "cycle_shape"), (dict(cycle_ratio=0.0), "cycle_ratio"),
    (dict(kappa=-1.0), "kappa"), (dict(delta=0.0), "delta"), (dict(target_kl=-1.0), "target_kl"),
    (dict(model="vmf", nz=1), "vmf needs nz >= 2"), (dict(duvae_dropout=1.0), "duvae_dropout"),
    (dict(model="duvae", gamma=0.0), "gamma = 0"), (dict(aggressive_max_steps=0), "aggressive_max_steps"),
])
def test_method_settings_are_validated(bad, match):
    """Field ranges fail when the config is made; method-level checks when its method is."""
    with pytest.raises(ConfigError, match=match):
        make_method(TrainConfig(**bad))


def test_cache_name_counts_only_the_methods_own_settings():
    c = TrainConfig(model="vae", nz=16)
    assert c.replace(kappa=16.0).hash() == c.hash()                # κ is vMF's: it does not change a VAE
    v = c.replace(model="vmf")
    assert v.replace(kappa=13.0).hash() == v.hash() != v.replace(kappa=16.0).hash()


def test_cli_trains_and_evaluates_with_method_flags(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--max-train", "96", "--max-eval", "32", "--max-tokens", "12", "--emb-dim", "8", "--hidden-dim", "16",
             "--nz", "4", "--batch-size", "16", "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu"]
    assert main(["train", "--model", "vmf", "--kappa", "8", "--out", str(out), "--no-progress", *flags]) == 0
    capsys.readouterr()
    saved = TrainConfig.load(out / "config.json")
    assert (saved.model, saved.kappa) == ("vmf", 8.0)
    assert main(["evaluate", str(out), "--iw-samples", "3", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "vmf" and res["kl"] == pytest.approx(dist.vmf_kl_to_uniform(8.0, 4), rel=1e-5)
    assert math.isfinite(res["nll"])
    assert main(["train", "--model", "fb", "--kappa", "-1", "--out", str(tmp_path / "x"), *flags]) == 2
    assert "error: " in capsys.readouterr().err and not (tmp_path / "x").exists()
