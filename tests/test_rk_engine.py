"""The rk engine: its tableaux, its steps (the same as torchdiffeq's), closed forms,
adjoint gradients, NFE counts, the static-buffer semantics of its CUDA graphs (emulated
on the CPU) and its errors. Its convergence orders are in test_core_convergence.py."""

from __future__ import annotations

import warnings
from itertools import product

import pytest
import torch

import nesterovnode as nn_
from conftest import (
    MODEL_NAMES,
    BlowUp,
    CallCounter,
    TimeRecorder,
    TinyField,
    inputs,
    make_dynamics,
)
from nesterovnode.solve import SolverError
from nesterovnode.solve.graphs import EagerRunner, RunnerCache, StaticRunner
from nesterovnode.solve.registry import resolve
from nesterovnode.solve.rk import fixed_grid, next_step_size
from nesterovnode.solve.tableaux import TABLEAUX
from test_core_closed_form import nesterov_closed_form_error


# -- tableaux ------------------------------------------------------------------------------
def order_conditions(b, c, a, order):
    """(value, exact) of the order conditions up to ``order`` (all rooted trees to 4, and
    the bushy tree of order 5)."""

    def A(i, j):
        return a[i - 1][j] if 1 <= i and j < len(a[i - 1]) else 0.0

    s = len(b)
    cc = [0.0, *c]  # c of stage 1 is 0
    rng = range(s)
    ac = [sum(A(i, j) * cc[j] for j in rng) for i in rng]
    acc = [sum(A(i, j) * cc[j] ** 2 for j in rng) for i in rng]
    aac = [sum(A(i, j) * ac[j] for j in rng) for i in rng]
    conds = [(sum(b), 1.0)]
    if order >= 2:
        conds.append((sum(b[i] * cc[i] for i in rng), 1 / 2))
    if order >= 3:
        conds += [
            (sum(b[i] * cc[i] ** 2 for i in rng), 1 / 3),
            (sum(b[i] * ac[i] for i in rng), 1 / 6),
        ]
    if order >= 4:
        conds += [
            (sum(b[i] * cc[i] ** 3 for i in rng), 1 / 4),
            (sum(b[i] * cc[i] * ac[i] for i in rng), 1 / 8),
            (sum(b[i] * acc[i] for i in rng), 1 / 12),
            (sum(b[i] * aac[i] for i in rng), 1 / 24),
        ]
    if order >= 5:
        conds.append((sum(b[i] * cc[i] ** 4 for i in rng), 1 / 5))
    return conds


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_tableaux_satisfy_their_order_conditions(name):
    tab = TABLEAUX[name]
    for ci, row in zip(tab.c, tab.a):  # c_i = Σ_j a_ij
        assert sum(row) == pytest.approx(ci, abs=1e-14)
    for value, exact in order_conditions(tab.b, tab.c, tab.a, tab.order):
        assert value == pytest.approx(exact, abs=1e-13)
    if tab.adaptive:
        # the embedded solution b̂ = b − (b − b̂) has order p − 1 and differs from b
        b_hat = [x - e for x, e in zip(tab.b, tab.b_error)]
        for value, exact in order_conditions(b_hat, tab.c, tab.a, tab.order - 1):
            assert value == pytest.approx(exact, abs=1e-13)
        assert max(abs(e) for e in tab.b_error) > 1e-3
        assert tab.fsal and tab.new_evaluations_per_step == tab.stages - 1


def test_step_size_control_follows_the_standard_rule():
    assert next_step_size(0.1, 0.0, 5) == pytest.approx(1.0)  # grows by at most 10
    assert next_step_size(0.1, 1e-12, 5) == pytest.approx(1.0)
    assert next_step_size(0.1, 0.5, 5) == pytest.approx(0.1 * 0.9 * 0.5 ** (-0.2))
    assert next_step_size(0.1, 0.99, 5) == pytest.approx(0.1)  # never shrinks on accept
    assert next_step_size(0.1, 2.0, 5) == pytest.approx(0.1 * 0.9 * 2.0 ** (-0.2))
    assert next_step_size(0.1, 1e9, 5) == pytest.approx(0.02)  # shrinks by at most 5


