"""The bridge from torch to an external ODE engine (SciPy here, Julia when installed).

An external engine integrates plain arrays: it never sees a tensor or a module. The bridge
is a ``torch.autograd.Function`` that

1. flattens the state (the whole batch is ONE system of ``n = y0.numel()`` equations) and
   the trainable parameters of the dynamics (one flat vector θ of length ``p``);
2. hands the engine the initial state, the output times and a vector field
   ``fun(t, y) -> dy/dt`` on float64 NumPy arrays; the field is evaluated by torch, through
   the solve layer's ``CountedField`` (so every call is counted as a forward or backward
   NFE) with the parameters taken from θ (``torch.func.functional_call``);
3. in ``backward`` has the same engine solve the adjoint system backwards in time, on the
   augmented state ``z = [y, a, g]`` (``n + n + p`` equations)::

       y' = f(t, y; θ)
       a' = -aᵀ ∂f/∂y          (vector-Jacobian products from torch.autograd)
       g' = -aᵀ ∂f/∂θ

   from ``ts[-1]`` down to ``ts[0]``, one output interval at a time, starting from
   ``y(T)``, ``a(T) = dL/dy(T)``, ``g(T) = 0``. At each output time ``t_i`` it resets ``y``
   to the forward solution and adds ``dL/dy(t_i)`` to ``a``, exactly as torchdiffeq's
   ``odeint_adjoint`` does. Then ``a(t0) = dL/dy0`` and ``g(t0) = dL/dθ``, returned to
   torch on the device and in the dtype of ``y0`` and θ.

Sensitivities: ``"adjoint"``; ``"adjoint-seminorm"`` is the same adjoint with the ``p``
parameter channels left out of the step-size control (Kidger et al., 2021) when the
engine's ``supports_seminorm`` is true (SciPy: yes), and equal to ``"adjoint"`` otherwise.
``"backprop"`` (autograd through the solver's operations) cannot pass an external engine
and raises a ValueError.

The engine protocol
-------------------
An external engine subclasses ``ExternalEngine`` and implements one method,
``integrate(problem: ODEProblem) -> np.ndarray`` of shape ``[len(problem.t), n]``: the
solution of ``y' = problem.fun(t, y)``, ``y(problem.t[0]) = problem.y0`` at every time of
``problem.t`` (strictly increasing for the forward solve, strictly decreasing for the
adjoint solve, which always spans one output interval). It must

- use ``problem.method`` (its own name of the solver) with ``problem.rtol``/``problem.atol``
  (and ``problem.first_step`` when not None);
- for implicit (stiff) methods use the exact Jacobian ``problem.jac(t, y) -> [n, n]``
  (torch autograd, forward and adjoint), not finite differences;
- leave only the first ``problem.error_channels`` components in its error norm when that
  is not None and it declares ``supports_seminorm``;
- report each step attempt with ``problem.on_attempt(t0, dt)`` (which enforces
  ``max_steps``), each accepted step with ``problem.on_accept(t0, dt)`` and each rejected
  attempt, where it knows them, with ``problem.on_reject(t0, dt)``;
- add its own counts with ``problem.add_count(key, value)`` (Jacobian evaluations
  ``njev``, LU decompositions ``nlu``, method switches…; backward-phase keys get a
  ``_backward`` suffix automatically);
- raise ``problem.fail(message, t_reached)`` (a ``SolverError`` with the stats so far)
  when the solve fails, with the engine's own message.

What a solver is (its order, whether it is adaptive, implicit/stiff or auto-switching, and
the stability bound of explicit methods) is declared once, engine-independently, in
``registry.SOLVERS``; an engine's ``methods`` maps those canonical names to its own.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import torch

from .engine import Engine, SolveRequest
from .errors import SolverError
from .stats import CountedField, SolveStats

ArrayFn = Callable[[float, np.ndarray], np.ndarray]

#: Largest system for which a dense Jacobian is formed for implicit methods (override with
#: ``options={"max_dense_jacobian": N}``); beyond it use an explicit method.
MAX_DENSE_JACOBIAN = 8192


@dataclass
class ODEProblem:
    """One integration handed to an external engine (see the module docstring)."""

    fun: ArrayFn  #: f(t, y) -> dy/dt, float64 arrays of shape [n]
    y0: np.ndarray  #: float64 [n]
    t: np.ndarray  #: output times, t[0] the start; increasing (forward) or decreasing
    solver: str  #: canonical name (DP5, RadauIIA5, …)
    method: str  #: the engine's own name (RK45, Radau, …)
    rtol: float
    atol: float
    jac: ArrayFn | None = None  #: exact Jacobian ∂f/∂y, [n, n] (for implicit methods)
    #: number of leading components the error norm sees (None: all) — the seminorm
    error_channels: int | None = None
    first_step: float | None = None  #: first step of adaptive methods (forward solve only)
    dt: float | None = None  #: the step size of fixed-step methods (both phases)
    backward: bool = False  #: True for the adjoint solve
    field: CountedField | None = None
    stats: SolveStats | None = None
    options: dict = dc_field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.y0.shape[0])

    @property
    def phase(self) -> str:
        return "backward (adjoint)" if self.backward else "forward"

    def on_attempt(self, t0: float, dt: float) -> None:
        """A step attempt starts at ``t0`` with size ``dt`` (raises past ``max_steps``)."""
        if self.field is not None:
            self.field.on_step(t0, None, dt, self.backward)

    def on_accept(self, t0: float, dt: float) -> None:
        if self.field is not None:
            self.field.on_accept(t0, None, dt, self.backward)

    def on_reject(self, t0: float, dt: float) -> None:
        if self.field is not None:
            self.field.on_reject(t0, None, dt, self.backward)

    def add_count(self, key: str, value) -> None:
        """Add ``value`` to ``stats.extra[key]`` (``key + "_backward"`` in the adjoint)."""
        if self.stats is None:
            return
        key = key + "_backward" if self.backward else key
        self.stats.extra[key] = self.stats.extra.get(key, 0) + value

    def set_extra(self, key: str, value) -> None:
        if self.stats is not None:
            self.stats.extra[key + "_backward" if self.backward else key] = value

    def fail(self, message: str, t_reached: float | None = None) -> SolverError:
        """The error to raise when the engine fails (message + stats so far)."""
        where = "" if t_reached is None else f" at t = {t_reached:.6g}"
        return SolverError(
            f"{self.solver} ({self.method}) failed in the {self.phase} solve{where}: {message}",
            stats=self.stats,
            t_reached=t_reached,
        )


class ExternalEngine(Engine):
    """Base class of engines behind the bridge: implement ``integrate``."""

    sensitivities = ("adjoint", "adjoint-seminorm")
    #: whether ``ODEProblem.error_channels`` is honoured (else seminorm == adjoint)
    supports_seminorm: bool = False

    def solve(
        self, field: CountedField, y0: torch.Tensor, ts: torch.Tensor, request: SolveRequest
    ) -> torch.Tensor:
        return bridge_solve(self, field, y0, ts, request)

    @abc.abstractmethod
    def integrate(self, problem: ODEProblem) -> np.ndarray:
        """Solve ``problem``; return the states at ``problem.t``, ``[len(t), n]``."""


class TorchVectorField:
    """The dynamics as NumPy callbacks, evaluated by torch with the parameters from θ.

    ``rhs`` and ``adjoint_rhs`` go through the ``CountedField`` (each call is one NFE of the
    current phase); the Jacobians call the bare dynamics (counted as ``njev`` by the engine).
    """

    def __init__(self, field: CountedField, shape, dtype, device):
        self.field = field
        self.shape = tuple(shape)
        self.n = math.prod(self.shape)
        self.dtype = dtype
        self.device = device
        named = [(k, p) for k, p in field.dynamics.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.param_shapes = [p.shape for _, p in named]
        self.param_dtypes = [p.dtype for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.params = [p for _, p in named]
        if named:
            self.theta = torch.cat([p.detach().reshape(-1) for p in self.params])
        else:
            self.theta = torch.zeros(0, dtype=dtype, device=device)
        self.p = int(self.theta.numel())

    # -- conversions -----------------------------------------------------------------------
    def flat_params(self) -> torch.Tensor:
        """θ as a differentiable function of the module's parameters."""
        if not self.params:
            return self.theta
        return torch.cat([p.reshape(-1) for p in self.params])

    def unflatten(self, theta: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape, dt, k in zip(
            self.names, self.param_shapes, self.param_dtypes, self.numels
        ):
            out[prefix + name] = theta[offset : offset + k].view(shape).to(dt)
            offset += k
        return out

    def _time(self, t: float) -> torch.Tensor:
        return torch.tensor(float(t), dtype=self.dtype, device=self.device)

    def _tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64)).to(
            device=self.device, dtype=self.dtype
        )

    @staticmethod
    def to_numpy(x: torch.Tensor) -> np.ndarray:
        return x.detach().reshape(-1).to(device="cpu", dtype=torch.float64).numpy().copy()

    def _f(self, module, prefix, t, y, theta):
        out = torch.func.functional_call(
            module, self.unflatten(theta, prefix), (t, y.view(self.shape))
        )
        return out.reshape(-1)

    # -- forward system --------------------------------------------------------------------
    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        """dy/dt = f(t, y; θ) (one counted NFE)."""
        with torch.no_grad():
            out = self._f(self.field, "dynamics.", self._time(t), self._tensor(y), self.theta)
        return self.to_numpy(out)

    def jac(self, t: float, y: np.ndarray) -> np.ndarray:
        """∂f/∂y at (t, y), dense [n, n], by reverse-mode autograd (torch.func.jacrev)."""
        tt, theta = self._time(t), self.theta
        J = torch.func.jacrev(lambda yy: self._f(self.field.dynamics, "", tt, yy, theta))(
            self._tensor(y)
        )
        return J.detach().to(device="cpu", dtype=torch.float64).numpy()

    # -- adjoint system --------------------------------------------------------------------
    def _aug(self, module, prefix, t, y, a, theta):
        out, vjp_fn = torch.func.vjp(lambda yy, th: self._f(module, prefix, t, yy, th), y, theta)
        gy, gth = vjp_fn(a.to(out.dtype))
        return torch.cat([out, -gy.reshape(-1), -gth.reshape(-1).to(out.dtype)])

    def adjoint_rhs(self, t: float, z: np.ndarray) -> np.ndarray:
        """d[y, a, g]/dt = [f, -aᵀ∂f/∂y, -aᵀ∂f/∂θ] (one counted NFE; the vector-Jacobian
        products by ``torch.autograd.grad``)."""
        n = self.n
        zt = self._tensor(z)
        with torch.enable_grad():
            y = zt[:n].clone().requires_grad_(True)
            theta = self.theta.detach().requires_grad_(True)
            out = self._f(self.field, "dynamics.", self._time(t), y, theta)
            gy, gth = torch.autograd.grad(
                out, (y, theta), zt[n : 2 * n].to(out.dtype), allow_unused=True
            )
        gy = torch.zeros_like(y) if gy is None else gy
        gth = torch.zeros_like(theta) if gth is None else gth
        return self.to_numpy(torch.cat([out.detach(), -gy, -gth.to(out.dtype)]))

    def adjoint_jac(self, t: float, z: np.ndarray) -> np.ndarray:
        """Exact Jacobian of the adjoint system, [2n+p, 2n+p]: forward-over-reverse autograd
        for the columns of y and a; the g columns are zero (g does not feed back)."""
        n, p = self.n, self.p
        tt, theta = self._time(t), self.theta
        ya = self._tensor(z[: 2 * n])

        def aug(v):
            return self._aug(self.field.dynamics, "", tt, v[:n], v[n:], theta)

        try:
            J = torch.func.jacfwd(aug)(ya)
        except (RuntimeError, NotImplementedError):  # an op without forward-mode AD
            J = torch.func.jacrev(aug)(ya)
        out = np.zeros((2 * n + p, 2 * n + p))
        out[:, : 2 * n] = J.detach().to(device="cpu", dtype=torch.float64).numpy()
        return out


