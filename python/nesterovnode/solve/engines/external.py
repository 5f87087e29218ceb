"""The bridge from torch to an external ODE engine (SciPy here, Julia when installed).

An external engine integrates plain arrays: it never sees a tensor or a module. It
subclasses ``ExternalEngine`` and implements one method,
``integrate_arrays(problem: ODEProblem) -> np.ndarray`` of shape ``[len(problem.t), n]``:
the solution of ``z' = problem.fun(t, z)``, ``z(problem.t[0]) = problem.y0`` at every
time of ``problem.t`` (strictly increasing, or strictly decreasing for an adjoint
interval). The bridge turns the solve layer's ``integrate(field, z0, times, request)``
into that call:

- the state tuple (``(y,)`` forward, ``(y, a, g)`` for the adjoint system of
  ``solve/adjoint.py``) is flattened into one float64 vector: the whole batch is ONE
  system of n equations;
- ``problem.fun`` evaluates the field by torch on the state's device and dtype, and
  reports each call to the recorder (so NFE = calls the field observes);
- ``problem.jac`` is the exact Jacobian of the components the field reads
  (``fields.dense_jacobian``, torch autograd), for implicit methods;
- ``problem.error_channels`` is the number of leading components in the error norm
  (None: all) — the seminorm.

An engine must use ``problem.method`` with ``problem.rtol``/``problem.atol`` (or a fixed
``problem.dt``), report each step attempt with ``problem.on_attempt(t0, dt)`` (which
enforces ``max_steps``), each accepted step with ``problem.on_accept`` and each rejected
attempt, where it knows them, with ``problem.on_reject``; add its own counts with
``problem.add_count(key, value)``; and raise ``problem.fail(reason, t, detail)`` when the
solve fails. The contract of ``engines/base.py`` (f only inside the interval, outputs at
the method's accuracy, NFE = calls, blow-up -> SolverError) holds for it as for any
engine; ``register_engine`` gives a new one the whole contract suite.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import torch

from ..errors import SolverError
from ..fields import dense_jacobian
from ..registry import SOLVERS
from ..stats import Recorder
from .base import Engine, IntegrateRequest, Option, State

ArrayFn = Callable[[float, np.ndarray], np.ndarray]

#: Largest system for which a dense Jacobian is formed for implicit methods (override with
#: ``options={"max_dense_jacobian": N}``); beyond it use an explicit method.
MAX_DENSE_JACOBIAN = 8192


@dataclass
class ODEProblem:
    """One integration handed to an external engine (see the module docstring)."""

    fun: ArrayFn  #: f(t, z) -> dz/dt, float64 arrays of shape [n]
    y0: np.ndarray  #: float64 [n]
    t: np.ndarray  #: output times, t[0] the start; increasing or decreasing
    solver: str  #: canonical name (DP5, RadauIIA5, …)
    method: str  #: the engine's own name (RK45, Radau, …)
    rtol: float
    atol: float
    recorder: Recorder
    jac: ArrayFn | None = None  #: exact Jacobian ∂f/∂z, [n, n] (for implicit methods)
    #: number of leading components the error norm sees (None: all) — the seminorm
    error_channels: int | None = None
    dt: float | None = None  #: a fixed step size (None: adaptive)
    options: dict = dc_field(default_factory=dict)
    #: |h| of the first attempt (``IntegrateRequest.first_step``; None: the engine's rule).
    #: An engine that takes it reports its proposal after the last step as
    #: ``recorder.next_step``, where a continuing solve starts (the adjoint's backward).
    first_step: float | None = None

    @property
    def n(self) -> int:
        return int(self.y0.shape[0])

    @property
    def backward(self) -> bool:
        return self.recorder.backward

    def on_attempt(self, t0: float, dt: float) -> None:
        """A step attempt starts at ``t0`` with size ``dt`` (raises past ``max_steps``)."""
        self.recorder.attempt(t0, dt)

    def on_accept(self, t0: float, dt: float) -> None:
        self.recorder.accepted(t0, dt)

    def on_reject(self, t0: float, dt: float) -> None:
        self.recorder.rejected(t0, dt)

    def add_count(self, key: str, value) -> None:
        """Add ``value`` to ``stats.extra[key]`` (``key + "_backward"`` in the adjoint)."""
        self.recorder.add(key, value)

    def set_extra(self, key: str, value) -> None:
        self.recorder.set(key, value)

    def fail(
        self, reason: str | None, t_reached: float | None = None, detail: str = ""
    ) -> SolverError:
        """The error to raise when the engine fails (``reason``: a key of errors.HINTS,
        or None with the engine's own message as ``detail``)."""
        return self.recorder.fail(t_reached, reason, detail)


class ExternalEngine(Engine):
    """Base class of engines behind the bridge: implement ``integrate_arrays``."""

    options = {
        "max_dense_jacobian": Option(
            int, MAX_DENSE_JACOBIAN, "largest system an implicit method forms a dense Jacobian of"
        ),
    }

    @abc.abstractmethod
    def integrate_arrays(self, problem: ODEProblem) -> np.ndarray:
        """Solve ``problem``; return the states at ``problem.t``, ``[len(t), n]``."""

    def integrate(self, field, z0: State, times: Sequence[float], request: IntegrateRequest):
        bridge = _Bridge(field, z0)
        channels = request.error_channels
        info = SOLVERS.get(request.solver)
        implicit = info is not None and info.implicit
        if implicit and bridge.n > request.options["max_dense_jacobian"]:
            raise ValueError(
                f"{request.solver} on the {self.name} engine forms a dense "
                f"{bridge.n}x{bridge.n} Jacobian (the whole batch is one system), more than "
                f"max_dense_jacobian = {request.options['max_dense_jacobian']}; use an "
                f"explicit solver (DP5, DP8), a smaller batch, or raise "
                f"options['max_dense_jacobian']"
            )
        problem = ODEProblem(
            fun=bridge.rhs(request.recorder),
            jac=bridge.jac if implicit else None,
            y0=bridge.flat(z0),
            t=np.asarray(list(times), dtype=np.float64),
            solver=request.solver,
            method=request.method,
            rtol=request.rtol,
            atol=request.atol,
            recorder=request.recorder,
            error_channels=None if channels is None else bridge.prefix(channels),
            dt=request.dt,
            options=request.options,
            first_step=None if request.first_step is None else abs(float(request.first_step)),
        )
        zs = np.asarray(self.integrate_arrays(problem), dtype=np.float64)
        if zs.shape != (len(times), bridge.n):
            raise RuntimeError(
                f"the {self.name} engine returned shape {zs.shape}, expected "
                f"{(len(times), bridge.n)}"
            )
        return bridge.unflat(zs)


class _Bridge:
    """Conversions between the solve layer's state tuple and one float64 vector."""

    def __init__(self, field, z0: State):
        self.field = field
        self.shapes = [z.shape for z in z0]
        self.sizes = [z.numel() for z in z0]
        self.n = sum(self.sizes)
        self.dtype, self.device = z0[0].dtype, z0[0].device

    def prefix(self, channels: Sequence[int]) -> int:
        if tuple(channels) != tuple(range(len(channels))):
            raise ValueError("external engines leave only trailing components out of the norm")
        return sum(self.sizes[j] for j in channels)

    @staticmethod
    def flat(z: State) -> np.ndarray:
        return torch.cat([x.detach().reshape(-1) for x in z]).to("cpu", torch.float64).numpy()

    def tensors(self, z: np.ndarray) -> State:
        zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64)).to(
            device=self.device, dtype=self.dtype
        )
        return tuple(p.view(s) for p, s in zip(torch.split(zt, self.sizes), self.shapes))

    def unflat(self, zs: np.ndarray) -> State:
        zt = torch.from_numpy(zs).to(device=self.device, dtype=self.dtype)
        parts = torch.split(zt, self.sizes, dim=1)
        return tuple(p.reshape(len(zs), *s) for p, s in zip(parts, self.shapes))

    def _time(self, t: float) -> torch.Tensor:
        return torch.tensor(float(t), dtype=self.dtype, device=self.device)

    def rhs(self, recorder: Recorder) -> ArrayFn:
        """dz/dt as arrays; each call is one evaluation reported to ``recorder``."""

        def fun(t: float, z: np.ndarray) -> np.ndarray:
            recorder.evaluations(1)
            with torch.no_grad():
                out = self.field(self._time(t), self.tensors(z))
            dz = self.flat(out)
            # at once: an engine's own step-size rule fed a NaN derivative may never
            # return (SciPy's explicit methods loop forever on f(t0, y0) = NaN)
            if not np.isfinite(dz).all():
                raise recorder.fail(t, "nonfinite", "the field returned NaN/Inf")
            return dz

        return fun

    def jac(self, t: float, z: np.ndarray) -> np.ndarray:
        """Exact ∂f/∂z, [n, n]: columns of the components the field reads by autograd
        (the adjoint's g does not feed back: its columns are zero)."""
        tt, state = self._time(t), self.tensors(z)
        reads = self.field.reads
        if len(state) == 1:
            J = dense_jacobian(lambda y: self.field(tt, (y,))[0], state[0])
        else:  # the augmented field (y, a, g): differentiate its functional form in [y, a]
            n_y = self.sizes[0]
            ya = torch.cat([state[0].reshape(-1), state[1].reshape(-1)])

            def aug(v):
                y, a = v[:n_y].view(self.shapes[0]), v[n_y:].view(self.shapes[1])
                return torch.cat([x.reshape(-1) for x in self.field.functional(tt, y, a)])

            J = dense_jacobian(aug, ya)
        out = np.zeros((self.n, self.n))
        width = sum(self.sizes[j] for j in reads)
        out[:, :width] = J.detach().to("cpu", torch.float64).numpy()
        return out
