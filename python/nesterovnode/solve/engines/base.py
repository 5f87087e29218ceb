"""The engine protocol: what a solver back end provides, and what it must guarantee.

An engine is one module in ``solve/engines/``. It declares the canonical (Julia) solver
names it offers and its own name for each, its typed options, whether it can run here and
how to install it, and it integrates:

    integrate(field, z0, times, request) -> states at every time of ``times``

- ``field(t, z) -> dz/dt`` works on a state ``z`` that is a tuple of tensors (``(y,)``
  for a forward solve, ``(y, a, g)`` for the adjoint system of ``solve/adjoint.py``);
  ``field.reads`` lists the components the field reads (the others' stage values need
  not be formed) and ``field.key`` identifies it for caches (None: do not cache).
- ``times`` are Python floats, strictly increasing or strictly decreasing; the result is
  a tuple with one ``[len(times), *z0[j].shape]`` tensor per component.
- ``request`` (``IntegrateRequest``) carries the method, tolerances, fixed step, the
  components the error norm covers (``error_channels``; None = all), optionally the
  first step's size (``first_step``) and the ``Recorder`` every step, rejection and
  evaluation is reported to. An adaptive engine that can says on the recorder which
  step its controller proposed after the last one (``Recorder.next_step``): the adjoint
  starts its backward solve from it.

Invariants every engine meets (the contract suite in tests/engines checks them all):

1. f is evaluated only inside the closed interval spanned by ``times`` (stages, first-
   step probes and rejected attempts included);
2. states at the output times have the method's accuracy: from the method's own dense
   output of adequate order, or from steps that land on them (never a low-order
   interpolant back from a step past the end);
3. the NFE reported to the recorder equals the calls the field observes, with three
   stated exceptions, each counted apart or not a computation: the Jacobians of implicit
   methods, formed by autograd through the field (``extra["njev"]``); the attempts a
   masked CUDA-graph chunk runs after the end of a solve and discards
   (``extra["masked_evaluations"]``); and the call through which a compiled program is
   traced, once per program, on fake tensors;
4. a blow-up raises ``SolverError`` (``recorder.fail``) with the time reached and the
   stats so far; more than ``max_steps`` attempts raise through ``recorder.attempt``; a
   non-finite value of the field raises at once (no engine's own step-size rule may
   loop on it), and ``solve`` names the cause (``api.diagnosed``);
5. f's value has the state's shape and dtype: the solve layer's fields check it at their
   first call (``fields.DynamicsField``), so no engine broadcasts it.

The error norm is one root mean square over the covered components together,
``sqrt(Σ_j Σ e_j² / Σ_j n_j)`` with ``e = err / (atol + rtol max(|z|, |z_1|))``.

Sensitivities ``"adjoint"`` and ``"adjoint-seminorm"`` are the one backsolve adjoint of
``solve/adjoint.py`` over ``integrate``; ``"backprop"`` differentiates ``integrate`` itself
and is offered only by engines whose ``differentiable`` is true. An engine may also offer
native sensitivities (``native_sensitivities``, chosen as ``"engine:name"``) by
implementing ``solve_native``.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..fields import State
from ..stats import Recorder, SolveStats


@dataclass(frozen=True)
class Option:
    """A typed engine option: its type(s), default and what it does."""

    types: type | tuple[type, ...]
    default: Any
    doc: str
    choices: tuple | None = None
    at_least: int | None = None  #: the smallest value an integer option takes

    def check(self, engine: str, name: str, value):
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"the {engine} engine's option {name!r} must be one of "
                f"{', '.join(map(repr, self.choices))}, got {value!r}"
            )
        if self.choices is None and not isinstance(value, self.types):
            kinds = self.types if isinstance(self.types, tuple) else (self.types,)
            raise TypeError(
                f"the {engine} engine's option {name!r} must be "
                f"{' or '.join(k.__name__ for k in kinds)}, got {value!r}"
            )
        if self.at_least is not None and (isinstance(value, bool) or value < self.at_least):
            raise ValueError(
                f"the {engine} engine's option {name!r} must be an integer "
                f">= {self.at_least}, got {value!r}"
            )
        return value


@dataclass(frozen=True)
class IntegrateRequest:
    """How to integrate, besides the field, the initial state and the times."""

    solver: str  #: canonical name (DP5, RadauIIA5, …)
    method: str  #: the engine's own name (dp5, RK45, Radau, …)
    rtol: float
    atol: float
    dt: float | None  #: fixed step (any method); None: adaptive
    error_channels: tuple[int, ...] | None  #: state components in the error norm
    recorder: Recorder
    options: dict  #: the engine's options, validated, defaults filled in
    #: the size of the first attempt (a float or a 0-dim tensor, > 0, capped at the first
    #: interval): a solve that continues another starts from the step that one proposed
    #: (``Recorder.next_step``) instead of the first-step rule; None: the engine's rule.
    #: Engines that take it: rk, torchdiffeq, scipy (LSODA takes it but reports no
    #: proposal, so the backward's later stretches start from its own rule); julia
    #: chooses its own first step.
    first_step: float | torch.Tensor | None = None

    @property
    def stats(self) -> SolveStats:
        return self.recorder.stats


class Engine(abc.ABC):
    """A solver back end; see the module docstring for the contract."""

    #: the engine's name, as in ``engine="scipy"`` or ``"scipy:Radau"``
    name: str = ""
    #: canonical solver name -> the engine's own name for it
    methods: dict[str, str] = {}
    #: typed options (``SolveConfig.options``), by name
    options: dict[str, Option] = {}
    #: True when ``integrate`` is differentiable by autograd (``sensitivity="backprop"``)
    differentiable: bool = False
    #: native sensitivities by name (-> a description), chosen as ``"<engine>:<name>"``
    native_sensitivities: dict[str, str] = {}
    #: canonical names the engine runs at a fixed ``dt`` (None: every one of its methods)
    fixed_steps: frozenset[str] | None = None
    #: canonical names whose outputs between steps come from a dense output of the
    #: method's accuracy (their NFE does not grow with the number of output times); the
    #: others end a step on every output time
    dense_methods: frozenset[str] = frozenset()
    #: True when the engine also takes method names outside ``methods`` (Julia: any
    #: OrdinaryDiffEq algorithm expression, e.g. "AutoTsit5(Rosenbrock23())"), named
    #: with the engine's prefix ("julia:AutoTsit5(Rosenbrock23())")
    open_methods: bool = False
    #: what to run when ``available()`` is false
    install_hint: str = ""
    #: Python packages the engine imports (checked without importing them)
    requires: tuple[str, ...] = ()

    @classmethod
    def runs_fixed(cls, solver: str) -> bool:
        """True when canonical ``solver`` can run at a fixed dt on this engine."""
        return solver in cls.methods and (cls.fixed_steps is None or solver in cls.fixed_steps)

    @classmethod
    def missing(cls) -> list[str]:
        """The packages of ``requires`` this installation lacks."""
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]

    @classmethod
    def available(cls) -> bool:
        """True when the engine can run on this machine (nothing is imported)."""
        return not cls.missing()

    @classmethod
    def unavailable_reason(cls) -> str:
        """Why ``available()`` is false (shown to the user with the install hint)."""
        return f"the {cls.name} engine needs the Python package(s) {', '.join(cls.missing())}"

    def clear_caches(self) -> None:
        """Drop whatever the engine keeps between solves (the rk engine's CUDA graphs and
        the models they hold). Solving again rebuilds it."""
        return None  # most engines keep nothing

    @abc.abstractmethod
    def integrate(
        self,
        field: Callable[[torch.Tensor, State], State],
        z0: State,
        times: Sequence[float],
        request: IntegrateRequest,
    ) -> State:
        """Integrate ``z' = field(t, z)`` from ``z0`` at ``times[0]``; the states at every
        time of ``times``, one ``[len(times), *z0[j].shape]`` tensor per component."""

    def solve_native(self, sensitivity: str, dynamics, y0, ts, request: IntegrateRequest):
        """``[len(ts), *y0.shape]`` solved with the engine's own sensitivity ``sensitivity``
        (a key of ``native_sensitivities``), differentiable through it."""
        raise NotImplementedError(f"the {self.name} engine has no native sensitivities")
