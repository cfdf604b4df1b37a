"""Sweeps: many training configs (methods × γ × seeds) run in parallel, locally or on a Ray cluster.

Every trial is one :func:`bnvae_core.training.cache.cached_run` call, so a trial *is* a run folder of
the config-hashed cache (``<cache root>/<model>-<config hash>``): the same folder whether it
was trained by a local worker process, a Ray task on another machine (with the cache root on
a shared filesystem), a notebook, or ``reproduce``. A trial already in the cache costs a
load; a trial trained concurrently by two workers is kept once (``cached_run`` trains into a
temporary folder and renames it into place). What a trial does after training — the test-set
evaluation (:func:`evaluate_columns`, through the one evaluation cache
:func:`~bnvae_core.experiments.evaluation.evaluate_run`), ``reproduce``'s classifiers — is the
``evaluate`` hook, run *inside* the trial, so the driver only gathers rows.

Executors:

* **local processes** (default): :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method (no forked torch/OpenMP state), ``workers`` processes, each limited
  to ``max(1, cpu_count // workers)`` torch threads so the workers do not oversubscribe the CPU.
  ``workers=1`` trains in this process, one trial after the other. (``spawn`` re-imports the
  caller's main module: call it from a notebook, ``python -m bnvae_core sweep``, or a script
  guarded by ``if __name__ == "__main__":``, not from code piped into ``python -``.)
* **Ray** (``ray=True`` or an address): one Ray task per trial with ``num_cpus=cpus_per_trial``
  and ``num_gpus=gpus_per_trial`` (fractions share a GPU; Ray then sets the trial's
  ``CUDA_VISIBLE_DEVICES``, so ``--device auto`` trains on CUDA; without ``num_gpus`` Ray hides
  every GPU). ``ray`` is the optional extra ``bnvae-core[ray]``, imported only here. Without an
  address a local Ray instance is started (``ray.init()``); with one (``"auto"``,
  ``"head:6379"``, ``"ray://head:10001"``) the sweep joins that cluster and ships this
  package's code with the tasks (``runtime_env`` ``py_modules``). Before any trial, the sweep
  checks (:func:`check_cluster`) that some node has the resources one trial asks for — a GPU
  request on a cluster without GPUs would otherwise pend forever — and that every such node
  sees the cache root: the driver writes a marker file there and a probe task pinned to each
  node must read it (:class:`~bnvae_core.errors.ClusterError` otherwise). The environment
  variables ``BNVAE_*`` reach every trial (``runtime_env`` ``env_vars``), with ``BNVAE_CACHE``
  the cache root and ``BNVAE_DATA`` the driver's data directory
  (:func:`~bnvae_core.data.hub.data_home`), so the nodes share one data and one run cache.

**Failures.** A trial that raises is run again, up to ``retries`` more times (the driver
resubmits it, on any executor; a Ray worker or node that dies counts as a failure too); then
its row says ``status = "failed"``, the ``error`` (one line) and the ``attempts``, and the
other trials go on. Each failed attempt is logged on the driver, prefixed by the trial
(:func:`trial_label`), the last one with the trial's traceback. :func:`failure_summary` is the
one line the command line prints (exit status 1 when any trial failed).

The grid is :func:`bnvae_core.experiments.grid.grid_configs`: for every method and seed, one
config per γ for methods with a BN head, a single one for the others (γ does not change them).
Results (:func:`run_sweep`) are one row per trial, in ``configs`` order: ``model, gamma, seed``,
the other config fields that vary across the sweep, ``status, error, attempts``, the config
hash and run folder, the best validation metrics of the run's ``metrics.jsonl``, the hook's
columns (``test_nll``, …), the device it ran on, the wall time, host and pid.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from ..config import TrainConfig
from ..data.hub import REGISTRY, data_home, resolve_data
from ..errors import ClusterError, ConfigError, RayUnavailableError
from ..io import atomic_write_text
from ..methods import method_class
from ..training.cache import cache_dir, cached_run
from ..training.loop import Callback
from ..training.tensorboard import TensorBoardLogger, has_events, tensorboard_unavailable, write_history
from .evaluation import evaluate_run

#: how many times a failed trial is run again by default (so at most 3 attempts)
DEFAULT_RETRIES = 2
#: seconds the probe tasks (one per node) may take before the cluster check gives up
PROBE_TIMEOUT_S = 180
#: columns every result row has, first
STATUS_COLUMNS = ("status", "error", "attempts")


# --- one trial (runs in this process, a worker process, or a Ray task) ----------------------------

def trial_label(config: TrainConfig) -> str:
    """How logs and error messages name a trial: ``bnvae γ=0.6 seed=0 [1a2b3c4d]`` (γ only for
    methods with a BN head; the hash prefix tells apart trials that differ in other fields)."""
    gamma = f" γ={config.gamma:g}" if method_class(config.model).bn is not None else ""
    return f"{config.model}{gamma} seed={config.seed} [{config.hash()[:8]}]"


def tensorboard_name(config: TrainConfig) -> str:
    """The trial's folder under ``--tensorboard DIR``: ``bnvae-gamma0.6-seed0-1a2b3c4d``."""
    return f"{config.model}-gamma{config.gamma:g}-seed{config.seed}-{config.hash()[:8]}"


