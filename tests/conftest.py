"""Shared fixtures: small corpora and small trained models, trained once per test session."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("BNVAE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-runs"))

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
