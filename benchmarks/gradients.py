"""What the benchmarks compare gradients with: a model's gradient as one flat vector and
its relative error against a reference (``engines.py``, ``gradient_error.py``,
``graph_check.py``)."""

from __future__ import annotations

import torch
from torch import nn


def flat_gradient(model: nn.Module) -> torch.Tensor:
    """The gradients of ``model``'s parameters that have one, concatenated and flattened."""
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖₂ / ‖reference‖₂."""
    return float((value - reference).norm() / reference.norm())
