"""Every error a user can cause and fix, in one place.

Each is a :class:`BnvaeError`; the command line prints its message as one line
``error: ...`` on stderr and exits with status 2 (no traceback). Messages name the file (and
line) or the setting at fault and what to do.
"""
from __future__ import annotations

from pathlib import Path


class BnvaeError(Exception):
    """Base of the errors a user can fix (bad input, settings, folders, datasets)."""


class ConfigError(BnvaeError, ValueError):
    """An impossible or unknown setting."""


class CorpusError(BnvaeError, ValueError):
    """A corpus file could not be read; the message names the file and (if known) the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


class DatasetUnavailableError(BnvaeError, RuntimeError):
    """The hub cannot provide a dataset; the message says how to provide it by hand."""


class DownloadError(DatasetUnavailableError):
    """A download failed (network, HTTP error, truncated transfer, checksum mismatch).

    The message names the URL, the reason, and the exact path at which a copy fetched by
    hand is expected, so that the user can place it there and call again. No corrupt file
    is ever left at that path."""

    def __init__(self, url: str, dest: str | Path, reason: str, sha256: str | None = None,
                 partial: str | Path | None = None, hint: str | None = None, what: str | None = None):
        lines = [f"could not download {what or url}: {reason}",
                 "To provide the file by hand, download it yourself and save it exactly as:",
                 f"    {dest}",
                 f"(expected sha256: {sha256})" if sha256 else
                 "(no checksum is pinned for it: the published file is accepted as it is)"]
        if partial is not None:
            lines.append(f"The part received so far is kept at {partial}; calling again resumes it.")
        if hint:
            lines.append(hint)
        lines.append("Then run the same command again.")
        super().__init__("\n".join(lines))
        self.url, self.dest, self.reason = url, str(dest), reason


class ArchiveError(DatasetUnavailableError):
    """An archive is unreadable, unsafe (absolute paths, ``..``, links, devices), or lacks a file."""


class UnknownDatasetError(BnvaeError, KeyError, ValueError):
    """A dataset name that is neither built in, registered, in the hub, nor an existing directory.

    Both a :class:`KeyError` (a failed look-up) and a :class:`ValueError` (a bad argument)."""

    def __str__(self) -> str:          # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


class RayUnavailableError(ConfigError):
    """``--ray`` was asked for but the optional ``ray`` package is not installed."""


class ClusterError(BnvaeError, RuntimeError):
    """A Ray cluster cannot run the sweep as asked: no node has the resources a trial requests
    (e.g. ``--gpus-per-trial`` on a cluster without GPUs, where Ray would leave the trials pending
    forever), or a folder the trials write (the cache root) is not visible from every node."""


class NonFiniteLossError(BnvaeError, RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RunError(BnvaeError, RuntimeError):
    """A run folder is missing, incomplete, corrupt, or does not match the requested config."""


class FolderInUseError(RunError):
    """Another process holds the folder (a training, a resume, a ``compare`` writing its outputs)."""


class StorageError(BnvaeError, OSError):
    """The operating system refused a read or write (no space left, read-only, permission, a path
    that cannot exist). The message names the path and the cause in words; also an :class:`OSError`
    (``errno`` set), so code that tolerates an unwritable cache keeps doing so."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class BnvaeWarning(UserWarning):
    """Something the user should know that does not stop the work (the command line prints it as
    one line ``warning: ...``)."""


class CommandInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM, with the one line the command line prints: what was kept, what to run next."""
