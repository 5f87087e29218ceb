"""Step-size controllers of the rk engine: what the next step size is, given the error
ratio of the last attempt. Apart from the methods (``tableaux.py``) and the steps
(``step.py``), so every adaptive method runs under every controller.

With ratio r ≤ 1 meaning "accepted" and k the method's order:

- ``IntegralController`` (I): h_new = h · clip(0.9 · r^(−1/k), δ, 10), δ = 1 after an
  accepted step (an accepted step never shrinks the next) and 0.2 after a rejected one.
  The same rule as torchdiffeq's, so both engines take the same steps.
- ``PIController`` (Gustafsson's PI, as OrdinaryDiffEq's and diffrax's): h_new = h ·
  clip(0.9 · r^(−β1) · r_prev^(β2), 0.2, 10) with β1 = 0.7/k, β2 = 0.4/k and r_prev the
  ratio of the last accepted step (1e-4 at least); after a rejection the factor is
  capped at 1. The memory of the last ratio damps oscillating step sizes.
"""

from __future__ import annotations

import torch

SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2


class IntegralController:
    """The integral (I) controller; see the module docstring."""

    name = "integral"

    def __init__(self, order: int):
        self.order = order

    def reset(self) -> None:
        """A new integration (or a restart at an output time) begins."""

    def next_step(self, h: float, ratio: float) -> float:
        """|h| of the next attempt after one of size ``h`` had error ``ratio``."""
        if ratio == 0.0:
            return h * IFACTOR
        low = 1.0 if ratio < 1.0 else DFACTOR
        return h * min(IFACTOR, max(SAFETY / ratio ** (1.0 / self.order), low))

    def next_step_tensor(self, h, ratio, previous):
        """``(|h| next, previous)``: ``next_step`` on float64 0-dim tensors, for the loop
        run as a tensor program (``programs/solve_loop.py``); ``previous`` passes through."""
        # ratio = 0 gives 0.9 / 0 = inf, clipped to IFACTOR as the float rule's branch
        factor = SAFETY / ratio.pow(1.0 / self.order)
        # (a tensor branch: two Python numbers would make a float32 tensor, 0.2 rounded)
        low = torch.where(ratio < 1.0, torch.ones_like(ratio), DFACTOR)
        # a fresh tensor: a loop's body may not return its input
        return h * torch.clamp(torch.maximum(factor, low), max=IFACTOR), previous.clone()


class PIController:
    """The proportional–integral controller; see the module docstring."""

    name = "PI"

    def __init__(self, order: int, beta1: float = 0.7, beta2: float = 0.4):
        self.order = order
        self.beta1, self.beta2 = beta1 / order, beta2 / order
        self.previous = 1.0

    def reset(self) -> None:
        self.previous = 1.0

    def next_step(self, h: float, ratio: float) -> float:
        if ratio == 0.0:
            factor = IFACTOR
        else:
            factor = SAFETY * ratio ** (-self.beta1) * self.previous**self.beta2
        if ratio <= 1.0:
            self.previous = max(ratio, 1e-4)
            return h * min(IFACTOR, max(DFACTOR, factor))
        return h * min(1.0, max(DFACTOR, factor))

    def next_step_tensor(self, h, ratio, previous):
        """``(|h| next, previous)``: ``next_step`` on float64 0-dim tensors, with the last
        accepted ratio carried as ``previous`` (``programs/solve_loop.py``)."""
        factor = SAFETY * ratio.pow(-self.beta1) * previous.pow(self.beta2)
        factor = torch.where(ratio == 0.0, IFACTOR, factor)
        accept = ratio <= 1.0
        previous = torch.where(accept, torch.clamp(ratio, min=1e-4), previous)
        high = torch.where(accept, IFACTOR, torch.ones_like(ratio))
        return h * torch.minimum(torch.clamp(factor, min=DFACTOR), high), previous


CONTROLLERS = {"integral": IntegralController, "PI": PIController}


def make_controller(name: str, order: int):
    """A controller by name (``"integral"`` or ``"PI"``)."""
    return CONTROLLERS[name](order)
