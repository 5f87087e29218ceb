"""The engine contract (solve/engines/base.py), checked once for every registered engine.

Each test is parametrised over every engine of the registry × its solvers × the
sensitivities it offers, so a new engine gets the whole suite by ``register_engine``.
Engines that cannot run here (Julia without a ``julia`` executable) are skipped with
their reason.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nesterovnode as nno
from helpers import BlowUp, TimeRecorder, TinyField, nesterov_closed_form_error
from nesterovnode.solve import SolverError, engines, sensitivity_names
from nesterovnode.solve.registry import ENGINE_ORDER, SOLVERS, engine_class

FIXED_ORDER_SOLVERS = ("Euler", "Midpoint", "RK4", "RK38", "BS3", "DP5", "Tsit5", "DP8", "DP87")
#: step sizes per order where the float64 error is well above round-off and below 1
STEPS = {
    1: (0.02, 0.01, 0.005),
    2: (0.04, 0.02, 0.01),
    3: (0.1, 0.05, 0.025),
    4: (0.1, 0.05, 0.025),
    5: (0.1, 0.05, 0.025),
    8: (0.5, 0.25, 0.125),
}


def _param(engine, *values):
    """A parameter set for ``engine`` (the julia ones marked ``julia``)."""
    marks = [pytest.mark.julia] if engine == "julia" else []
    return pytest.param(engine, *values, marks=marks, id="-".join((engine, *values)))


def _engine(name):
    return _param(name)


def _available(name):
    cls = engine_class(name)
    if cls is None or not cls.available():
        pytest.skip(
            f"the {name} engine cannot run here: "
            f"{'absent' if cls is None else cls.unavailable_reason()}"
        )
    return cls


def cases(kind):
    """(engine, solver) pairs: kind "fixed" (methods at a fixed dt), "adaptive"."""
    out = []
    for name in ENGINE_ORDER:
        cls = engine_class(name)
        if cls is None:
            continue
        for solver in cls.methods:
            info = SOLVERS[solver]
            if kind == "fixed" and cls.runs_fixed(solver) and solver in FIXED_ORDER_SOLVERS:
                out.append((name, solver))
            if kind == "adaptive" and info.adaptive and not info.implicit:
                out.append((name, solver))
    return [_param(e, s) for e, s in out]


def sensitivity_cases():
    """(engine, sensitivity) pairs: the generic ones each engine takes, and its own."""
    out = []
    for name, cls in engines().items():
        for sens in ("adjoint", "adjoint-seminorm", "backprop"):
            if sens != "backprop" or cls.differentiable:
                out.append((name, sens))
        out += [(name, f"{name}:{s}") for s in cls.native_sensitivities]
    return [_param(e, s) for e, s in out]


class CosField(nn.Module):
    """y' = cos(t) y: y(t) = y0 exp(sin t − sin t0)."""

    def forward(self, t, y):
        return torch.cos(t) * y


