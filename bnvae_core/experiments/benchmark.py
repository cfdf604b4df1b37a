"""Throughput of training and evaluation, measured against the machine's own limit.

``python -m bnvae_core bench --data wordnet --model bnvae --hidden-dim 512`` prints one JSON
object (see :func:`run_benchmark` for its keys). Everything is measured in *this* process:

1. **The limit.** :func:`gemm_gflops` times a loop of 1024×1024 ``torch.mm`` (fp32, and bf16
   when the run is bf16); that peak is the most any GEMM-bound model can reach here.
2. **The work.** :func:`train_flops` / :func:`iwnll_flops` count the matrix-multiply FLOPs of
   the LSTM VAE (formulas below); elementwise work (gates, softmax, dropout) is not counted,
   so ``flop_utilization = achieved FLOP/s ÷ peak`` is the fraction of the GEMM peak spent on
   useful GEMM work and everything else shows up as the gap.
3. **Training.** ``warmup_steps`` untimed steps, then ``steps`` timed steps of the training
   loop's step (:func:`make_step`: batch assembly, forward, backward, gradient clipping, SGD),
   cycling through the length-bucketed batches of the training split. Tokens are *target*
   tokens: every word plus one ``</s>`` per sentence.
4. **Evaluation.** :func:`bnvae_core.metrics.text.iw_nll` with ``K = iw_samples`` on a seeded
   subset of ``iw_sentences`` test sentences.

Every rate is measured twice: per second of wall-clock time (the headline keys) and per
second of this process's CPU time (``*_cpu`` keys). On a machine shared with other jobs the
wall-clock rates fall with the load; the CPU-time rates (GEMM peak included) hardly move, so
they are the ones to compare between runs taken at different moments.

FLOP count (one multiply-add = 2 FLOPs), emb ``E``, hidden ``H``, latent ``n``, vocabulary ``V``;
a sentence of ``L`` words has ``L`` encoder steps and ``L + 1`` decoder steps / target tokens::

    encoder LSTM, per word          2 · 4H · (E + H)
    decoder LSTM, per target        2 · 4H · (E + n + H)      (input [emb(w); z])
    output layer, per target        2 · H · V
    per sentence                    2 · H · 2n  (μ, log σ²)  +  2 · n · H  (c₀ = W z)
    training step                   3 × forward   (backward = grad wrt inputs + wrt weights)
    IW-NLL, per sentence            encoder + per sentence + K × (L + 1) × (decoder + output)

With the paper's short-Yelp sizes (E 128, H 512, n 32, V 5000) the forward is 2.62 + 2.75 + 5.12
≈ 10.5 MFLOP per target token (encoder counted per target token for short sentences), a
training step ≈ 31 MFLOP per target token, IW-NLL ≈ 7.9 MFLOP per decoded token per sample.
"""

from __future__ import annotations

import contextlib
import platform
import resource
import statistics
import time

import numpy as np
import torch

from ..config import TrainConfig
from ..data.corpus import bucket_batches
from ..devices import check_precision, resolve_device
from ..errors import ConfigError
from ..metrics.text import iw_nll
from ..training.loop import Trainer, corpus_for

#: FLOPs of one multiply-add
_MAC = 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(n: int = 1024, seconds: float = 0.5, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, repeats: int = 3, clock: str = "wall") -> float:
    """Peak matrix-multiply rate, GFLOP/s: the best of ``repeats`` timed loops of ``torch.mm``
    of two ``n × n`` matrices (``2 n³`` FLOPs each), each loop lasting about ``seconds``.
    ``clock='cpu'``: per second of process CPU time (all threads) instead of wall time."""
    return gemm_rates(n, seconds, device, dtype, repeats)[0 if clock == "wall" else 1]


