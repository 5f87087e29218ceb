"""What is particular to the rk engine: its step-size controllers, its fixed grid, the
same steps as torchdiffeq's where both run one method, the static-buffer semantics of its
CUDA graphs (emulated on the CPU), its runner cache and its errors. The engine contract
(orders, gradients, NFE, the interval, blow-ups) is tests/engines; the tableaux are
test_tableaux.py."""

from __future__ import annotations

import math
import warnings
from itertools import product

import pytest
import torch

import nesterovnode as nno
from helpers import TinyField, make_dynamics
from nesterovnode.solve.engines.rk.programs.runners import (
    CompiledRunner,
    EagerRunner,
    RunnerCache,
    StaticRunner,
)
from nesterovnode.solve.grid import fixed_grid
from nesterovnode.solve.registry import resolve
from nesterovnode.solve.stepsize import IntegralController, PIController


# -- step control and grids ----------------------------------------------------------------
def test_integral_control_follows_the_standard_rule():
    c = IntegralController(5)
    assert c.next_step(0.1, 0.0) == pytest.approx(1.0)  # grows by at most 10
    assert c.next_step(0.1, 1e-12) == pytest.approx(1.0)
    assert c.next_step(0.1, 0.5) == pytest.approx(0.1 * 0.9 * 0.5 ** (-0.2))
    assert c.next_step(0.1, 0.99) == pytest.approx(0.1)  # never shrinks on accept
    assert c.next_step(0.1, 2.0) == pytest.approx(0.1 * 0.9 * 2.0 ** (-0.2))
    assert c.next_step(0.1, 1e9) == pytest.approx(0.02)  # shrinks by at most 5


def test_pi_control_remembers_the_last_accepted_ratio():
    c = PIController(5)
    first = c.next_step(0.1, 0.5)  # no history yet: r_prev = 1
    assert first == pytest.approx(0.1 * 0.9 * 0.5 ** (-0.7 / 5))
    second = c.next_step(0.1, 0.5)  # now r_prev = 0.5 damps the growth
    assert second == pytest.approx(0.1 * 0.9 * 0.5 ** (-0.7 / 5) * 0.5 ** (0.4 / 5))
    assert c.next_step(0.1, 4.0) <= 0.1  # a rejection never grows the step
    c.reset()
    assert c.next_step(0.1, 0.5) == pytest.approx(first)


def test_the_pi_controller_solves_to_the_same_accuracy(float64):
    class Cos(torch.nn.Module):
        def forward(self, t, y):
            return torch.cos(t) * y

    y0 = torch.ones(1, 1)
    for controller in ("integral", "PI"):
        sol = nno.solve(
            nno.NODE(Cos()),
            y0,
            [0.0, 10.0],
            rtol=1e-8,
            atol=1e-8,
            options={"controller": controller},
        )
        assert abs(float(sol.ys[-1, 0, 0]) - torch.e ** torch.sin(torch.tensor(10.0))) < 1e-7
    with pytest.raises(ValueError, match="controller' must be one of 'integral', 'PI'"):
        nno.solve(nno.NODE(Cos()), y0, [0.0, 1.0], options={"controller": "P"})


def test_fixed_grid_lands_on_every_output_time():
    grids = fixed_grid([0.0, 0.25, 1.0], 0.1)
    assert [len(g) - 1 for g in grids] == [3, 8]
    assert grids[0][-1] == 0.25 and grids[1][0] == 0.25 and grids[1][-1] == 1.0


def test_rk_is_the_default_engine_for_every_method_it_has():
    eng, info, method = resolve("rk:DP5")
    assert (eng.name, info.name, method) == ("rk", "DP5", "dp5")
    for name in ("Euler", "Midpoint", "RK4", "RK38", "BS3", "DP5", "Tsit5", "DP8"):
        assert resolve(name)[0].name == "rk"
    assert resolve("DP87")[0].name == "torchdiffeq"  # torchdiffeq's dopri8 has its own name


