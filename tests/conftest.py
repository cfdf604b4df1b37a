"""Shared fixtures: small corpora and small trained models, trained once per test session; a real
two-node Ray cluster on this host for the Ray tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("BNVAE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-runs"))
# Ray, for every `ray start` and every driver in this process (set before ray is imported):
# no usage statistics (no network), and no token auth: Ray >= 2.5x turns it on for a head that
# finds ~/.ray/auth_token (which any local ray.init() leaves) but not for the joining node,
# which then hangs (/work/notes/ray.md, pitfall 1).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.devices import bf16_unavailable_reason  # noqa: E402
from bnvae_core.training.loop import train  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``bf16`` need bf16 LSTM kernels: skipped, with the reason, where the CPU has none
    (no AVX-512, e.g. x86-64-v2/v3; or ``BNVAE_NO_BF16=1``; see bnvae_core.precision)."""
    reason = bf16_unavailable_reason("cpu")
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs bf16 kernels (CPU with AVX-512; AVX512-BF16/AMX natively): {reason}")
    for item in items:
        if "bf16" in item.keywords:
            item.add_marker(skip)

#: a model small enough to train in seconds on 2 CPU cores, on 1,500 WordNet glosses
TINY = dict(data="wordnet", max_train=1500, max_eval=300, max_tokens=20, emb_dim=32, hidden_dim=64,
            nz=32, epochs=6, warmup_epochs=0, device="cpu", max_vocab=2000)


@pytest.fixture(scope="session")
def tiny_bnvae(tmp_path_factory):
    """BN-VAE, γ = 0.6, trained 6 epochs, its encoder initialised as in BN-VAE's code (PyTorch's
    defaults, ``init_scheme='bnvae'``). With He et al.'s ±0.01 the pre-BN variances of μ stay near
    ε for a few epochs and the evaluation-mode active units then depend on the CPU's rounding
    (22–32 of 32 with AVX2 vs AVX-512 kernels); with the reference init all 32 on both."""
    return train(TrainConfig(model="bnvae", gamma=0.6, init_scheme="bnvae", **TINY),
                 tmp_path_factory.mktemp("bn") / "run", progress=False)


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory):
    """Plain VAE with the full KL weight from the first step: collapses on a small corpus."""
    return train(TrainConfig(model="vae", **TINY), tmp_path_factory.mktemp("vae") / "run", progress=False)


def write_corpus(root, train="", valid=None, test=None):
    """A corpus directory with the given file contents (valid/test default to train's)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid if valid is not None else train),
                       ("test", test if test is not None else train)):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        (root / f"{name}.txt").write_bytes(data)
    return root


def epoch_rows(rows: list[dict]) -> list[dict]:
    """The per-epoch rows (``split`` train/valid) of a ``metrics.jsonl``, without the step rows."""
    return [r for r in rows if r.get("split") in ("train", "valid")]


# --- a two-node Ray cluster ------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free now (bound together, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _processes_in_sessions(session_ids: set[int]) -> list[int]:
    """Live processes whose session id (field 6 of /proc/PID/stat) is one of ``session_ids``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) in session_ids:
            found.append(int(pid))
    return found


