"""The contract every model's dynamics follows.

A dynamics module is *what a model is*: its state layout and its vector field. It knows
nothing of solvers. Three methods make the contract:

- ``initial_state(t0, h0, v0=None)`` builds the solver state at ``t0`` from the input ``h0``;
- ``forward(t, state)`` returns d(state)/dt;
- ``readout(t, state)`` returns the hidden state h(t) the rest of the network sees.

First-order models keep the state shaped like h, ``[B, *D]``. Second-order (momentum)
models keep an explicit momentum axis, ``[B, 2, *D]``: index 0 is the position-like
variable (h or x), index 1 the velocity-like one (v or m).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from .networks import Autonomous

Network = nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Dynamics(nn.Module):
    """Base class: holds the network ``f(t, h)`` and checks what it returns.

    ``f`` is an ``nn.Module`` or callable ``f(t, h)``; a module whose forward takes only
    one input (``nn.Sequential``, ``nn.Linear``) is used as the autonomous ``f(h)``.

    Subclasses set ``second_order`` and implement ``forward``; they may override
    ``initial_state`` and ``readout``.
    """

    #: True when the state carries a momentum axis ``[B, 2, *D]``.
    second_order: bool = False
    #: True when t = 0 is a singularity of the model (Nesterov): solves need 0 < t0.
    needs_positive_time: bool = False

    def __init__(self, f: Network):
        super().__init__()
        if not callable(f):
            raise TypeError(
                f"f must be an nn.Module or a callable f(t, h) returning a tensor shaped like h; "
                f"got {type(f).__name__}"
            )
        # An nn.Module is registered so its parameters train (and the adjoint finds them);
        # a plain callable is kept as is.
        self.f = Autonomous(f) if _takes_only_h(f) else f

    # -- helpers shared by all models ------------------------------------------------------
    def call_f(self, t: torch.Tensor, h: torch.Tensor, out_shape: torch.Size | None = None):
        """Evaluate the network ``f(t, h)`` and check that it returns ``out_shape``.

        ``out_shape`` defaults to ``h.shape``; SONODE passes the shape of its position
        because its network reads the concatenation [h, v].
        """
        out = self.f(t, h)
        expected = h.shape if out_shape is None else out_shape
        if not isinstance(out, torch.Tensor) or out.shape != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"{type(self).__name__}: the network f(t, h) returned shape {got}, but the model "
                f"needs {tuple(expected)} (shaped like h); make f's last layer output "
                f"{tuple(expected[1:])} features per sample"
            )
        return out

    def check_time(self, t0: float | torch.Tensor) -> None:
        """Raise when ``t0`` is not allowed as a start time for this model."""
        if self.needs_positive_time:
            t0f = float(t0)
            if not (t0f > 0.0) or not math.isfinite(t0f):
                raise ValueError(
                    f"{type(self).__name__} is singular at t = 0 (k(t) = t^(-r/2) e^(t/2)): the "
                    f"start time t0 must be > 0, got t0 = {t0f}. The paper integrates from "
                    f"t0 = 1 to T = 2."
                )

    # -- the contract ----------------------------------------------------------------------
    def initial_state(
        self, t0: float | torch.Tensor, h0: torch.Tensor, v0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """State at ``t0``: ``h0`` for first-order models, ``[h0, v0]`` stacked on axis 1
        (``v0`` defaults to zeros) for second-order ones."""
        self.check_time(t0)
        if not self.second_order:
            if v0 is not None:
                raise ValueError(
                    f"{type(self).__name__} is a first-order model and takes no initial "
                    f"velocity v0; pass only h0"
                )
            return h0
        v0 = torch.zeros_like(h0) if v0 is None else v0
        if v0.shape != h0.shape:
            raise ValueError(
                f"v0 must have the shape of h0 {tuple(h0.shape)}, got {tuple(v0.shape)}"
            )
        return torch.stack([h0, v0], dim=1)

    def readout(self, t: torch.Tensor | float, state: torch.Tensor) -> torch.Tensor:
        """h(t) from the state. ``t`` is a scalar with ``state`` shaped ``[B, ...]``, or a
        vector of times with ``state`` shaped ``[len(t), B, ...]``."""
        if not self.second_order:
            return state
        return position(state, _time_axis(t, state))

    def julia_layout(self, state_shape: tuple[int, ...]) -> str:
        """The description of this model the Julia fields read (``layout.py``), as JSON,
        for a state of ``state_shape``; ``layout.LayoutError`` (a ValueError) where a part
        of it (the network, the state's shape) is not mirrored in Julia."""
        from .layout import layout_json  # only the julia engine asks: loaded then

        return layout_json(self, tuple(int(s) for s in state_shape))

    def extra_repr(self) -> str:
        return ""


def _takes_only_h(f) -> bool:
    """True for an ``nn.Module`` whose forward takes one positional input (``net(h)``)."""
    if not isinstance(f, nn.Module):
        return False
    try:
        params = inspect.signature(f.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    return len(positional) == 1 and not has_varargs


def _time_axis(t: torch.Tensor | float, state: torch.Tensor) -> int:
    """1 when ``state`` carries a leading time axis (``t`` is a vector), else 0."""
    t = torch.as_tensor(t)
    return 1 if t.dim() == 1 else 0


def position(state: torch.Tensor, time_axis: int = 0) -> torch.Tensor:
    """The position part (h or x) of a momentum state ``[..., B, 2, *D]``."""
    return state.select(time_axis + 1, 0)


def velocity(state: torch.Tensor, time_axis: int = 0) -> torch.Tensor:
    """The velocity part (v or m) of a momentum state ``[..., B, 2, *D]``."""
    return state.select(time_axis + 1, 1)


def broadcast_time(values: torch.Tensor, like: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """Reshape per-time ``values`` ([T] or scalar) to broadcast over ``like``'s trailing dims.

    ``batch_dims`` is how many trailing dimensions of ``like`` belong to one time point.
    """
    if values.dim() == 0:
        return values
    return values.reshape(values.shape + (1,) * batch_dims)


def inverse_softplus(y: float) -> float:
    """θ with softplus(θ) = y (y > 0); used to initialise constrained parameters."""
    if y <= 0:
        raise ValueError(f"expected a positive value, got {y}")
    return y + math.log(-math.expm1(-y))


class Constant(nn.Module):
    """A scalar that is either fixed (a buffer) or learned (a parameter through softplus,
    which keeps it non-negative): ξ of the generalised models."""

    def __init__(self, value: float, learnable: bool = False, nonnegative: bool = True):
        super().__init__()
        if nonnegative and value < 0:
            raise ValueError(f"expected a value >= 0, got {value}")
        self.learnable = learnable
        self.nonnegative = nonnegative
        if learnable:
            init = inverse_softplus(max(value, 1e-6)) if nonnegative else value
            self.raw = nn.Parameter(torch.tensor(float(init)))
        else:
            self.register_buffer("raw", torch.tensor(float(value)), persistent=False)

    def forward(self) -> torch.Tensor:
        if self.learnable and self.nonnegative:
            return nn.functional.softplus(self.raw)
        return self.raw

    def extra_repr(self) -> str:
        return f"value={float(self().detach()):.4g}, learnable={self.learnable}"
