"""Portability: any CPU (with or without bf16 kernels), a wheel install, no side effects on
import, the version, and a training cache that never serves a model trained by older math."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools

import bnvae_core
from bnvae_core import devices as precision
from bnvae_core.cli.main import main
from bnvae_core.config import TRAINING_MATH_VERSION, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).with_name("golden_training.json")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


# --- bf16: used where the kernels exist, refused in one line where they do not ----------------

@pytest.fixture
def no_bf16(monkeypatch):
    """This machine as one without bf16 kernels (BNVAE_NO_BF16, honoured by bnvae_core.precision)."""
    monkeypatch.setenv("BNVAE_NO_BF16", "1")
    yield


def test_bf16_refused_in_one_line_without_kernels(no_bf16, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "wordnet", "--max-train", "100", "--max-eval", "20", "--epochs", "1",
                 "--emb-dim", "8", "--hidden-dim", "8", "--bf16", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --bf16 cannot run on cpu") and "fp32" in err
    assert not out.exists() or not any(out.iterdir()), "nothing half-written"


def test_bf16_reason_names_the_missing_cpu_features(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("BNVAE_NO_BF16", raising=False)
    monkeypatch.setattr(precision, "_probe_bf16_lstm", lambda device: "could not create a primitive "
                        "descriptor for the LSTM forward propagation primitive. Run workload with ...")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
    precision._bf16_reason_cached.cache_clear()
    try:
        reason = precision.bf16_unavailable_reason("cpu")
    finally:
        precision._bf16_reason_cached.cache_clear()
    assert "avx512f" in reason and "avx512_bf16 or amx_bf16" in reason
    assert "ONEDNN_VERBOSE" not in reason and "\n" not in reason


def test_bf16_refused_where_onednn_has_no_bf16_lstm(tmp_path):
    """A real oneDNN failure, not a mock: ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN behave as on a CPU
    without AVX-512 (x86-64-v3), where its bf16 LSTM primitive does not exist. Exit 2, one line."""
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("ONEDNN_MAX_CPU_ISA=AVX2 emulates an x86-64 CPU without AVX-512")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bnvae_core", "train", "--data", "wordnet", "--max-train", "100",
                           "--epochs", "1", "--emb-dim", "8", "--hidden-dim", "8", "--bf16", "--out", str(out),
                           "--no-progress"], env=_env(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "no bf16 LSTM kernels" in proc.stderr and "AVX2" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_fp32_runs_where_bf16_is_unavailable(no_bf16, tmp_path):
    from bnvae_core.training.loop import train
    run = train(TrainConfig(model="bnvae", max_train=100, max_eval=20, epochs=1, emb_dim=8, hidden_dim=8,
                            device="cpu"), tmp_path / "run", progress=False)
    assert run.history_rows[-1]["split"] == "valid"


# --- import, version, thread policy ----------------------------------------------------------

def test_import_changes_nothing_in_the_environment():
    code = "import os, json; before = dict(os.environ); import bnvae_core; print(json.dumps(dict(os.environ) == before))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "true"
    code = "import sys, bnvae_core; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "import bnvae_core must stay light (and leave OpenMP alone)"


@pytest.mark.parametrize("given, shown", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
                                          ({"GOMP_SPINCOUNT": "50000"}, "spin count 50000")])
def test_version_and_the_command_line_thread_policy(given, shown):
    """The command line asks for passive OpenMP waiting before torch loads, unless the user chose
    a policy or a spin count (bnvae_core.threads); --version says which is in effect."""
    out = subprocess.run([sys.executable, "-m", "bnvae_core", "--version"], env=_env(**given),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(f"bnvae_core {bnvae_core.__version__} (torch ")
    assert out.stdout.strip().endswith(f"OpenMP wait policy {shown})")


def test_prefer_passive_wait_is_a_pure_choice():
    from bnvae_core.threads import prefer_passive_wait
    assert prefer_passive_wait({}) == "PASSIVE"
    assert prefer_passive_wait({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
    env = {"GOMP_SPINCOUNT": "10"}
    assert prefer_passive_wait(env) is None and env == {"GOMP_SPINCOUNT": "10"}


# --- packaging -------------------------------------------------------------------------------

def test_every_package_is_shipped():
    """pyproject lists its packages by hand (the notebooks are mapped in): none may be missing."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(setuptools.find_packages(str(ROOT), include=["bnvae_core*"]))
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"


