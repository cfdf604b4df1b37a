"""Every notebook of the suite executes, at smoke size, in the test suite (none skipped)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnvae_core.experiments.figures import notebook_paths, run_notebook

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = notebook_paths(NOTEBOOKS_DIR)


def test_suite_covers_every_notebook():
    on_disk = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    assert on_disk, "no notebooks found"
    assert [p.name for p in on_disk] == [p.name for p in NOTEBOOKS], \
        "every notebook must be named NN_name.ipynb so the suite executes it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_and_has_a_smoke_switch(path):
    nb = json.loads(path.read_text())
    assert not any(cell.get("outputs") for cell in nb["cells"]), f"{path.name}: outputs committed"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if path.stem != "00_index":
        assert tagged, f"{path.name}: no cell tagged 'parameters'"
        assert "SMOKE" in "".join(tagged[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_at_smoke_size(path, tmp_path):
    seconds = run_notebook(path, smoke=True, figures_dir=tmp_path / "figures",
                           executed=tmp_path / path.name, timeout=1200)
    assert seconds > 0
