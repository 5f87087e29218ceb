"""Solver names, engines and sensitivities.

Canonical names are Julia's (OrdinaryDiffEq.jl): a name means one method on every engine
(``RK4`` is the classical Runge–Kutta method everywhere; Kutta's 3/8 rule is ``RK38``).
Each engine declares which canonical names it provides and under what native name
(torchdiffeq's ``dopri5`` is DP5, SciPy's ``RK45`` is DP5, ``Radau`` is RadauIIA5…).
A name resolves to an engine:

- ``"DP5"``: the first installed engine, in the order of ``ENGINE_ORDER`` (the library's
  own ``rk`` first), that offers it;
- ``"scipy:Radau"`` or ``"scipy:RadauIIA5"``: that engine, by native or canonical name;
- ``engine="scipy"`` with ``solver="RadauIIA5"``: the same.

Sensitivities: ``"adjoint"``, ``"adjoint-seminorm"`` (the one backsolve adjoint of
``adjoint.py``, on any engine) and ``"backprop"`` (engines whose ``integrate`` autograd
can differentiate), plus each engine's native ones as ``"<engine>:<name>"``
(``"torchdiffeq:adjoint"``, ``"julia:GaussAdjoint"``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .engines.base import Engine
from .errors import EngineNotInstalledError

#: sensitivities every engine (or every differentiable engine, for backprop) offers
GENERIC_SENSITIVITIES = ("adjoint", "adjoint-seminorm", "backprop")


@dataclass(frozen=True)
class SolverInfo:
    """Properties of a solver method (independent of the engine running it)."""

    name: str
    order: int
    #: True when the method has an error estimate (it runs adaptively unless a dt is
    #: given); False for fixed-step-only methods, which need dt
    adaptive: bool
    implicit: bool = False
    stiff: bool = False  #: A-stable / meant for stiff problems
    auto_switching: bool = False  #: switches between a stiff and a non-stiff method
    #: |h λ| bound of the stability region on the negative real axis (explicit methods;
    #: computed from each tableau's stability function in tests/solve/rk/test_tableaux.py)
    stability_bound: float | None = None
    description: str = ""


def _solvers(*infos: SolverInfo) -> dict[str, SolverInfo]:
    return {s.name: s for s in infos}


SOLVERS: dict[str, SolverInfo] = _solvers(
    SolverInfo("Euler", 1, False, stability_bound=2.0, description="forward Euler"),
    SolverInfo("Midpoint", 2, False, stability_bound=2.0, description="explicit midpoint"),
    SolverInfo("Heun", 2, True, stability_bound=2.0, description="Heun–Euler 2(1), adaptive"),
    SolverInfo("RK4", 4, False, stability_bound=2.785, description="classical Runge–Kutta"),
    SolverInfo("RK38", 4, False, stability_bound=2.785, description="Kutta's 3/8 rule"),
    SolverInfo("BS3", 3, True, stability_bound=2.513, description="Bogacki–Shampine 3(2)"),
    SolverInfo("DP5", 5, True, stability_bound=3.307, description="Dormand–Prince 5(4)"),
    SolverInfo("Tsit5", 5, True, stability_bound=3.507, description="Tsitouras 5(4)"),
    SolverInfo("DP8", 8, True, stability_bound=6.394, description="Dormand–Prince 8(5,3)"),
    SolverInfo(
        "DP87",
        8,
        True,
        stability_bound=5.167,
        description="Prince–Dormand 8(7) 13M (torchdiffeq's dopri8)",
    ),
    SolverInfo("Vern7", 7, True, stability_bound=4.6, description="Verner 7(6)"),
    SolverInfo("RadauIIA5", 5, True, implicit=True, stiff=True, description="Radau IIA, 3 stages"),
    SolverInfo("Rodas5P", 5, True, implicit=True, stiff=True, description="Rosenbrock 5(4)"),
    SolverInfo("BDF", 5, True, implicit=True, stiff=True, description="variable-order BDF/NDF 1–5"),
    SolverInfo(
        "FBDF", 5, True, implicit=True, stiff=True, description="fixed-leading-coefficient BDF"
    ),
    SolverInfo(
        "LSODA",
        12,
        True,
        implicit=True,
        stiff=True,
        auto_switching=True,
        description="Adams (non-stiff) / BDF (stiff), automatic switching",
    ),
)

#: Engines by name -> "module:Class" (imported lazily: a missing optional dependency
#: must not break ``import nesterovnode``). Earlier engines win when a name is shared.
ENGINE_ORDER: dict[str, str] = {
    "rk": "nesterovnode.solve.engines.rk:RKEngine",
    "torchdiffeq": "nesterovnode.solve.engines.torchdiffeq:TorchdiffeqEngine",
    "scipy": "nesterovnode.solve.engines.scipy:ScipyEngine",
    "julia": "nesterovnode.solve.engines.julia:JuliaEngine",
}
#: old engine names that still work
ENGINE_ALIASES = {"torch": "torchdiffeq"}

_ENGINE_CLASSES: dict[str, type[Engine]] = {}
_ENGINE_INSTANCES: dict[str, Engine] = {}


def register_engine(name: str, target: str | type[Engine]) -> None:
    """Add an engine (a class, or "module:Class" to import lazily). A registered engine
    gets the whole contract suite (tests/engines)."""
    if isinstance(target, str):
        ENGINE_ORDER[name] = target
        _ENGINE_CLASSES.pop(name, None)
    else:
        ENGINE_ORDER[name] = f"{target.__module__}:{target.__qualname__}"
        _ENGINE_CLASSES[name] = target
    _ENGINE_INSTANCES.pop(name, None)
    _RESOLVED.clear()


def engine_name(name: str) -> str:
    """The engine's current name (old aliases mapped); ValueError for an unknown one."""
    name = ENGINE_ALIASES.get(name, name)
    if name not in ENGINE_ORDER:
        raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join(ENGINE_ORDER)}")
    return name


