"""The γ-bound notebook in a real browser: JupyterLab + headless Chromium (issue 4).

What a reader does, done by Playwright in Debian's ``/usr/bin/chromium``: open
``03_gamma_bound.ipynb`` in JupyterLab, Run → Run All Cells, wait for every cell to finish,
check no cell failed, then move the γ slider of the trained γ explorer (``TrainedGammaExplorer``:
each position is a BN-VAE *trained* with that fixed BN scale γ, Zhu et al. 2020 §3.2) with the
keyboard and check the plot it drives was redrawn and its text now describes the other model. This is what papermill cannot
test: that the ipywidgets frontend (``jupyterlab_widgets``) really loads in Lab and that the
slider's callback reaches the kernel and comes back as a new image.

The server runs on a scratch copy of ``notebooks/`` with ``CI=true``, so the notebook trains
at smoke size through ``cached_run`` (the cache is shared with the rest of the test suite).
A second test runs the same checks on a tiny notebook with a plain FloatSlider → matplotlib
plot, so a failure says whether the harness/widget frontend or the γ notebook is at fault.

Screenshots go to ``$BNVAE_SCREENSHOTS`` (default: the test's tmp_path). Skipped only when
``/usr/bin/chromium`` or playwright is missing.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from browser_helpers import (
    JupyterLab,
    LabNotebook,
    copy_notebooks,
    launch_chromium,
    missing_requirements,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements()))]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
GAMMA_NOTEBOOK = "03_gamma_bound.ipynb"
#: seconds allowed for Run All at smoke size: about 20 s with the model cache warm, a few minutes
#: when notebook 03 trains its smoke-size sweep (3 models) and notebook 1's BN-VAE first (the machine is shared)
RUN_ALL_TIMEOUT_S = 420
#: seconds allowed for one slider move to come back as a new image
REDRAW_TIMEOUT_S = 60

#: a minimal widget notebook: a FloatSlider driving a matplotlib plot through an Output widget
SELF_TEST_CELLS = [
    ("markdown", "A FloatSlider redrawing a matplotlib plot (browser-test harness check)."),
    ("code", "import ipywidgets as widgets\nimport matplotlib\nimport matplotlib.pyplot as plt\n"
             "import numpy as np\nfrom IPython.display import display, clear_output"),
    ("code", "slider = widgets.FloatSlider(value=0.6, min=0.05, max=1.5, step=0.05, description='γ',\n"
             "                             continuous_update=False, readout_format='.2f')\n"
             "out = widgets.Output()\n"
             "def draw(change=None):\n"
             "    gamma = slider.value\n"
             "    fig, ax = plt.subplots(figsize=(4, 2.5))\n"
             "    n = np.arange(1, 65)\n"
             "    ax.plot(n, n * gamma**2 / 2, label='n γ²/2')\n"
             "    ax.set_ylim(0, 64 * 1.5**2 / 2)\n"
             "    ax.set_xlabel('latent dimensions n'); ax.set_ylabel('KL floor (nats)'); ax.legend()\n"
             "    with out:\n"
             "        clear_output(wait=True)\n"
             "        display(fig)\n"
             "    plt.close(fig)\n"
             "slider.observe(draw, names='value')\n"
             "draw()\n"
             "widgets.VBox([slider, out])"),
]


def self_test_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in SELF_TEST_CELLS]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def screenshots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BNVAE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server for the module, on a scratch copy of notebooks/ (+ the self-test notebook)."""
    root = tmp_path_factory.mktemp("lab")
    notebooks = copy_notebooks(NOTEBOOKS_DIR, root / "notebooks")
    self_test_notebook(notebooks / "zz_browser_selftest.ipynb")
    server = JupyterLab(notebooks, root / "server", env={"CI": "true"})
    try:
        server.start()
        yield server
    finally:
        server.stop()   # always: kernels deleted, server SIGTERM'd, then SIGKILL'd if still there


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def exercise_slider_notebook(browser, lab, name: str, description: str, screenshots: Path) -> dict:
    """Open ``name``, run all cells, check for errors, move the ``description`` slider, check the redraw."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        nb = LabNotebook(page, lab, name, screenshots)
        t0 = time.monotonic()
        nb.open()
        nb.run_all_cells()
        state = nb.wait_until_executed(RUN_ALL_TIMEOUT_S)
        run_all_s = time.monotonic() - t0
        shots = {"after_run_all": nb.screenshot("1-after-run-all")}

        errors = nb.error_outputs()
        assert not errors, f"{name}: error outputs in the browser:\n" + "\n---\n".join(errors)
        saved = nb.save_and_read()
        failed = [(i, o.get("ename"), o.get("evalue")) for i, cell in enumerate(saved["cells"])
                  for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not failed, f"{name}: cells failed (index, exception, message): {failed}"
        assert all(p.strip("[]: ").isdigit() for p in state["prompts"]), \
            f"{name}: not every code cell ran: {state['prompts']}"

        slider = nb.slider(description)
        slider.wait_for(state="visible", timeout=30_000)   # the widget frontend rendered it
        slider.scroll_into_view_if_needed()
        src_before = nb.widget_image_src(slider)
        text_before = nb.widget_text(slider)
        assert src_before and src_before.startswith("data:image/png"), \
            f"{name}: no plot image next to the {description!r} slider (src={str(src_before)[:60]!r})"
        area = nb.widget_area(slider)
        shots["widget_before"] = screenshots / f"{Path(name).stem}-2-widget-before.png"
        png_before = area.screenshot(path=str(shots["widget_before"]))

        value_before, value_after = nb.move_slider(slider, "ArrowRight")
        if value_after == value_before:          # at the right end already: go left instead
            value_before, value_after = nb.move_slider(slider, "ArrowLeft")
        assert value_after != value_before, f"{name}: the slider's readout did not move ({value_before})"
        nb.wait_for_new_image(slider, src_before, REDRAW_TIMEOUT_S)
        nb.wait_for_kernel_idle(REDRAW_TIMEOUT_S)
        src_after = nb.widget_image_src(slider)      # the last redraw, once the kernel is idle
        shots["widget_after"] = screenshots / f"{Path(name).stem}-3-widget-after.png"
        png_after = area.screenshot(path=str(shots["widget_after"]))
        shots["after_slider"] = nb.screenshot("4-after-slider")

        text_after = nb.widget_text(slider)
        assert src_after != src_before, f"{name}: the plot image is unchanged after moving the slider"
        assert png_after != png_before, f"{name}: the rendered widget looks the same after moving the slider"
        assert not nb.error_outputs(), f"{name}: errors after moving the slider: {nb.error_outputs()}"
        return {"run_all_s": run_all_s, "values": (value_before, value_after), "screenshots": shots,
                "text": (text_before, text_after),
                "console_errors": nb.console_errors}
    except BaseException:
        try:   # what the browser showed when it failed
            page.screenshot(path=str(screenshots / f"{Path(name).stem}-failure.png"))
        except Exception:  # noqa: BLE001 — the page may be gone; the original error matters
            pass
        raise
    finally:
        context.close()


def test_widget_frontend_redraws_a_matplotlib_plot_in_lab(browser, lab, screenshots_dir):
    """Harness check: a plain FloatSlider → Output → matplotlib notebook works in Lab + Chromium."""
    result = exercise_slider_notebook(browser, lab, "zz_browser_selftest.ipynb", "γ", screenshots_dir)
    for path in result["screenshots"].values():
        assert Path(path).stat().st_size > 1000, f"empty screenshot {path}"


def test_gamma_bound_notebook_in_jupyterlab(browser, lab, screenshots_dir):
    """03_gamma_bound.ipynb: Run All clean at smoke size, then the trained γ explorer's slider
    switches to another trained model: a new plot, and a text that names the new γ."""
    source = NOTEBOOKS_DIR / GAMMA_NOTEBOOK
    assert source.exists(), f"notebooks/{GAMMA_NOTEBOOK} is missing"
    shutil.copy2(source, lab.root_dir / GAMMA_NOTEBOOK)   # the newest committed version
    result = exercise_slider_notebook(browser, lab, GAMMA_NOTEBOOK, "γ", screenshots_dir)
    (before, after), (text_before, text_after) = result["values"], result["text"]
    # the explorer's HTML starts "γ = <value>: mean KL …" for the model it shows
    assert f"γ = {before}" in text_before and f"γ = {after}" in text_after, (text_before[:120], text_after[:120])
    assert "Samples from the prior" in text_after and "Reconstructions" in text_after
    print(f"{GAMMA_NOTEBOOK}: Run All {result['run_all_s']:.0f} s; γ {before} → {after}; "
          f"screenshots: {sorted(str(p) for p in result['screenshots'].values())}")
