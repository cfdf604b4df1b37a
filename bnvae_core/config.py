"""The run configuration: one dataclass with defaults, round-tripped through JSON.

Defaults are the *teaching size* (built-in corpus, 2 CPU cores, minutes); the paper's
optimisation settings (SGD lr 1.0, clip 5, batch 32, dropout 0.5 in/out, 10 warm-up epochs,
lr halved after 5 epochs without improvement at most 5 times) are the defaults too.
Presets with the paper's per-dataset sizes live in :mod:`bnvae_core.hub`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, fields
from pathlib import Path

MODELS = ("vae", "bnvae")  # extended by objectives.register_method

#: Version of the training math: bump it whenever a change to the model, the objectives, the
#: training loop or the data pipeline changes what a config trains into. It is part of
#: :meth:`TrainConfig.hash`, the name of a cached run, so a notebook never loads a model that
#: older code trained. ``tests/test_portability.py`` trains two tiny models and compares them
#: with ``tests/golden_training.json``: when the numbers move, bump this and re-record.
TRAINING_MATH_VERSION = 2


@dataclass
class TrainConfig:
    # --- method -------------------------------------------------------------------------
    model: str = "bnvae"          #: name of the method (see objectives.METHODS)
    gamma: float = 0.6            #: BN-VAE: fixed BN scale γ of μ (bound n·γ²/2 nats)
    # --- method settings: each used only by its method (see objectives.py) ------------------
    beta: float = 0.5             #: beta: KL weight β (multiplies the warm-up weight)
    cycles: int = 4               #: cyclical: number of cycles M over the run (Fu et al. 2019)
    cycle_ratio: float = 0.5      #: cyclical: fraction R of each cycle with a rising weight
    cycle_shape: str = "linear"   #: cyclical: 'linear', 'sigmoid' or 'cosine'
    target_kl: float | None = None  #: fb, pretrain-fb: λ nats per sentence; fb-dim: per dimension (None: 5, 8, 0.25)
    fb_scope: str = "sentence"    #: fb: max(KL_i, λ) per 'sentence', or max(mean_i KL_i, λ) per 'batch'
    delta: float = 0.15           #: delta: committed rate δ, KL ≥ δ nats per dimension
    kappa: float = 13.0           #: vmf: fixed concentration κ of the vMF posterior
    aggressive_check_every: int = 15  #: aggressive: inner-loop loss window (encoder updates)
    aggressive_max_steps: int = 100   #: aggressive: at most this many encoder updates per batch
    pretrain_epochs: int = 4      #: pretrain-fb: autoencoder epochs before the decoder reset
    duvae_dropout: float = 0.5    #: duvae: dropout probability on the posterior variance σ²
    bow_loss: bool = False        #: cvae, bn-cvae: add the bag-of-words loss (Zhao et al. 2017)
    max_context: int = 10         #: cvae, bn-cvae: keep the last this-many context utterances
    # --- data -----------------------------------------------------------------------------
    data: str = "wordnet"         #: 'wordnet' or a corpus directory
    max_tokens: int | None = 30   #: drop longer sentences
    max_train: int | None = 8000  #: seeded subset of train (None: all)
    max_eval: int | None = 1000   #: seeded subset of valid/test (None: all)
    min_freq: int = 2
    max_vocab: int | None = 6000
    # --- sizes ----------------------------------------------------------------------------
    emb_dim: int = 128
    hidden_dim: int = 256
    nz: int = 32
    dropout_in: float = 0.5
    dropout_out: float = 0.5
    # --- optimisation (paper's reference settings) -----------------------------------------
    epochs: int = 12
    warmup_epochs: int = 10       #: linear KL weight kl_start → 1 over this many epochs (0: none)
    kl_start: float = 0.0
    batch_size: int = 32
    optimizer: str = "sgd"        #: 'sgd' (paper) or 'adam'
    lr: float = 1.0
    momentum: float = 0.0
    clip_grad: float = 5.0
    lr_patience: int = 5          #: epochs without valid improvement before halving lr
    lr_decay: float = 0.5
    max_lr_decays: int = 5        #: stop after this many decays
    init_range: float = 0.01      #: uniform init of weights (embeddings: init_emb_range)
    init_emb_range: float = 0.1
    init_scheme: str = "he"       #: 'he': all weights ±init_range (He et al. 2019); 'bnvae': encoder at PyTorch's default init (BN-VAE's code)
    # --- run ------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"          #: 'auto' (CUDA when available), 'cpu', 'cuda'
    on_nonfinite: str = "stop"    #: 'stop' or 'skip' a batch whose loss is NaN/Inf
    precision: str = "fp32"       #: 'fp32', or 'bf16': autocast matmuls/LSTMs to bfloat16 (CPU and CUDA; losses stay fp32)

    def __post_init__(self):
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)
        for f in fields(self):       # numpy scalars (from sweeps) → plain int/float, so JSON works
            value = getattr(self, f.name)
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
                setattr(self, f.name, int(value) if isinstance(value, numbers.Integral) else float(value))
        self.validate()

    def validate(self) -> None:
        """Clear errors for impossible settings, before any work starts.

        γ = 0 is an error for BN methods (BN-VAE with γ = 0 pins every μ to β: no information
        in μ); for ``vae`` γ is unused. Batch size 1 is an error for BN methods (no batch
        statistics) and allowed for the plain VAE."""
        from .model import uses_bn         # late imports: both import config
        from .objectives import METHODS
        problems = _type_problems(self)
        if problems:                       # comparisons below would fail with a TypeError
            raise ConfigError("; ".join(problems))
        if self.model not in METHODS:
            problems.append(f"unknown model {self.model!r} (choose from: {', '.join(METHODS)})")
        for name in ("gamma", "lr", "kl_start", "momentum", "clip_grad", "lr_decay", "dropout_in",
                     "dropout_out", "init_range", "init_emb_range"):
            if not math.isfinite(getattr(self, name)):
                problems.append(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.gamma < 0:
            problems.append(f"gamma must be >= 0, got {self.gamma}")
        if uses_bn(self) and self.gamma == 0:
            problems.append(f"gamma = 0 for {self.model} pins every μ to β (no information in μ); "
                            "use --model vae for a plain VAE or a gamma > 0")
        for name in ("max_tokens", "max_train", "max_eval", "max_vocab"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (or None: no limit), got {getattr(self, name)}")
        for name in ("dropout_in", "dropout_out"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.kl_start <= 1:
            problems.append(f"kl_start must be in [0, 1], got {self.kl_start}")
        for name in ("warmup_epochs", "seed", "min_freq", "lr_patience", "max_lr_decays"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("nz", "emb_dim", "hidden_dim", "batch_size", "epochs"):
            if getattr(self, name) < 1 and not (name == "epochs" and self.epochs == 0):
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size == 1 and uses_bn(self):
            problems.append("batch_size 1 cannot be batch-normalized during training; use >= 2")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.on_nonfinite not in ("stop", "skip"):
            problems.append(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        if self.init_scheme not in ("he", "bnvae"):
            problems.append(f"init_scheme must be 'he' or 'bnvae', got {self.init_scheme!r}")
        if self.precision not in ("fp32", "bf16"):
            problems.append(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        problems += _method_setting_problems(self)
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
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.to_json() + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config.json; anything unreadable or invalid is a :class:`ConfigError` naming ``path``."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(d).__name__}")
        try:
            return cls.from_dict(d)
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def hash(self) -> str:
        """Short hash of everything that changes the trained model: the fields (``device``
        excluded; the method settings only when they differ from their defaults) and
        :data:`TRAINING_MATH_VERSION`."""
        d = self.to_dict()
        d.pop("device")
        for name, default in _HASH_OMIT_IF_DEFAULT.items():
            if d.get(name) == default:
                d.pop(name)
        d["training_math_version"] = TRAINING_MATH_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """An impossible or unknown setting."""


#: method settings (and ``precision``) left out of :meth:`TrainConfig.hash` while at these (their default) values
_HASH_OMIT_IF_DEFAULT = dict(beta=0.5, cycles=4, cycle_ratio=0.5, cycle_shape="linear", target_kl=None,
                             fb_scope="sentence", delta=0.15, kappa=13.0, aggressive_check_every=15,
                             aggressive_max_steps=100, pretrain_epochs=4, duvae_dropout=0.5,
                             bow_loss=False, max_context=10, precision="fp32", init_scheme="he")


def _method_setting_problems(c: TrainConfig) -> list[str]:
    """Range checks of the per-method settings (checked whatever the method, so a config is
    valid or not independently of which method it is later replaced with)."""
    from .schedules import CYCLE_SHAPES
    problems = []
    for name in ("beta", "cycle_ratio", "delta", "kappa", "duvae_dropout"):
        if not math.isfinite(getattr(c, name)):
            problems.append(f"{name} must be a finite number, got {getattr(c, name)}")
    if c.target_kl is not None and not (math.isfinite(c.target_kl) and c.target_kl >= 0):
        problems.append(f"target_kl must be a finite number >= 0 (or None: the method's default), got {c.target_kl}")
    if c.beta < 0:
        problems.append(f"beta must be >= 0, got {c.beta}")
    if c.cycles < 1:
        problems.append(f"cycles must be >= 1, got {c.cycles}")
    if not 0 < c.cycle_ratio <= 1:
        problems.append(f"cycle_ratio must be in (0, 1], got {c.cycle_ratio}")
    if c.cycle_shape not in CYCLE_SHAPES:
        problems.append(f"cycle_shape must be one of {', '.join(CYCLE_SHAPES)}, got {c.cycle_shape!r}")
    if c.fb_scope not in ("sentence", "batch"):
        problems.append(f"fb_scope must be 'sentence' or 'batch', got {c.fb_scope!r}")
    if c.delta <= 0:
        problems.append(f"delta must be > 0, got {c.delta}")
    if c.kappa <= 0:
        problems.append(f"kappa must be > 0, got {c.kappa}")
    if c.model == "vmf" and c.nz < 2:
        problems.append(f"vmf needs nz >= 2 (a sphere S^(nz-1)), got {c.nz}")
    for name in ("aggressive_check_every", "aggressive_max_steps"):
        if getattr(c, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(c, name)}")
    if c.pretrain_epochs < 0:
        problems.append(f"pretrain_epochs must be >= 0, got {c.pretrain_epochs}")
    if not 0 <= c.duvae_dropout < 1:
        problems.append(f"duvae_dropout must be in [0, 1), got {c.duvae_dropout}")
    if c.max_context < 1:
        problems.append(f"max_context must be >= 1, got {c.max_context}")
    return problems


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


#: overrides that shrink any config to *smoke size* (CI): seconds instead of minutes
SMOKE_SIZE = dict(epochs=2, max_train=600, max_eval=150, emb_dim=32, hidden_dim=64, max_vocab=2000)


def smoke_requested() -> bool:
    """True when ``CI`` or ``BNVAE_SMOKE`` is set (and not '0'/'false'): notebooks then run small."""
    import os
    return any(os.environ.get(v, "").lower() not in ("", "0", "false", "no") for v in ("CI", "BNVAE_SMOKE"))
