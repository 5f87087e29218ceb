"""Compiled steps on the CPU: a whole rk step traced once to an ATen graph and compiled
to native code by TorchInductor.

A step of ``step.py`` is a pure function of tensors, so one call traces it completely:

1. ``make_fx`` records the ATen operations of one call — every stage's evaluation of the
   network and, for the adjoint, its vector–Jacobian product through ``torch.func`` (the
   engine compiles the field's ``traceable()`` form), the stage sums, the error norm and
   the accept/reject choice. The model's parameters and buffers are *inputs* of the graph
   (``torch.func.functional_call``), never constants, so optimiser updates are seen by
   the next call. ``make_fx`` traces the step as it is, where Dynamo's bytecode tracing
   took many times longer (docs/performance.md).
2. The trace runs on fake inputs whose batch size (the state's leading size) is a
   symbol, so the graph serves every batch size: a run's last, smaller batch does not
   compile again. What tracing and Inductor assumed about the shapes (the guards: equal
   batch sizes, at least 2, or a model's own test on the size) is checked once per new
   size; where it fails, that size compiles on its own.
3. Inductor compiles the graph (fused C++ loops, BLAS calls for the products, called
   from its C++ wrapper). Its on-disk caches (AOTAutograd's and the FX graph's, keyed by
   the graph, the shapes and the configuration) make later processes load the result
   instead of compiling it; they need the shape environment in the tracing context and
   not on the graph, which is why it is placed there.

The ``RunnerCache`` keeps the compiled steps for the process, each under the key of the
plan it was built for (``plan.RunPlan.key``), which holds everything the trace took from
Python (the model's fingerprint, the settings): a change there builds a new program. The
numbers equal the eager step's to round-off (tests/solve/rk/test_rk_compiled.py).

Failures: an error of the traced function itself (a field of the wrong shape) is raised
as the eager call raises it; a function ``make_fx`` cannot trace, or a graph Inductor
cannot compile, runs eagerly with a warning that says why, for that program alone. Only
a failure of the C++ toolchain (no compiler, a compiler that cannot build Inductor's
code) switches compilation off for the process (``TOOLCHAIN``), with a warning that says
so: every later compilation would fail the same way after seconds of work.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from .nested import flatten, leaf_tensors, rebuild, structure
from .solve_loop import LoopProgram

#: why the C++ toolchain failed in this process (None: it has not): the later runners do
#: not try again, since a missing compiler would fail each of them after seconds of work
TOOLCHAIN: dict[str, str | None] = {"failure": None}
#: whether Inductor takes the CPU's vector instructions from the CPU's flags ("trusted")
#: or from its own probes (one test compilation and load of each instruction set: about
#: 7 s in a process's first compilation, 1 s later). Inductor keeps the answer for the
#: process, other compilations included. A compilation that fails while trusted is
#: retried once with the probes, which then stay on for the process.
VECTOR_ISA = {"trusted": True}


class _Bound(nn.Module):
    """The step as a module whose only submodule is the model, so that
    ``functional_call`` can hand the model's parameters and buffers in as inputs."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def model_state(model: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """The names and tensors of the model's parameters, then its buffers: the first inputs
    of a traced step (the tensors themselves, so that in-place updates are seen)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return [n for n, _ in named], [t for _, t in named]


