"""``SolveConfig``: how to solve, as one frozen value, checked when built and resolved once.

Every default of the solve layer is written here and nowhere else; tasks, ``ODEBlock``,
training, diagnostics and the command line pass a ``SolveConfig`` or change fields of one
(``config.replace(rtol=1e-5)``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from .engines.base import Engine
from .registry import (
    GENERIC_SENSITIVITIES,
    SolverInfo,
    engine_class,
    engine_name,
    resolve,
    sensitivity_names,
)


@dataclass(frozen=True)
class SolveConfig:
    """How an ODE is solved.

    Attributes:
        solver: canonical (Julia) name, ``"DP5"``, ``"Tsit5"``, ``"RK4"``, ``"RadauIIA5"``…,
            or ``"engine:name"`` (``"scipy:Radau"``, ``"torchdiffeq:dopri5"``).
        rtol, atol: tolerances of adaptive steps.
        dt: a fixed step size for ANY method (adaptive methods then take fixed steps
            without error control); None: adaptive. Fixed-step-only methods (Euler,
            Midpoint, RK4, RK38) need it. Each interval between output times is split
            into ceil(length / dt) equal steps.
        sensitivity: ``"adjoint"`` (backsolve adjoint, error norm over the whole augmented
            state), ``"adjoint-seminorm"`` (the parameter-gradient channels left out of
            the error norm), ``"backprop"`` (autograd through the solver), or an engine's
            native one, ``"torchdiffeq:adjoint"``, ``"julia:GaussAdjoint"``.
        engine: ``"rk"``, ``"torchdiffeq"``, ``"scipy"``, ``"julia"``; None: the first
            installed engine (in that order) that offers the solver.
        max_steps: bound on step attempts of each of the forward and backward solves.
        options: the engine's own options (``nesterovnode list`` shows them); an unknown
            key raises, listing the valid ones.
    """

    solver: str = "DP5"
    rtol: float = 1e-7
    atol: float = 1e-7
    dt: float | None = None
    sensitivity: str = "adjoint"
    engine: str | None = None
    max_steps: int | None = 100_000
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.solver, str) or not self.solver:
            raise TypeError(f"solver must be a name such as 'DP5', got {self.solver!r}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
            object.__setattr__(self, name, float(value))
        if self.dt is not None:
            if not (isinstance(self.dt, (int, float)) and self.dt > 0 and math.isfinite(self.dt)):
                raise ValueError(
                    f"dt must be a finite number > 0 (or None: adaptive), got {self.dt}"
                )
            object.__setattr__(self, "dt", float(self.dt))
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool)
            or not isinstance(self.max_steps, int)
            or self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive integer or None, got {self.max_steps}")
        if not isinstance(self.sensitivity, str):
            raise TypeError(f"sensitivity must be a name, got {self.sensitivity!r}")
        if self.sensitivity not in GENERIC_SENSITIVITIES and ":" not in self.sensitivity:
            raise ValueError(
                f"unknown sensitivity {self.sensitivity!r}; valid: {', '.join(sensitivity_names())}"
            )
        if self.engine is not None:
            object.__setattr__(self, "engine", engine_name(self.engine))
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict of engine options, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))

    def replace(self, **changes) -> SolveConfig:
        """A copy with ``changes`` (field names as keyword arguments)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(
                f"SolveConfig has no field {', '.join(sorted(unknown))}; its fields: "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for results files and checkpoints)."""
        return dataclasses.asdict(self)

    def resolve(self) -> ResolvedSolve:
        """Engine, method and options, checked. The name lookup is the registry's (cached,
        and cleared by ``register_engine``); the rest is a few dict operations."""
        return _resolve(self)


FIELDS = tuple(f.name for f in dataclasses.fields(SolveConfig))


@dataclass(frozen=True)
class ResolvedSolve:
    """A configuration resolved: the engine instance, the method and the options."""

    engine: Engine
    info: SolverInfo
    method: str  #: the engine's own name of the solver
    sensitivity: str  #: "adjoint", "adjoint-seminorm", "backprop" or a native name
    native: bool  #: True when ``sensitivity`` is the engine's own
    options: dict[str, Any]  #: validated, with the engine's defaults


def _resolve(config: SolveConfig) -> ResolvedSolve:
    sens, engine = config.sensitivity, config.engine
    native = ":" in sens
    if native:
        prefix, _, sens = sens.partition(":")
        prefix = engine_name(prefix)
        if engine is not None and engine != prefix:
            raise ValueError(
                f"sensitivity {config.sensitivity!r} is the {prefix} engine's, but "
                f"engine={engine!r} was given; drop one of them"
            )
        engine = prefix
        cls = engine_class(prefix)
        if cls is not None and sens not in cls.native_sensitivities:
            raise ValueError(
                f"the {prefix} engine has no sensitivity {sens!r}; its own: "
                f"{', '.join(cls.native_sensitivities) or 'none'}; everywhere: "
                f"{', '.join(GENERIC_SENSITIVITIES)}"
            )
    eng, info, method = resolve(config.solver, engine)
    if sens == "backprop" and not eng.differentiable:
        raise ValueError(
            f"sensitivity='backprop' differentiates the solver's own operations, which run "
            f"outside torch on the {eng.name} engine; use 'adjoint' or 'adjoint-seminorm' "
            f"(or engine='rk' for backprop)"
        )
    if not info.adaptive and config.dt is None:
        raise ValueError(
            f"{info.name} is a fixed-step solver: pass dt= (the step size), or use an "
            f"adaptive solver such as 'DP5'"
        )
    options = {}
    unknown = sorted(set(config.options) - set(eng.options))
    if unknown:
        valid = ", ".join(f"{k} ({o.doc})" for k, o in eng.options.items()) or "none"
        raise ValueError(
            f"the {eng.name} engine has no option {', '.join(map(repr, unknown))}; "
            f"its options: {valid}"
        )
    for name, spec in eng.options.items():
        value = config.options.get(name, spec.default)
        options[name] = value if name not in config.options else spec.check(eng.name, name, value)
    return ResolvedSolve(eng, info, method, sens, native, options)


class ToleranceWarning(UserWarning):
    """A tolerance below what the state's dtype can resolve."""


def check_tolerance_for_dtype(config: SolveConfig, dtype: torch.dtype) -> None:
    """Warn about a relative tolerance the state's dtype cannot resolve (1e-7 in float32:
    its machine epsilon is 1.2e-7), saying how to fix it. The solve still runs: its
    steps are then chosen against round-off rather than truncation error."""
    if config.dt is not None or not dtype.is_floating_point:
        return
    eps = torch.finfo(dtype).eps
    if config.rtol < eps:
        name = str(dtype).replace("torch.", "")
        fix = (
            f"use rtol >= {10 * eps:.0e}"
            if dtype == torch.float64
            else f"solve in float64 (model.double() and a float64 input; --dtype float64 on "
            f"the command line) or use rtol >= {10 * eps:.0e}"
        )
        warnings.warn(
            f"rtol = {config.rtol:g} is below what {name} can resolve (machine epsilon "
            f"{eps:.2g}): {fix}",
            ToleranceWarning,
            stacklevel=3,
        )
