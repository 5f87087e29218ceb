"""The SciPy engine: ``scipy.integrate``'s ODE solvers behind the torch bridge.

=============  ==========  ==============================================================
canonical      SciPy       notes
=============  ==========  ==============================================================
DP5            RK45        Dormand–Prince 5(4), explicit
BS3            RK23        Bogacki–Shampine 3(2), explicit
DP8            DOP853      Dormand–Prince 8(5,3), explicit
RadauIIA5      Radau       implicit Runge–Kutta, order 5, L-stable
BDF            BDF         variable-order (1–5) numerical differentiation formulas
LSODA          LSODA       ODEPACK: Adams (non-stiff) / BDF (stiff), switches automatically
=============  ==========  ==============================================================

The solver objects of ``scipy.integrate`` are stepped by hand (``OdeSolver.step``), so each
accepted step is recorded (``stats.step_times``/``step_sizes``) and outputs between steps
come from the solver's dense output. Implicit methods get the exact Jacobian from torch
autograd (the bridge's ``jac``/``adjoint_jac``), never finite differences.

Statistics: NFE through the bridge (every call of the field); accepted steps; rejected
steps of the explicit Runge–Kutta methods (each attempt costs exactly ``n_stages``
evaluations, the last at ``t + h``, which gives the count and the size of every rejected
attempt; SciPy does not report the rejections of Radau, BDF and LSODA, and
``extra["rejections_reported"]`` is 0 for them); ``extra``: ``njev`` (Jacobian
evaluations), ``nlu`` (LU decompositions), and for LSODA ``lsoda_methods`` (the method of
each accepted forward step: 1 = Adams, 2 = BDF, read from ODEPACK's ``MUSED``),
``lsoda_switches`` and ``lsoda_bdf_steps``. Backward-phase counts carry ``_backward``.

Seminorm: SciPy's error norm is the RMS of ``err / (atol + rtol |y|)`` over all
components; the parameter channels get ``atol = inf`` (weight 0) and the remaining
tolerances are scaled by ``sqrt(m / N)``, so the norm is exactly the RMS over the ``m``
state and adjoint channels (LSODA's norm is a max-norm: no scaling). An RMS over fewer
channels can be the stricter one: the seminorm does not always take fewer backward steps.

A blow-up where the solver's accepted steps stop advancing time (LSODA near a
finite-time singularity) is detected after ``STALL_STEPS`` such steps and reported as
``SolverError`` (reason "stalled") instead of running to max_steps.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from ..grid import direction as time_direction
from ..registry import SOLVERS
from .base import Option
from .external import ExternalEngine, ODEProblem

#: methods whose dense output is below their order: solved one output interval at a time
PER_INTERVAL = {"RadauIIA5"}
#: accepted steps in a row of (relatively) zero length before time counts as stalled
STALL_STEPS = 5


class ScipyEngine(ExternalEngine):
    """``scipy.integrate``'s RK45, RK23, DOP853, Radau, BDF and LSODA."""

    name = "scipy"
    methods = {
        "DP5": "RK45",
        "BS3": "RK23",
        "DP8": "DOP853",
        "RadauIIA5": "Radau",
        "BDF": "BDF",
        "LSODA": "LSODA",
    }
    install_hint = "pip install scipy"
    requires = ("scipy",)
    fixed_steps = frozenset()
    #: SciPy's dense outputs: RK45 4th order, RK23 3rd (Hermite), DOP853 7th (three extra
    #: evaluations per step that holds output times, so its NFE does grow with them), BDF
    #: and LSODA their current order. Radau's collocation polynomial is only of order 3,
    #: so Radau solves one output interval at a time (its steps end on every output time).
    dense_methods = frozenset({"DP5", "BS3", "BDF", "LSODA"})
    options = {
        **ExternalEngine.options,
        "max_step": Option((int, float), None, "SciPy's max_step"),
        "min_step": Option((int, float), None, "SciPy's min_step"),
        "blas_threads": Option(
            int, None, "OpenBLAS threads during the solve (default 1 up to 2000 equations)"
        ),
    }

    def integrate_arrays(self, problem: ODEProblem) -> np.ndarray:
        """Step ``scipy.integrate.<method>`` from ``t[0]`` to ``t[-1]``; states at ``t``.

        ``problem.options``: ``max_step``/``min_step`` (passed to SciPy), ``blas_threads``
        (OpenBLAS threads during the solve; default 1 for systems up to 2000 equations,
        where a multi-threaded LU only competes with torch for the cores).
        """
        if problem.dt is not None:
            raise ValueError(
                f"SciPy's solvers have no fixed-step mode; for {problem.solver} at a fixed dt "
                f"use engine='rk'"
            )
        threads = problem.options.get("blas_threads")
        threads = (1 if problem.n <= 2000 else None) if threads is None else threads
        with _BlasThreads(threads):
            if problem.solver not in PER_INTERVAL or len(problem.t) == 2:
                return self._integrate(problem)
            out = [np.asarray(problem.y0, dtype=np.float64)]
            first = problem.first_step
            for a, b in zip(problem.t[:-1], problem.t[1:]):  # steps end on every output
                piece = dataclasses.replace(
                    problem, y0=out[-1], t=np.array([a, b]), first_step=first
                )
                out.append(self._integrate(piece)[-1])
                first = problem.recorder.next_step  # the next piece continues this one
            return np.stack(out)

    def _integrate(self, problem: ODEProblem) -> np.ndarray:
        import scipy.integrate as si

        method = problem.method
        cls = getattr(si, method)
        t = np.asarray(problem.t, dtype=np.float64)
        n = problem.n
        explicit = not SOLVERS[problem.solver].implicit
        rtol, atol = _tolerances(problem, method)

        calls: list[float] = []

        def fun(tt, y):
            calls.append(tt)
            return problem.fun(tt, y)

        kwargs = dict(rtol=rtol, atol=atol)
        if not explicit and problem.jac is not None:
            kwargs["jac"] = problem.jac
        for key in ("max_step", "min_step"):
            if problem.options.get(key) is not None:
                kwargs[key] = problem.options[key]
        if problem.first_step is not None:  # SciPy refuses one beyond the interval
            kwargs["first_step"] = min(problem.first_step, abs(t[-1] - t[0]))
        solver = cls(fun, t[0], np.array(problem.y0, dtype=np.float64), t[-1], **kwargs)

        out = np.empty((len(t), n))
        out[0] = problem.y0
        k = 1
        direction = time_direction(t)
        lsoda_methods: list[int] = []
        n_stages = getattr(cls, "n_stages", None)
        stalled = 0
        while k < len(t):
            t_old = solver.t
            calls.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                message = solver.step()
            if solver.status == "failed":
                details = "; ".join(str(w.message) for w in caught) or message
                if "step size" in details.lower():
                    raise problem.fail("underflow", float(t_old), details)
                raise problem.fail(None, float(t_old), details or "unknown failure")
            for w in caught:  # pass on warnings that are not failures
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            t_new = solver.t
            h = t_new - t_old
            if explicit and n_stages:
                attempts = max(1, len(calls) // n_stages)
                for j in range(attempts - 1):
                    h_rej = calls[(j + 1) * n_stages - 1] - t_old
                    problem.on_attempt(t_old, h_rej)
                    problem.on_reject(t_old, h_rej)
            problem.on_attempt(t_old, h)
            problem.on_accept(t_old, h)
            if method == "LSODA":
                lsoda_methods.append(int(solver._lsoda_solver._integrator.iwork[18]))
            if not np.all(np.isfinite(solver.y)):
                raise problem.fail("nonfinite", float(t_new))
            # A solver whose accepted steps no longer advance time (LSODA at a blow-up)
            # would run to max_steps, or forever: that is a blow-up, say so.
            stalled = stalled + 1 if abs(h) <= 10 * np.spacing(max(1.0, abs(t_old))) else 0
            if stalled >= STALL_STEPS:
                raise problem.fail("stalled", float(t_new), f"{stalled} steps of size {h:.3g}")
            dense = None
            while k < len(t) and direction * (t[k] - t_new) <= 0:
                if t[k] == t_new:
                    out[k] = solver.y
                else:
                    dense = solver.dense_output() if dense is None else dense
                    out[k] = dense(t[k])
                k += 1
            if solver.status == "finished" and k < len(t):
                raise problem.fail(None, float(t_new), f"the solver stopped before t = {t[k]}")

        # the step SciPy's controller proposed after the last one (LSODA keeps it inside
        # ODEPACK: None, and a continuing solve takes LSODA's own rule)
        proposed = getattr(solver, "h_abs", None)
        problem.recorder.next_step = None if proposed is None else float(proposed)
        problem.set_extra("rejections_reported", int(explicit))
        if not explicit:
            problem.add_count("njev", int(solver.njev))
            problem.add_count("nlu", int(solver.nlu))
        if method == "LSODA":
            switches = int(sum(a != b for a, b in zip(lsoda_methods[:-1], lsoda_methods[1:])))
            problem.add_count("lsoda_switches", switches)
            problem.add_count("lsoda_bdf_steps", int(sum(m == 2 for m in lsoda_methods)))
            if not problem.backward:
                problem.recorder.stats.extra.setdefault("lsoda_methods", []).extend(lsoda_methods)
        return out


def _tolerances(problem: ODEProblem, method: str):
    """rtol, atol for SciPy, with the seminorm (see the module docstring)."""
    n, m = problem.n, problem.error_channels
    if m is None or m >= n:
        return problem.rtol, problem.atol
    c = 1.0 if method == "LSODA" else math.sqrt(m / n)
    atol = np.full(n, np.inf)
    atol[:m] = problem.atol * c
    return problem.rtol * c, atol


_OPENBLAS_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


class _BlasThreads:
    """Context manager: SciPy's bundled OpenBLAS with ``n`` threads while it is active.

    On a small dense system (the Radau/BDF Jacobians of a neural ODE batch) OpenBLAS's
    thread pool competes with torch's OpenMP threads for the cores and a 150x150 LU can
    take 50 ms instead of 0.2 ms; one thread is the right choice there. Uses threadpoolctl
    when installed, else the ``*openblas*_set_num_threads`` symbols of the OpenBLAS copies
    bundled in the numpy/scipy wheels; does nothing when neither is found.
    """

    _libs: list | None = None

    def __init__(self, n: int | None):
        self.n = n
        self._restore: list = []
        self._ctl = None

    @classmethod
    def _find(cls) -> list:
        if cls._libs is not None:
            return cls._libs
        import ctypes
        import glob
        import os

        import numpy
        import scipy

        libs = []
        for pkg in (scipy, numpy):
            folder = os.path.join(
                os.path.dirname(os.path.dirname(pkg.__file__)), pkg.__name__ + ".libs"
            )
            for path in glob.glob(os.path.join(folder, "*openblas*.so*")):
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for get_name, set_name in _OPENBLAS_SYMBOLS:
                    getter = getattr(lib, get_name, None)
                    setter = getattr(lib, set_name, None)
                    if getter is not None and setter is not None:
                        getter.restype = ctypes.c_int
                        setter.argtypes = [ctypes.c_int]
                        libs.append((getter, setter))
                        break
        cls._libs = libs
        return libs

    def __enter__(self):
        if self.n is None:
            return self
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            for getter, setter in self._find():
                self._restore.append((setter, getter()))
                setter(self.n)
        else:
            self._ctl = threadpool_limits(self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._ctl is not None:
            self._ctl.restore_original_limits()
        for setter, value in self._restore:
            setter(value)
        return False