def fake_inputs(model: nn.Module, leaves: list[torch.Tensor], batch: int | None):
    """``(fake mode, fakes)``: fake tensors standing for the model's state (``model_state``)
    and ``leaves``, all of static shape except dimension 0 of every leaf of size ``batch``
    (≥ 2), which is a symbol: the graph traced from them serves every batch size."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (
        DimDynamic,
        ShapeEnv,
        StatelessSymbolicContext,
    )

    mode = FakeTensorMode(shape_env=ShapeEnv())

    def fake(x: torch.Tensor, dynamic: bool):
        sizes = [
            DimDynamic.DYNAMIC if dynamic and i == 0 else DimDynamic.STATIC for i in range(x.dim())
        ]
        return mode.from_tensor(x, symbolic_context=StatelessSymbolicContext(dynamic_sizes=sizes))

    def fresh(x: torch.Tensor):
        # contiguous, as every call passes the arguments, and not a view (the storage
        # offset of a view of a batch would be one more symbol to guard)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    _, state = model_state(model)  # with their own layout: the same tensors every call
    return mode, [fake(x.detach(), False) for x in state] + [
        fake(fresh(x), batch is not None and x.dim() > 0 and x.shape[0] == batch) for x in leaves
    ]


def trace(
    fn: Callable, model: nn.Module, shape, fakes: list
) -> tuple[torch.fx.GraphModule, object]:
    """``(graph, output structure)``: ``fn`` on the nested arguments of structure ``shape``
    as an ATen graph whose inputs are the model's state (``model_state``), then the
    argument leaves, and whose outputs are the leaves of the result (``nested.structure``
    rebuilds it). ``fakes`` (``fake_inputs``) stand for the inputs; their symbolic sizes
    stay symbols in the graph."""
    from torch.fx.experimental.proxy_tensor import make_fx

    bound = _Bound(model, fn)
    names, state = model_state(model)
    names = [f"model.{n}" for n in names]
    out_shape = []

    def flat(*xs):
        inputs = rebuild(shape, xs[len(state) :])
        out = torch.func.functional_call(bound, dict(zip(names, xs[: len(state)])), inputs)
        out_shape.append(structure(out))
        return tuple(flatten(out))

    with torch.no_grad():
        graph = make_fx(flat, tracing_mode="symbolic")(*fakes)
    # the shape environment stays with the fake mode; kept on the graph as well, it makes
    # the graph unpicklable, and AOTAutograd's disk cache then bypasses itself
    graph.__dict__.pop("shape_env", None)
    return graph, out_shape[-1]


def traced_apart(loop, model: nn.Module, args, fakes: list) -> Callable:
    """``loop`` (a ``solve_loop.LoopProgram``, to be traced on ``args``) made traceable:
    its step traced on its own to an ATen graph that takes the model's state as inputs,
    and the loop run as the ``while_loop`` operator, whose body gets that state as
    arguments. ``fakes`` are the loop's
    (``fake_inputs``); the step's example arguments are made from them, so their symbolic
    batch size is the loop's.

    Why apart: ``torch._higher_order_ops.while_loop``, the function, hands its body to
    Dynamo (seconds of bytecode tracing; it cannot trace the adjoint's products, and
    a second loop in a process came out with arguments Inductor rejects). The operator
    under ``make_fx`` traces the body as it is, and a body of plain ATen operations and
    explicit inputs is what it takes."""
    from torch._higher_order_ops.while_loop import while_loop_op

    n_state = len(model_state(model)[1])
    with fakes[-1].fake_mode:
        step_args = loop.step_arguments(rebuild(structure(args), fakes[n_state:]))
    graph, out_shape = trace(
        loop.step, model, structure(step_args), fakes[:n_state] + flatten(step_args)
    )

    def step(t, h, t1, y, k, *state):
        return rebuild(out_shape, graph(*state, t, h, t1, *y, *k))

    traced = loop.with_step(step, while_loop_op)

    def run(*args):
        _, state = model_state(model)  # inside the trace: the graph's inputs
        return traced(*args, extra=tuple(state))

    return run


def inductor(graph: torch.fx.GraphModule, examples: list, mode):
    """Inductor's compilation of ``graph`` (a callable on a flat list of tensors) for the
    fake ``examples`` of fake mode ``mode``, with its C++ wrapper: the kernels are called
    from C++, not from generated Python (faster calls and faster loads from the disk
    cache, docs/performance.md). With the CPU's flags
    trusted (``VECTOR_ISA``), a failure is retried once with Inductor's probes (a compiler
    without the CPU's vector instructions)."""
    try:
        return _inductor(graph, examples, mode, VECTOR_ISA["trusted"])
    except Exception:  # noqa: BLE001 - retried; a second failure is the caller's
        if not VECTOR_ISA["trusted"]:
            raise
        probe_vector_isa()
        return _inductor(graph, examples, mode, False)


def _inductor(graph: torch.fx.GraphModule, examples: list, mode, trusted: bool):
    import torch._inductor
    import torch._inductor.config as inductor_config
    from torch._guards import TracingContext, tracing

    # Inductor's FX-graph cache reads the shape environment of the tracing context and
    # bypasses itself without one (every process would then compile from scratch).
    with tracing(TracingContext(mode)):
        # build_separate: the wrapper at -O1 apart from the kernels at -O3; one -O3 unit of
        # both took about twice as long to compile, and the steps are no faster.
        # vec_isa_ok: the instruction set the CPU reports (the one ATen's own kernels use)
        # without Inductor's probes (VECTOR_ISA)
        isa = {"cpp.vec_isa_ok": True} if trusted else {}
        with inductor_config.patch(
            {
                "cpp_wrapper": True,
                "cpp_wrapper_build_separate": True,
                "unsafe_marked_cacheable_functions": _CACHEABLE_LOOP,
                **isa,
            }
        ):
            return torch._inductor.compile(graph, examples)


