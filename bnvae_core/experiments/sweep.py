"""Sweeps: many training configs (methods × γ × seeds) run in parallel, locally or on Ray.

Every trial is one :func:`bnvae_core.training.cache.cached_run` call, so a trial *is* a run folder of
the config-hashed cache (``<cache root>/<model>-<config hash>``): the same folder whether it
was trained by a local worker process, a Ray task on another machine (with the cache root on
a shared filesystem), a notebook, or ``reproduce``. A trial already in the cache costs a
load; a trial trained concurrently by two workers is kept once (``cached_run`` trains into a
temporary folder and renames it into place).

Executors:

* **local processes** (default): :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method (no forked torch/OpenMP state), ``workers`` processes, each limited
  to ``max(1, cpu_count // workers)`` torch threads so the workers do not oversubscribe the CPU.
  ``workers=1`` trains in this process, one trial after the other. (``spawn`` re-imports the
  caller's main module: call it from a notebook, ``python -m bnvae_core sweep``, or a script
  guarded by ``if __name__ == "__main__":``, not from code piped into ``python -``.)
* **Ray** (``ray=True`` or an address): one Ray task per trial (``num_cpus`` each). ``ray`` is
  the optional extra ``bnvae-core[ray]``, imported only here. Without an address a local Ray
  instance is started (``ray.init()``); with one (``"auto"``, ``"ray://head:10001"``) the sweep
  joins that cluster and ships this package's code with the tasks (``runtime_env`` ``py_modules``).
  The cache root must then be a path every node can write (``--cache``, a shared filesystem).

The grid is :func:`bnvae_core.experiments.grid.grid_configs`: for every method and seed, one
config per γ for methods with a BN head, a single one for the others (γ does not change them). Results (:func:`run_sweep`) are one row
per trial: the config's fields that vary, the run folder, the best validation metrics from
the run's ``summary.json``/``metrics.jsonl``, and the wall time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from ..config import TrainConfig
from ..errors import ConfigError, RayUnavailableError
from ..io import atomic_write_text
from ..training.cache import cache_dir, cached_run


def train_trial(config_dict: dict, cache_root: str, threads: int | None = None) -> dict:
    """Train (or load) one config with :func:`cached_run` under ``cache_root``; return its result row.

    A plain function of plain arguments, so it runs the same in this process, in a spawned
    worker process and as a Ray task. ``threads``: torch intra-op threads for this trial."""
    if threads:
        torch.set_num_threads(int(threads))
    config = TrainConfig.from_dict(config_dict)
    t0 = time.perf_counter()
    run = cached_run(config, root=cache_root, progress=False)
    valid = [r for r in run.history_rows if r.get("split") == "valid"]
    best = min(valid, key=lambda r: r.get("loss", float("inf"))) if valid else {}
    return {"model": config.model, "gamma": config.gamma, "seed": config.seed, "config_hash": config.hash(),
            "run_dir": str(run.path), "epochs": len(valid),
            **{f"valid_{k}": best.get(k) for k in ("loss", "rec", "kl", "au", "mi", "ppl") if k in best},
            "wall_s": round(time.perf_counter() - t0, 3), "host": os.uname().nodename, "pid": os.getpid()}


def _sweep_row_order(configs: Sequence[TrainConfig], rows: list[dict]) -> pd.DataFrame:
    by_hash = {r["config_hash"]: r for r in rows}
    return pd.DataFrame([by_hash[c.hash()] for c in configs])


def _run_local(configs: Sequence[TrainConfig], root: str, workers: int, progress: bool) -> list[dict]:
    if workers == 1:
        return [train_trial(c.to_dict(), root) for c in configs]
    threads = max(1, (os.cpu_count() or 1) // workers)
    rows = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_trial, c.to_dict(), root, threads) for c in configs]
        try:
            for future in _progress(as_completed(futures), len(futures), progress):
                rows.append(future.result())
        except KeyboardInterrupt:      # Ctrl-C or SIGTERM to this process: stop the workers too
            _stop_workers(pool)
            raise
    return rows


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the trials not started and SIGTERM the running ones (each stops as on Ctrl-C: its
    temporary folder is removed, the finished entries stay in the cache)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=30)


def require_ray():
    """The ``ray`` module, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs the optional package 'ray': pip install 'bnvae-core[ray]' "
                                  "(or pip install 'ray[default]')") from None
    return ray


def _run_ray(configs: Sequence[TrainConfig], root: str, address: str | None, cpus_per_trial: float,
             progress: bool) -> list[dict]:
    ray = require_ray()
    started_here = False
    if not ray.is_initialized():
        kwargs = {"ignore_reinit_error": True, "log_to_driver": False}
        if address:
            kwargs.update(address=address,
                          runtime_env={"py_modules": [str(Path(__file__).resolve().parent.parent)]})
        ray.init(**kwargs)
        started_here = True
    try:
        task = ray.remote(num_cpus=cpus_per_trial)(train_trial)
        threads = max(1, int(cpus_per_trial))
        pending = [task.remote(c.to_dict(), root, threads) for c in configs]
        rows, bar = [], _progress(None, len(pending), progress)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.extend(ray.get(done))
            if bar is not None:
                bar.update(len(done))
        if bar is not None:
            bar.close()
        return rows
    finally:
        if started_here:
            ray.shutdown()


def _progress(iterable, total: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc="sweep", unit="trial")


def run_sweep(configs: Sequence[TrainConfig], *, cache_root: str | Path | None = None, workers: int = 1,
              ray: bool | str = False, cpus_per_trial: float = 1, progress: bool = False,
              out: str | Path | None = None) -> pd.DataFrame:
    """Train every config (cached); one result row per config, in ``configs`` order.

    ``ray``: ``False`` (local processes, ``workers`` of them), ``True`` (a local Ray instance, or
    the one already initialised) or a cluster address. ``out``: also write ``out/sweep.csv`` and
    ``out/sweep.json`` (the configs). Raises :class:`RayUnavailableError` if Ray is asked for but
    not installed, and the trial's own exception if a trial fails."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if cpus_per_trial <= 0:
        raise ConfigError(f"cpus_per_trial must be > 0, got {cpus_per_trial}")
    if not configs:
        raise ConfigError("nothing to sweep (no configs)")
    root = str(Path(cache_root).resolve() if cache_root is not None else cache_dir().resolve())
    Path(root).mkdir(parents=True, exist_ok=True)
    if ray:
        rows = _run_ray(configs, root, ray if isinstance(ray, str) else None, cpus_per_trial, progress)
    else:
        rows = _run_local(configs, root, workers, progress)
    table = _sweep_row_order(configs, rows)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "sweep.csv", table.to_csv(index=False))
        atomic_write_text(out / "sweep.json", json.dumps([c.to_dict() for c in configs], indent=1) + "\n")
    return table
