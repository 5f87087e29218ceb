"""The rk engine's adaptive loop as a tensor program (rk/programs/solve_loop.py): the
controllers' tensor rules against their float rules, and the loop — run here as a Python
loop of eager steps — against the host loop (loop.py): the same attempts, NFE, step
history and states, in chunks of any size, and the same errors. Its compiled form is
tests/solve/rk/test_rk_compiled.py."""

from __future__ import annotations

import math

import pytest
import torch

import nesterovnode as nno
from nesterovnode.solve.engines.rk.loop import integrate_adaptive
from nesterovnode.solve.engines.rk.programs.chunks import ConditionalChunk, MaskedChunk
from nesterovnode.solve.engines.rk.programs.runners import EagerRunner
from nesterovnode.solve.engines.rk.programs.solve_loop import (
    AdaptiveSolve,
    StartedSolve,
    integrate_in_loop,
    python_loop,
)
from nesterovnode.solve.engines.rk.step import make_adaptive_step
from nesterovnode.solve.engines.rk.tableaux import TABLEAUX
from nesterovnode.solve.errors import SolverError
from nesterovnode.solve.fields import DynamicsField
from nesterovnode.solve.stats import Recorder, SolveStats
from nesterovnode.solve.stepsize import IntegralController, Norm, PIController, make_initial_step

RATIOS = (0.0, 1e-12, 1e-3, 0.5, 0.99, 1.0, 1.0 + 1e-12, 1.01, 3.0, 1e3, 1e12)


@pytest.mark.parametrize("make", [IntegralController, PIController])
def test_the_tensor_rule_of_each_controller_is_its_float_rule(make):
    """A sequence of ratios (accepted and rejected, 0 and huge ones) through both rules:
    the same step sizes to 1e-15 relative, the PI controller's memory carried alike."""
    floats, tensors = make(5), make(5)
    previous = torch.ones((), dtype=torch.float64)
    h = 0.1
    for ratio in RATIOS + tuple(reversed(RATIOS)):
        expected = floats.next_step(h, ratio)
        got, previous = tensors.next_step_tensor(
            torch.tensor(h, dtype=torch.float64), torch.tensor(ratio, dtype=torch.float64), previous
        )
        assert float(got) == pytest.approx(expected, rel=1e-15, abs=0), ratio
        if make is PIController:
            assert float(previous) == floats.previous, ratio


class _Oscillator(torch.nn.Module):
    """y'' = −ω² y as a first-order system on [B, 2]: y(t) = cos(ωt) y0 for y'(0) = 0."""

    def __init__(self, omega: float = 3.0):
        super().__init__()
        self.omega = torch.nn.Parameter(torch.tensor(omega))

    def forward(self, t, y):
        return torch.stack([y[:, 1], -(self.omega**2) * y[:, 0]], dim=1)


#: the loop program's loops: ``while_loop``'s meaning in Python, and the CUDA graphs'
#: fixed-length chunks of ``capacity`` attempts (chunks.py; a host test for the node)
LOOPS = {
    "while": lambda capacity: python_loop,
    "masked chunk": MaskedChunk,
    "conditional chunk": ConditionalChunk,
}


def _integrate(
    dynamics,
    y0,
    times,
    host: bool,
    capacity=128,
    controller="integral",
    loop="while",
    counted=None,
    **rec,
):
    """(states, stats) of an eager DP5 solve by the host loop or the loop program (run by
    one of ``LOOPS``); ``counted``: a list that gets a 1 per call of the step."""
    tab = TABLEAUX["dp5"]
    field = DynamicsField(dynamics)
    norm = Norm((0,))
    direction = 1.0 if times[-1] > times[0] else -1.0
    control = (IntegralController if controller == "integral" else PIController)(tab.order)
    step_fn = make_adaptive_step(tab, field, 1e-8, 1e-8, norm, field.reads)
    if counted is not None:
        step_fn = _counting(step_fn, counted)
    init_fn = make_initial_step(tab.order, field, 1e-8, 1e-8, norm, direction)
    stats = SolveStats()
    recorder = Recorder(stats, **rec)
    with torch.no_grad():  # as the engine calls it: autograd records no solver operation
        if host:
            run = integrate_adaptive(
                tab,
                _eager(step_fn, y0),
                _eager(init_fn, y0),
                (y0,),
                times,
                recorder,
                control,
                lambda s: s,
                False,
            )
        else:
            loop_fn = AdaptiveSolve(step_fn, control, direction, capacity, LOOPS[loop](capacity))
            start = _eager(StartedSolve(init_fn, loop_fn), y0)
            run = integrate_in_loop(
                tab, start, _eager(loop_fn, y0), (y0,), times, recorder, lambda s: s, capacity
            )
    return run, stats


