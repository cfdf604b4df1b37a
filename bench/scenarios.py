"""Benchmark scenarios of issue 8: CSVs and plots in ``bench/out/`` (PNG + SVG), a markdown table.

    .venv/bin/python bench/scenarios.py                 # everything (about 15 min on 2 busy cores)
    .venv/bin/python bench/scenarios.py --quick         # a smoke run (tiny sizes, about a minute)
    .venv/bin/python bench/scenarios.py --only headline,iw_k

Scenarios (each writes ``bench/out/<name>.csv``; those with a plot also ``<name>.png/.svg``):

* ``headline`` — the issue's sizes (emb 128, hid 512, nz 32, batch 32, vocabulary 5000):
  VAE, BN-VAE and the plain ``nn.LSTM`` loop of ``bench/baseline.py`` in fp32, VAE and BN-VAE in
  bf16, all **interleaved step by step in one process** on the same batches (the library's
  models see identical batch sequences), so load changes on a shared machine hit every variant
  alike. Reports tokens/s (wall and CPU time), the BN/VAE step-time ratio (median of per-batch
  ratios), the ratio to the baseline, FLOP utilization; then IW-NLL (K = 500) sentences/s in
  fp32 and bf16 and the peak memory.
* ``scaling`` — median step time vs batch size, sentence length (batches of one length),
  hidden size and latent size (fp32, one variable at a time around the headline sizes).
* ``iw_k`` — IW-NLL seconds per sentence vs K.
* ``eval_rows`` — IW-NLL speed vs the decoder rows per pass (``model.EVAL_ROWS_PER_PASS``).
* ``threads`` — step time with 1 thread and with all cores.
* ``memory`` — peak RSS vs training-corpus size (synthetic corpora of n WordNet glosses), each
  size in a fresh process.
* ``before_after`` — the ``bench`` command of earlier commits (``--before``: before any speed
  work, and the first release) and of this checkout, alternated in fresh processes (git worktrees).

Timing is wall-clock and process CPU time (see :mod:`bnvae_core.experiments.benchmark`); on a shared
machine compare the CPU-time columns between runs, and wall-clock only within one run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bnvae_core.threads import prefer_passive_wait  # noqa: E402

prefer_passive_wait()   # OpenMP reads its wait policy when torch loads: choose it first (bnvae_core.threads)

import torch  # noqa: E402
from baseline import BaselineBench  # noqa: E402

from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.experiments import benchmark  # noqa: E402
from bnvae_core.models import text_vae as model_module  # noqa: E402
from bnvae_core.training.loop import corpus_for  # noqa: E402

#: the paper's short-Yelp sizes (Zhu et al. 2020, after He et al. 2019)
ISSUE_SIZES = dict(emb_dim=128, hidden_dim=512, nz=32, batch_size=32, max_vocab=5000, max_train=8000,
                   max_eval=1000, device="cpu")
QUICK_SIZES = dict(emb_dim=32, hidden_dim=64, nz=8, batch_size=16, max_vocab=1000, max_train=800,
                   max_eval=100, device="cpu")
#: the commit before the speed work of issue 8 (fp32 eval path, no bf16, no OMP policy), and the
#: first release's speed work (before the fused output layer and the eval buffers)
BEFORE = "8d51dcc,853a100"


def machine() -> dict:
    load = os.getloadavg()
    return {"cpu": benchmark.cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_avg_1_5_15": [round(x, 2) for x in load],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def save_plot(fig, out: Path, name: str) -> None:
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", dpi=130)
    import matplotlib.pyplot as plt
    plt.close(fig)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", palette="colorblind")
    plt.rcParams["text.usetex"] = False
    return plt, sns


def plot_headline(table: pd.DataFrame, steps: pd.DataFrame, title: str, out: Path) -> None:
    """Bar charts of tokens/s (wall, CPU) and the per-step CPU times of the headline variants."""
    plt, sns = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, col, label in ((axes[0], "tokens_per_s", "target tokens / s (wall clock)"),
                           (axes[1], "tokens_per_cpu_s", "target tokens / CPU-second")):
        sns.barplot(data=table, y="variant", x=col, ax=ax, hue="variant", legend=False)
        ax.set_xlabel(f"training throughput ({label})")
        ax.set_ylabel("")
    fig.suptitle(title)
    save_plot(fig, out, "headline")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in ("vae fp32", "bnvae fp32", "baseline fp32", "vae bf16", "bnvae bf16"):
        g = steps[steps.variant == name]
        ax.plot(np.arange(len(g)), 1e3 * g.cpu_s.to_numpy(), ".", ms=3, label=name)
    ax.set_xlabel("timed step")
    ax.set_ylabel("step CPU time (ms)")
    ax.legend(fontsize=8)
    ax.set_title("VAE vs BN-VAE vs plain loop, step by step")
    save_plot(fig, out, "headline_steps")


# --- headline ------------------------------------------------------------------------------------

def headline(sizes: dict, rounds: int, steps_per_round: int, warmup: int, iw_sentences: int, iw_k: int,
             out: Path) -> dict:
    corpus = corpus_for(TrainConfig(**sizes))
    dev = torch.device("cpu")
    V = len(corpus.vocab)
    E, H, n, B = sizes["emb_dim"], sizes["hidden_dim"], sizes["nz"], sizes["batch_size"]
    peak_wall, peak_cpu = benchmark.gemm_rates(seconds=0.5)
    bpeak_wall, bpeak_cpu = benchmark.gemm_rates(seconds=0.5, dtype=torch.bfloat16)
    variants = {
        "vae fp32": benchmark.TrainBench(TrainConfig(model="vae", **sizes), corpus, dev),
        "bnvae fp32": benchmark.TrainBench(TrainConfig(model="bnvae", **sizes), corpus, dev),
        "vae bf16": benchmark.TrainBench(TrainConfig(model="vae", precision="bf16", **sizes), corpus, dev),
        "bnvae bf16": benchmark.TrainBench(TrainConfig(model="bnvae", precision="bf16", **sizes), corpus, dev),
    }
    base = BaselineBench(corpus.train, V, E, H, n, B)
    rows = []
    for r in range(-1, rounds):                         # round −1: warm-up, not recorded
        for _ in range(warmup if r < 0 else steps_per_round):
            index = variants["vae fp32"].next_index()
            for name, tb in variants.items():
                if name != "vae fp32":
                    tb.next_index()                      # same batch sequence for all
                wall, words, targets, sents, cpu = tb.time_step(index)
                if r >= 0:
                    rows.append({"variant": name, "round": r, "batch_words": words, "targets": targets,
                                 "sentences": sents, "wall_s": wall, "cpu_s": cpu, "batch_id": len(rows)})
            bidx = base.next_index()
            c0 = time.process_time()
            wall, targets = base.time_step(bidx)
            cpu = time.process_time() - c0
            if r >= 0:
                L = len(corpus.train.sentence(int(bidx[0])))
                rows.append({"variant": "baseline fp32", "round": r, "batch_words": L * len(bidx),
                             "targets": targets, "sentences": len(bidx), "wall_s": wall, "cpu_s": cpu,
                             "batch_id": len(rows)})
        # the GEMM peak again after every round: the best measurement is the machine's peak
        w, c = benchmark.gemm_rates(seconds=0.2, repeats=1)
        peak_wall, peak_cpu = max(peak_wall, w), max(peak_cpu, c)
        w, c = benchmark.gemm_rates(seconds=0.2, repeats=1, dtype=torch.bfloat16)
        bpeak_wall, bpeak_cpu = max(bpeak_wall, w), max(bpeak_cpu, c)
    steps = pd.DataFrame(rows)
    steps.to_csv(out / "headline_steps.csv", index=False)
    summary = []
    for name, g in steps.groupby("variant", sort=False):
        flops = benchmark.train_flops(g.batch_words.sum(), g.targets.sum(), g.sentences.sum(), E, H, n, V)
        bf16 = "bf16" in name
        pw, pc = (bpeak_wall, bpeak_cpu) if bf16 else (peak_wall, peak_cpu)
        summary.append({"variant": name, "steps": len(g),
                        "tokens_per_s": g.targets.sum() / g.wall_s.sum(),
                        "tokens_per_cpu_s": g.targets.sum() / g.cpu_s.sum(),
                        "step_ms_median": 1e3 * g.wall_s.median(),
                        "step_cpu_ms_median": 1e3 * g.cpu_s.median(),
                        "flop_utilization": flops / g.wall_s.sum() / 1e9 / pw,
                        "flop_utilization_cpu": flops / g.cpu_s.sum() / 1e9 / pc})
    table = pd.DataFrame(summary).set_index("variant")

    def paired_ratio(a: str, b: str, col: str) -> float:
        x = steps[steps.variant == a][col].to_numpy()
        y = steps[steps.variant == b][col].to_numpy()
        return float(np.median(x / y))
    ratios = {"bn_over_vae_step_fp32": paired_ratio("bnvae fp32", "vae fp32", "wall_s"),
              "bn_over_vae_step_fp32_cpu": paired_ratio("bnvae fp32", "vae fp32", "cpu_s"),
              "bn_over_vae_step_bf16": paired_ratio("bnvae bf16", "vae bf16", "wall_s"),
              "bn_over_vae_step_bf16_cpu": paired_ratio("bnvae bf16", "vae bf16", "cpu_s"),
              "vae_over_baseline_tokens_per_s": table.loc["vae fp32", "tokens_per_s"]
              / table.loc["baseline fp32", "tokens_per_s"],
              "vae_over_baseline_tokens_per_cpu_s": table.loc["vae fp32", "tokens_per_cpu_s"]
              / table.loc["baseline fp32", "tokens_per_cpu_s"],
              "bf16_over_fp32_tokens_per_s_vae": table.loc["vae bf16", "tokens_per_s"]
              / table.loc["vae fp32", "tokens_per_s"],
              "bf16_over_fp32_tokens_per_cpu_s_vae": table.loc["vae bf16", "tokens_per_cpu_s"]
              / table.loc["vae fp32", "tokens_per_cpu_s"]}
    # IW-NLL, fp32 and bf16 (the trained-for-a-few-steps BN-VAE; speed does not depend on the weights)
    iw = {}
    for name in ("bnvae fp32", "bnvae bf16"):
        if iw_sentences:
            iw[name] = benchmark.bench_iwnll(variants[name].model, corpus.test, iw_k, iw_sentences)
    mean_words = steps.batch_words.sum() / steps.sentences.sum()
    per_token = benchmark.train_flops_per_token(E, H, n, V, mean_words)
    iw_mw = next(iter(iw.values()))["iwnll_mean_words"] if iw else float(corpus.test.lengths.mean())
    iw_per_sentence = benchmark.iwnll_flops(iw_mw, iw_mw + 1, 1, iw_k, E, H, n, V)
    table["ceiling_tokens_per_s"] = [(bpeak_wall if "bf16" in v else peak_wall) * 1e9 / per_token for v in table.index]
    table["ceiling_tokens_per_cpu_s"] = [(bpeak_cpu if "bf16" in v else peak_cpu) * 1e9 / per_token
                                         for v in table.index]
    table.to_csv(out / "headline.csv")
    result = {"sizes": sizes, "vocab_size": V, "gemm_gflops": peak_wall, "gemm_gflops_cpu": peak_cpu,
              "gemm_gflops_bf16": bpeak_wall, "gemm_gflops_bf16_cpu": bpeak_cpu,
              "train_mflop_per_token": per_token / 1e6, "mean_words": mean_words,
              "table": table.reset_index().to_dict("records"), "ratios": ratios,
              "iwnll": {k: {**v, "ceiling_sentences_per_s": (bpeak_wall if "bf16" in k else peak_wall) * 1e9
                            / iw_per_sentence,
                            "ceiling_sentences_per_cpu_s": (bpeak_cpu if "bf16" in k else peak_cpu) * 1e9
                            / iw_per_sentence,
                            "flop_utilization": v["iwnll_gflops"] / (bpeak_wall if "bf16" in k else peak_wall),
                            "flop_utilization_cpu": v["iwnll_gflops_cpu"] / (bpeak_cpu if "bf16" in k else peak_cpu)}
                        for k, v in iw.items()},
              "peak_rss_mb": benchmark.peak_rss_mb()}
    if iw:
        result["ratios"]["bf16_over_fp32_iwnll"] = (iw["bnvae bf16"]["iwnll_sentences_per_s"]
                                                    / iw["bnvae fp32"]["iwnll_sentences_per_s"])
        result["ratios"]["bf16_over_fp32_iwnll_cpu"] = (iw["bnvae bf16"]["iwnll_sentences_per_s_cpu"]
                                                        / iw["bnvae fp32"]["iwnll_sentences_per_s_cpu"])
    plot_headline(table.reset_index(), steps, f"E {E}, H {H}, nz {n}, batch {B}, V {V}; interleaved in one process",
                  out)
    return result


# --- scaling -------------------------------------------------------------------------------------------

def _median_step(tb, n_steps: int, warmup: int, index_fn=None) -> dict:
    index_fn = index_fn or tb.next_index
    for _ in range(warmup):
        tb.time_step(index_fn())
    walls, cpus, targets = [], [], 0
    for _ in range(n_steps):
        wall, words, t, sents, cpu = tb.time_step(index_fn())
        walls.append(wall)
        cpus.append(cpu)
        targets += t
    return {"step_ms_median": 1e3 * statistics.median(walls), "step_cpu_ms_median": 1e3 * statistics.median(cpus),
            "tokens_per_s": targets / sum(walls), "tokens_per_cpu_s": targets / sum(cpus)}


def scaling(sizes: dict, n_steps: int, warmup: int, out: Path, quick: bool) -> pd.DataFrame:
    dev = torch.device("cpu")
    grids = {"batch_size": [8, 16, 32, 64, 128], "hidden_dim": [128, 256, 512, 1024], "nz": [8, 16, 32, 64]}
    if quick:
        grids = {"batch_size": [8, 32], "hidden_dim": [32, 64], "nz": [4, 8]}
    rows = []
    corpus = corpus_for(TrainConfig(**sizes))
    for var, values in grids.items():
        for v in values:
            cfg = TrainConfig(model="bnvae", **{**sizes, var: v})
            tb = benchmark.TrainBench(cfg, corpus, dev)
            rows.append({"variable": var, "value": v, **_median_step(tb, n_steps, warmup)})
            print(f"  scaling {var}={v}: {rows[-1]['step_cpu_ms_median']:.1f} CPU-ms/step", flush=True)
    # sentence length: batches of sentences of exactly one length
    cfg = TrainConfig(model="bnvae", **sizes)
    tb = benchmark.TrainBench(cfg, corpus, dev)
    lengths = corpus.train.lengths
    rng = np.random.default_rng(0)
    for L in ([5, 10] if quick else [5, 10, 15, 20, 25]):
        pool = np.flatnonzero(lengths == L)
        if len(pool) < cfg.batch_size:
            continue
        res = _median_step(tb, n_steps, warmup, lambda: rng.choice(pool, cfg.batch_size, replace=False))
        rows.append({"variable": "sentence_length", "value": L, **res})
        print(f"  scaling length={L}: {res['step_cpu_ms_median']:.1f} CPU-ms/step", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "scaling.csv", index=False)
    plt, sns = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    labels = {"batch_size": "batch size (sentences)", "sentence_length": "sentence length (words)",
              "hidden_dim": "hidden size H", "nz": "latent size nz"}
    for ax, var in zip(axes, labels):
        g = df[df.variable == var]
        ax.plot(g.value, g.step_cpu_ms_median, "o-", label="CPU time")
        ax.plot(g.value, g.step_ms_median, "s--", label="wall clock")
        ax.set_xlabel(labels[var])
        ax.set_ylabel("training step (ms, median)")
        if var in ("batch_size", "hidden_dim"):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle("BN-VAE training step vs size (others at the headline sizes)")
    save_plot(fig, out, "scaling")
    return df


# --- IW-NLL ---------------------------------------------------------------------------------------

def iw_vs_k(sizes: dict, n_sentences: int, ks: list[int], out: Path) -> pd.DataFrame:
    cfg = TrainConfig(model="bnvae", **sizes)
    corpus = corpus_for(cfg)
    tb = benchmark.TrainBench(cfg, corpus, torch.device("cpu"))
    rows = []
    for precision in ("fp32", "bf16"):
        tb.model.config = cfg.replace(precision=precision)
        for k in ks:
            r = benchmark.bench_iwnll(tb.model, corpus.test, k, n_sentences)
            rows.append({"precision": precision, "K": k, "s_per_sentence": 1 / r["iwnll_sentences_per_s"],
                         "cpu_s_per_sentence": 1 / r["iwnll_sentences_per_s_cpu"],
                         "gflops_cpu": r["iwnll_gflops_cpu"]})
            print(f"  iw {precision} K={k}: {rows[-1]['cpu_s_per_sentence']:.3f} CPU-s/sentence", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "iw_k.csv", index=False)
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(data=df, x="K", y="cpu_s_per_sentence", hue="precision", marker="o", ax=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("importance samples K")
    ax.set_ylabel("IW-NLL cost (CPU-seconds / sentence)")
    ax.set_title("IW-NLL cost grows linearly in K")
    save_plot(fig, out, "iw_k")
    return df


def eval_rows(sizes: dict, n_sentences: int, k: int, out: Path, quick: bool) -> pd.DataFrame:
    cfg = TrainConfig(model="bnvae", **sizes)
    corpus = corpus_for(cfg)
    tb = benchmark.TrainBench(cfg, corpus, torch.device("cpu"))
    rows = []
    saved = model_module.EVAL_ROWS_PER_PASS, model_module.EVAL_TOKENS_PER_BLOCK
    settings = [(128, 1024), (512, 1024), (1600, 1024), (512, 256), (512, 4096)]
    if quick:
        settings = settings[:2]
    try:
        for _ in range(2):                                        # two rounds, interleaved
            for rows_per_pass, block in settings:
                model_module.EVAL_ROWS_PER_PASS, model_module.EVAL_TOKENS_PER_BLOCK = rows_per_pass, block
                r = benchmark.bench_iwnll(tb.model, corpus.test, k, n_sentences)
                rows.append({"rows_per_pass": rows_per_pass, "tokens_per_block": block,
                             "sentences_per_cpu_s": r["iwnll_sentences_per_s_cpu"],
                             "sentences_per_s": r["iwnll_sentences_per_s"]})
    finally:
        model_module.EVAL_ROWS_PER_PASS, model_module.EVAL_TOKENS_PER_BLOCK = saved
    df = pd.DataFrame(rows).groupby(["rows_per_pass", "tokens_per_block"]).max().reset_index()
    df.to_csv(out / "eval_rows.csv", index=False)
    return df


# --- threads, memory (fresh processes) -----------------------------------------------------------------

def _bench_in_child(kwargs: dict) -> dict:
    threads = kwargs.pop("threads", None)
    corpus_size = kwargs.pop("max_train")
    config = TrainConfig(**{**kwargs.pop("sizes"), "max_train": corpus_size})
    return benchmark.run_benchmark(config, threads=threads, gemm_seconds=0.2, **kwargs)


def in_fresh_process(kwargs: dict, omp_wait_policy: str | None = None) -> dict:
    """``run_benchmark`` in a new (spawned) process, optionally with another OpenMP wait policy:
    ``PASSIVE``, ``ACTIVE``, or ``SPIN<n>`` (no OMP_WAIT_POLICY, ``GOMP_SPINCOUNT=n``: spin n
    iterations, then sleep)."""
    ctx = multiprocessing.get_context("spawn")
    saved = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if omp_wait_policy and omp_wait_policy.startswith("SPIN"):
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ["GOMP_SPINCOUNT"] = omp_wait_policy[4:]
    elif omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = omp_wait_policy
    try:
        with ctx.Pool(1) as pool:
            return pool.apply(_bench_in_child, (kwargs,))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def threads_scenario(sizes: dict, steps: int, out: Path) -> pd.DataFrame:
    """1 thread vs all cores, the latter with OpenMP's passive (the library's), bounded-spin
    (``GOMP_SPINCOUNT=50000``) and active wait."""
    rows = []
    for _ in range(2):
        for t, policy in ((1, "PASSIVE"), (os.cpu_count(), "PASSIVE"), (os.cpu_count(), "SPIN50000"),
                          (os.cpu_count(), "ACTIVE")):
            r = in_fresh_process({"sizes": sizes, "max_train": sizes["max_train"], "threads": t, "steps": steps,
                                  "warmup_steps": 3, "iw_sentences": 0}, omp_wait_policy=policy)
            rows.append({"threads": t, "omp_wait_policy": policy, "tokens_per_s": r["train_tokens_per_s"],
                         "tokens_per_cpu_s": r["train_tokens_per_s_cpu"],
                         "step_ms_median": r["train_step_ms_median"]})
            print(f"  threads {t} {policy}: {r['train_step_ms_median']:.0f} ms/step", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "threads.csv", index=False)
    return df


def _synthetic_corpus(n_train: int, root: Path) -> Path:
    """A corpus directory with ``n_train`` training lines drawn (seeded, with replacement) from
    the WordNet glosses, and 200-line valid/test files: only its own size is read."""
    import gzip
    from importlib import resources
    folder = root / f"corpus-{n_train}"
    if (folder / "test.txt").exists():
        return folder
    ref = resources.files("bnvae_core") / "corpora" / "wordnet_glosses.tsv.gz"
    with resources.as_file(ref) as path, gzip.open(path, "rt", encoding="utf-8") as fh:
        glosses = [line.rstrip("\n").split("\t")[3] for line in fh]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", 200), ("test", 200)):
        pick = rng.integers(0, len(glosses), n)
        (folder / f"{name}.txt").write_text("".join(glosses[i] + "\n" for i in pick))
    return folder


def _memory_child(data: str, sizes: dict) -> dict:
    from bnvae_core.training.loop import corpus_for as load
    config = TrainConfig(**{**sizes, "data": data, "max_train": None, "max_eval": None})
    res = benchmark.run_benchmark(config, threads=1, gemm_seconds=0.05, steps=5, warmup_steps=1, iw_sentences=0)
    train = load(config).train
    res["corpus_ids_mb"] = (train.ids.nbytes + train.offsets.nbytes + train.labels.nbytes) / 2 ** 20
    return res


def memory(sizes: dict, corpus_sizes: list, out: Path) -> pd.DataFrame:
    """Peak RSS (VmHWM) of a fresh process that loads a corpus of n training sentences and runs 5
    training steps, and the size of the encoded training split (int32 ids + offsets + labels)."""
    rows = []
    root = out / "memory-corpora"
    ctx = multiprocessing.get_context("spawn")
    for n in corpus_sizes:
        folder = _synthetic_corpus(n, root)
        with ctx.Pool(1) as pool:
            r = pool.apply(_memory_child, (str(folder), sizes))
        rows.append({"n_train": r["n_train"], "vocab_size": r["vocab_size"], "peak_rss_mb": r["peak_rss_mb"],
                     "corpus_ids_mb": r["corpus_ids_mb"]})
        print(f"  memory n_train={r['n_train']}: {r['peak_rss_mb']:.0f} MiB peak, "
              f"ids {r['corpus_ids_mb']:.1f} MiB", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "memory.csv", index=False)
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(df.n_train, df.peak_rss_mb, "o-", label="peak resident memory")
    ax.plot(df.n_train, df.corpus_ids_mb, "s--", label="encoded training split")
    ax.set_xscale("log")
    ax.set_xlabel("training sentences")
    ax.set_ylabel("memory (MiB)")
    ax.set_title("memory vs corpus size (load + 5 training steps)")
    ax.legend(fontsize=8)
    save_plot(fig, out, "memory")
    return df


# --- before / after --------------------------------------------------------------------------------------

def before_after(sizes: dict, steps: int, iw_sentences: int, iw_k: int, before: str, rounds: int,
                 out: Path) -> pd.DataFrame:
    """``python -m bnvae_core bench`` of the commits ``before`` (comma-separated; each runs its own
    ``bench`` command, which every commit since the benchmark harness has) and of this checkout,
    alternately in fresh processes."""
    trees = []
    for commit in before.split(","):
        tree = Path(f"/tmp/bnvae-bench-before-{commit}")
        if not tree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                           check=True, capture_output=True)
        trees.append((commit, tree))
    args = ["bench", "--data", "wordnet", "--model", "bnvae", "--emb-dim", str(sizes["emb_dim"]),
            "--hidden-dim", str(sizes["hidden_dim"]), "--nz", str(sizes["nz"]),
            "--batch-size", str(sizes["batch_size"]), "--max-vocab", str(sizes["max_vocab"]),
            "--max-train", str(sizes["max_train"]), "--max-eval", str(sizes["max_eval"]), "--device", "cpu",
            "--steps", str(steps), "--warmup-steps", "5", "--iw-samples", str(iw_k),
            "--iw-sentences", str(iw_sentences), "--threads", "1"]   # 1 thread: the code, not the OMP policy
    rows = []
    for r in range(rounds):
        variants = [(commit, tree, []) for commit, tree in trees] + [("after", ROOT, []), ("after bf16", ROOT, ["--bf16"])]
        for label, root, extra in variants:
            env = {**os.environ, "PYTHONPATH": str(root)}
            env.pop("OMP_WAIT_POLICY", None)          # each tree's own default
            env.pop("GOMP_SPINCOUNT", None)
            proc = subprocess.run([sys.executable, "-m", "bnvae_core", *args, *extra], cwd=root, env=env,
                                  capture_output=True, text=True, check=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])     # the bench command's one JSON object
            rows.append({"code": label, "round": r, **{k: res.get(k) for k in (
                "train_tokens_per_s", "train_tokens_per_s_cpu", "train_step_ms_median", "iwnll_sentences_per_s",
                "iwnll_sentences_per_s_cpu", "peak_rss_mb", "gemm_gflops", "gemm_gflops_cpu",
                "flop_utilization", "flop_utilization_cpu", "iwnll_flop_utilization",
                "iwnll_flop_utilization_cpu", "torch_threads")}})
            print(f"  {label} round {r}: {rows[-1]['train_tokens_per_s_cpu']:.0f} tok/CPU-s, "
                  f"IW {rows[-1]['iwnll_sentences_per_s_cpu']:.3f} sent/CPU-s", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "before_after.csv", index=False)
    return df


# --- main ---------------------------------------------------------------------------------------------------

def markdown_table(res: dict) -> str:
    lines = []
    h = res.get("headline")
    if h:
        lines += ["| variant | tokens/s (wall) | tokens/CPU-s | step ms (median, wall) | FLOP util. (wall) "
                  "| FLOP util. (CPU) |", "|---|---:|---:|---:|---:|---:|"]
        for row in h["table"]:
            lines.append(f"| {row['variant']} | {row['tokens_per_s']:.0f} | {row['tokens_per_cpu_s']:.0f} | "
                         f"{row['step_ms_median']:.0f} | {row['flop_utilization']:.0%} | "
                         f"{row['flop_utilization_cpu']:.0%} |")
        lines += ["", "| IW-NLL | sentences/s (wall) | sentences/CPU-s | ceiling (CPU) | FLOP util. (CPU) |",
                  "|---|---:|---:|---:|---:|"]
        for name, v in h["iwnll"].items():
            lines.append(f"| {name}, K={v['iw_samples']} | {v['iwnll_sentences_per_s']:.2f} | "
                         f"{v['iwnll_sentences_per_s_cpu']:.2f} | {v['ceiling_sentences_per_cpu_s']:.2f} | "
                         f"{v['flop_utilization_cpu']:.0%} |")
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in h["ratios"].items()]
        lines += ["", f"GEMM peak (1024² `torch.mm`, this process): fp32 {h['gemm_gflops']:.0f} GFLOP/s wall, "
                      f"{h['gemm_gflops_cpu']:.0f} GFLOP/CPU-s; bf16 {h['gemm_gflops_bf16']:.0f} wall, "
                      f"{h['gemm_gflops_bf16_cpu']:.0f} per CPU-s. Training: {h['train_mflop_per_token']:.1f} "
                      f"MFLOP per target token (mean {h['mean_words']:.1f} words). Peak RSS "
                      f"{h['peak_rss_mb']:.0f} MiB."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (smoke test)")
    p.add_argument("--only", default="headline,scaling,iw_k,eval_rows,threads,memory,before_after")
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=6, help="headline: interleaved rounds")
    p.add_argument("--before", default=BEFORE, help="git commits of the earlier code, comma-separated")
    p.add_argument("--publish", action="store_true",
                   help="also copy the plots (PNG + SVG) and table.md into bench/figures/ (committed)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = QUICK_SIZES if args.quick else ISSUE_SIZES
    q = args.quick
    only = set(args.only.split(","))
    res = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    t0 = time.time()
    if "headline" in only:
        print("headline ...", flush=True)
        res["headline"] = headline(sizes, rounds=2 if q else args.rounds, steps_per_round=3 if q else 10,
                                   warmup=2 if q else 5, iw_sentences=3 if q else 12, iw_k=20 if q else 500,
                                   out=out)
        print(markdown_table(res), flush=True)
    if "scaling" in only:
        print("scaling ...", flush=True)
        res["scaling"] = scaling(sizes, 3 if q else 12, 1 if q else 3, out, q).to_dict("records")
    if "iw_k" in only:
        print("iw_k ...", flush=True)
        res["iw_k"] = iw_vs_k(sizes, 3 if q else 6, [1, 10] if q else [1, 10, 50, 100, 500], out).to_dict("records")
    if "eval_rows" in only:
        print("eval_rows ...", flush=True)
        res["eval_rows"] = eval_rows(sizes, 3 if q else 8, 20 if q else 200, out, q).to_dict("records")
    if "threads" in only:
        print("threads ...", flush=True)
        res["threads"] = threads_scenario(sizes, 3 if q else 20, out).to_dict("records")
    if "memory" in only:
        print("memory ...", flush=True)
        res["memory"] = memory(sizes, [300, 1000] if q else [1000, 10000, 100000, 400000], out).to_dict("records")
    if "before_after" in only:
        print("before_after ...", flush=True)
        res["before_after"] = before_after(sizes, 5 if q else 40, 2 if q else 12, 20 if q else 500, args.before,
                                           1 if q else 2, out).to_dict("records")
    res["machine_after"] = machine()
    res["seconds"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "table.md").write_text(markdown_table(res))
    print(f"wrote {out}/ in {res['seconds']:.0f} s")
    if args.publish:
        fig_dir = HERE / "figures"
        fig_dir.mkdir(exist_ok=True)
        for f in sorted(out.glob("*.png")) + sorted(out.glob("*.svg")) + [out / "table.md"]:
            shutil.copy(f, fig_dir / f.name)
        print(f"published plots and table.md to {fig_dir}/")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
