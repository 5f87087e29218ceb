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
from torch.utils import _pytree as pytree

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


def trace(fn: Callable, model: nn.Module, args) -> tuple[torch.fx.GraphModule, list, object]:
    """``(graph, example inputs, output spec)``: ``fn(*args)`` as an ATen graph whose inputs
    are the model's parameters and buffers, then the tensors of ``args`` (flattened)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from ...adjoint import functional_products  # here: the adjoint imports the engines

    bound = _Bound(model, fn)
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    names += [f"model.{n}" for n, _ in model.named_buffers()]
    state = [p.detach() for p in model.parameters()] + list(model.buffers())
    leaves, in_spec = pytree.tree_flatten(args)
    out_spec = []

    def flat(*xs):
        inputs = pytree.tree_unflatten(list(xs[len(state) :]), in_spec)
        out = torch.func.functional_call(bound, dict(zip(names, xs[: len(state)])), inputs)
        out_leaves, spec = pytree.tree_flatten(out)
        out_spec.append(spec)
        return tuple(out_leaves)

    examples = [*state, *leaves]
    with functional_products(), torch.no_grad():
        graph = make_fx(flat)(*examples)
    return graph, examples, out_spec[-1]


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
    """Runs a step traced and compiled on its first call (``trace``, ``inductor``).

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
    ):
        self.fn, self.model, self.dtype, self.device = fn, model, dtype, device
        self._compiled = None
        self._eager = False  # set when compilation failed: the step then runs eagerly
        self._state: list[torch.Tensor] = []
        self._out_spec = None
        self.compile_seconds = 0.0

    def _leaves(self, args) -> list[torch.Tensor]:
        leaves: list = []
        _flatten(args, leaves)
        return [
            x
            if isinstance(x, torch.Tensor)
            else torch.scalar_tensor(float(x), dtype=self.dtype, device=self.device)
            for x in leaves
        ]

    def _build(self, args) -> None:
        start = time.perf_counter()
        leaves, spec = pytree.tree_flatten(args)
        tensors = pytree.tree_unflatten(self._leaves(args), spec)
        graph, examples, out_spec = trace(self.fn, self.model, tensors)
        self._out_spec = _structure(pytree.tree_unflatten([None] * out_spec.num_leaves, out_spec))
        self._compiled = inductor(graph, examples)
        # the parameter and buffer tensors themselves: in-place updates are seen
        self._state = list(self.model.parameters()) + list(self.model.buffers())
        self.compile_seconds = time.perf_counter() - start
        COMPILE_SECONDS["total"] += self.compile_seconds

    def __call__(self, *args):
        if self._eager:
            return self.fn(*_rebuild(_structure(args), iter(self._leaves(args))))
        if self._compiled is None:
            if FAILED["reason"] is not None:
                self._eager = True
                return self(*args)
            try:
                self._build(args)
            except Exception as exc:  # noqa: BLE001 - no compiler, an op Inductor lacks, ...
                self._eager = True
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                FAILED["reason"] = reason
                warnings.warn(
                    f"compiling an ODE step failed ({reason}); the steps of this process run "
                    f"eagerly (slower, the same numbers). Inductor needs a C++ compiler on the "
                    f"CPU; pass options={{'compile': False}} (--compile off) to skip "
                    f"compilation.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return self(*args)
        out = self._compiled(*self._state, *self._leaves(args))
        return _rebuild(self._out_spec, iter(out))


# A step's arguments and results are nested tuples of tensors and numbers: flattening
# them by hand costs a few microseconds per step, pytree's general walk about 40.
def _flatten(args, out: list) -> None:
    for x in args:
        if isinstance(x, (tuple, list)):
            _flatten(x, out)
        else:
            out.append(x)


def _structure(obj):
    """None for a leaf, else the tuple of the parts' structures."""
    return tuple(_structure(x) for x in obj) if isinstance(obj, (tuple, list)) else None


def _rebuild(structure, leaves):
    if structure is None:
        return next(leaves)
    return tuple(_rebuild(s, leaves) for s in structure)