def _while_loop_name() -> str:
    from torch._higher_order_ops.while_loop import while_loop_op

    return f"{while_loop_op.__module__}.{while_loop_op.__name__}"


#: Inductor's and AOTAutograd's disk caches skip graphs with a ``while_loop`` (the
#: operator is not marked cacheable in torch 2.13), so every process would compile a
#: whole-solve loop (``solve_loop.py``) again: 15-25 s per model. Marked here, the
#: caches key it as any graph (its body and condition are submodules of the graph,
#: hashed with it) and the string below, and a later process loads it in about 1 s
#: (tests/solve/rk/test_rk_compiled.py checks that the loop is not bypassed).
_CACHEABLE_LOOP = {_while_loop_name(): f"nesterovnode solve loop, torch {torch.__version__}"}


def probe_vector_isa() -> None:
    """Stop trusting the CPU's flags (``VECTOR_ISA``): Inductor's next compilation probes
    which vector instruction sets the compiler builds and the process loads."""
    from torch._inductor import cpu_vec_isa

    VECTOR_ISA["trusted"] = False
    # the answers given while trusted are cached: the list, and each set's own check
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    for isa in cpu_vec_isa.supported_vec_isa_list:
        for cls in type(isa).__mro__:
            getattr(cls.__dict__.get("__bool__"), "cache_clear", lambda: None)()


def _guard_code(mode, fakes: list) -> str | None:
    """The conditions on the inputs' sizes and strides under which a graph traced from
    ``fakes`` was compiled, as an expression of ``t0, t1, ...`` for the fake mode's
    ``shape_env.evaluate_guards_expression`` (None: none). Static sizes are included.
    Storage offsets are left out: the compiled code reads data pointers, which include
    them."""
    from torch._dynamo.source import LocalSource

    sources = [LocalSource(f"t{i}") for i in range(len(fakes))]
    guards = mode.shape_env.produce_guards(fakes, sources, ignore_static=False)
    kept = [g for g in guards if "storage_offset" not in g]
    return " and ".join(kept) if kept else None


class Compiled(NamedTuple):
    """One compilation of a step: the compiled callable on the flat inputs, the structure
    of its output (``nested.structure``), the fake mode it was traced in and the
    conditions on the inputs' shapes it assumes (``_guard_code``; None: none)."""

    fn: Callable
    out_shape: object
    mode: object
    guards: str | None