# -- convergence ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine,solver", cases("fixed"))
def test_every_method_converges_at_its_order_at_fixed_steps(engine, solver):
    _available(engine)
    order = SOLVERS[solver].order
    y0 = torch.ones(1, 1, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    errors, dts = [], STEPS[order]
    for dt in dts:
        sol = nno.solve(nno.NODE(CosField()), y0, ts, solver=solver, engine=engine, dt=dt)
        errors.append(float((sol.ys[:, 0, 0] - torch.exp(torch.sin(ts))).abs().max()))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


@pytest.mark.parametrize("engine,solver", cases("adaptive"))
def test_adaptive_error_falls_with_the_tolerance_and_stays_near_it(engine, solver):
    _available(engine)
    y0 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.exp(math.sin(10.0))
    errors = []
    low = SOLVERS[solver].order <= 2  # Heun: thousands of steps at 1e-8
    for tol in (1e-3, 1e-6) if low else (1e-5, 1e-8):
        sol = nno.solve(
            nno.NODE(CosField()), y0, [0.0, 10.0], solver=solver, engine=engine, rtol=tol, atol=tol
        )
        errors.append(abs(float(sol.ys[-1, 0, 0]) - exact) / exact)
    assert errors[1] < errors[0] / 10
    assert errors[1] < (1e-4 if low else 1e-6)


@pytest.mark.parametrize("engine,solver", cases("adaptive"))
def test_nesterov_readout_matches_the_bessel_closed_form(engine, solver):
    _available(engine)
    order = SOLVERS[solver].order
    tol = 1e-6 if order <= 2 else 1e-7 if order <= 3 else 1e-10
    err = nesterov_closed_form_error(
        3.0, solver=solver, engine=engine, rtol=tol, atol=tol, sensitivity="adjoint"
    )
    assert err < (1e-3 if order <= 2 else 1e-4 if order <= 3 else 1e-7)


@pytest.mark.parametrize("engine,solver", cases("adaptive"))
def test_outputs_between_steps_have_the_methods_accuracy(engine, solver):
    """Interior output times are as accurate as the end time, and where the engine has a
    dense output for the method the NFE does not grow with their number."""
    cls = _available(engine)
    y0 = torch.ones(1, 1, dtype=torch.float64)
    tol = 1e-5 if SOLVERS[solver].order <= 2 else 1e-8
    nfe = {}
    for n in (2, 51):
        ts = torch.linspace(0.0, 10.0, n, dtype=torch.float64)
        sol = nno.solve(
            nno.NODE(CosField()), y0, ts, solver=solver, engine=engine, rtol=tol, atol=tol
        )
        exact = torch.exp(torch.sin(ts))
        err = ((sol.ys[:, 0, 0] - exact).abs() / exact).max()
        assert float(err) < 100 * tol, (n, float(err))
        nfe[n] = sol.stats.nfe_forward
    if solver in cls.dense_methods:
        assert nfe[51] <= nfe[2] + 2
    else:
        assert nfe[51] > nfe[2]


# -- gradients -----------------------------------------------------------------------------
def _model_and_inputs(kind):
    torch.manual_seed(0)
    net = TinyField(2).double()
    dyn = nno.NesterovNODE(net, r=3.0) if kind == "nesterov" else nno.HBNODE(net)
    h0 = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64)
    return dyn, h0


def _loss(dyn, h0, ts, config):
    y0 = dyn.initial_state(ts[0], h0)
    sol = nno.solve(dyn, y0, ts, config)
    h = dyn.readout(ts, sol.ys)
    return (h[-1] ** 2).sum() + h[1].sum(), sol


@pytest.mark.parametrize("kind", ["nesterov", "hbnode"])
@pytest.mark.parametrize("engine,sensitivity", sensitivity_cases())
def test_gradients_equal_float64_finite_differences(engine, sensitivity, kind):
    _available(engine)
    dyn, h0 = _model_and_inputs(kind)
    ts = torch.tensor([1.0, 1.4, 2.0], dtype=torch.float64, requires_grad=True)
    config = nno.SolveConfig(rtol=1e-12, atol=1e-12, engine=engine, sensitivity=sensitivity)
    h0 = h0.clone().requires_grad_()
    loss, _ = _loss(dyn, h0, ts, config)
    params = [p for p in dyn.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [h0, ts, *params])
    # central differences: every entry of h0 and ts, a seeded sample of the parameters'
    # (a step of 1e-4 keeps the solver's 1e-12 noise at 1e-8 and the truncation ~1e-8)
    eps, pick = 1e-4, torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor, grad in zip([h0, ts, *params], grads):
            flat, gflat = tensor.view(-1), grad.reshape(-1)
            entries = range(flat.numel())
            if tensor is not h0 and tensor is not ts and flat.numel() > 2:
                entries = torch.randperm(flat.numel(), generator=pick)[:2].tolist()
            for i in entries:
                old = float(flat[i])
                flat[i] = old + eps
                up = float(_loss(dyn, h0.detach(), ts.detach(), config)[0])
                flat[i] = old - eps
                down = float(_loss(dyn, h0.detach(), ts.detach(), config)[0])
                flat[i] = old
                fd = (up - down) / (2 * eps)
                assert abs(float(gflat[i]) - fd) < 1e-6 * max(1.0, abs(fd)), (
                    tuple(tensor.shape),
                    i,
                    float(gflat[i]),
                    fd,
                )


