"""The adaptive loop in fixed-length chunks, for CUDA graphs: the step-size control and
the stopping test on the device, one host read per chunk instead of one per attempt.

A CUDA graph replays a fixed sequence of kernels; it cannot loop until a tensor says
stop. So the loop of ``solve_loop.AdaptiveSolve`` is captured as a chunk of K of
its attempts, each guarded by the loop's own condition

    running = (status == RUNNING) & (count < limit),

and the host replays the chunk and reads (status, count, history) once per K attempts
(``solve_loop.integrate_in_loop``, which calls it again where it stopped), where the host
loop (``loop.integrate_adaptive``) reads the error ratio after every attempt and decides
on the host. The attempts, NFE and states are the host loop's (to round-off: the
controller's power is torch's, not C's). Two guards, with ``while_loop``'s signature
``loop(cond, body, carried, additional)``:

- ``ConditionalChunk``: each attempt runs inside a conditional (if) node of the graph on
  ``running``; an attempt after the end costs the node, not the step's kernels. Needs a
  torch whose CUDA graphs capture conditional nodes (``CUDAGraph.
  begin_capture_to_if_node``; CUDA ≥ 12.4). Outside a capture (the warm-up calls, an
  eager fallback, tests on the CPU) the guard is a host test.
- ``MaskedChunk``: every attempt runs, and where the loop is not running its results are
  discarded (``torch.where``): any device, any capture, no host test; an attempt after
  the end costs a whole step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class MaskedChunk:
    """``loop(cond, body, carried, additional)``: ``attempts`` calls of ``body``, each
    result kept only where ``cond`` held before it (see the module docstring). The
    attempts after the end evaluate the field and are discarded: the engine counts their
    evaluations apart (``SolveStats.extra["masked_evaluations"]``), not in the NFE."""

    def __init__(self, attempts: int):
        self.attempts = attempts

    def __call__(self, cond: Callable, body: Callable, carried: tuple, additional: tuple):
        for _ in range(self.attempts):
            running = cond(*carried, *additional)
            new = body(*carried, *additional)
            carried = tuple(torch.where(running, n, c) for n, c in zip(new, carried))
        return carried


class ConditionalChunk:
    """``loop(cond, body, carried, additional)``: ``attempts`` calls of ``body``, each run
    only where ``cond`` holds before it (``graph_if``: a conditional node while a CUDA
    graph is captured). The carried tensors are copies that each attempt updates in
    place: a conditional body leaves nothing behind but what it writes."""

    def __init__(self, attempts: int):
        self.attempts = attempts

    def __call__(self, cond: Callable, body: Callable, carried: tuple, additional: tuple):
        carried = tuple(c.clone() for c in carried)

        def attempt():
            # the body returns new tensors (never its inputs): copying in any order is safe
            for c, n in zip(carried, body(*carried, *additional)):
                c.copy_(n)

        for _ in range(self.attempts):
            graph_if(cond(*carried, *additional), attempt)
        return carried


def graph_if(pred: torch.Tensor, fn: Callable) -> None:
    """``fn()`` where the 0-dim bool tensor ``pred`` holds: captured into a conditional
    node while a CUDA graph is captured, a host test of ``pred`` otherwise."""
    if pred.is_cuda and torch.cuda.is_current_stream_capturing():
        graph = torch._C._CUDAGraph.get_currently_capturing_graph()
        graph.begin_capture_to_if_node(pred)
        try:
            fn()
        finally:
            graph.end_capture_to_conditional_node()
    elif bool(pred):
        fn()


def conditional_nodes_available() -> bool:
    """Whether this torch can capture conditional nodes into a CUDA graph: its CUDAGraph
    has ``begin_capture_to_if_node`` and it was built with CUDA ≥ 12.4 (the driver is
    checked at capture: a failed capture falls back as any other, ``runners.py``)."""
    graph = getattr(torch._C, "_CUDAGraph", None)
    if graph is None or not hasattr(graph, "begin_capture_to_if_node"):
        return False
    version = torch.version.cuda
    if not version:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (12, 4)
