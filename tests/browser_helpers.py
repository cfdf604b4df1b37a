"""Drive a real JupyterLab in headless Chromium (Playwright), for ``tests/test_browser.py``.

Three pieces, each usable on its own from a debugging session:

* :class:`JupyterLab` — a JupyterLab server as a subprocess on ``127.0.0.1:<free port>`` with a
  token, ``--no-browser``, its own settings/workspace/runtime folders (so the user's Lab state
  is never read or written) and the settings a test needs (no windowing — every cell stays in
  the DOM —, no news/update pop-ups). :meth:`JupyterLab.stop` deletes the kernels through the
  REST API, then stops the server (SIGTERM, then SIGKILL of its process group).
* :func:`launch_chromium` — Debian's ``/usr/bin/chromium`` launched by Playwright (never a
  Playwright-downloaded browser), headless, with networking side-channels switched off.
* :class:`LabNotebook` — one notebook opened in Lab: run all cells through the menu bar, wait
  until every code cell has an execution count and the kernel is idle, collect error outputs
  (from the DOM and from the saved ``.ipynb``), find an ipywidgets slider by its description,
  move it with the keyboard, and read the image the widget's output shows.

Nothing here downloads anything; the only network traffic is browser ↔ local server.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
#: flags for a headless Chromium in a container: no sandbox (runs as root), no GPU, and none
#: of the background traffic (QUIC, component updates, sync, first-run pages)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

#: Lab user settings written for the test server (JSON5 files under ``user_settings_dir``)
LAB_SETTINGS = {
    # windowing "full" (Lab 4's default) detaches off-screen cells from the DOM
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # start the notebook's kernel without the "Select Kernel" dialog
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}

# JavaScript run in the page: the state of every code cell of the open notebook.
_CELLS_STATE_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const kernel = document.querySelector('#jp-main-statusbar span[title^="Change kernel"]');
  return {prompts, cells: panel.querySelectorAll('.jp-Notebook .jp-Cell').length,
          indicator: indicator ? indicator.getAttribute('data-status') : null,
          kernel: kernel ? kernel.textContent.trim() : null,
          dialogs: document.querySelectorAll('.jp-Dialog').length};
}
"""

