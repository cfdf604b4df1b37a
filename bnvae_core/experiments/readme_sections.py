"""The README's generated sections: each renders Markdown from the CSV/JSON files that the
notebooks (``figures/``) and the benchmarks (``bench/results/``) wrote — no number is typed.

Each renderer is registered with :func:`~bnvae_core.experiments.docs.readme_section` under the
name of its marker (``<!-- generated: NAME -->`` in README.md) and takes the ``figures/`` folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from .docs import fmt, markdown_table, read_csv, readme_section

#: what each notebook trains or computes (the notebook-times table's last column)
NOTEBOOK_WORK = {
    "00": "—",
    "01": "the live run, then VAE and BN-VAE at teaching size, their evaluation and report cards",
    "02": "the models of 01; KL per sentence and per dimension",
    "03": "the γ sweep (shared with 08) and the trained γ explorer",
    "04": "the models of 01; latent views and the playground",
    "05": "few-label classifiers (frozen probe and the paper's fine-tuning protocol)",
    "06": "CVAE and BN-CVAE (WordNet labels, chatterbot dialogues)",
    "07": "VAE, aggressive training, cyclical annealing, BN-VAE; lagging snapshots",
    "08": "the method comparison (the paper's baselines × seeds, the γ sweep)",
}


def _bench_result(figures: Path, name: str) -> dict | None:
    """``bench/results/<name>`` (None when it has not been measured yet)."""
    path = figures.parent / "bench" / "results" / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@readme_section("notebook-times")
def notebook_times(figures: Path) -> str:
    """Per-notebook wall seconds of the last full-size run (``figures/notebook_times.csv``)."""
    times = read_csv(figures / "notebook_times.csv")
    times = times[times["size"] == "full"].copy()
    times["number"] = times["notebook"].str[:2]
    times["name"] = times["notebook"].str[3:].str.replace(".ipynb", "", regex=False).str.replace("_", " ")
    times["work"] = times["number"].map(NOTEBOOK_WORK).fillna("")
    times["seconds"] = times["wall_s"].round(0)
    total = times["wall_s"].sum()
    table = markdown_table(times, {"number": ("notebook", None), "name": ("topic", None),
                                   "seconds": ("full size (s)", 0), "work": ("what it trains", None)})
    return f"{table}\n| **all** | | **{fmt(total / 60, 1)} min** | one notebook after the other |\n"


@readme_section("suite-times")
def suite_times(figures: Path) -> str:
    """The README's two commands timed from a fresh clone (``bench/results/suite_*.json``)."""
    test, main = _bench_result(figures, "suite_test.json"), _bench_result(figures, "suite_figures.json")
    parts = ["Measured with `python bench/suite_times.py figures|test` (a fresh `git clone`, setup included):"]
    if main is not None:
        parts.append(f"`{main['command']}` took {fmt(main['wall_s'] / 60, 1)} min from an empty cache on "
                     f"{main['cpus']} CPU cores (exit status {main['exit_status']}; commit {main['commit']}, "
                     f"{main['date']});")
    if test is not None:
        parts.append(f"`{test['command']}` took {fmt(test['wall_s'] / 60, 1)} min (exit status "
                     f"{test['exit_status']}; commit {test['commit']}, {test['date']}): {test['passed']} passed, "
                     f"{test['failed']} failed, {test['skipped']} skipped; of its {fmt(test['pytest_s'] / 60, 1)} min "
                     f"of tests, the notebooks at smoke size took {fmt(test['notebook_tests_s'] / 60, 1)} min and the "
                     f"Ray tests (a real two-node cluster on this machine) {fmt(test['ray_tests_s'] / 60, 1)} min.")
    if test is None or main is None:
        parts.append("the other command has not been timed yet.")
    return " ".join(parts) + "\n"


@readme_section("few-labels")
def few_labels(figures: Path) -> str:
    """Accuracy at the smallest and largest label counts of notebook 05 (``05_few_label_accuracy.csv``)."""
    table = read_csv(figures / "05_few_label_accuracy.csv")
    shown = table[table["labels"].isin([table["labels"].min(), table["labels"].max()])].copy()
    wide = shown.pivot_table(index="model", columns="labels", values="text", aggfunc="first", sort=False)
    wide = wide.reset_index()
    columns = {"model": ("features, protocol", None),
               **{n: (f"{n:,} labels (%)", None) for n in wide.columns if n != "model"}}
    majority = 100 * float(table["majority_accuracy"].iloc[0])
    return (markdown_table(wide.fillna("–"), columns)
            + f"\n\nMean ± standard deviation over label draws; the majority class is {fmt(majority, 1)} %.\n")


