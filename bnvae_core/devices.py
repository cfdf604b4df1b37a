"""Numeric precision: fp32 everywhere, or bf16 autocast where the hardware has the kernels.

``config.precision == 'bf16'`` runs matrix multiplies and LSTMs under
``torch.autocast(device, bfloat16)``; μ, log σ² and the logits are cast back to fp32, so the
KL, the BN head and the log-softmax stay in full precision (see :mod:`bnvae_core.models.text_vae`).

Not every machine can do that. On the CPU, PyTorch's LSTM under bf16 autocast goes to oneDNN,
which has bf16 LSTM kernels only on cores with AVX-512 (native on AVX512-BF16 or AMX-BF16);
elsewhere (x86-64-v2/v3, most laptops) the first forward fails with *"could not create a
primitive descriptor for the LSTM forward propagation primitive"*. So bf16 is checked once
per device before any work starts (:func:`bf16_unavailable_reason`): a tiny bf16 LSTM forward
and backward is run, and if it fails, ``--bf16`` is refused with one line naming the missing
CPU features (:class:`~bnvae_core.errors.ConfigError`, exit status 2 on the command line) —
never a oneDNN traceback, never a silent fall-back to another precision.

``BNVAE_NO_BF16=1`` in the environment makes this machine behave as one without bf16 kernels
(used by the tests to exercise the refusal on any CPU).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from .config import DEVICE_NAMES
from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")

#: CPU flags (``/proc/cpuinfo``) that oneDNN's bf16 LSTM needs or runs natively on
_BF16_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _probe_bf16_lstm(device: torch.device) -> str | None:
    """Run a 2-step bf16-autocast LSTM forward + backward on ``device``; the error text, or None.

    Leaves the caller's RNG streams and grad mode alone (it may be called inside evaluation)."""
    forked = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked), torch.inference_mode(False), torch.enable_grad():
            lstm = torch.nn.LSTM(8, 8, batch_first=True).to(device)
            x = torch.randn(2, 3, 8, device=device, requires_grad=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out, _ = lstm(x)
                loss = (out.float() @ torch.ones(8, device=device)).sum()
            loss.backward()
    except RuntimeError as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


@functools.lru_cache(maxsize=None)
def _bf16_reason_cached(device_type: str, device_index: int | None, disabled: bool) -> str | None:
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    if disabled:
        return "bf16 disabled by BNVAE_NO_BF16 in the environment"
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16 support"
        failure = _probe_bf16_lstm(device)
        return None if failure is None else f"this GPU cannot run a bf16 LSTM ({failure})"
    if device.type != "cpu":
        return f"bf16 autocast is not supported here on device type {device.type!r}"
    failure = _probe_bf16_lstm(device)
    if failure is None:
        return None
    failure = failure.split(". ")[0].rstrip(".")          # oneDNN appends a hint about ONEDNN_VERBOSE
    return f"this CPU has no bf16 LSTM kernels (oneDNN: {failure}); {_missing_cpu_features(cpu_flags())}"


def _missing_cpu_features(flags: set[str]) -> str:
    """What this CPU lacks for oneDNN's bf16 LSTM, in words (or why it still fails with the flags present)."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if capped:
        return f"oneDNN is limited to {capped} by ONEDNN_MAX_CPU_ISA in the environment"
    if not flags:
        return "they need AVX-512 (avx512f, avx512bw, avx512vl), natively AVX512-BF16 or AMX-BF16"
    missing = [f for f in _BF16_CPU_FLAGS[:3] if f not in flags]
    if not {"avx512_bf16", "amx_bf16"} & flags:
        missing.append("avx512_bf16 or amx_bf16")
    return (f"they need AVX-512 (avx512f, avx512bw, avx512vl), natively AVX512-BF16 or AMX-BF16; "
            f"this CPU lacks {', '.join(missing) if missing else 'none of these, yet the kernel failed'}")


def bf16_unavailable_reason(device: torch.device | str = "cpu") -> str | None:
    """Why bf16 autocast cannot train this project's model on ``device`` (one line), or None if it can.

    Decided once per device and process by a probe (a tiny bf16 LSTM forward and backward),
    so the answer is what the kernels do, not what the flags suggest."""
    device = torch.device(device)
    disabled = os.environ.get("BNVAE_NO_BF16", "").lower() not in ("", "0", "false", "no")
    return _bf16_reason_cached(device.type, device.index, disabled)


def check_precision(precision: str, device: torch.device | str) -> None:
    """:class:`ConfigError` (one line, naming what is missing) when ``precision`` cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        reason = bf16_unavailable_reason(device)
        if reason is not None:
            raise ConfigError(f"--bf16 cannot run on {torch.device(device).type}: {reason}; "
                              "train in fp32 (leave out --bf16)")


def autocast_context(config, device: torch.device | str):
    """``torch.autocast(device, bfloat16)`` when ``config.precision == 'bf16'``, else a no-op.

    Under it, matrix multiplies and LSTMs run in bfloat16 (CPU: oneDNN, fast on cores with
    AVX512-BF16 or AMX; CUDA: tensor cores); μ, log σ² and the logits are cast back to fp32,
    so the KL, the BN head and the log-softmax stay in full precision. Raises
    :class:`ConfigError` when the device has no bf16 kernels (:func:`check_precision`)."""
    precision = getattr(config, "precision", "fp32")
    if precision != "bf16":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; any other name must exist on this machine
    (:class:`ConfigError` in one line otherwise: an unknown name, no CUDA, no such GPU, no MPS)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not DEVICE_NAMES.fullmatch(name):
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            raise ConfigError(f"device {name!r} requested but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device 'mps' requested but MPS (an Apple GPU) is not available here")
    return torch.device(name)


@contextlib.contextmanager
def allocation_errors(what: str):
    """Turn the allocator's refusal while building ``what`` (out of memory, a size that overflows)
    into one :class:`ConfigError` line instead of a traceback with C++ frames."""
    try:
        yield
    except (RuntimeError, MemoryError, OverflowError, TypeError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, (MemoryError, OverflowError)) or any(
                key in text for key in ("allocate", "out of memory", "Overflow", "overflow")):
            raise ConfigError(f"{what}: does not fit in memory ({text[:200]}); choose smaller sizes") from None
        raise
