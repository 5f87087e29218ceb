"""A solve's run plan: how the rk engine runs one ``integrate`` call, as one value.

The plan says which way the solve runs (``Mode``: eager, compiled, CUDA graphs or their
emulation), along which path (``Path``: fixed steps, the host's adaptive loop, or the
whole solve in one program) and everything a program it builds captures: the field's
fingerprint (``fields.model_fingerprint``: the model's structure, attributes, parameter
storage), the method, tolerances, error channels, the state's shapes, dtype and device,
the controller, the direction of time, dense output, the chunk length. Each program is
one ``Kind``; its cache key is ``plan.key(kind)``, derived from the plan alone, so a
program is reused exactly while nothing it captured has changed.

``Program`` runs one kind of program for a solve: it takes the runner kept for its key
(or builds it) at its first call, which brings the example arguments a capture or a
compilation needs, and books the seconds spent compiling on the solve's statistics.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

from ...fields import fingerprint_changes
from ...grid import direction as time_direction
from ...stats import Recorder
from ..base import IntegrateRequest, State
from .programs.runners import RunnerCache


class Mode(enum.Enum):
    """How the programs of a solve run."""

    EAGER = "eager"  #: the Python functions (autograd through the solver; no programs)
    COMPILE = "compile"  #: compiled by TorchInductor (CPU)
    GRAPH = "graph"  #: captured and replayed as CUDA graphs
    EMULATE = "emulate"  #: CUDA graphs' static-buffer semantics without a graph (tests)


class Path(enum.Enum):
    """Which loop drives the steps."""

    FIXED = "fixed steps"  #: a fixed dt: the host walks the grid
    HOST = "host loop"  #: one program per attempt; the host reads the ratio and decides
    WHOLE = "whole solve"  #: the loop inside the program (compiled loop, graph chunks)


class Kind(enum.Enum):
    """The programs a solve may run."""

    FIXED_STEP = "fixed step"  #: ``step.make_fixed_step``
    STEP = "adaptive step"  #: ``step.make_adaptive_step``
    FIRST_STEP_RULE = "first-step rule"  #: ``stepsize.make_initial_step``
    FIRST_STEP_GIVEN = "given first step"  #: ``stepsize.make_given_first_step``
    START = "first call of a whole solve"  #: ``solve_loop.StartedSolve`` with the rule
    START_GIVEN = "first call of a whole solve, first step given"  #: ... with a given step
    RESUME = "later call of a whole solve"  #: ``solve_loop.AdaptiveSolve``


@dataclass(frozen=True)
class RunPlan:
    """See the module docstring. ``field_key`` None: nothing is cached."""

    mode: Mode
    path: Path
    field_key: Hashable | None
    method: str
    rtol: float
    atol: float
    channels: tuple[int, ...]
    shapes: tuple  #: the state's shapes; a compiled batch size as "batch"
    dtype: torch.dtype
    device: torch.device
    batch: int | None  #: the batch size a compiled program serves every size ≥ 2 from
    direction: float
    dense: bool  #: the host loop interpolates (output times inside the interval)
    given: bool  #: the first step is given (``IntegrateRequest.first_step``)
    controller: str
    chunk: int  #: attempts per CUDA graph (0: one step per graph)
    rule_eager: bool  #: the first-step rule runs eagerly (``compile="steps"``)
    #: the module whose parameters and buffers a compiled program takes as inputs (its
    #: fingerprint is in ``field_key``)
    model: torch.nn.Module | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, vector_field, z0: State, times, request: IntegrateRequest, dense_method: bool):
        """The plan of ``integrate(field, z0, times, request)``; ``dense_method``: the
        method has a dense output."""
        options = request.options
        y = z0[0]
        model = getattr(vector_field, "dynamics", None)
        graphs = options["cuda_graphs"]
        if torch.is_grad_enabled():
            mode = Mode.EAGER  # autograd may record the solver's operations (backprop)
        elif graphs == "emulate":
            mode = Mode.EMULATE
        elif y.is_cuda and graphs is True:
            mode = Mode.GRAPH
        elif options["compile"] and isinstance(model, torch.nn.Module):
            mode = Mode.COMPILE  # a compiled program takes the model's parameters as inputs
        else:
            mode = Mode.EAGER
        two_times = len(times) == 2
        static = mode in (Mode.GRAPH, Mode.EMULATE)
        chunk = options["graph_chunk"] if static and two_times else 0
        if request.dt is not None:
            path = Path.FIXED
        elif chunk or (
            mode is Mode.COMPILE
            and options["compile"] is True
            and options["loop"] == "compiled"
            and two_times
        ):
            path = Path.WHOLE
        else:
            path = Path.HOST
        shapes = tuple(tuple(z.shape) for z in z0)
        # a compiled program serves every batch size >= 2 (the leading size of the state):
        # one compilation for a run's full and last, smaller batches
        batch = y.shape[0] if mode is Mode.COMPILE and y.dim() and y.shape[0] >= 2 else None
        if batch is not None:
            shapes = tuple(("batch", *s[1:]) if s and s[0] == batch else s for s in shapes)
        channels = request.error_channels
        return cls(
            mode=mode,
            path=path,
            field_key=None if mode is Mode.EAGER else vector_field.key,
            method=request.method,
            rtol=request.rtol,
            atol=request.atol,
            channels=tuple(range(len(z0))) if channels is None else tuple(channels),
            shapes=shapes,
            dtype=y.dtype,
            device=y.device,
            batch=batch,
            direction=time_direction(times),
            dense=dense_method and len(times) > 2 and len(z0) == 1,
            given=request.first_step is not None,
            controller=options["controller"],
            chunk=chunk,
            rule_eager=mode is Mode.COMPILE and options["compile"] == "steps",
            model=model,
        )

    @property
    def static(self) -> bool:
        """Whether a program's outputs are overwritten by its next call (a CUDA graph, its
        emulation): a loop keeps what it needs by copying it."""
        return self.mode in (Mode.GRAPH, Mode.EMULATE)

    @property
    def first_kind(self) -> Kind:
        """The program of the first step on the host's path."""
        return Kind.FIRST_STEP_GIVEN if self.given else Kind.FIRST_STEP_RULE

    def key(self, kind: Kind) -> Hashable | None:
        """The cache key of the program ``kind`` of this plan: what it was built from and
        nothing else (None: not cached)."""
        if self.field_key is None:
            return None
        common = (
            kind,
            self.mode,
            self.field_key,
            self.method,
            self.rtol,
            self.atol,
            self.channels,
            self.shapes,
            self.dtype,
            self.device,
        )
        if kind is Kind.STEP:
            return (*common, self.dense)
        if kind is Kind.FIRST_STEP_RULE:
            return (*common, self.direction)
        if kind in (Kind.START, Kind.START_GIVEN, Kind.RESUME):
            return (*common, self.controller, self.direction, self.chunk)
        return common

    def program(
        self,
        kind: Kind,
        fn: Callable,
        runners: RunnerCache,
        recorder: Recorder,
        eager: bool = False,
        fallback: Callable | None = None,
    ) -> Program:
        """``fn`` as the program ``kind`` of this plan (``eager``: run eagerly, not kept;
        ``fallback``: what to capture where ``fn``'s capture fails)."""
        mode = Mode.EAGER if eager else self.mode
        return Program(self, kind, fn, runners, recorder, mode, fallback)


