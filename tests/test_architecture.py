"""The house rules of ARCHITECTURE.md, checked: one-way imports (function-level ones included),
the library never imports the command line, functions fit on a screen, every config field is a
flag, and a new method is one class registered from outside the package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import TINY

from bnvae_core.cli.main import build_parser
from bnvae_core.config import TrainConfig
from bnvae_core.methods import METHODS, make_method, register_method
from bnvae_core.methods.base import Method
from bnvae_core.training.loop import train

PKG = Path(__file__).resolve().parent.parent / "bnvae_core"

#: the floors, bottom up (ARCHITECTURE.md); a module may import its own floor and the ones below
LAYERS = ["errors", "io", "threads", "config", "devices", "data", "models", "metrics", "methods", "training",
          "analysis", "viz", "experiments", "cli"]
FLOOR = {name: i for i, name in enumerate(LAYERS)}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__"): p for p in PKG.rglob("*.py")}


def _imports(module: str, path: Path) -> set[str]:
    """Package-internal modules imported anywhere in ``path`` (relative imports resolved)."""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
            elif node.module and node.module.startswith("bnvae_core"):
                target = node.module.split(".")[1:]
            else:
                continue
            out.add(".".join(target))
            out.update(".".join(target + [a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("bnvae_core."))
    return {m for m in out if m}


def _floor(module: str) -> int | None:
    return FLOOR.get(module.split(".")[0])


def test_imports_only_go_down():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        here = _floor(module)
        if here is None:                       # __main__, the package's own __init__
            continue
        for target in _imports(module, path):
            there = _floor(target)
            if target in modules and there is not None and there > here:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that go up a floor (ARCHITECTURE.md): " + "; ".join(sorted(wrong))


def test_no_import_circle():
    modules = _modules()
    graph = {m: {t for t in _imports(m, p) if t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                pytest.fail("import circle: " + " → ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2
    for m in graph:
        if m not in state:
            visit(m, [m])


def test_functions_fit_on_a_screen():
    long = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_every_config_field_is_a_train_flag():
    import dataclasses
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    missing = [f.name for f in dataclasses.fields(TrainConfig) if "--" + f.name.replace("_", "-") not in help_text]
    assert not missing


def test_a_new_method_is_one_class_registered_from_outside(tmp_path):
    """A toy baseline, defined here (outside the package): registered, it is a method like any
    other — checked, trained by the standard trainer, its objective the one it declares."""
    calls = []

    class HalfKL(Method):
        name, label = "test-half-kl", "½-KL VAE"

        def objective_kl(self, kl, mu, logvar, model):
            calls.append(1)
            return 0.5 * kl

    assert register_method(HalfKL) is HalfKL and METHODS["test-half-kl"] is HalfKL
    try:
        config = TrainConfig(model="test-half-kl", **{**TINY, "epochs": 1, "max_train": 200, "max_eval": 40,
                                                      "emb_dim": 16, "hidden_dim": 16})
        method = make_method(config)
        assert isinstance(method, HalfKL) and method.settings() == ("warmup_epochs", "kl_start")
        run = train(config, tmp_path / "run", progress=False)
        assert calls and run.epoch_rows[0]["split"] == "train"
        torch.manual_seed(0)
        terms = method.loss(run.model.train(), *_batch(run))
        torch.testing.assert_close(terms.extra["objective_kl"], 0.5 * terms.kl)
    finally:
        METHODS.pop("test-half-kl", None)
    with pytest.raises(TypeError):
        register_method(object)


def _batch(run):
    from bnvae_core.data.corpus import make_batch
    b = make_batch(run.corpus.train, list(range(8)))
    return b.tokens, b.lengths, 1.0
