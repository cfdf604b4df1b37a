"""Sweeps: many training configs (methods × γ × seeds) run in parallel, locally or on Ray.

Every trial is one :func:`bnvae_core.train.cached_run` call, so a trial *is* a run folder of
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

The grid (:func:`sweep_configs`): for every method and seed, one config per γ for methods
that use γ (BN-VAE and its relatives, :func:`bnvae_core.model.uses_bn`), a single one for the
others (γ does not change them, so it is not swept). Results (:func:`run_sweep`) are one row
per trial: the config's fields that vary, the run folder, the best validation metrics from
the run's ``summary.json``/``metrics.jsonl``, and the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .config import ConfigError, TrainConfig

__all__ = ["sweep_configs", "run_sweep", "train_trial", "RayUnavailableError", "CLI_COMMAND"]


class RayUnavailableError(ConfigError):
    """``--ray`` was asked for but the optional ``ray`` package is not installed."""


# --- the grid ---------------------------------------------------------------------------------

def sweep_configs(base: TrainConfig, methods: Sequence[str], gammas: Sequence[float] = (), seeds: int | Iterable[int] = 1
                  ) -> list[TrainConfig]:
    """The configs of a methods × γ × seeds grid around ``base`` (validated, duplicates dropped).

    ``gammas`` empty: ``base.gamma`` only. ``seeds``: a count S (seeds 0 … S−1) or explicit seeds.
    γ is swept only for methods that use it (:func:`bnvae_core.model.uses_bn`)."""
    from .model import uses_bn
    from .objectives import METHODS
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {seeds}")
        seed_list = list(range(seeds))
    else:
        seed_list = [int(s) for s in seeds]
    if not methods:
        raise ConfigError("a sweep needs at least one method")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)} (choose from: {', '.join(METHODS)})")
    gamma_list = [float(g) for g in gammas] or [base.gamma]
    configs, seen = [], set()
    for method in methods:
        for gamma in (gamma_list if uses_bn(base.replace(model=method)) else [base.gamma]):
            for seed in seed_list:
                config = base.replace(model=method, gamma=gamma, seed=seed)   # validates
                if config.hash() not in seen:
                    seen.add(config.hash())
                    configs.append(config)
    return configs


# --- one trial ----------------------------------------------------------------------------------

def train_trial(config_dict: dict, cache_root: str, threads: int | None = None) -> dict:
    """Train (or load) one config with :func:`cached_run` under ``cache_root``; return its result row.

    A plain function of plain arguments, so it runs the same in this process, in a spawned
    worker process and as a Ray task. ``threads``: torch intra-op threads for this trial."""
    import torch

    from .train import cached_run
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
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    threads = max(1, (os.cpu_count() or 1) // workers)
    rows = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_trial, c.to_dict(), root, threads) for c in configs]
        for future in _progress(as_completed(futures), len(futures), progress):
            rows.append(future.result())
    return rows


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs the optional package 'ray': pip install 'bnvae-core[ray]' "
                                  "(or pip install 'ray[default]')") from None
    return ray


def _run_ray(configs: Sequence[TrainConfig], root: str, address: str | None, cpus_per_trial: float,
             progress: bool) -> list[dict]:
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        kwargs = {"ignore_reinit_error": True, "log_to_driver": False}
        if address:
            kwargs.update(address=address,
                          runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]})
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
    from .train import cache_dir
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
        table.to_csv(out / "sweep.csv", index=False)
        (out / "sweep.json").write_text(json.dumps([c.to_dict() for c in configs], indent=1) + "\n")
    return table


# --- command line ---------------------------------------------------------------------------------

def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray [ADDRESS]``, ``--cpus-per-trial``, ``--cache`` (shared with ``reproduce``)."""
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in this process)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run the trials as Ray tasks: a local Ray instance, or the cluster at ADDRESS "
                        "(needs the 'ray' extra)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="Ray: CPUs reserved per trial")
    p.add_argument("--cache", default=None, help="cache root of the run folders (default: $BNVAE_CACHE or "
                                                 "~/.cache/bnvae/runs; on a cluster a shared path)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import add_model_arguments
    add_model_arguments(p)
    p.add_argument("--methods", nargs="+", default=["vae", "bnvae"], help="methods to sweep")
    p.add_argument("--gammas", nargs="+", type=float, default=[], help="γ values (BN methods only; default --gamma)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 … S−1 (replaces --seed)")
    add_executor_arguments(p)
    p.add_argument("--out", required=True, help="folder for sweep.csv and sweep.json")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .cli import config_from_args
    if args.ray:
        _import_ray()                 # a clear error before any work
    configs = sweep_configs(config_from_args(args), args.methods, args.gammas, args.seeds)
    table = run_sweep(configs, cache_root=args.cache, workers=args.workers, ray=args.ray,
                      cpus_per_trial=args.cpus_per_trial, progress=not args.no_progress, out=args.out)
    print(json.dumps({"out": str(Path(args.out) / "sweep.csv"), "trials": len(table),
                      "run_dirs": table["run_dir"].tolist()}))
    return 0


CLI_COMMAND = (add_arguments, run, "train a grid of methods × γ × seeds in parallel (local processes or Ray)")
