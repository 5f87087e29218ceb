"""The engine protocol: what a solver back end must provide.

An engine is one file in ``solve/``. It declares the canonical (Julia-style) solver names
it offers and its own name for each, whether it can be used here, and how to install it;
and it solves. The solve layer hands it a ``CountedField`` (the dynamics with counting),
the initial state, the output times and the options; it returns the states at the output
times, ``[len(ts), *y0.shape]``, differentiable with respect to ``y0`` and the field's
parameters under the requested sensitivity.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from .stats import CountedField, SolveStats


@dataclass(frozen=True)
class SolveRequest:
    """Everything an engine needs to solve, besides the field, y0 and ts."""

    solver: str  #: canonical name (DP5, RadauIIA5, …)
    method: str  #: the engine's own name (dopri5, Radau, …)
    rtol: float
    atol: float
    sensitivity: str  #: "backprop", "adjoint" or "adjoint-seminorm"
    dt: float | None
    max_steps: int | None
    stats: SolveStats
    options: dict


class Engine(abc.ABC):
    """A solver back end. Subclasses set ``name``, ``methods`` and ``install_hint`` and
    implement ``solve``; ``available`` says whether the engine's dependencies import."""

    #: the engine's name, as in ``engine="scipy"`` or ``"scipy:Radau"``
    name: str = ""
    #: canonical solver name -> the engine's own name for it
    methods: dict[str, str] = {}
    #: sensitivities the engine supports
    sensitivities: tuple[str, ...] = ("backprop", "adjoint", "adjoint-seminorm")
    #: what to run when ``available()`` is false
    install_hint: str = ""

    @classmethod
    def available(cls) -> bool:
        """True when the engine can run on this machine (imports are cheap and safe)."""
        return True

    @classmethod
    def unavailable_reason(cls) -> str:
        """Why ``available()`` is false (shown to the user with the install hint)."""
        return f"the {cls.name} engine is not installed"

    def clear_caches(self) -> None:
        """Drop whatever the engine keeps between solves (the rk engine's CUDA graphs and
        the models they hold). Solving again rebuilds it."""
        return None  # most engines keep nothing

    @abc.abstractmethod
    def solve(
        self, field: CountedField, y0: torch.Tensor, ts: torch.Tensor, request: SolveRequest
    ) -> torch.Tensor:
        """Solve ``y' = field(t, y)``, ``y(ts[0]) = y0``; return ``[len(ts), *y0.shape]``."""
