"""Stiffness along a solved trajectory: Jacobian spectra, stiffness ratios, step sizes.

For ``y' = f(t, y)`` the local behaviour near a trajectory is that of the linearisation
``δ' = J(t) δ`` with ``J = ∂f/∂y``. At chosen times this module computes

- the eigenvalues ``λ`` of ``J``: dense (``numpy.linalg.eigvals`` of the autograd Jacobian)
  for small states, either of the whole batch flattened into one system (the Jacobian is
  block-diagonal when samples do not interact, so its spectrum is the union of the
  samples') or of each sample separately; for large states only the spectral radius
  ``ρ = max |λ|``, by power iteration on Jacobian-vector products (``torch.func.jvp``),
  never forming ``J``;
- the stiffness ratio ``max |Re λ| / min |Re λ|`` over the decaying modes. Choice: only
  eigenvalues with ``Re λ < -zero_tol · ρ`` count (``zero_tol = 1e-8`` by default).
  Neutral modes (``Re λ ≈ 0``: ANODE's zero channels, conserved quantities, undamped
  oscillations) would make the ratio infinite without saying anything about the time scales
  a solver must resolve, and growing modes (``Re λ > 0``) are accuracy-limited, not
  stability-limited. With no decaying mode the ratio is NaN; with one it is 1;
- ``h ρ`` against the solver's stability bound (``registry.SolverInfo.stability_bound``,
  the extent of an explicit method's stability region on the negative real axis), with ``h``
  the accepted step in force at that time. ``h ρ / bound`` near or above 1 means the step
  size is limited by stability — the signature of stiffness for explicit methods — while
  values well below 1 mean accuracy limits the step;

plus the step-size and rejection histories of the solve (``SolveStats.step_times``,
``step_sizes``, ``rejected_steps``). Results are dataclasses of plain numbers;
``plotting.plot_spectra`` and ``plotting.plot_step_sizes`` draw them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..solve.fields import dense_jacobian

#: Largest system whose Jacobian is formed densely (beyond it: power iteration).
MAX_DENSE = 2000


@dataclass
class Spectrum:
    """Eigenvalue summary of one Jacobian (one sample, or the whole batch)."""

    spectral_radius: float  #: max |λ|
    max_abs_re: float  #: max |Re λ| over decaying modes (NaN if none)
    min_abs_re: float  #: min |Re λ| over decaying modes (NaN if none)
    stiffness_ratio: float  #: max_abs_re / min_abs_re (NaN if no decaying mode)
    max_re: float  #: the largest real part (> 0: a growing mode); NaN for power iteration
    n_decaying: int  #: eigenvalues with Re λ < -zero_tol ρ
    n_neutral: int  #: eigenvalues with |Re λ| <= zero_tol ρ
    n_growing: int  #: eigenvalues with Re λ > zero_tol ρ
    eig_real: list[float] = field(default_factory=list)  #: empty for power iteration
    eig_imag: list[float] = field(default_factory=list)


@dataclass
class SpectrumPoint:
    """The spectrum at one time of the trajectory and the step size in force there."""

    t: float
    method: str  #: "dense" or "power"
    per_sample: bool
    spectral_radius: float  #: max over samples (or of the batch)
    stiffness_ratio: float  #: max over samples (or of the batch)
    mean_stiffness_ratio: float  #: mean over samples with a finite ratio
    median_stiffness_ratio: float  #: median over samples with a finite ratio
    max_re: float
    samples: list[Spectrum] = field(default_factory=list)  #: one (batch) or one per sample
    step_size: float | None = None  #: accepted step containing t
    h_rho: float | None = None  #: step_size * spectral_radius
    stability_bound: float | None = None
    h_rho_over_bound: float | None = None


@dataclass
class StiffnessReport:
    """Spectra along a trajectory plus the solve's step history."""

    solver: str
    engine: str
    stability_bound: float | None
    points: list[SpectrumPoint]
    step_times: list[float]
    step_sizes: list[float]
    rejected_times: list[float]
    rejected_sizes: list[float]
    nfe: int
    steps_accepted: int
    steps_rejected: int

    @property
    def times(self) -> list[float]:
        return [p.t for p in self.points]

    @property
    def max_stiffness_ratio(self) -> float:
        vals = [p.stiffness_ratio for p in self.points if math.isfinite(p.stiffness_ratio)]
        return max(vals) if vals else float("nan")

    @property
    def mean_stiffness_ratio(self) -> float:
        vals = [
            p.mean_stiffness_ratio for p in self.points if math.isfinite(p.mean_stiffness_ratio)
        ]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def median_stiffness_ratio(self) -> float:
        """Median over times of the per-time median over samples."""
        vals = [
            p.median_stiffness_ratio for p in self.points if math.isfinite(p.median_stiffness_ratio)
        ]
        return float(np.median(vals)) if vals else float("nan")

    @property
    def max_spectral_radius(self) -> float:
        return max((p.spectral_radius for p in self.points), default=float("nan"))

    @property
    def max_h_rho_over_bound(self) -> float | None:
        vals = [p.h_rho_over_bound for p in self.points if p.h_rho_over_bound is not None]
        return max(vals) if vals else None

    def summary(self) -> dict:
        """Plain numbers for a table."""
        return {
            "solver": self.solver,
            "nfe": self.nfe,
            "steps": self.steps_accepted,
            "rejected": self.steps_rejected,
            "max_spectral_radius": self.max_spectral_radius,
            "max_stiffness_ratio": self.max_stiffness_ratio,
            "mean_stiffness_ratio": self.mean_stiffness_ratio,
            "median_stiffness_ratio": self.median_stiffness_ratio,
            "max_re": max((p.max_re for p in self.points), default=float("nan")),
            "max_h_rho_over_bound": self.max_h_rho_over_bound,
        }

    def as_dict(self) -> dict:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


