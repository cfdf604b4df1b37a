"""The run configuration: one flat dataclass whose fields declare everything about themselves.

Each field of :class:`TrainConfig` is declared once, with :func:`setting`: its default, a help
text, its group, its allowed range or choices, and which methods use it. From that one
declaration come

* the command-line flags of ``train`` and every command that builds a config
  (:mod:`bnvae_core.cli.args`: ``--gamma``, ``--max-train``, … with help and defaults),
* the checks of :meth:`TrainConfig.validate` (types, finite numbers, ranges, choices), and
* the cache name :meth:`TrainConfig.hash`.

Checks that depend on the method (γ > 0 for BN methods, ``nz ≥ 2`` for vMF, …) belong to the
method (:meth:`bnvae_core.methods.base.Method.check`), which sits above this module.

Defaults are the *teaching size* (built-in corpus, 2 CPU cores, minutes); the paper's
optimisation settings (SGD lr 1.0, clip 5, batch 32, dropout 0.5 in/out, KL warm-up, lr halved
after 5 epochs without improvement at most 5 times) are the defaults too. Presets with the
paper's per-dataset sizes live in :mod:`bnvae_core.data.hub`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError
from .io import atomic_write_text

#: Version of the training math: bump it whenever a change to the model, the objectives, the
#: training loop or the data pipeline changes what a config trains into. It is part of
#: :meth:`TrainConfig.hash`, the name of a cached run, so a notebook never loads a model that
#: older code trained. ``tests/test_portability.py`` trains two tiny models and compares them
#: with ``tests/golden_training.json``: when the numbers move, bump this and re-record.
TRAINING_MATH_VERSION = 3

GROUPS = ("method", "method settings", "data", "sizes", "optimisation", "run")

#: the device names a config may hold (whether the device exists here is
#: :func:`bnvae_core.devices.resolve_device`'s question)
DEVICE_NAMES = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
#: the largest network size a config accepts (the paper's largest is 1024; this keeps an absurd
#: size from reaching the allocator as a 44-line overflow traceback)
MAX_SIZE = 1 << 16


def setting(default, help: str, group: str, *, methods: tuple[str, ...] = (), choices: tuple = (),
            minimum: float | None = None, maximum: float | None = None, above: float | None = None,
            below: float | None = None):
    """A :class:`TrainConfig` field with what the CLI, the checks and the hash need to know.

    ``methods``: the methods that read it (shown in its help; empty: all). ``minimum``/``maximum``
    are inclusive bounds, ``above``/``below`` exclusive ones. A method setting enters the cache name
    only for the methods it names (:meth:`TrainConfig.hash`)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, methods=tuple(methods), choices=tuple(choices), minimum=minimum,
        maximum=maximum, above=above, below=below))


_BN = ("bnvae", "duvae", "bn-cvae")
#: help of the size limits: none means the data's own
_DATA_OWN = "{} (none: the data's own — the teaching size on the built-in corpus, everything otherwise; 0: no limit)"
_CVAE = ("cvae", "bn-cvae")


