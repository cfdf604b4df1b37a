"""Micro-benchmarks behind the "why not faster" section of ``bench/README.md``: each piece of a
training step at the issue's sizes against the GEMM peak, on one core unless stated.

    .venv/bin/python bench/kernels.py [--repeats 30]

Prints one table (CPU milliseconds per call and the fraction of the 1024² ``torch.mm`` rate):

* ``output layer``: ``F.linear`` + ``F.cross_entropy`` forward and backward over 352 tokens
  (32 sentences of 10 words + ``</s>``), V = 5000, H = 512; and the fused
  :func:`bnvae_core.model.linear_cross_entropy`.
* ``LSTMs``: the encoder and decoder ``nn.LSTM`` (oneDNN) forward + backward, and a hand-written
  LSTM (one ``addmm`` per step, a custom backward with one weight-gradient GEMM) for comparison.
* ``dropout``: a 352 × 512 mask from ``bernoulli_`` (``F.dropout``) and from ``rand ≥ p``.
* ``eval block``: output layer + log-softmax of 8192 evaluation tokens in blocks of 1024, with a
  fresh tensor per block vs reused buffers (page faults counted).
* ``two halves``: the LSTMs + output layer of half a batch on one core, alone and while the
  other half runs on the other core (two Python threads, one OpenMP thread each).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bnvae_core.threads import prefer_passive_wait  # noqa: E402

prefer_passive_wait()   # OpenMP reads its wait policy when torch loads: choose it first (bnvae_core.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bnvae_core.experiments import benchmark  # noqa: E402
from bnvae_core.models.layers import linear_cross_entropy  # noqa: E402

H, V, E, NZ, B, L = 512, 5000, 128, 32, 32, 10
N = B * (L + 1)                                   # target tokens of one batch


def cpu_ms(fn, repeats: int, clock=time.process_time) -> float:
    """Milliseconds per call (process CPU time, or ``clock=time.perf_counter`` for wall time),
    averaged over ``repeats`` calls after 3 warm-ups."""
    for _ in range(3):
        fn()
    t0 = clock()
    for _ in range(repeats):
        fn()
    return (clock() - t0) / repeats * 1e3


class _HandLSTM(torch.autograd.Function):
    """LSTM recurrence over a precomputed input projection ``xproj (T, B, 4H)``: one ``addmm``
    per step forward; backward per step for ∂h, then one GEMM for ∂W_hh."""

    @staticmethod
    def forward(ctx, xproj, h0, c0, w_hh):
        T, Bn, G = xproj.shape
        Hh = G // 4
        acts = torch.empty_like(xproj)
        cs, hs = xproj.new_empty(T + 1, Bn, Hh), xproj.new_empty(T + 1, Bn, Hh)
        cs[0], hs[0] = c0, h0
        for t in range(T):
            g = torch.addmm(xproj[t], hs[t], w_hh.t(), out=acts[t])
            g[:, :2 * Hh].sigmoid_()
            g[:, 2 * Hh:3 * Hh].tanh_()
            g[:, 3 * Hh:].sigmoid_()
            i, f, gg, o = g.chunk(4, 1)
            c = torch.addcmul(f * cs[t], i, gg, out=cs[t + 1])
            torch.mul(o, torch.tanh(c), out=hs[t + 1])
        ctx.save_for_backward(acts, cs, hs, w_hh)
        return hs[1:]

    @staticmethod
    def backward(ctx, dout):
        acts, cs, hs, w_hh = ctx.saved_tensors
        T, Bn, G = acts.shape
        Hh = G // 4
        dgates = torch.empty_like(acts)
        dh, dc = acts.new_zeros(Bn, Hh), acts.new_zeros(Bn, Hh)
        for t in range(T - 1, -1, -1):
            dh = dh + dout[t]
            i, f, g, o = acts[t].chunk(4, 1)
            tc = torch.tanh(cs[t + 1])
            di, df, dg, do = dgates[t].chunk(4, 1)
            torch.mul(dh, tc, out=do)
            dc = dc + dh * o * (1 - tc * tc)
            torch.mul(dc, g, out=di)
            torch.mul(dc, i, out=dg)
            torch.mul(dc, cs[t], out=df)
            dc = dc * f
            di.mul_(i * (1 - i))
            df.mul_(f * (1 - f))
            dg.mul_(1 - g * g)
            do.mul_(o * (1 - o))
            dh = dgates[t] @ w_hh
        dw = dgates.view(-1, G).t() @ hs[:T].reshape(-1, Hh)
        return dgates, None, None, dw


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    reps = args.repeats
    peak = benchmark.gemm_rates(seconds=0.5)[1]                 # GFLOP per CPU-second, one core
    rows = []

    def add(name, ms, flops=None, note=""):
        util = f"{flops / (ms / 1e3) / 1e9 / peak:.0%}" if flops else ""
        rows.append((name, f"{ms:.2f}", util, note))

    # output layer
    w = (torch.rand(V, H) * .02 - .01).requires_grad_()
    bias = torch.zeros(V, requires_grad=True)
    h = torch.randn(N, H, requires_grad=True)
    y = torch.randint(0, V, (N,))
    fl = 3 * 2 * H * V * N

    def plain_output():
        loss = F.cross_entropy(F.linear(h, w, bias), y, reduction="none").sum()
        torch.autograd.grad(loss, (h, w, bias))

    def fused_output():
        torch.autograd.grad(linear_cross_entropy(h, w, bias, y).sum(), (h, w, bias))

    add("output layer: F.linear + F.cross_entropy, fwd+bwd", cpu_ms(plain_output, reps), fl)
    add("output layer: linear_cross_entropy, fwd+bwd", cpu_ms(fused_output, reps), fl)

    # LSTMs
    enc, dec = nn.LSTM(E, H), nn.LSTM(E + NZ, H)
    xe, xd = torch.randn(L, B, E, requires_grad=True), torch.randn(L + 1, B, E + NZ, requires_grad=True)
    ge, gd = torch.randn(L, B, H), torch.randn(L + 1, B, H)
    fl_lstm = 3 * 2 * 4 * H * ((E + H) * B * L + (E + NZ + H) * N)
    params = [*enc.parameters(), *dec.parameters(), xe, xd]

    def onednn():
        oe, _ = enc(xe)
        od, _ = dec(xd)
        torch.autograd.grad((oe * ge).sum() + (od * gd).sum(), params)

    def hand_written():
        outs = []
        for m, x in ((enc, xe), (dec, xd)):
            xproj = torch.addmm(m.bias_ih_l0 + m.bias_hh_l0, x.reshape(-1, x.shape[-1]),
                                m.weight_ih_l0.t()).view(x.shape[0], B, -1)
            zeros = x.new_zeros(B, H)
            outs.append(_HandLSTM.apply(xproj, zeros, zeros, m.weight_hh_l0))
        torch.autograd.grad((outs[0] * ge).sum() + (outs[1] * gd).sum(), params)

    add("LSTMs (enc + dec): nn.LSTM / oneDNN, fwd+bwd", cpu_ms(onednn, reps), fl_lstm)
    add("LSTMs (enc + dec): hand-written, fwd+bwd", cpu_ms(hand_written, reps), fl_lstm)

    # dropout masks
    x = torch.randn(N, H)
    add("dropout 352x512: F.dropout (bernoulli_)", cpu_ms(lambda: F.dropout(x, 0.5, True), 10 * reps))
    add("dropout 352x512: rand >= p mask", cpu_ms(lambda: x * torch.rand(x.shape).ge_(0.5).mul_(2.0), 10 * reps))

    # evaluation blocks
    ntok, block = 8192, 1024
    he = torch.randn(ntok, H)
    ye = torch.randint(0, V, (ntok,))
    wd, bd = w.detach(), bias.detach()
    buf, buf2 = torch.empty(block, V), torch.empty(block, V)

    def fresh():
        for u in range(0, ntok, block):
            F.cross_entropy(F.linear(he[u:u + block], wd, bd), ye[u:u + block], reduction="none")

    def reused():
        for u in range(0, ntok, block):
            lg = torch.addmm(bd, he[u:u + block], wd.t(), out=buf)
            torch.log_softmax(lg, 1, out=buf2).gather(1, ye[u:u + block, None])

    for name, fn in (("fresh tensors", fresh), ("reused buffers", reused)):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ms = cpu_ms(fn, max(3, reps // 5))
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / (max(3, reps // 5) + 3)
        add(f"eval block 8192 tok / 1024: {name}", ms, 2 * H * V * ntok, f"{faults:.0f} page faults per call")

    # two halves on two cores
    def half(sl):
        oe, _ = enc(xe[:, sl])
        od, _ = dec(xd[:, sl])
        loss = F.cross_entropy(F.linear(od.reshape(-1, H), w, bias), y.view(L + 1, B)[:, sl].reshape(-1))
        torch.autograd.grad(loss + 1e-3 * oe.sum(), [*enc.parameters(), *dec.parameters(), w, bias])

    first, second = slice(0, B // 2), slice(B // 2, None)
    pool = ThreadPoolExecutor(1)
    pool.submit(torch.set_num_threads, 1).result()

    def both():
        job = pool.submit(half, second)
        half(first)
        job.result()

    add("half batch, one core, alone (wall)", cpu_ms(lambda: half(first), reps, time.perf_counter))
    add("two half batches, one per core, together (wall)", cpu_ms(both, reps, time.perf_counter))
    pool.shutdown()

    print(f"GEMM peak {peak:.1f} GFLOP per CPU-second (1 thread)\n")
    print("| piece | ms | of the peak | |\n|---|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
