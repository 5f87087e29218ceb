"""How an ODE is solved: ``solve()``, ``SolveConfig``, the solver and engine registry,
the one adjoint, statistics and errors. Engines live in ``solve/engines``."""

from .api import Solution, as_time_grid, solve
from .config import SolveConfig
from .engines.base import Engine, IntegrateRequest, Option
from .engines.external import ExternalEngine, ODEProblem
from .errors import HINTS, EngineNotInstalledError, SolverError
from .registry import (
    GENERIC_SENSITIVITIES,
    SOLVERS,
    SolverInfo,
    clear_engine_caches,
    engines,
    get_engine,
    register_engine,
    resolve,
    sensitivity_names,
    solver_names,
)
from .stats import Recorder, SolveStats

__all__ = [
    "GENERIC_SENSITIVITIES",
    "HINTS",
    "SOLVERS",
    "Engine",
    "EngineNotInstalledError",
    "ExternalEngine",
    "IntegrateRequest",
    "ODEProblem",
    "Option",
    "Recorder",
    "SolveConfig",
    "SolveStats",
    "Solution",
    "SolverError",
    "SolverInfo",
    "as_time_grid",
    "clear_engine_caches",
    "engines",
    "get_engine",
    "register_engine",
    "resolve",
    "sensitivity_names",
    "solve",
    "solver_names",
]
