"""Files written whole or not at all, folders claimed by one process, and operating-system errors in words.

Every file the package writes (configs, metrics, checkpoints, caches, tables) goes through
:func:`atomic_write`: the content is written to a temporary name in the same folder, flushed
to disk, then renamed over the target, so a reader (or a run interrupted at any point) sees
the old file or the new one, never half of one.

What the operating system refuses (a full disk, a read-only mount, a parent that is a file, a
name too long) becomes a :class:`~bnvae_core.errors.StorageError` whose one-line message names
the path and the cause (:func:`storage_error`); :func:`check_writable_dir` says so *before* any
work, without creating anything, and :func:`ensure_dir` creates a folder and its parents or
nothing. A folder that one process works in is held with a :class:`FolderLock`.

JSON is written strictly (``NaN``/``Infinity`` become ``null``: :func:`json_safe`), and read
with :func:`read_json`, which turns every way a file can be unreadable into one
:class:`~bnvae_core.errors.RunError` naming it.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import socket
import stat
from pathlib import Path
from typing import IO, Callable

from .errors import FolderInUseError, RunError, StorageError

#: the cause of an OSError in words, by errno (else the system's own text)
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (immutable or protected)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.EIO: "input/output error",
}


def os_cause(err: OSError) -> str:
    """The cause of ``err`` in a few words (``'no space left on device'``)."""
    return _CAUSES.get(err.errno) or (err.strerror or str(err) or type(err).__name__).lower()


def storage_error(path: str | Path, err: OSError, doing: str = "") -> StorageError:
    """``StorageError('PATH: cannot DOING (CAUSE)')`` for an OSError met at ``path``."""
    if isinstance(err, StorageError):
        return err
    what = f"cannot {doing} ({os_cause(err)})" if doing else os_cause(err)
    return StorageError(f"{path}: {what}", err.errno)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    An OSError (a full disk, a read-only folder) is a :class:`StorageError` naming ``path``; the
    temporary file is removed and ``path`` keeps its old content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise storage_error(path, err, "write") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value):
    """``value`` with every non-finite float (NaN, ±Inf) replaced by None, recursively: strict
    JSON parsers reject ``NaN`` and ``Infinity``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_dumps(obj, **kwargs) -> str:
    """Strict JSON text of ``obj``: non-finite numbers as null (what the command line prints)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    """Strict JSON (non-finite numbers written as null, see :func:`json_safe`), atomically."""
    atomic_write_text(path, json_dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj, path: str | Path) -> None:
    """:func:`torch.save` into memory, then written whole (see :func:`atomic_write`): a full disk is
    an OSError naming the file, never torch's ``enforce fail at inline_container.cc``."""
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One strict JSON object per line (``metrics.jsonl``), atomically."""
    atomic_write_text(path, "".join(json_dumps(row) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSON-lines file; a line that is not JSON is a :class:`RunError` naming it."""
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: cannot read ({err})") from None
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except RecursionError:
                raise RunError(f"{path}, line {i}: not JSON (nested too deeply)") from None
            except json.JSONDecodeError:
                raise RunError(f"{path}, line {i}: not JSON") from None
    return rows