# -- the same steps as torchdiffeq ---------------------------------------------------------
def engine_runs(dyn, solver, sensitivities=("adjoint", "adjoint")):
    """Forward + backward on the rk and torchdiffeq engines: (Solution, grads) each."""
    g = torch.Generator().manual_seed(0)
    h0 = torch.randn(4, 3, generator=g)
    y0 = dyn.initial_state(1.0, h0, 0.3 * torch.randn(4, 3, generator=g))
    out = []
    for engine, sensitivity in zip(("rk", "torchdiffeq"), sensitivities):
        dyn.zero_grad()
        sol = nno.solve(
            dyn,
            y0,
            [1.0, 2.0],
            solver=solver,
            engine=engine,
            rtol=1e-6,
            atol=1e-6,
            sensitivity=sensitivity,
        )
        sol.ys[-1].square().sum().backward()
        out.append((sol, [p.grad.clone() for p in dyn.parameters()]))
    return out


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("model", ["hbnode", "nesterovnode"])
def test_rk_and_torchdiffeq_take_the_same_steps_forward_and_backward(solver, model, float64):
    """The same method, first-step rule, controller and norm on both engines, and the one
    adjoint: the step sizes agree to rounding; the forward NFE differ by exactly one
    (torchdiffeq evaluates f(t0) again after the first-step rule), the backward NFE not
    at all (both start from the step the forward proposed: one evaluation of f(t0))."""
    (sr, gr), (st, gt) = engine_runs(make_dynamics(model), solver)
    # equal up to rounding: the error estimate h Σ (b_i − b̂_i) k_i cancels to ~1e-7 of the
    # state, so its last bits (summed in another order) move the next step by ~1e-9
    assert sr.stats.step_sizes == pytest.approx(st.stats.step_sizes, rel=1e-7)
    assert torch.allclose(sr.ys, st.ys, rtol=0, atol=1e-12)
    assert st.stats.nfe_forward == sr.stats.nfe_forward + 1
    assert st.stats.steps_accepted_backward == sr.stats.steps_accepted_backward
    assert st.stats.nfe_backward == sr.stats.nfe_backward
    for a, b in zip(gr, gt):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_the_one_adjoint_needs_fewer_backward_steps_than_torchdiffeqs_own(solver, float64):
    # torchdiffeq 0.2.5's odeint_adjoint also integrates dL/dt (its detached copy of t is
    # turned back into a leaf by `t_.requires_grad_`), and the error of that unused channel
    # enters its step control: for fields that read t (the Nesterov models' k(t)) its
    # backward takes more steps. The library's adjoint leaves it out; the gradients agree
    # to the tolerance.
    dyn = nno.NesterovNODE(TinyField(3, seed=4), r=3.0)
    (sr, gr), (st, gt) = engine_runs(dyn, solver, ("adjoint", "torchdiffeq:adjoint"))
    assert sr.stats.nfe_backward < st.stats.nfe_backward
    for a, b in zip(gr, gt):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


# -- graphs and runners --------------------------------------------------------------------
def loss_and_grads(dyn, h0, v0, options, sensitivity="adjoint", times=(1.0, 1.5, 2.0), tol=1e-5):
    """(loss, forward NFE, backward NFE, the parameters' gradient, the solve's stats) of
    the readout's squared norm at ``times``, from h(t0) = h0, h'(t0) = v0."""
    dyn.zero_grad()
    y0 = dyn.initial_state(times[0], h0, v0)
    sol = nno.solve(
        dyn,
        y0,
        list(times),
        rtol=tol,
        atol=tol,
        engine="rk",
        sensitivity=sensitivity,
        options=options,
    )
    loss = dyn.readout(torch.tensor(times), sol.ys).square().sum()
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in dyn.parameters()])
    s = sol.stats
    return loss.item(), s.nfe_forward, s.nfe_backward, grads, s


