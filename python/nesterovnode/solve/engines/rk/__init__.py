"""The ``rk`` engine: explicit Runge–Kutta methods as pure tensor steps.

``tableaux`` (methods), ``step`` (one step; the error norm, first-step rule and
controllers are the shared ``solve/stepsize.py``), ``loop``
(the host loops), ``plan`` (a solve's run plan: mode, path, the programs' cache keys),
``engine`` (the engine). ``programs/`` holds what only runs the same loop faster: the
loop as one tensor program (``solve_loop``), in chunks for CUDA graphs (``chunks``), the
runners (``runners``: eager, CUDA graphs, their emulation), TorchInductor compilation
(``compiled``) and argument trees (``nested``)."""

from .engine import RKEngine

__all__ = ["RKEngine"]