class Growth(nn.Module):
    """y' = a y with a trainable a: dy(T)/da = T y0 e^(aT), dy(T)/dy0 = e^(aT)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(-0.7, dtype=torch.float64))

    def forward(self, t, y):
        return self.a * y


@pytest.mark.parametrize(
    "engine,solver", [c for c in cases("fixed") if "4" in c.id or "38" in c.id or "DP5" in c.id]
)
@pytest.mark.parametrize("sensitivity", ["adjoint", "backprop"])
def test_fixed_step_gradients_match_the_exact_ones(engine, solver, sensitivity):
    """The adjoint (and backprop) at a fixed step, with steps that cross output times the
    loss does not read: exact to the method's accuracy at dt = 0.01."""
    cls = _available(engine)
    if sensitivity == "backprop" and not cls.differentiable:
        pytest.skip(f"the {engine} engine has no backprop")
    field = Growth()
    y0 = torch.tensor([[1.5]], dtype=torch.float64, requires_grad=True)
    sol = nno.solve(
        nno.NODE(field),
        y0,
        [0.0, 0.5, 1.0],
        solver=solver,
        engine=engine,
        dt=0.01,
        sensitivity=sensitivity,
    )
    sol.ys[-1].sum().backward()
    e = math.exp(-0.7)
    assert float(y0.grad) == pytest.approx(e, rel=1e-8)
    assert float(field.a.grad) == pytest.approx(1.5 * e, rel=1e-8)


# -- counting, the interval, failures ------------------------------------------------------
@pytest.mark.parametrize("engine,sensitivity", sensitivity_cases())
def test_reported_nfe_equals_the_calls_the_field_observes(engine, sensitivity):
    _available(engine)
    torch.manual_seed(0)
    net = TimeRecorder(TinyField(2).double())
    dyn = nno.NesterovNODE(net)
    ts = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64)
    h0 = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    options = {"cuda_graphs": "emulate"} if engine == "rk" else {}
    sol = nno.solve(
        dyn,
        dyn.initial_state(ts[0], h0),
        ts,
        engine=engine,
        sensitivity=sensitivity,
        rtol=1e-6,
        atol=1e-6,
        options=options,
    )
    forward = len(net.times)
    assert sol.stats.nfe_forward == forward > 0
    dyn.readout(ts, sol.ys)[-1].sum().backward()
    assert sol.stats.nfe_backward == len(net.times) - forward
    if sensitivity != "backprop":
        assert sol.stats.nfe_backward > 0


class SlowField(nn.Module):
    """A field so slow that the first-step rule wants a step far beyond the interval."""

    def forward(self, t, h):
        return 1e-9 * h


@pytest.mark.parametrize("engine,sensitivity", sensitivity_cases())
def test_the_field_is_never_evaluated_outside_the_interval(engine, sensitivity):
    _available(engine)
    for field, solver in ((SlowField(), "DP5"), (TinyField(2).double(), "BS3")):
        rec = TimeRecorder(field)
        dyn = nno.NesterovNODE(rec)
        cls = engine_class(engine)
        if solver not in cls.methods:
            continue
        ts = torch.tensor([1.0, 1.3, 2.0], dtype=torch.float64)
        h0 = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
        sol = nno.solve(
            dyn,
            dyn.initial_state(ts[0], h0),
            ts,
            solver=solver,
            engine=engine,
            sensitivity=sensitivity,
            rtol=1e-7,
            atol=1e-7,
        )
        dyn.readout(ts, sol.ys)[-1].sum().backward()
        assert 1.0 <= min(rec.times) and max(rec.times) <= 2.0, (min(rec.times), max(rec.times))


@pytest.mark.parametrize(
    "engine,solver",
    cases("adaptive")
    + [pytest.param("scipy", s, id=f"scipy-{s}") for s in ("LSODA", "RadauIIA5", "BDF")],
)
def test_a_blow_up_raises_solver_error_with_the_time_reached(engine, solver):
    """y' = y² from y(0) = 1 is infinite at t = 1: every engine stops near it with the
    reason (not by running to max_steps: LSODA used to record zero-length steps there)."""
    _available(engine)
    with pytest.raises(SolverError) as info:
        nno.solve(
            nno.NODE(BlowUp()),
            torch.ones(1, 1, dtype=torch.float64),
            [0.0, 2.0],
            solver=solver,
            engine=engine,
            rtol=1e-5,
            atol=1e-5,
        )
    err = info.value
    assert 0.9 < err.t_reached <= 1.001
    assert err.reason in ("nonfinite", "underflow", "stalled"), err.reason
    assert err.stats.nfe_forward > 0 and "t = " in str(err)


def _every_method():
    """(engine, solver) pairs: every adaptive method of every engine, implicit included."""
    out = []
    for name in ENGINE_ORDER:
        cls = engine_class(name)
        if cls is None:
            continue
        out += [_param(name, s) for s in cls.methods if SOLVERS[s].adaptive]
    return out


