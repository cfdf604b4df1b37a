"""Load time and peak memory of ``data.load_corpus`` and of one batching epoch (issue 6).

    python bench/memory_corpus.py --sizes 100000 1000000 --out bench/results/memory_corpus.csv

For each size N this script

1. writes a synthetic *corpus directory* (``train.txt`` with N sentences, ``valid.txt`` and
   ``test.txt`` with N/20 each; ``label<TAB>text`` lines, 5 labels, Zipf-distributed words
   from a 30,000-word vocabulary, 4–40 words per sentence, seeded), once, under ``--work``;
2. in a **fresh Python process** (so that nothing else is in its memory) imports
   ``bnvae_core``, then measures
   * ``load``: wall time of ``load_corpus(dir, max_tokens=None, max_vocab=20000, min_freq=1)``
     and its peak resident memory above the post-import baseline (Linux ``VmHWM``),
   * ``retained``: resident memory that stays after loading, above the baseline,
   * ``epoch``: wall time and peak memory of one training epoch's batching,
     ``bucket_batches(train, 32, shuffle=True)`` + ``make_batch`` for every batch (the
     peak counter is reset after loading via ``/proc/self/clear_refs``),
   * ``ids_mb``: what the encoded corpus must hold: token ids (int32), offsets (int64) and
     labels (int64) of all three splits;
3. prints one JSON object per size and writes a CSV (and a Markdown table next to it).

The numbers depend on the machine and on what else runs on it; memory is in MiB (2^20 bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def generate_corpus(directory: Path, n_sentences: int, seed: int = 0, vocab_size: int = 30000) -> Path:
    """Write ``train.txt`` (N lines), ``valid.txt``/``test.txt`` (N/20 lines) of synthetic labelled text."""
    directory.mkdir(parents=True, exist_ok=True)
    done = directory / ".complete"
    if done.is_file() and done.read_text() == f"{n_sentences} {seed} {vocab_size}":
        return directory
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab_size)])
    ranks = np.arange(1, vocab_size + 1)
    p = 1.0 / ranks
    p /= p.sum()
    for name, n in (("train", n_sentences), ("valid", max(1, n_sentences // 20)), ("test", max(1, n_sentences // 20))):
        with open(directory / f"{name}.txt", "w", encoding="utf-8") as fh:
            for start in range(0, n, 10000):
                m = min(10000, n - start)
                lengths = rng.integers(4, 41, size=m)
                tokens = words[rng.choice(vocab_size, size=int(lengths.sum()), p=p)]
                labels = rng.integers(0, 5, size=m)
                bounds = np.concatenate([[0], np.cumsum(lengths)])
                fh.write("".join(f"{labels[i]}\t{' '.join(tokens[bounds[i]:bounds[i + 1]])}\n" for i in range(m)))
    done.write_text(f"{n_sentences} {seed} {vocab_size}")
    return directory


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def measure(directory: str) -> dict:
    """Run in a fresh process: time and peak RSS of loading and of one batching epoch."""
    import torch

    from bnvae_core.data.corpus import bucket_batches, load_corpus, make_batch
    torch.set_num_threads(1)
    _reset_peak()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    corpus = load_corpus(directory, max_tokens=None, max_vocab=20000, min_freq=1)
    load_s = time.perf_counter() - t0
    load_peak = _status_kb("VmHWM") - base
    retained = _status_kb("VmRSS") - base
    ids_bytes = sum(s.ids.nbytes + s.offsets.nbytes + s.labels.nbytes for s in corpus.splits.values())
    _reset_peak()
    before_epoch = _status_kb("VmRSS")
    t0 = time.perf_counter()
    n_batches = n_tokens = 0
    for index in bucket_batches(corpus.train, 32, shuffle=True, seed=0, epoch=0, drop_singletons=True):
        batch = make_batch(corpus.train, index)
        n_batches += 1
        n_tokens += batch.n_tokens
    epoch_s = time.perf_counter() - t0
    epoch_peak = _status_kb("VmHWM") - before_epoch
    return {"sentences": len(corpus.train) + len(corpus.valid) + len(corpus.test),
            "train_sentences": len(corpus.train), "tokens": int(sum(int(s.offsets[-1]) for s in corpus.splits.values())),
            "vocab": len(corpus.vocab), "ids_mb": ids_bytes / 2**20, "baseline_rss_mb": base / 1024,
            "load_s": load_s, "load_peak_mb": load_peak / 1024, "retained_mb": retained / 1024,
            "epoch_s": epoch_s, "epoch_peak_mb": epoch_peak / 1024, "batches": n_batches,
            "epoch_tokens": n_tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="train sentences N")
    parser.add_argument("--work", default=str(REPO / ".cache" / "memory-corpus"), help="where corpora are written")
    parser.add_argument("--out", default=None, help="CSV of the results (a .md table is written next to it)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)   # internal: the child process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        directory = generate_corpus(Path(args.work) / f"n{n}", n)
        gen_s = time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}
        child = subprocess.run([sys.executable, __file__, "--measure", str(directory)], env=env,
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            return child.returncode
        row = {"n": n, "file_mb": sum((directory / f"{s}.txt").stat().st_size for s in ("train", "valid", "test")) / 2**20,
               "generate_s": gen_s, **json.loads(child.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.out:
        import pandas as pd
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(rows)
        table.to_csv(out, index=False)
        cols = ["n", "tokens", "file_mb", "ids_mb", "load_s", "load_peak_mb", "retained_mb", "epoch_s", "epoch_peak_mb"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
        for r in rows:
            lines.append("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