class TrialProgress(Callback):
    """One line per epoch on stderr, prefixed by the trial: on a Ray cluster the workers' stderr
    reaches the driver (``log_to_driver``), so the driver shows every trial's progress."""

    def __init__(self, label: str):
        self.label = label

    def on_epoch_end(self, trainer, train_row: dict, valid_row: dict) -> None:
        print(f"[{self.label}] epoch {train_row['epoch']}/{trainer.config.epochs}: train loss "
              f"{train_row['loss']:.3f} (rec {train_row['rec']:.3f}, kl {train_row['kl']:.3f}), valid loss "
              f"{valid_row.get('loss', float('nan')):.3f}, {train_row['time_s']:.1f} s",
              file=sys.stderr, flush=True)


def evaluate_columns(run, iw_samples: int = 500, split: str = "test") -> dict:
    """The ``evaluate`` hook of ``sweep --iw-samples K``: the method's evaluation of ``run`` on
    ``split`` (cached in the run folder by :func:`evaluate_run`) as ``<split>_nll``, ``_ppl``,
    ``_kl``, ``_mi``, ``_au``, ``_elbo`` columns."""
    result = evaluate_run(run, split=split, iw_samples=iw_samples)
    return {f"{split}_{k}": result[k] for k in ("nll", "ppl", "kl", "mi", "au", "elbo") if k in result}


def train_trial(config_dict: dict, cache_root: str, threads: int | None = None, *,
                evaluate: Callable | None = None, tensorboard: str | None = None, report: bool = False) -> dict:
    """Train (or load) one config with :func:`cached_run` under ``cache_root``; return its result row.

    A plain function of plain arguments, so it runs the same in this process, in a spawned
    worker process and as a Ray task. ``threads``: torch intra-op threads for this trial.
    ``evaluate(run) -> dict``: more columns, computed here (a picklable function or
    :func:`functools.partial` of one). ``tensorboard``: a folder for the trial's event files
    (``<tensorboard>/<tensorboard_name>``; a cache hit writes its history there once).
    ``report``: one progress line per epoch on stderr."""
    if threads:
        torch.set_num_threads(int(threads))
    config = TrainConfig.from_dict(config_dict)
    label, t0 = trial_label(config), time.perf_counter()
    callbacks = [TrialProgress(label)] if report else []
    board = Path(tensorboard) / tensorboard_name(config) if tensorboard else None
    if board is not None:
        callbacks.append(TensorBoardLogger(board))
    run = cached_run(config, root=cache_root, progress=False, callbacks=callbacks)
    if board is not None and not has_events(board):
        write_history(board, run.history_rows)
    valid = [r for r in run.history_rows if r.get("split") == "valid"]
    best = min(valid, key=lambda r: r.get("loss", float("inf"))) if valid else {}
    row = {"model": config.model, "gamma": config.gamma, "seed": config.seed, "config_hash": config.hash(),
           "run_dir": str(run.path), "epochs": len(valid),
           **{f"valid_{k}": best.get(k) for k in ("loss", "rec", "kl", "au", "mi", "ppl") if k in best}}
    if evaluate is not None:
        row.update(evaluate(run))
    params = next(run.model.parameters(), None)
    row.update(device=str(params.device) if params is not None else config.device,
               wall_s=round(time.perf_counter() - t0, 3), host=os.uname().nodename, pid=os.getpid())
    if report:
        print(f"[{label}] done in {row['wall_s']:.1f} s on {row['device']} ({row['host']})", file=sys.stderr, flush=True)
    return row