class _Alarm:
    """Raise TimeoutError in the main thread after ``seconds`` (a solve that hangs)."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def expired(signum, frame):
            raise TimeoutError(f"the solve did not return within {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


@pytest.mark.parametrize("engine,solver", _every_method())
@pytest.mark.parametrize("where", ["forward", "backward"])
def test_a_nan_parameter_raises_solver_error_at_once_naming_the_field(engine, solver, where):
    """A NaN parameter (an optimiser step that diverged) makes f(t0, y0) NaN: every solve
    stops at once with SolverError "nonfinite_field" naming the parameter (SciMLSensitivity
    aside: SciPy's explicit methods once looped forever, f then evaluated at t = NaN),
    within max_steps and a 60 s alarm, f never evaluated outside [t0, T]; a NaN in the
    loss's gradient is named as the loss's, not as the solver's."""
    _available(engine)
    net = TimeRecorder(TinyField(2).double())
    dyn = nno.NODE(net)
    y0 = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64, requires_grad=True)
    with _Alarm(60):
        if where == "forward":
            with torch.no_grad():
                net.net.w1[0, 0] = float("nan")
            with pytest.raises(SolverError, match="f\\(t0, y0\\) is NaN.*net.w1") as info:
                nno.solve(dyn, y0, [0.0, 1.0], solver=solver, engine=engine, max_steps=10)
            assert info.value.reason == "nonfinite_field" and info.value.t_reached == 0.0
        else:
            sol = nno.solve(dyn, y0, [0.0, 1.0], solver=solver, engine=engine, max_steps=1000)
            with pytest.raises(SolverError, match="loss's gradient") as info:
                (sol.ys[-1] * float("nan")).sum().backward()
            assert info.value.reason == "nonfinite_gradient"
    assert all(0.0 <= t <= 1.0 for t in net.times), [t for t in net.times if not 0 <= t <= 1]


class _OutputOfTwo(nn.Module):
    """A module used directly as the dynamics: dy/dt of shape [2] for any state."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))

    def forward(self, t, y):
        return -self.w


@pytest.mark.parametrize("engine", [_engine(n) for n in ENGINE_ORDER])
def test_a_field_of_the_wrong_shape_is_refused_naming_both_shapes(engine):
    """dy/dt of shape [2] for a [4, 2] state would broadcast: every engine refuses it."""
    _available(engine)
    y0 = torch.ones(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"shape \(2,\) for a state of shape \(4, 2\)"):
        nno.solve(_OutputOfTwo(), y0, [0.0, 1.0], engine=engine)


@pytest.mark.parametrize("engine", [_engine(n) for n in ENGINE_ORDER])
def test_an_empty_batch_gives_an_empty_solution_without_evaluating_the_field(engine):
    _available(engine)
    net = TimeRecorder(TinyField(2).double())
    y0 = torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    sol = nno.solve(nno.NODE(net), y0, [0.0, 0.5, 1.0], engine=engine)
    assert sol.ys.shape == (3, 0, 2) and sol.stats.nfe_forward == 0 and net.times == []
    sol.ys.sum().backward()
    assert y0.grad.shape == (0, 2)


@pytest.mark.parametrize("solver", [pytest.param(s, id=f"scipy-{s}") for s in ("RadauIIA5", "BDF")])
def test_implicit_methods_count_their_jacobian_evaluations_apart_from_the_nfe(solver):
    """The contract's exception (engines/base.py): an implicit method's Jacobians are
    formed by autograd through the field; those calls are ``extra["njev"]``, not NFE."""
    _available("scipy")
    net = TimeRecorder(TinyField(2).double())
    y0 = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    with torch.no_grad():
        sol = nno.solve(nno.NODE(net), y0, [0.0, 1.0], solver=solver, engine="scipy")
    njev = sol.stats.extra["njev"]
    assert njev >= 1 and len(net.times) == sol.stats.nfe_forward + njev


@pytest.mark.parametrize("engine", [_engine(n) for n in ENGINE_ORDER])
def test_an_unknown_engine_option_is_refused_with_the_valid_ones(engine):
    cls = _available(engine)
    with pytest.raises(ValueError, match="has no option 'bogus'; its options:") as info:
        nno.solve(
            nno.NODE(CosField()), torch.ones(1, 1), [0.0, 1.0], engine=engine, options={"bogus": 1}
        )
    for name in cls.options:
        assert name in str(info.value)


def test_every_sensitivity_name_is_listed():
    names = sensitivity_names()
    assert {"adjoint", "adjoint-seminorm", "backprop", "torchdiffeq:adjoint"} <= set(names)