def gemm_rates(n: int = 1024, seconds: float = 0.5, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, repeats: int = 3) -> tuple[float, float]:
    """(wall-clock, CPU-time) peak GFLOP/s of :func:`gemm_gflops`'s ``torch.mm`` loop."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)                                    # warm-up (primitive creation)
    _sync(device)
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, int(seconds / one))
    best_wall = best_cpu = 0.0
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        _sync(device)
        gflop = _MAC * n ** 3 * iters / 1e9
        best_wall = max(best_wall, gflop / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, gflop / max(time.process_time() - c0, 1e-9))
    return best_wall, best_cpu


def forward_flops(n_words: float, n_targets: float, n_sentences: float, emb_dim: int, hidden_dim: int,
                  nz: int, vocab_size: int, *, encoder: bool = True) -> float:
    """Matrix-multiply FLOPs of one forward pass of the LSTM VAE (module docstring).

    ``n_words``: encoder steps (Σ L); ``n_targets``: decoder steps = target tokens (Σ (L + 1));
    ``n_sentences``: sentences (for the per-sentence μ, log σ² and ``c₀ = W z`` maps).
    ``nz = 0`` is the LSTM language model (no encoder, no z input)."""
    E, H, n, V = emb_dim, hidden_dim, nz, vocab_size
    dec = _MAC * 4 * H * (E + n + H) + _MAC * H * V
    flops = n_targets * dec
    if encoder and n > 0:
        flops += n_words * _MAC * 4 * H * (E + H) + n_sentences * _MAC * H * 2 * n
    if n > 0:
        flops += n_sentences * _MAC * n * H
    return float(flops)


def train_flops(n_words: float, n_targets: float, n_sentences: float, emb_dim: int, hidden_dim: int,
                nz: int, vocab_size: int) -> float:
    """FLOPs of one training step: 3 × :func:`forward_flops` (backward = gradients with respect
    to the inputs and to the weights, each as large as the forward)."""
    return 3.0 * forward_flops(n_words, n_targets, n_sentences, emb_dim, hidden_dim, nz, vocab_size)


def train_flops_per_token(emb_dim: int, hidden_dim: int, nz: int, vocab_size: int,
                          mean_words: float | None = None) -> float:
    """Training FLOPs per target token. ``mean_words=None`` counts the encoder once per target
    token (the issue's round figure); with the mean sentence length ``L`` it is ``L/(L+1)``
    of that plus the per-sentence maps spread over ``L + 1`` targets."""
    if mean_words is None:
        return train_flops(1, 1, 0, emb_dim, hidden_dim, nz, vocab_size)
    L = float(mean_words)
    return train_flops(L, L + 1, 1, emb_dim, hidden_dim, nz, vocab_size) / (L + 1)


def iwnll_flops(n_words: float, n_targets: float, n_sentences: float, k: int, emb_dim: int,
                hidden_dim: int, nz: int, vocab_size: int) -> float:
    """FLOPs of the IW-NLL with ``k`` samples (forward only): the encoder once per sentence; the
    decoder LSTM, the output layer and ``c₀ = W z`` once per sample."""
    E, H, n, V = emb_dim, hidden_dim, nz, vocab_size
    if n == 0:
        return forward_flops(0, n_targets, n_sentences, E, H, 0, V)
    enc = n_words * _MAC * 4 * H * (E + H) + n_sentences * _MAC * H * 2 * n
    dec = n_targets * (_MAC * 4 * H * (E + n + H) + _MAC * H * V) + n_sentences * _MAC * n * H
    return float(enc + k * dec)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB: ``VmHWM`` of ``/proc/self/status`` on
    Linux (``getrusage``'s ``ru_maxrss`` survives ``exec``, so a process started from a big parent
    would report the parent's peak), else ``getrusage``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if platform.system() != "Darwin" else kib / 2 ** 20


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class TrainBench:
    """A :class:`~bnvae_core.training.loop.Trainer` and an endless supply of training batches, for
    timing its training step (:meth:`Trainer.train_batch`, the one the training loop runs).

    ``next_index()`` cycles through the length-bucketed, shuffled batches of the training split
    (a new shuffle per pass, as in training); ``time_step(index)`` assembles that batch, moves it
    to the device and runs one training step, and returns its wall time in seconds
    (synchronised on CUDA). The per-epoch bookkeeping of the loop is left out."""

    def __init__(self, config: TrainConfig, corpus, device: torch.device, seed: int = 0):
        self.trainer = Trainer(config.replace(seed=seed, device=str(device)), corpus)
        self.config, self.corpus, self.device = config, corpus, self.trainer.device
        self.model = self.trainer.model.train()
        self._bucket = lambda epoch: bucket_batches(corpus.train, config.batch_size, shuffle=True,
                                                    seed=seed, epoch=epoch, drop_singletons=True)
        self._epoch, self._queue = 0, []

    def next_index(self) -> np.ndarray:
        if not self._queue:
            self._queue = list(self._bucket(self._epoch))
            self._epoch += 1
        return self._queue.pop()

    def step(self, index: np.ndarray, kl_weight: float = 1.0):
        """One training step on the batch of sentences ``index``; returns its loss."""
        batch = self.trainer.method.make_batch(self.corpus.train, index).to(self.device)
        terms = self.trainer.train_batch(batch, kl_weight)
        if terms is None:
            raise RuntimeError(f"bench: non-finite loss or gradient at step {self.trainer.state.step + 1}")
        return terms.loss

    def time_step(self, index: np.ndarray) -> tuple[float, int, int, int, float]:
        """(wall seconds, words, target tokens, sentences, CPU seconds) of one training step on
        the batch of sentences ``index``."""
        words = int(self.corpus.train.lengths[index].sum())
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        self.step(index, 1.0)
        _sync(self.device)
        return time.perf_counter() - t0, words, words + len(index), len(index), time.process_time() - c0


def bench_training(config: TrainConfig, corpus, device: torch.device, steps: int = 300,
                   warmup_steps: int = 20, seed: int = 0) -> tuple[dict, "TrainBench"]:
    """Time ``steps`` training steps after ``warmup_steps`` untimed ones."""
    tb = TrainBench(config, corpus, device, seed)
    for _ in range(warmup_steps):
        tb.time_step(tb.next_index())
    times, words, targets, sents, pad, cpu = [], 0, 0, 0, 0, 0.0
    for _ in range(steps):
        index = tb.next_index()
        dt, w, t, s, c = tb.time_step(index)
        times.append(dt)
        words, targets, sents, cpu = words + w, targets + t, sents + s, cpu + c
        pad += len(index) * int(corpus.train.lengths[index].max()) - w
    if not times:
        return {}, tb
    total = sum(times)
    V = len(corpus.vocab)
    flops = train_flops(words, targets, sents, config.emb_dim, config.hidden_dim, tb.model.nz, V)
    ms = sorted(1e3 * t for t in times)
    return {
        "train_tokens_per_s": targets / total,
        "train_step_ms_median": statistics.median(ms),
        "train_step_ms_p10": ms[len(ms) // 10],
        "train_step_ms_p90": ms[min(len(ms) - 1, (9 * len(ms)) // 10)],
        "train_steps": steps,
        "train_target_tokens": targets,
        "train_mean_words": words / sents,
        "train_padding_fraction": pad / (pad + words),
        "train_mflop_per_token": flops / targets / 1e6,
        "train_gflops": flops / total / 1e9,
        "train_tokens_per_s_cpu": targets / max(cpu, 1e-9),
        "train_gflops_cpu": flops / max(cpu, 1e-9) / 1e9,
    }, tb


def bench_iwnll(model, split, k: int = 500, n_sentences: int = 200, seed: int = 0,
                **iw_kwargs) -> dict:
    """Sentences per second of :func:`bnvae_core.metrics.text.iw_nll` with ``k`` samples on a seeded
    subset of ``n_sentences`` sentences of ``split`` (after one untimed warm-up sentence batch)."""
    rng = np.random.default_rng(seed)
    n = min(n_sentences, len(split))
    sub = split.subset(np.sort(rng.choice(len(split), n, replace=False)))
    warm = sub.subset(np.arange(min(4, n)))
    iw_nll(model, warm, k=min(k, 50), seed=seed, **iw_kwargs)
    device = next(model.parameters()).device
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    nll = iw_nll(model, sub, k=k, seed=seed, **iw_kwargs)
    _sync(device)
    dt, cpu = time.perf_counter() - t0, max(time.process_time() - c0, 1e-9)
    cfg = model.config
    lengths = sub.lengths
    flops = iwnll_flops(lengths.sum(), lengths.sum() + n, n, k, cfg.emb_dim, cfg.hidden_dim, model.nz,
                        model.decoder.out.out_features)
    return {"iwnll_sentences_per_s": n / dt, "iwnll_seconds": dt, "iwnll_sentences_per_s_cpu": n / cpu,
            "iwnll_gflops_cpu": flops / cpu / 1e9, "iw_samples": k, "iw_sentences": n,
            "iwnll_mean_words": float(lengths.mean()), "iwnll_gflops": flops / dt / 1e9,
            "iwnll_mean_nll": float(nll.mean()),
            "iwnll_mflop_per_sentence": flops / n / 1e6}


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily run torch's CPU ops on ``n`` threads (None: leave as is)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_benchmark(config: TrainConfig, *, steps: int = 300, warmup_steps: int = 20, iw_samples: int = 500,
                  iw_sentences: int = 200, threads: int | None = None, gemm_seconds: float = 0.5,
                  corpus=None, seed: int = 0) -> dict:
    """Measure everything; returns the JSON object ``bench`` prints.

    Keys: ``train_tokens_per_s`` (target tokens incl. ``</s>`` per second), ``train_step_ms_median``,
    ``iwnll_sentences_per_s``, ``peak_rss_mb``, ``torch_threads``, ``device``, ``vocab_size``,
    ``gemm_gflops`` (fp32 peak, this process: the better of a measurement before and one after
    the timed work), ``flop_utilization`` (training GFLOP/s ÷
    ``gemm_gflops``; for bf16 runs ÷ the bf16 peak ``gemm_gflops_bf16``), the ceilings
    ``train_tokens_per_s_ceiling`` / ``iwnll_sentences_per_s_ceiling`` (peak ÷ FLOPs per unit),
    ``iwnll_flop_utilization`` and the sizes. ``steps = 0`` or ``iw_sentences = 0`` skips that part
    (its keys are then ``None``)."""
    if steps < 0 or warmup_steps < 0 or iw_samples < 1 or iw_sentences < 0:
        raise ConfigError("bench: --steps, --warmup-steps, --iw-sentences must be >= 0 and --iw-samples >= 1")
    device = resolve_device(config.device)
    precision = getattr(config, "precision", "fp32")
    check_precision(precision, device)
    with torch_threads(threads):
        corpus = corpus if corpus is not None else corpus_for(config)
        peak, peak_cpu = gemm_rates(device=device, seconds=gemm_seconds)
        peak_bf16, peak_bf16_cpu = gemm_rates(device=device, seconds=gemm_seconds, dtype=torch.bfloat16) \
            if precision == "bf16" else (None, None)
        ref_peak, ref_peak_cpu = (peak_bf16, peak_bf16_cpu) if precision == "bf16" else (peak, peak_cpu)
        train_res, tb = bench_training(config, corpus, device, steps, warmup_steps, seed)
        iw_res = {}
        if iw_sentences > 0:
            iw_res = bench_iwnll(tb.model, corpus.test, iw_samples, iw_sentences, seed)
        # the peak once more at the end: on a shared machine the best of both is the better peak
        again = gemm_rates(device=device, seconds=gemm_seconds)
        peak, peak_cpu = max(peak, again[0]), max(peak_cpu, again[1])
        if precision == "bf16":
            again = gemm_rates(device=device, seconds=gemm_seconds, dtype=torch.bfloat16)
            peak_bf16, peak_bf16_cpu = max(peak_bf16, again[0]), max(peak_bf16_cpu, again[1])
        ref_peak, ref_peak_cpu = (peak_bf16, peak_bf16_cpu) if precision == "bf16" else (peak, peak_cpu)
        n_threads = torch.get_num_threads()
    V = len(corpus.vocab)
    E, H, n = config.emb_dim, config.hidden_dim, tb.model.nz
    mean_words = train_res.get("train_mean_words", float(corpus.train.lengths.mean()))
    per_token = train_flops_per_token(E, H, n, V, mean_words)
    iw_mean_words = iw_res.get("iwnll_mean_words", float(corpus.test.lengths.mean()))
    iw_per_sentence = iwnll_flops(iw_mean_words, iw_mean_words + 1, 1, iw_samples, E, H, n, V)
    result = {
        "model": config.model, "gamma": config.gamma if "bn" in config.model else None,
        "precision": precision, "data": str(config.data),
        "emb_dim": E, "hidden_dim": H, "nz": n, "batch_size": config.batch_size,
        "vocab_size": V, "n_train": len(corpus.train),
        "device": str(device), "cpu": cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": n_threads, "torch_version": torch.__version__,
        "gemm_gflops": peak, "gemm_gflops_bf16": peak_bf16,
        "gemm_gflops_cpu": peak_cpu, "gemm_gflops_bf16_cpu": peak_bf16_cpu,
        "train_tokens_per_s": train_res.get("train_tokens_per_s"),
        "train_step_ms_median": train_res.get("train_step_ms_median"),
        "train_tokens_per_s_ceiling": ref_peak * 1e9 / per_token,
        "flop_utilization": (train_res["train_gflops"] / ref_peak) if train_res else None,
        "flop_utilization_cpu": (train_res["train_gflops_cpu"] / ref_peak_cpu) if train_res else None,
        "iwnll_sentences_per_s": iw_res.get("iwnll_sentences_per_s"),
        "iwnll_sentences_per_s_ceiling": ref_peak * 1e9 / iw_per_sentence,
        "iwnll_flop_utilization": (iw_res["iwnll_gflops"] / ref_peak) if iw_res else None,
        "iwnll_flop_utilization_cpu": (iw_res["iwnll_gflops_cpu"] / ref_peak_cpu) if iw_res else None,
        "train_mflop_per_token_nominal": train_flops_per_token(E, H, n, V) / 1e6,
        "warmup_steps": warmup_steps,
    }
    result.update({k: v for k, v in train_res.items() if k not in result})
    result.update({k: v for k, v in iw_res.items() if k not in result})
    result["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return result
