"""The config-hashed cache of trained runs: train a config once, load it in seconds after.

An entry is the run folder ``<cache>/<model>-<config hash>`` (:meth:`TrainConfig.hash`, which
includes :data:`~bnvae_core.config.TRAINING_MATH_VERSION`, so code that trains differently
never loads an older entry). The notebooks share their models through it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..config import TrainConfig
from ..errors import ConfigError, RunError
from .loop import train
from .run_folder import Run, load_run


def cache_dir() -> Path:
    """``$BNVAE_CACHE`` or ``~/.cache/bnvae/runs`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("BNVAE_CACHE"):
        return Path(os.environ["BNVAE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bnvae" / "runs"


def cached_run(config: TrainConfig, *, root: str | Path | None = None, progress: bool = True,
               callbacks=()) -> Run:
    """Train ``config`` once; later calls with an equal config load the result in seconds.

    The entry is ``root/<model>-<config hash>``. ``callbacks`` (:class:`~bnvae_core.training.loop.Callback`)
    watch the training when there is one; a cache hit trains nothing, so they are not called.
    It is trained in a temporary folder and renamed into place, so two processes never leave a
    half-written entry. An entry whose files are corrupt or whose config does not hash to its name
    is discarded and retrained."""
    root = Path(root) if root is not None else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    entry = root / f"{config.model}-{config.hash()}"
    if entry.exists():
        try:
            run = load_run(entry, device=config.device)
            if run.config.hash() != config.hash():
                raise RunError(f"{entry}: config.json does not hash to the entry's name")
            if not (entry / "summary.json").exists():
                raise RunError(f"{entry}: unfinished entry")
            return run
        except (RunError, ConfigError) as err:
            warnings.warn(f"discarding bad cache entry: {err}")
            shutil.rmtree(entry, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        run = train(config, tmp / "run", progress=progress, callbacks=callbacks)
        try:
            os.replace(tmp / "run", entry)
        except OSError:  # another process finished the same entry first: use theirs
            return load_run(entry, device=config.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.path = entry
    return run