def test_fixed_grid_lands_on_every_output_time():
    grids = fixed_grid([0.0, 0.25, 1.0], 0.1)
    assert [len(g) - 1 for g in grids] == [3, 8]
    assert grids[0][-1] == 0.25 and grids[1][0] == 0.25 and grids[1][-1] == 1.0


# -- the same steps as torchdiffeq, and the numbers of the core tests ----------------------
def test_registry_offers_the_rk_engine_by_name():
    eng, info, method = resolve("rk:DP5")
    assert (eng.name, info.name, method) == ("rk", "DP5", "dp5")
    assert resolve("DP5")[0].name == "torch"  # the default engine is unchanged
    assert resolve("BS3", engine="rk")[2] == "bs3"


def engine_runs(dyn, solver, torch_options=None):
    """Forward + adjoint on the torch and rk engines: (Solution, parameter grads) each."""
    g = torch.Generator().manual_seed(0)
    h0 = torch.randn(4, 3, generator=g)
    y0 = dyn.initial_state(1.0, h0, 0.3 * torch.randn(4, 3, generator=g))
    out = {}
    for engine in ("torch", "rk"):
        dyn.zero_grad()
        sol = nn_.solve(
            dyn,
            y0,
            [1.0, 2.0],
            solver=solver,
            engine=engine,
            rtol=1e-6,
            atol=1e-6,
            options=torch_options if engine == "torch" else None,
        )
        sol.ys[-1].square().sum().backward()
        out[engine] = (sol, [p.grad.clone() for p in dyn.parameters()])
    return out["torch"], out["rk"]


