"""Stiffness diagnostics: exact spectra of linear systems, ratios, step sizes vs stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import Linear
from nesterovnode.diagnostics import (
    jacobian,
    spectral_radius_power,
    spectrum_at,
    spectrum_of,
    stiffness_along_trajectory,
)
from nesterovnode.plotting import plot_spectra, plot_step_sizes
from nesterovnode.solve import SOLVERS

EIGS = np.array([-1.0, -10.0, -1000.0])


def rotated(eigs, seed=0):
    """Q diag(eigs) Qᵀ with a random orthogonal Q: symmetric, known spectrum."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))
    return q @ np.diag(eigs) @ q.T


def test_diagnostics_return_the_exact_spectrum_of_a_rotated_diagonal_system():
    dyn = Linear(rotated(EIGS))
    y0 = torch.ones(2, 3, dtype=torch.float64)
    rep = stiffness_along_trajectory(
        dyn, y0, [0.0, 0.5, 1.0], solver="scipy:Radau", rtol=1e-6, atol=1e-6
    )
    for p in rep.points:
        (s,) = p.samples  # the whole batch: two copies of the spectrum
        assert p.method == "dense"
        np.testing.assert_allclose(sorted(s.eig_real), sorted(np.repeat(EIGS, 2)), rtol=1e-10)
        np.testing.assert_allclose(s.eig_imag, 0.0, atol=1e-9)
        assert p.stiffness_ratio == pytest.approx(1000.0, rel=1e-10)
        assert p.spectral_radius == pytest.approx(1000.0, rel=1e-10)
        assert (s.n_decaying, s.n_neutral, s.n_growing) == (6, 0, 0)
    assert rep.max_stiffness_ratio == pytest.approx(1000.0, rel=1e-10)
    assert rep.stability_bound is None and rep.max_h_rho_over_bound is None  # Radau: A-stable


def test_per_sample_spectra_are_the_diagonal_blocks():
    dyn = Linear(rotated(EIGS, seed=1))
    y0 = torch.randn(4, 3, dtype=torch.float64)
    p = spectrum_at(dyn, 0.0, y0, per_sample=True)
    assert len(p.samples) == 4
    for s in p.samples:
        np.testing.assert_allclose(sorted(s.eig_real), sorted(EIGS), rtol=1e-10)
    assert p.stiffness_ratio == pytest.approx(1000.0) and p.median_stiffness_ratio == pytest.approx(
        1000.0
    )
    blocks = jacobian(dyn, 0.0, y0, per_sample=True)
    np.testing.assert_allclose(blocks[2].numpy(), rotated(EIGS, seed=1), atol=1e-12)


def test_near_zero_eigenvalues_are_left_out_of_the_stiffness_ratio():
    s = spectrum_of(rotated([0.0, -1.0, -100.0, 2.0]))
    assert s.stiffness_ratio == pytest.approx(100.0)
    assert (s.n_decaying, s.n_neutral, s.n_growing) == (2, 1, 1)
    assert s.max_re == pytest.approx(2.0)
    assert math.isnan(spectrum_of(np.zeros((2, 2))).stiffness_ratio)


def test_power_iteration_finds_the_spectral_radius_without_forming_the_jacobian():
    y0 = torch.ones(2, 3, dtype=torch.float64)
    assert spectral_radius_power(Linear(rotated(EIGS)), 0.0, y0) == pytest.approx(1000.0, rel=1e-8)
    # dominant complex pair -1 ± 5i, |λ| = √26: the plain ratio ||Jv|| oscillates here
    pair = np.array([[-1.0, 5.0, 0.0], [-5.0, -1.0, 0.0], [0.0, 0.0, -0.5]])
    rho = spectral_radius_power(Linear(pair), 0.0, y0, iters=400)
    assert rho == pytest.approx(math.sqrt(26.0), rel=1e-2)
    p = spectrum_at(Linear(rotated(EIGS)), 0.0, y0, max_dense=1)
    assert p.method == "power" and p.spectral_radius == pytest.approx(1000.0, rel=1e-8)


def test_an_explicit_solvers_steps_sit_at_its_stability_bound_on_a_stiff_linear_system():
    dyn = Linear(rotated(EIGS))
    y0 = torch.ones(1, 3, dtype=torch.float64)
    rep = stiffness_along_trajectory(dyn, y0, [0.0, 0.5, 1.0], solver="DP5", rtol=1e-6, atol=1e-6)
    assert rep.stability_bound == SOLVERS["DP5"].stability_bound
    # after the fast transient has decayed, h·ρ hovers at DP5's bound |hλ| ≈ 3.3
    for p in rep.points[1:]:
        assert 0.7 < p.h_rho_over_bound < 1.3
        assert p.h_rho == pytest.approx(p.step_size * 1000.0)
    assert rep.steps_rejected > 0 and len(rep.rejected_times) == rep.steps_rejected
    assert len(rep.step_times) == len(rep.step_sizes) == rep.steps_accepted
    assert rep.step_times[0] == 0.0  # torchdiffeq's last step may pass T (it interpolates)
    assert rep.step_times[-1] < 1.0 <= rep.step_times[-1] + rep.step_sizes[-1] + 1e-12


def test_plots_are_written_as_png(tmp_path):
    dyn = Linear(rotated(EIGS))
    y0 = torch.ones(1, 3, dtype=torch.float64)
    a = stiffness_along_trajectory(dyn, y0, [0.0, 0.5], solver="DP5", rtol=1e-4, atol=1e-4)
    b = stiffness_along_trajectory(Linear(rotated([-1.0, -2.0, -3.0])), y0, [0.0, 0.5])
    for path in (
        plot_step_sizes(a, tmp_path / "h.png"),
        plot_spectra({"stiff": a, "mild": b}, tmp_path / "s.png"),
    ):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert a.as_dict()["summary"]["max_stiffness_ratio"] == pytest.approx(1000.0)
