"""The ``rk`` engine: the library's own explicit Runge–Kutta solver, built for the GPU.

Same methods and step control as torchdiffeq (``tableaux.py``, ``rk.py``), but each step
is a pure tensor function run by a runner (``graphs.py``): on a CUDA device a step — all
stages, the error estimate, the accept/reject choice — is captured once as a CUDA graph
and replayed, and the host reads one number per step. Small networks (the paper's image
models) are bound by launch overhead, not arithmetic; replaying a graph removes it.

Sensitivities:

- ``adjoint`` / ``adjoint-seminorm``: the forward solve runs without autograd; the
  backward pass solves the adjoint system from T back to t0,

      y' = f(t, y),   a' = −aᵀ ∂f/∂y,   g' = −aᵀ ∂f/∂θ,   a(T) = ∂L/∂y(T), g(T) = 0,

  so that a(t0) = ∂L/∂y0 and g(t0) = ∂L/∂θ, with the vector-Jacobian products from
  ``torch.autograd.grad`` inside the (graphed) step. At each earlier output time y is
  reset to the stored forward state and ∂L/∂y(t_i) is added to a, then the method
  restarts (as torchdiffeq's adjoint does). The error norm is the max of the RMS norms
  of y, a and each parameter's part of g (``adjoint``) or of y and a only
  (``adjoint-seminorm``).
- ``backprop``: the same loop, eagerly, with autograd recording every operation.

Options (``options=`` of ``solve``): ``cuda_graphs`` — True (default: graphs on CUDA for
the adjoint sensitivities), False (eager), or "emulate" (the graphs' static-buffer
semantics without a graph, on any device; for tests). A captured graph is reused while
the model, its parameters' storage, the state's shape, dtype and device and the
tolerances stay the same; if you change a model's Python attributes (not its
parameters or buffers) between solves, pass ``cuda_graphs=False``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .engine import Engine, SolveRequest
from .graphs import RunnerCache
from .rk import (
    Norm,
    Phase,
    integrate_adaptive,
    integrate_fixed,
    make_adaptive_step,
    make_fixed_step,
    make_initial_step,
)
from .stats import CountedField
from .tableaux import TABLEAUX

OPTIONS = ("cuda_graphs",)


class RKEngine(Engine):
    """Explicit Runge–Kutta methods in-process, CUDA-graphed on GPUs."""

    name = "rk"
    methods = {"Euler": "euler", "Midpoint": "midpoint", "RK4": "rk4", "BS3": "bs3", "DP5": "dp5"}
    install_hint = "part of nesterovnode (needs only torch)"

    def __init__(self):
        self.runners = RunnerCache()

    def clear_caches(self) -> None:
        self.runners.clear()

    def solve(
        self, field: CountedField, y0: torch.Tensor, ts: torch.Tensor, request: SolveRequest
    ) -> torch.Tensor:
        unknown = sorted(set(request.options) - set(OPTIONS))
        if unknown:
            raise ValueError(
                f"the rk engine has no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(OPTIONS)}"
            )
        if ts.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "the rk engine does not differentiate with respect to the output times ts; "
                "pass ts without requires_grad, or use engine='torch'"
            )
        plan = _Plan(self, field, y0, ts, request)
        if request.sensitivity == "backprop":
            return plan.forward(y0)
        return _AdjointSolve.apply(y0, plan, *plan.params)


def field_with_vjp(module, names, params, t, y, a):
    """``f = module(t, y)`` and the vector-Jacobian products ``(aᵀ∂f/∂y, aᵀ∂f/∂θ_1, …)``
    (None where f does not depend on an input); ``names`` are the parameters' names in
    ``module``.

    The products are taken with respect to fresh aliases of the parameters (same storage,
    so optimiser updates are seen): the parameters' own AccumulateGrad nodes live on the
    stream they were created on, and reaching them from a graph being captured on another
    stream breaks the capture.
    """
    with torch.enable_grad():
        y_ = y.detach().requires_grad_(True)
        leaves = tuple(p.detach().requires_grad_(True) for p in params)
        f = torch.func.functional_call(module, dict(zip(names, leaves)), (t, y_))
        grads = torch.autograd.grad(f, (y_, *leaves), a, allow_unused=True)
    return f.detach(), grads


class _Plan:
    """One solve: the method, the times, the runners' keys, and the forward and adjoint
    integrations."""

    def __init__(self, engine: RKEngine, field: CountedField, y0, ts, request: SolveRequest):
        self.engine, self.field, self.request = engine, field, request
        self.tableau = TABLEAUX[request.method]
        self.times = ts.detach().cpu().tolist()
        self.dynamics = field.dynamics
        named = [(n, p) for n, p in self.dynamics.named_parameters() if p.requires_grad]
        self.param_names = [n for n, _ in named]
        self.params = tuple(p for _, p in named)
        self.dtype, self.device = y0.dtype, y0.device
        graphs = request.options.get("cuda_graphs", True)
        if request.sensitivity == "backprop" or graphs is False:
            self.mode = "eager"
        elif graphs == "emulate":
            self.mode = "emulate"
        elif graphs is True:
            self.mode = "graph" if y0.is_cuda else "eager"
        else:
            raise ValueError(f"cuda_graphs must be True, False or 'emulate', got {graphs!r}")
        # What a captured step depends on besides its inputs' values.
        self.key = (
            id(self.dynamics),
            request.method,
            request.rtol,
            request.atol,
            request.sensitivity,
            tuple(y0.shape),
            y0.dtype,
            y0.device,
            self.dynamics.training,
            tuple(p.data_ptr() for p in self.params),
        )

    def _runner(self, kind: str, fn):
        """A callable that runs ``fn`` through the engine's runner for ``kind``: looked up
        (or captured) on the first call of the solve, which brings example arguments, and
        reused for every step after it."""
        runner = None

        def call(*args):
            nonlocal runner
            if runner is None:
                runner = self.engine.runners.get(
                    (kind, *self.key), fn, args, self.dtype, self.device, self.mode
                )
            return runner(*args)

        return call

    def _integrate(self, field_fn, norm: Norm, reads, y0, times, phase, at_output, kind):
        tab, req = self.tableau, self.request
        if not tab.adaptive:
            step = self._runner(f"{kind}-step", make_fixed_step(tab, field_fn, reads))
            return integrate_fixed(tab, step, y0, times, req.dt, phase, at_output)
        direction = 1.0 if times[-1] > times[0] else -1.0
        step = self._runner(
            f"{kind}-step", make_adaptive_step(tab, field_fn, req.rtol, req.atol, norm, reads)
        )
        init = self._runner(
            f"{kind}-init",
            make_initial_step(tab, field_fn, req.rtol, req.atol, norm, direction),
        )

        def first_stage(t, y):
            return field_fn(torch.full((), t, dtype=self.dtype, device=self.device), y)

        return integrate_adaptive(
            tab, step, init, first_stage, y0, times, phase, at_output, first_step=req.dt
        )

    # -- forward -----------------------------------------------------------------------
    def forward(self, y0: torch.Tensor) -> torch.Tensor:
        """States at the output times, ``[len(ts), *y0.shape]``."""
        dynamics = self.dynamics
        copy = self.mode != "eager"  # static outputs are overwritten by the next call
        ys = [y0.detach().clone() if copy else y0]

        def at_output(i, state):
            ys.append(state[0].clone() if copy else state[0])
            return state, False

        def field_fn(t, state):
            return (dynamics(t, state[0]),)

        phase = Phase(self.field, False, self.request.solver)
        self._integrate(field_fn, Norm((0,)), (0,), (y0,), self.times, phase, at_output, "fwd")
        return torch.stack(ys)

    # -- backward (adjoint) ------------------------------------------------------------
    def adjoint(self, ys: torch.Tensor, grad_ys: torch.Tensor):
        """∂L/∂y0 and ∂L/∂θ from the adjoint system, integrated from T back to t0."""
        dynamics, params = self.dynamics, self.params
        sizes = [p.numel() for p in params]
        n = len(ys)

        names = self.param_names

        def field_fn(t, state):
            y, a = state[0], state[1]
            f, grads = field_with_vjp(dynamics, names, params, t, y, a)
            vjp_y = torch.zeros_like(y) if grads[0] is None else grads[0]
            vjp_p = [
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for g, p in zip(grads[1:], params)
            ]
            vjp_p = torch.cat(vjp_p) if vjp_p else y.new_zeros(0)
            return (f, -vjp_y, -vjp_p)

        if self.request.sensitivity == "adjoint" and params:
            ids = torch.repeat_interleave(
                torch.arange(len(params), device=self.device),
                torch.tensor(sizes, device=self.device),
            )
            counts = torch.tensor(sizes, dtype=self.dtype, device=self.device)
            norm = Norm((0, 1), (2, ids, counts))
        else:
            norm = Norm((0, 1))

        def at_output(i, state):
            j = n - 1 - i  # the output time just reached, counted from t0
            return (ys[j], state[1] + grad_ys[j], state[2]), True

        y0 = (ys[-1], grad_ys[-1].clone(), ys.new_zeros(sum(sizes)))
        phase = Phase(self.field, True, self.request.solver)
        final = self._integrate(
            field_fn, norm, (0, 1), y0, self.times[::-1], phase, at_output, "adj"
        )
        grad_y0 = final[1]
        grad_params = torch.split(final[2].clone(), sizes) if params else ()
        return grad_y0, tuple(g.view_as(p) for g, p in zip(grad_params, params))


class _AdjointSolve(torch.autograd.Function):
    """ys = solve(y0; θ) with the adjoint method for its backward."""

    @staticmethod
    def forward(ctx, y0, plan: _Plan, *params):
        with torch.no_grad():
            ys = plan.forward(y0)
        ctx.plan = plan
        ctx.save_for_backward(ys)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        (ys,) = ctx.saved_tensors
        grad_y0, grad_params = ctx.plan.adjoint(ys, grad_ys)
        return (grad_y0, None, *grad_params)
