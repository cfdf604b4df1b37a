"""The pages whose numbers come from files: README's generated sections and docs/paper.md.

``python -m bnvae_core docs --check`` fails when a committed page differs from what its data
renders; the renderers read every number from the files (a changed CSV changes the page)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bnvae_core.errors import ConfigError
from bnvae_core.experiments.docs import markdown_table, replace_sections, sections_of
from bnvae_core.experiments.paper_page import render_paper_page

REPO = Path(__file__).resolve().parent.parent


def fake_converge(folder: Path, nll: dict[str, list[float]], gamma: float = 0.6, tests: bool = True) -> None:
    """A converge output folder: convergence.csv/json (and test_table.csv) with the given curves."""
    folder.mkdir(parents=True)
    rows = [{"method": m, "model": m, "seed": 0, "epoch": e + 1, "nll": v, "time_s": 60.0}
            for m, values in nll.items() for e, v in enumerate(values)]
    pd.DataFrame(rows).to_csv(folder / "convergence.csv", index=False)
    epochs = len(next(iter(nll.values())))
    config = {"max_train": 2000, "emb_dim": 256, "hidden_dim": 256, "warmup_epochs": 5, "gamma": gamma}
    (folder / "convergence.json").write_text(json.dumps({
        "epochs": epochs, "overtake": {"bnvae": {"lm": 3, "vae": None}}, "config": config, "iw_samples": 20,
        "sentences": 500,
        "command": f"python -m bnvae_core converge --data x --out /tmp/elsewhere/{folder.name}"}))
    if tests:
        pd.DataFrame([{"method": m, "model": m, "seed": 0, "nll": values[-1], "ppl": 99.5, "kl": 1.0, "mi": 0.5,
                       "au": 3, "n_sentences": 500, "n_tokens": 11111, "iw_samples": 100}
                      for m, values in nll.items()]).to_csv(folder / "test_table.csv", index=False)


@pytest.fixture
def docs_data(tmp_path):
    data = tmp_path / "docs" / "data"
    fake_converge(data / "ptb", {"lm": [130.0, 120.0, 119.0], "vae": [131.0, 121.0, 118.5],
                                 "bnvae": [135.0, 119.5, 117.25]})
    fake_converge(data / "wordnet", {m: [50.0 + i] * 9 for i, m in enumerate(["lm", "vae", "bnvae"])}, tests=False)
    return data


def test_paper_page_numbers_come_from_the_files(docs_data):
    page = render_paper_page(docs_data)
    assert "| bnvae | 117.25 |" in page and "11,111" in page and "2,000 training sentences" in page
    assert "bnvae stays below lm from epoch 3 on" in page and "does not stay below vae within the 3 epochs" in page
    assert "--out docs/data/ptb" in page and "/tmp/elsewhere" not in page         # the command, where the files lie
    assert "not available here" in page                                            # no paper number from memory
    assert "BN-VAE (γ = 0.6) minus VAE" in page and ": 1.00 nats" in page          # wordnet at epoch 8: 52 − 51
    table = pd.read_csv(docs_data / "ptb" / "test_table.csv")
    table.loc[table["method"] == "bnvae", "nll"] = 101.5
    table.to_csv(docs_data / "ptb" / "test_table.csv", index=False)
    assert "| bnvae | 101.50 |" in render_paper_page(docs_data) and "| bnvae | 117.25 |" not in render_paper_page(docs_data)


def test_a_missing_data_file_is_one_clear_error(docs_data):
    (docs_data / "ptb" / "test_table.csv").unlink()
    with pytest.raises(ConfigError, match="test_table.csv: missing"):
        render_paper_page(docs_data)


def test_sections_are_replaced_between_their_markers_only():
    text = "a 1.5\n<!-- generated: t -->\nold 2.5\n<!-- end: t -->\nb 3.5\n"
    out = replace_sections(text, {"t": "new 7.25"})
    assert out == "a 1.5\n<!-- generated: t -->\nnew 7.25\n<!-- end: t -->\nb 3.5\n"
    assert sections_of(out) == {"t": "new 7.25\n"}
    with pytest.raises(ConfigError, match="no generated section"):
        replace_sections(text, {"gone": "x"})


def test_markdown_table_formats_each_column():
    df = pd.DataFrame([{"m": "VAE", "nll": 49.937, "au": 0}, {"m": "BN-VAE", "nll": float("nan"), "au": 32}])
    assert markdown_table(df, {"m": ("model", None), "nll": ("NLL", 2), "au": ("AU", 0)}).splitlines() == [
        "| model | NLL | AU |", "|---|---:|---:|", "| VAE | 49.94 | 0 |", "| BN-VAE | – | 32 |"]


def test_the_committed_pages_match_their_data(capsys):
    """README.md's generated sections and docs/paper.md, re-rendered from the committed figures/
    and docs/data/, are what is committed (run ``python -m bnvae_core docs`` after regenerating)."""
    from bnvae_core.cli.main import main
    rc = main(["docs", "--check", "--root", str(REPO)])
    assert rc == 0, capsys.readouterr().err
