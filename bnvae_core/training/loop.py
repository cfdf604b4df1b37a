"""Training: the :class:`Trainer`, its epoch, and the learning-rate schedule.

The trainer knows nothing of the model: the method (:mod:`bnvae_core.methods`) builds it,
gives the batches, the KL weight, the loss (and any extra optimizer work, e.g. aggressive
training's inner loop), the validation row and the method-specific columns. The trainer only
runs epochs of :meth:`Trainer.train_batch` — forward under the config's precision, the
non-finite policy, :func:`~bnvae_core.training.step.update` — then validates, applies the
lr schedule and, when it has a :class:`~bnvae_core.training.run_folder.RunFolder`, checkpoints.

The schedule is the paper's (Zhu et al. 2020 §5, after He et al. 2019), as the authors' code
runs it: SGD lr 1.0, gradient norm clipped at 5, KL weight linear from ``kl_start`` to 1 over
``warmup_epochs`` epochs (per step), and from epoch 16 on, after 5 epochs without improvement,
the lr is halved and the best weights reloaded, stopping right after the 5th decay:
:class:`LrPlateau`.

Callbacks (:class:`Callback`) see the run from outside without changing it: the lagging-encoder
diagnostic takes its snapshots from ``on_step``, the benchmarks time :meth:`Trainer.train_batch`.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data.corpus import Corpus, bucket_batches
from ..devices import allocation_errors, autocast_context, check_precision, resolve_device
from ..errors import NonFiniteLossError, RunError
from ..methods import make_method
from ..methods.base import LossTerms, TrainContext
from .run_folder import InterruptGuard, Run, RunFolder, reading_config, state_dict_mismatch
from .step import all_finite, build_optimizer, update


@dataclass
class TrainState:
    """The plain-number state of a run (saved in every checkpoint as ``state``)."""
    lr: float
    epoch: int = 0               #: epochs completed
    step: int = 0                #: optimizer steps taken
    best_loss: float = math.inf  #: best validation loss so far (selects the weights kept)
    plateau_loss: float = math.inf  #: best validation loss since the last decay (the lr schedule's)
    not_improved: int = 0        #: epochs above ``plateau_loss`` since it was last reset
    n_decays: int = 0
    stopped: bool = False


class LrPlateau:
    """The learning-rate schedule of the BN-VAE reference code (valdersoul/bn-vae
    ``text_anneal_fb.py``, the end-of-epoch block; He et al.'s ``text.py`` is the same with
    ``decay_epoch = 2``):

    * an epoch is *not improved* when its validation loss is **greater** than the best loss since
      the last decay (ties reset the count); the best weights are kept separately, on the global best;
    * after ``lr_patience`` (5) not-improved epochs, and only once ``epoch ≥ lr_decay_after``
      (15, 0-based: never in the first 15 epochs), the lr is multiplied by ``lr_decay`` (½), the
      best weights are reloaded, the optimizer rebuilt, and the comparison restarts from the loss
      of the decay epoch;
    * training stops right after the ``max_lr_decays``-th (5th) decay.

    Where this differs from the reference, on purpose: the rebuilt optimizer is of the configured
    kind (the reference always rebuilds SGD; the same for ``--optimizer sgd``), and
    ``max_lr_decays = 0`` means "never decay" (the reference would stop after one epoch)."""

    def __init__(self, config: TrainConfig):
        self.patience, self.decay = config.lr_patience, config.lr_decay
        self.max_decays, self.decay_after = config.max_lr_decays, config.lr_decay_after

    def after_validation(self, state: TrainState, epoch: int, val_loss: float) -> tuple[bool, bool]:
        """Update ``state`` after the validation of 0-based ``epoch``; returns (new best weights?,
        decay now: reload the best weights and rebuild the optimizer?). Sets ``state.stopped``."""
        best = val_loss < state.best_loss
        if best:
            state.best_loss = val_loss
        if not val_loss > state.plateau_loss:
            state.plateau_loss, state.not_improved = val_loss, 0
            return best, False
        state.not_improved += 1
        if self.max_decays == 0 or state.not_improved < self.patience or epoch < self.decay_after:
            return best, False
        state.plateau_loss, state.not_improved = val_loss, 0
        state.lr *= self.decay
        state.n_decays += 1
        state.stopped = state.n_decays >= self.max_decays
        return best, True


class Callback:
    """Hooks to watch a run (all optional)."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_step(self, trainer: "Trainer", batch, terms: LossTerms, kl_weight: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", train_row: dict, valid_row: dict) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None:
        """After the last epoch, with the weights as trained (the best ones are loaded after)."""


