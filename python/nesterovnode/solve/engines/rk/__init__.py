"""The ``rk`` engine: explicit Runge–Kutta methods as pure tensor steps (CUDA-graphed on
GPUs, compiled on CPUs). ``tableaux`` (methods), ``step`` (one step), ``controller``
(step-size control), ``loop`` (the host loops), ``solve_loop`` (the loop as a tensor
program), ``chunks`` (that loop in fixed-length chunks for CUDA graphs), ``graphs``
(runners), ``compiled`` (Inductor), ``nested`` (argument trees), ``engine`` (the
engine)."""

from .engine import RKEngine

__all__ = ["RKEngine"]
