"""How torch's OpenMP threads wait between parallel regions — set where a command starts.

On small, shared CPUs (issue 8, ``bench/README.md``: threads) torch's OpenMP workers
spin-wait between parallel regions by default; when the cores are busy with other jobs, a
2-thread process then waits for a descheduled partner at every op: measured on 2 shared cores,
a training step took 3.7 s spinning vs 34 ms waiting passively. Passive waiting is what a
shared machine needs, at some cost on an idle one.

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch is first imported, so the policy can only be
chosen *before* that: the command line (``python -m bnvae_core``, ``bnvae``) calls
:func:`prefer_passive_wait` first thing, and the notebook kernels that ``figures`` starts
inherit it. ``import bnvae_core`` does not touch the environment. In your own Python or
Jupyter session, set ``OMP_WAIT_POLICY=PASSIVE`` in the environment before starting it if
you want the same. A policy the user chose always wins: ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` (e.g. ``GOMP_SPINCOUNT=50000`` on a machine of one's own) in the
environment leaves everything as it is.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless the user set
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; returns the policy now in ``environ`` (None: the
    OpenMP default). Has no effect on a process that has already imported torch."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        if environ is not os.environ or "torch" not in sys.modules:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return environ.get("OMP_WAIT_POLICY")
