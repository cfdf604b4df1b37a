"""Training: the loop, the run folder, resume, and the config-hashed cache.

A *run folder* holds ``config.json``, ``metrics.jsonl`` (one JSON object per epoch and split),
``checkpoint.pt`` (everything needed to resume: weights, best weights, optimizer, schedule,
RNG states) and, once finished, ``model.pt`` (the best weights, a plain ``state_dict``) and
``summary.json``. Every file is written to a temporary name and renamed, so an interrupted
run leaves its last complete epoch, never half a file.

The schedule is the paper's (Zhu et al. 2020 §5, after He et al. 2019): SGD lr 1.0, gradient
norm clipped at 5, KL weight linear from ``kl_start`` to 1 over ``warmup_epochs`` epochs (per
step), and after ``lr_patience`` epochs without a better validation loss the lr is halved and
the best weights reloaded, at most ``max_lr_decays`` times (training stops after that).
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .config import ConfigError, TrainConfig
from .data import Corpus, bucket_batches, load_corpus, make_batch
from .metrics import active_units, elbo, mutual_information
from .model import TextVAE, autocast_context
from .objectives import TrainContext, make_method
from .precision import check_precision


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RunError(RuntimeError):
    """A run folder is missing, incomplete, corrupt, or does not match the requested config."""


# --- helpers ------------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


_CORPUS_CACHE: dict[tuple, Corpus] = {}


def corpus_for(config: TrainConfig) -> Corpus:
    """The corpus a config trains on (memoised per process; the data subset is seeded with 0,
    so runs with different seeds see the same sentences)."""
    method = make_method(config)
    if method.conditional:      # cvae, bn-cvae: (context, response) pairs, see bnvae_core.dialogue
        return method.load_corpus()
    data = config.data
    try:
        from .hub import resolve_data  # optional: named datasets of the data hub
        data = resolve_data(data)
    except ImportError:
        pass
    key = (str(data), config.max_tokens, config.max_train, config.max_eval, config.min_freq, config.max_vocab)
    if key not in _CORPUS_CACHE:
        _CORPUS_CACHE[key] = load_corpus(data, max_tokens=config.max_tokens, max_train=config.max_train,
                                         max_eval=config.max_eval, min_freq=config.min_freq,
                                         max_vocab=config.max_vocab, seed=0)
    return _CORPUS_CACHE[key]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: Path) -> None:
    """:func:`torch.save` to a temporary name, then rename (see :func:`atomic_write_bytes`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_metrics(path: Path, history: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in history).encode())


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunError(f"{path}, line {i}: not JSON") from None
    return rows


class _InterruptGuard:
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

    def __enter__(self) -> "_InterruptGuard":
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


def _exp_or_inf(x: float) -> float:
    """exp(x), but inf instead of an OverflowError (a diverging run's perplexity)."""
    return math.exp(x) if x < 709.0 else math.inf


def _all_finite(state_dict: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values()
               if torch.is_tensor(t) and t.is_floating_point())


def build_optimizer(config: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum)


# --- the result of a run ------------------------------------------------------------------

@dataclass
class Run:
    """A trained model with its config, corpus and history (``metrics.jsonl`` as a DataFrame)."""
    config: TrainConfig
    model: TextVAE
    corpus: Corpus
    path: Path | None
    history_rows: list[dict]

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.history_rows)

    def summary(self) -> dict:
        p = self.path / "summary.json" if self.path else None
        return json.loads(p.read_text()) if p and p.exists() else {}


# --- the loop -----------------------------------------------------------------------------

def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          corpus: Corpus | None = None) -> Run:
    """Train ``config`` into ``out_dir`` (created; must be empty unless ``resume``).

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` until ``config.epochs`` epochs in
    total (a folder interrupted before its first checkpoint starts over); with the same seed the
    result equals an uninterrupted run (on CPU): weights, best weights, optimizer, lr schedule,
    warm-up step and RNG states come from the checkpoint, the data order from (seed, epoch).

    Ctrl-C / SIGTERM raise :class:`KeyboardInterrupt` and leave the last complete epoch
    (checkpoint.pt and metrics.jsonl agree). A non-finite loss or gradient raises
    :class:`NonFiniteLossError` (``on_nonfinite='stop'``) or skips the batch (``'skip'``);
    non-finite weights are never saved."""
    with _InterruptGuard() as guard:
        return _train(config, out_dir, guard, resume=resume, progress=progress, corpus=corpus)