@dataclass
class TrainConfig:
    # --- method ---------------------------------------------------------------------------
    model: str = setting("bnvae", "the method", "method")
    gamma: float = setting(0.6, "fixed BN scale γ of μ: E[KL] ≥ n·γ²/2 nats on every training batch",
                           "method", methods=_BN, minimum=0)
    # --- method settings: each read only by its methods ---------------------------------------
    beta: float = setting(0.5, "KL weight β: constant, as the reference code (text_beta.py)", "method settings",
                          methods=("beta",), minimum=0)
    beta_warmup: bool = setting(False, "β times the linear KL warm-up weight instead of a constant β",
                                "method settings", methods=("beta",))
    cycles: int = setting(4, "number of cycles M over the run (Fu et al. 2019)", "method settings",
                          methods=("cyclical",), minimum=1)
    cycle_ratio: float = setting(0.5, "fraction R of each cycle with a rising weight", "method settings",
                                 methods=("cyclical",), above=0, maximum=1)
    cycle_shape: str = setting("linear", "shape of the rise", "method settings", methods=("cyclical",),
                               choices=("linear", "sigmoid", "cosine"))
    target_kl: float | None = setting(None, "free nats λ per sentence (fb: 5, pretrain-fb: 8) or per "
                                            "dimension (fb-dim: 0.25); None: the method's default",
                                      "method settings", methods=("fb", "fb-dim", "pretrain-fb"),
                                      minimum=0)
    fb_scope: str = setting("sentence", "max(KL_i, λ) per 'sentence', or max(mean_i KL_i, λ) per 'batch'",
                            "method settings", methods=("fb",), choices=("sentence", "batch"))
    delta: float = setting(0.15, "committed rate δ: KL ≥ δ nats per dimension", "method settings",
                           methods=("delta",), above=0)
    kappa: float = setting(13.0, "fixed concentration κ of the vMF posterior", "method settings",
                           methods=("vmf",), above=0)
    aggressive_check_every: int = setting(15, "inner-loop loss window (encoder updates)", "method settings",
                                          methods=("aggressive",), minimum=1)
    aggressive_max_steps: int = setting(100, "at most this many encoder updates per batch", "method settings",
                                        methods=("aggressive",), minimum=1)
    pretrain_epochs: int = setting(4, "autoencoder epochs before the decoder reset", "method settings",
                                   methods=("pretrain-fb",), minimum=0)
    duvae_dropout: float = setting(0.5, "dropout probability on the posterior variance σ²", "method settings",
                                   methods=("duvae",), minimum=0, below=1)
    bow_loss: bool = setting(False, "add the bag-of-words loss (Zhao et al. 2017)", "method settings",
                             methods=_CVAE)
    max_context: int = setting(10, "keep the last this-many context utterances", "method settings",
                               methods=_CVAE, minimum=1)
    # --- data -----------------------------------------------------------------------------
    data: str = setting("wordnet", "'wordnet' (built in), a dataset name of the hub, or a corpus directory", "data")
    tokenizer: str = setting("auto", "'words' (lowercased words and punctuation), 'whitespace' (the text as "
                                     "it is, <unk> one token: the paper's corpora), or 'auto' (whitespace for "
                                     "the hub's datasets and corpora containing <unk>, else words)", "data",
                             choices=("auto", "words", "whitespace"))
    max_tokens: int | None = setting(None, _DATA_OWN.format("drop sentences longer than this"), "data", minimum=0)
    max_train: int | None = setting(None, _DATA_OWN.format("a seeded subset of this many training sentences"),
                                    "data", minimum=0)
    max_eval: int | None = setting(None, _DATA_OWN.format("a seeded subset of this many valid/test sentences"),
                                   "data", minimum=0)
    min_freq: int | None = setting(None, "keep words seen at least this often in train (none: 2 on the built-in "
                                         "corpus, 1 otherwise)", "data", minimum=1)
    max_vocab: int | None = setting(None, _DATA_OWN.format("at most this many words, specials included"), "data",
                                    minimum=0)
    # --- sizes ----------------------------------------------------------------------------
    emb_dim: int = setting(128, "word embedding size (encoder and decoder)", "sizes", minimum=1, maximum=MAX_SIZE)
    hidden_dim: int = setting(256, "LSTM hidden size (encoder and decoder)", "sizes", minimum=1, maximum=MAX_SIZE)
    nz: int = setting(32, "latent dimensions n", "sizes", minimum=1, maximum=MAX_SIZE)
    dropout_in: float = setting(0.5, "dropout on the decoder's input embeddings", "sizes", minimum=0, below=1)
    dropout_out: float = setting(0.5, "dropout on the decoder's LSTM outputs", "sizes", minimum=0, below=1)
    # --- optimisation (paper's reference settings) -----------------------------------------
    epochs: int = setting(12, "training epochs", "optimisation", minimum=1)
    warmup_epochs: int = setting(10, "KL weight linear from kl_start to 1 over this many epochs (0: none)",
                                 "optimisation", minimum=0)
    kl_start: float = setting(0.0, "KL weight at the first step of the warm-up", "optimisation", minimum=0, maximum=1)
    batch_size: int = setting(32, "sentences per training batch", "optimisation", minimum=1)
    optimizer: str = setting("sgd", "'sgd' (the paper's) or 'adam'", "optimisation", choices=("sgd", "adam"))
    lr: float = setting(1.0, "learning rate", "optimisation", above=0)
    momentum: float = setting(0.0, "SGD momentum", "optimisation", minimum=0)
    clip_grad: float = setting(5.0, "clip the gradient norm at this (≤ 0: no clipping)", "optimisation")
    lr_patience: int = setting(5, "epochs whose validation loss exceeds the best since the last decay "
                                  "before the lr decays", "optimisation", minimum=1)
    lr_decay: float = setting(0.5, "factor of each lr decay", "optimisation", above=0)
    max_lr_decays: int = setting(5, "stop training right after this many decays (0: never decay)",
                                 "optimisation", minimum=0)
    lr_decay_after: int = setting(15, "no lr decay in the first this-many epochs (the reference's load_best_epoch)",
                                  "optimisation", minimum=0)
    init_range: float = setting(0.01, "uniform init ±this of the weights", "optimisation", minimum=0)
    init_emb_range: float = setting(0.1, "uniform init ±this of the embeddings", "optimisation", minimum=0)
    init_scheme: str = setting("bnvae", "'he': every weight ±init_range (He et al. 2019); 'bnvae': the encoder "
                                     "at PyTorch's default init (BN-VAE's code)", "optimisation",
                               choices=("he", "bnvae"))
    # --- run ------------------------------------------------------------------------------
    seed: int = setting(0, "seed of the weights, the data order and every sample", "run", minimum=0)
    log_every: int = setting(50, "log the training batch's KL and reconstruction every this many steps "
                                 "(metrics.jsonl rows with split 'step'; the first step always)", "run", minimum=1)
    device: str = setting("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'", "run")
    on_nonfinite: str = setting("stop", "'stop' or 'skip' a batch whose loss or gradient is NaN/Inf", "run",
                                choices=("stop", "skip"))
    precision: str = setting("fp32", "'fp32', or 'bf16': matrix multiplies and LSTMs in bfloat16 (losses "
                                     "stay fp32) where the device has bf16 kernels", "run",
                             choices=("fp32", "bf16"))

    def __post_init__(self):
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)
        for f in fields(self):       # numpy scalars (from sweeps) → plain int/float, so JSON works
            value = getattr(self, f.name)
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
                setattr(self, f.name, int(value) if isinstance(value, numbers.Integral) else float(value))
        self.validate()

    def validate(self) -> None:
        """:class:`ConfigError` listing every field whose value has the wrong type, is not a finite
        number, or is outside its declared range or choices (see :func:`setting`)."""
        problems = _type_problems(self)
        if problems:                       # comparisons below would fail with a TypeError
            raise ConfigError("; ".join(problems))
        for f in fields(self):
            problems += _range_problems(f, getattr(self, f.name))
        if not DEVICE_NAMES.fullmatch(self.device):
            problems.append(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        if problems:
            raise ConfigError("; ".join(problems))

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temporary file, then rename): never half a config.json."""
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config.json; anything unreadable or invalid is a :class:`ConfigError` naming ``path``."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ConfigError(f"{path}: cannot read config ({type(err).__name__}: {err})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(d).__name__}")
        try:
            return cls.from_dict(d)
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def hash(self) -> str:
        """Short hash of everything that changes the trained model: every field but ``device`` and
        the method settings of other methods (``beta`` does not change a BN-VAE), and
        :data:`TRAINING_MATH_VERSION`."""
        d = self.to_dict()
        d.pop("device")
        for f in fields(self):
            if f.metadata["methods"] and self.model not in f.metadata["methods"]:
                d.pop(f.name)
        d["training_math_version"] = TRAINING_MATH_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def settings_of(method: str) -> tuple[str, ...]:
    """The config fields declared as read by ``method`` (``methods=`` of :func:`setting`)."""
    return tuple(f.name for f in fields(TrainConfig) if method in f.metadata["methods"])


def _type_problems(config: TrainConfig) -> list[str]:
    """Fields whose value does not have the annotated type (``int`` accepts no bool; ``float`` accepts ints)."""
    problems = []
    for f in fields(config):
        value, allowed = getattr(config, f.name), {t.strip() for t in str(f.type).split("|")}
        ok = ((value is None and "None" in allowed)
              or ("bool" in allowed and isinstance(value, bool))
              or ("str" in allowed and isinstance(value, str))
              or ("int" in allowed and isinstance(value, numbers.Integral) and not isinstance(value, bool))
              or ("float" in allowed and isinstance(value, numbers.Real) and not isinstance(value, bool)))
        if not ok:
            problems.append(f"{f.name} must be {' or '.join(sorted(allowed))}, got {value!r}")
    return problems


def _range_problems(f: dataclasses.Field, value) -> list[str]:
    """The declared checks of one field's value (None passes: it means 'no limit' / 'default')."""
    m = f.metadata
    if value is None or isinstance(value, bool):
        return []
    if m["choices"] and value not in m["choices"]:
        return [f"{f.name} must be one of {', '.join(map(str, m['choices']))}, got {value!r}"]
    if not isinstance(value, numbers.Real):
        return []
    if not math.isfinite(value):
        return [f"{f.name} must be a finite number, got {value}"]
    low = ("[", m["minimum"], value >= m["minimum"]) if m["minimum"] is not None else \
        ("(", m["above"], value > m["above"]) if m["above"] is not None else None
    high = (m["maximum"], "]", value <= m["maximum"]) if m["maximum"] is not None else \
        (m["below"], ")", value < m["below"]) if m["below"] is not None else None
    if (low is None or low[2]) and (high is None or high[2]):
        return []
    if low is not None and high is not None:
        return [f"{f.name} must be in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}, got {value}"]
    hint = ""
    if low is not None:
        return [f"{f.name} must be {'>=' if low[0] == '[' else '>'} {low[1]:g}{hint}, got {value}"]
    return [f"{f.name} must be {'<=' if high[1] == ']' else '<'} {high[0]:g}, got {value}"]