@readme_section("main-results")
def main_results(figures: Path) -> str:
    """Notebook 01's test metrics and step log (``01_test_metrics.csv``, ``01_step_summary.csv``)."""
    from ..config import NOTEBOOK_SIZE, TrainConfig
    config = TrainConfig(**NOTEBOOK_SIZE)
    metrics = read_csv(figures / "01_test_metrics.csv")
    steps = read_csv(figures / "01_step_summary.csv").set_index("model")
    vae, bn = metrics["model"].iloc[0], metrics["model"].iloc[1]
    metrics["au_of"] = metrics["au"].map(lambda a: f"{int(a)} / {config.nz}")
    table = markdown_table(metrics, {"model": ("model", None), "nll": ("NLL (nats)", 2), "ppl": ("PPL", 1),
                                     "kl": ("KL (nats)", 2), "mi": ("MI (nats)", 2), "au_of": ("active units", None)})
    v, b = steps.loc[vae], steps.loc[bn]
    return (f"Notebook 01 at full size: {fmt(config.max_train, 0)} WordNet glosses, embeddings {config.emb_dim}, "
            f"LSTMs {config.hidden_dim}, n = {config.nz}, {config.epochs} epochs, SGD lr {config.lr}, KL warm-up "
            f"over {config.warmup_epochs} epochs; test set of {fmt(int(metrics['n_sentences'].iloc[0]), 0)} "
            f"sentences, IW-NLL with K = {int(metrics['iw_samples'].iloc[0])} (the paper's tables use "
            "K = 500, `evaluate`'s default):\n\n"
            f"{table}\n\n"
            f"In the step log, the VAE's KL peaks at {fmt(v['peak_kl'], 1)} nats at step {int(v['peak_step'])} "
            f"(KL weight {fmt(v['peak_kl_weight'], 3)}), falls below 0.5 nats at step {int(v['collapse_step'])} — "
            f"before the warm-up ends at step {int(v['warmup_end_step'])} — and averages "
            f"{fmt(v['last_epoch_mean_kl'], 2)} nats over the last epoch. BN-VAE's smallest logged batch KL is "
            f"{fmt(b['min_kl'], 2)} nats against n γ²/2 = {fmt(b['bound'], 2)}.\n")


@readme_section("live-minute")
def live_minute(figures: Path) -> str:
    """How soon notebook 01 shows collapse live (``01_live_timing.csv``)."""
    live = read_csv(figures / "01_live_timing.csv").iloc[0]
    how = "replayed from the cache" if int(live["replayed_from_cache"]) else "trained from an empty cache"
    return (f"Run All on notebook 01 shows a first live picture — a small VAE collapsing, BN-VAE staying on "
            f"n γ²/2 — after {fmt(live['first_frame_s'], 0)} s, complete after {fmt(live['live_picture_s'], 0)} s "
            f"({fmt(live['live_cpu_s'], 0)} CPU s; {how}; `figures/01_live_timing.csv`).\n")


@readme_section("bound")
def bound(figures: Path) -> str:
    """Notebook 03's check of the bound for every γ (``03_bound_sweep.csv``)."""
    sweep = read_csv(figures / "03_bound_sweep.csv")
    gammas = sweep["γ"]
    above = int((sweep["train-mode KL (final model)"] >= sweep["n γ²/2"]).sum())
    margin = sweep["smallest train-mode batch KL"] - sweep["n γ²/2"]
    return (f"For γ = {fmt(gammas.min(), 1)} … {fmt(gammas.max(), 1)} ({len(sweep)} trained models), the "
            f"train-mode KL of the final model is on or above n γ²/2 for {above} of {len(sweep)}; the smallest "
            f"training-batch KL minus n γ²/2 ranges from {fmt(margin.min(), 3)} to {fmt(margin.max(), 3)} nats "
            "(notebook 03 asserts the exact floor ½Σ(γ² s²/(s²+ε) + β²) for every batch); with running statistics "
            "(eval mode) the KL is only near it.\n")


@readme_section("corpus")
def corpus(figures: Path) -> str:
    """The built-in corpus as shipped (``bnvae_core/corpora/wordnet_glosses.tsv.gz``) and the
    notebooks' subset of it (:data:`~bnvae_core.config.NOTEBOOK_SIZE`, read as training reads it)."""
    import gzip

    import pandas as pd

    from ..config import NOTEBOOK_SIZE, TrainConfig
    from ..training.loop import corpus_for
    path = Path(__file__).resolve().parents[1] / "corpora" / "wordnet_glosses.tsv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        table = pd.read_csv(f, sep="\t", header=None, names=["split", "pos", "label", "text"], quoting=3)
    shares = table["split"].value_counts(normalize=True)
    config = TrainConfig(**NOTEBOOK_SIZE)
    subset = corpus_for(config)
    return (f"{fmt(len(table), 0)} WordNet 3.0 glosses (definitions without their example sentences), each labelled "
            f"with its lexicographer file (`noun.animal`, `verb.motion`, … {table['label'].nunique()} classes), split "
            f"{'/'.join(fmt(100 * shares[s], 0) for s in ('train', 'valid', 'test'))} (train/valid/test, %) by a "
            "hash of the synset offset. Built from Debian's `wordnet-base` by `scripts/build_wordnet_corpus.py`; "
            "shipped compressed in `bnvae_core/corpora/` with the WordNet licence beside it. The notebooks train "
            f"on a seeded subset of {fmt(len(subset.train), 0)} training glosses (vocabulary "
            f"{fmt(len(subset.vocab), 0)} words; the limits are `bnvae_core.data.corpus.BUILTIN_LIMITS`).\n")


@readme_section("comparison")
def comparison(figures: Path) -> str:
    """Notebook 08's closing table (``08_summary.csv``): every method, mean ± sd over seeds."""
    summary = read_csv(figures / "08_summary.csv").copy()
    def spread(mean, std):
        return [fmt(m, 2) if n < 2 else f"{fmt(m, 2)} ± {fmt(s, 2)}" for m, s, n in zip(mean, std, summary["n_seeds"])]
    summary["nll"] = spread(summary["nll_mean"], summary["nll_std"])
    summary["kl"] = spread(summary["kl_mean"], summary["kl_std"])
    table = markdown_table(summary, {"method": ("method", None), "n_seeds": ("seeds", 0), "nll": ("NLL (nats)", None),
                                     "kl": ("KL (nats)", None), "mi_mean": ("MI", 2), "au_mean": ("AU", 1),
                                     "train_time_s_mean": ("train (s)", 0)})
    return (f"{table}\n\nMean ± standard deviation over seeds on the comparison's smaller models "
            "(`COMPARE_SIZE`), test set; `figures/08_summary.csv`.\n")