def _stop_sessions(session_ids: set[int]) -> None:
    """SIGKILL what the fixture's ``ray start`` commands left (their daemons and task workers keep
    the session id), and wait until it is gone. Not ``ray stop``: that kills every Ray process on
    the machine, another test's or another user's too, and takes ~7 s."""
    for pid in _processes_in_sessions(session_ids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    while _processes_in_sessions(session_ids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _fatal_log_lines(node_dir: str) -> str:
    """The raylet's fatal lines (``C`` level) in a node's temp dir: why the node did not start."""
    lines = []
    for log in sorted(Path(node_dir).glob("session_2*/logs/raylet*.out")):
        lines += [line[:400] for line in log.read_text(errors="replace").splitlines() if " C " in line[:40]]
    return "\n".join(lines[:5])


def _agent_ports() -> list[str]:
    """A fixed port for the node's runtime-env agent, so that the raylet need not wait for that
    agent's port file too (it still waits for the dashboard agent's, see :func:`_start_node`)."""
    (port,) = _free_ports(1)
    return [f"--runtime-env-agent-port={port}"]


def _start_node(command: list[str], base: str, name: str, sessions: set[int], attempts: int = 3) -> None:
    """``ray start`` one node (``command`` without its temp dir and agent ports), retried: the raylet
    of Ray 2.60 waits a fixed ~15 s for the dashboard agent to write its port file and aborts
    otherwise ("The current node timed out during startup"), which a loaded 2-core machine can
    exceed. A failed attempt's processes are killed (by its session id) before the next."""
    for attempt in range(1, attempts + 1):
        full = [*command, f"--temp-dir={base}/{name}{attempt}", *_agent_ports()]
        process = subprocess.Popen(full, cwd=base, env=dict(os.environ), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=180)    # a missing head makes a node's start hang
        except subprocess.TimeoutExpired:
            output = "ray start did not return within 180 s"
        if process.returncode == 0:
            sessions.add(process.pid)       # start_new_session: the daemons keep this session id
            return
        _stop_sessions({process.pid})
        message = f"ray start ({name}) failed, attempt {attempt} of {attempts}:\n{output[-1500:]}\n" + \
            _fatal_log_lines(f"{base}/{name}{attempt}")
        print(message, file=sys.stderr)
    raise RuntimeError(message)


def _start_cluster(ray_bin: str, base: str, sessions: set[int]) -> str:
    """A head (1 CPU) and a second node (1 CPU, one declared GPU) with temp dirs under ``base``; their
    session ids go into ``sessions``; returns the address once both are alive."""
    (port,) = _free_ports(1)
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    _start_node([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", "--num-gpus=0",
                 *common], base, "h", sessions)
    _start_node([ray_bin, "start", f"--address=127.0.0.1:{port}", "--num-gpus=1", *common], base, "w", sessions)
    _wait_for_nodes(f"127.0.0.1:{port}", 2)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def ray_cluster():
    """The address (``127.0.0.1:PORT``) of a real two-node Ray cluster started for this test session:
    a head with 1 CPU and a second node with 1 CPU and one *declared* GPU (no device: Ray only
    schedules it, so a ``num_gpus`` trial lands there and gets ``CUDA_VISIBLE_DEVICES``, while
    torch, finding no CUDA, trains on the CPU). Each node has its own short temp dir (AF_UNIX
    paths < 108 bytes; one log monitor per node). Yields only the address: each test connects
    (``ray.init(address)``) and disconnects itself. Skipped without ray, unless
    ``BNVAE_REQUIRE_RAY=1`` (CI), where a missing ray fails."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    if ray_bin is None:
        if os.environ.get("BNVAE_REQUIRE_RAY") == "1":
            pytest.fail("BNVAE_REQUIRE_RAY=1 but ray is not installed (pip install 'bnvae-core[ray]')")
        pytest.skip("ray is not installed (the 'ray' extra)")
    sessions: set[int] = set()
    base = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        yield _start_cluster(ray_bin, base, sessions)
    finally:
        _stop_sessions(sessions)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def ray_connected(address: str):
    """``ray`` connected to ``address`` inside the block; after ``ray.shutdown`` the SIGTERM handler
    that ``ray.init`` replaced is restored (tests of the Trainer's interrupt handling check it)."""
    import ray
    previous = signal.getsignal(signal.SIGTERM)
    ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _wait_for_nodes(address: str, count: int, timeout: float = 60) -> None:
    """Connect once and poll ``ray.nodes()`` (not ``ray status``, which lags) until ``count`` are alive."""
    with ray_connected(address) as ray:
        deadline = time.monotonic() + timeout
        while sum(bool(n["Alive"]) for n in ray.nodes()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only some Ray nodes came up: {ray.nodes()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (two processes racing on two cores stay fair); restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
