"""nesterovnode: momentum neural ODEs on solver engines chosen by name.

import nesterovnode as nno
dyn = nno.NesterovNODE(f, r=3.0)
y0 = dyn.initial_state(t0, h0, v0)
sol = nno.solve(dyn, y0, ts, solver="DP5", rtol=1e-10, atol=1e-12)
h = dyn.readout(ts, sol.ys)
"""

from .dynamics import (
    ANODE,
    GHBNODE,
    HBNODE,
    MODELS,
    NODE,
    SONODE,
    Dynamics,
    GNesterovNODE,
    NesterovNODE,
)
from .layers import ODEBlock
from .solve import (
    SOLVERS,
    EngineNotInstalledError,
    Solution,
    SolveConfig,
    SolverError,
    SolveStats,
    solve,
    solver_names,
)

__version__ = "0.1.0"

__all__ = [
    "ANODE",
    "GHBNODE",
    "HBNODE",
    "MODELS",
    "NODE",
    "SOLVERS",
    "SONODE",
    "SolveConfig",
    "Dynamics",
    "EngineNotInstalledError",
    "GNesterovNODE",
    "NesterovNODE",
    "ODEBlock",
    "SolveStats",
    "Solution",
    "SolverError",
    "solve",
    "solver_names",
]