def _eager(fn, y0):
    return EagerRunner(fn, y0.dtype, y0.device)


def _counting(fn, calls: list):
    def counted(*args):
        calls.append(1)
        return fn(*args)

    return counted


@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.parametrize("controller", ["integral", "PI"])
@pytest.mark.parametrize("capacity", [128, 3, 1])
def test_the_loop_program_takes_the_host_loops_steps(float64, controller, capacity, loop):
    """The same attempts (accepted and rejected; their times and sizes to 1e-9: the error
    estimate, a difference of stages, turns an ulp of the controller's power (torch's,
    not C's) into about 1e-10 of the next step), NFE and state as the host loop, whether
    one call of the loop takes the whole solve or it stops every 3 attempts or every one
    (``capacity``) and is called again, as a while loop or as a CUDA graph's chunk of
    ``capacity`` attempts; the state is the closed form's to the tolerance."""
    torch.manual_seed(0)
    y0 = torch.stack([torch.randn(4), torch.zeros(4)], dim=1)
    dyn = _Oscillator()
    host, host_stats = _integrate(dyn, y0, [0.0, 2.0], host=True, controller=controller)
    loop, loop_stats = _integrate(
        dyn, y0, [0.0, 2.0], host=False, capacity=capacity, controller=controller, loop=loop
    )
    assert loop_stats.nfe_forward == host_stats.nfe_forward > 50
    assert loop_stats.steps_accepted == host_stats.steps_accepted
    assert loop_stats.steps_rejected == host_stats.steps_rejected
    for a, b in (
        (loop_stats.step_sizes, host_stats.step_sizes),
        (loop_stats.step_times, host_stats.step_times),
        (loop_stats.rejected_steps, host_stats.rejected_steps),
    ):
        assert len(a) == len(b)
        assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-9, atol=0)
    assert torch.allclose(loop[-1][0], host[-1][0], rtol=0, atol=1e-12)
    exact = y0[:, 0] * math.cos(3.0 * 2.0)
    assert torch.allclose(loop[-1][0][:, 0], exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_the_loop_program_integrates_backwards_in_time(float64, loop):
    torch.manual_seed(0)
    y0 = torch.stack([torch.randn(3), torch.zeros(3)], dim=1)
    host, host_stats = _integrate(_Oscillator(), y0, [2.0, 0.5], host=True)
    loop, loop_stats = _integrate(_Oscillator(), y0, [2.0, 0.5], host=False, capacity=4, loop=loop)
    assert loop_stats.nfe_forward == host_stats.nfe_forward
    assert loop_stats.step_sizes == pytest.approx(host_stats.step_sizes, rel=1e-9)
    assert all(h < 0 for h in loop_stats.step_sizes)
    assert torch.allclose(loop[-1][0], host[-1][0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_max_steps_stops_the_loop_program_where_it_stops_the_host_loop(float64, loop):
    y0 = torch.tensor([[1.0, 0.0]])
    for host in (True, False):
        with pytest.raises(SolverError, match="max_steps = 7") as info:
            _integrate(_Oscillator(), y0, [0.0, 5.0], host=host, capacity=5, max_steps=7, loop=loop)
        assert info.value.reason == "max_steps"
        assert info.value.stats.steps_accepted + info.value.stats.steps_rejected == 7


class _BlowUp(torch.nn.Module):
    """y' = y², y(0) = 1: y = 1/(1 − t), which leaves every float at t = 1."""

    def forward(self, t, y):
        return y * y


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_blow_up_fails_the_loop_program_as_the_host_loop(float64, loop):
    y0 = torch.ones(2, 1)
    failures = []
    for host in (True, False):
        with pytest.raises(SolverError) as info:
            _integrate(_BlowUp(), y0, [0.0, 2.0], host=host, capacity=16, loop=loop)
        failures.append((info.value.reason, info.value.t_reached, info.value.stats.nfe_forward))
    assert failures[0][0] in ("underflow", "nonfinite", "max_steps")
    assert failures[1][0] == failures[0][0]
    assert failures[1][1] == pytest.approx(failures[0][1], rel=1e-12)
    assert failures[1][2] == failures[0][2]
    assert failures[0][1] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("capacity", [1, 4, 8])
def test_a_conditional_chunk_skips_the_attempts_after_the_end_a_masked_one_runs_them(
    float64, capacity
):
    """What each chunk costs: under conditional nodes the step runs once per attempt, as
    in the host loop; masked, every call of the chunk runs ``capacity`` steps, those after
    the end discarded (the same numbers)."""
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.2]])
    counts = {}
    for loop in ("conditional chunk", "masked chunk"):
        calls = []
        _, stats = _integrate(
            _Oscillator(), y0, [0.0, 2.0], host=False, capacity=capacity, loop=loop, counted=calls
        )
        counts[loop] = (len(calls), stats.steps_accepted + stats.steps_rejected)
    steps, attempts = counts["conditional chunk"]
    assert steps == attempts == counts["masked chunk"][1] > 20
    assert counts["masked chunk"][0] == math.ceil(attempts / capacity) * capacity