class EpochStats:
    """Sums over an epoch's training batches → the train row (per-sentence means, AU of the
    posterior means, the smallest batch KL and how far it stays above the batch's exact floor)."""

    def __init__(self, nz: int, device: torch.device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)    # loss, rec, kl (sentence sums)
        self.mu_sum = torch.zeros(nz, dtype=torch.float64, device=device)
        self.mu_sq = torch.zeros_like(self.mu_sum)
        self.batch_kl, self.floor_gaps = [], []
        self.n_sent = self.n_tok = self.skipped = 0

    @torch.no_grad()
    def add(self, terms: LossTerms, kl_weight: float, n_tokens: int) -> None:
        self.sums += torch.stack([(terms.rec + kl_weight * terms.kl).sum(), terms.rec.sum(), terms.kl.sum()]).double()
        kl_mean = terms.kl.mean()
        self.batch_kl.append(kl_mean)
        mu = terms.extra.get("mu")
        if mu is not None:
            self.mu_sum += mu.double().sum(0)
            self.mu_sq += mu.double().pow(2).sum(0)
        if "kl_floor" in terms.extra:
            self.floor_gaps.append(kl_mean - terms.extra["kl_floor"])
        self.n_sent += len(terms.rec)
        self.n_tok += n_tokens

    def row(self) -> dict:
        n, (loss, rec, kl) = self.n_sent, self.sums.cpu().tolist()
        mu_var = (self.mu_sq / n - (self.mu_sum / n) ** 2).cpu()
        row = {"loss": loss / n, "rec": rec / n, "kl": kl / n, "au": int((mu_var > 0.01).sum())}
        row["kl_batch_min"] = float(torch.stack(self.batch_kl).min()) if self.batch_kl else None
        return row


