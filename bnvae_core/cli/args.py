"""Command-line flags derived from the fields of :class:`~bnvae_core.config.TrainConfig`.

Every config field is a flag (``max_train`` → ``--max-train``) with the help, choices and
default its :func:`~bnvae_core.config.setting` declares, grouped as the fields are; nothing
about a setting is written twice. A config is then built in layers, each over the last:

1. the defaults (:class:`TrainConfig`'s, or a command's own, e.g. ``compare``'s sizes),
2. ``--config FILE`` — a saved ``config.json`` (a run folder's, say),
3. ``--preset NAME`` — the paper's network sizes for a dataset,
4. the flags given on the command line.

Flags are parsed with ``default=SUPPRESS``, so a flag left out never overrides a lower layer.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields

from ..config import GROUPS, TrainConfig
from ..data.hub import PRESETS, REGISTRY
from ..devices import resolve_device
from ..errors import ConfigError
from ..methods import METHODS


def flag_of(name: str) -> str:
    """The command-line flag of a config field: ``max_train`` → ``--max-train``."""
    return "--" + name.replace("_", "-")


def _parser_for(f: dataclasses.Field):
    """``(type, nargs-free kwargs)`` for a field's annotation."""
    kinds = {t.strip() for t in str(f.type).split("|")} - {"None"}
    kind = {"int": int, "float": float, "str": str, "bool": bool}[kinds.pop()]
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    kwargs = {"type": kind}
    if f.metadata["choices"]:
        kwargs["choices"] = f.metadata["choices"]
    return kwargs


def _help(f: dataclasses.Field, default) -> str:
    m = f.metadata
    text = m["help"]
    if m["methods"]:
        text = f"{', '.join(m['methods'])}: {text}"
    if f.name == "model":
        text += f"; one of: {', '.join(METHODS)}"
    shown = "none" if default is None else default
    return f"{text} (default: {shown})".replace("%", "%%")


def preset_sizes() -> dict[str, dict[str, int]]:
    """Preset name → ``{emb_dim, hidden_dim}``: :data:`bnvae_core.data.hub.PRESETS` plus the hub datasets' own."""
    return {**{name: dict(spec.preset) for name, spec in REGISTRY.items() if spec.preset}, **PRESETS}


def add_config_arguments(p: argparse.ArgumentParser, *, exclude: tuple[str, ...] = (),
                         defaults: dict | None = None, config_file: bool = True) -> None:
    """A flag for every config field but ``exclude``, in its group; ``defaults``: this command's
    own defaults (shown in the help, and the lowest layer of :func:`config_from_args`)."""
    base = {**TrainConfig().to_dict(), **(defaults or {})}
    p.set_defaults(_config_defaults=dict(defaults or {}))
    groups = {g: p.add_argument_group(f"{g} (config fields)") for g in GROUPS}
    for f in fields(TrainConfig):
        if f.name in exclude:
            continue
        groups[f.metadata["group"]].add_argument(flag_of(f.name), dest=f.name, default=argparse.SUPPRESS,
                                                 help=_help(f, base[f.name]), **_parser_for(f))
    run = groups["run"]
    if "precision" not in exclude:
        run.add_argument("--bf16", dest="precision", action="store_const", const="bf16", default=argparse.SUPPRESS,
                         help="the same as --precision bf16")
    if config_file:
        run.add_argument("--config", metavar="FILE", default=None,
                         help="start from this saved config.json; flags given here change it")
    if "emb_dim" not in exclude:
        groups["sizes"].add_argument("--preset", choices=sorted(preset_sizes()), default=None,
                                     help="the paper's emb/hidden sizes for a dataset; --emb-dim/--hidden-dim win")


def given_fields(args: argparse.Namespace) -> dict:
    """The config fields given on the command line, ``{name: value}``."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """The config of a command line: defaults < ``--config FILE`` < ``--preset`` < flags < ``overrides``."""
    values = {**TrainConfig().to_dict(), **getattr(args, "_config_defaults", {})}
    if getattr(args, "config", None):
        values.update(TrainConfig.load(args.config).to_dict())
    given = given_fields(args)
    preset = getattr(args, "preset", None)
    if preset:
        values.update({k: v for k, v in preset_sizes()[preset].items() if k not in given})
    values.update(given)
    values.update(overrides)
    try:
        config = TrainConfig(**values)
    except TypeError as err:
        raise ConfigError(str(err)) from None
    resolve_device(config.device)          # a device this machine lacks: one line, before any work
    return config
