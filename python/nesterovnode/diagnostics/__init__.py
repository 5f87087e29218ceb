"""Diagnostics: stiffness along trajectories (Jacobian spectra, stiffness ratios, step
sizes against stability bounds) and solver comparison (work-precision); ``models`` runs
them on a model's ODE block (the models come from ``runs.models``). Their pictures are in
``nesterovnode.plotting``."""

from .compare import (
    Comparison,
    ComparisonRow,
    compare_solvers,
    format_table,
    reference_solution,
)
from .models import (
    DEFAULT_SOLVERS,
    compare_model,
    format_stiffness_table,
    initial_state,
    stiffness_of_models,
)
from .stiffness import (
    Spectrum,
    SpectrumPoint,
    StiffnessReport,
    jacobian,
    spectral_radius_power,
    spectrum_at,
    spectrum_of,
    stiffness_along_trajectory,
)

__all__ = [
    "DEFAULT_SOLVERS",
    "compare_model",
    "format_stiffness_table",
    "initial_state",
    "stiffness_of_models",
    "Comparison",
    "ComparisonRow",
    "Spectrum",
    "SpectrumPoint",
    "StiffnessReport",
    "compare_solvers",
    "format_table",
    "jacobian",
    "reference_solution",
    "spectral_radius_power",
    "spectrum_at",
    "spectrum_of",
    "stiffness_along_trajectory",
]