def describe_error(err: BaseException) -> str:
    """One line for a trial's exception: ``CorpusError: <message>``. A Ray task error is unwrapped
    to the trial's own exception; Ray's errors (a worker or node that died) keep their name."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def run_trial_safely(config_dict: dict, cache_root: str, threads: int | None = None, **kwargs) -> dict:
    """:func:`train_trial`, its exception turned into data: ``{"row": …}`` or ``{"error": one line,
    "traceback": text}``. The executors send this back instead of the exception itself, which
    would have to be unpickled on the driver (not every exception class can be)."""
    try:
        return {"row": train_trial(config_dict, cache_root, threads, **kwargs)}
    except Exception as err:            # a failed trial is a result; Ctrl-C still stops the worker
        return {"error": describe_error(err), "traceback": traceback.format_exc()}


# --- the driver: submit, gather, retry --------------------------------------------------------------

def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _gather(configs: Sequence[TrainConfig], submit: Callable, next_done: Callable, retries: int,
            log: Callable[[str], None], progress: bool, cancel: Callable | None = None) -> list[dict]:
    """Run every trial to an outcome: ``submit(i)`` starts trial ``i`` and returns a handle,
    ``next_done(pending)`` waits for one handle of ``pending`` and returns ``(handle, outcome)``
    (:func:`run_trial_safely`'s dict). A failed trial is submitted again up to ``retries`` times.
    On an exception here (Ctrl-C), ``cancel(handles)`` stops what still runs."""
    labels = [trial_label(c) for c in configs]
    outcomes: list[dict | None] = [None] * len(configs)
    bar = _progress_bar(len(configs), progress)
    pending = {}
    try:
        for i in range(len(configs)):
            pending[submit(i)] = (i, 1)
        while pending:
            handle, outcome = next_done(pending)
            i, attempt = pending.pop(handle)
            if "error" in outcome and attempt <= retries:
                log(f"[{labels[i]}] attempt {attempt} of {retries + 1} failed: {outcome['error']} (retrying)")
                pending[submit(i)] = (i, attempt + 1)
                continue
            if "error" in outcome:
                log(f"[{labels[i]}] failed after {attempt} attempt(s): {outcome['error']}")
                for line in outcome.get("traceback", "").rstrip().splitlines():
                    log(f"[{labels[i]}]   {line}")
            outcomes[i] = {**outcome, "attempts": attempt}
            if bar is not None:
                bar.update(1)
    except BaseException:
        if cancel is not None and pending:
            cancel(list(pending))
        raise
    finally:
        if bar is not None:
            bar.close()
    return outcomes


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="sweep", unit="trial")


def _run_in_process(configs, root: str, trial_kwargs: dict, retries: int, log, progress: bool) -> list[dict]:
    """``workers=1``: the trials one after the other in this process (same retries and outcomes)."""
    tokens = itertools.count()

    def submit(i):
        return next(tokens), i              # a handle: (unique number, trial index)

    def next_done(pending):
        handle = next(iter(pending))
        return handle, run_trial_safely(configs[handle[1]].to_dict(), root, None, **trial_kwargs)

    return _gather(configs, submit, next_done, retries, log, progress)


def _run_local(configs, root: str, workers: int, trial_kwargs: dict, retries: int, log,
               progress: bool) -> list[dict]:
    """``workers`` spawned processes, ``cpu_count // workers`` torch threads each."""
    if workers == 1:
        return _run_in_process(configs, root, trial_kwargs, retries, log, progress)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        def submit(i):
            try:
                return pool.submit(run_trial_safely, configs[i].to_dict(), root, threads, **trial_kwargs)
            except RuntimeError as err:          # a broken pool (a worker process died): report, go on
                future = Future()
                future.set_exception(err)
                return future

        def next_done(pending):
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            future = next(iter(done))
            try:
                return future, future.result()
            except Exception as err:             # the worker process died (BrokenProcessPool)
                return future, {"error": describe_error(err)}

        # Ctrl-C or SIGTERM to this process: stop the workers too
        return _gather(configs, submit, next_done, retries, log, progress, cancel=lambda handles: _stop_workers(pool))


# --- Ray ------------------------------------------------------------------------------------------

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


def worker_environment(cache_root: str) -> dict[str, str]:
    """The environment variables every trial gets (``runtime_env`` ``env_vars``): this process's
    ``BNVAE_*`` variables, ``BNVAE_CACHE`` = the cache root, ``BNVAE_DATA`` = the data directory."""
    env = {k: v for k, v in os.environ.items() if k.startswith("BNVAE_")}
    env["BNVAE_CACHE"] = str(cache_root)
    env["BNVAE_DATA"] = str(data_home().expanduser().resolve())
    return env


@contextmanager
def _ray_connection(ray, address: str | None, env: dict):
    """Connected to Ray inside the block: ``ray.init`` unless Ray is already initialised (then its
    settings stay, and it stays connected after). Workers' output reaches this process
    (``log_to_driver``); with an address, this package's code is shipped to the cluster
    (``py_modules``). ``ray.init`` installs its own SIGTERM handler (exit at once); the one this
    process had is restored after ``ray.shutdown``, so a Trainer's interrupt handling is intact."""
    if ray.is_initialized():
        yield
        return
    runtime_env = {"env_vars": env}
    if address:
        runtime_env["py_modules"] = [str(Path(__file__).resolve().parent.parent)]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    ray.init(address=address or None, runtime_env=runtime_env, log_to_driver=True, ignore_reinit_error=True)
    try:
        yield
    finally:
        ray.shutdown()
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _node_text(node: dict) -> str:
    resources = node.get("Resources", {})
    return (f"{node.get('NodeManagerHostname') or '?'} ({node.get('NodeManagerAddress') or '?'}; "
            f"CPU {resources.get('CPU', 0):g}, GPU {resources.get('GPU', 0):g})")


def trial_nodes(nodes: Sequence[dict], cpus_per_trial: float, gpus_per_trial: float) -> list[dict]:
    """The alive nodes of ``ray.nodes()`` that can run one trial; :class:`ClusterError` when none can
    (Ray would leave every trial pending, without an error)."""
    alive = [n for n in nodes if n.get("Alive")]
    fit = [n for n in alive if n.get("Resources", {}).get("CPU", 0) >= cpus_per_trial
           and n.get("Resources", {}).get("GPU", 0) >= gpus_per_trial]
    if fit:
        return fit
    listed = "; ".join(_node_text(n) for n in alive) or "no alive node"
    if gpus_per_trial > 0 and not any(n.get("Resources", {}).get("GPU", 0) > 0 for n in alive):
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g}: the Ray cluster has no GPU (nodes: {listed}), "
                           "so every trial would wait forever; start the nodes on GPU machines "
                           "(ray start ... --num-gpus N) or leave --gpus-per-trial at 0")
    raise ClusterError(f"no node of the Ray cluster has {cpus_per_trial:g} CPU(s) and {gpus_per_trial:g} GPU(s) "
                       f"for one trial (nodes: {listed}); lower --cpus-per-trial / --gpus-per-trial")


