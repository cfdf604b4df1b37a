"""A run folder: everything one training run leaves on disk, written so that nothing is ever half.

``config.json`` (the config), ``vocab.txt`` (the vocabulary, one token per line, in id order),
``data.json`` (what the run was trained on: the data folder's absolute path, the folder training
ran in, and the sha256 of every data file), ``metrics.jsonl`` (one JSON object per epoch and
split), ``checkpoint.pt`` (everything needed to resume: weights, best weights, optimizer,
schedule, RNG states, method state) and, once finished, ``model.pt`` (the best weights, a plain
``state_dict``) and ``summary.json``. Every file is written to a temporary name and renamed
(:mod:`bnvae_core.io`), and a checkpoint and the ``metrics.jsonl`` that matches it are
written together inside :meth:`InterruptGuard.critical`, so an interrupted run leaves its last
complete epoch.

One process at a time: a training or a resume holds the folder (:class:`~bnvae_core.io.FolderLock`,
taken before the corpus is read), a second one stops at once naming the first, and a training
that fails before its first checkpoint removes only the files it wrote itself. A model is never
paired with another vocabulary: :func:`load_run` and ``--resume`` compare the corpus with
``vocab.txt`` and ``data.json`` and refuse a corpus that changed the vocabulary (naming the file
that changed).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import signal
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..config import TrainConfig
from ..data.corpus import BUILTIN_CORPORA, Corpus, Vocab, load_corpus
from ..data.hub import REGISTRY, data_fingerprint, reading_settings, registered_datasets
from ..devices import allocation_errors, resolve_device
from ..errors import BnvaeError, BnvaeWarning, CorpusError, RunError, StorageError, UnknownDatasetError
from ..io import (
    FolderLock,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    ensure_dir,
    os_cause,
    read_json,
    read_jsonl,
    remove_empty_dirs,
    write_jsonl,
)
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
VOCAB_FILE, DATA_FILE = "vocab.txt", "data.json"


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
        """``summary.json`` ({} when there is none); a damaged one is a :class:`RunError` naming it."""
        p = self.path / "summary.json" if self.path else None
        return read_json(p, "run summary") if p and p.exists() else {}


# --- what a run was trained on ------------------------------------------------------------------
def vocab_digest(itos: list[str]) -> str:
    return hashlib.sha256("\n".join(itos).encode("utf-8")).hexdigest()


def data_record(config: TrainConfig, corpus) -> dict:
    """``data.json``: :func:`~bnvae_core.data.hub.data_fingerprint` of ``config.data``, the folder
    training ran in, the tokenizer, and the vocabulary's size and sha256."""
    return {**data_fingerprint(config.data), "cwd": os.getcwd(), "tokenizer": getattr(corpus, "tokenizer", None),
            "vocab_size": len(corpus.vocab), "vocab_sha256": vocab_digest(list(corpus.vocab.itos))}


def read_data_record(folder: Path) -> tuple[dict | None, list[str] | None]:
    """(``data.json``, ``vocab.txt`` as a token list) of a run folder; (None, None) for a folder
    written before they existed. A damaged one is a :class:`RunError` naming it."""
    if not (folder / DATA_FILE).exists() and not (folder / VOCAB_FILE).exists():
        return None, None
    record = read_json(folder / DATA_FILE, "data record of the run")
    try:
        text = (folder / VOCAB_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"{folder / VOCAB_FILE}: cannot read the run's vocabulary ({err})") from None
    itos = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    if vocab_digest(itos) != record.get("vocab_sha256") or len(itos) != record.get("vocab_size"):
        raise RunError(f"{folder / VOCAB_FILE}: does not match {folder / DATA_FILE} ({len(itos)} tokens, "
                       f"{record.get('vocab_size')} recorded): the run folder was changed by hand")
    return record, itos


