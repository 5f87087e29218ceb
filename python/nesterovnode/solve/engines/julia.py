"""The Julia engine: OrdinaryDiffEq.jl and SciMLSensitivity.jl through juliacall, running
the package ``julia/`` (NesterovNODEJulia) of this repository.

Julia is not installed on every machine, so nothing here imports juliacall until a solve
runs, and ``available()`` answers from ``shutil.which("julia")`` and
``importlib.util.find_spec`` without starting Julia; without Julia every julia path fails
at once (``EngineNotInstalledError``) with ``INSTALL_HINT``.

Install (see README, "Julia"): Julia itself, ``pip install -e ".[julia]"`` (juliacall),
then once, from the repository root, ``julia --project=. -e 'using Pkg; Pkg.instantiate()'``.
At the first solve the engine points juliacall at that environment by setting
``PYTHON_JULIACALL_EXE`` (the ``julia`` on PATH) and ``PYTHON_JULIACALL_PROJECT`` (the
repository root, or ``NESTEROVNODE_JULIA_ENV``) unless they are set already: juliapkg then
resolves nothing and nothing asks on stdin.

Two modes:

- native (``sensitivity="julia:GaussAdjoint"``, ``"julia:InterpolatingAdjoint"``,
  ``"julia:QuadratureAdjoint"``, ``"julia:BacksolveAdjoint"``): when the model's network
  is an MLP the layout of ``julia_layout.py`` describes (the point-cloud and time-series
  networks), the field itself runs in Julia on the flat θ (torch's ``parameters()``
  order) and SciMLSensitivity computes ∂L/∂y0 and ∂L/∂θ from ∂L/∂y at the output times
  (``options["autojacvec"]``: ZygoteVJP, EnzymeVJP, ReverseDiffVJP). Networks Julia does
  not mirror (the image convolutions, custom modules) run the same named adjoint in
  call-back mode: the field and its vector-Jacobian products are evaluated by torch.
- call-back (``integrate``, behind the NumPy bridge): any torch field, Julia's solver;
  ``"adjoint"``/``"adjoint-seminorm"`` are then the library's backsolve run by a Julia
  solver (the seminorm is not passed to Julia's norm: it runs as ``"adjoint"``).

Stats: ``sol.stats`` go to ``stats.extra`` as ``julia_<field>`` (nf, nw, njacs, …), the
retcode to ``stats.extra["julia_retcode"]``; a retcode other than Success raises
``SolverError`` (MaxIters: ``max_steps``; DtLessThanMin: ``underflow``; Unstable, DtNaN:
``nonfinite``). Auto-switching algorithms (``options["algorithm"] =
"AutoTsit5(Rosenbrock23())"``) report the method of each step as
``stats.extra["julia_alg_choice"]``. Arrays cross as NumPy views where the bridge allows
(Julia vectors are read and written in place through their array interface); CUDA tensors
are copied to the CPU (no DLPack path yet).

This engine cannot be tested where Julia is absent; its tests are marked ``julia``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..registry import SOLVERS
from .base import IntegrateRequest, Option
from .external import ExternalEngine, ODEProblem, _Bridge
from .julia_layout import LayoutError, flat_parameters, layout_json

#: the Julia environment juliacall loads (the top-level Project.toml, which points at julia/)
REPO_ROOT = Path(__file__).resolve().parents[4]

INSTALL_COMMAND = "julia --project=. -e 'using Pkg; Pkg.instantiate()'"

INSTALL_HINT = (
    "install Julia (juliaup: curl -fsSL https://install.julialang.org | sh), then "
    '`pip install -e ".[julia]"` in the nesterovnode clone, then '
    f"once, from the repository root, `{INSTALL_COMMAND}` (it instantiates julia/ without "
    "prompts)"
)

#: retcode -> failure reason of errors.HINTS
RETCODES = {
    "MaxIters": "max_steps",
    "DtLessThanMin": "underflow",
    "Unstable": "nonfinite",
    "DtNaN": "nonfinite",
}

SENSITIVITIES = {
    "GaussAdjoint": "SciMLSensitivity's GaussAdjoint (Gauss-Kronrod quadrature of dL/dθ)",
    "InterpolatingAdjoint": "SciMLSensitivity's InterpolatingAdjoint (forward interpolant)",
    "QuadratureAdjoint": "SciMLSensitivity's QuadratureAdjoint",
    "BacksolveAdjoint": "SciMLSensitivity's BacksolveAdjoint (y solved backwards)",
}

_MODULE = None


def environment() -> Path:
    """The Julia environment folder (``NESTEROVNODE_JULIA_ENV`` or the repository root)."""
    return Path(os.environ.get("NESTEROVNODE_JULIA_ENV", REPO_ROOT))


def julia_module():
    """``NesterovNODEJulia`` through juliacall (imported on first use only)."""
    global _MODULE
    if _MODULE is None:
        exe = shutil.which("julia")
        if not JuliaEngine.available():
            from ..errors import EngineNotInstalledError

            raise EngineNotInstalledError(f"{JuliaEngine.unavailable_reason()}. {INSTALL_HINT}")
        if not (
            os.environ.get("PYTHON_JULIACALL_EXE") or os.environ.get("PYTHON_JULIACALL_PROJECT")
        ):
            os.environ["PYTHON_JULIACALL_EXE"] = exe
            os.environ["PYTHON_JULIACALL_PROJECT"] = str(environment())
        from juliacall import Main as jl

        try:
            jl.seval("using NesterovNODEJulia")
        except Exception as exc:  # not instantiated
            raise RuntimeError(
                f"Julia cannot load NesterovNODEJulia ({exc}); {INSTALL_HINT}"
            ) from exc
        _MODULE = jl.NesterovNODEJulia
    return _MODULE


def _write(dest, values) -> None:
    """Write into a Julia vector in place (its array interface is a writable view)."""
    np.asarray(dest)[...] = values


class _Phase:
    """Which recorder the call-back evaluations report to (forward, then backward)."""

    def __init__(self, recorder):
        self.recorder = recorder


class JuliaEngine(ExternalEngine):
    """OrdinaryDiffEq.jl's solvers and SciMLSensitivity's adjoints, through juliacall."""

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
    options = {
        **ExternalEngine.options,
        "algorithm": Option(
            (str, type(None)),
            None,
            "an OrdinaryDiffEq constructor expression run instead of the solver, e.g. "
            "'AutoTsit5(Rosenbrock23())' or 'KenCarp4()'",
        ),
        "autojacvec": Option(
            str,
            "ZygoteVJP",
            "the vector-Jacobian products of the native adjoints",
            choices=("ZygoteVJP", "EnzymeVJP", "ReverseDiffVJP"),
        ),
        "mode": Option(
            str,
            "auto",
            "native sensitivities: 'auto' (the field in Julia when its layout is mirrored), "
            "'native' (refuse otherwise) or 'callback' (the field evaluated by torch)",
            choices=("auto", "native", "callback"),
        ),
    }
    native_sensitivities = SENSITIVITIES
    install_hint = INSTALL_HINT
    requires = ("juliacall",)
    open_methods = True  # any OrdinaryDiffEq algorithm: "julia:AutoTsit5(Rosenbrock23())"

    @classmethod
    def available(cls) -> bool:
        return shutil.which("julia") is not None and super().available()

    @classmethod
    def unavailable_reason(cls) -> str:
        if shutil.which("julia") is None:
            return "the julia engine needs Julia, and no `julia` executable is on PATH"
        return super().unavailable_reason()

    # -- shared ---------------------------------------------------------------------------
    @staticmethod
    def _algorithm(request_or_problem) -> str:
        return request_or_problem.options.get("algorithm") or request_or_problem.method

    @staticmethod
    def _record_stats(recorder, out, prefix="julia_") -> None:
        stats = {str(k): int(v) for k, v in dict(out.stats).items()}
        for key, value in stats.items():
            recorder.add(prefix + key, value)
        recorder.set(prefix + "retcode", str(out.retcode))

    @staticmethod
    def _check(recorder, retcode: str, t_reached: float) -> None:
        if retcode in ("Success", "Default", "Terminated"):
            return
        reason = RETCODES.get(retcode)
        raise recorder.fail(
            t_reached, reason, "" if reason else f"Julia returned retcode {retcode}"
        )

    # -- call-back mode, behind the bridge --------------------------------------------------
    def integrate_arrays(self, problem: ODEProblem) -> np.ndarray:  # pragma: no cover
        """Solve with the named OrdinaryDiffEq algorithm; steps land on the output times."""
        mod = julia_module()

        def f(du, u, t):
            _write(du, problem.fun(float(t), np.asarray(u)))

        implicit = _implicit(problem.solver) or problem.options.get("algorithm")
        out = mod.solve_forward(
            mod.PyRHS(f, None, 0),
            problem.y0,
            np.zeros(0),
            np.asarray(problem.t, dtype=np.float64),
            alg=self._algorithm(problem),
            reltol=problem.rtol,
            abstol=problem.atol,
            dt=problem.dt,
            maxiters=problem.recorder.max_steps,
            finite_diff=bool(implicit),
        )
        steps = np.asarray(out.t, dtype=np.float64)
        for t0, t1 in zip(steps[:-1], steps[1:]):
            problem.on_attempt(float(t0), float(t1 - t0))
            problem.on_accept(float(t0), float(t1 - t0))
        self._record_stats(problem.recorder, out)
        choice = list(np.asarray(out.alg_choice, dtype=np.int64))
        if choice:
            problem.set_extra("julia_alg_choice", [int(c) for c in choice])
        self._check(problem.recorder, str(out.retcode), float(steps[-1]) if len(steps) else None)
        return np.asarray(out.u, dtype=np.float64).T.copy()

    # -- native sensitivities ---------------------------------------------------------------
    def solve_native(self, sensitivity, dynamics, y0, ts, request: IntegrateRequest):
        """``[len(ts), *y0.shape]`` with gradients by SciMLSensitivity's ``sensitivity``."""
        mode = request.options["mode"]
        layout = None
        if mode != "callback":
            try:
                layout = layout_json(dynamics)
            except LayoutError as exc:
                if mode == "native":
                    raise ValueError(
                        f"options['mode'] = 'native' but the field cannot run in Julia: {exc}; "
                        f"use mode 'auto' or 'callback'"
                    ) from exc
        mod = julia_module()  # fails at once, with the install command, without Julia
        params = tuple(dynamics.parameters())
        run = _NativeRun(self, mod, sensitivity, dynamics, layout, y0, ts, request)
        return _JuliaAdjoint.apply(run, y0, *params)


