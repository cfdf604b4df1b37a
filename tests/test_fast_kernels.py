"""The speed-ups of the training step (issue 8) compute the same function as the plain PyTorch
ops they replace: the fused output layer + cross-entropy, the rand-mask dropout and the
gradient clipping that skips multiplying by 1."""
import math

import pytest
import torch
import torch.nn.functional as F

from bnvae_core.models.layers import (
    Decoder,
    RandDropout,
    _nll_from_softmax,
    linear_cross_entropy,
)
from bnvae_core.training.step import clip_gradients_


def _reference_nll(h, w, b, y):
    return F.cross_entropy(F.linear(h, w, b).float(), y, ignore_index=-100, reduction="none")


def _inputs(dtype, n=37, hidden=11, vocab=23, seed=0, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    h = (spread * torch.randn(n, hidden, generator=gen, dtype=dtype)).requires_grad_()
    w = torch.randn(vocab, hidden, generator=gen, dtype=dtype).requires_grad_()
    b = torch.randn(vocab, generator=gen, dtype=dtype).requires_grad_()
    y = torch.randint(0, vocab, (n,), generator=gen)
    y[[3, 10, 11]] = -100                                     # padding positions
    upstream = torch.rand(n, generator=gen, dtype=dtype) + 0.5  # non-uniform weights per row
    return h, w, b, y, upstream


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_cross_entropy_matches_linear_plus_cross_entropy(dtype):
    h, w, b, y, upstream = _inputs(dtype)
    got = linear_cross_entropy(h, w, b, y)
    grads = torch.autograd.grad((got * upstream.float()).sum(), (h, w, b))
    ref = _reference_nll(h, w, b, y)
    ref_grads = torch.autograd.grad((ref * upstream.float()).sum(), (h, w, b))
    tol = dict(rtol=1e-5, atol=1e-5)              # both compute the softmax in fp32
    assert got.dtype == torch.float32
    assert bool((got[[3, 10, 11]] == 0).all())
    torch.testing.assert_close(got, ref, **tol)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype
        torch.testing.assert_close(g, r, **tol)


def test_linear_cross_entropy_underflowing_probabilities_stay_exact():
    """Targets with probability < 1e-30 (far below fp32's normal range) take the log-softmax
    fallback: finite and equal to the reference, not −log 0 = inf."""
    h, w, b, y, _ = _inputs(torch.float32, spread=40.0)
    ref = _reference_nll(h, w, b, y)
    assert float(ref.detach().max()) > 100, "the test needs some targets with probability < e^-100"
    got = linear_cross_entropy(h, w, b, y)
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("host_sync", [True, False])
def test_both_nll_branches_agree_with_log_softmax(host_sync):
    """The CPU branch (−log p, log-softmax fallback) and the GPU branch (log-softmax of every
    row, no host sync) give the same NLL, including targets of probability < 1e-30."""
    gen = torch.Generator().manual_seed(3)
    logits = 30 * torch.randn(50, 40, generator=gen)
    targets = torch.randint(0, 40, (50,), generator=gen)
    ref = -torch.log_softmax(logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1)
    assert float(ref.max()) > 70
    got = _nll_from_softmax(logits, torch.softmax(logits, 1), targets, host_sync=host_sync)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-3)


def test_linear_cross_entropy_under_bf16_autocast_matches_autocast_reference():
    h, w, b, y, upstream = _inputs(torch.float32, n=64, hidden=32, vocab=50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h, w, b, y)
        ref = _reference_nll(h, w, b, y)
    grads = torch.autograd.grad((got * upstream).sum(), (h, w, b))
    ref_grads = torch.autograd.grad((ref * upstream).sum(), (h, w, b))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype == torch.float32
        cos = F.cosine_similarity(g.flatten().double(), r.flatten().double(), dim=0)
        assert float(cos) > 0.999


def test_decoder_target_nll_equals_cross_entropy_of_its_logits():
    torch.manual_seed(0)
    dec = Decoder(vocab_size=30, emb_dim=8, hidden_dim=12, nz=4).eval()
    inputs = torch.randint(3, 30, (5, 7))
    targets = torch.randint(3, 30, (5, 7))
    targets[1, 4:] = -100
    z = torch.randn(5, 4)
    logits, _ = dec(inputs, z)
    ref = F.cross_entropy(logits.reshape(-1, 30), targets.reshape(-1), ignore_index=-100,
                          reduction="none").view(5, 7).sum(1)
    torch.testing.assert_close(dec.target_nll(inputs, targets, z), ref, rtol=1e-5, atol=1e-5)


def test_rand_dropout_is_dropout():
    x = torch.ones(400, 500, requires_grad=True)
    drop = RandDropout(0.3)
    drop.eval()
    assert drop(x) is x
    drop.train()
    torch.manual_seed(1)
    y = drop(x)
    kept = y != 0
    frac = kept.double().mean().item()
    n = x.numel()
    assert abs(frac - 0.7) < 5 * math.sqrt(0.7 * 0.3 / n)           # Binomial(n, 0.7) / n
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, y.detach())                        # ∂(x·m)/∂x = m
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)                                   # seeded
    assert torch.equal(RandDropout(0.0).train()(x), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert drop(x.detach().bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("max_norm", [0.5, 1e6, math.inf])
def test_clip_gradients_equals_clip_grad_norm(max_norm):
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(7, 5, generator=gen), torch.randn(13, generator=gen)]
    mine = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for a, b, g in zip(mine, theirs, grads):
        a.grad, b.grad = g.clone(), g.clone()
    norm = clip_gradients_(mine, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, ref)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_clip_gradients_reports_non_finite_norm():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([1.0, float("nan"), 2.0])
    assert not bool(torch.isfinite(clip_gradients_([p], 5.0)))
    assert float(clip_gradients_([torch.nn.Parameter(torch.zeros(2))], 5.0)) == 0.0