@pytest.mark.parametrize("name", ["hbnode", "nesterovnode", "gnesterovnode"])
def test_emulated_graph_buffers_give_the_eager_numbers_bit_for_bit(name):
    # StaticRunner reuses its input and output buffers as a CUDA graph does: any read of
    # an output after the next call (a dense output included) would change these numbers.
    dyn = make_dynamics(name)
    g = torch.Generator().manual_seed(3)
    h0, v0 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    eager = loss_and_grads(dyn, h0, v0, {"cuda_graphs": False})
    emulated = loss_and_grads(dyn, h0, v0, {"cuda_graphs": "emulate"})
    assert eager[:3] == emulated[:3]
    assert torch.equal(eager[3], emulated[3])


@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("name", ["hbnode", "nesterovnode", "gnesterovnode"])
def test_graphs_of_chunks_of_attempts_give_the_graphs_of_one_steps_numbers(
    name, chunk, monkeypatch
):
    """``graph_chunk=K`` (graphs emulated on the CPU: masked attempts): the forward solve to
    T (two output times) and each interval of the adjoint run as graphs of K attempts with
    the step-size control inside; the loss, forward and backward NFE, accepted and
    rejected steps and the gradients are those of one graph per attempt (to 1e-12: the
    controller's power is torch's there, C's here), and the host reads the attempts once
    per chunk: K at a time, fewer only in a solve's last chunk."""
    from nesterovnode.solve.engines.rk.programs import solve_loop

    reads = []
    replay = solve_loop._replay

    def spy(rows, recorder, per_step):
        reads.append(len(rows))
        return replay(rows, recorder, per_step)

    monkeypatch.setattr(solve_loop, "_replay", spy)
    dyn = make_dynamics(name)
    g = torch.Generator().manual_seed(3)
    h0, v0 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    for times in ([1.0, 2.0], [1.0, 1.5, 2.0]):
        one = loss_and_grads(dyn, h0, v0, {"cuda_graphs": "emulate"}, times=times, tol=1e-6)
        assert not reads  # one graph per attempt: the host's loop, no chunk
        options = {"cuda_graphs": "emulate", "graph_chunk": chunk}
        chunked = loss_and_grads(dyn, h0, v0, options, times=times, tol=1e-6)
        assert chunked[0] == pytest.approx(one[0], rel=1e-12)
        assert torch.allclose(chunked[3], one[3], rtol=1e-10, atol=1e-12)
        s, t = chunked[4], one[4]
        assert (s.nfe_forward, s.nfe_backward) == (t.nfe_forward, t.nfe_backward)
        counts = ("steps_accepted", "steps_rejected")
        counts += tuple(f"{c}_backward" for c in counts)
        attempts, expected = (tuple(getattr(x, c) for c in counts) for x in (s, t))
        assert attempts == expected
        # the forward solve reads in chunks where it has two output times (else the host's
        # loop with dense output); every interval of the adjoint does
        solves = (len(times) == 2) + (len(times) - 1)
        chunked_attempts = sum(attempts[2:]) + (sum(attempts[:2]) if len(times) == 2 else 0)
        assert sum(reads) == chunked_attempts > solves
        assert max(reads) <= chunk and sum(n < chunk for n in reads) <= solves
        reads.clear()


def test_the_graph_chunk_option_takes_a_whole_number_of_attempts():
    dyn = nno.NODE(TinyField(3))
    y0 = torch.randn(2, 3)
    for bad, error in ((-1, ValueError), (True, ValueError), (2.5, TypeError), ("8", TypeError)):
        with pytest.raises(error, match="option 'graph_chunk' must be (an )?int"):
            nno.solve(dyn, y0, [0.0, 1.0], engine="rk", options={"graph_chunk": bad})


