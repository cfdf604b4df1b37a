"""A run folder: everything one training run leaves on disk, written so that nothing is ever half.

``config.json`` (the config), ``metrics.jsonl`` (one JSON object per epoch and split),
``checkpoint.pt`` (everything needed to resume: weights, best weights, optimizer, schedule,
RNG states, method state) and, once finished, ``model.pt`` (the best weights, a plain
``state_dict``) and ``summary.json``. Every file is written to a temporary name and renamed
(:mod:`bnvae_core.io`), and a checkpoint and the ``metrics.jsonl`` that matches it are
written together inside :meth:`InterruptGuard.critical`, so an interrupted run leaves its last
complete epoch.
"""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..config import TrainConfig
from ..data.corpus import Corpus
from ..devices import resolve_device
from ..errors import RunError
from ..io import atomic_torch_save, atomic_write_json, read_jsonl, write_jsonl
from ..methods import make_method
from .step import all_finite


class InterruptGuard:
    """SIGINT (Ctrl-C, a notebook's interrupt) and SIGTERM raise :class:`KeyboardInterrupt`,
    except inside :meth:`critical`, where they are held until its end: a checkpoint and the
    ``metrics.jsonl`` that matches it are written together or not at all. Outside the main
    thread (where handlers cannot be installed) signals keep their usual behaviour. Re-entrant."""

    def __init__(self):
        self._depth, self._pending, self._stack = 0, None, []

    def _handler(self, signum, frame):
        if self._depth:
            self._pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> "InterruptGuard":
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                break
        self._stack.append(previous)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._stack.pop().items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        return False

    @contextmanager
    def critical(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending is not None:
            signum, self._pending = self._pending, None
            raise KeyboardInterrupt(f"signal {signum}")


CHECKPOINT_KEYS = ("model", "best_model", "state", "history", "optimizer", "torch_rng", "python_rng")


def config_differences(saved: dict, config: TrainConfig, ignore: tuple[str, ...] = ("epochs", "device")) -> str:
    """'' if ``saved`` (a config dict) equals ``config`` outside ``ignore``, else ``'nz: saved 16 vs 32, ...'``."""
    current = config.to_dict()
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return ", ".join(f"{k}: saved {saved.get(k, '<absent>')!r} vs {current.get(k, '<absent>')!r}"
                     for k in keys if saved.get(k, "<absent>") != current.get(k, "<absent>"))


@dataclass
class Run:
    """A trained model with its config, corpus and history (``metrics.jsonl`` as a DataFrame)."""
    config: TrainConfig
    model: torch.nn.Module
    corpus: Corpus
    path: Path | None
    history_rows: list[dict]

    @property
    def history(self) -> pd.DataFrame:
        """``metrics.jsonl`` as a DataFrame: the epoch rows (``split`` train/valid) and the step rows."""
        return pd.DataFrame(self.history_rows)

    @property
    def epoch_rows(self) -> list[dict]:
        """The rows of ``metrics.jsonl`` with ``split`` 'train' or 'valid' (one pair per epoch)."""
        return [r for r in self.history_rows if r.get("split") in ("train", "valid")]

    @property
    def step_rows(self) -> list[dict]:
        """The rows of ``metrics.jsonl`` with ``split`` 'step' (every ``log_every`` steps)."""
        return [r for r in self.history_rows if r.get("split") == "step"]

    def summary(self) -> dict:
        p = self.path / "summary.json" if self.path else None
        return json.loads(p.read_text()) if p and p.exists() else {}


class RunFolder:
    """The files of one run (see the module docstring) and the rules for creating and resuming it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoint_path = self.path / "checkpoint.pt"

    def create(self, config: TrainConfig) -> None:
        """Make the folder (it must not exist, or be empty) with ``config.json`` and an empty history."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise RunError(f"{out}: run folder is not empty (use resume, or another --out)")
        config.save(out / "config.json")
        write_jsonl(out / "metrics.jsonl", [])

    def resume_checkpoint(self, config: TrainConfig, guard: "InterruptGuard") -> dict | None:
        """The checkpoint to continue ``config`` from (None: interrupted before the first one, so
        start over), after checking that folder and checkpoint belong to this config."""
        out, ckpt_path = self.path, self.checkpoint_path
        if not (out / "config.json").exists():
            raise RunError(f"{out}: nothing to resume (no config.json)")
        saved = TrainConfig.load(out / "config.json")
        differs = config_differences(saved.to_dict(), config)
        if differs:
            raise RunError(f"{out}: resume with a different config: {differs}")
        ck = None
        if ckpt_path.exists():
            ck = load_checkpoint(ckpt_path)
            missing = [k for k in CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else CHECKPOINT_KEYS
            if missing:
                raise RunError(f"{ckpt_path}: not a training checkpoint (missing {', '.join(missing)})")
            differs = config_differences(ck.get("config", {}), config)
            if differs:
                raise RunError(f"{ckpt_path}: checkpoint from a different config: {differs}")
            if config.epochs < ck["state"]["epoch"]:
                raise RunError(f"{out}: already trained {ck['state']['epoch']} epochs; resume continues "
                               f"to a larger total, not to {config.epochs}")
        with guard.critical():
            if saved.epochs != config.epochs:      # config.json records the epochs asked for
                config.replace(device=saved.device).save(out / "config.json")
            if ck is None:                          # interrupted before its first checkpoint
                write_jsonl(out / "metrics.jsonl", [])
        return ck

    def last_good(self, epoch: int) -> str:
        """How error messages name the last good checkpoint (the end of ``epoch``)."""
        return f"{self.checkpoint_path} (end of epoch {epoch})" if self.checkpoint_path.exists() else "none yet"

    def save(self, checkpoint: dict, history: list[dict]) -> None:
        """``checkpoint.pt`` and the matching ``metrics.jsonl`` (call inside the guard's ``critical``)."""
        atomic_torch_save(checkpoint, self.checkpoint_path)
        write_jsonl(self.path / "metrics.jsonl", history)

    def write_history(self, history: list[dict]) -> None:
        write_jsonl(self.path / "metrics.jsonl", history)

    def finish(self, best_state: dict, summary: dict) -> None:
        """``model.pt`` (the best weights) and ``summary.json``: the run is complete."""
        atomic_torch_save(best_state, self.path / "model.pt")
        atomic_write_json(self.path / "summary.json", summary)


def state_dict_mismatch(model: torch.nn.Module, state: dict) -> str:
    """What differs between ``model``'s parameters and a saved ``state`` dict, for error messages:
    ``'decoder.out.weight: saved (9, 16) vs model (12, 16); missing: …; unexpected: …'``."""
    own = model.state_dict()
    parts = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state and torch.is_tensor(state[k]) and state[k].shape != v.shape]
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected: {', '.join(unexpected)}")
    return "; ".join(parts) or "no shape difference"


def load_checkpoint(path: Path) -> dict:
    """A checkpoint or ``model.pt``, read with ``weights_only=True`` (a malicious pickle never runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / corrupt / not a checkpoint
        raise RunError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from None


def load_run(path: str | Path, device: str | None = None) -> Run:
    """Load a finished run folder (config.json, model.pt, metrics.jsonl)."""
    path = Path(path)
    for name in ("config.json", "model.pt", "metrics.jsonl"):
        if not (path / name).exists():
            raise RunError(f"{path}: not a finished run folder ({name} missing)")
    config = TrainConfig.load(path / "config.json")
    if device is not None:
        config = config.replace(device=device)
    method = make_method(config)
    corpus = method.load_corpus()
    model = method.build_model(len(corpus.vocab))
    state = load_checkpoint(path / "model.pt")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RunError(f"{path / 'model.pt'}: not a state_dict of weights")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise RunError(f"{path / 'model.pt'}: weights do not match config.json (vocab {len(corpus.vocab)}, "
                       f"emb {config.emb_dim}, hidden {config.hidden_dim}, nz {config.nz}): "
                       f"{state_dict_mismatch(model, state)}") from None
    if not all_finite(state):
        raise RunError(f"{path / 'model.pt'}: holds non-finite (NaN/Inf) weights")
    model.to(resolve_device(config.device)).eval()
    return Run(config, model, corpus, path, read_jsonl(path / "metrics.jsonl"))