def engine_class(name: str) -> type[Engine] | None:
    """The engine class, or None when its module is not part of this installation."""
    name = engine_name(name)
    if name not in _ENGINE_CLASSES:
        module, _, cls = ENGINE_ORDER[name].partition(":")
        try:
            _ENGINE_CLASSES[name] = getattr(importlib.import_module(module), cls)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
    return _ENGINE_CLASSES[name]


def get_engine(name: str) -> Engine:
    """The engine instance; raises ``EngineNotInstalledError`` with the install command."""
    name = engine_name(name)
    cls = engine_class(name)
    if cls is None:
        raise EngineNotInstalledError(f"the {name!r} engine is not part of this installation")
    if not cls.available():
        raise EngineNotInstalledError(
            f"{cls.unavailable_reason()}. To install it: {cls.install_hint}"
        )
    if name not in _ENGINE_INSTANCES:
        _ENGINE_INSTANCES[name] = cls()
    return _ENGINE_INSTANCES[name]


def clear_engine_caches() -> None:
    """Release what the engines in use keep between solves (captured CUDA graphs hold
    their models and GPU memory); called at the end of a training run."""
    for engine in _ENGINE_INSTANCES.values():
        engine.clear_caches()


def engines() -> dict[str, type[Engine]]:
    """Engine classes known to this installation (installed or not)."""
    out = {}
    for name in ENGINE_ORDER:
        cls = engine_class(name)
        if cls is not None:
            out[name] = cls
    return out


def solver_names() -> list[str]:
    """Canonical names any engine of this installation offers."""
    offered = {c for cls in engines().values() for c in cls.methods}
    return [n for n in SOLVERS if n in offered]


def sensitivity_names() -> list[str]:
    """Every sensitivity name: the generic ones and each engine's native ones."""
    out = list(GENERIC_SENSITIVITIES)
    for name, cls in engines().items():
        out += [f"{name}:{s}" for s in cls.native_sensitivities]
    return out


def open_method(name: str) -> SolverInfo:
    """What is known of a method an open engine takes by its own name: adaptive, treated as
    implicit (the engine gets exact Jacobians); auto-switching when named Auto…."""
    return SolverInfo(
        name,
        0,
        True,
        implicit=True,
        auto_switching=name.startswith("Auto"),
        description="passed to the engine as named",
    )


def _canonical(engine_cls: type[Engine], name: str) -> str | None:
    """Canonical name for ``name`` (canonical or native) within one engine."""
    if name in engine_cls.methods:
        return name
    for canonical, native in engine_cls.methods.items():
        if native == name or native.lower() == name.lower():
            return canonical
    lowered = {c.lower(): c for c in engine_cls.methods}
    return lowered.get(name.lower())


_RESOLVED: dict[tuple[str, str | None], tuple[Engine, SolverInfo, str]] = {}


def resolve(solver: str, engine: str | None = None) -> tuple[Engine, SolverInfo, str]:
    """``(engine, info, native_name)`` for a solver name and optional engine (cached).

    Raises ValueError for unknown names (listing the valid ones) and for a name the chosen
    engine lacks (saying which engines have it), ``EngineNotInstalledError`` for an engine
    that cannot run here.
    """
    key = (solver, engine)
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve(solver, engine)
    return _RESOLVED[key]


def _resolve(solver: str, engine: str | None = None) -> tuple[Engine, SolverInfo, str]:
    if not isinstance(solver, str) or not solver:
        raise TypeError(f"solver must be a name such as 'DP5', got {solver!r}")
    if ":" in solver:
        prefix, _, name = solver.partition(":")
        prefix = engine_name(prefix)
        if engine is not None and engine_name(engine) != prefix:
            raise ValueError(
                f"solver {solver!r} names the {prefix!r} engine but engine={engine!r} was given; "
                f"drop one of them"
            )
        engine, solver = prefix, name
    if engine is not None:
        engine = engine_name(engine)
        cls = engine_class(engine)
        if cls is None:
            raise EngineNotInstalledError(f"the {engine!r} engine is not part of this installation")
        canonical = _canonical(cls, solver)
        if canonical is None and cls.open_methods:
            # an open engine may vet the name first (julia: a grammar of algorithm specs),
            # so that a bad one is refused the same way whether or not it is installed
            check = getattr(cls, "check_open_method", None)
            if check is not None:
                solver = check(solver)
            return get_engine(engine), open_method(solver), solver
        if canonical is None:
            others = [n for n, c in engines().items() if _canonical(c, solver) is not None]
            where = f"; engines that have it: {', '.join(others)}" if others else ""
            raise ValueError(
                f"the {engine} engine has no solver {solver!r}{where}. "
                f"The {engine} engine offers: "
                + ", ".join(f"{c} ({n})" for c, n in cls.methods.items())
            )
        return get_engine(engine), SOLVERS[canonical], cls.methods[canonical]

    # Engines are imported in order and only as far as needed.
    errors = []
    for name in ENGINE_ORDER:
        cls = engine_class(name)
        canonical = None if cls is None else _canonical(cls, solver)
        if canonical is None:
            continue
        if cls.available():
            return get_engine(name), SOLVERS[canonical], cls.methods[canonical]
        errors.append(f"{cls.unavailable_reason()} (install: {cls.install_hint})")
    if not errors:
        raise ValueError(
            f"unknown solver {solver!r}; valid names: {', '.join(solver_names())} "
            f"(or 'engine:native', e.g. 'scipy:Radau')"
        )
    raise EngineNotInstalledError(
        f"solver {solver!r} is offered only by engines that are not installed: " + "; ".join(errors)
    )
