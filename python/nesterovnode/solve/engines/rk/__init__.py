"""The ``rk`` engine: explicit Runge–Kutta methods as pure tensor steps (CUDA-graphed on
GPUs). ``tableaux`` (methods), ``step`` (one step), ``controller`` (step-size control),
``loop`` (the host loops), ``graphs`` (runners), ``engine`` (the engine)."""

from .engine import RKEngine

__all__ = ["RKEngine"]
