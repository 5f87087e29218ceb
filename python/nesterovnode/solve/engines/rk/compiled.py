"""Compiled steps on the CPU: a whole rk step traced once to an ATen graph and compiled
to native code by TorchInductor.

A step of ``step.py`` is a pure function of tensors, so one call traces it completely:

1. ``make_fx`` records the ATen operations of one call — every stage's evaluation of the
   network and, for the adjoint, its vector–Jacobian product through ``torch.func``
   (``solve.adjoint.functional_products``), the stage sums, the error norm and the
   accept/reject choice. The model's parameters and buffers are *inputs* of the graph
   (``torch.func.functional_call``), never constants, so optimiser updates are seen by
   the next call. Tracing takes about 0.5 s for a DP5 adjoint step; Dynamo's bytecode
   tracing of the same step took 16 s (benchmarks/PERFORMANCE.md).
2. Inductor compiles the graph (fused C++ loops, BLAS calls for the products, called
   from its C++ wrapper). Its on-disk cache (keyed by the graph, the shapes and the
   configuration) makes later processes load the result instead of compiling it: the
   cache needs a shape environment in the tracing context, which is why one is
   provided.

Each state shape compiles once per process; the ``RunnerCache`` keeps the result. The
numbers equal the eager step's to round-off (tests/test_rk_compiled.py). A failed
compilation (no C++ compiler) warns once and leaves the process's steps eager.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from .nested import flatten, leaf_tensors, rebuild, structure

#: what the compiled runners of this process spent compiling, in seconds (benchmarks)
COMPILE_SECONDS = {"total": 0.0}
#: why compilation failed in this process (None: it has not): the later runners do not
#: try again, since a missing compiler would fail each of them after seconds of work
FAILED: dict[str, str | None] = {"reason": None}


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


def trace(fn: Callable, model: nn.Module, args: tuple) -> tuple[torch.fx.GraphModule, object]:
    """``(graph, output structure)``: ``fn(*args)`` as an ATen graph whose inputs are the
    model's state (``model_state``), then the leaves of ``args`` (tensors only), and whose
    outputs are the leaves of the result (``nested.structure`` rebuilds it)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from ...adjoint import functional_products  # here: the adjoint imports the engines

    bound = _Bound(model, fn)
    names, state = model_state(model)
    names = [f"model.{n}" for n in names]
    shape, out_shape = structure(args), []

    def flat(*xs):
        inputs = rebuild(shape, xs[len(state) :])
        out = torch.func.functional_call(bound, dict(zip(names, xs[: len(state)])), inputs)
        out_shape.append(structure(out))
        return tuple(flatten(out))

    with functional_products(), torch.no_grad():
        graph = make_fx(flat)(*(t.detach() for t in state), *flatten(args))
    return graph, out_shape[-1]


def inductor(graph: torch.fx.GraphModule, examples: list):
    """Inductor's compilation of ``graph`` (a callable on a flat list of tensors), with its
    C++ wrapper: the kernels are called from C++, not from generated Python (measured on
    the point cloud: 44 instead of 59 µs per evaluation, and a warm cache loads it in
    2 s instead of 5)."""
    import torch._inductor
    import torch._inductor.config as inductor_config
    from torch._guards import TracingContext, tracing
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    # Inductor's FX-graph cache reads the shape environment of the tracing context and
    # bypasses itself without one (every process would then compile from scratch).
    with tracing(TracingContext(FakeTensorMode(shape_env=ShapeEnv()))):
        # build_separate: the wrapper at -O1 apart from the kernels at -O3; one -O3 unit of
        # both took about twice as long to compile, and the steps are no faster
        with inductor_config.patch(cpp_wrapper=True, cpp_wrapper_build_separate=True):
            return torch._inductor.compile(graph, examples)


class CompiledRunner:
    """Runs a step traced and compiled on its first call (``trace``, ``inductor``), or
    ``fallback`` (an eager runner) where compilation failed.

    ``model`` is the module whose parameters and buffers the step reads (the field's
    dynamics); the step must not read other tensors that change between calls. Numbers
    in the arguments become 0-dim tensors of ``dtype``.
    """

    def __init__(
        self,
        fn: Callable,
        model: nn.Module,
        dtype: torch.dtype,
        device: torch.device,
        fallback: Callable,
    ):
        self.fn, self.model, self.dtype, self.device = fn, model, dtype, device
        self.fallback = fallback
        self._run = self._first_call
        self.compile_seconds = 0.0

    def __call__(self, *args):
        return self._run(*args)

    def _first_call(self, *args):
        if FAILED["reason"] is not None:
            self._run = self.fallback
        else:
            try:
                self._build(args)
            except Exception as exc:  # noqa: BLE001 - no compiler, an op Inductor lacks, ...
                FAILED["reason"] = reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                warnings.warn(
                    f"compiling an ODE step failed ({reason}); the steps of this process run "
                    f"eagerly (slower, the same numbers). Inductor needs a C++ compiler on the "
                    f"CPU; pass options={{'compile': False}} (--compile off) to skip "
                    f"compilation.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._run = self.fallback
        return self._run(*args)

    def _build(self, args) -> None:
        start = time.perf_counter()
        tensors = rebuild(structure(args), leaf_tensors(args, self.dtype, self.device))
        graph, shape = trace(self.fn, self.model, tensors)
        _, state = model_state(self.model)
        compiled = inductor(graph, [t.detach() for t in state] + flatten(tensors))
        dtype, device = self.dtype, self.device

        def run(*args):
            return rebuild(shape, compiled(*state, *leaf_tensors(args, dtype, device)))

        self._run = run
        self.compile_seconds = time.perf_counter() - start
        COMPILE_SECONDS["total"] += self.compile_seconds