def changed_files(record: dict) -> list[str]:
    """The data files whose sha256 differs from ``record`` (``'/abs/corp/train.txt (sha256 ab12… then,
    cd34… now)'``), those now missing, and those new."""
    try:
        now = data_fingerprint(record.get("path") or record["data"])["files"]
    except BnvaeError:
        now = {}
    base, then = record.get("path") or record.get("data"), record.get("files", {})
    out = [f"{base}/{name} (sha256 {sha[:12]}... then, {now[name][:12]}... now)"
           for name, sha in then.items() if name in now and now[name] != sha]
    out += [f"{base}/{name} (missing now)" for name in then if name not in now]
    out += [f"{base}/{name} (new)" for name in now if name not in then]
    return out


def check_vocabulary(folder: Path, corpus, record: dict | None, itos: list[str] | None) -> None:
    """:class:`RunError` when ``corpus`` does not give the vocabulary stored in the run folder (the
    model would read every id as another word); a :class:`BnvaeWarning` when data files changed but
    the vocabulary did not."""
    if itos is None:
        return
    if list(corpus.vocab.itos) == itos:
        changed = changed_files(record)
        if changed:
            warnings.warn(BnvaeWarning(f"{folder}: data changed since this run was trained: {'; '.join(changed)}; "
                                       "the vocabulary is the same, so the model still reads it correctly"))
        return
    changed = changed_files(record) or ["the files are unchanged, but they are read differently"]
    raise RunError(f"{folder}: the corpus no longer gives the vocabulary this model was trained with "
                   f"({len(corpus.vocab)} tokens now, {len(itos)} in {folder / VOCAB_FILE}): {'; '.join(changed)}. "
                   f"Restore the data or train again; `evaluate {folder} --data DIR` reads other text with the "
                   "run's own vocabulary")


def _is_data_name(data: str) -> bool:
    name = data.rpartition(":")[0] if ":" in data else data
    return data in BUILTIN_CORPORA or name in REGISTRY or data in registered_datasets()


def reading_config(config: TrainConfig, record: dict | None) -> TrainConfig:
    """``config`` with ``data`` where the run's corpus is read from: the folder recorded in
    ``data.json`` when ``config.data`` is a relative path that means another folder from here (or
    none), so a run reads its own corpus from any working folder."""
    recorded = (record or {}).get("path")
    if not recorded or recorded in BUILTIN_CORPORA or _is_data_name(config.data):
        return config
    here = Path(config.data).expanduser()
    if here.is_dir() and here.resolve() == Path(recorded):
        return config
    if Path(recorded).is_dir():
        return config.replace(data=recorded, tokenizer=record.get("tokenizer") or config.tokenizer)
    return config


def _unreadable_data(folder: Path, config: TrainConfig, record: dict | None, err: BnvaeError) -> RunError:
    """The error when a run's corpus cannot be read from here, naming where its ``data`` came from."""
    data = config.data
    where = ""
    if not _is_data_name(data) and not os.path.isabs(os.path.expanduser(data)):
        trained_in = (record or {}).get("cwd")
        where = (f" (a path relative to {trained_in}, where the run was trained)" if trained_in else
                 " (a relative path: relative to the folder the run was trained in, not to this one)")
    return RunError(f"{folder / 'config.json'}: its data {data!r}{where} cannot be read: {err}")


def _own_corpus(folder: Path, config: TrainConfig, record: dict | None, itos: list[str] | None):
    """The corpus the run was trained on, checked against its stored vocabulary."""
    try:
        corpus = make_method(reading_config(config, record)).load_corpus()
    except (UnknownDatasetError, CorpusError) as err:
        raise _unreadable_data(folder, config, record, err) from None
    check_vocabulary(folder, corpus, record, itos)
    return corpus


def _other_corpus(folder: Path, config: TrainConfig, record: dict | None, itos: list[str] | None, data: str):
    """Corpus ``data`` read with the run's vocabulary (the stored one; a folder without ``vocab.txt``
    gets it from its own corpus) and tokenizer."""
    if itos is None:
        own = _own_corpus(folder, config, record, itos)
        vocab, tokenizer = own.vocab, own.tokenizer
    else:
        vocab, tokenizer = Vocab(itos), record.get("tokenizer") or "words"
        if vocab.itos != itos:
            raise RunError(f"{folder / VOCAB_FILE}: not a vocabulary of this package (specials out of place)")
    path, reading = reading_settings(data, tokenizer, max_tokens=config.max_tokens)
    return load_corpus(path, **reading, vocab=vocab)


