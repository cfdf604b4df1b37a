"""KL-weight schedules: what multiplies the KL term at training step ``t`` (0-based, one step per batch).

* **Linear warm-up** (Bowman et al. 2016; the schedule of He et al. 2019 and Zhu et al. 2020 §5):
  ``w_t = min(1, w₀ + (1 − w₀)·t / T_w)`` with ``T_w`` = warm-up epochs × batches per epoch and
  ``w₀`` = ``kl_start``; ``T_w = 0`` means no warm-up (``w_t = 1``).
* **Cyclical annealing** (Fu et al., NAACL 2019, eq. 6): the ``T`` training steps are split into
  ``M`` cycles of length ``L = T / M``; inside a cycle, with ``τ = (t mod L) / L ∈ [0, 1)``,

      ``w_t = f(τ / R)`` if ``τ < R``, else ``1``,

  where ``R`` is the fraction of each cycle spent increasing the weight and ``f`` maps ``[0, 1]``
  onto the weight: ``linear`` ``f(v) = v``; ``sigmoid`` ``f(v) = 1 / (1 + e^{−(12 v − 6)})`` (the
  authors' ``frange_cycle_sigmoid``, which goes from ≈0.0025 to ≈0.9975); ``cosine``
  ``f(v) = ½ − ½ cos(π v)``.

Every function returns a Python float and is a pure function of its arguments, so a
schedule can be plotted without training (``[cyclical_weight(t, T, 4, 0.5) for t in range(T)]``).
"""

from __future__ import annotations

import math

CYCLE_SHAPES = ("linear", "sigmoid", "cosine")


def linear_warmup_weight(step: int, warmup_steps: int, start: float = 0.0) -> float:
    """``min(1, start + (1 − start)·step / warmup_steps)``; 1 when ``warmup_steps <= 0``."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, start + (1.0 - start) * step / warmup_steps)


def cycle_shape(v: float, shape: str = "linear") -> float:
    """The rising part ``f(v)`` of one cycle, ``v ∈ [0, 1]`` (see the module docstring)."""
    if shape == "linear":
        return v
    if shape == "sigmoid":
        return 1.0 / (1.0 + math.exp(-(12.0 * v - 6.0)))
    if shape == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * v)
    raise ValueError(f"unknown cycle shape {shape!r} (choose from: {', '.join(CYCLE_SHAPES)})")


def cyclical_weight(step: int, total_steps: int, cycles: int = 4, ratio: float = 0.5,
                    shape: str = "linear") -> float:
    """Fu et al. (2019) cyclical KL weight at ``step`` of ``total_steps`` (eq. 6).

    ``cycles`` = M, ``ratio`` = R ∈ (0, 1]. Steps at or beyond ``total_steps`` (a run resumed
    with more epochs) continue the last cycle's plateau at 1."""
    if total_steps <= 0 or step >= total_steps:
        return 1.0
    period = total_steps / cycles
    tau = math.fmod(step, period) / period
    if tau >= ratio:
        return 1.0
    return cycle_shape(tau / ratio, shape)
