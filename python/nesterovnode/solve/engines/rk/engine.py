"""The ``rk`` engine: the library's own explicit Runge–Kutta solver, built for the GPU.

Methods (``tableaux.py``), steps (``step.py``), step-size control (``solve/stepsize.py``)
and the host loops (``loop.py``) are apart, so every method runs adaptively under every
controller or at a fixed dt. Each step is a pure tensor function run by a runner
(``programs/runners.py``): eagerly, compiled to native code by TorchInductor on the CPU
(``programs/compiled.py``), or, on a CUDA device, captured once as a CUDA graph and
replayed, so that the host reads one number per step. Small networks (the paper's image
models) are bound by launch overhead, not arithmetic; replaying a graph removes it.

One ``integrate`` call is one run plan (``plan.RunPlan``): its mode, its path and
everything its programs capture, from which every cache key is derived. Three paths:

- fixed steps (a ``dt``): the host walks the grid, one program per step;
- the host loop: one program per attempt, the first-step rule (or a given first step)
  first; the host reads the error ratio and runs the controller; dense output at
  interior output times;
- the whole solve in one program (solves between two times, with ``compile=True`` and
  ``loop="compiled"``, or CUDA graphs of ``graph_chunk`` attempts): the first step, the
  steps, the step-size control and the stopping test run inside the program
  (``programs/solve_loop.py``), and the host replays its attempts to the recorder.

The options (``RKEngine.options``; ``nesterovnode list`` prints them) say which: a
captured graph or a compiled program is reused while its plan's key is unchanged — the
model's structure and attributes included (``fields.model_fingerprint``) — so changing a
model between solves gives the new model's numbers. Compiled and graphed solves give the
eager numbers to round-off (tests/solve/rk/test_rk_compiled.py, tests/solve/rk/test_rk_engine.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...stepsize import (
    CONTROLLERS,
    Norm,
    make_controller,
    make_given_first_step,
    make_initial_step,
)
from ..base import Engine, IntegrateRequest, Option, State
from .loop import integrate_adaptive, integrate_fixed, stack
from .plan import Kind, Mode, Path, RunPlan
from .programs.chunks import ConditionalChunk, MaskedChunk, conditional_nodes_available
from .programs.runners import RunnerCache
from .programs.solve_loop import (
    CAPACITY,
    AdaptiveSolve,
    StartedSolve,
    integrate_in_loop,
    python_loop,
)
from .step import make_adaptive_step, make_fixed_step
from .tableaux import TABLEAUX


class RKEngine(Engine):
    """Explicit Runge–Kutta methods in-process, CUDA-graphed on GPUs, compiled on CPUs."""

    name = "rk"
    methods = {
        "Euler": "euler",
        "Midpoint": "midpoint",
        "RK4": "rk4",
        "RK38": "rk38",
        "BS3": "bs3",
        "DP5": "dp5",
        "Tsit5": "tsit5",
        "DP8": "dp8",
    }
    options = {
        "cuda_graphs": Option(
            (bool, str),
            True,
            "True: each step (or chunk) a CUDA graph on CUDA devices, except under "
            "backprop; False: eager; 'emulate': the graphs' static buffers without a graph, "
            "on any device (tests)",
            choices=(True, False, "emulate"),
        ),
        "controller": Option(
            str,
            "integral",
            "'integral' (torchdiffeq's rule) or 'PI'",
            choices=tuple(CONTROLLERS),
        ),
        "compile": Option(
            (bool, str),
            False,
            "True: compile each solve to native code (TorchInductor, CPU): the whole solve "
            "between two times as one program, one program per step with more output "
            "times; 'steps': the adaptive steps only, the first-step rule eager",
            choices=(True, False, "steps"),
        ),
        "loop": Option(
            str,
            "compiled",
            "with compile=True: 'compiled' runs a solve's adaptive loop inside the "
            "compiled code, 'host' calls one compiled step per attempt",
            choices=("compiled", "host"),
        ),
        "graph_chunk": Option(
            int,
            0,
            "with CUDA graphs: K >= 1 captures K attempts of an adaptive solve between two "
            "times, step-size control included, in one graph (one host read per K "
            "attempts; conditional nodes skip the attempts after the end where torch "
            "captures them, else they run masked); 0 captures one step per attempt",
            at_least=0,
        ),
    }
    differentiable = True
    dense_methods = frozenset(
        c for c, n in methods.items() if n in TABLEAUX and TABLEAUX[n].dense is not None
    )
    install_hint = "part of nesterovnode (needs only torch)"

    def __init__(self):
        self.runners = RunnerCache()

    def clear_caches(self) -> None:
        self.runners.clear()

    def integrate(
        self, field, z0: State, times: Sequence[float], request: IntegrateRequest
    ) -> State:
        tab = TABLEAUX[request.method]
        plan = RunPlan.of(field, z0, times, request, tab.dense is not None)
        if plan.mode is Mode.COMPILE:
            # the layout the programs are compiled for, once per solve (an adjoint may
            # start from an expanded, stride-0 gradient; a state may be transposed), and
            # the field's form that a tracer records (the adjoint's products by torch.func)
            z0 = tuple(z.contiguous() for z in z0)
            field = field.traceable() if hasattr(field, "traceable") else field
        if plan.path is Path.FIXED:
            outputs = self._fixed(plan, tab, field, z0, times, request)
        elif not tab.adaptive:
            raise ValueError(f"{request.solver} has no error estimate: pass dt")
        elif plan.path is Path.WHOLE:
            outputs = self._whole(plan, tab, field, z0, times, request)
        else:
            outputs = self._host(plan, tab, field, z0, times, request)
        return stack(outputs, range(len(z0)))

    @staticmethod
    def _keep(plan: RunPlan):
        """keep(state): a copy the next call of a static program will not overwrite;
        eager and compiled programs return new tensors (``stack`` copies them anyway)."""
        if plan.static:
            return lambda s: tuple(x.clone() for x in s)
        return lambda s: s

    def _fixed(self, plan, tab, field, z0, times, request) -> list[State]:
        step = plan.program(
            Kind.FIXED_STEP,
            make_fixed_step(tab, field, field.reads),
            self.runners,
            request.recorder,
        )
        return integrate_fixed(tab, step, z0, times, request.dt, request.recorder, self._keep(plan))

    def _step_and_first(self, plan, tab, field, request):
        """The adaptive step and the first step's function (the rule, or the given one)."""
        norm = Norm(plan.channels)
        step = make_adaptive_step(
            tab, field, request.rtol, request.atol, norm, field.reads, plan.dense
        )
        if plan.given:
            return step, make_given_first_step(field)
        rule = make_initial_step(tab.order, field, request.rtol, request.atol, norm, plan.direction)
        return step, rule

    def _host(self, plan, tab, field, z0, times, request) -> list[State]:
        step_fn, first_fn = self._step_and_first(plan, tab, field, request)
        recorder = request.recorder
        step = plan.program(Kind.STEP, step_fn, self.runners, recorder)
        # "steps": the first-step rule, once per solve, does not repay its compilation in
        # short runs (a CUDA graph, captured in no time, keeps it)
        first = plan.program(plan.first_kind, first_fn, self.runners, recorder, plan.rule_eager)
        controller = make_controller(plan.controller, tab.order)
        return integrate_adaptive(
            tab,
            step,
            first,
            z0,
            times,
            recorder,
            controller,
            self._keep(plan),
            plan.dense,
            request.first_step,
        )

    def _whole(self, plan, tab, field, z0, times, request) -> list[State]:
        recorder = request.recorder
        start_kind = Kind.START_GIVEN if plan.given else Kind.START
        capacity = plan.chunk or CAPACITY
        # kept runners serve without the step's functions being built again
        kept = [self.runners.find(plan.key(kind)) for kind in (start_kind, Kind.RESUME)]
        if None in kept:
            step_fn, first_fn = self._step_and_first(plan, tab, field, request)
            controller = make_controller(plan.controller, tab.order)

            def programs(loop):
                solve = AdaptiveSolve(step_fn, controller, plan.direction, capacity, loop)
                return StartedSolve(first_fn, solve), solve

            # graphs of chunks: on a GPU whose torch captures conditional nodes the attempts
            # after the end are skipped, and the masked chunk is captured where that
            # capture fails; elsewhere masked from the start
            if plan.chunk and plan.mode is Mode.GRAPH and conditional_nodes_available():
                chosen = programs(ConditionalChunk(plan.chunk))
                fallbacks = programs(MaskedChunk(plan.chunk))
            else:
                chosen = programs(MaskedChunk(plan.chunk) if plan.chunk else python_loop)
                fallbacks = (None, None)
        else:
            chosen = fallbacks = (None, None)
        start, solve = (
            plan.program(kind, fn, self.runners, recorder, fallback=other)
            for kind, fn, other in zip((start_kind, Kind.RESUME), chosen, fallbacks)
        )
        return integrate_in_loop(
            tab,
            start,
            solve,
            z0,
            times,
            recorder,
            self._keep(plan),
            capacity,
            first_step=request.first_step,
            masked=lambda: start.masked or solve.masked,
        )