class RunFolder:
    """The files of one run (see the module docstring) and the rules for creating and resuming it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.lock = FolderLock(self.path, "training run")
        self.created: list[Path] = []        # folders this process made (the run folder, its parents)
        self.written: set[str] = set()       # files this process wrote before its first checkpoint
        self.pending_config: TrainConfig | None = None
        self.record: dict | None = None
        self.itos: list[str] | None = None

    # --- holding the folder --------------------------------------------------------------------
    def claim(self, resume: bool) -> None:
        """Hold the folder for this process, before any work: a new run's folder is created (with its
        parents) and must be empty; a resumed one must be a run folder this process can write."""
        out = self.path
        if resume:
            if not (out / "config.json").is_file():
                raise RunError(f"{out}: nothing to resume (no config.json)")
            check_writable_dir(out, "run folder")
            self.lock.acquire()
            return
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a directory")
        self.created = ensure_dir(out, "run folder")
        try:
            self.lock.acquire()
        except BaseException:
            remove_empty_dirs(self.created)          # only if empty: never another process's folder
            raise
        present = sorted(p.name for p in out.iterdir() if p.name != FolderLock.NAME)
        if present:
            self.lock.release()
            raise RunError(f"{out}: run folder exists and is not empty{_what_is_there(out, present)}")

    @contextmanager
    def working(self, resume: bool):
        """:meth:`claim`, then the work; when it fails before a checkpoint exists, the files this process
        wrote and the folders it created are removed (an interrupt keeps them: ``--resume`` starts over);
        the folder is released in any case."""
        self.claim(resume)
        failed = True
        try:
            yield self
            failed = False
        except KeyboardInterrupt:
            failed = False
            raise
        except StorageError as err:
            raise StorageError(f"{err}; {self._what_is_kept(resume)}", err.errno) from None
        finally:
            if failed and not resume and not self.checkpoint_path.exists():
                for name in self.written:
                    (self.path / name).unlink(missing_ok=True)
            self.lock.release()
            remove_empty_dirs(self.created)

    def _what_is_kept(self, resume: bool) -> str:
        if self.checkpoint_path.exists():
            return (f"the checkpoint of the last complete epoch is intact in {self.path}: free space (or fix the "
                    f"cause) and continue with `train --resume {self.path}`")
        return "nothing was kept" if not resume else f"{self.path} is as it was before"

    def _write(self, name: str, write) -> None:
        write(self.path / name)
        self.written.add(name)

    # --- creating and resuming ------------------------------------------------------------------
    def create(self, config: TrainConfig, corpus) -> None:
        """``config.json``, the vocabulary and data record, and an empty history."""
        self._write("config.json", config.save)
        self._write(VOCAB_FILE, lambda p: atomic_write_text(p, "".join(t + "\n" for t in corpus.vocab.itos)))
        self._write(DATA_FILE, lambda p: atomic_write_json(p, data_record(config, corpus)))
        self._write("metrics.jsonl", lambda p: write_jsonl(p, []))

    def read_record(self) -> None:
        """Read ``data.json`` and ``vocab.txt`` (kept for :meth:`check_corpus`)."""
        self.record, self.itos = read_data_record(self.path)

    def check_corpus(self, corpus) -> None:
        """:func:`check_vocabulary` of the corpus a resumed run is about to continue on."""
        check_vocabulary(self.path, corpus, self.record, self.itos)

    def resume_checkpoint(self, config: TrainConfig, guard: "InterruptGuard") -> dict | None:
        """The checkpoint to continue ``config`` from (None: interrupted before the first one, so
        start over), after checking that folder and checkpoint belong to this config. ``config.json``
        records a new ``--epochs`` only once a checkpoint of this resume is saved."""
        out, ckpt_path = self.path, self.checkpoint_path
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
        if saved.epochs != config.epochs:      # config.json records the epochs asked for
            self.pending_config = config.replace(device=saved.device)
        if ck is None:                          # interrupted before its first checkpoint
            with guard.critical():
                write_jsonl(out / "metrics.jsonl", [])
        return ck

    def last_good(self, epoch: int) -> str:
        """How error messages name the last good checkpoint (the end of ``epoch``)."""
        return f"{self.checkpoint_path} (end of epoch {epoch})" if self.checkpoint_path.exists() else "none yet"

    def save(self, checkpoint: dict, history: list[dict]) -> None:
        """``checkpoint.pt`` and the matching ``metrics.jsonl`` (call inside the guard's ``critical``),
        then a ``config.json`` with the new ``--epochs`` of a resume."""
        atomic_torch_save(checkpoint, self.checkpoint_path)
        write_jsonl(self.path / "metrics.jsonl", history)
        if self.pending_config is not None:
            self.pending_config.save(self.path / "config.json")
            self.pending_config = None

    def write_history(self, history: list[dict]) -> None:
        write_jsonl(self.path / "metrics.jsonl", history)

    def finish(self, best_state: dict, summary: dict) -> None:
        """``model.pt`` (the best weights) and ``summary.json``: the run is complete."""
        atomic_torch_save(best_state, self.path / "model.pt")
        atomic_write_json(self.path / "summary.json", summary)
        if self.pending_config is not None:      # resumed with nothing left to train
            self.pending_config.save(self.path / "config.json")
            self.pending_config = None


def _what_is_there(out: Path, present: list[str]) -> str:
    if "summary.json" in present:
        return " (a finished run: use another --out)"
    if "config.json" in present:
        return f" (an unfinished run: continue it with `train --resume {out}`, or use another --out)"
    return f" ({', '.join(present[:5])}{' ...' if len(present) > 5 else ''}: use another --out)"


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


def _why_not_a_checkpoint(path: Path, err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in a few words (never torch's advice to
    load it with ``weights_only=False``)."""
    try:
        size = path.stat().st_size
        head = path.read_bytes()[:4] if size else b""
    except OSError:
        size, head = None, b""
    pickled = head.startswith(b"PK") or head.startswith(b"\x80")        # a zip archive or a pickle
    if pickled and (isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in str(err)):
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        return (f"it holds a non-tensor object ({found.group(1)})" if found else
                "it holds objects other than tensors") + ", which is never loaded"
    if size == 0:
        return "an empty file"
    if head.startswith(b"PK"):
        return "a truncated or damaged zip archive" if not zipfile.is_zipfile(path) else \
            f"a damaged PyTorch archive ({type(err).__name__})"
    return "not a PyTorch checkpoint (neither its zip format nor a pickle of tensors)"


def load_checkpoint(path: Path) -> dict:
    """A checkpoint or ``model.pt``, read with ``weights_only=True`` (a malicious pickle never runs);
    anything else is one :class:`RunError` line saying why it was not loaded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (IsADirectoryError, PermissionError, FileNotFoundError) as err:
        raise RunError(f"{path}: cannot read ({os_cause(err)})") from None
    except Exception as err:  # truncated / corrupt / not a checkpoint / hostile
        raise RunError(f"{path}: not a valid checkpoint ({_why_not_a_checkpoint(Path(path), err)}); "
                       "not loaded") from None


def load_run(path: str | Path, device: str | None = None, *, data: str | None = None) -> Run:
    """Load a finished run folder (config.json, model.pt, metrics.jsonl, and vocab.txt/data.json
    where present). The run's corpus is read from where it was trained (``data.json``) and must give
    the stored vocabulary (else a :class:`RunError` naming the file that changed). ``data``: read
    that corpus instead, with the run's own vocabulary (what ``evaluate --data`` reports on)."""
    path = Path(path)
    for name in ("config.json", "model.pt", "metrics.jsonl"):
        if not (path / name).exists():
            raise RunError(f"{path}: not a finished run folder ({name} missing)")
    config = TrainConfig.load(path / "config.json")
    if device is not None:
        config = config.replace(device=device)
    resolve_device(config.device)                 # an unusable device: one line, before any work
    record, itos = read_data_record(path)
    method = make_method(config)
    corpus = (_own_corpus(path, config, record, itos) if data is None else
              _other_corpus(path, config, record, itos, data))
    with allocation_errors(f"{path / 'config.json'}"):
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