class _BridgeRun:
    """What the autograd function keeps between forward and backward."""

    def __init__(
        self,
        engine: ExternalEngine,
        field: CountedField,
        ts: torch.Tensor,
        request: SolveRequest,
        vf: TorchVectorField,
    ):
        self.engine = engine
        self.field = field
        self.request = request
        self.vf = vf
        self.ts = ts.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
        self.ys: np.ndarray | None = None

    def problem(self, fun, jac, y0, t, backward, error_channels=None) -> ODEProblem:
        req = self.request
        return ODEProblem(
            fun=fun,
            jac=jac,
            y0=y0,
            t=np.asarray(t, dtype=np.float64),
            solver=req.solver,
            method=req.method,
            rtol=req.rtol,
            atol=req.atol,
            error_channels=error_channels,
            first_step=None if backward else req.dt,
            dt=req.dt,
            backward=backward,
            field=self.field,
            stats=req.stats,
            options=req.options,
        )

    def check_jacobian_size(self, size: int) -> None:
        from .registry import SOLVERS

        limit = int(self.request.options.get("max_dense_jacobian", MAX_DENSE_JACOBIAN))
        info = SOLVERS.get(self.request.solver)
        if info is not None and info.implicit and size > limit:
            raise ValueError(
                f"{self.request.solver} on the {self.engine.name} engine forms a dense "
                f"{size}x{size} Jacobian (the whole batch is one system), more than "
                f"max_dense_jacobian = {limit}; use an explicit solver (DP5, DP8), a smaller "
                f"batch, or raise options['max_dense_jacobian']"
            )

    def forward(self, y0: torch.Tensor) -> np.ndarray:
        self.check_jacobian_size(self.vf.n)
        y0_np = TorchVectorField.to_numpy(y0)
        prob = self.problem(self.vf.rhs, self.vf.jac, y0_np, self.ts, backward=False)
        ys = np.asarray(self.engine.integrate(prob), dtype=np.float64)
        if ys.shape != (len(self.ts), self.vf.n):
            raise RuntimeError(
                f"the {self.engine.name} engine returned shape {ys.shape}, expected "
                f"{(len(self.ts), self.vf.n)}"
            )
        self.ys = ys
        return ys

    def backward(self, grad_ys: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        n, p = self.vf.n, self.vf.p
        self.check_jacobian_size(2 * n + p)
        seminorm = self.request.sensitivity == "adjoint-seminorm"
        if seminorm and not self.engine.supports_seminorm:
            self.request.stats.extra["seminorm"] = "unsupported by the engine: full norm"
        channels = 2 * n if seminorm and self.engine.supports_seminorm else None
        g = grad_ys.detach().to(device="cpu", dtype=torch.float64).reshape(len(self.ts), n)
        g = g.numpy()
        a = g[-1].copy()
        gth = np.zeros(p)
        for i in range(len(self.ts) - 1, 0, -1):
            if np.any(a != 0.0):  # a = 0 stays 0 over the interval: nothing to integrate
                z0 = np.concatenate([self.ys[i], a, gth])
                prob = self.problem(
                    self.vf.adjoint_rhs,
                    self.vf.adjoint_jac,
                    z0,
                    [self.ts[i], self.ts[i - 1]],
                    backward=True,
                    error_channels=channels,
                )
                z = np.asarray(self.engine.integrate(prob), dtype=np.float64)[-1]
                a, gth = z[n : 2 * n].copy(), z[2 * n :].copy()
            a += g[i - 1]
        return a, gth


class _Bridge(torch.autograd.Function):
    """ys = engine solve of y' = f(t, y; θ) from y0; backward by the engine's adjoint solve."""

    @staticmethod
    def forward(ctx, y0: torch.Tensor, theta: torch.Tensor, run: _BridgeRun):
        ys = run.forward(y0)
        ctx.run = run
        ctx.y0_meta = (y0.shape, y0.dtype, y0.device)
        ctx.theta_meta = (theta.dtype, theta.device)
        return (
            torch.from_numpy(ys.copy())
            .to(device=y0.device, dtype=y0.dtype)
            .view(len(run.ts), *y0.shape)
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys: torch.Tensor):
        run: _BridgeRun = ctx.run
        a, gth = run.backward(grad_ys)
        shape, dtype, device = ctx.y0_meta
        grad_y0 = torch.from_numpy(a).to(device=device, dtype=dtype).view(shape)
        th_dtype, th_device = ctx.theta_meta
        grad_theta = torch.from_numpy(gth).to(device=th_device, dtype=th_dtype)
        return (
            grad_y0 if ctx.needs_input_grad[0] else None,
            grad_theta if ctx.needs_input_grad[1] else None,
            None,
        )


def bridge_solve(
    engine: ExternalEngine,
    field: CountedField,
    y0: torch.Tensor,
    ts: torch.Tensor,
    request: SolveRequest,
) -> torch.Tensor:
    """Solve on an external ``engine`` through the bridge; ``[len(ts), *y0.shape]``,
    differentiable w.r.t. ``y0`` and the field's parameters by the engine's adjoint."""
    if request.sensitivity not in ExternalEngine.sensitivities:
        raise ValueError(
            f"sensitivity={request.sensitivity!r} is not possible on the {engine.name} engine: "
            f"backprop differentiates the solver's own operations, which run outside torch. "
            f"Use sensitivity='adjoint' or 'adjoint-seminorm', or the torch engine for backprop"
        )
    vf = TorchVectorField(field, y0.shape, y0.dtype, y0.device)
    run = _BridgeRun(engine, field, ts, request, vf)
    request.stats.extra.setdefault("n_state", vf.n)
    request.stats.extra.setdefault("n_params", vf.p)
    return _Bridge.apply(y0, vf.flat_params(), run)