#: rebuilds in a row for a changed model after which ``Program`` warns
REBUILDS_WARNED = 3


class Program:
    """One program of a solve: ``fn`` run by the runner its plan keeps for its kind, found
    (or captured, compiled) at the first call, which brings the example arguments."""

    __slots__ = ("plan", "kind", "fn", "runners", "recorder", "mode", "fallback", "runner")

    def __init__(self, plan, kind, fn, runners, recorder, mode, fallback=None):
        self.plan, self.kind, self.fn, self.runners = plan, kind, fn, runners
        self.recorder, self.mode, self.fallback = recorder, mode, fallback
        self.runner = None

    def __call__(self, *args):
        runner = self.runner
        if runner is not None:
            return runner(*args)
        plan = self.plan
        key = None if self.mode is Mode.EAGER else plan.key(self.kind)
        if key is not None and self.runners.find(key) is None:
            self._note_build(key)
        runner = self.runner = self.runners.get(
            key,
            self.fn,
            args,
            plan.dtype,
            plan.device,
            self.mode.value,
            plan.model,
            plan.batch,
            self.fallback,
        )
        # a program compiles at its first call in a solve (a solve's shapes are fixed)
        before = getattr(runner, "compile_seconds", 0.0)
        out = runner(*args)
        spent = getattr(runner, "compile_seconds", 0.0) - before
        if spent:
            self.recorder.stats.compile_seconds += spent
        return out

    def _note_build(self, key) -> None:
        """Warn once a model's programs keep being rebuilt because its fingerprint changes
        from solve to solve (state it updates at every call), naming what changes."""
        plan = self.plan
        field_key = plan.field_key
        # the program's key but for the model's fingerprint: the field's kind stays
        slot = tuple(x for x in key if x is not field_key) + (field_key[:1],)
        last, count = self.runners.rebuilt(plan.model, slot, field_key)
        if count == REBUILDS_WARNED:
            old, new = last[-1], plan.field_key[-1]  # a field's key ends with its fingerprint
            both = isinstance(old, tuple) and isinstance(new, tuple)
            changed = fingerprint_changes(old, new) if both else ["its key"]
            warnings.warn(
                f"the rk engine rebuilt the programs of {type(plan.model).__name__} "
                f"{count} times in a row because the model changed between solves "
                f"({', '.join(changed[:5])}): compiled programs and CUDA graphs capture "
                f"every attribute of the model, so state it updates at every call (a "
                f"counter, a log) rebuilds them each solve. Keep such state outside the "
                f"model, or solve with options={{'compile': False, 'cuda_graphs': False}}.",
                RuntimeWarning,
                stacklevel=4,
            )

    @property
    def masked(self) -> bool:
        """Whether the function the runner runs computes every attempt of a chunk (those
        after the end are discarded): ``solve_loop.LoopProgram.masked``."""
        return bool(getattr(getattr(self.runner, "fn", None), "masked", False))