class _NativeRun:
    """One native solve: the forward pass and, later, its pullback."""

    def __init__(self, engine, mod, sensitivity, dynamics, layout, y0, ts, request):
        self.engine, self.mod, self.sensitivity = engine, mod, sensitivity
        self.dynamics, self.layout, self.request = dynamics, layout, request
        self.shape, self.dtype, self.device = y0.shape, y0.dtype, y0.device
        self.times = np.asarray(ts.detach().cpu().tolist(), dtype=np.float64)
        self.params = tuple(dynamics.parameters())
        self.phase = _Phase(request.recorder)
        from ..stats import Recorder

        self.backward_recorder = Recorder(request.stats, backward=True)
        self.pullback = None

    def rhs(self):
        if self.layout is not None:
            return self.mod.FieldFn(self.mod.parse_layout(self.layout))
        from ..adjoint import DynamicsField

        like = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        bridge = _Bridge(DynamicsField(self.dynamics), (like,))
        dyn, params, phase = self.dynamics, self.params, self.phase

        def time_(t):
            return torch.tensor(float(t), dtype=self.dtype, device=self.device)

        def f(du, u, t):
            phase.recorder.evaluations(1)
            with torch.no_grad():
                out = dyn(time_(t), bridge.tensors(np.asarray(u))[0])
            _write(du, out.detach().reshape(-1).to("cpu", torch.float64).numpy())

        def vjp(ju, jtheta, u, t, v):
            phase.recorder.evaluations(1)
            with torch.enable_grad():
                y = bridge.tensors(np.asarray(u))[0].detach().requires_grad_()
                out = dyn(time_(t), y)
                cot = bridge.tensors(np.asarray(v))[0]
                grads = torch.autograd.grad(out, (y, *params), cot, allow_unused=True)
            _write(ju, grads[0].reshape(-1).to("cpu", torch.float64).numpy())
            if params:
                flat = [
                    (torch.zeros_like(p) if g is None else g).reshape(-1).to("cpu", torch.float64)
                    for p, g in zip(params, grads[1:])
                ]
                _write(jtheta, torch.cat(flat).numpy())

        n_theta = sum(p.numel() for p in params)
        return self.mod.PyRHS(f, vjp, n_theta)

    def forward(self, y0: torch.Tensor) -> torch.Tensor:
        request = self.request
        rhs = self.rhs()
        implicit = _implicit(request.solver) or request.options.get("algorithm")
        u0 = y0.detach().reshape(-1).to("cpu", torch.float64).numpy()
        theta = flat_parameters(self.dynamics).numpy()
        out = self.mod.solve_with_pullback(
            rhs,
            u0,
            theta,
            self.times,
            alg=JuliaEngine._algorithm(request),
            reltol=request.rtol,
            abstol=request.atol,
            dt=request.dt,
            maxiters=request.recorder.max_steps,
            sensealg=self.sensitivity,
            autojacvec=request.options["autojacvec"],
            finite_diff=bool(implicit and self.layout is None),
        )
        if self.layout is not None:
            request.recorder.evaluations(int(self.mod.calls(rhs)))
        stats = {str(k): int(v) for k, v in dict(out.stats).items()}
        request.stats.steps_accepted += stats.get("naccept", 0)
        request.stats.steps_rejected += stats.get("nreject", 0)
        JuliaEngine._record_stats(request.recorder, out)
        JuliaEngine._check(request.recorder, str(out.retcode), float(out.t_reached))
        self.pullback = out.pullback
        Y = np.asarray(out.u, dtype=np.float64)  # n x len(ts)
        ys = torch.from_numpy(Y.T.copy()).reshape(len(self.times), *self.shape)
        return ys.to(dtype=self.dtype, device=self.device)

    def backward(self, dys: torch.Tensor):
        self.phase.recorder = self.backward_recorder
        start = time.perf_counter()
        dY = dys.detach().reshape(len(self.times), -1).to("cpu", torch.float64).numpy().T.copy()
        du0, dtheta, calls = self.pullback(dY)
        self.request.stats.wall_time_backward += time.perf_counter() - start
        if self.layout is not None:
            self.backward_recorder.evaluations(int(calls))
        du0 = torch.from_numpy(np.asarray(du0, dtype=np.float64).copy())
        du0 = du0.reshape(self.shape).to(dtype=self.dtype, device=self.device)
        dtheta = torch.from_numpy(np.asarray(dtheta, dtype=np.float64).copy())
        grads, offset = [], 0
        for p in self.params:
            g = dtheta[offset : offset + p.numel()].reshape(p.shape)
            offset += p.numel()
            grads.append(g.to(dtype=p.dtype, device=p.device) if p.requires_grad else None)
        return du0, grads


class _JuliaAdjoint(torch.autograd.Function):
    """ys = Julia's solve; backward = SciMLSensitivity's pullback of it."""

    @staticmethod
    def forward(ctx, run: _NativeRun, y0, *params):
        ctx.run = run
        return run.forward(y0)

    @staticmethod
    def backward(ctx, dys):
        du0, grads = ctx.run.backward(dys)
        return (None, du0, *grads)


def _implicit(solver: str) -> bool:
    """Implicit, or a name Julia takes that the registry does not know (open_methods)."""
    info = SOLVERS.get(solver)
    return info is None or info.implicit
