"""Solver comparison: the same dynamics, y0 and output times under several named solvers
and tolerances, measured against a tight reference.

For each (solver, tolerance) — or (solver, dt) for fixed-step solvers — one forward solve
(optionally also a backward pass of ``L = sum(ys[-1])``) reports the forward NFE (backward
NFE), accepted and rejected steps, wall seconds and the error

    error = max over output times and components of |y_solver(t_i) - y_ref(t_i)|,

with ``y_ref`` from ``reference`` (default ``scipy:DOP853``, DP8, at ``reference_tol = 1e-12``)
in float64 on a float64 copy of the dynamics. SciPy's DP8 rather than torchdiffeq's: SciPy
ends its last step exactly on T and interpolates intermediate outputs with DOP853's 7th-order
dense output, while torchdiffeq steps past each output time and interpolates back with a
4th-order polynomial, which limits ``torch:dopri8`` to about 1e-10 at rtol 1e-12 (and to
1e-7 at rtol 1e-10) on ``y' = -y + sin t`` where SciPy's DOP853 reaches 5e-13.
A solve that fails gives a row with its message and NaNs.
``format_table`` prints the rows; ``plotting.plot_work_precision`` draws error against NFE
(log-log, one line per solver, points labelled by tolerance) as a PNG.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..solve import EngineNotInstalledError, SolverError, resolve, solve
from ..tables import text_table


@dataclass
class ComparisonRow:
    """One solve of the comparison (plain numbers)."""

    solver: str  #: as asked ("DP5", "scipy:Radau", …)
    canonical: str  #: registry name (DP5, RadauIIA5, …)
    engine: str
    tol: float | None  #: rtol = atol (None for fixed-step solvers)
    dt: float | None
    nfe: int = 0  #: forward function evaluations
    nfe_backward: int = 0
    steps: int = 0
    rejected: int = 0
    error: float = float("nan")
    seconds: float = float("nan")  #: forward wall time (best of ``repeats``)
    seconds_backward: float = float("nan")
    njev: int = 0
    nlu: int = 0
    status: str = "ok"
    extra: dict = field(default_factory=dict)


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    reference: str
    reference_tol: float
    reference_nfe: int
    ts: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def _float64_copy(dynamics: nn.Module) -> nn.Module:
    return copy.deepcopy(dynamics).to(torch.float64)


def reference_solution(
    dynamics: nn.Module,
    y0: torch.Tensor,
    ts,
    solver: str = "scipy:DOP853",
    tol: float = 1e-12,
    max_steps: int | None = 1_000_000,
):
    """The reference trajectory in float64 (a float64 copy of ``dynamics``)."""
    dyn64 = _float64_copy(dynamics)
    with torch.no_grad():
        return solve(
            dyn64,
            y0.detach().to(torch.float64),
            torch.as_tensor(ts, dtype=torch.float64),
            solver=solver,
            rtol=tol,
            atol=tol,
            max_steps=max_steps,
        )


def compare_solvers(
    dynamics: nn.Module,
    y0: torch.Tensor,
    ts,
    solvers: Sequence[str],
    tols: Sequence[float],
    *,
    dt: float | Sequence[float] | None = None,
    reference: str = "scipy:DOP853",
    reference_tol: float = 1e-12,
    backward: bool = False,
    repeats: int = 1,
    max_steps: int | None = 100_000,
) -> Comparison:
    """Run every solver at every tolerance (fixed-step solvers at every ``dt``) and measure
    NFE, steps, rejections, error against the reference and time. ``y0`` and the dynamics
    are used in their own dtype; the reference always runs in float64."""
    ts = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    ref = reference_solution(dynamics, y0, ts.to(torch.float64), reference, reference_tol)
    ref_ys = ref.ys.to("cpu")
    dts = [] if dt is None else ([dt] if isinstance(dt, (int, float)) else list(dt))
    rows = []
    for name in solvers:
        try:
            _, info, _ = resolve(name)
        except (ValueError, EngineNotInstalledError) as exc:
            rows.append(ComparisonRow(name, name, "", None, None, status=f"error: {exc}"))
            continue
        if info.adaptive:
            settings = [(tol, None) for tol in tols]
        elif dts:
            settings = [(None, d) for d in dts]
        else:
            rows.append(
                ComparisonRow(
                    name,
                    info.name,
                    "",
                    None,
                    None,
                    status=f"skipped: {info.name} is fixed-step; give dt (--dt)",
                )
            )
            continue
        for tol, d in settings:
            rows.append(
                _run_one(
                    dynamics, y0, ts, name, info.name, tol, d, ref_ys, backward, repeats, max_steps
                )
            )
    return Comparison(
        rows=rows,
        reference=reference,
        reference_tol=reference_tol,
        reference_nfe=ref.stats.nfe_forward,
        ts=[float(t) for t in ts],
    )


def _run_one(dynamics, y0, ts, name, canonical, tol, dt, ref_ys, backward, repeats, max_steps):
    row = ComparisonRow(name, canonical, "", tol, dt)
    kw = dict(solver=name, rtol=tol or 1e-7, atol=tol or 1e-7, dt=dt, max_steps=max_steps)
    best = math.inf
    try:
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            with torch.no_grad():
                sol = solve(dynamics, y0.detach(), ts, **kw)
            best = min(best, time.perf_counter() - start)
        st = sol.stats
        row.engine = st.engine
        row.nfe, row.steps, row.rejected = st.nfe_forward, st.steps_accepted, st.steps_rejected
        row.njev, row.nlu = int(st.extra.get("njev", 0)), int(st.extra.get("nlu", 0))
        row.extra = {k: v for k, v in st.extra.items() if isinstance(v, (int, float, str))}
        row.seconds = best
        err = (sol.ys.detach().to("cpu", torch.float64) - ref_ys).abs().max()
        row.error = float(err)
        if backward:
            y0g = y0.detach().clone().requires_grad_(True)
            sol_b = solve(dynamics, y0g, ts, **kw)
            sol_b.ys[-1].sum().backward()
            row.seconds_backward = sol_b.stats.wall_time_backward
            row.nfe_backward = sol_b.stats.nfe_backward
            for p in dynamics.parameters():
                p.grad = None
    except (SolverError, EngineNotInstalledError, ValueError) as exc:
        row.status = "failed: " + str(exc).splitlines()[0]
    return row


def format_table(comparison: Comparison | Sequence[ComparisonRow]) -> str:
    """The rows as an aligned text table."""
    rows = comparison.rows if isinstance(comparison, Comparison) else list(comparison)
    head = [
        "solver",
        "engine",
        "tol",
        "dt",
        "NFE",
        "NFE bwd",
        "steps",
        "rejected",
        "njev",
        "nlu",
        "error",
        "seconds",
        "status",
    ]
    body = []
    for r in rows:
        body.append(
            [
                r.solver,
                r.engine,
                "-" if r.tol is None else f"{r.tol:.0e}",
                "-" if r.dt is None else f"{r.dt:.3g}",
                str(r.nfe),
                str(r.nfe_backward),
                str(r.steps),
                str(r.rejected),
                str(r.njev),
                str(r.nlu),
                f"{r.error:.2e}",
                f"{r.seconds:.3f}",
                r.status if len(r.status) < 60 else r.status[:57] + "...",
            ]
        )
    lines = [text_table(head, body)]
    if isinstance(comparison, Comparison):
        lines.append(
            f"reference: {comparison.reference} at tol {comparison.reference_tol:.0e} in "
            f"float64 ({comparison.reference_nfe} NFE); error = max |y - y_ref| over output times"
        )
    return "\n".join(lines)


__all__ = [
    "Comparison",
    "ComparisonRow",
    "compare_solvers",
    "format_table",
    "reference_solution",
]