def test_declared_test_and_notebook_dependencies_are_used():
    import tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    sources = "\n".join(p.read_text(encoding="utf-8") for p in
                        [*ROOT.glob("bnvae_core/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("notebooks/*.ipynb")])
    import re
    for extra in ("notebooks", "test"):
        for requirement in extras[extra]:
            name = re.split(r"[<>=\[ ]", requirement)[0]
            module = {"jupyterlab": "jupyterlab", "ipykernel": "python3"}.get(name, name.replace("-", "_"))
            assert module in sources, f"{extra} extra declares {name}, which nothing uses"


@pytest.mark.slow
def test_wheel_trains_and_regenerates_figures_from_an_unrelated_folder(tmp_path):
    """``pip install .`` (not editable): the wheel carries the corpus and the notebooks, trains from
    any folder, and ``figures`` writes into ./figures-smoke there, never into site-packages."""
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel, = wheels.glob("bnvae_core-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=600)
    env = _env(PYTHONPATH=str(site), BNVAE_CACHE=str(tmp_path / "cache"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "bnvae_core", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=900)
    where = subprocess.run([sys.executable, "-c", "import bnvae_core; print(bnvae_core.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site)), where
    trained = cli("train", "--data", "wordnet", "--max-train", "200", "--max-eval", "40", "--epochs", "1",
                  "--emb-dim", "16", "--hidden-dim", "16", "--out", "runs/wheel", "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["epochs"] == 1 and (elsewhere / "runs/wheel/model.pt").is_file()
    figures = cli("figures", "--smoke", "--only", "00_index")
    assert figures.returncode == 0, figures.stderr
    assert (elsewhere / "figures-smoke" / "notebook_times.csv").is_file()
    assert not (site / "figures").exists() and not (site / "figures-smoke").exists()


# --- the training cache is versioned by the training math ------------------------------------

def test_training_math_version_is_part_of_the_cache_name(monkeypatch):
    from bnvae_core import config as config_module
    before = TrainConfig().hash()
    monkeypatch.setattr(config_module, "TRAINING_MATH_VERSION", TRAINING_MATH_VERSION + 1)
    assert TrainConfig().hash() != before


def _golden_numbers() -> dict:
    """Two tiny deterministic trainings (VAE, BN-VAE), 1 epoch on 200 glosses: their logged numbers."""
    import tempfile

    import torch

    from bnvae_core.training.loop import train
    numbers = {}
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
        for model in ("vae", "bnvae"):
            config = TrainConfig(model=model, max_train=200, max_eval=50, max_tokens=20, max_vocab=500,
                                 emb_dim=16, hidden_dim=16, epochs=2, warmup_epochs=1, device="cpu", seed=3)
            run = train(config, Path(tmp) / model, progress=False)
            numbers[model] = {f"{r['split']}_{k}_{r['epoch']}": r[k] for r in run.history_rows
                              for k in ("rec", "kl")}
    return numbers


def test_training_math_matches_its_version():
    """If this fails, a change moved what training produces: bump config.TRAINING_MATH_VERSION (so
    cached runs of older code are never served) and re-record: python tests/test_portability.py"""
    golden = json.loads(GOLDEN.read_text())
    assert golden["training_math_version"] == TRAINING_MATH_VERSION, \
        "TRAINING_MATH_VERSION was bumped: re-record tests/golden_training.json (python tests/test_portability.py)"
    numbers = _golden_numbers()
    for model, values in golden["numbers"].items():
        for key, expected in values.items():
            assert numbers[model][key] == pytest.approx(expected, rel=2e-3, abs=2e-3), \
                (f"{model} {key}: {numbers[model][key]} vs golden {expected}: the training math changed; "
                 "bump TRAINING_MATH_VERSION and re-record")


if __name__ == "__main__":     # re-record the golden numbers after bumping TRAINING_MATH_VERSION
    GOLDEN.write_text(json.dumps({"training_math_version": TRAINING_MATH_VERSION,
                                  "numbers": _golden_numbers()}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
