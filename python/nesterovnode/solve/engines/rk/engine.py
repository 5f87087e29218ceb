"""The ``rk`` engine: the library's own explicit Runge–Kutta solver, built for the GPU.

Methods (``tableaux.py``), steps (``step.py``), step-size control (``controller.py``)
and the host loops (``loop.py``) are apart, so every method runs adaptively under every
controller or at a fixed dt. Each step is a pure tensor function run by a runner
(``graphs.py``): on a CUDA device a step — all stages, the error estimate, the
accept/reject choice — is captured once as a CUDA graph and replayed, and the host reads
one number per step. Small networks (the paper's image models) are bound by launch
overhead, not arithmetic; replaying a graph removes it.

Options (``SolveConfig.options``):

- ``cuda_graphs``: True (default: graphs on CUDA, except under ``backprop``), False
  (eager), or "emulate" (the graphs' static-buffer semantics without a graph, on any
  device; for tests). A captured graph is reused while the field (model, parameter
  storage, training mode), the state's shape, dtype and device and the tolerances stay
  the same; if you change a model's Python attributes (not its parameters or buffers)
  between solves, pass ``cuda_graphs=False``.
- ``controller``: ``"integral"`` (default; torchdiffeq's rule) or ``"PI"``.
- ``compile``: True compiles each solve between two times (a forward solve to T, each
  interval of the adjoint) to one native program: the first step (the rule's, or the
  one the adjoint's backward is given: ``IntegrateRequest.first_step``) and the whole
  adaptive loop — every stage, the error norm, the accept/reject choice, the step-size
  control and the stopping test (``solve_loop.py``), forward and adjoint: no Python
  between steps. Solves with more output times call the compiled rule and one compiled
  step per attempt from the host's loop (dense output). Each program is traced once with
  ``make_fx`` and compiled by TorchInductor with its C++ wrapper (``compiled.py``;
  measured and tested on the CPU: a GPU replays CUDA graphs instead, unless
  ``cuda_graphs=False``), once per process for every batch size ≥ 2 (seconds;
  Inductor's disk cache serves later processes); the numbers equal the eager ones to
  round-off (tests/test_rk_compiled.py). Where compilation fails (no C++ compiler), a
  warning says so and the solve runs eagerly. ``"steps"`` compiles the adaptive steps
  only, called from the host's loop, and runs the first-step rule, one call per solve,
  eagerly: the rule's compilation is not repaid in short runs (benchmarks/PERFORMANCE.md,
  sixth pass).
- ``loop``: with ``compile=True``, ``"compiled"`` (default, as above) or ``"host"`` (one
  compiled step per attempt, as ``"steps"`` calls them; 1.10–1.12× the time per epoch on
  the point cloud, seventh pass).
- ``graph_chunk``: with CUDA graphs (or their emulation), K ≥ 1 captures K attempts of a
  solve between two times — the steps, the step-size control and the stopping test
  (``solve_loop.py``) — in one graph (``chunks.py``): the host replays it and reads the
  attempts once per K, where one graph per step (0, the default) has it read each step's
  error ratio. Attempts after the end are skipped by conditional graph nodes where this
  torch captures them (CUDA ≥ 12.4), else run and discarded (masked). Solves with more
  output times keep one graph per step (dense output). The same numbers as one graph per
  step (tests/test_rk_engine.py); not yet timed on a GPU (benchmarks/gpu_mnist_check.sh
  compares both).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...grid import direction as time_direction
from ..base import Engine, IntegrateRequest, Option, State
from .chunks import conditional_chunk, conditional_nodes_available, masked_chunk
from .controller import CONTROLLERS, make_controller
from .graphs import RunnerCache
from .loop import integrate_adaptive, integrate_fixed, stack
from .solve_loop import (
    CAPACITY,
    integrate_in_loop,
    make_adaptive_solve,
    make_started_solve,
    python_loop,
)
from .step import (
    Norm,
    make_adaptive_step,
    make_fixed_step,
    make_given_first_step,
    make_initial_step,
)
from .tableaux import TABLEAUX


class RKEngine(Engine):
    """Explicit Runge–Kutta methods in-process, CUDA-graphed on GPUs."""

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
            (bool, str), True, "True, False or 'emulate'", choices=(True, False, "emulate")
        ),
        "controller": Option(str, "integral", "'integral' or 'PI'", choices=tuple(CONTROLLERS)),
        "compile": Option(
            (bool, str),
            False,
            "compile each solve to native code (Inductor; CPU); 'steps': the adaptive "
            "steps only, the first-step rule eager",
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
            "attempts); 0 captures one step per attempt (one read per attempt)",
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
        y = z0[0]
        dtype, device = y.dtype, y.device
        graphs = request.options["cuda_graphs"]
        if torch.is_grad_enabled():
            mode = "eager"  # autograd may record the solver's operations (backprop)
        elif graphs == "emulate":
            mode = "emulate"
        elif y.is_cuda and graphs is True:
            mode = "graph"
        else:
            mode = "compile" if request.options["compile"] else "eager"
        model = getattr(field, "dynamics", None)
        if mode == "compile" and not isinstance(model, torch.nn.Module):
            mode = "eager"  # a compiled step takes the model's parameters as inputs
        if mode == "compile":
            # the layout the steps are compiled for, once per solve (an adjoint may start
            # from an expanded, stride-0 gradient; a state may be a transposed tensor)
            z0 = tuple(z.contiguous() for z in z0)
        # a static runner (CUDA graph, its emulation) overwrites its outputs at the next call;
        # eager and compiled steps return new tensors, and ``stack`` copies them anyway
        static = mode in ("graph", "emulate")
        keep = (lambda s: tuple(x.clone() for x in s)) if static else (lambda s: s)
        channels = (
            tuple(range(len(z0))) if request.error_channels is None else (request.error_channels)
        )
        shapes = tuple(tuple(z.shape) for z in z0)
        # compiled steps serve every batch size >= 2 (the leading size of the state): one
        # compilation for a run's full and last, smaller batches
        batch = y.shape[0] if mode == "compile" and y.dim() and y.shape[0] >= 2 else None
        if batch is not None:
            shapes = tuple(("batch", *s[1:]) if s and s[0] == batch else s for s in shapes)
        key = (
            None
            if field.key is None
            else (
                field.key,
                request.method,
                request.rtol,
                request.atol,
                channels,
                shapes,
                dtype,
                device,
            )
        )

        def cache_key(kind, dense=False):
            return None if key is None else (kind, dense, *key)

        def runner(kind, fn, dense=False, how=mode, fallback=None):
            """Looked up (or captured) on first call, which brings example arguments;
            ``how``: the runner's mode (the solve's, unless a step kind runs eagerly);
            ``fallback``: what to capture where ``fn``'s capture fails."""
            found = None

            def call(*args):
                nonlocal found
                if found is None:
                    found = self.runners.get(
                        cache_key(kind, dense), fn, args, dtype, device, how, model, batch, fallback
                    )
                return found(*args)

            return call

        if request.dt is not None:
            step = runner("fixed", make_fixed_step(tab, field, field.reads))
            outputs = integrate_fixed(tab, step, z0, times, request.dt, request.recorder, keep)
        else:
            if not tab.adaptive:
                raise ValueError(f"{request.solver} has no error estimate: pass dt")
            norm = Norm(channels)
            dense = tab.dense is not None and len(times) > 2 and len(z0) == 1
            direction = time_direction(times)
            # a first step given (a solve continuing another: the adjoint's backward)
            # replaces the first-step rule: its own programs, one evaluation instead of two
            given = request.first_step is not None
            first = "given" if given else "init"

            def steps():
                """The step, the first step and the controller (closures on field)."""
                step_fn = make_adaptive_step(
                    tab, field, request.rtol, request.atol, norm, field.reads, dense
                )
                init_fn = (
                    make_given_first_step(field)
                    if given
                    else make_initial_step(
                        tab.order, field, request.rtol, request.atol, norm, direction
                    )
                )
                return step_fn, init_fn, make_controller(request.options["controller"], tab.order)

            in_loop = (
                mode == "compile"
                and request.options["compile"] is True
                and request.options["loop"] == "compiled"
                and len(times) == 2
            )
            # a graph of K attempts (chunks.py): the loop's control on the device too
            chunk = request.options["graph_chunk"] if static and len(times) == 2 else 0
            if in_loop or chunk:  # the whole solve in compiled code or graphs (solve_loop.py)
                # the controller's rule and the direction are part of the programs; the
                # second serves a solve that stops before T (capacity, max_steps, a chunk)
                program = (request.options["controller"], direction) + ((chunk,) if chunk else ())
                capacity = chunk or CAPACITY
                start_kind = "start given" if given else "start"
                kinds = ((start_kind, *program), ("solve", *program))
                # kept runners serve without the step's closures being built again
                found = [self.runners.find(cache_key(kind)) for kind in kinds]
                if None in found:
                    step_fn, init_fn, controller = steps()

                    def programs(loop):
                        solve = make_adaptive_solve(step_fn, controller, direction, capacity, loop)
                        return make_started_solve(init_fn, solve), solve

                    # graphs of chunks: on a GPU whose torch captures conditional nodes
                    # the attempts after the end are skipped, and the masked chunk is
                    # captured where that capture fails; elsewhere masked from the start
                    if chunk and y.is_cuda and conditional_nodes_available():
                        chosen = programs(conditional_chunk(chunk))
                        fallbacks = programs(masked_chunk(chunk))
                    else:
                        chosen = programs(masked_chunk(chunk) if chunk else python_loop)
                        fallbacks = (None, None)
                    found = [
                        runner(kind, fn, fallback=other)
                        for kind, fn, other in zip(kinds, chosen, fallbacks)
                    ]
                start, solve = found
                outputs = integrate_in_loop(
                    tab,
                    start,
                    solve,
                    z0,
                    times,
                    request.recorder,
                    keep,
                    capacity,
                    first_step=request.first_step,
                )
            else:
                step_fn, init_fn, controller = steps()
                # "steps": the first-step rule, once per solve, does not repay its
                # compilation in short runs (CUDA graphs, captured in no time, keep it)
                rule_eager = mode == "compile" and request.options["compile"] == "steps"
                step = runner("step", step_fn, dense)
                init = runner(first, init_fn, how="eager" if rule_eager else mode)
                outputs = integrate_adaptive(
                    tab,
                    step,
                    init,
                    z0,
                    times,
                    request.recorder,
                    controller,
                    keep,
                    dense,
                    request.first_step,
                )
        return stack(outputs, range(len(z0)))
