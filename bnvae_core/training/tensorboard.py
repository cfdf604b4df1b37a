"""TensorBoard event logs of a run, beside its ``metrics.jsonl``: what researchers running sweeps open.

:class:`TensorBoardLogger` is a :class:`~bnvae_core.training.loop.Callback`: it watches the
standard Trainer and writes, through :mod:`torch.utils.tensorboard`, the training loss, its
reconstruction and KL terms and the KL weight every ``every`` optimizer steps (tags ``step/…``,
x = optimizer step) and every numeric column of the epoch's train and valid rows of
``metrics.jsonl`` (tags ``train/…`` and ``valid/…``, x = epoch). :func:`write_history` writes
the same epoch scalars, and the ``step/…`` rows ``metrics.jsonl`` kept every ``log_every``
steps, from a finished run's history, for a run that was trained before (a
cache hit trains nothing, so no callback sees it).

``torch.utils.tensorboard`` needs the optional ``tensorboard`` package (the ``tensorboard`` and
``test`` extras); :func:`tensorboard_unavailable` says why it cannot be used, so a command can
stop with one line before any training.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError
from .loop import Callback

#: columns of a metrics.jsonl row that are coordinates, not measurements
_NOT_SCALARS = ("epoch", "split", "step")


def tensorboard_unavailable() -> str | None:
    """``None`` when event files can be written, else the one-line reason and how to fix it."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return ("--tensorboard needs the optional package 'tensorboard': pip install tensorboard "
                "(or pip install 'bnvae-core[tensorboard]')")
    return None


def open_writer(log_dir: str | Path):
    """A ``SummaryWriter`` writing into ``log_dir`` (created); :class:`ConfigError` without tensorboard."""
    reason = tensorboard_unavailable()
    if reason:
        raise ConfigError(reason)
    from torch.utils.tensorboard import SummaryWriter
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(log_dir))


def _write_rows(writer, rows: Iterable[dict]) -> None:
    """Every finite number of each metrics.jsonl row as ``<split>/<column>`` at x = its epoch
    (x = the optimizer step for the ``split: 'step'`` rows)."""
    for row in rows:
        split = row.get("split")
        x = row.get("step") if split == "step" else row.get("epoch")
        if split is None or x is None:
            continue
        for key, value in row.items():
            if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                writer.add_scalar(f"{split}/{key}", value, int(x))


def write_history(log_dir: str | Path, rows: Iterable[dict]) -> None:
    """The epoch scalars of a finished run's history (``metrics.jsonl`` rows) into ``log_dir``."""
    writer = open_writer(log_dir)
    try:
        _write_rows(writer, rows)
    finally:
        writer.close()


def has_events(log_dir: str | Path) -> bool:
    """Whether ``log_dir`` already holds TensorBoard event files (then a cache hit writes none again)."""
    return Path(log_dir).is_dir() and any(Path(log_dir).glob("events.out.tfevents.*"))


class TensorBoardLogger(Callback):
    """Event files of one training run in ``log_dir``: step scalars every ``every`` optimizer steps,
    the epoch rows after every epoch (flushed then, so a crashed run keeps its finished epochs)."""

    def __init__(self, log_dir: str | Path, every: int = 10):
        if every < 1:
            raise ConfigError(f"every must be >= 1, got {every}")
        self.log_dir, self.every, self.writer = Path(log_dir), every, None

    def on_fit_start(self, trainer) -> None:
        self.writer = open_writer(self.log_dir)

    def on_step(self, trainer, batch, terms, kl_weight: float) -> None:
        step = trainer.state.step
        if self.writer is None or step % self.every:
            return
        self.writer.add_scalar("step/loss", float(terms.loss.detach()), step)
        self.writer.add_scalar("step/rec", float(terms.rec.detach().mean()), step)
        self.writer.add_scalar("step/kl", float(terms.kl.detach().mean()), step)
        self.writer.add_scalar("step/kl_weight", float(kl_weight), step)

    def on_epoch_end(self, trainer, train_row: dict, valid_row: dict) -> None:
        if self.writer is not None:
            _write_rows(self.writer, [train_row, valid_row])
            self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