class CompiledRunner:
    """Runs a step traced and compiled on its first call (``fake_inputs``, ``trace``,
    ``inductor``), or ``fallback`` (an eager runner) where compilation failed.

    ``model`` is the module whose parameters and buffers the step reads (the field's
    dynamics); the step must not read other tensors that change between calls. Numbers
    in the arguments become 0-dim tensors of ``dtype``; tensor arguments must be
    contiguous, the layout the step is compiled for (the engine makes a solve's initial
    state so; the later states are the step's own outputs).

    With ``batch`` (the state's leading size, ≥ 2), dimension 0 of the arguments of that
    size is traced as a symbol, so one compiled step serves every batch size ≥ 2 (the
    point cloud's batches of 50 and 20 compile once, not twice). The shape conditions
    that tracing and Inductor assumed (guards: equal batch sizes, or a model's own
    test on the size) are checked once per new batch size; where they fail, that size
    compiles on its own.
    """

    def __init__(
        self,
        fn: Callable,
        model: nn.Module,
        dtype: torch.dtype,
        device: torch.device,
        fallback: Callable,
        batch: int | None = None,
    ):
        self.fn, self.model, self.dtype, self.device = fn, model, dtype, device
        self.fallback = fallback
        self.batch = batch
        self.compile_seconds = 0.0
        self.failure: str | None = None  # why this program runs eagerly (None: it does not)
        self.graphs: list[Compiled] = []  # one per compilation
        self._by_size: dict[int | None, Callable] = {}  # batch size -> run(args, leaves)
        self._batch_leaf: int | None = None  # which leaf's dimension 0 is the batch size

    def __call__(self, *args):
        leaves = leaf_tensors(args, self.dtype, self.device)
        run = self._by_size.get(self._size(leaves))
        if run is None:
            run = self._for_size(args, leaves)
            if isinstance(run, _Computed):  # the eager call that tells a user's error
                return run.out
        return run(args, leaves)

    def _size(self, leaves) -> int | None:
        """The batch size of a call (None before the first compilation, or for a step
        compiled for one shape)."""
        return None if self._batch_leaf is None else leaves[self._batch_leaf].shape[0]

    def _for_size(self, args, leaves) -> Callable:
        """The run function for the batch size of ``args``: a compiled graph whose guards
        hold for them, a new compilation, or the eager fallback (see the module
        docstring for which failure falls back how far)."""
        run = None
        compiling = TOOLCHAIN["failure"] is None and self.failure is None
        if compiling:
            run = next((self._runs(g) for g in self.graphs if self._holds(g, leaves)), None)
        if run is None and compiling:
            try:
                run = self._runs(self._build(args, leaves))
            except _NotTraced as exc:
                # the eager call raises a user's error as it is (a field of the wrong
                # shape); only a function the tracer cannot follow gets past it
                out = self.fallback(*args)
                self._fall_back(f"tracing it failed ({_first_line(exc.__cause__)})")
                self._by_size[self._size(leaves)] = self._eager
                return _Computed(out)
            except Exception as exc:  # noqa: BLE001 - Inductor: a compiler, an op it lacks
                reason = _first_line(exc)
                if _toolchain_failure(exc):
                    TOOLCHAIN["failure"] = reason
                    warnings.warn(
                        f"the C++ compiler that TorchInductor needs failed ({reason}); "
                        f"compilation is off for this process and the ODE steps run "
                        f"eagerly (slower, the same numbers). Install a C++ compiler (g++) "
                        f"or pass options={{'compile': False}} (--compile off).",
                        RuntimeWarning,
                        stacklevel=5,
                    )
                else:
                    self._fall_back(f"Inductor could not compile it ({reason})")
        if run is None:
            run = self._eager
        self._by_size[self._size(leaves)] = run
        return run

    def _fall_back(self, why: str) -> None:
        self.failure = why
        warnings.warn(
            f"compiling an ODE program failed: {why}; this program runs eagerly (slower, "
            f"the same numbers), the others stay compiled. Pass options={{'compile': "
            f"False}} (--compile off) to skip compilation.",
            RuntimeWarning,
            stacklevel=6,
        )

    def _eager(self, args, leaves):
        return self.fallback(*args)

    def _runs(self, graph: Compiled) -> Callable:
        compiled, shape = graph.fn, graph.out_shape
        _, state = model_state(self.model)

        def run(args, leaves):
            # the programs are functional: no autograd inside, and their ATen calls (the
            # extern matrix products, allocations) skip the autograd dispatch keys in
            # inference mode (docs/performance.md). The outputs are inference tensors; the
            # engine's ``stack`` makes normal ones.
            with torch.inference_mode():
                out = compiled(*state, *leaves)
            return rebuild(shape, out)

        return run

    def _holds(self, graph: Compiled, leaves) -> bool:
        """Whether the shape conditions ``graph`` was compiled under hold for ``leaves``."""
        _, state = model_state(self.model)
        return graph.guards is None or bool(
            graph.mode.shape_env.evaluate_guards_expression(graph.guards, [*state, *leaves])
        )

    def _build(self, args, leaves) -> Compiled:
        start = time.perf_counter()
        size = self.batch if self._batch_leaf is None else self._size(leaves)
        if size is not None and self._batch_leaf is None:
            found = [i for i, x in enumerate(leaves) if x.dim() and x.shape[0] == size]
            if not found:
                raise ValueError(f"no argument of the step has the batch size {size}")
            self._batch_leaf = found[0]
        try:
            mode, fakes = fake_inputs(self.model, leaves, size)
            fn = self.fn
            if isinstance(fn, LoopProgram):  # a loop of steps (solve_loop.py)
                fn = traced_apart(fn, self.model, args, fakes)
            graph, shape = trace(fn, self.model, structure(args), fakes)
        except Exception as exc:
            raise _NotTraced() from exc
        compiled = inductor(graph, fakes, mode)
        # every condition on the shapes, the static sizes included: read after Inductor,
        # which adds its own while it lowers the graph
        code = _guard_code(mode, fakes)
        self.graphs.append(Compiled(compiled, shape, mode, code))
        self.compile_seconds += time.perf_counter() - start
        return self.graphs[-1]


class _Computed(NamedTuple):
    """A call's result, computed while its program was being prepared."""

    out: object


class _NotTraced(Exception):
    """Tracing a program failed (its cause is the tracer's or the function's error)."""


def _first_line(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _toolchain_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is the C++ toolchain's: no
    compiler, or a compiler that failed to build Inductor's code."""
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (CppCompileError, InvalidCxxCompiler, FileNotFoundError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
