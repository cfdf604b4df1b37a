"""bnvae_core: posterior collapse in LSTM text VAEs and its fix BN-VAE (Zhu et al., ACL 2020)."""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # Threads on small, shared CPUs (issue 8): torch's OpenMP workers spin-wait between parallel
    # regions by default. When the cores are busy with other jobs, a 2-thread process then waits
    # for a descheduled partner at every op: measured on 2 shared cores, a training step took
    # 3.7 s spinning vs 34 ms waiting passively (1 thread: 30 ms). Passive waiting is what a
    # shared machine needs; it costs some speed on an idle one (2 threads, issue sizes: 4.2k vs
    # 4.7–5.0k tokens/s with a bounded spin; with two busy-loop jobs beside it 2.4k vs 0.2–1.9k
    # spinning; bench/README.md). It only takes effect if set before torch is first imported;
    # OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment wins (GOMP_SPINCOUNT=50000 suits a
    # machine of one's own).
    if "GOMP_SPINCOUNT" not in _os.environ:
        _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
