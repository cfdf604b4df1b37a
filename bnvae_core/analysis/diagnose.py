"""A collapse report card for any trained text VAE: :func:`diagnose` → :class:`Report`.

One call measures, on N sentences of one split (a seeded subset; ``sentences``), everything that
tells a collapsed model from a working one. Notation: x_1 … x_N the sentences, q_n = q(z|x_n)
the posterior of sentence n (μ_n, σ_n² for a Gaussian), p(z) the prior, nz the latent size,
everything in nats. The model is in evaluation mode (BN-VAE's BN uses its running statistics).

* **Per-dimension KL** (``per_dim``, one row per dimension j): ``kl`` = (1/N) Σ_n KL(q_n,j ‖ p_j),
  for a Gaussian ½(μ² + σ² − log σ² − 1) (``model.posterior.kl_per_dim``); NaN for a vMF
  posterior, whose density does not factorise over dimensions (its KL is a constant). ``kl`` of
  the report is the total, (1/N) Σ_n KL(q_n ‖ p). For a BN model the report keeps γ and the
  nominal bound n γ²/2 (γ²/2 per dimension; Zhu et al. 2020 §3.2 — a bound on training batches).
* **Active units** (``au``, :func:`bnvae_core.metrics.text.active_units`): dimensions with
  Var_n(E_q[z_j|x_n]) > 0.01 (the variance is ``per_dim.var_mean``).
* **Mutual information** (``mi``, :func:`bnvae_core.metrics.text.mutual_information`): with one
  draw z_n ~ q_n per sentence and L_nm = log q(z_n|x_m) (an N × N matrix),
  ``I = (1/N) Σ_n [L_nn − log q̄(z_n)]``, q̄(z) = (1/N) Σ_m q(z|x_m) the aggregate posterior of
  the N sentences. Every term is ≤ log N (the m = n summand alone gives q̄(z_n) ≥ q(z_n|x_n)/N),
  so ``mi_ceiling`` = log N bounds the estimate, whatever the model.
  **Bootstrap** (``mi_low, mi_high``: a percentile interval at ``level``, ``bootstrap`` replicates):
  a replicate resamples N sentences with replacement, c_m times sentence m, and recomputes the
  whole estimator on that data set — the outer mean *and* the aggregate posterior,
  q̄ᵇ(z) = (1/N) Σ_m c_m q(z|x_m): Iᵇ = (1/N) Σ_n c_n [L_nn − log q̄ᵇ(z_n)]. The draws z_n and the
  matrix L are those of the point estimate, so a replicate costs one log-sum-exp over the ≈ 0.63N
  distinct sentences it holds (O(B · 0.4 N²), about a second for N = 1,000, B = 200), not a new
  pass over the encoder. A sentence drawn c times has c copies of its own posterior in q̄ᵇ, which
  lowers its ceiling to log N − log c: near the ceiling the replicates sit below the point
  estimate — one more reason for the ceiling warning. The interval covers the choice of
  sentences and the draws z_n; not the randomness of training.
  **Warnings**: when I > log N − ``mi_margin`` (default log 2: on average the other N − 1
  posteriors add less density at z_n than the sentence's own — the posteriors barely overlap and
  the estimate measures N, not the model; the true MI may be larger: use more sentences), and
  when I < 0 (the true MI is ≥ 0: the estimate is noise around 0).
* **Decoding gap** (``decoding``, one row per code): the reconstruction NLL
  ``rec(code) = (1/N) Σ_n −log p(x_n | z_n)`` with z_n a draw from q_n (``posterior sample``), the
  posterior mean E_q[z|x_n] (``posterior mean``; for a vMF its mean direction μ_n, the mode: the
  mean A(κ)μ_n lies inside the sphere, off the decoder's support), the prior mean ``z = 0``
  (not for vMF: off the sphere) and an independent draw from the prior (``prior sample``);
  ``per_token`` divides by the mean number of predicted tokens (words + ``</s>``).
  ``decoding_gap = rec(prior sample) − rec(posterior sample)``: what a code from the sentence's
  own posterior is worth to the decoder over a code that knows nothing of it. A collapsed model
  (q_n ≈ p, a decoder that ignores z) has gap ≈ 0. ``decoding_gap_se``: the standard error of the
  mean of the N paired per-sentence differences.
* **Different z, same sentence** (``decodings``, ``samples``): greedy decodings (``model.generate``,
  at most ``max_len`` words) of ``n_decode`` prior draws and of the posterior means of ``n_decode``
  sentences; ``fraction_distinct`` = distinct sentences / n (1/n: every code gives the same
  sentence), with the most common decoding and its count; the row ``data`` is the same count for
  the input sentences themselves (the reference).
* **Holes** (``holes``, one row per sentence / prior draw; Rosca et al. 2018, He et al. 2019):
  log p(z) at the posterior means μ_n beside log p(z) at N prior draws z'_k. For N(0, I) prior
  draws log p concentrates near −nz/2 (log 2π + 1); posterior means far above it sit near the
  origin (μ ≈ 0: collapse), far below it in the prior's tails. ``typical_fraction``: the share of
  posterior means whose log p lies within the central 95 % of the prior draws' (NaN for vMF: the
  uniform prior density is constant). Then the aggregate posterior at both kinds of points:
  log q̄₋ₙ(z_n) (leave-one-out, q̄₋ₙ = 1/(N−1) Σ_{m≠n} q_m, so a sentence's own posterior does not
  flatter it) at the codes the encoder produces, and log q̄(z'_k) at the prior draws.
  ``hole_fraction``: the share of prior draws where q̄ is thinner than at 95 % of the encoder's
  codes (below their 5 % quantile): ≈ 0.05 when q̄ ≈ p; more means prior samples fall into
  regions the decoder was never trained on.
  **KL(q̄ ‖ p)** (``kl_aggregate``): the Monte Carlo estimate (1/N) Σ_n [log q̄(z_n) − log p(z_n)]
  with the same draws z_n ~ q_n (a stratified sample of q̄) and the same matrix L; it is exact in
  expectation for the N-sentence mixture q̄, and ``kl ≈ mi + kl_aggregate`` (Hoffman & Johnson 2016:
  E_n KL(q_n ‖ p) = I + KL(q̄ ‖ p); equal in expectation). As an estimate of the *population*
  aggregate posterior it is biased **upward**: N components make a spikier mixture than the
  population's, and since I ≤ log N, KL(q̄ ‖ p) ≳ kl − log N whenever the posteriors do not
  overlap. Its interval is bootstrapped with the MI's replicates.

``verdict``: ``'no latent'`` (the LSTM-LM), ``'collapsed'`` when the MI interval lies below
:data:`COLLAPSE_MI` nats (the code tells less than that about the sentence), else
``'informative'``. ``lm`` has no latent variable: KL = AU = MI = gap = 0 by construction, the rest
NaN or empty, and a warning says so. ``cvae``/``bn-cvae`` are refused (:class:`ConfigError`):
their prior p(z|c) is learned per context, so the prior-based views do not apply as defined here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.corpus import EncodedSplit, Vocab, iterate_batches
from ..errors import ConfigError
from ..io import json_safe
from ..methods import make_method
from ..metrics.text import active_units, eval_mode, mutual_information, posterior_params
from ..models.layers import nominal_kl_bound
from ..training.run_folder import Run, load_run

#: defaults of :func:`diagnose`
DEFAULT_SENTENCES, DEFAULT_DECODE, DEFAULT_BOOTSTRAP = 1000, 50, 200
#: the MI warning fires within this many nats of log N (log 2: others' density < one's own)
MI_MARGIN = math.log(2.0)
#: nats: a model whose MI interval lies below this is reported as collapsed
COLLAPSE_MI = 0.1
#: the prior draws below this quantile of the encoder codes' log q̄ count as holes
HOLE_QUANTILE = 0.05
#: the rows of ``Report.decoding``, in order
CODES = ("posterior sample", "posterior mean", "z = 0", "prior sample")
#: the DataFrame fields of :class:`Report`
TABLES = ("per_dim", "decoding", "decodings", "samples", "holes")
NAN = float("nan")


@dataclass
class Report:
    """The numbers of a collapse report card (see the module docstring for each definition).

    Scalars in nats (per sentence) unless said otherwise; ``warnings`` are whole sentences.
    Tables: ``per_dim`` (nz rows: ``dim, kl, var_mean, active``), ``decoding`` (one row per code:
    ``code, rec, per_token``), ``decodings`` (``source, n, distinct, fraction_distinct,
    most_common, most_common_count``), ``samples`` (``source, i, text``: the decoded sentences),
    ``holes`` (N rows: ``log_p_posterior_mean, log_p_prior_sample, log_qagg_posterior_sample,
    log_qagg_prior_sample``). :meth:`to_json` is strict JSON (NaN → null); :meth:`from_json`
    reads it back."""
    model: str
    label: str
    run_dir: str | None
    split: str
    n_sentences: int
    split_sentences: int
    seed: int
    nz: int
    posterior: str
    gamma: float | None = None
    kl_reference: float | None = None
    kl: float = NAN
    au: int = 0
    au_threshold: float = 0.01
    mi: float = NAN
    mi_low: float = NAN
    mi_high: float = NAN
    mi_level: float = 0.95
    mi_bootstrap: int = 0
    mi_ceiling: float = NAN
    kl_aggregate: float = NAN
    kl_aggregate_low: float = NAN
    kl_aggregate_high: float = NAN
    decoding_gap: float = NAN
    decoding_gap_se: float = NAN
    distinct_prior: float = NAN
    distinct_posterior: float = NAN
    typical_fraction: float = NAN
    hole_fraction: float = NAN
    verdict: str = ""
    warnings: list[str] = field(default_factory=list)
    wall_s: float = NAN
    per_dim: pd.DataFrame = field(default_factory=pd.DataFrame)
    decoding: pd.DataFrame = field(default_factory=pd.DataFrame)
    decodings: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    holes: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def headline(self) -> str:
        """One line: ``'bnvae on test (120 sentences): KL 5.1, AU 32/32, MI 3.9 [3.7, 4.1] (ceiling 4.8), …'``."""
        if self.nz == 0:
            return f"{self.model} on {self.split} ({self.n_sentences} sentences): no latent variable"
        return (f"{self.model} on {self.split} ({self.n_sentences} sentences): {self.verdict}; KL {self.kl:.2f} nats, "
                f"AU {self.au}/{self.nz}, MI {self.mi:.2f} [{self.mi_low:.2f}, {self.mi_high:.2f}] nats "
                f"(ceiling log N = {self.mi_ceiling:.2f}), decoding gap {self.decoding_gap:.2f} nats, "
                f"{self.distinct_prior:.0%} distinct decodings of prior samples")

    def summary(self) -> dict:
        """The scalars and warnings (no tables), strict-JSON-ready (non-finite → None)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in TABLES}
        out["warnings"] = list(self.warnings)
        out["headline"] = self.headline
        return json_safe(out)

    def to_dict(self) -> dict:
        """:meth:`summary` plus every table as ``{"columns": [...], "data": [[row], ...]}``."""
        out = self.summary()
        out.pop("headline")
        out["tables"] = {name: _table_to_dict(getattr(self, name)) for name in TABLES}
        return json_safe(out)

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON (``allow_nan=False``: no ``NaN``/``Infinity`` tokens, they are ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        """The report :meth:`to_dict` wrote (null numbers read back as NaN)."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names and k not in TABLES}
        for k, v in kwargs.items():
            if v is None and names[k].default is not None and isinstance(names[k].default, float):
                kwargs[k] = NAN
        tables = data.get("tables", {})
        kwargs.update({name: _table_from_dict(tables.get(name)) for name in TABLES})
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        return cls.from_dict(json.loads(text))


def _py(value):
    """A numpy scalar as the Python number (or bool, or str) it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _table_to_dict(df: pd.DataFrame) -> dict:
    columns = [str(c) for c in df.columns]
    cols = [[_py(v) for v in df[c].tolist()] for c in df.columns]
    return {"columns": columns, "data": [list(row) for row in zip(*cols)]}


def _table_from_dict(table: dict | None) -> pd.DataFrame:
    if not table:
        return pd.DataFrame()
    df = pd.DataFrame(table["data"], columns=table["columns"])
    for c in df.columns:                  # a float column with nulls reads back as float (NaN)
        if df[c].dtype == object and df[c].map(lambda v: v is None or isinstance(v, (int, float))).all() \
                and not df[c].map(lambda v: isinstance(v, bool)).any():
            df[c] = df[c].astype(float)
    return df


# --- the entry point ---------------------------------------------------------------------------

def diagnose(run: Run | str | Path, split: str = "test", sentences: int | None = DEFAULT_SENTENCES, seed: int = 0,
             *, n_decode: int = DEFAULT_DECODE, bootstrap: int = DEFAULT_BOOTSTRAP, level: float = 0.95,
             mi_margin: float = MI_MARGIN, max_len: int = 30, device: str | None = None) -> Report:
    """The collapse report card of ``run`` (a :class:`~bnvae_core.training.run_folder.Run` or a
    finished run folder) on ``sentences`` sentences of ``split`` (a seeded subset; None or 0: all).

    ``n_decode``: codes decoded greedily per source (prior draws, posterior means); ``bootstrap``:
    replicates of the MI interval at ``level``; ``mi_margin``: nats below log N where the ceiling
    warning starts; ``device``: where to load a run folder (default: its own). Every number is in
    the module docstring. :class:`ConfigError` for a conditional model, an unknown split or
    settings out of range; :class:`~bnvae_core.errors.RunError` for a folder that is not a run."""
    start = time.perf_counter()
    _check_settings(sentences, n_decode, bootstrap, level, mi_margin, max_len)
    run = _resolve_run(run, device)
    data = _subset(run, split, sentences, seed)
    report = _blank_report(run, split, data, seed, level, bootstrap)
    if run.model.nz == 0:
        _fill_no_latent(report, run.model, data)
    else:
        _fill_latent(report, run, data, seed, n_decode=n_decode, bootstrap=bootstrap, level=level,
                     max_len=max_len)
    report.warnings += mi_warnings(report.mi, report.n_sentences, mi_margin) if run.model.nz else []
    report.warnings += _bn_warning(report)
    report.verdict = verdict(report)
    report.wall_s = time.perf_counter() - start
    return report


def _check_settings(sentences, n_decode, bootstrap, level, mi_margin, max_len) -> None:
    if sentences is not None and sentences < 0:
        raise ConfigError(f"diagnose: sentences must be >= 0 (0 or None: all), got {sentences}")
    if sentences is not None and 0 < sentences < 2:
        raise ConfigError("diagnose: sentences must be >= 2 (the aggregate posterior needs several)")
    if n_decode < 1 or max_len < 1:
        raise ConfigError(f"diagnose: n_decode and max_len must be >= 1, got {n_decode} and {max_len}")
    if bootstrap < 1:
        raise ConfigError(f"diagnose: bootstrap must be >= 1, got {bootstrap}")
    if not 0 < level < 1:
        raise ConfigError(f"diagnose: level must be in (0, 1), got {level}")
    if not mi_margin >= 0:
        raise ConfigError(f"diagnose: mi_margin must be >= 0 nats, got {mi_margin}")


def _resolve_run(run: Run | str | Path, device: str | None) -> Run:
    """``run`` loaded if it is a folder; a conditional model refused in one sentence."""
    if isinstance(run, (str, Path)):
        run = load_run(run, device=device)
    if make_method(run.config).conditional:
        raise ConfigError(f"diagnose: {run.config.model!r} is a conditional model (prior p(z|c) learned per "
                          "context): the report card's prior-based views assume a fixed prior p(z); use "
                          "'evaluate' (KL, AU to p(z|c)) and notebook 06 for cvae/bn-cvae")
    return run


def _subset(run: Run, split: str, sentences: int | None, seed: int) -> EncodedSplit:
    """The split's sentences, or a seeded subset of ``sentences`` of them in random order (the
    first ``n_decode`` are then a random sample too)."""
    if split not in run.corpus.splits:
        raise ConfigError(f"diagnose: no split {split!r} (choose from: {', '.join(run.corpus.splits)})")
    data = run.corpus.splits[split]
    if len(data) < 2:
        raise ConfigError(f"diagnose: split {split!r} has {len(data)} sentence(s); the report needs at least 2")
    n = len(data) if not sentences else min(sentences, len(data))
    return data.subset(np.random.default_rng(seed).permutation(len(data))[:n])


def _blank_report(run: Run, split: str, data: EncodedSplit, seed: int, level: float, bootstrap: int) -> Report:
    model = run.model
    head = getattr(model, "bn_head", None)
    gamma = float(f"{float(head.gamma):.7g}") if head is not None else None      # γ as given, not its float32
    return Report(model=run.config.model, label=make_method(run.config).label,
                  run_dir=str(run.path) if run.path else None, split=split, n_sentences=len(data),
                  split_sentences=len(run.corpus.splits[split]), seed=seed, nz=model.nz,
                  posterior=model.posterior.kind if model.nz else "none", gamma=gamma,
                  kl_reference=float(nominal_kl_bound(gamma, model.nz)) if gamma is not None else None,
                  mi_level=level, mi_bootstrap=bootstrap, mi_ceiling=math.log(len(data)))


def _fill_no_latent(report: Report, model, data: EncodedSplit) -> None:
    """The LSTM-LM: KL = AU = MI = 0 and the gap 0 by construction (p(x|z) = p(x)); nothing to decode."""
    nll = _decoder_nll(model, data, None).mean()
    report.kl = report.mi = report.mi_low = report.mi_high = report.decoding_gap = report.decoding_gap_se = 0.0
    report.au = 0
    report.decoding = pd.DataFrame({"code": ["no latent (exact −log p(x))"], "rec": [float(nll)],
                                    "per_token": [float(nll) * len(data) / data.n_tokens]})
    report.warnings.append(f"The {report.label} has no latent variable: KL, active units, MI and the decoding gap "
                           "are 0 by construction, and there is no code to decode or prior to compare with.")


def _fill_latent(report: Report, run: Run, data: EncodedSplit, seed: int, *, n_decode: int, bootstrap: int,
                 level: float, max_len: int) -> None:
    """Every measurement of a model with a latent variable, into ``report``."""
    model, post = run.model, run.model.posterior
    mu, logvar = (torch.from_numpy(a).double() for a in posterior_params(model, data))
    report.kl, report.per_dim = _kl_table(model, data, mu, logvar, report.au_threshold)
    report.au = int(report.per_dim["active"].sum())
    report.mi = mutual_information(model, data, seed=seed)
    z_post = post.sample(mu, logvar, generator=torch.Generator().manual_seed(seed))     # as mutual_information
    z_prior = post.sample_prior(len(data), model.nz, generator=torch.Generator().manual_seed(seed + 1)).double()
    L = log_q_matrix(post, z_post, mu, logvar)
    L_prior = log_q_matrix(post, z_prior, mu, logvar)
    log_p = post.prior_log_density(z_post)
    mi_point, kla = aggregate_terms(L, log_p.numpy())
    report.kl_aggregate = kla
    boot = bootstrap_aggregate(L, log_p.numpy(), bootstrap, level, seed)
    report.mi_low, report.mi_high, report.kl_aggregate_low, report.kl_aggregate_high = boot
    if not math.isclose(mi_point, report.mi, rel_tol=1e-6, abs_tol=1e-6):     # same draws, same estimate
        report.warnings.append(f"The bootstrap's MI ({mi_point:.4f}) differs from mutual_information "
                               f"({report.mi:.4f}): the interval may not belong to the point estimate.")
    means = _decoded_means(post, mu, logvar)
    codes = {"posterior sample": z_post, "posterior mean": means, "z = 0": torch.zeros_like(mu),
             "prior sample": z_prior}
    if post.kind == "vmf":
        del codes["z = 0"]
    report.decoding, report.decoding_gap, report.decoding_gap_se = decoding_gap(model, data, codes)
    report.decodings, report.samples = distinct_decodings(
        model, run.corpus.vocab, data, {"prior sample": z_prior[:n_decode], "posterior mean": means[:n_decode]},
        max_len)
    by_source = report.decodings.set_index("source")["fraction_distinct"]
    report.distinct_prior = float(by_source["prior sample"])
    report.distinct_posterior = float(by_source["posterior mean"])
    report.holes, report.typical_fraction, report.hole_fraction = holes_view(post, means, z_prior, L, L_prior)
    if post.kind == "vmf":
        report.warnings.append(_VMF_NOTE.format(kappa=post.kappa, kl=post.kl_value))


_VMF_NOTE = ("vMF posterior (κ = {kappa:g}): the per-dimension KL is not defined (NaN; the KL is the constant "
             "KL(vMF ‖ uniform) = {kl:.2f} nats per sentence), the uniform prior's log-density is constant (no "
             "log p(z) holes view), z = 0 lies off the sphere (not decoded), and posterior means are decoded "
             "as their mean direction μ.")


def _decoded_means(post, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """E_q[z|x] (N, nz); for a vMF the mean direction μ (on the sphere, where the decoder was trained)."""
    return mu if post.kind == "vmf" else post.mean(mu, logvar)


# --- the measurements, each usable alone --------------------------------------------------------

def _kl_table(model, data: EncodedSplit, mu: torch.Tensor, logvar: torch.Tensor,
              threshold: float) -> tuple[float, pd.DataFrame]:
    """(mean total KL, per-dimension table ``dim, kl, var_mean, active``); ``var_mean`` and
    ``active`` from :func:`~bnvae_core.metrics.text.active_units`."""
    post = model.posterior
    per_dim = post.kl_per_dim(mu, logvar).mean(0).numpy()                         # (nz,), NaN for vMF
    total = float(post.kl(mu, logvar).mean())
    _, var = active_units(model, data, threshold=threshold)
    table = pd.DataFrame({"dim": np.arange(model.nz), "kl": per_dim.astype(float), "var_mean": var.astype(float),
                          "active": var > threshold})
    return total, table


def log_q_matrix(post, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 budget: int = 1 << 22) -> np.ndarray:
    """``L[k, m] = log q(z_k | x_m)``: (K, N) float64 for codes ``z (K, nz)`` and posteriors
    ``mu, logvar (N, nz)``, in row chunks of at most ``budget`` K·N·nz elements (32 MB)."""
    K, N, nz = z.shape[0], mu.shape[0], mu.shape[1]
    out = np.empty((K, N), np.float64)
    step = max(1, budget // max(1, N * nz))
    for s in range(0, K, step):
        zc = z[s:s + step].unsqueeze(1)                                             # (c, 1, nz)
        out[s:s + step] = post.log_density(zc, mu.unsqueeze(0), logvar.unsqueeze(0)).numpy()
    return out


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    return torch.logsumexp(torch.from_numpy(a), 1).numpy()


def aggregate_terms(L: np.ndarray, log_p: np.ndarray) -> tuple[float, float]:
    """(MI, KL(q̄ ‖ p)) from ``L (N, N)`` (row n: the draw z_n ~ q_n) and ``log_p (N,)`` = log p(z_n):
    I = mean_n [L_nn − log q̄(z_n)], KL = mean_n [log q̄(z_n) − log p(z_n)], log q̄ = lse_m L_nm − log N."""
    log_agg = _logsumexp_rows(L) - math.log(L.shape[0])
    return float((np.diag(L) - log_agg).mean()), float((log_agg - log_p).mean())


def bootstrap_aggregate(L: np.ndarray, log_p: np.ndarray, replicates: int, level: float,
                        seed: int) -> tuple[float, float, float, float]:
    """Percentile intervals (MI low, MI high, KL(q̄‖p) low, high) over ``replicates`` resamplings of
    the N sentences with replacement (counts c): the aggregate posterior of a replicate is
    (1/N) Σ_m c_m q_m, so only the distinct sentences' rows and columns of ``L`` enter."""
    N = L.shape[0]
    rng = np.random.default_rng(seed)
    mi, kla = np.empty(replicates), np.empty(replicates)
    diag = np.diag(L)
    for b in range(replicates):
        c = np.bincount(rng.integers(0, N, N), minlength=N)
        keep = np.flatnonzero(c)
        w = c[keep].astype(float)
        log_agg = _logsumexp_rows(L[np.ix_(keep, keep)] + np.log(w)[None, :]) - math.log(N)
        mi[b] = (w * (diag[keep] - log_agg)).sum() / N
        kla[b] = (w * (log_agg - log_p[keep])).sum() / N
    q = [(1 - level) / 2, (1 + level) / 2]
    (mi_lo, mi_hi), (kl_lo, kl_hi) = np.quantile(mi, q), np.quantile(kla, q)
    return float(mi_lo), float(mi_hi), float(kl_lo), float(kl_hi)


def mi_warnings(mi: float, n: int, margin: float = MI_MARGIN) -> list[str]:
    """The MI estimate's warnings (sentences): within ``margin`` nats of its ceiling log ``n``, or below 0."""
    out = []
    ceiling = math.log(n)
    if mi > ceiling - margin:
        out.append(f"MI = {mi:.2f} nats is within {margin:.2f} nats of its ceiling log N = {ceiling:.2f} "
                   f"(N = {n} sentences): the posteriors barely overlap, so the estimate measures N rather than "
                   "the model and the true MI may be larger; diagnose more sentences.")
    if mi < 0:
        out.append(f"MI = {mi:.4f} nats is negative: the true MI is never below 0, so this is estimation noise "
                   "around 0 — the code tells (almost) nothing about the sentence.")
    return out


def _bn_warning(report: Report) -> list[str]:
    if report.kl_reference is None or not report.kl < report.kl_reference:
        return []
    return [f"The mean KL ({report.kl:.2f} nats) is below BN-VAE's nγ²/2 = {report.kl_reference:.2f}: that bound "
            "holds for training batches (BN with batch statistics); in evaluation mode BN uses its running "
            "statistics and the bound holds only approximately."]


def verdict(report: Report) -> str:
    """``'no latent'``, ``'collapsed'`` (MI interval below :data:`COLLAPSE_MI` nats) or ``'informative'``."""
    if report.nz == 0:
        return "no latent"
    return "collapsed" if max(report.mi, report.mi_high) < COLLAPSE_MI else "informative"


def _decoder_nll(model, data: EncodedSplit, codes: torch.Tensor | None, batch_size: int = 64) -> np.ndarray:
    """−log p(x_n | z) for every sentence: ``codes (N, k, nz)`` → (N, k); ``None`` (no latent) → (N,)."""
    dev = next(model.parameters()).device
    out = np.zeros((len(data),) if codes is None else tuple(codes.shape[:2]), np.float64)
    with eval_mode(model):
        for b in iterate_batches(data, batch_size):
            idx = b.index.numpy()
            z = None if codes is None else codes[b.index].to(dev, torch.float32)
            out[idx] = model.reconstruction_nll(b.tokens.to(dev), b.lengths.to(dev), z).double().cpu().numpy()
    return out


def decoding_gap(model, data: EncodedSplit, codes: dict[str, torch.Tensor]) -> tuple[pd.DataFrame, float, float]:
    """(table ``code, rec, per_token``, gap, its standard error): ``codes`` name → (N, nz), one code per
    sentence; rec = mean −log p(x_n | code_n) (nats per sentence), per_token = rec · N / (tokens + N);
    gap = rec(prior sample) − rec(posterior sample), se = std of the paired differences / √N."""
    names = list(codes)
    nll = _decoder_nll(model, data, torch.stack([codes[c] for c in names], 1))              # (N, k)
    rec = nll.mean(0)
    table = pd.DataFrame({"code": names, "rec": rec, "per_token": rec * len(data) / data.n_tokens})
    diff = nll[:, names.index("prior sample")] - nll[:, names.index("posterior sample")]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else NAN
    return table, float(diff.mean()), se


def distinct_decodings(model, vocab: Vocab, data: EncodedSplit, codes: dict[str, torch.Tensor],
                       max_len: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Greedy decodings of each source's codes (name → (n, nz)) and how many differ.

    Returns (``source, n, distinct, fraction_distinct, most_common, most_common_count`` — one row per
    source plus ``data``, the first n input sentences themselves —, ``source, i, text``)."""
    dev = next(model.parameters()).device
    texts = {name: [" ".join(vocab.decode(ids)) for ids in model.generate(z.to(dev, torch.float32), max_len=max_len)]
             for name, z in codes.items()}
    n = max(len(t) for t in texts.values())
    texts["data"] = [" ".join(vocab.decode(data.sentence(i))) for i in range(min(n, len(data)))]
    rows = []
    for name, items in texts.items():
        top, count = Counter(items).most_common(1)[0]
        rows.append({"source": name, "n": len(items), "distinct": len(set(items)),
                     "fraction_distinct": len(set(items)) / len(items), "most_common": top,
                     "most_common_count": count})
    samples = pd.DataFrame([{"source": name, "i": i, "text": t} for name, items in texts.items()
                            for i, t in enumerate(items)])
    return pd.DataFrame(rows), samples


def holes_view(post, means: torch.Tensor, z_prior: torch.Tensor, L: np.ndarray,
               L_prior: np.ndarray) -> tuple[pd.DataFrame, float, float]:
    """(table of N rows, typical_fraction, hole_fraction) — see the module docstring.

    ``means (N, nz)`` posterior means, ``z_prior (N, nz)`` prior draws, ``L (N, N)`` log q(z_n|x_m) at
    the posterior draws, ``L_prior (N, N)`` log q(z'_k|x_m) at the prior draws."""
    N = L.shape[0]
    vmf = post.kind == "vmf"
    log_p_means = np.full(N, NAN) if vmf else post.prior_log_density(means).numpy()
    log_p_prior = np.full(N, NAN) if vmf else post.prior_log_density(z_prior).numpy()
    loo = L.copy()
    np.fill_diagonal(loo, -np.inf)
    log_q_post = _logsumexp_rows(loo) - math.log(N - 1)
    log_q_prior = _logsumexp_rows(L_prior) - math.log(N)
    table = pd.DataFrame({"log_p_posterior_mean": log_p_means, "log_p_prior_sample": log_p_prior,
                          "log_qagg_posterior_sample": log_q_post, "log_qagg_prior_sample": log_q_prior})
    if vmf:
        typical = NAN
    else:
        lo, hi = np.quantile(log_p_prior, [0.025, 0.975])
        typical = float(((log_p_means >= lo) & (log_p_means <= hi)).mean())
    hole = float((log_q_prior < np.quantile(log_q_post, HOLE_QUANTILE)).mean())
    return table, typical, hole