def read_json(path: str | Path, what: str = "file", kind: type | None = dict):
    """The JSON value in ``path``; unreadable, not JSON, nested too deeply, or not of type ``kind``:
    a :class:`RunError` naming the file and ``what`` it should be."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise RunError(f"{path}: not a valid {what} (JSON nested too deeply)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from None
    if kind is not None and not isinstance(value, kind):
        raise RunError(f"{path}: not a valid {what} (a JSON {type(value).__name__}, not a {kind.__name__})")
    return value


# --- folders -------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> tuple[Path, os.stat_result]:
    """The nearest part of ``path`` (itself included) that exists, with its stat."""
    p = path
    while True:
        try:
            return p, os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            if p.parent == p:
                raise
            p = p.parent
        except OSError as err:
            raise storage_error(p, err, "use this path") from None


def check_writable_dir(path: str | Path, what: str = "output folder") -> None:
    """:class:`StorageError` unless ``path`` is a writable folder or could be created as one; names
    the part at fault (a file in the way, a read-only or immutable folder, a name too long).
    Creates nothing: call it before any work."""
    path = Path(path)
    anchor, st = _existing_ancestor(path)
    if not stat.S_ISDIR(st.st_mode):
        if anchor == path:
            raise StorageError(f"{path}: exists and is not a folder ({what})", errno.ENOTDIR)
        raise StorageError(f"{anchor}: is a file, not a folder (in the path of the {what} {path})", errno.ENOTDIR)
    if not os.access(anchor, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(anchor).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
        cause = "read-only file system" if read_only else "permission denied (not writable, or immutable)"
        where = "" if anchor == path else f" (needed for the {what} {path})"
        raise StorageError(f"{anchor}: not writable: {cause}{where}", errno.EROFS if read_only else errno.EACCES)
    try:
        limit = os.pathconf(anchor, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    for part in path.relative_to(anchor).parts if anchor != path else ():
        if len(os.fsencode(part)) > limit:
            raise StorageError(f"{path}: file name too long ({len(os.fsencode(part))} bytes in one name; "
                               f"at most {limit} here)", errno.ENAMETOOLONG)


def ensure_dir(path: str | Path, what: str = "folder") -> list[Path]:
    """Create ``path`` and its missing parents; returns the folders created, outermost first
    (empty when it existed). A :class:`StorageError` naming the path and the cause otherwise, and
    then no folder created here is left behind."""
    path = Path(path)
    check_writable_dir(path, what)
    missing, p = [], path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            created.append(d)
    except OSError as err:
        remove_empty_dirs(created)
        raise storage_error(path, err, f"create the {what}") from None
    return created


def remove_empty_dirs(dirs: list[Path]) -> None:
    """``rmdir`` each of ``dirs``, innermost first, where it is empty (never anything else)."""
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def owner_tag() -> str:
    """``'process PID on HOST'``: who holds a lock or a temporary folder."""
    return f"process {os.getpid()} on {socket.gethostname()}"


class FolderLock:
    """An exclusive hold on a folder while one process works in it: ``FOLDER/.lock``, locked with
    ``flock`` (the kernel drops it when the process dies, even by SIGKILL: no stale locks) and
    holding ``'process PID on HOST'``. A second holder gets :class:`FolderInUseError` at once
    naming the first. Released (and the file removed) by :meth:`release`. Where ``fcntl`` does not
    exist (Windows) it does nothing."""

    NAME = ".lock"

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:
            return self
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise storage_error(self.folder, err, f"lock the {self.what}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise FolderInUseError(f"{self.folder}: in use by {owner} (a {self.what}); wait until it "
                                       "has finished, or use another folder") from None
            except OSError:          # a file system without flock: work without the lock
                os.close(fd)
                return self
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:              # not a lock file its last holder removed while we waited
                self.fd = fd
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, (owner_tag() + "\n").encode(), 0)
                except OSError:      # a full disk: the lock holds without the note
                    pass
                return self
            os.close(fd)
        raise StorageError(f"{self.path}: cannot lock the {self.what} (the lock file keeps being replaced)")

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


class OutputFolder:
    """A command's output folder (``compare --out``, ``sweep --out``, ...) for as long as the command
    runs: checked before any work (:func:`check_writable_dir`), created with its parents, held with a
    :class:`FolderLock` (a second command writing there stops at once), and removed again — with
    the parents it created — if the command ends with nothing written in it."""

    def __init__(self, path: str | Path, what: str = "output folder"):
        self.path, self.what = Path(path), what
        check_writable_dir(self.path, what)
        self.created: list[Path] = []
        self.lock = FolderLock(self.path, f"{what} being written")

    def __enter__(self) -> "OutputFolder":
        self.created = ensure_dir(self.path, self.what)
        try:
            self.lock.acquire()
        except BaseException:
            remove_empty_dirs(self.created)
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.lock.release()
        remove_empty_dirs(self.created)
        return False