def assert_same_forward_steps(st, sr):
    # equal up to rounding: the error estimate h Σ (b_i − b̂_i) k_i cancels to ~1e-7 of the
    # state, so its last bits (summed in another order) move the next step by ~1e-9
    assert sr.stats.step_sizes == pytest.approx(st.stats.step_sizes, rel=1e-7)
    assert sr.stats.nfe_forward == st.stats.nfe_forward
    assert torch.allclose(sr.ys, st.ys, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_rk_takes_torchdiffeqs_steps_forward_and_backward(solver, float64):
    # An autonomous field, and torchdiffeq told to end its steps on the output times (as
    # rk does) instead of stepping past T and interpolating.
    dyn = nn_.HBNODE(
        torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    )
    (st, gt), (sr, gr) = engine_runs(dyn, solver, {"step_t": torch.tensor([1.0, 2.0])})
    assert_same_forward_steps(st, sr)
    assert sr.stats.nfe_backward == st.stats.nfe_backward
    assert sr.stats.steps_accepted_backward == st.stats.steps_accepted_backward
    for a, b in zip(gr, gt):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_rk_adjoint_of_a_time_dependent_field_needs_no_more_steps_than_torchdiffeq(solver, float64):
    # torchdiffeq 0.2.5's adjoint also integrates dL/dt (its detached copy of t is turned
    # back into a leaf by `t_.requires_grad_`), and the error of that unused channel enters
    # its step control: for fields that read t (the Nesterov models' k(t)) its backward
    # takes more steps. rk leaves it out; the gradients agree to the tolerance.
    dyn = nn_.NesterovNODE(TinyField(3, seed=4), r=3.0)
    (st, gt), (sr, gr) = engine_runs(dyn, solver)
    assert_same_forward_steps(st, sr)
    assert sr.stats.nfe_backward < st.stats.nfe_backward
    for a, b in zip(gr, gt):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("r", [3.0, 10.0])
def test_rk_matches_the_bessel_closed_form(r):
    err = nesterov_closed_form_error(r, solver="rk:DP5", rtol=1e-10, atol=1e-12)
    assert err < 1e-7, f"r={r}: max |readout - closed form| = {err:.3e}"
    loose = nesterov_closed_form_error(r, solver="rk:DP5", rtol=1e-5, atol=1e-7)
    assert err < loose / 100


def loss_and_stats(dyn, h0, v0, engine, sensitivity, options=None):
    ts = torch.tensor([1.0, 1.5, 2.0])
    y0 = dyn.initial_state(ts[0], h0, v0)
    sol = nn_.solve(
        dyn,
        y0,
        ts,
        engine=engine,
        sensitivity=sensitivity,
        rtol=1e-11,
        atol=1e-11,
        options=options,
    )
    h = dyn.readout(ts, sol.ys)
    w = torch.linspace(-1.0, 1.0, h[1:].numel()).reshape(h[1:].shape)
    return (w * h[1:]).sum() + (h[-1] ** 2).sum(), sol.stats


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rk_adjoint_gradients_agree_with_backprop_and_finite_differences(name, float64):
    dyn = make_dynamics(name)
    h0, v0 = inputs(name)
    g = torch.Generator().manual_seed(2)
    leaves = [*dyn.parameters(), h0] + ([v0] if v0 is not None else [])
    grads = {}
    for engine, sens in [
        ("torch", "backprop"),
        ("rk", "backprop"),
        ("rk", "adjoint"),
        ("rk", "adjoint-seminorm"),
    ]:
        loss, stats = loss_and_stats(dyn, h0, v0, engine, sens)
        grads[engine, sens] = torch.autograd.grad(loss, leaves)
        assert (stats.nfe_backward > 0) == (sens != "backprop")
    reference = grads["torch", "backprop"]
    for key, gs in grads.items():
        for i, (a, b) in enumerate(zip(gs, reference)):
            err = float((a - b).norm() / max(b.norm(), 1e-12))
            assert err < 1e-6, f"{name} {key} leaf {i}: {err:.2e}"
    d = [torch.randn(x.shape, generator=g) for x in leaves]
    eps = 1e-5
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for x, dx in zip(leaves, d):
                x.add_(sign * eps * dx)
            values.append(loss_and_stats(dyn, h0, v0, "rk", "adjoint")[0])
            for x, dx in zip(leaves, d):
                x.sub_(sign * eps * dx)
    fd = float(values[0] - values[1]) / (2 * eps)
    analytic = float(sum((gr * dx).sum() for gr, dx in zip(grads["rk", "adjoint"], d)))
    assert abs(analytic - fd) < 1e-5 * max(abs(fd), 1e-3)


# -- counting, landing, the graphs' buffer semantics ---------------------------------------
@pytest.mark.parametrize("sensitivity", ["backprop", "adjoint", "adjoint-seminorm"])
@pytest.mark.parametrize("solver", ["DP5", "BS3", "RK4"])
def test_rk_nfe_counts_equal_the_calls_f_observes(solver, sensitivity):
    f = CallCounter(TinyField(3))
    dyn = nn_.NesterovNODE(f)
    y0 = dyn.initial_state(1.0, torch.randn(4, 3), torch.randn(4, 3))
    ts = [1.0, 1.4, 2.0]
    sol = nn_.solve(
        dyn,
        y0,
        ts,
        solver=solver,
        engine="rk",
        dt=0.05,
        sensitivity=sensitivity,
        rtol=1e-6,
        atol=1e-6,
    )
    s = sol.stats
    assert s.nfe_forward == f.calls > 0
    before = f.calls
    dyn.readout(2.0, sol.ys[-1]).square().sum().backward()
    assert s.nfe_backward == f.calls - before
    per_step = {"DP5": 6, "BS3": 3, "RK4": 4}[solver]
    if solver == "RK4":
        assert s.nfe_forward == per_step * s.steps_accepted
    else:  # FSAL: f(t0) to start (dt is the first step), then the new stages per attempt
        assert s.nfe_forward == 1 + per_step * (s.steps_accepted + s.steps_rejected)
        if sensitivity != "backprop":  # the adjoint restarts at each of the 2 intervals
            attempts = s.steps_accepted_backward + s.steps_rejected_backward
            assert s.nfe_backward == 2 + per_step * attempts
    # steps end on the output times: they add up to the span exactly
    assert sum(s.step_sizes) == pytest.approx(1.0, abs=1e-12)
    assert s.t_reached == pytest.approx(2.0, abs=1e-12)


def test_nesterov_field_is_evaluated_only_inside_t0_T_forward_and_backward():
    f = TimeRecorder(TinyField(3))
    dyn = nn_.NesterovNODE(f)
    y0 = dyn.initial_state(1.0, torch.randn(4, 3), torch.randn(4, 3))
    sol = nn_.solve(dyn, y0, [1.0, 2.0], engine="rk", rtol=1e-3, atol=1e-3)
    sol.ys[-1].sum().backward()
    assert sol.stats.nfe_backward > 0
    assert 1.0 <= min(f.times) and max(f.times) <= 2.0 + 1e-6


@pytest.mark.parametrize("name", ["hbnode", "nesterovnode", "gnesterovnode"])
def test_emulated_graph_buffers_give_the_eager_numbers_bit_for_bit(name):
    # StaticRunner reuses its input and output buffers as a CUDA graph does: any read of
    # an output after the next call would change these numbers.
    dyn = make_dynamics(name)
    g = torch.Generator().manual_seed(3)
    h0, v0 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    results = []
    for options in ({"cuda_graphs": False}, {"cuda_graphs": "emulate"}):
        dyn.zero_grad()
        loss, stats = loss_and_stats(dyn, h0, v0, "rk", "adjoint", options)
        loss.backward()
        grads = [p.grad.clone() for p in dyn.parameters()]
        results.append((loss.item(), stats.nfe_forward, stats.nfe_backward, grads))
    (l1, f1, b1, g1), (l2, f2, b2, g2) = results
    assert (l1, f1, b1) == (l2, f2, b2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_runner_cache_reuses_a_runner_per_shape_and_drops_the_oldest():
    cache = RunnerCache(size=2)

    def fn(t, y):
        return (y[0] * t,)

    x = torch.ones(3)
    r1 = cache.get("a", fn, (1.0, (x,)), x.dtype, x.device, "emulate")
    assert (
        isinstance(r1, StaticRunner)
        and cache.get("a", fn, None, x.dtype, x.device, "emulate") is r1
    )
    out = r1(2.0, (x,))
    assert torch.equal(out[0], 2 * x) and r1(3.0, (x,)) is out  # the same output buffers
    assert torch.equal(out[0], 3 * x)
    cache.get("b", fn, (1.0, (x,)), x.dtype, x.device, "emulate")
    cache.get("c", fn, (1.0, (x,)), x.dtype, x.device, "emulate")
    assert (
        len(cache) == 2 and cache.get("a", fn, (1.0, (x,)), x.dtype, x.device, "emulate") is not r1
    )
    assert isinstance(cache.get("d", fn, None, x.dtype, x.device, "eager"), EagerRunner)


def test_a_model_is_solved_by_one_cached_runner_per_kind_and_shape():
    from nesterovnode.solve.registry import get_engine

    engine = get_engine("rk")
    engine.runners.clear()
    dyn = make_dynamics("hbnode")
    for batch in (4, 4, 4, 6):
        y0 = dyn.initial_state(1.0, torch.randn(batch, 3))
        sol = nn_.solve(dyn, y0, [1.0, 2.0], engine="rk", options={"cuda_graphs": "emulate"})
        sol.ys[-1].sum().backward()
    # forward init + step, adjoint init + step, for each of the two batch shapes
    assert len(engine.runners) == 8
    engine.runners.clear()


# -- errors --------------------------------------------------------------------------------
def test_rk_errors_say_what_to_do():
    dyn = nn_.NODE(TinyField(3))
    y0 = torch.randn(2, 3)
    with pytest.raises(ValueError, match="no option 'first_step'.*cuda_graphs"):
        nn_.solve(dyn, y0, [0.0, 1.0], engine="rk", options={"first_step": 0.1})
    with pytest.raises(ValueError, match="cuda_graphs must be True, False or 'emulate'"):
        nn_.solve(dyn, y0, [0.0, 1.0], engine="rk", options={"cuda_graphs": "yes"})
    with pytest.raises(ValueError, match="no solver 'DP8'; engines that have it: torch"):
        nn_.solve(dyn, y0, [0.0, 1.0], solver="DP8", engine="rk")


def test_rk_refuses_gradients_with_respect_to_the_output_times():
    ts = torch.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(ValueError, match="does not differentiate with respect to the output"):
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), ts, engine="rk")


