"""The Julia engine: DifferentialEquations.jl through diffeqpy/juliacall, behind the bridge.

Julia is not installed on every machine, so nothing here imports juliacall or diffeqpy
until a solve runs, and ``available()`` answers from ``shutil.which("julia")`` and
``importlib.util.find_spec`` without starting Julia (it never prompts on stdin).

To install: Julia itself (juliaup: ``curl -fsSL https://install.julialang.org | sh``),
then ``pip install nesterovnode[julia]`` (juliacall, diffeqpy), then once
``python -c "import diffeqpy; diffeqpy.install()"`` (installs DifferentialEquations.jl).
The repository's ``Project.toml`` pins the compat bounds of OrdinaryDiffEq and
SciMLSensitivity used with this engine; point ``JULIA_PROJECT`` (or juliapkg's project)
at it to reproduce them.

How it runs: the bridge (``external.py``) gives the engine a NumPy vector field evaluated by
torch and, in backward, the adjoint system ``[y, a, dL/dθ]`` with its exact Jacobians;
``integrate`` builds an ``ODEProblem`` with a Python right-hand side (``f(u, p, t)``) and
solves it with the named OrdinaryDiffEq algorithm at the output times. The adjoint is thus
the bridge's backsolve adjoint run by a Julia solver; a Julia-side vector field with
SciMLSensitivity's adjoints (parameters passed as one flat vector) is the next step and is
not part of this engine yet. The seminorm is not passed to Julia's norm:
``"adjoint-seminorm"`` runs as ``"adjoint"`` here.

This engine cannot be tested where Julia is absent; its tests are marked ``julia``.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np

from ..registry import SOLVERS
from .external import ExternalEngine, ODEProblem

INSTALL_HINT = (
    "install Julia (juliaup: curl -fsSL https://install.julialang.org | sh), then "
    '`pip install -e ".[julia]"` in the nesterovnode clone, then run once '
    '`python -c "import diffeqpy; diffeqpy.install()"`'
)


class JuliaEngine(ExternalEngine):
    """OrdinaryDiffEq.jl's solvers (through diffeqpy) behind the torch bridge."""

    name = "julia"
    methods = {
        "Euler": "Euler",
        "Midpoint": "Midpoint",
        "Heun": "Heun",
        "RK4": "RK4",  # the classical method, as the rk engine's RK4
        "BS3": "BS3",
        "DP5": "DP5",
        "Tsit5": "Tsit5",
        "DP8": "DP8",
        "Vern7": "Vern7",
        "RadauIIA5": "RadauIIA5",
        "Rodas5P": "Rodas5P",
        "FBDF": "FBDF",
        "BDF": "QNDF",
    }
    install_hint = INSTALL_HINT

    @classmethod
    def available(cls) -> bool:
        if shutil.which("julia") is None:
            return False
        return all(importlib.util.find_spec(m) is not None for m in ("juliacall", "diffeqpy"))

    @classmethod
    def unavailable_reason(cls) -> str:
        if shutil.which("julia") is None:
            return "the julia engine needs Julia, and no `julia` executable is on PATH"
        missing = [m for m in ("juliacall", "diffeqpy") if importlib.util.find_spec(m) is None]
        return f"the julia engine needs the Python packages {', '.join(missing)}"

    def integrate_arrays(self, problem: ODEProblem) -> np.ndarray:  # pragma: no cover
        """Solve with ``OrdinaryDiffEq.<method>`` and save at ``problem.t``."""
        from diffeqpy import de

        method = problem.method
        # implicit methods get the exact Jacobian, and no automatic differentiation of the
        # Python right-hand side (ForwardDiff cannot see through the callback)
        implicit = SOLVERS[problem.solver].implicit

        def f(u, p, t):
            return problem.fun(float(t), np.asarray(u, dtype=np.float64))

        if implicit and problem.jac is not None:

            def jac(u, p, t):
                return problem.jac(float(t), np.asarray(u, dtype=np.float64))

            fun = de.ODEFunction(f, jac=jac)
        else:
            fun = de.ODEFunction(f)
        t = np.asarray(problem.t, dtype=np.float64)
        prob = de.ODEProblem(fun, np.array(problem.y0, dtype=np.float64), (t[0], t[-1]))
        ctor = getattr(de, method)
        alg = None
        if implicit:
            try:
                alg = ctor(autodiff=False)
            except Exception:  # newer OrdinaryDiffEq spells it autodiff=AutoFiniteDiff()
                alg = None
        alg = ctor() if alg is None else alg
        # Every step is saved (to record it) and lands on the output times (tstops).
        kwargs = dict(reltol=problem.rtol, abstol=problem.atol, tstops=list(t))
        if problem.recorder.max_steps is not None:
            kwargs["maxiters"] = int(problem.recorder.max_steps)
        if problem.dt is not None:  # a fixed step, for any method
            kwargs.update(adaptive=False, dt=float(problem.dt))
        sol = de.solve(prob, alg, **kwargs)
        retcode = str(sol.retcode)
        stats = sol.stats
        problem.add_count("njev", int(stats.njacs))
        problem.add_count("nlu", int(stats.nw))
        problem.add_count("julia_nreject", int(stats.nreject))  # counted, not located
        times = np.asarray(sol.t, dtype=np.float64)
        for t0, t1 in zip(times[:-1], times[1:]):
            problem.on_attempt(float(t0), float(t1 - t0))
            problem.on_accept(float(t0), float(t1 - t0))
        if not retcode.endswith("Success"):
            t_reached = float(times[-1]) if len(times) else float(t[0])
            raise problem.fail(None, t_reached, f"Julia returned retcode {retcode}")
        return np.array([np.asarray(sol(float(ti)), dtype=np.float64) for ti in t])
