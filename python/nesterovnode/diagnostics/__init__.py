"""Diagnostics: stiffness along trajectories (Jacobian spectra, stiffness ratios, step
sizes against stability bounds) and solver comparison (work-precision)."""

from .compare import (
    Comparison,
    ComparisonRow,
    compare_solvers,
    format_table,
    plot_work_precision,
    reference_solution,
)
from .stiffness import (
    Spectrum,
    SpectrumPoint,
    StiffnessReport,
    jacobian,
    plot_spectra,
    plot_step_sizes,
    spectral_radius_power,
    spectrum_at,
    spectrum_of,
    stiffness_along_trajectory,
)

__all__ = [
    "Comparison",
    "ComparisonRow",
    "Spectrum",
    "SpectrumPoint",
    "StiffnessReport",
    "compare_solvers",
    "format_table",
    "jacobian",
    "plot_spectra",
    "plot_step_sizes",
    "plot_work_precision",
    "reference_solution",
    "spectral_radius_power",
    "spectrum_at",
    "spectrum_of",
    "stiffness_along_trajectory",
]
