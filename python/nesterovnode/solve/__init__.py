"""How an ODE is solved: ``solve()``, the solver registry, engines and statistics."""

from .api import SENSITIVITIES, Solution, as_time_grid, solve
from .bridge import ExternalEngine, ODEProblem, bridge_solve
from .engine import Engine, SolveRequest
from .errors import EngineNotInstalledError, SolverError
from .registry import (
    SOLVERS,
    SolverInfo,
    clear_engine_caches,
    engines,
    get_engine,
    register_engine,
    resolve,
    solver_names,
)
from .stats import CountedField, SolveStats

__all__ = [
    "SENSITIVITIES",
    "SOLVERS",
    "CountedField",
    "Engine",
    "EngineNotInstalledError",
    "ExternalEngine",
    "ODEProblem",
    "SolveRequest",
    "SolveStats",
    "Solution",
    "SolverError",
    "SolverInfo",
    "as_time_grid",
    "bridge_solve",
    "clear_engine_caches",
    "engines",
    "get_engine",
    "register_engine",
    "resolve",
    "solve",
    "solver_names",
]
