"""Watch a run train: :class:`LiveCurve`, a training :class:`~bnvae_core.training.loop.Callback`
that records every step's KL, reconstruction and KL weight and redraws
:func:`bnvae_core.viz.plots.step_curves` in the notebook every few steps.

One ``LiveCurve`` watches several runs in turn, on one figure::

    live = LiveCurve(every=10, bound=nominal_bound(0.6, 32))
    for name, config in configs.items():
        train(config, None, callbacks=[live.watch(name)], progress=False)
    live.table          # one row per step and run
    live.timing         # when each frame was drawn (seconds since ``start``)

It draws only inside a running IPython kernel (JupyterLab, papermill): in a display slot it
creates on the first frame and updates in place after (``display(..., display_id=True)``), so
"Run All" shows one figure that grows as the models train. Anywhere else (plain Python, a test)
it records and draws nothing. It never changes the run: it reads the loss terms the trainer hands
it (detached) and the trainer's state.
"""
from __future__ import annotations

import time
from typing import Callable

import pandas as pd

from ..training.loop import Callback
from .plots import step_curves


def in_kernel() -> bool:
    """True inside a running IPython kernel (a notebook, papermill), where a figure can be shown."""
    try:
        from IPython import get_ipython
    except ImportError:        # pragma: no cover - IPython is a dependency of the notebooks extra
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveCurve(Callback):
    """Per-step KL (with the KL weight and ``bound``) of the runs it watches, redrawn every ``every``
    steps and at the end of each run.

    ``bound``: the dotted line of the KL panel (BN-VAE's ``n γ²/2``); ``max_step``: the right end of
    the step axis (the steps of the longest run, so the axis does not move while it trains);
    ``steps_per_epoch``: epoch lines; ``start``: the time zero of ``elapsed_s`` (a
    :func:`time.perf_counter` value, e.g. taken in the notebook's first cell; default: now);
    ``draw``: None = draw only in a kernel (:func:`in_kernel`), False = only record, True = build
    the figure even outside a kernel (tests); ``panels``: those of :func:`step_curves`.

    Attributes: ``rows`` (dicts ``model, step, epoch, kl, rec, kl_weight, elapsed_s``), ``frames``
    (dicts ``frame, model, step, elapsed_s, draw_s``: when each redraw finished), ``figure`` (the
    last drawn, or None)."""

    def __init__(self, every: int = 10, bound: float | None = None, max_step: int | None = None,
                 steps_per_epoch: int | None = None, start: float | None = None, draw: bool | None = None,
                 panels=("kl",), clock: Callable[[], float] = time.perf_counter):
        if every < 1:
            raise ValueError(f"LiveCurve: every must be >= 1, got {every}")
        self.every, self.bound, self.max_step, self.steps_per_epoch = every, bound, max_step, steps_per_epoch
        self.panels, self.clock = tuple(panels), clock
        self.start = clock() if start is None else start
        self.draw = in_kernel() if draw is None else draw
        self.rows: list[dict] = []
        self.frames: list[dict] = []
        self.figure = None
        self.name: str | None = None
        self._handle = None

    # --- which run ---------------------------------------------------------------------------
    def watch(self, name: str) -> "LiveCurve":
        """Label the next run ``name`` (its curve's legend entry); returns self, to pass as a callback."""
        self.name = str(name)
        return self

    # --- the callback ------------------------------------------------------------------------
    def on_fit_start(self, trainer) -> None:
        if self.name is None:
            self.name = trainer.config.model

    def on_step(self, trainer, batch, terms, kl_weight: float) -> None:
        step = trainer.state.step
        kl, rec = (float(v) for v in (terms.kl.detach().mean(), terms.rec.detach().mean()))
        self.rows.append({"model": self.name, "step": step, "epoch": trainer.state.epoch + 1, "kl": kl,
                          "rec": rec, "kl_weight": float(kl_weight), "elapsed_s": self.clock() - self.start})
        if step == 1 or step % self.every == 0:
            self.redraw()

    def on_fit_end(self, trainer) -> None:
        self.redraw()
        self.name = None

    def replay(self, name: str, step_rows) -> None:
        """Add a finished run's per-step log (``run.step_rows``: dicts or a DataFrame with ``step,
        epoch, kl, rec, kl_weight``) as the curve ``name`` and redraw once: what a notebook shows
        when ``cached_run`` found the run in the cache (a cache hit trains nothing, so the callback
        is never called). With ``log_every=1`` the replayed curve equals the live one."""
        rows = pd.DataFrame(step_rows)
        missing = [c for c in ("step", "epoch", "kl", "rec", "kl_weight") if c not in rows.columns]
        if missing:
            raise ValueError(f"LiveCurve.replay: the log of {name!r} lacks column(s) {', '.join(missing)}")
        now = self.clock() - self.start
        self.rows += [{"model": str(name), "step": int(r.step), "epoch": int(r.epoch), "kl": float(r.kl),
                       "rec": float(r.rec), "kl_weight": float(r.kl_weight), "elapsed_s": now}
                      for r in rows.sort_values("step").itertuples()]
        self.redraw()

    # --- the tables and the figure -----------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame:
        """Every recorded step: columns ``model, step, epoch, kl, rec, kl_weight, elapsed_s``."""
        return pd.DataFrame(self.rows, columns=["model", "step", "epoch", "kl", "rec", "kl_weight", "elapsed_s"])

    @property
    def timing(self) -> pd.DataFrame:
        """One row per frame drawn: ``frame, model, step, elapsed_s`` (when it was on screen), ``draw_s``."""
        return pd.DataFrame(self.frames, columns=["frame", "model", "step", "elapsed_s", "draw_s"])

    def by_model(self) -> dict[str, pd.DataFrame]:
        """name → that run's rows (the input of :func:`step_curves`), in the order the runs came."""
        table = self.table
        return {name: table[table["model"] == name] for name in dict.fromkeys(table["model"])}

    def make_figure(self):
        """:func:`step_curves` of everything recorded so far."""
        return step_curves(self.by_model(), bound=self.bound, panels=self.panels,
                           steps_per_epoch=self.steps_per_epoch, max_step=self.max_step)

    def redraw(self) -> None:
        """Draw the current figure into the notebook (only when ``draw``; else nothing)."""
        if not self.draw or not self.rows:
            return
        t0 = self.clock()
        self.figure = self.make_figure()
        self._show(self.figure)
        now = self.clock()
        last = self.rows[-1]
        self.frames.append({"frame": len(self.frames) + 1, "model": last["model"], "step": last["step"],
                            "elapsed_s": now - self.start, "draw_s": now - t0})

    def _show(self, figure) -> None:
        if not in_kernel():
            return
        from IPython.display import display
        if self._handle is None:
            self._handle = display(figure, display_id=True)
        else:
            self._handle.update(figure)
