"""The adaptive solve as a tensor program: the first-step rule, then many steps, the
step-size control and the stopping test in one call, for the compiled steps
(``compiled.py``) and, in fixed-length chunks of attempts, for CUDA graphs
(``chunks.py``).

``loop.integrate_adaptive`` calls one compiled step per attempt and decides on the host
what comes next: each call goes through Python (the runner's argument handling, the
compiled code's wrappers, a read of the error ratio, the controller). Here the loop
itself is traced: the ``while_loop`` operator (``torch._higher_order_ops``) carries

    (t, |h|, r_prev, status, count, history, y, k)

through the body ``attempt`` — the step of ``step.make_adaptive_step``, then, computed
on tensors exactly as the host loop does with Python floats,

    size = min(|h|, |end − t|),  t1 = end if |end − t| ≤ |h| else t + direction·size,
    accepted: ratio ≤ 1, then t ← t1, (y, k) ← (y1, k1),
    |h| ← the controller's rule (``controller.next_step_tensor``),

and Inductor's C++ wrapper runs the loop in native code, without a return to Python
between attempts (what that saves is measured in docs/performance.md). Times and step
sizes are float64 tensors whatever the state's dtype, as the host loop's
Python floats are, so the two loops take the same steps (to round-off: torch's power
in the controller is not C's to the last bit).

The loop stops when the end is reached (``DONE``), on a non-finite error ratio
(``NONFINITE``), when the next step would not move t (``UNDERFLOW``), or after ``limit``
attempts (still ``RUNNING``): each attempt writes (t, signed h, outcome) into a row of
``history`` (``capacity`` rows), from which the host replays the attempts to the solve's
``Recorder`` (NFE, accepted and rejected steps, the forward step history, max_steps)
and calls the loop again where it stopped. So one call serves up to ``capacity``
attempts: a solve on the point cloud takes one. A solve's first call
(``StartedSolve``) computes the first step's size and f(t0, y0) before the loop,
in the same program; where the solve continues another (the adjoint's backward after
its forward), the first step is given instead (one evaluation, f(t0, y0)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ....grid import direction as time_direction
from ....stats import Recorder
from ....stepsize import State, first_step_call
from ..tableaux import Tableau
from .chunks import MaskedChunk

#: status codes of a call of the loop
RUNNING, DONE, NONFINITE, UNDERFLOW = 0, 1, 2, 3
#: outcome codes of an attempt, in the history's third column
REJECTED, ACCEPTED, FAILED = 0.0, 1.0, 2.0
#: attempts one call of the loop records (the rows of its history)
CAPACITY = 128


def python_loop(cond: Callable, body: Callable, carried: tuple, additional: tuple) -> tuple:
    """The loop in Python, with ``while_loop_op``'s meaning: while ``cond(*carried,
    *additional)``, ``carried = body(*carried, *additional)``. It runs where the loop is
    not compiled."""
    while bool(cond(*carried, *additional)):
        carried = tuple(body(*carried, *additional))
    return carried


class LoopProgram:
    """A whole-solve program around one step: callable as the program, and open to a
    compiler that traces the step apart (``compiled.traced_apart``): ``step``,
    ``step_arguments(args)`` (example arguments of the step for the program's ``args``)
    and ``with_step(other, loop)`` (the same program around another step and loop)."""

    step: Callable

    @property
    def masked(self) -> bool:
        """Whether the program runs every attempt of a chunk, those after the end too
        (``chunks.MaskedChunk``), whose evaluations are discarded."""
        raise NotImplementedError

    def step_arguments(self, args: tuple) -> tuple:
        raise NotImplementedError

    def with_step(self, other: Callable, loop: Callable) -> LoopProgram:
        raise NotImplementedError


class AdaptiveSolve(LoopProgram):
    """``solve(t, end, h, previous, limit, y, k, extra=()) -> (t, h, previous, status,
    count, history, y, k)``: up to ``limit`` (≤ ``capacity``) attempts of the adaptive
    ``step`` (``make_adaptive_step``, without dense output, called as ``step(t, h, t1, y,
    k, *extra)``) from time ``t`` toward ``end`` in ``direction``, starting with step size
    |h|; ``k`` = f(t, y). ``t``, ``end``, ``h`` and ``previous`` (the PI controller's last
    accepted ratio) are float64 0-dim tensors and ``limit`` an int64 one; see the module
    docstring for the rest.

    ``loop``: ``python_loop``, a chunk of ``chunks.py``, or ``while_loop_op`` for a traced
    program; the body then reads no tensor but its arguments (a traced step gets the
    model's parameters as ``extra``)."""

    def __init__(
        self,
        step: Callable,
        controller,
        direction: float,
        capacity: int = CAPACITY,
        loop: Callable = python_loop,
    ):
        self.step, self.controller, self.direction = step, controller, direction
        self.capacity, self.loop = capacity, loop

    def __call__(self, t, end, h, previous, limit, y: State, k: State, extra: tuple = ()):
        n = len(y)
        dtype = y[0].dtype
        step, controller, direction = self.step, self.controller, self.direction

        def running(t, h, previous, status, count, history, *rest):
            return (status == RUNNING) & (count < rest[2 * n + 1])

        def attempt(t, h, previous, status, count, history, *rest):
            y, k = rest[:n], rest[n : 2 * n]
            end, _, rows = rest[2 * n : 2 * n + 3]
            remaining = (end - t).abs()
            last = remaining <= h
            size = torch.where(last, remaining, h)
            signed = direction * size
            t1 = torch.where(last, end, t + signed)
            y_next, k_next, ratio = step(
                t.to(dtype), signed.to(dtype), t1.to(dtype), y, k, *rest[2 * n + 3 :]
            )
            ratio = ratio.to(torch.float64)
            finite = torch.isfinite(ratio)
            accept = ratio <= 1.0
            t_next = torch.where(accept, t1, t)
            h_next, previous = controller.next_step_tensor(size, ratio, previous)
            done = accept & (t_next == end)
            stuck = t_next + direction * h_next == t_next
            status = torch.where(
                ~finite,
                NONFINITE,
                torch.where(done, DONE, torch.where(stuck, UNDERFLOW, RUNNING)),
            )
            outcome = torch.where(~finite, FAILED, torch.where(accept, ACCEPTED, REJECTED))
            row = torch.stack([t, signed, outcome.to(torch.float64)])
            history = torch.where((rows == count).unsqueeze(1), row, history)
            return (t_next, h_next, previous, status, count + 1, history, *y_next, *k_next)

        counter = torch.zeros((), dtype=torch.int64, device=t.device)
        carried = (
            t.clone(),  # fresh: a traced loop's carried inputs may not alias its other inputs
            h.clone(),
            previous.clone(),
            counter,
            counter.clone(),
            torch.zeros(self.capacity, 3, dtype=torch.float64, device=t.device),
            *y,
            *k,
        )
        rows = torch.arange(self.capacity, device=t.device)
        out = self.loop(running, attempt, carried, (end, limit, rows, *extra))
        return (*out[:6], tuple(out[6 : 6 + n]), tuple(out[6 + n :]))

    @property
    def masked(self) -> bool:
        return isinstance(self.loop, MaskedChunk)

    def step_arguments(self, args: tuple) -> tuple:
        """(t, h, t1) as 0-dim tensors of the state's dtype, then the state and k; each a
        tensor of its own (a tracer tells its inputs apart by identity)."""
        t, end, h, _, _, y, k = args
        dtype = y[0].dtype
        return (t.to(dtype), h.to(dtype), end.to(dtype), y, k)

    def with_step(self, other: Callable, loop: Callable) -> AdaptiveSolve:
        return AdaptiveSolve(other, self.controller, self.direction, self.capacity, loop)


class StartedSolve(LoopProgram):
    """``start(t, end, limit, y, *h, extra=()) -> solve's outputs``: the first step and
    then ``solve``'s loop (``AdaptiveSolve``), as one program: a solve's first call.
    ``init`` is the first-step rule (``stepsize.make_initial_step``: f(t, y) and |h|, two
    evaluations), or, called with ``h`` (a float64 0-dim tensor), the given first step
    (``stepsize.make_given_first_step``: f(t, y), one evaluation)."""

    def __init__(self, init: Callable, solve: AdaptiveSolve):
        self.init, self.solve, self.step = init, solve, solve.step

    def __call__(self, t, end, limit, y: State, *h, extra: tuple = ()):
        dtype = y[0].dtype
        k, first = self.init(t.to(dtype), (end - t).abs().to(dtype), y, *h)
        previous = torch.ones_like(t)  # the PI controller's memory starts at 1
        return self.solve(t, end, first.to(torch.float64), previous, limit, y, k, extra)

    @property
    def masked(self) -> bool:
        return self.solve.masked

    def step_arguments(self, args: tuple) -> tuple:
        t, end, _, y = args[:4]  # h and k, which the first step makes: new tensors
        h, k = torch.empty_like(t), tuple(torch.empty_like(v) for v in y)
        return self.solve.step_arguments((t, end, h, None, None, y, k))

    def with_step(self, other: Callable, loop: Callable) -> StartedSolve:
        return StartedSolve(self.init, self.solve.with_step(other, loop))


def integrate_in_loop(
    tableau: Tableau,
    start: Callable,
    solve: Callable,
    y0: State,
    times: Sequence[float],
    recorder: Recorder,
    keep: Callable[[State], State],
    capacity: int = CAPACITY,
    first_step=None,
    masked: Callable[[], bool] = lambda: False,
) -> list[State]:
    """The states at ``times`` = [t0, T] of an adaptive solve: ``start``'s call (a
    ``StartedSolve``'s runner; with ``first_step``, the size of the first attempt, the
    given step's), then, where it stopped before T, calls of ``solve`` (an
    ``AdaptiveSolve``'s) from where it stopped; reports to ``recorder`` what
    ``loop.integrate_adaptive`` reports, attempt by attempt, and the controller's last
    proposal as ``recorder.next_step`` (a tensor: not read to the host). ``masked()``
    says, after a call, whether the program that ran computes all ``capacity`` attempts
    (a masked chunk): those after the end go to ``extra["masked_evaluations"]``."""
    if len(times) != 2:
        raise ValueError("the compiled loop integrates between two times")
    device = y0[0].device
    t0, end = times
    direction = time_direction(times)
    t, end_t = _constant(t0, torch.float64, device), _constant(end, torch.float64, device)
    h = previous = k = None
    state, per_step = y0, tableau.new_evaluations_per_step
    given, evaluations = first_step_call(first_step)
    # the programs take times and step sizes as float64 tensors
    given = tuple(torch.as_tensor(h, dtype=torch.float64, device=device) for h in given)
    recorder.evaluations(evaluations)  # the first step, in start's call
    while True:
        allowed = capacity
        if recorder.max_steps is not None:
            allowed = min(capacity, recorder.max_steps - recorder.attempts)
        if allowed <= 0:  # past max_steps: raises, with the signed step it would take
            recorder.attempt(float(t), float("nan") if h is None else direction * float(h))
        limit = _constant(allowed, torch.int64, device)
        if h is None:
            out = start(t, end_t, limit, state, *given)
        else:
            out = solve(t, end_t, h, previous, limit, state, k)
        t, h, previous, status, count, history, state, k = out
        count = int(count)
        _replay(history[:count].tolist(), recorder, per_step)
        if masked():
            recorder.add("masked_evaluations", (capacity - count) * per_step)
        status = int(status)
        if status == DONE:
            recorder.next_step = keep((h,))[0]  # a graph's outputs: the next call's
            return [keep(y0), keep(state)]
        if status == UNDERFLOW:
            raise recorder.fail(float(t), "underflow", f"h = {direction * float(h):.3g}")


_CONSTANTS: dict = {}


def _constant(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim tensor holding ``value``, made once: a solve's start and end times and
    attempt limit repeat from batch to batch, and the programs only read their inputs."""
    key = (value, dtype, device)
    found = _CONSTANTS.get(key)
    if found is None:
        if len(_CONSTANTS) > 256:  # times that change every solve: keep the dict small
            _CONSTANTS.clear()
        found = _CONSTANTS[key] = torch.tensor(value, dtype=dtype, device=device)
    return found


def _replay(rows: list, recorder: Recorder, per_step: int) -> None:
    """Report a loop's attempts, rows ``(t, h, outcome)``, to ``recorder`` as the host loop
    reports them: at once where none failed and ``max_steps`` is not passed, else one by
    one (raising where the host loop raises)."""
    accepted = [(t, h) for t, h, outcome in rows if outcome == ACCEPTED]
    rejected = [(t, h) for t, h, outcome in rows if outcome == REJECTED]
    if len(accepted) + len(rejected) == len(rows):  # none failed
        if recorder.attempts_done(accepted, rejected, per_step):
            return
    for t, h, outcome in rows:
        recorder.attempt(t, h)
        recorder.evaluations(per_step)
        if outcome == FAILED:
            raise recorder.fail(t, "nonfinite")
        (recorder.accepted if outcome == ACCEPTED else recorder.rejected)(t, h)