def test_rk_adjoint_of_a_field_without_parameters_gives_the_exact_gradient(float64):
    # y' = -y: y(T) = y0 e^{-T}, so d(sum y(T))/dy0 = e^{-T}
    class Decay(torch.nn.Module):
        def forward(self, t, y):
            return -y

    y0 = torch.randn(3, 2).requires_grad_()
    sol = nn_.solve(nn_.NODE(Decay()), y0, [0.0, 0.5, 2.0], engine="rk", rtol=1e-10, atol=1e-10)
    sol.ys[-1].sum().backward()
    assert torch.allclose(y0.grad, torch.full_like(y0, torch.e**-2.0), rtol=1e-8)
    assert sol.stats.nfe_backward > 0


def test_rk_reports_a_blow_up_with_the_time_reached():
    y0 = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(SolverError) as exc:
        nn_.solve(nn_.NODE(BlowUp()), y0, [0.0, 2.0], engine="rk", sensitivity="backprop")
    assert 0.9 < exc.value.t_reached < 1.001
    assert "DP5 failed at t = " in str(exc.value)


def test_rk_enforces_max_steps():
    y0 = torch.randn(2, 3)
    with pytest.raises(SolverError, match="more than max_steps = 3"):
        nn_.solve(
            nn_.NODE(TinyField(3)), y0, [0.0, 5.0], engine="rk", rtol=1e-10, atol=1e-10, max_steps=3
        )