# JavaScript run in the page: text of stderr/error outputs that look like a traceback, and
# widget views that failed to render.
_ERRORS_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return ['no open notebook'];
  const found = [];
  for (const el of panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const text = el.textContent || '';
    if (/Traceback|\\b[A-Za-z]*Error\\b:|\\bException\\b/.test(text)) found.push(text.slice(0, 2000));
  }
  for (const el of panel.querySelectorAll('.jp-OutputArea-output')) {
    const text = el.textContent || '';
    if (/Error displaying widget|Failed to load model class|Loading widget\\.\\.\\./.test(text))
      found.push('widget did not render: ' + text.slice(0, 500));
  }
  return found;
}
"""


def missing_requirements() -> str | None:
    """Why the browser test cannot run here (a skip reason), or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[browser]')"
    try:
        import jupyterlab  # noqa: F401
        import jupyterlab_widgets  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed (pip install -e '.[notebooks]')"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server serving ``root_dir``; use as a context manager.

    ``workdir``: a scratch folder for the server's settings, workspaces, runtime files and its
    log (``workdir/lab.log``). ``env``: extra environment for the server and its kernels (the
    kernels inherit it: ``CI=true`` makes the notebooks run at smoke size)."""

    def __init__(self, root_dir: str | Path, workdir: str | Path, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0):
        self.root_dir = Path(root_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "lab.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> "JupyterLab":
        settings_dir = self.workdir / "user-settings"
        for rel, value in LAB_SETTINGS.items():
            path = settings_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        for sub in ("workspaces", "runtime", "config", "ipython"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({"JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
                    "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
                    "IPYTHONDIR": str(self.workdir / "ipython"),
                    "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root_dir}",
               f"--LabApp.user_settings_dir={settings_dir}",
               f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
               "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:   # containers/CI run as root
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            try:
                if self.api("GET", "/api/status", timeout=5) is not None:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer on {self.base_url} within "
                                   f"{self.start_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Delete the kernels (REST), SIGTERM the server (it shuts its kernels down), then SIGKILL."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                try:
                    for kernel in self.api("GET", "/api/kernels", timeout=5) or []:
                        self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=15)
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
            if self._log is not None:
                self._log.close()

    def __enter__(self) -> "JupyterLab":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10):
        """A REST call to the server with the token; the decoded JSON reply (None when empty)."""
        req = urllib.request.Request(self.base_url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        """The Lab URL opening ``notebook`` (relative to ``root_dir``), with the token."""
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}&reset"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def launch_chromium(playwright):
    """Debian's Chromium, headless, launched through Playwright's ``chromium`` driver."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def copy_notebooks(src: str | Path, dst: str | Path) -> Path:
    """A scratch copy of a notebooks folder (only ``*.ipynb``), so the test never writes the repo's."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.ipynb")):
        shutil.copy2(path, dst / path.name)
    return dst


class LabNotebook:
    """One notebook open in a Lab page (``page``: a Playwright sync ``Page``)."""

    def __init__(self, page, lab: JupyterLab, name: str, screenshots: str | Path):
        self.page, self.lab, self.name = page, lab, name
        self.screenshots = Path(screenshots)
        self.screenshots.mkdir(parents=True, exist_ok=True)
        self.console_errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        page.on("pageerror", lambda err: self.console_errors.append(f"pageerror: {err}"))

    def open(self, timeout_s: float = 120) -> "LabNotebook":
        """Load Lab on the notebook; wait until all its cells are shown and its kernel is idle.

        A kernel dialog (Lab asks when it cannot pick the kernel itself) is answered with its
        default button, the notebook's own kernel."""
        n_cells = len(json.loads((self.lab.root_dir / self.name).read_text())["cells"])
        self.page.goto(self.lab.url(self.name), timeout=timeout_s * 1000)
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.cells_state()
            if state.get("dialogs"):
                self.page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").first.click()
            elif self._kernel_ready(state) and state.get("cells") == n_cells:
                return self
            if time.monotonic() > deadline:
                self.screenshot("open-timeout")
                raise TimeoutError(f"{self.name}: not ready after {timeout_s:.0f} s ({n_cells} cells expected): "
                                   f"{state}\nserver log:\n{self.lab.log_tail()}")
            time.sleep(0.5)

    @staticmethod
    def _kernel_ready(state: dict) -> bool:
        """A kernel is attached (status bar: "<name> | Idle") and the toolbar indicator is idle."""
        kernel = state.get("kernel") or ""
        return (state.get("indicator") == "idle" and kernel.endswith("| Idle")
                and not kernel.startswith("No Kernel"))

    def screenshot(self, stem: str) -> Path:
        path = self.screenshots / f"{Path(self.name).stem}-{stem}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    # -- running ---------------------------------------------------------------------------------------------
    def cells_state(self) -> dict:
        return self.page.evaluate(_CELLS_STATE_JS) or {"prompts": [], "indicator": None}

    def wait_for_kernel_idle(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.cells_state()
            if self._kernel_ready(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: kernel not idle after {timeout_s:.0f} s: {state}\n"
                                   f"server log:\n{self.lab.log_tail()}")
            time.sleep(0.5)

    def run_all_cells(self) -> None:
        """Menu bar → Run → Run All Cells (what a reader clicks)."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    def wait_until_executed(self, timeout_s: float) -> dict:
        """Wait until every code cell shows an execution count (``[n]:``) and the kernel is idle.

        Cells with ``[*]`` are queued/running, ``[ ]`` never ran. Stops early when a traceback
        appears (Run All stops at the first failing cell, so the rest would never run)."""
        deadline = time.monotonic() + timeout_s
        idle_since = None
        while True:
            state = self.cells_state()
            prompts = state.get("prompts", [])
            done = bool(prompts) and all(p.strip("[]: ").isdigit() for p in prompts)
            if self._kernel_ready(state) and (done or self.error_outputs()):
                # idle twice in a row, 1 s apart: the kernel is not between two queued cells
                if idle_since is not None and time.monotonic() - idle_since >= 1.0:
                    return state
                idle_since = idle_since or time.monotonic()
            else:
                idle_since = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: cells not all executed after {timeout_s:.0f} s: {state}\n"
                                   f"server log:\n{self.lab.log_tail()}")
            time.sleep(0.5)

    def error_outputs(self) -> list[str]:
        """Tracebacks and un-rendered widgets visible in the notebook's outputs."""
        return self.page.evaluate(_ERRORS_JS)

    def save_and_read(self, timeout_s: float = 30) -> dict:
        """Save from the browser (Ctrl+S) and return the saved notebook's JSON."""
        path = self.lab.root_dir / self.name
        before = path.stat().st_mtime_ns
        self.page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout_s
        while path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: Ctrl+S did not save within {timeout_s:.0f} s")
            time.sleep(0.3)
        time.sleep(0.5)  # the server writes atomically, but let the rename settle
        return json.loads(path.read_text())

    # -- widgets ---------------------------------------------------------------------------------------------
    def slider(self, description: str):
        """The rendered ipywidgets slider whose description contains ``description``."""
        sliders = self.page.locator(".jp-OutputArea-output .widget-slider").filter(
            has=self.page.locator(".widget-label", has_text=description))
        return sliders.first

    def widget_image_src(self, slider) -> str | None:
        """``src`` of the last image in the output that holds ``slider`` (a data: URL), or None."""
        return slider.evaluate("""
            (el) => {
              const out = el.closest('.jp-OutputArea-output');
              const imgs = out ? out.querySelectorAll('img') : [];
              return imgs.length ? imgs[imgs.length - 1].getAttribute('src') : null;
            }""")

    def widget_text(self, slider) -> str:
        """The text of the output that holds ``slider`` (what HTML widgets beside it say)."""
        return slider.evaluate("""
            (el) => {
              const out = el.closest('.jp-OutputArea-output');
              return out ? out.innerText : '';
            }""")

    def widget_area(self, slider):
        """The cell output holding ``slider`` and whatever the widget draws (for screenshots)."""
        return slider.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")

    def move_slider(self, slider, key: str = "ArrowRight", presses: int = 1) -> tuple[str, str]:
        """Focus the slider's handle and press ``key``; returns the readout before and after."""
        readout = slider.locator(".widget-readout")
        before = readout.inner_text().strip()
        handle = slider.locator(".noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        for _ in range(presses):
            handle.press(key)
        deadline = time.monotonic() + 10
        while readout.inner_text().strip() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        return before, readout.inner_text().strip()

    def wait_for_new_image(self, slider, old_src: str | None, timeout_s: float) -> str:
        """Wait until the widget's image differs from ``old_src`` (the kernel redrew it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            src = self.widget_image_src(slider)
            if src and src != old_src:
                return src
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: the plot did not change within {timeout_s:.0f} s "
                                   f"after moving the slider (browser console errors: {self.console_errors[-5:]})")
            time.sleep(0.3)
