"""The Julia engine: OrdinaryDiffEq.jl and SciMLSensitivity.jl through juliacall, running
the Julia package of this repository (NesterovNODEJulia, ``julia/``).

Install: ``pip install "nesterovnode[julia]"``. That is all: at the first ``engine="julia"``
solve, juliacall (through juliapkg) installs a Julia and the packages declared in
``nesterovnode/juliapkg.json`` (NesterovNODEJulia with its dependencies at their [compat]
bounds, and PythonCall pinned to juliacall's own version) into the Python environment's
Julia project; nothing asks on stdin. Your own Julia and environment: set
``NESTEROVNODE_JULIA_ENV`` to an instantiated environment that has NesterovNODEJulia and
PythonCall (the engine then hands it to juliacall as it is, with the ``julia`` on PATH or
``PYTHON_JULIAPKG_EXE``), or use juliapkg's own variables (``PYTHON_JULIAPKG_PROJECT``,
``PYTHON_JULIAPKG_EXE``, ``PYTHON_JULIAPKG_OFFLINE``). A session that already runs Julia
(``import juliacall`` or ``from diffeqpy import de`` earlier in the process) is used as
it is: one Julia per process. See docs/julia.md.

Nothing here imports juliacall until a solve runs; ``available()`` only looks for the
package. Every julia path fails at once, with ``INSTALL_HINT``, where juliacall is not
installed or Julia cannot start. Import order: juliacall warns that importing torch
before it may crash on some platforms (pytorch issue 78829), and nesterovnode imports
torch; where that happens, ``import juliacall`` before ``import nesterovnode``.

Algorithm specs (``solver="julia:KenCarp4(autodiff=AutoFiniteDiff())"``,
``options["algorithm"]``) are checked in Python by ``julia_spec.check_algorithm_spec``
before Julia is looked for, and again in Julia before any constructor is called.

Two modes:

- native (``sensitivity="julia:GaussAdjoint"``, ``"julia:InterpolatingAdjoint"``,
  ``"julia:QuadratureAdjoint"``, ``"julia:BacksolveAdjoint"``): when the model's network
  is an MLP the layout of ``dynamics/layout.py`` describes (the point-cloud and
  time-series networks; the model's ``julia_layout`` hook) and the state is ``[B, n]``
  (``[B, 2, n]`` for second-order models), the field runs in Julia on the flat θ
  (torch's ``parameters()`` order) and SciMLSensitivity computes ∂L/∂y0 and ∂L/∂θ from
  ∂L/∂y at the output times (``options["autojacvec"]``: ZygoteVJP, EnzymeVJP,
  ReverseDiffVJP). QuadratureAdjoint integrates with the solve's rtol/atol. CUDA tensors
  stay on the GPU (DLPack, see ``julia_arrays.py``) where Julia has CUDA.jl and
  DLPack.jl (``enable_gpu()``), and are copied to the host otherwise. Other networks and
  state shapes run the same named adjoint in call-back mode: the field and its
  vector-Jacobian products are evaluated by torch, which only ZygoteVJP can read
  (another ``autojacvec`` is refused there).
- call-back (``integrate``, behind the NumPy bridge): any torch field, Julia's solver;
  ``"adjoint"``/``"adjoint-seminorm"`` are then the library's backsolve run by a Julia
  solver (the seminorm is not passed to Julia's norm: it runs as ``"adjoint"``).

Stats: ``sol.stats`` go to ``stats.extra`` as ``julia_<field>`` (nf, nw, njacs, …), the
retcode to ``stats.extra["julia_retcode"]`` (``julia_retcode_backward`` for the adjoint's
backward solve). A retcode ``SciMLBase.successful_retcode`` rejects raises
``SolverError`` (MaxIters: ``max_steps``; DtLessThanMin: ``underflow``; Unstable, DtNaN:
``nonfinite``) with the time the forward solve reached; a failed backward solve raises
from ``.backward()``. Auto-switching algorithms (``"AutoTsit5(Rosenbrock23())"``) report
the method of each step as ``stats.extra["julia_alg_choice"]``.

This engine cannot be tested where Julia is absent; its tests are marked ``julia``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import EngineNotInstalledError
from ..fields import flat_parameters
from ..registry import SOLVERS
from .base import IntegrateRequest, Option
from .external import ExternalEngine, ODEProblem, _Bridge
from .julia_arrays import handover, received
from .julia_spec import check_algorithm_spec

#: the folder of the Python package (its juliapkg.json declares the Julia packages)
PACKAGE_DIR = Path(__file__).resolve().parents[2]
JULIAPKG_JSON = PACKAGE_DIR / "juliapkg.json"

#: the variable naming a Julia environment of the user's own (used as it is)
ENV_VARIABLE = "NESTEROVNODE_JULIA_ENV"

INSTALL_COMMAND = 'pip install "nesterovnode[julia]"'

INSTALL_HINT = (
    f"`{INSTALL_COMMAND}` (in a clone: `pip install -e '.[julia]'`); the first julia "
    "solve then installs Julia and the Julia packages nesterovnode/juliapkg.json declares "
    "(once, with internet access). Or use a Julia environment of your own: set "
    f"{ENV_VARIABLE} to it (see docs/julia.md)"
)

#: the Julia packages that keep CUDA tensors on the GPU (julia/Project.toml [weakdeps],
#: with the [compat] bounds there); ``enable_gpu()`` adds them
GPU_PACKAGES = {
    "CUDA": ("052768ef-5323-5732-b1bb-66c8b64840ba", "5"),
    "DLPack": ("53c2dc0f-f7d5-43fd-8906-6c0220547083", "0.3"),
}

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
    "QuadratureAdjoint": "SciMLSensitivity's QuadratureAdjoint (at the solve's rtol/atol)",
    "BacksolveAdjoint": "SciMLSensitivity's BacksolveAdjoint (y solved backwards)",
}

#: the only vector-Jacobian product that reads torch's (a ChainRules rrule) in call-back mode
CALLBACK_VJP = "ZygoteVJP"

_MODULE = None
_GPU_WARNED = False


def _manifest_versions(project: Path, package: str) -> list[str]:
    """The versions of ``package`` the manifests of ``project`` record (Manifest.toml and
    Manifest-v<major>.<minor>.toml, Julia's v1 and v2 manifest formats)."""
    block = re.compile(
        r"^\[\[(?:deps\.)?" + re.escape(package) + r"\]\]\s*$(.*?)(?=^\[|\Z)",
        re.MULTILINE | re.DOTALL,
    )
    out = []
    for manifest in sorted(project.glob("Manifest*.toml")):
        for m in block.finditer(manifest.read_text()):
            v = re.search(r'^version\s*=\s*"([^"]+)"', m.group(1), re.MULTILINE)
            if v:
                out.append(v.group(1))
    return out


def check_pythoncall(project: Path, juliacall_version: str | None = None) -> None:
    """Raise ``EngineNotInstalledError`` unless the manifest of the Julia environment
    ``project`` has PythonCall at exactly the installed juliacall's version (the two are
    one package on either side of the bridge; any other pair fails with "PythonCall.jl
    did not start properly")."""
    want = juliacall_version or importlib.metadata.version("juliacall")
    have = _manifest_versions(project, "PythonCall")
    add = (
        f"julia --project={project} -e 'using Pkg; "
        f'Pkg.add(name="PythonCall", version="{want}"); Pkg.instantiate()\''
    )
    if not have:
        raise EngineNotInstalledError(
            f"the Julia environment {project} has no PythonCall in a manifest (it is not "
            f"instantiated, or PythonCall is not in it): run {add}"
        )
    if want not in have:
        raise EngineNotInstalledError(
            f"the Julia environment {project} has PythonCall {', '.join(have)} but juliacall "
            f"is {want}; they must be the same version: run {add} "
            f"(or `pip install juliacall=={have[0]}`)"
        )


def juliacall_settings(environ=None) -> dict[str, str]:
    """The variables to set before juliacall is imported (none: juliapkg installs and
    resolves what the juliapkg.json files declare).

    With ``NESTEROVNODE_JULIA_ENV`` (and neither ``PYTHON_JULIACALL_EXE`` nor
    ``PYTHON_JULIACALL_PROJECT`` set), juliacall gets that environment and a ``julia``
    (``PYTHON_JULIAPKG_EXE``, else the one on PATH) to use as they are;
    ``EngineNotInstalledError`` when the environment has no Project.toml or no julia is
    found."""
    environ = os.environ if environ is None else environ
    if environ.get("PYTHON_JULIACALL_EXE") or environ.get("PYTHON_JULIACALL_PROJECT"):
        return {}
    env = environ.get(ENV_VARIABLE)
    if not env:
        return {}
    project = Path(env).expanduser().resolve()
    if not (project / "Project.toml").is_file():
        raise EngineNotInstalledError(
            f"{ENV_VARIABLE}={env} is not a Julia environment (no Project.toml there): "
            f"point it at an instantiated environment with NesterovNODEJulia and PythonCall, "
            f"or unset it to let juliapkg install one"
        )
    exe = environ.get("PYTHON_JULIAPKG_EXE") or shutil.which("julia")
    if not exe:
        raise EngineNotInstalledError(
            f"{ENV_VARIABLE} names a Julia environment, and no julia runs it: put julia on "
            f"PATH or set PYTHON_JULIAPKG_EXE to its path"
        )
    return {"PYTHON_JULIACALL_PROJECT": str(project), "PYTHON_JULIACALL_EXE": exe}


def julia_module():
    """``NesterovNODEJulia`` through juliacall (started on first use only); a session
    already running (juliacall or diffeqpy imported earlier) is used as it is."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    if not JuliaEngine.available():
        raise EngineNotInstalledError(f"{JuliaEngine.unavailable_reason()}. {INSTALL_HINT}")
    if "juliacall" not in sys.modules:
        settings = juliacall_settings()
        project = settings.get("PYTHON_JULIACALL_PROJECT") or os.environ.get(
            "PYTHON_JULIACALL_PROJECT"
        )
        if project:
            check_pythoncall(Path(project))
        os.environ.update(settings)
    try:
        from juliacall import Main as jl

        jl.seval("using NesterovNODEJulia")
    except Exception as exc:  # no Julia, no network, an environment without the package
        raise EngineNotInstalledError(
            f"Julia could not start or load NesterovNODEJulia "
            f"({type(exc).__name__}: {str(exc)[:500]}). {INSTALL_HINT}"
        ) from exc
    _MODULE = jl.NesterovNODEJulia
    return _MODULE


def enable_gpu() -> None:
    """Add CUDA.jl and DLPack.jl to the Julia environment juliapkg manages (once; needs
    internet), so that native solves of CUDA tensors run on ``CuArray``s. CPU users
    never install them: they are weak dependencies of NesterovNODEJulia."""
    import juliapkg

    for name, (uuid, version) in GPU_PACKAGES.items():
        juliapkg.add(name, uuid, version=version)
    juliapkg.resolve()


def _device_arrays(mod, device: torch.device) -> bool:
    """True when tensors on ``device`` can stay there in Julia (a CUDA device, with
    NesterovNODEJulia's GPU extension loaded); warns once, and copies to the host, when
    CUDA.jl and DLPack.jl are not installed."""
    global _GPU_WARNED
    if device.type != "cuda":
        return False
    if not bool(mod.gpu_arrays()):
        try:
            from juliacall import Main as jl

            jl.seval("import CUDA, DLPack")
        except Exception as exc:  # not installed in the environment
            if not _GPU_WARNED:
                _GPU_WARNED = True
                warnings.warn(
                    f"the julia engine copies CUDA tensors to the host: Julia cannot load "
                    f"CUDA.jl and DLPack.jl ({type(exc).__name__}); run "
                    f"nesterovnode.solve.engines.julia.enable_gpu() once to install them",
                    stacklevel=4,
                )
            return False
    return bool(mod.gpu_arrays())


def _write(dest, values) -> None:
    """Write into a Julia vector in place (its array interface is a writable view)."""
    np.asarray(dest)[...] = values


def native_layout(dynamics, y0: torch.Tensor, mode: str) -> tuple[str | None, str]:
    """``(layout JSON, "")`` when the field of ``dynamics`` on a state shaped like ``y0``
    runs in Julia, else ``(None, why)`` (call-back mode); ``ValueError`` when ``mode``
    is "native" and it cannot."""
    if mode == "callback":
        return None, "options['mode'] = 'callback'"
    hook = getattr(dynamics, "julia_layout", None)
    try:
        if hook is None:
            raise ValueError(f"{type(dynamics).__name__} describes no Julia layout")
        layout = hook(tuple(y0.shape))
    except ValueError as exc:  # the model's LayoutError: a part Julia does not mirror
        if mode == "native":
            raise ValueError(
                f"options['mode'] = 'native' but the field cannot run in Julia: {exc}; "
                f"use mode 'auto' or 'callback'"
            ) from exc
        return None, str(exc)
    return layout, ""


class _Phase:
    """Which recorder the call-back evaluations report to (forward, then backward)."""

    def __init__(self, recorder):
        self.recorder = recorder


@dataclass(frozen=True)
class _AlgorithmOption(Option):
    """The ``algorithm`` option: None, or a spec ``julia_spec`` accepts."""

    def check(self, engine: str, name: str, value):
        value = super().check(engine, name, value)
        return None if value is None else check_algorithm_spec(value)


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
        "algorithm": _AlgorithmOption(
            (str, type(None)),
            None,
            "an OrdinaryDiffEq algorithm spec run instead of the solver, e.g. "
            "'AutoTsit5(Rosenbrock23())' or 'KenCarp4(autodiff=AutoFiniteDiff())' "
            "(constructors and literal arguments only)",
        ),
        "autojacvec": Option(
            str,
            "ZygoteVJP",
            "the vector-Jacobian products of the native adjoints (call-back mode: ZygoteVJP)",
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
    def check_open_method(cls, name: str) -> str:
        """``name`` when it is an algorithm spec of ``julia_spec``'s grammar; otherwise
        ``AlgorithmSpecError`` (before the engine, and Julia, are looked for)."""
        return check_algorithm_spec(name)

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
    def _check(recorder, retcode: str, success: bool, t_reached: float | None) -> None:
        """Raise the ``SolverError`` of a retcode that ``SciMLBase.successful_retcode``
        rejected (``success`` is its answer, computed in Julia)."""
        if success:
            return
        reason = RETCODES.get(retcode)
        raise recorder.fail(
            t_reached, reason, f"Julia returned retcode {retcode}" if not reason else ""
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
        self._check(
            problem.recorder,
            str(out.retcode),
            bool(out.success),
            float(steps[-1]) if len(steps) else None,
        )
        return np.asarray(out.u, dtype=np.float64).T.copy()

    # -- native sensitivities ---------------------------------------------------------------
    def solve_native(self, sensitivity, dynamics, y0, ts, request: IntegrateRequest):
        """``[len(ts), *y0.shape]`` with gradients by SciMLSensitivity's ``sensitivity``."""
        layout, why = native_layout(dynamics, y0, request.options["mode"])
        vjp = request.options["autojacvec"]
        if layout is None and vjp != CALLBACK_VJP:
            raise ValueError(
                f"options['autojacvec'] = {vjp!r} differentiates the field in Julia, but this "
                f"field runs in torch (call-back mode: {why}); torch's vector-Jacobian "
                f"products reach SciMLSensitivity only through {CALLBACK_VJP}: use "
                f"autojacvec={CALLBACK_VJP!r} (the default), or a network and state the "
                f"Julia fields mirror"
            )
        mod = julia_module()  # fails at once, with the install command, without Julia
        params = tuple(dynamics.parameters())
        run = _NativeRun(self, mod, sensitivity, dynamics, layout, y0, ts, request)
        return _JuliaAdjoint.apply(run, y0, *params)


class _NativeRun:
    """One native solve: the forward pass and, later, its pullback. States, θ and
    cotangents cross as flat float64 vectors (Julia reshapes them; a ``[len(ts), n]``
    tensor flattened row-major is Julia's ``n × len(ts)`` matrix), through DLPack on the
    GPU when ``device_arrays``, through NumPy on the host otherwise."""

    def __init__(self, engine, mod, sensitivity, dynamics, layout, y0, ts, request):
        self.engine, self.mod, self.sensitivity = engine, mod, sensitivity
        self.dynamics, self.layout, self.request = dynamics, layout, request
        self.shape, self.dtype, self.device = y0.shape, y0.dtype, y0.device
        self.times = np.asarray(ts.detach().cpu().tolist(), dtype=np.float64)
        self.params = tuple(dynamics.parameters())
        self.phase = _Phase(request.recorder)
        self.device_arrays = layout is not None and _device_arrays(mod, y0.device)
        from ..stats import Recorder

        self.backward_recorder = Recorder(request.stats, backward=True)
        self.pullback = None

    def to_julia(self, t: torch.Tensor):
        """A flat tensor as the Julia vector the solve reads."""
        t = handover(t.reshape(-1))
        if self.device_arrays:
            return self.mod.wrap_dlpack(t)
        return t.cpu().numpy()

    def from_julia(self, vector) -> torch.Tensor:
        """A Julia vector as a float64 tensor on the state's device."""
        if self.device_arrays:
            vector = self.mod.share_dlpack(vector, torch.from_dlpack)
        return received(vector, self.device)

    def rhs(self):
        if self.layout is not None:
            return self.mod.FieldFn(self.mod.parse_layout(self.layout))
        from ..fields import DynamicsField

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
        theta = flat_parameters(self.dynamics).to(self.device)
        out = self.mod.solve_with_pullback(
            rhs,
            self.to_julia(y0),
            self.to_julia(theta),
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
        JuliaEngine._check(
            request.recorder, str(out.retcode), bool(out.success), float(out.t_reached)
        )
        self.pullback = out.pullback
        ys = self.from_julia(out.u_flat).reshape(len(self.times), *self.shape)
        return ys.to(dtype=self.dtype)

    def backward(self, dys: torch.Tensor):
        self.phase.recorder = self.backward_recorder
        start = time.perf_counter()
        res = self.pullback(self.to_julia(dys))  # [len(ts), *shape] row-major: n × len(ts)
        self.request.stats.wall_time_backward += time.perf_counter() - start
        if self.layout is not None:
            self.backward_recorder.evaluations(int(res.calls))
        self.backward_recorder.set("julia_retcode", str(res.retcode))
        JuliaEngine._check(self.backward_recorder, str(res.retcode), bool(res.success), None)
        du0 = self.from_julia(res.du0).reshape(self.shape).to(dtype=self.dtype)
        dtheta = self.from_julia(res.dtheta)
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
