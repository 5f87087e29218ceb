"""Runners: how a program of the ``rk`` engine (a step, a first step, a whole solve) is
executed. Each keeps the function it runs as ``fn``.

A step function (``step.py``) takes and returns (nested tuples of) tensors; the time and
the step size come in as Python floats. A runner calls it:

- ``EagerRunner`` runs the Python function every time (CPU, autograd through the solver,
  or a GPU where capture is off or failed).
- ``CompiledRunner`` (``compiled.py``) runs the step traced once and compiled to native
  code (the ``compile`` option).
- ``GraphRunner`` (CUDA) captures one call as a CUDA graph on first use, with its inputs
  in static buffers, and from then on copies the new inputs into those buffers and
  replays the graph: the whole step — every stage's network evaluation (and, for the
  adjoint, its vector-Jacobian product), the stage sums and the error norm — is one
  launch instead of hundreds, which is where the time of small networks goes. Its
  outputs are static too: they are overwritten by the next replay, so a caller keeps
  what it needs by passing it back in (the loops do) or by cloning it.

``RunnerCache`` keeps one runner per key (``plan.RunPlan.key``: the program's kind, the
field's fingerprint, the settings and shapes it was built for); a graph whose capture
fails is replaced by an eager runner and a warning says why, once.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

from .compiled import CompiledRunner
from .nested import flatten, leaf_tensors, rebuild, structure


class EagerRunner:
    """Calls ``fn`` directly; numbers in the arguments become 0-dim tensors."""

    def __init__(self, fn: Callable, dtype: torch.dtype, device: torch.device):
        self.fn, self.dtype, self.device = fn, dtype, device

    def __call__(self, *args):
        return self.fn(*rebuild(structure(args), leaf_tensors(args, self.dtype, self.device)))


class _StaticInputs:
    """Inputs kept in static buffers: a call copies new values into them."""

    def __init__(self, args, dtype: torch.dtype, device: torch.device):
        self._static = [x.detach().clone() for x in leaf_tensors(args, dtype, device)]
        self._static_args = rebuild(structure(args), self._static)

    def _load(self, args) -> None:
        leaves = flatten(args)
        if len(leaves) != len(self._static):
            raise ValueError("a static step was called with a different argument structure")
        for buffer, x in zip(self._static, leaves):
            if isinstance(x, torch.Tensor):
                if x is not buffer:
                    buffer.copy_(x)
            else:
                buffer.fill_(float(x))


class GraphRunner(_StaticInputs):
    """Captures ``fn(*args)`` as a CUDA graph (after warm-up calls on a side stream, as
    capture requires) and replays it on new inputs; see the module docstring."""

    #: calls before capture: cuDNN picks its algorithms and autograd its streams here
    WARMUP = 3

    def __init__(self, fn: Callable, args, dtype: torch.dtype, device: torch.device):
        super().__init__(args, dtype, device)
        # The graph reads every tensor fn closes over (buffers, index tensors) by address:
        # keeping fn keeps them alive as long as the graph.
        self.fn = fn
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                fn(*self._static_args)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread may allocate while we capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self._out = fn(*self._static_args)

    def __call__(self, *args):
        self._load(args)
        self.graph.replay()
        return self._out


class StaticRunner(_StaticInputs):
    """A graph's buffer semantics without a graph, on any device: inputs are copied into
    static buffers and results into static outputs that the next call overwrites. Tests
    use it on the CPU to check that the loops never read an output after the next call
    (``options={"cuda_graphs": "emulate"}``)."""

    def __init__(self, fn: Callable, args, dtype: torch.dtype, device: torch.device):
        super().__init__(args, dtype, device)
        self.fn = fn
        self._out = None

    def __call__(self, *args):
        self._load(args)
        out = self.fn(*self._static_args)
        if self._out is None:
            self._out = rebuild(structure(out), [x.detach().clone() for x in flatten(out)])
        else:
            for buffer, x in zip(flatten(self._out), flatten(out)):
                buffer.copy_(x)
        return self._out


class RunnerCache:
    """Runners by key, least recently used dropped beyond ``size`` (a dropped graph frees
    its memory pool)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._runners: OrderedDict[Hashable, EagerRunner | GraphRunner] = OrderedDict()
        self._warned: set[str] = set()
        #: (id(owner), slot) -> (the identity its last runner was built for, rebuilds)
        self._builds: dict[Hashable, tuple[Hashable, int]] = {}

    def rebuilt(self, owner, slot: Hashable, identity: Hashable) -> tuple[Hashable, int]:
        """Note that a runner for ``slot`` (a program's key but for ``identity``) is built
        for ``owner`` (a model) with ``identity``; returns the identity the one before was
        built for (None: none) and how many times in a row a changed identity has rebuilt
        it."""
        key = (id(owner), slot)
        last, count = self._builds.get(key, (None, 0))
        count = count + 1 if last is not None and last != identity else 0
        self._builds[key] = (identity, count)
        return last, count

    def get(
        self,
        key: Hashable,
        fn: Callable,
        args,
        dtype,
        device,
        mode: str,
        model=None,
        batch=None,
        fallback: Callable | None = None,
    ):
        """The runner for ``key``, built on first use. ``mode``: "eager", "graph" (CUDA),
        "compile" (``compiled.CompiledRunner``, which needs the ``model`` whose parameters
        the step reads, and serves every ``batch`` size when given) or "emulate"
        (``StaticRunner``). ``fallback``: a function of the same results to capture where
        capturing ``fn`` fails, before running ``fn`` eagerly."""
        if mode == "eager" or key is None:
            return EagerRunner(fn, dtype, device)  # nothing to keep: no need to cache
        runner = self.find(key)
        if runner is not None:
            return runner
        if mode == "emulate":
            runner = StaticRunner(fn, args, dtype, device)
        elif mode == "compile":
            runner = CompiledRunner(fn, model, dtype, device, EagerRunner(fn, dtype, device), batch)
        else:
            runner = self._capture(fn, args, dtype, device, fallback)
        self._runners[key] = runner
        while len(self._runners) > self.size:
            self._runners.popitem(last=False)
        return runner

    def find(self, key: Hashable | None):
        """The runner kept for ``key`` (now the most recently used), or None."""
        runner = None if key is None else self._runners.get(key)
        if runner is not None:
            self._runners.move_to_end(key)
        return runner

    def _capture(self, fn, args, dtype, device, fallback=None):
        """A graph of ``fn``; where its capture fails, of ``fallback`` (when given), and
        else ``fn`` run eagerly. A warning says why, once per reason."""
        try:
            return GraphRunner(fn, args, dtype, device)
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back
            torch.cuda.synchronize(device)
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        runner, instead = None, "this step runs eagerly (slower, same numbers)"
        if fallback is not None:
            runner = self._capture(fallback, args, dtype, device)
            if isinstance(runner, GraphRunner):
                instead = "its fallback was captured instead (the same numbers)"
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(
                f"CUDA graph capture of an ODE step failed ({reason}); {instead}. Pass "
                f"options={{'cuda_graphs': False}} to skip capture.",
                RuntimeWarning,
                stacklevel=3,
            )
        return runner if isinstance(runner, GraphRunner) else EagerRunner(fn, dtype, device)

    def clear(self) -> None:
        self._runners.clear()
        self._builds.clear()

    def __len__(self) -> int:
        return len(self._runners)