def probe_markers(markers: Sequence[str], token: str) -> dict:
    """Run on one node: which of the driver's ``markers`` files this node sees, with ``token`` in them."""
    seen = []
    for marker in markers:
        try:
            seen.append(Path(marker).read_text(encoding="utf-8") == token)
        except OSError:
            seen.append(False)
    return {"host": os.uname().nodename, "seen": seen}


def visibility_problems(nodes: Sequence[dict], results: Sequence[dict | None],
                        paths: Sequence[str]) -> list[tuple[str | None, str]]:
    """``(path, message)`` per (node, path) whose marker the node did not see; ``(None, message)``
    for a node whose probe never ran (``None`` in ``results``)."""
    problems = []
    for node, result in zip(nodes, results):
        if result is None:
            problems.append((None, f"the probe task on {_node_text(node)} did not run within {PROBE_TIMEOUT_S} s"))
            continue
        problems += [(path, f"{path} is not visible from {_node_text(node)}")
                     for path, seen in zip(paths, result["seen"]) if not seen]
    return problems


def _probe(ray, nodes: Sequence[dict], paths: Sequence[str], env: dict) -> list[tuple[str | None, str]]:
    """Write a marker into each of ``paths``, read it back from a task pinned to each node; the problems."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    markers = [str(Path(p) / f".bnvae-visible-{token}") for p in paths]
    for marker in markers:
        atomic_write_text(marker, token)
    try:
        probe = ray.remote(probe_markers)
        refs = [probe.options(num_cpus=0, max_retries=0, name="bnvae-visibility-probe", runtime_env={"env_vars": env},
                              scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(markers, token) for n in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        results = [ray.get(r) if r in ready else None for r in refs]
    finally:
        for marker in markers:
            Path(marker).unlink(missing_ok=True)
    return visibility_problems(nodes, results, paths)


def check_cluster(ray, cpus_per_trial: float, gpus_per_trial: float, cache_root: str, env: dict,
                  also_visible: Sequence[str] = (), log: Callable[[str], None] = _stderr) -> list[dict]:
    """Before any trial: the nodes that can run one (:func:`trial_nodes`), and a probe that each sees
    ``cache_root`` (:class:`ClusterError` if not: results would stay on the nodes and ``reproduce``
    would find none) and ``also_visible`` (data, TensorBoard folders: a warning each, since a node
    can work with its own copy)."""
    nodes = trial_nodes(ray.nodes(), cpus_per_trial, gpus_per_trial)
    paths = [cache_root, *[p for p in also_visible if Path(p).is_dir()]]
    problems = _probe(ray, nodes, paths, env)
    fatal = [message for path, message in problems if path in (None, cache_root)]
    for path, message in problems:
        if path not in (None, cache_root):
            log(f"[sweep] warning: {message}: that node uses its own copy")
    if fatal:
        raise ClusterError(f"the cache root must be one folder that every Ray node sees (a shared filesystem; "
                           f"--cache or $BNVAE_CACHE): {'; '.join(fatal)}")
    return nodes


def _run_ray(configs, root: str, address: str | None, cpus_per_trial: float, gpus_per_trial: float,
             trial_kwargs: dict, retries: int, log, progress: bool) -> list[dict]:
    """One Ray task per trial (see the module docstring), after :func:`check_cluster`."""
    ray = require_ray()
    env = worker_environment(root)
    with _ray_connection(ray, address, env):
        shared = [env["BNVAE_DATA"]] + ([trial_kwargs["tensorboard"]] if trial_kwargs.get("tensorboard") else [])
        nodes = check_cluster(ray, cpus_per_trial, gpus_per_trial, root, env, shared, log)
        log(f"[sweep] {len(configs)} trial(s) on {len(nodes)} Ray node(s) that fit one "
            f"({cpus_per_trial:g} CPU, {gpus_per_trial:g} GPU per trial)")
        task = ray.remote(run_trial_safely)
        threads = max(1, int(cpus_per_trial))

        def submit(i):
            options = dict(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0,
                           name=f"trial {trial_label(configs[i])}", runtime_env={"env_vars": env})
            return task.options(**options).remote(configs[i].to_dict(), root, threads, **trial_kwargs)

        def next_done(pending):
            done, _ = ray.wait(list(pending), num_returns=1)
            try:
                return done[0], ray.get(done[0])
            except Exception as err:        # Ray's own failures: a worker or node died, the task was cancelled
                return done[0], {"error": describe_error(err)}

        def cancel(refs):
            for ref in refs:
                ray.cancel(ref, force=True)

        return _gather(configs, submit, next_done, retries, log, progress, cancel)


# --- the sweep ------------------------------------------------------------------------------------

def varying_fields(configs: Sequence[TrainConfig]) -> list[str]:
    """The config fields, other than model, γ and seed, whose values differ across ``configs``."""
    dicts = [c.to_dict() for c in configs]
    return [k for k in dicts[0] if k not in ("model", "gamma", "seed")
            and len({json.dumps(d[k], sort_keys=True) for d in dicts}) > 1]


def results_table(configs: Sequence[TrainConfig], outcomes: Sequence[dict]) -> pd.DataFrame:
    """One row per config (its outcome), columns ``model, gamma, seed``, the varying fields, then
    ``status, error, attempts``, then the trial's columns (empty for a failed trial)."""
    extra = varying_fields(configs)
    rows = []
    for config, outcome in zip(configs, outcomes):
        d = config.to_dict()
        head = {"model": config.model, "gamma": config.gamma, "seed": config.seed, **{k: d[k] for k in extra}}
        if "row" in outcome:
            status = {"status": "ok", "error": "", "attempts": outcome["attempts"]}
            rows.append({**head, **status, **outcome["row"]})
        else:
            status = {"status": "failed", "error": outcome["error"], "attempts": outcome["attempts"]}
            rows.append({**head, **status, "config_hash": config.hash(), "run_dir": None})
    return pd.DataFrame(rows)