def _train(config: TrainConfig, out_dir: str | Path, guard: _InterruptGuard, *, resume: bool,
           progress: bool, corpus: Corpus | None) -> Run:
    out = Path(out_dir)
    config.validate()
    device = resolve_device(config.device)
    check_precision(config.precision, device)   # --bf16 where the device has no bf16 kernels: one clear error
    corpus = corpus if corpus is not None else corpus_for(config)
    ckpt_path = out / "checkpoint.pt"

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model = make_method(config).build_model(len(corpus.vocab)).to(device)   # TextVAE, or the method's own
    method = make_method(config)
    state = {"epoch": 0, "step": 0, "lr": config.lr, "best_loss": math.inf, "not_improved": 0,
             "n_decays": 0, "stopped": False}
    history: list[dict] = []
    best_state = copy.deepcopy(model.state_dict())

    ck = None
    if resume:
        if not (out / "config.json").exists():
            raise RunError(f"{out}: nothing to resume (no config.json)")
        saved = TrainConfig.load(out / "config.json")
        differs = config_differences(saved.to_dict(), config)
        if differs:
            raise RunError(f"{out}: resume with a different config: {differs}")
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
                write_metrics(out / "metrics.jsonl", history)
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError:
            raise RunError(f"{ckpt_path}: weights do not match the config: "
                           f"{state_dict_mismatch(model, ck['model'])}") from None
        best_state = ck["best_model"]
        state = ck["state"]
        history = ck["history"]
        torch.set_rng_state(ck["torch_rng"])
        random.setstate(ck["python_rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"])
    elif not resume:
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise RunError(f"{out}: run folder is not empty (use resume, or another --out)")
        with guard.critical():
            config.save(out / "config.json")
            write_metrics(out / "metrics.jsonl", history)

    optimizer = build_optimizer(config, model, state["lr"])
    if ck is not None:
        optimizer.load_state_dict(ck["optimizer"])
        method.load_state_dict(ck.get("method", {}))
        with guard.critical():
            write_metrics(out / "metrics.jsonl", history)   # consistent with the checkpoint
    # what a method's hooks may use (objectives.TrainContext); the lambdas see the current optimizer/lr
    ctx = TrainContext(config, model, corpus, device, get_optimizer=lambda: optimizer,
                       make_optimizer=lambda: build_optimizer(config, model, state["lr"]), state=state)

    train_split = corpus.train
    n_batches = len(bucket_batches(train_split, config.batch_size, drop_singletons=True))

    def kl_weight(step: int) -> float:   # the method's schedule (objectives.Method.kl_weight): linear warm-up by default
        return method.kl_weight(step, n_batches)

    epochs_iter = range(state["epoch"], config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs_iter = tqdm(epochs_iter, desc=f"{config.model} training", unit="epoch",
                           initial=state["epoch"], total=config.epochs)
    with guard:  # Ctrl-C / SIGTERM → KeyboardInterrupt, held back while a checkpoint is written
        for epoch in epochs_iter:
            if state["stopped"]:
                break
            t0 = time.perf_counter()
            model.train()
            ctx.epoch = epoch
            method.before_epoch(ctx)            # e.g. pretrain-fb's autoencoder phase (timed with epoch 1)
            model.train()
            sums = torch.zeros(3, dtype=torch.float64, device=device)    # loss, rec, kl (sentence sums)
            mu_sum = torch.zeros(model.nz, dtype=torch.float64, device=device)
            mu_sq = torch.zeros_like(mu_sum)
            batch_kl, batch_bound = [], []
            n_sent = n_tok = skipped = 0
            for index in bucket_batches(train_split, config.batch_size, shuffle=True, seed=config.seed,
                                        epoch=epoch, drop_singletons=True):
                b = method.make_batch(train_split, index).to(device)
                w = kl_weight(state["step"])
                with autocast_context(config, device):  # bf16 when config.precision == 'bf16'
                    terms = method.train_step(ctx, b, w)    # default: method.loss (aggressive: inner loop first)
                if not torch.isfinite(terms.loss):
                    if config.on_nonfinite == "skip":
                        skipped += 1
                        optimizer.zero_grad(set_to_none=True)
                        continue
                    last = f"{ckpt_path} (end of epoch {state['epoch']})" if ckpt_path.exists() else "none yet"
                    raise NonFiniteLossError(
                        f"non-finite loss ({float(terms.loss.detach())}) at epoch {epoch + 1}, step {state['step'] + 1}; "
                        f"training stopped, the last good checkpoint is {last}")
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                # the norm is computed either way (clip_grad ≤ 0: no clipping): it guards the step
                grad_norm = ctx.clip_gradients()
                if not torch.isfinite(grad_norm):
                    optimizer.zero_grad(set_to_none=True)
                    if config.on_nonfinite == "skip":
                        skipped += 1
                        continue
                    last = f"{ckpt_path} (end of epoch {state['epoch']})" if ckpt_path.exists() else "none yet"
                    raise NonFiniteLossError(
                        f"non-finite gradient norm ({float(grad_norm)}) at epoch {epoch + 1}, step "
                        f"{state['step'] + 1}; training stopped, the last good checkpoint is {last}")
                optimizer.step()
                state["step"] += 1
                B = len(b)
                with torch.no_grad():
                    sums += torch.stack([(terms.rec + w * terms.kl).sum(), terms.rec.sum(), terms.kl.sum()]).double()
                    batch_kl.append(terms.kl.mean())
                    mu = terms.extra.get("mu")
                    if mu is not None:
                        mu_sum += mu.double().sum(0)
                        mu_sq += mu.double().pow(2).sum(0)
                        if model.bn_head is not None and B > 1:
                            batch_bound.append(model.bn_head.last_kl_bound)
                n_sent += B
                n_tok += b.n_tokens
            elapsed = time.perf_counter() - t0
            if n_sent == 0:
                raise NonFiniteLossError(f"every batch of epoch {epoch + 1} had a non-finite loss")
            sums = sums.cpu().tolist()
            mu_var = (mu_sq / n_sent - (mu_sum / n_sent) ** 2).cpu()
            row = {"epoch": epoch + 1, "split": "train", "loss": sums[0] / n_sent, "rec": sums[1] / n_sent,
                   "kl": sums[2] / n_sent, "au": int((mu_var > 0.01).sum()), "kl_weight": kl_weight(state["step"]),
                   "lr": state["lr"], "step": state["step"], "n_sentences": n_sent,
                   "kl_batch_min": float(torch.stack(batch_kl).min()) if batch_kl else None,
                   "time_s": elapsed, "tokens_per_s": n_tok / elapsed, "skipped_batches": skipped}
            if model.bn_head is not None:
                row["kl_bound"] = float(model.bn_head.kl_lower_bound())
                row["kl_bound_nominal"] = 0.5 * model.nz * model.bn_head.gamma ** 2
                if batch_bound:
                    gaps = torch.stack(batch_kl[-len(batch_bound):]) - torch.stack(batch_bound)
                    row["kl_minus_batch_bound_min"] = float(gaps.min())
            if method.conditional:  # cvae, bn-cvae: ELBO and AU of (context, response) pairs (bnvae_core.cvae)
                val = method.validation_metrics(model, corpus.valid, seed=config.seed)
                au = val["au"]
                vrow = {"epoch": epoch + 1, "split": "valid", **val, "lr": state["lr"]}
            else:
                val = elbo(model, corpus.valid, seed=config.seed)
                au, _ = active_units(model, corpus.valid)
                vrow = {"epoch": epoch + 1, "split": "valid", "loss": val["loss"], "rec": val["rec"], "kl": val["kl"],
                        "elbo": val["elbo"], "au": au, "mi": mutual_information(model, corpus.valid, seed=config.seed),
                        "ppl_elbo": _exp_or_inf(val["loss"] * val["n_sentences"] / val["n_tokens"]),
                        "lr": state["lr"]}
            method.after_epoch(ctx, row, vrow)      # e.g. aggressive's MI stop rule
            history += [row, vrow]
            # --- lr schedule on the validation loss (−ELBO) -----------------------------------
            if val["loss"] < state["best_loss"]:
                state["best_loss"], state["not_improved"] = val["loss"], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                state["not_improved"] += 1
                if state["not_improved"] >= config.lr_patience:
                    state["n_decays"] += 1
                    state["not_improved"] = 0
                    if state["n_decays"] > config.max_lr_decays:
                        state["stopped"] = True
                    else:
                        state["lr"] *= config.lr_decay
                        model.load_state_dict(best_state)
                        optimizer = build_optimizer(config, model, state["lr"])
            state["epoch"] = epoch + 1
            if not (_all_finite(model.state_dict()) and _all_finite(best_state)):
                last = f"{ckpt_path} (end of epoch {epoch})" if ckpt_path.exists() else "none yet"
                raise NonFiniteLossError(f"non-finite weights at the end of epoch {epoch + 1} (step "
                                         f"{state['step']}); not saved, the last good checkpoint is {last}")
            with guard.critical():
                atomic_torch_save({"model": model.state_dict(), "best_model": best_state, "state": state,
                                   "history": history, "optimizer": optimizer.state_dict(),
                                   "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                                   "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                                   "config": config.to_dict(), "method": method.state_dict()}, ckpt_path)
                write_metrics(out / "metrics.jsonl", history)
            if progress:
                epochs_iter.set_postfix(rec=f"{row['rec']:.2f}", kl=f"{row['kl']:.2f}",
                                        val=f"{val['loss']:.2f}", au=au)

    model.load_state_dict(best_state)
    if not _all_finite(best_state):
        raise NonFiniteLossError(f"{out}: the best weights are not finite; model.pt not written")
    summary = {"config_hash": config.hash(), "epochs": state["epoch"], "steps": state["step"],
               "best_valid_loss": state["best_loss"], "vocab_size": len(corpus.vocab),
               "n_train": len(corpus.train), "device": str(device),
               "corpus_reading": getattr(corpus, "reading", {})}
    with guard.critical():
        atomic_torch_save(best_state, out / "model.pt")
        atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return Run(config, model, corpus, out, history)


# --- loading ------------------------------------------------------------------------------

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
    corpus = corpus_for(config)
    model = make_method(config).build_model(len(corpus.vocab))
    state = load_checkpoint(path / "model.pt")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RunError(f"{path / 'model.pt'}: not a state_dict of weights")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise RunError(f"{path / 'model.pt'}: weights do not match config.json (vocab {len(corpus.vocab)}, "
                       f"emb {config.emb_dim}, hidden {config.hidden_dim}, nz {config.nz}): "
                       f"{state_dict_mismatch(model, state)}") from None
    if not _all_finite(state):
        raise RunError(f"{path / 'model.pt'}: holds non-finite (NaN/Inf) weights")
    model.to(resolve_device(config.device)).eval()
    return Run(config, model, corpus, path, read_metrics(path / "metrics.jsonl"))


# --- the cache ----------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$BNVAE_CACHE`` or ``~/.cache/bnvae/runs`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("BNVAE_CACHE"):
        return Path(os.environ["BNVAE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bnvae" / "runs"


def cached_run(config: TrainConfig, *, root: str | Path | None = None, progress: bool = True) -> Run:
    """Train ``config`` once; later calls with an equal config load the result in seconds.

    The entry is ``root/<model>-<config hash>``. It is trained in a temporary folder and renamed
    into place, so two processes never leave a half-written entry. An entry whose files are
    corrupt or whose config does not hash to its name is discarded and retrained."""
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
            import warnings
            warnings.warn(f"discarding bad cache entry: {err}")
            shutil.rmtree(entry, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        run = train(config, tmp / "run", progress=progress)
        try:
            os.replace(tmp / "run", entry)
        except OSError:  # another process finished the same entry first: use theirs
            return load_run(entry, device=config.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.path = entry
    return run
