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


def _bench_result(figures: Path, name: str) -> dict:
    path = figures.parent / "bench" / "results" / name
    if not path.is_file():
        from ..errors import ConfigError
        raise ConfigError(f"{path}: missing (python bench/suite_times.py {name[6:-5]})")
    return json.loads(path.read_text(encoding="utf-8"))


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
    table = markdown_table(times, {"number": ("notebook", None), "name": ("", None),
                                   "seconds": ("full size (s)", 0), "work": ("what it trains", None)})
    return f"{table}\n| **all** | | **{fmt(total / 60, 1)} min** | one notebook after the other |\n"


@readme_section("suite-times")
def suite_times(figures: Path) -> str:
    """The README's two commands timed from a fresh clone (``bench/results/suite_*.json``)."""
    test, main = _bench_result(figures, "suite_test.json"), _bench_result(figures, "suite_figures.json")
    return (f"Measured with `python bench/suite_times.py test|figures` (a fresh `git clone`, setup included, "
            f"{test['cpus']} CPU cores): `{main['command']}` took {fmt(main['wall_s'] / 60, 1)} min from an empty "
            f"cache (commit {main['commit']}, {main['date']}); `{test['command']}` took "
            f"{fmt(test['wall_s'] / 60, 1)} min (commit {test['commit']}, {test['date']}): {test['passed']} passed, "
            f"{test['failed']} failed, {test['skipped']} skipped; of its {fmt(test['pytest_s'] / 60, 1)} min of "
            f"tests, the notebooks at smoke size took {fmt(test['notebook_tests_s'] / 60, 1)} min and the Ray "
            f"tests (a real two-node cluster on this machine) {fmt(test['ray_tests_s'] / 60, 1)} min.\n")


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