# -- tasks: the image tasks run on rk by default -------------------------------------------
def test_image_tasks_default_to_the_rk_engine_and_other_solvers_still_resolve():
    from nesterovnode.runs.training import TrainConfig
    from nesterovnode.tasks import get_task

    mnist = get_task("mnist")
    assert mnist.build_model("hbnode").block.solve_options["engine"] == "rk"
    other = mnist.build_model("hbnode", solver="scipy:RK45")
    assert other.block.solve_options["engine"] is None
    assert TrainConfig(task="mnist").resolved(mnist).engine == "rk"
    assert TrainConfig(task="mnist", solver="DP8").resolved(mnist).engine is None
    point = get_task("pointcloud")
    assert TrainConfig().resolved(point).engine is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name, sensitivity", list(product(["hbnode", "gnesterovnode"], ["adjoint", "adjoint-seminorm"]))
)
def test_cuda_graphs_give_the_eager_numbers(name, sensitivity):
    dyn = make_dynamics(name).cuda()
    g = torch.Generator().manual_seed(3)
    h0, v0 = (torch.randn(5, 3, generator=g).cuda() for _ in range(2))
    results = []
    for graphs in (False, True, True):  # the second graphed solve replays
        dyn.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a capture that falls back fails the test
            loss, stats = loss_and_stats(dyn, h0, v0, "rk", sensitivity, {"cuda_graphs": graphs})
            loss.backward()
        results.append(
            (
                stats.nfe_forward,
                stats.nfe_backward,
                loss.item(),
                torch.cat([p.grad.reshape(-1) for p in dyn.parameters()]),
            )
        )
    for nfe_f, nfe_b, loss, grads in results[1:]:
        assert (nfe_f, nfe_b) == results[0][:2]
        assert loss == pytest.approx(results[0][2], rel=1e-6)
        assert torch.allclose(grads, results[0][3], rtol=1e-4, atol=1e-6)


def test_rk_counts_two_start_evaluations_without_a_first_step():
    dyn = nn_.NODE(TinyField(3))
    sol = nn_.solve(dyn, torch.randn(4, 3), [0.0, 1.0, 3.0], engine="rk", rtol=1e-9, atol=1e-9)
    sol.ys.sum().backward()
    s = sol.stats
    assert s.nfe_forward == 2 + 6 * (s.steps_accepted + s.steps_rejected)
    # the adjoint restarts at each output time: 2 intervals, 2 evaluations each
    assert s.nfe_backward == 2 * 2 + 6 * (s.steps_accepted_backward + s.steps_rejected_backward)


def test_a_training_run_releases_the_engines_cached_steps():
    from nesterovnode.runs.training import TrainConfig, train
    from nesterovnode.solve.registry import get_engine
    from nesterovnode.tasks.base import TaskDefaults
    from nesterovnode.tasks.pointcloud import PointCloudTask

    class Task(PointCloudTask):  # the point cloud on the rk engine, graph buffers emulated
        defaults = TaskDefaults(epochs=1, lr=1e-2, batch_size=60, tol=1e-3, engine="rk")

    engine = get_engine("rk")
    engine.runners.clear()
    task = Task()
    config = TrainConfig(model="hbnode", model_options={"options": {"cuda_graphs": "emulate"}})
    seen = []
    train(config, task=task, progress=False, on_epoch=lambda r: seen.append(len(engine.runners)))
    assert seen and seen[0] > 0  # cached while training
    assert len(engine.runners) == 0  # released at the end