class Trainer:
    """One training run of ``config``: model, method, optimizer, state and history (in memory).

    :meth:`fit` runs it, with or without a run folder. Seeded: the same config gives the same
    numbers (on the CPU), and resuming from a checkpoint gives those of an uninterrupted run."""

    def __init__(self, config: TrainConfig, corpus: Corpus | None = None, *, callbacks=()):
        config.validate()
        self.config, self.method = config, make_method(config)
        self.device = resolve_device(config.device)
        check_precision(config.precision, self.device)   # --bf16 without bf16 kernels: one clear error
        self.corpus = corpus if corpus is not None else self.method.load_corpus()
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        sizes = f"a {config.model} model of emb {config.emb_dim}, hidden {config.hidden_dim}, nz {config.nz}"
        with allocation_errors(sizes):
            self.model = self.method.build_model(len(self.corpus.vocab)).to(self.device)
        self.state = TrainState(lr=config.lr)
        self.history: list[dict] = []
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.optimizer = build_optimizer(config, self.model, config.lr)
        self.schedule = LrPlateau(config)
        self.callbacks = list(callbacks)
        self.folder: RunFolder | None = None
        self.ctx = TrainContext(config, self.model, self.corpus, self.device, get_optimizer=lambda: self.optimizer,
                                make_optimizer=lambda: build_optimizer(config, self.model, self.state.lr),
                                update=self._update, state=self.state.__dict__)
        self.steps_per_epoch = len(bucket_batches(self.corpus.train, config.batch_size, drop_singletons=True))

    # --- one batch ---------------------------------------------------------------------------
    def _update(self, loss: torch.Tensor, optimizer=None, only: str | None = None) -> bool:
        """``ctx.update``: :func:`update` with this run's model, optimizer and clipping."""
        opt = optimizer if optimizer is not None else self.optimizer
        return bool(torch.isfinite(update(self.model, opt, loss, self.config.clip_grad, only)))

    def kl_weight(self, step: int | None = None) -> float:
        """The method's KL weight at ``step`` (default: the current one)."""
        return self.method.kl_weight(self.state.step if step is None else step, self.steps_per_epoch)

    def train_batch(self, batch, kl_weight: float) -> LossTerms | None:
        """The training step of one batch: ``method.train_step`` under the config's precision, then
        :func:`update`. A non-finite loss or gradient norm raises :class:`NonFiniteLossError`
        (``on_nonfinite='stop'``) or skips the batch (``'skip'``: returns None)."""
        with autocast_context(self.config, self.device):
            terms = self.method.train_step(self.ctx, batch, kl_weight)
        if not torch.isfinite(terms.loss):
            return self._non_finite("loss", float(terms.loss.detach()))
        norm = update(self.model, self.optimizer, terms.loss, self.config.clip_grad)
        if not torch.isfinite(norm):
            return self._non_finite("gradient norm", float(norm))
        self.state.step += 1
        if self.state.step == 1 or self.state.step % self.config.log_every == 0:
            self.history.append(self._step_row(terms, kl_weight))
        return terms

    def _step_row(self, terms: LossTerms, kl_weight: float) -> dict:
        """A ``split: 'step'`` row of ``metrics.jsonl``: this batch's mean KL and reconstruction
        (nats per sentence), the KL weight it was trained with and the lr (what collapse looks
        like inside an epoch)."""
        kl, rec = torch.stack([terms.kl.detach().mean(), terms.rec.detach().mean()]).tolist()
        return {"split": "step", "epoch": self.state.epoch + 1, "step": self.state.step, "kl": kl, "rec": rec,
                "kl_weight": kl_weight, "lr": self.state.lr}

    def _non_finite(self, what: str, value: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.on_nonfinite == "skip":
            return None
        last = self.folder.last_good(self.state.epoch) if self.folder else "none (no run folder)"
        raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {self.state.epoch + 1}, step "
                                 f"{self.state.step + 1}; training stopped, the last good checkpoint is {last}")

    # --- one epoch ---------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict:
        """Train one epoch (shuffled length buckets, seeded by (seed, epoch)); returns its train row."""
        t0 = time.perf_counter()
        self.model.train()
        self.ctx.epoch = epoch
        self.method.before_epoch(self.ctx)      # e.g. pretrain-fb's autoencoder phase (timed with epoch 1)
        self.model.train()
        stats = EpochStats(self.model.nz, self.device)
        train = self.corpus.train
        for index in bucket_batches(train, self.config.batch_size, shuffle=True, seed=self.config.seed,
                                    epoch=epoch, drop_singletons=True):
            batch = self.method.make_batch(train, index).to(self.device)
            w = self.kl_weight()
            terms = self.train_batch(batch, w)
            if terms is None:
                stats.skipped += 1
                continue
            stats.add(terms, w, batch.n_tokens)
            for cb in self.callbacks:
                cb.on_step(self, batch, terms, w)
        elapsed = time.perf_counter() - t0
        if stats.n_sent == 0:
            raise NonFiniteLossError(f"every batch of epoch {epoch + 1} had a non-finite loss")
        means = stats.row()
        row = {"epoch": epoch + 1, "split": "train", "loss": means["loss"], "rec": means["rec"], "kl": means["kl"],
               "au": means["au"], "kl_weight": self.kl_weight(), "lr": self.state.lr, "step": self.state.step,
               "n_sentences": stats.n_sent, "kl_batch_min": means["kl_batch_min"], "time_s": elapsed,
               "tokens_per_s": stats.n_tok / elapsed, "skipped_batches": stats.skipped}
        row.update(self.method.epoch_columns(self.model))
        if stats.floor_gaps:
            row["kl_minus_batch_bound_min"] = float(torch.stack(stats.floor_gaps).min())
        return row

    def validate(self, epoch: int) -> dict:
        """The valid row of ``epoch`` (the method's metrics, then the lr)."""
        val = self.method.validation_row(self.model, self.corpus, self.config.seed)
        return {"epoch": epoch + 1, "split": "valid", **val, "lr": self.state.lr}

    def end_epoch(self, epoch: int, train_row: dict, valid_row: dict) -> None:
        """The method's after-epoch hook, the history, the lr schedule, and the finite-weights check."""
        self.method.after_epoch(self.ctx, train_row, valid_row)      # e.g. aggressive's MI stop rule
        self.history += [train_row, valid_row]
        best, decay = self.schedule.after_validation(self.state, epoch, self.method.selection_loss(valid_row))
        if best:
            self.best_state = copy.deepcopy(self.model.state_dict())
        if decay:
            self.model.load_state_dict(self.best_state)
            self.optimizer = build_optimizer(self.config, self.model, self.state.lr)
        self.state.epoch = epoch + 1
        if not (all_finite(self.model.state_dict()) and all_finite(self.best_state)):
            last = self.folder.last_good(epoch) if self.folder else "none (no run folder)"
            raise NonFiniteLossError(f"non-finite weights at the end of epoch {epoch + 1} (step "
                                     f"{self.state.step}); not saved, the last good checkpoint is {last}")

    # --- the run -----------------------------------------------------------------------------
    def fit(self, folder: RunFolder | None = None, *, progress: bool = False,
            guard: InterruptGuard | None = None) -> Run:
        """Train until ``config.epochs`` epochs are done (or the schedule stops); with a ``folder``,
        checkpoint after every epoch and finish it with ``model.pt`` and ``summary.json``."""
        self.folder, guard = folder, guard or InterruptGuard()
        epochs = range(self.state.epoch, self.config.epochs)
        if progress:
            from tqdm.auto import tqdm
            epochs = tqdm(epochs, desc=f"{self.config.model} training", unit="epoch",
                          initial=self.state.epoch, total=self.config.epochs)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        with guard:  # Ctrl-C / SIGTERM → KeyboardInterrupt, held back while a checkpoint is written
            for epoch in epochs:
                if self.state.stopped:
                    break
                train_row = self.run_epoch(epoch)
                valid_row = self.validate(epoch)
                self.end_epoch(epoch, train_row, valid_row)
                if folder is not None:
                    with guard.critical():
                        folder.save(self.checkpoint(), self.history)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, train_row, valid_row)
                if progress:
                    epochs.set_postfix(rec=f"{train_row['rec']:.2f}", kl=f"{train_row['kl']:.2f}",
                                       val=f"{valid_row['loss']:.2f}", au=valid_row.get("au"))
        return self._finish(folder, guard)

    def _finish(self, folder: RunFolder | None, guard: InterruptGuard) -> Run:
        for cb in self.callbacks:          # the model as trained, before the best weights come back
            cb.on_fit_end(self)
        self.model.load_state_dict(self.best_state)
        if not math.isfinite(self.state.best_loss):
            where, kept = (f"{folder.path}: ", "; model.pt not written") if folder is not None else ("", "")
            raise NonFiniteLossError(f"{where}no epoch had a finite validation loss (every one was NaN or "
                                     f"infinite): the weights are as untrained{kept}")
        if folder is not None:
            if not all_finite(self.best_state):
                raise NonFiniteLossError(f"{folder.path}: the best weights are not finite; model.pt not written")
            summary = {"config_hash": self.config.hash(), "epochs": self.state.epoch, "steps": self.state.step,
                       "best_valid_loss": self.state.best_loss, "vocab_size": len(self.corpus.vocab),
                       "n_train": len(self.corpus.train), "device": str(self.device),
                       "corpus_reading": getattr(self.corpus, "reading", {})}
            with guard.critical():
                folder.finish(self.best_state, summary)
        return Run(self.config, self.model, self.corpus, folder.path if folder else None, self.history)

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Everything :meth:`load_checkpoint` needs to continue exactly where this run is."""
        return {"model": self.model.state_dict(), "best_model": self.best_state, "state": asdict(self.state),
                "history": self.history, "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
                "config": self.config.to_dict(), "method": self.method.state_dict()}

    def load_checkpoint(self, ck: dict, path: Path) -> None:
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError:
            raise_mismatch(path, self.model, ck["model"])
        self.best_state, self.history = ck["best_model"], ck["history"]
        self.state = TrainState(**ck["state"])
        self.ctx.state = self.state.__dict__
        torch.set_rng_state(ck["torch_rng"])
        random.setstate(ck["python_rng"])
        if self.device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"])
        self.optimizer = build_optimizer(self.config, self.model, self.state.lr)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.method.load_state_dict(ck.get("method", {}))


def raise_mismatch(path: Path, model: torch.nn.Module, state: dict):
    raise RunError(f"{path}: weights do not match the config: {state_dict_mismatch(model, state)}") from None


def train(config: TrainConfig, out_dir: str | Path | None, *, resume: bool = False, progress: bool = True,
          corpus: Corpus | None = None, callbacks=()) -> Run:
    """Train ``config`` into the run folder ``out_dir`` (created; must be empty unless ``resume``),
    or in memory only (``out_dir=None``).

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` until ``config.epochs`` epochs in
    total (a folder interrupted before its first checkpoint starts over); with the same seed the
    result equals an uninterrupted run (on CPU): weights, best weights, optimizer, lr schedule,
    warm-up step and RNG states come from the checkpoint, the data order from (seed, epoch).

    The folder is held by this process from the start (:meth:`RunFolder.working`): a second
    training or resume of it stops at once, and a training that fails before its first checkpoint
    removes what it wrote. Ctrl-C / SIGTERM raise :class:`KeyboardInterrupt` and leave the last
    complete epoch (checkpoint.pt and metrics.jsonl agree). A non-finite loss or gradient raises
    :class:`NonFiniteLossError` (``on_nonfinite='stop'``) or skips the batch (``'skip'``);
    non-finite weights are never saved."""
    if out_dir is None:
        with InterruptGuard() as guard:
            return Trainer(config, corpus, callbacks=callbacks).fit(None, progress=progress, guard=guard)
    folder = RunFolder(out_dir)
    with InterruptGuard() as guard, folder.working(resume):      # held by this process, before any work
        if resume:
            folder.read_record()
            if corpus is None:                 # the run's own data, from wherever this runs
                corpus = make_method(reading_config(config, folder.record)).load_corpus()
        trainer = Trainer(config, corpus, callbacks=callbacks)
        if resume:
            ck = folder.resume_checkpoint(config, guard)
            folder.check_corpus(trainer.corpus)
            if ck is not None:
                trainer.load_checkpoint(ck, folder.checkpoint_path)
                with guard.critical():
                    folder.write_history(trainer.history)   # consistent with the checkpoint
        else:
            with guard.critical():
                folder.create(config, trainer.corpus)
        return trainer.fit(folder, progress=progress, guard=guard)


def corpus_for(config: TrainConfig) -> Corpus:
    """The corpus ``config`` trains on (the method's: :meth:`~bnvae_core.methods.base.Method.load_corpus`)."""
    return make_method(config).load_corpus()
