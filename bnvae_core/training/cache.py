"""The cache of trained runs: train a config once, load it in seconds after.

An entry is the run folder ``<cache>/<model>-<config hash>-<data digest>`` (:func:`entry_name`):
:meth:`TrainConfig.hash` includes :data:`~bnvae_core.config.TRAINING_MATH_VERSION`, so code that
trains differently never loads an older entry, and the data digest is the sha256 of the data
files (:func:`~bnvae_core.data.hub.data_fingerprint`), so a corpus changed on disk — or a relative
``data`` that means another folder from elsewhere — never gets an entry trained on other text.
The notebooks share their models through it.

An entry is trained in a temporary folder named after its process (``.<entry>.tmp-<host>-<pid>-…``)
and renamed into place, so two processes never leave a half-written entry; the temporary folder of
a process that was killed is removed by the next :func:`cached_run` on that host. A full disk or an
unwritable cache folder is one :class:`~bnvae_core.errors.StorageError` naming the cache folder,
with the cache left as it was.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import warnings
from pathlib import Path

from ..config import TrainConfig
from ..data.hub import data_fingerprint
from ..errors import BnvaeWarning, ConfigError, RunError, StorageError
from ..io import ensure_dir, os_cause, storage_error
from .loop import train
from .run_folder import Run, load_run

_TMP = re.compile(r"^\.(?P<entry>.+)\.tmp-(?P<host>.+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+$")


def cache_dir() -> Path:
    """``$BNVAE_CACHE`` or ``~/.cache/bnvae/runs`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("BNVAE_CACHE"):
        return Path(os.environ["BNVAE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bnvae" / "runs"


def entry_name(config: TrainConfig) -> str:
    """``<model>-<config hash>-<first 8 hex of the data digest>``: the cache entry of ``config``."""
    return f"{config.model}-{config.hash()}-{data_fingerprint(config.data)['digest'][:8]}"


def entry_path(config: TrainConfig, root: str | Path | None = None) -> Path:
    """Where :func:`cached_run` keeps ``config``'s run (whether or not it is there yet)."""
    return (Path(root) if root is not None else cache_dir()) / entry_name(config)


def is_cached(config: TrainConfig, root: str | Path | None = None) -> bool:
    """Whether a finished entry of ``config`` is in the cache (without loading it)."""
    return (entry_path(config, root) / "summary.json").is_file()


def _load_entry(entry: Path, config: TrainConfig) -> Run | None:
    """The entry's run, or None after discarding an entry that is corrupt, unfinished or not this config's."""
    try:
        run = load_run(entry, device=config.device)
        if run.config.hash() != config.hash():
            raise RunError("its config.json does not hash to the entry's name")
        if not (entry / "summary.json").exists():
            raise RunError("unfinished (no summary.json)")
        run.summary()                                  # readable JSON
        return run
    except (RunError, ConfigError) as err:
        reason = str(err).replace(f"{entry}/", "").replace(f"{entry}: ", "")
        warnings.warn(BnvaeWarning(f"discarding bad cache entry {entry}: {reason}; training it again"), stacklevel=3)
        _discard(entry)
        return None


def _discard(entry: Path) -> None:
    """Move ``entry`` out of the way in one rename (a reader never sees half of it), then delete it."""
    gone = entry.with_name(f".{entry.name}.discarded-{os.getpid()}")
    try:
        os.replace(entry, gone)
    except OSError:
        return                                         # already gone, or a read-only cache
    shutil.rmtree(gone, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                                    # exists, owned by someone else
        return True
    return True


def remove_orphans(root: Path) -> list[str]:
    """Remove the temporary folders in ``root`` left by trainings on this host whose process is gone
    (killed: SIGKILL, a crash, a power cut); returns their names, each also a :class:`BnvaeWarning`."""
    host, removed = socket.gethostname(), []
    try:
        names = [p.name for p in root.iterdir() if p.name.startswith(".")]
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m and m["host"] == host and not _alive(int(m["pid"])):
            shutil.rmtree(root / name, ignore_errors=True)
            if not (root / name).exists():
                removed.append(name)
                warnings.warn(BnvaeWarning(f"{root}: removed {name}, left by a training of {m['entry']} "
                                           f"(process {m['pid']}) that was killed"), stacklevel=3)
    return removed


def _cache_root(root: str | Path | None) -> Path:
    """The cache folder, created; a :class:`StorageError` naming it (and ``$BNVAE_CACHE``) when it cannot be."""
    folder = Path(root) if root is not None else cache_dir()
    what = "cache folder" if root is not None else "cache folder ($BNVAE_CACHE)"
    ensure_dir(folder, what)
    return folder


def cached_run(config: TrainConfig, *, root: str | Path | None = None, progress: bool = True,
               callbacks=()) -> Run:
    """Train ``config`` once; later calls with an equal config on the same data load the result in seconds.

    The entry is ``root/<model>-<config hash>-<data digest>`` (:func:`entry_name`).
    ``callbacks`` (:class:`~bnvae_core.training.loop.Callback`) watch the training when there is
    one; a cache hit trains nothing, so they are not called. It is trained
    in a temporary folder and renamed into place, so two processes never leave a half-written
    entry. An entry whose files are corrupt or whose config does not hash to its name is
    discarded and retrained (with a :class:`BnvaeWarning`). A cache folder that cannot be written
    is a :class:`StorageError` naming it; the cache is then left as it was."""
    entry = entry_path(config, root)
    if entry.is_dir():                                 # a hit needs no write access
        run = _load_entry(entry, config)
        if run is not None:
            return run
    root = _cache_root(root)
    remove_orphans(root)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-{socket.gethostname()}-{os.getpid()}-", dir=root))
    except OSError as err:
        raise storage_error(root, err, f"write the cache entry {entry.name}") from None
    try:
        run = train(config, tmp / "run", progress=progress, callbacks=callbacks)
        try:
            os.replace(tmp / "run", entry)
        except OSError:  # another process finished the same entry first: use theirs
            if not (entry / "summary.json").is_file():
                raise
            return load_run(entry, device=config.device)
    except OSError as err:
        if isinstance(err, StorageError) and str(tmp) not in str(err):
            raise                                      # not about the cache (a dataset folder, ...)
        raise StorageError(f"{root}: cannot write the cache entry {entry.name} ({os_cause(err)}); "
                           "nothing was kept, the cache is as it was", err.errno) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.path = entry
    return run
