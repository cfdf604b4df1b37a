"""Files written whole or not at all, and JSON-lines history files.

Every file the package writes (configs, metrics, checkpoints, caches, tables) goes through
:func:`atomic_write`: the content is written to a temporary name in the same folder, flushed
to disk, then renamed over the target, so a reader (or a run interrupted at any point) sees
the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Callable

from .errors import RunError


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    """Strict JSON (non-finite numbers written as null, see :func:`json_safe`), atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n")


def atomic_torch_save(obj, path: str | Path) -> None:
    """:func:`torch.save` to a temporary name, then rename (see :func:`atomic_write`)."""
    import torch
    atomic_write(path, lambda fh: torch.save(obj, fh))


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line (``metrics.jsonl``), atomically."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


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
            except (json.JSONDecodeError, RecursionError):
                raise RunError(f"{path}, line {i}: not JSON") from None
    return rows