def test_the_loop_option_says_what_it_takes():
    with pytest.raises(ValueError, match="'loop' must be one of 'compiled', 'host'"):
        nno.solve(
            nno.NODE(_BlowUp()),
            torch.ones(2, 1),
            [0.0, 0.5],
            rtol=1e-5,
            atol=1e-5,
            options={"loop": "device"},
        )


@pytest.mark.parametrize("backward", [False, True])
def test_reporting_attempts_at_once_equals_reporting_them_one_by_one(backward):
    """``Recorder.attempts_done`` (how a compiled solve's history is replayed) leaves the
    statistics as ``attempt``/``evaluations``/``accepted``/``rejected`` call by call do,
    the forward step history in order; past max_steps it reports nothing and says so."""
    rows = [(0.0, 0.5, 0.0), (0.0, 0.1, 1.0), (0.1, 0.2, 1.0), (0.3, 0.4, 0.0), (0.3, 0.2, 1.0)]
    one, at_once = SolveStats(), SolveStats()
    rec = Recorder(one, backward=backward)
    for t, h, outcome in rows:
        rec.attempt(t, h)
        rec.evaluations(6)
        (rec.accepted if outcome == 1.0 else rec.rejected)(t, h)
    fast = Recorder(at_once, backward=backward)
    accepted = [(t, h) for t, h, o in rows if o == 1.0]
    rejected = [(t, h) for t, h, o in rows if o == 0.0]
    assert fast.attempts_done(accepted, rejected, 6)
    assert at_once.as_dict() == one.as_dict()
    assert (at_once.nfe_backward if backward else at_once.nfe_forward) == 30
    assert fast.attempts == rec.attempts == 5
    assert at_once.step_sizes == one.step_sizes == ([] if backward else [0.1, 0.2, 0.2])
    assert at_once.rejected_steps == one.rejected_steps
    # max_steps = 2: 1 attempt, then 2 more would pass it and are refused, nothing counted
    capped = Recorder(SolveStats(), backward=backward, max_steps=2)
    assert capped.attempts_done(accepted[:1], [], 6)
    assert not capped.attempts_done(accepted[:1], rejected[:1], 6)
    assert capped.attempts == 1 and capped.stats.nfe == 6