# -- Jacobians -------------------------------------------------------------------------------
def _as_time(t, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def jacobian(dynamics: nn.Module, t, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """``∂f/∂y`` at ``(t, y)`` (the solve layer's ``dense_jacobian``, autograd).

    ``per_sample=False``: the whole batch as one system, ``[n, n]`` with ``n = y.numel()``.
    ``per_sample=True``: the diagonal blocks, ``[B, m, m]`` with ``m = y[0].numel()`` (each
    sample's field evaluated alone, with batch size 1).
    """
    tt = _as_time(t, y)
    y = y.detach()
    if not per_sample:
        return dense_jacobian(lambda v: dynamics(tt, v), y).detach()
    return torch.stack(
        [dense_jacobian(lambda v: dynamics(tt, v), sample[None]) for sample in y]
    ).detach()


def spectral_radius_power(
    dynamics: nn.Module, t, y: torch.Tensor, iters: int = 200, seed: int = 0
) -> float:
    """ρ(∂f/∂y) by power iteration on Jacobian-vector products (``torch.func.jvp``).

    ``v_{k+1} = J v_k / ||J v_k||``; since ``∏ ||J v_k|| = ||J^K v_0||`` and
    ``||J^K v_0||^(1/K) → ρ``, the estimate is the geometric mean of ``||J v_k||`` over the
    second half of the iterations, which converges also when the dominant eigenvalues are
    a complex-conjugate pair (where ``||J v_k||`` itself oscillates).
    """
    tt = _as_time(t, y)
    y = y.detach()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y)
    v = v / v.norm()
    logs = []
    for _ in range(iters):
        _, jv = torch.func.jvp(lambda s: dynamics(tt, s), (y,), (v,))
        nrm = float(jv.norm())
        if nrm == 0.0 or not math.isfinite(nrm):
            return 0.0 if nrm == 0.0 else float("nan")
        logs.append(math.log(nrm))
        v = jv / nrm
    tail = logs[len(logs) // 2 :]
    return float(math.exp(sum(tail) / len(tail)))


def spectrum_of(matrix: np.ndarray, zero_tol: float = 1e-8) -> Spectrum:
    """Eigenvalues of a dense matrix and their summary (see the module docstring)."""
    eig = np.linalg.eigvals(np.asarray(matrix, dtype=np.float64))
    return _summarise(eig, zero_tol)


def _summarise(eig: np.ndarray, zero_tol: float) -> Spectrum:
    rho = float(np.max(np.abs(eig))) if eig.size else 0.0
    re = eig.real
    thresh = zero_tol * rho
    decaying = re < -thresh
    growing = re > thresh
    if decaying.any():
        mags = np.abs(re[decaying])
        hi, lo = float(mags.max()), float(mags.min())
        ratio = hi / lo
    else:
        hi = lo = ratio = float("nan")
    return Spectrum(
        spectral_radius=rho,
        max_abs_re=hi,
        min_abs_re=lo,
        stiffness_ratio=ratio,
        max_re=float(re.max()) if eig.size else float("nan"),
        n_decaying=int(decaying.sum()),
        n_neutral=int((~decaying & ~growing).sum()),
        n_growing=int(growing.sum()),
        eig_real=[float(x) for x in re],
        eig_imag=[float(x) for x in eig.imag],
    )


def spectrum_at(
    dynamics: nn.Module,
    t: float,
    y: torch.Tensor,
    *,
    per_sample: bool = False,
    max_dense: int = MAX_DENSE,
    zero_tol: float = 1e-8,
    power_iters: int = 200,
) -> SpectrumPoint:
    """The spectrum of ``∂f/∂y`` at ``(t, y)``: dense when the system (the batch, or one
    sample with ``per_sample``) has at most ``max_dense`` equations, else the spectral
    radius by power iteration (the stiffness ratio is then NaN)."""
    size = y[0].numel() if per_sample else y.numel()
    with torch.no_grad():
        if size <= max_dense:
            J = jacobian(dynamics, t, y, per_sample=per_sample)
            mats = J.to("cpu", torch.float64).numpy()
            samples = [spectrum_of(m, zero_tol) for m in (mats if per_sample else [mats])]
            method = "dense"
        else:
            ys = [y[i : i + 1] for i in range(y.shape[0])] if per_sample else [y]
            samples = []
            for yi in ys:
                rho = spectral_radius_power(dynamics, t, yi, iters=power_iters)
                nan = float("nan")
                samples.append(Spectrum(rho, nan, nan, nan, nan, 0, 0, 0))
            method = "power"
    ratios = [s.stiffness_ratio for s in samples if math.isfinite(s.stiffness_ratio)]
    return SpectrumPoint(
        t=float(t),
        method=method,
        per_sample=per_sample,
        spectral_radius=max(s.spectral_radius for s in samples),
        stiffness_ratio=max(ratios) if ratios else float("nan"),
        mean_stiffness_ratio=float(np.mean(ratios)) if ratios else float("nan"),
        median_stiffness_ratio=float(np.median(ratios)) if ratios else float("nan"),
        max_re=max((s.max_re for s in samples), default=float("nan")),
        samples=samples,
    )


def step_size_at(step_times: Sequence[float], step_sizes: Sequence[float], t: float):
    """The accepted step ``[t_k, t_k + h_k)`` containing ``t`` (the last one at the end)."""
    if not step_times:
        return None
    k = bisect.bisect_right(list(step_times), t) - 1
    k = min(max(k, 0), len(step_sizes) - 1)
    return float(abs(step_sizes[k]))


def stiffness_along_trajectory(
    dynamics: nn.Module,
    y0: torch.Tensor,
    times: Sequence[float] | torch.Tensor,
    *,
    solver: str = "DP5",
    rtol: float = 1e-7,
    atol: float = 1e-7,
    engine: str | None = None,
    dt: float | None = None,
    per_sample: bool = False,
    max_dense: int = MAX_DENSE,
    zero_tol: float = 1e-8,
    power_iters: int = 200,
) -> StiffnessReport:
    """Solve ``y' = dynamics(t, y)`` from ``y0`` over ``times`` with ``solver`` and analyse
    the Jacobian spectrum at every time of ``times`` (see ``spectrum_at``), with the step
    size in force there and the solve's step/rejection history."""
    from ..solve import SOLVERS, solve

    with torch.no_grad():
        sol = solve(
            dynamics, y0.detach(), times, solver=solver, rtol=rtol, atol=atol, engine=engine, dt=dt
        )
    st = sol.stats
    info = SOLVERS.get(st.solver)
    bound = None if info is None else info.stability_bound
    step_times, step_sizes = st.step_times, st.step_sizes
    points = []
    for i, t in enumerate(sol.ts.tolist()):
        p = spectrum_at(
            dynamics,
            t,
            sol.ys[i],
            per_sample=per_sample,
            max_dense=max_dense,
            zero_tol=zero_tol,
            power_iters=power_iters,
        )
        h = step_size_at(step_times, step_sizes, t)
        p.step_size = h
        if h is not None:
            p.h_rho = h * p.spectral_radius
            if bound:
                p.stability_bound = bound
                p.h_rho_over_bound = p.h_rho / bound
        points.append(p)
    rejected = st.rejected_steps
    return StiffnessReport(
        solver=st.solver,
        engine=st.engine,
        stability_bound=bound,
        points=points,
        step_times=step_times,
        step_sizes=step_sizes,
        rejected_times=[t for t, _ in rejected],
        rejected_sizes=[h for _, h in rejected],
        nfe=st.nfe_forward,
        steps_accepted=st.steps_accepted,
        steps_rejected=st.steps_rejected,
    )