def failure_summary(table: pd.DataFrame, limit: int = 3) -> str | None:
    """``None`` when every trial succeeded, else one line: ``2 of 6 trials failed: <trial>: <error>; …``."""
    if "status" not in table:
        return None
    failed = table[table["status"] != "ok"]
    if failed.empty:
        return None
    first = []
    for _, r in failed.head(limit).iterrows():
        first.append(f"{r['model']} seed={r['seed']} [{str(r['config_hash'])[:8]}]: {r['error']}")
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    return f"{len(failed)} of {len(table)} trials failed: " + "; ".join(first) + more


def check_data(configs: Sequence[TrainConfig]) -> None:
    """Before any trial: every corpus the configs name exists — a built-in name, a directory this
    process sees (on a cluster: a shared one, like the cache root) or a registered name — or is a
    hub dataset (fetched by the trials, into ``BNVAE_DATA``). An unknown name is an
    :class:`~bnvae_core.errors.UnknownDatasetError` here rather than a failed trial each.
    Dialogue methods read their own corpus and are not checked."""
    for data in dict.fromkeys(c.data for c in configs if not method_class(c.model).conditional):
        name, sep, size = str(data).rpartition(":")
        if data in REGISTRY or (sep and name in REGISTRY and size.isdigit()):
            continue
        resolve_data(data)      # no download for these: raises for an unknown name


