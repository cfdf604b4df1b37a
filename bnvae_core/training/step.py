"""The update step — one place where gradients become weights.

:func:`update` is the whole of it: zero the gradients, back-propagate, clip the gradient norm
over all parameters, refuse a non-finite norm, optionally keep only the encoder's or the
decoder's gradients, step. The trainer's batch step, aggressive training's encoder-only inner
loop, pre-train+FB's autoencoder phase, the lagging-encoder diagnostic and the benchmarks all
go through it (the methods get it as ``ctx.update``).
"""
from __future__ import annotations

import math

import torch

from ..config import TrainConfig


def build_optimizer(config: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """SGD (the paper's, with ``config.momentum``) or Adam over the trainable parameters at ``lr``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum)


def clip_gradients_(parameters, max_norm: float) -> torch.Tensor:
    """Gradient-norm clipping as ``torch.nn.utils.clip_grad_norm_``: the total 2-norm
    ``‖g‖ = √(Σ_p ‖g_p‖²)`` over all gradients, and every gradient scaled by
    ``max_norm / (‖g‖ + 10⁻⁶)`` when that is below 1. Returns ``‖g‖`` (non-finite if a gradient is).

    On the CPU the scaling is skipped when nothing is clipped (``clip_grad_norm_`` multiplies
    by exactly 1.0 then): one read-and-write pass over all gradients fewer on most steps. On
    other devices the clamped factor is applied unconditionally, so no host sync is added."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g).float() for g in grads]))
    if math.isinf(max_norm):
        return norm
    factor = max_norm / (norm + 1e-6)
    if grads[0].device.type == "cpu" and not bool(factor < 1):
        return norm
    factor = factor.clamp(max=1.0)
    for g in grads:
        g.mul_(factor.to(g.dtype))
    return norm


def is_decoder_parameter(name: str) -> bool:
    """Decoder θ vs inference network φ (encoder and its BN head), by parameter name."""
    return name.startswith("decoder.")


def keep_gradients_of(model: torch.nn.Module, part: str) -> None:
    """Drop (set to None) the gradients of every parameter not in ``part`` ('encoder' or 'decoder'),
    so the next ``optimizer.step()`` updates only that part (SGD and Adam skip gradient-less
    parameters, and their momentum/moment buffers stay untouched, exactly as with the separate
    encoder and decoder optimizers of He et al.'s code)."""
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
    for name, p in model.named_parameters():
        if is_decoder_parameter(name) != (part == "decoder"):
            p.grad = None


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_grad: float,
           only: str | None = None) -> torch.Tensor:
    """zero_grad → backward → clip the norm over *all* parameters at ``clip_grad`` (none if ≤ 0) →
    [keep only ``only``'s gradients, 'encoder' or 'decoder'] → step.

    Returns the gradient norm; when it is not finite nothing is stepped and the gradients are cleared."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_gradients_(model.parameters(), clip_grad if clip_grad > 0 else math.inf)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return norm
    if only is not None:
        keep_gradients_of(model, only)
    optimizer.step()
    return norm


def all_finite(state_dict: dict) -> bool:
    """Whether every floating-point tensor of a ``state_dict`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values()
               if torch.is_tensor(t) and t.is_floating_point())
