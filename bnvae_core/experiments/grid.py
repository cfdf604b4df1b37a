"""One grid builder: methods × γ × seeds around a base config (``compare``, ``sweep`` and
``reproduce`` all build their runs here)."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError
from ..methods import check_method_names, method_class


def parse_list(text: str | Sequence, kind=str, what: str = "list") -> list:
    """``'a,b,c'`` (or a sequence) → ``[kind(a), kind(b), kind(c)]``; empty or bad items → :class:`ConfigError`."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(isinstance(s, str) and not s for s in items):
        raise ConfigError(f"--{what}: expected a comma-separated list, got {text!r}")
    try:
        return [kind(s) for s in items]
    except (TypeError, ValueError):
        raise ConfigError(f"--{what}: cannot read {text!r} as a list of {kind.__name__}") from None


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """A count S (seeds 0 … S−1) or the seeds themselves; at least one, none negative."""
    out = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not out or min(out) < 0:
        raise ConfigError(f"need at least one seed >= 0, got {seeds}")
    return out


def grid_configs(base: TrainConfig, methods: Iterable[str], seeds: int | Iterable[int] = 1,
                 gammas: Iterable[float] = (), *, conditional: bool = True) -> list[TrainConfig]:
    """The configs of ``methods`` × (each of ``gammas`` for a method with a BN head, else ``base.gamma``)
    × ``seeds`` around ``base``, in that order, duplicates dropped.

    ``gammas`` empty: ``base.gamma`` only. ``conditional=False``: the dialogue methods (``cvae``,
    ``bn-cvae``) are refused (they have no language-model NLL). Every error (unknown method,
    impossible setting) comes before any training."""
    methods = list(methods)
    if not methods:
        raise ConfigError("no methods given")
    check_method_names(methods, noun="model")
    if not conditional:
        dialogue = [m for m in methods if method_class(m).conditional]
        if dialogue:
            raise ConfigError(f"{', '.join(dialogue)}: conditional (dialogue) models have no language-model "
                              "NLL; compare them with their own notebook")
    gamma_values = [float(g) for g in gammas] or [base.gamma]
    configs, seen = [], set()
    for method in methods:
        cls = method_class(method)
        for gamma in (gamma_values if cls.bn is not None else [base.gamma]):
            for seed in seed_list(seeds):
                config = base.replace(model=method, gamma=gamma, seed=seed)    # validates the fields
                problems = cls.check(config)
                if problems:
                    raise ConfigError(f"{method}: " + "; ".join(problems))
                if config.hash() not in seen:
                    seen.add(config.hash())
                    configs.append(config)
    return configs