def test_a_failed_capture_falls_back_to_the_given_alternative_then_to_eager(monkeypatch):
    """The runner cache captures ``fallback`` where ``fn``'s capture fails (a chunk with
    conditional nodes, then its masked twin), and runs ``fn`` eagerly where both fail; a
    warning says which, once per reason."""
    from nesterovnode.solve.engines.rk.programs import runners as graphs

    class FakeGraph:
        def __init__(self, fn, args, dtype, device):
            if getattr(fn, "fails", False):
                raise RuntimeError(f"no capture of {fn.__name__}")
            self.fn = fn

    def conditional(x):
        return x

    def masked(x):
        return x

    monkeypatch.setattr(graphs, "GraphRunner", FakeGraph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    x = torch.ones(2)
    cache = RunnerCache()
    conditional.fails = True
    with pytest.warns(RuntimeWarning, match="no capture of conditional.*fallback was captured"):
        runner = cache.get("a", conditional, (x,), x.dtype, x.device, "graph", fallback=masked)
    assert isinstance(runner, FakeGraph) and runner.fn is masked
    masked.fails = True
    with pytest.warns(RuntimeWarning, match="no capture of masked.*runs eagerly"):
        runner = cache.get("b", conditional, (x,), x.dtype, x.device, "graph", fallback=masked)
    assert isinstance(runner, EagerRunner) and runner.fn is conditional


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
    compiled = cache.get("e", fn, None, x.dtype, x.device, "compile")  # compiles when called
    assert (
        isinstance(compiled, CompiledRunner)
        and cache.get("e", fn, None, x.dtype, x.device, "compile") is compiled
    )


def test_a_model_is_solved_by_one_cached_runner_per_kind_and_shape():
    from nesterovnode.solve.registry import get_engine

    engine = get_engine("rk")
    engine.runners.clear()
    dyn = make_dynamics("hbnode")
    for batch in (4, 4, 4, 6):
        y0 = dyn.initial_state(1.0, torch.randn(batch, 3))
        sol = nno.solve(dyn, y0, [1.0, 2.0], engine="rk", options={"cuda_graphs": "emulate"})
        sol.ys[-1].sum().backward()
    # forward init + step, adjoint init + step, for each of the two batch shapes
    assert len(engine.runners) == 8
    engine.runners.clear()


def _emulated_programs(engine) -> set:
    return {id(r) for r in engine.runners._runners.values() if isinstance(r, StaticRunner)}


@pytest.mark.parametrize(
    "change",
    ["r", "xi replaced", "sigma's bounds", "sigma swapped", "the network's structure", "hook"],
)
def test_a_change_of_the_model_gives_new_graphs_with_the_new_numbers(change):
    """A captured CUDA graph bakes in every Python value the model's forward reads (r,
    σ's bounds, the network's modules, a hook): after a change the engine captures anew
    (emulated graphs: new runners, none of the old ones reused) and the numbers are the
    changed model's eager ones. An in-place update of a parameter or buffer keeps the
    graphs (they read those as inputs)."""
    from nesterovnode.dynamics.base import Constant
    from nesterovnode.solve.registry import get_engine

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    dyn = nno.GNesterovNODE(net.double(), r=3.0, sigma=torch.nn.Hardtanh(-5.0, 5.0))
    h0 = torch.randn(4, 3, dtype=torch.float64)
    engine = get_engine("rk")
    engine.runners.clear()

    def solve(graphs):
        dyn.zero_grad()
        sol = nno.solve(
            dyn,
            dyn.initial_state(1.0, h0),
            [1.0, 2.0],
            rtol=1e-7,
            atol=1e-7,
            options={"cuda_graphs": graphs},
        )
        dyn.readout(2.0, sol.ys[-1]).square().sum().backward()
        return sol.ys.detach(), torch.cat([p.grad.reshape(-1) for p in dyn.parameters()])

    before = solve("emulate")
    old = _emulated_programs(engine)
    with torch.no_grad():  # in place: the same graphs see it
        dyn.f.net[0].weight.mul_(1.01)
        dyn.xi.raw.fill_(0.1)
    y_in_place, _ = solve("emulate")
    assert _emulated_programs(engine) == old and (y_in_place - before[0]).abs().max() > 1e-6
    if change == "r":
        dyn.r = 5.0
    elif change == "xi replaced":
        dyn.xi = Constant(0.5)
    elif change == "sigma's bounds":
        dyn.sigma.min_val, dyn.sigma.max_val = -0.5, 0.5
    elif change == "sigma swapped":
        dyn.sigma = torch.nn.Tanh()
    elif change == "the network's structure":
        dyn.f.net[1] = torch.nn.Softplus()
    else:
        dyn.f.register_forward_hook(lambda module, args, out: 2 * out)
    ye, ge = solve(False)
    yg, gg = solve("emulate")
    assert (ye - y_in_place).abs().max() > 1e-4  # the change changed the solution
    # captured anew: forward and adjoint, the first step and the step
    assert len(_emulated_programs(engine) - old) == len(old) == 4
    assert torch.allclose(yg, ye, rtol=0, atol=1e-12)
    assert torch.allclose(gg, ge, rtol=1e-10, atol=1e-12)
    engine.runners.clear()


class _CountingNet(torch.nn.Module):
    """A network that counts its calls in an attribute: state changed at every call."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 3)
        self.calls = 0

    def forward(self, t, h):
        self.calls += 1
        return self.net(h)


def test_a_model_that_changes_at_every_solve_is_named_in_a_warning():
    """State the model updates at every call changes its fingerprint: the programs are
    rebuilt each solve (right, but slow), and after three rebuilds a warning names it."""
    dyn = nno.NODE(_CountingNet())
    y0 = torch.randn(4, 3)
    with pytest.warns(
        RuntimeWarning, match=r"rebuilt the programs of NODE 3 times.*\(f\.calls\)|\(calls\)"
    ):
        for _ in range(5):
            with torch.no_grad():
                nno.solve(
                    dyn, y0, [0.0, 1.0], rtol=1e-5, atol=1e-5, options={"cuda_graphs": "emulate"}
                )


def test_the_evaluations_of_masked_attempts_are_counted_apart():
    """A masked chunk (graphs of K attempts where no conditional node skips those after
    the end) evaluates the field in every attempt: the field observes NFE +
    extra["masked_evaluations"] calls, and the NFE is the host loop's."""
    from helpers import TimeRecorder

    dyn = nno.NODE(TimeRecorder(TinyField(3)))
    y0 = torch.randn(4, 3)

    def forward(options):
        dyn.f.times.clear()
        with torch.no_grad():
            sol = nno.solve(dyn, y0, [0.0, 1.0], rtol=1e-6, atol=1e-6, options=options)
        return sol.stats, len(dyn.f.times)

    host, host_calls = forward({"cuda_graphs": "emulate"})
    chunks, chunk_calls = forward({"cuda_graphs": "emulate", "graph_chunk": 8})
    attempts = host.steps_accepted + host.steps_rejected
    assert chunks.nfe_forward == host.nfe_forward == host_calls
    masked = chunks.extra["masked_evaluations"]
    assert masked == 6 * (8 * -(-attempts // 8) - attempts) > 0
    assert chunk_calls == chunks.nfe_forward + masked
    assert "masked_evaluations" not in host.extra


def test_max_steps_in_a_backward_whole_solve_names_the_signed_step():
    """The adjoint integrates from T back to t0: a max_steps failure of its whole-solve
    program (graphs of chunks) reports the step it would take, negative."""
    torch.manual_seed(0)
    dyn = nno.NODE(TinyField(3).double())
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    options = {"cuda_graphs": "emulate", "graph_chunk": 4}

    def solve(max_steps=None):
        return nno.solve(
            dyn, y0, [0.0, 1.0], rtol=1e-8, atol=1e-8, max_steps=max_steps, options=options
        )

    free = solve()
    free.ys[-1].sum().backward()
    forward = free.stats.steps_accepted + free.stats.steps_rejected
    assert free.stats.steps_accepted_backward + free.stats.steps_rejected_backward > forward
    sol = solve(max_steps=forward)  # enough forward, too few backward
    with pytest.raises(nno.SolverError, match=r"backward.*max_steps = \d+ steps \(dt = -0\."):
        sol.ys[-1].sum().backward()


# -- errors --------------------------------------------------------------------------------
def test_rk_errors_say_what_to_do():
    dyn = nno.NODE(TinyField(3))
    y0 = torch.randn(2, 3)
    with pytest.raises(ValueError, match="no option 'first_step'.*cuda_graphs"):
        nno.solve(dyn, y0, [0.0, 1.0], engine="rk", options={"first_step": 0.1})
    with pytest.raises(ValueError, match="'cuda_graphs' must be one of True, False, 'emulate'"):
        nno.solve(dyn, y0, [0.0, 1.0], engine="rk", options={"cuda_graphs": "yes"})
    with pytest.raises(ValueError, match="no solver 'RadauIIA5'; engines that have it: scipy"):
        nno.solve(dyn, y0, [0.0, 1.0], solver="RadauIIA5", engine="rk")


@pytest.mark.parametrize("tol", [1e-6, 1e-9])
def test_rk_counts_two_start_evaluations_and_restarts_the_adjoint_per_interval(tol):
    dyn = nno.NODE(TinyField(3))
    sol = nno.solve(dyn, torch.randn(4, 3), [0.0, 1.0, 3.0], engine="rk", rtol=tol, atol=tol)
    sol.ys.sum().backward()
    s = sol.stats
    # the forward's first-step rule: f(t0) and its probe
    assert s.nfe_forward == 2 + 6 * (s.steps_accepted + s.steps_rejected)
    # the adjoint restarts at each output time: 2 intervals, each from a given first step
    # (one evaluation, f(t) where it starts)
    assert s.nfe_backward == 2 * 1 + 6 * (s.steps_accepted_backward + s.steps_rejected_backward)


def test_the_image_and_point_cloud_tasks_run_on_rk_by_default():
    from nesterovnode.tasks import get_task

    for task in ("mnist", "pointcloud"):
        model = get_task(task).build_model("hbnode")
        assert model.block.config.resolve().engine.name == "rk"
    other = get_task("mnist").build_model("hbnode", solver="scipy:RK45")
    assert other.block.config.resolve().engine.name == "scipy"
    assert other.block.config.rtol == 1e-5  # the task's tolerance stays


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name, sensitivity", list(product(["hbnode", "gnesterovnode"], ["adjoint", "adjoint-seminorm"]))
)
@pytest.mark.gpu  # a CUDA device
def test_cuda_graphs_give_the_eager_numbers(name, sensitivity):
    dyn = make_dynamics(name).cuda()
    g = torch.Generator().manual_seed(3)
    h0, v0 = (torch.randn(5, 3, generator=g).cuda() for _ in range(2))
    results = []
    for graphs in (False, True, True):  # the second graphed solve replays
        dyn.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a capture that falls back fails the test
            loss, nfe_f, nfe_b, grads, _ = loss_and_grads(
                dyn, h0, v0, {"cuda_graphs": graphs}, sensitivity
            )
        results.append((nfe_f, nfe_b, loss, grads))
    for nfe_f, nfe_b, loss, grads in results[1:]:
        assert (nfe_f, nfe_b) == results[0][:2]
        assert loss == pytest.approx(results[0][2], rel=1e-6)
        assert torch.allclose(grads, results[0][3], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu  # a CUDA device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("chunk", [1, 8])
@pytest.mark.parametrize("name", ["hbnode", "gnesterovnode"])
def test_cuda_graphs_of_chunks_of_attempts_give_the_eager_numbers(name, chunk):
    """Graphs of ``chunk`` attempts (conditional nodes where this torch captures them) on a
    GPU: the eager solve's NFE, loss and gradients, with no capture falling back."""
    dyn = make_dynamics(name).cuda()
    g = torch.Generator().manual_seed(3)
    h0, v0 = (torch.randn(5, 3, generator=g).cuda() for _ in range(2))
    results = []
    for options in (
        {"cuda_graphs": False},
        {"graph_chunk": chunk},
        {"graph_chunk": chunk},  # the second replays
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss, nfe_f, nfe_b, grads, _ = loss_and_grads(
                dyn, h0, v0, options, times=(1.0, 2.0), tol=1e-6
            )
        results.append((nfe_f, nfe_b, loss, grads))
    for nfe_f, nfe_b, loss, grads in results[1:]:
        assert (nfe_f, nfe_b) == results[0][:2]
        assert loss == pytest.approx(results[0][2], rel=1e-6)
        assert torch.allclose(grads, results[0][3], rtol=1e-4, atol=1e-6)


def test_a_training_run_releases_the_engines_cached_steps():
    from nesterovnode.runs.training import TrainConfig, train
    from nesterovnode.solve.registry import get_engine
    from nesterovnode.tasks.base import TaskDefaults
    from nesterovnode.tasks.pointcloud import PointCloudTask

    class Task(PointCloudTask):  # the point cloud on the rk engine, graph buffers emulated
        defaults = TaskDefaults(epochs=1, lr=1e-2, batch_size=60, tol=1e-3)

    engine = get_engine("rk")
    engine.runners.clear()
    task = Task()
    config = TrainConfig(model="hbnode", solve={"options": {"cuda_graphs": "emulate"}})
    seen = []
    train(config, task=task, progress=False, on_epoch=lambda r: seen.append(len(engine.runners)))
    assert seen and seen[0] > 0  # cached while training
    assert len(engine.runners) == 0  # released at the end


# -- the first step: given, and continued --------------------------------------------------
class _TwoComponents:
    """y'' = −4 y as two state components (y, y'): steps end on every output time (a
    state of more than one component has no dense output), as the adjoint's do."""

    reads = (0, 1)
    key = None

    def __init__(self):
        self.calls = 0

    def __call__(self, t, z):
        self.calls += 1
        return (z[1], -4.0 * z[0])


def _integrate_on(engine: str, field, z0, times, first_step=None, rtol=1e-8, **options):
    """(states, stats, recorder) of a DP5 solve by ``engine``'s ``integrate``."""
    from nesterovnode.solve.engines.base import IntegrateRequest
    from nesterovnode.solve.stats import Recorder, SolveStats

    eng, _, method = resolve("DP5", engine)
    defaults = {name: option.default for name, option in eng.options.items()}
    recorder = Recorder(SolveStats())
    request = IntegrateRequest(
        "DP5", method, rtol, rtol, None, None, recorder, {**defaults, **options}, first_step
    )
    with torch.no_grad():
        out = eng.integrate(field, z0, times, request)
    return out, recorder.stats, recorder


def _oscillator_start():
    torch.manual_seed(0)
    return (torch.randn(5, 2), torch.zeros(5, 2))


@pytest.mark.parametrize("engine", ["rk", "torchdiffeq"])
def test_a_solve_continued_from_its_proposed_step_retakes_the_one_solves_steps(engine, float64):
    """A solve reports the step its controller proposed after its last step
    (``recorder.next_step``); a solve that continues from there with that first step
    (``first_step``: one evaluation, f(t0), instead of the first-step rule's two) takes
    exactly the steps of one solve through both intervals, to the same state."""
    z0 = _oscillator_start()
    whole, one, _ = _integrate_on(engine, _TwoComponents(), z0, [0.0, 1.0, 2.0])
    part1, first, rec1 = _integrate_on(engine, _TwoComponents(), z0, [0.0, 1.0])
    assert rec1.next_step is not None and 0.0 < float(rec1.next_step) < 1.0
    middle = tuple(z[-1] for z in part1)
    field = _TwoComponents()
    part2, second, _ = _integrate_on(engine, field, middle, [1.0, 2.0], first_step=rec1.next_step)
    assert first.steps_accepted + second.steps_accepted == one.steps_accepted > 10
    assert first.step_sizes + second.step_sizes == pytest.approx(one.step_sizes, rel=1e-12)
    assert (
        second.nfe_forward == field.calls == 1 + 6 * (second.steps_accepted + second.steps_rejected)
    )
    assert first.nfe_forward + second.nfe_forward == one.nfe_forward + 1  # f(1) again
    for a, b in zip(part2, whole):
        assert torch.allclose(a[-1], b[-1], rtol=0, atol=1e-13)
    exact = z0[0] * math.cos(2.0 * 2.0)
    assert torch.allclose(part2[0][-1], exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", ["rk", "torchdiffeq", "scipy"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_a_given_first_step_is_the_first_attempt_capped_at_the_interval(engine, direction, float64):
    """``first_step`` is the size of the first attempt, backwards in time too, and at most
    the interval's length; the solve then has the tolerance's accuracy."""
    z0 = _oscillator_start()
    for given, expected in ((0.01, 0.01), (5.0, 1.0)):
        field = _TwoComponents()
        out, stats, _ = _integrate_on(
            engine, field, z0, [0.0, direction], first_step=torch.tensor(given)
        )
        # attempts at t0 that were rejected came before the accepted one
        rejected_at_t0 = [th for th in stats.rejected_steps if th[0] == 0.0]
        first = rejected_at_t0[0] if rejected_at_t0 else (0.0, stats.step_sizes[0])
        assert stats.step_times[0] == 0.0
        assert first == (0.0, pytest.approx(direction * expected, rel=1e-15))
        assert bool(rejected_at_t0) == (given == 5.0)  # a whole interval is too long a step
        assert field.calls == stats.nfe_forward
        exact = z0[0] * math.cos(2.0 * direction)
        assert torch.allclose(out[0][-1], exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", ["rk", "scipy"])
def test_the_adjoint_starts_each_stretch_from_the_step_proposed_before_it(
    engine, float64, monkeypatch, backward_attempts
):
    """The backward solve's first step is the one the forward solve's controller proposed
    at T (the adjoint's state holds the forward state, whose scales that step resolves),
    and each later stretch's is the one the backward proposed where it stopped: no
    first-step rule in the backward (one evaluation, f(t), per stretch). SciPy's RK45
    proposes and takes it as the rk engine's DP5 does."""
    from nesterovnode.solve.registry import get_engine

    cls = type(get_engine(engine))
    calls = []
    real_integrate = cls.integrate

    def integrate(self, field, z0, times, request):
        out = real_integrate(self, field, z0, times, request)
        calls.append((list(times), request.first_step, request.recorder.next_step))
        return out

    monkeypatch.setattr(cls, "integrate", integrate)
    dyn = make_dynamics("hbnode")
    torch.manual_seed(1)
    y0 = dyn.initial_state(0.0, torch.randn(8, 3))
    sol = nno.solve(dyn, y0, [0.0, 1.0, 3.0], rtol=1e-7, atol=1e-7, engine=engine)
    (sol.ys[1].sum() + sol.ys[2].square().sum()).backward()
    forward, late, early = calls
    assert forward[:2] == ([0.0, 1.0, 3.0], None) and 0 < forward[2] < 2.0
    assert late[:2] == ([3.0, 1.0], forward[2]) and early[:2] == ([1.0, 0.0], late[2])
    backward = backward_attempts
    restart = next(i for i, (t, _) in enumerate(backward) if t == 1.0)
    # (SciPy reports a step as t_new − t_old: to round-off)
    assert backward[0] == (3.0, pytest.approx(-forward[2], rel=1e-14))
    assert backward[restart] == (1.0, pytest.approx(-min(late[2], 1.0), rel=1e-14))
    s = sol.stats
    assert s.steps_accepted_backward + s.steps_rejected_backward == len(backward) > 4
    assert s.nfe_backward == 2 * 1 + 6 * len(backward)