def _check_options(workers: int, ray, cpus_per_trial: float, gpus_per_trial: float, retries: int,
                   configs: Sequence) -> None:
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if cpus_per_trial <= 0:
        raise ConfigError(f"cpus_per_trial must be > 0, got {cpus_per_trial}")
    if gpus_per_trial < 0:
        raise ConfigError(f"gpus_per_trial must be >= 0, got {gpus_per_trial}")
    if gpus_per_trial > 0 and not ray:
        raise ConfigError("--gpus-per-trial schedules GPUs on a Ray cluster: use it with --ray "
                          "(local trials train on --device)")
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if not configs:
        raise ConfigError("nothing to sweep (no configs)")
    check_data(configs)


def run_sweep(configs: Sequence[TrainConfig], *, cache_root: str | Path | None = None, workers: int = 1,
              ray: bool | str = False, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
              retries: int = DEFAULT_RETRIES, evaluate: Callable | None = None,
              tensorboard: str | Path | None = None, progress: bool = False, out: str | Path | None = None,
              log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Train every config (cached); one result row per config, in ``configs`` order (see the module docstring).

    ``ray``: ``False`` (local processes, ``workers`` of them), ``True`` (a local Ray instance, or
    the one already initialised) or a cluster address. ``gpus_per_trial`` (Ray only, fractions
    allowed), ``cpus_per_trial``: what each Ray task reserves. ``retries``: further attempts of a
    failed trial. ``evaluate(run) -> dict``: columns computed inside each trial (e.g.
    ``functools.partial(evaluate_columns, iw_samples=500)``). ``tensorboard``: a folder for event
    files, one subfolder per trial. ``out``: also write ``out/sweep.csv`` and ``out/sweep.json``
    (the configs). ``log``: where driver messages go (default stderr). A failed trial does not
    raise: its row has ``status = "failed"`` (see :func:`failure_summary`). Raises
    :class:`ConfigError` / :class:`RayUnavailableError` / :class:`~bnvae_core.errors.ClusterError`
    before any training when the sweep cannot run as asked."""
    _check_options(workers, ray, cpus_per_trial, gpus_per_trial, retries, configs)
    log = log or _stderr
    root = str(Path(cache_root).resolve() if cache_root is not None else cache_dir().resolve())
    Path(root).mkdir(parents=True, exist_ok=True)
    trial_kwargs = {"evaluate": evaluate, "report": progress}
    if tensorboard is not None:
        reason = tensorboard_unavailable()
        if reason:
            raise ConfigError(reason)
        trial_kwargs["tensorboard"] = str(Path(tensorboard).resolve())
        Path(trial_kwargs["tensorboard"]).mkdir(parents=True, exist_ok=True)
    if ray:
        outcomes = _run_ray(configs, root, ray if isinstance(ray, str) else None, cpus_per_trial, gpus_per_trial,
                            trial_kwargs, retries, log, progress)
    else:
        outcomes = _run_local(configs, root, workers, trial_kwargs, retries, log, progress)
    table = results_table(configs, outcomes)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "sweep.csv", table.to_csv(index=False))
        atomic_write_text(out / "sweep.json", json.dumps([c.to_dict() for c in configs], indent=1) + "\n")
    return table
