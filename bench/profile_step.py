"""Where the time goes: torch.profiler tables of a training step and of IW-NLL at the issue's sizes.

    .venv/bin/python bench/profile_step.py [--precision bf16] [--threads 1] [--steps 15]

Writes ``bench/out/profile_<precision>.txt`` (the tables) and prints the top operators by
self CPU time; the profile of 15 BN-VAE training steps (after 5 untimed ones) and of IW-NLL
(K = 200) on 8 test sentences.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from bnvae_core.threads import prefer_passive_wait  # noqa: E402

prefer_passive_wait()   # OpenMP reads its wait policy when torch loads: choose it first (bnvae_core.threads)

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.experiments import benchmark  # noqa: E402
from bnvae_core.metrics.text import iw_nll  # noqa: E402
from bnvae_core.training.loop import corpus_for  # noqa: E402

SIZES = dict(emb_dim=128, hidden_dim=512, nz=32, batch_size=32, max_vocab=5000, device="cpu")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rows", type=int, default=15, help="operators per table")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig(model="bnvae", precision=args.precision, **SIZES)
    corpus = corpus_for(config)
    tb = benchmark.TrainBench(config, corpus, torch.device("cpu"))
    for _ in range(5):
        tb.time_step(tb.next_index())
    with profile(activities=[ProfilerActivity.CPU]) as prof_train:
        for _ in range(args.steps):
            tb.time_step(tb.next_index())
    rng = np.random.default_rng(0)
    sub = corpus.test.subset(np.sort(rng.choice(len(corpus.test), 8, replace=False)))
    iw_nll(tb.model, sub, k=10)
    with profile(activities=[ProfilerActivity.CPU]) as prof_iw:
        iw_nll(tb.model, sub, k=200)
    text = []
    for name, prof in (("training step", prof_train), ("IW-NLL", prof_iw)):
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                          max_name_column_width=45)
        text.append(f"== {name} ({args.precision}, {args.threads} thread(s)) ==\n{table}")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / f"profile_{args.precision}.txt").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