#: overrides that shrink any config to *smoke size* (CI): seconds instead of minutes
SMOKE_SIZE = dict(epochs=2, max_train=600, max_eval=150, emb_dim=32, hidden_dim=64, max_vocab=2000, log_every=5)

#: the notebooks' full size for their shared VAE and BN-VAE (notebook 1 trains them; 2, 3, 4 and 5
#: load them from the cache): the teaching size's model (embeddings 128, LSTM 256, n = 32) on 4,000
#: glosses for 8 epochs, the KL weight warmed up over 6 — the VAE still rises and collapses, BN-VAE
#: still does not, and both train in about 80 CPU seconds each (notebook 1's budget, issue 16). The
#: step log every 5 steps (default 50) shows the VAE's KL rise before it collapses.
#: Use ``TrainConfig(model=..., **(SMOKE_SIZE if SMOKE else NOTEBOOK_SIZE))``.
NOTEBOOK_SIZE = dict(max_train=4000, epochs=8, warmup_epochs=6, log_every=5)


def smoke_requested() -> bool:
    """True when ``CI`` or ``BNVAE_SMOKE`` is set (and not '0'/'false'): notebooks then run small."""
    return any(os.environ.get(v, "").lower() not in ("", "0", "false", "no") for v in ("CI", "BNVAE_SMOKE"))
