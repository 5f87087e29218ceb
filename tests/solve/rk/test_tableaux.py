"""The Butcher tableaux of the rk engine (``solve/engines/rk/tableaux.py``): the order conditions of
every method and of its embedded estimates (all rooted trees), their convergence orders
measured on y' = cos(t)·y, the dense-output weights, and the reference coefficients
(the classical RK4 and the 3/8 rule, SciPy's DOP853)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from nesterovnode.solve.engines.rk.tableaux import RK4, RK38, TABLEAUX, Tableau, dense_weights

#: the methods built from exact fractions, whose order conditions hold exactly
EXACT = ("euler", "midpoint", "rk4", "rk38", "bs3", "dp5")
#: orders of the embedded solutions b̂ = b − b_error (and DP8's b − b_error_low)
EMBEDDED_ORDER = {"bs3": 2, "dp5": 4, "tsit5": 4, "dp8": 5}
EMBEDDED_LOW_ORDER = {"dp8": 3}
#: orders of the continuous extensions
DENSE_ORDER = {"bs3": 3, "dp5": 4, "tsit5": 4}


# -- rooted trees and the order conditions --------------------------------------------------
def rooted_trees(max_order):
    """All rooted trees with up to ``max_order`` nodes, by order: a tree is the sorted
    tuple of the indices (into the flat list of trees) of its root's subtrees."""
    flat = [((), 1)]  # (children, order)
    by_order = {1: [0]}
    for n in range(2, max_order + 1):
        by_order[n] = []

        def forests(remaining, max_index, chosen, n=n):
            # multisets of subtrees whose orders sum to ``remaining`` (indices non-increasing)
            if remaining == 0:
                flat.append((tuple(chosen), n))
                by_order[n].append(len(flat) - 1)
                return
            for idx in range(max_index, -1, -1):
                order = flat[idx][1]
                if order <= remaining:
                    forests(remaining - order, idx, [*chosen, idx])

        # only trees of order < n may be children: their indices precede this order's
        forests(n - 1, len(flat) - 1, [])
    return flat, by_order


TREES, TREES_BY_ORDER = rooted_trees(9)


def test_the_rooted_trees_are_counted_right():
    assert [len(TREES_BY_ORDER[n]) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


def full_matrix(tab: Tableau, num=float):
    s = tab.stages
    A = [[num(0)] * s for _ in range(s)]
    for i, row in enumerate(tab.a, start=1):
        for j, x in enumerate(row):
            A[i][j] = num(x)
    return A


def elementary_weights(A, max_order, zero):
    """Φ(t) (the vector over stages) of every tree up to ``max_order``: Φ(•) = 1 and
    Φ_i([t_1 … t_m]) = Π_k (A Φ(t_k))_i; with γ(•) = 1, γ(t) = |t| Π γ(t_k)."""
    s = len(A)
    phi, gamma = {}, {}
    for n in range(1, max_order + 1):
        for idx in TREES_BY_ORDER[n]:
            children, order = TREES[idx]
            v = [zero + 1] * s
            g = order
            for ch in children:
                aphi = [sum((A[i][j] * phi[ch][j] for j in range(s)), zero) for i in range(s)]
                v = [x * y for x, y in zip(v, aphi)]
                g *= gamma[ch]
            phi[idx], gamma[idx] = v, g
    return phi, gamma


def condition_residuals(b, A, max_order, zero=0.0):
    """{order: [b·Φ(t) − 1/γ(t) for the trees of that order]}."""
    phi, gamma = elementary_weights(A, max_order, zero)
    return {
        n: [sum((x * y for x, y in zip(b, phi[idx])), zero) - 1 / (zero + gamma[idx])
            for idx in TREES_BY_ORDER[n]]
        for n in range(1, max_order + 1)
    }  # fmt: skip


def exact(x: float) -> Fraction:
    """The fraction a float of an exactly built tableau was rounded from (small
    denominators: distinct candidates lie ≥ 1e-14 apart, far more than the rounding)."""
    q = Fraction(x).limit_denominator(10**7)
    assert float(q) == x
    return q


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_each_stage_node_is_its_row_sum(name):
    tab = TABLEAUX[name]
    assert len(tab.c) == len(tab.a) == tab.stages - 1
    for i, (ci, row) in enumerate(zip(tab.c, tab.a), start=2):
        assert len(row) == i - 1
        if name in EXACT:
            assert sum(map(exact, row)) == exact(ci)
        else:
            assert sum(row) == pytest.approx(ci, abs=1e-14)


@pytest.mark.parametrize("name", EXACT)
def test_exact_tableaux_satisfy_their_order_conditions_exactly(name):
    tab = TABLEAUX[name]
    A = full_matrix(tab, exact)
    b = [exact(x) for x in tab.b]
    res = condition_residuals(b, A, tab.order + 1, Fraction(0))
    for n in range(1, tab.order + 1):
        assert all(r == 0 for r in res[n]), (name, n)
    assert any(r != 0 for r in res[tab.order + 1])  # the order is not higher
    if tab.adaptive:
        p_hat = EMBEDDED_ORDER[name]
        b_error = [exact(x) for x in tab.b_error]
        b_hat = [x - e for x, e in zip(b, b_error)]
        res = condition_residuals(b_hat, A, p_hat + 1, Fraction(0))
        for n in range(1, p_hat + 1):
            assert all(r == 0 for r in res[n]), (name, "embedded", n)
        assert any(r != 0 for r in res[p_hat + 1])


@pytest.mark.parametrize("name", ["tsit5", "dp8"])
def test_decimal_tableaux_satisfy_their_order_conditions_to_rounding(name):
    # published as decimals: the conditions hold to ~1e-16 per coefficient, not exactly
    tab = TABLEAUX[name]
    A = full_matrix(tab)
    res = condition_residuals(tab.b, A, tab.order + 1)
    for n in range(1, tab.order + 1):
        assert max(map(abs, res[n])) < 1e-12, (name, n)
    assert max(map(abs, res[tab.order + 1])) > 1e-6  # the order is not higher
    embedded = [(tab.b_error, EMBEDDED_ORDER[name])]
    if tab.b_error_low:
        embedded.append((tab.b_error_low, EMBEDDED_LOW_ORDER[name]))
    for b_error, p_hat in embedded:
        b_hat = [x - e for x, e in zip(tab.b, b_error)]
        res = condition_residuals(b_hat, A, p_hat + 1)
        for n in range(1, p_hat + 1):
            assert max(map(abs, res[n])) < 1e-12, (name, p_hat, n)
        assert max(map(abs, res[p_hat + 1])) > 1e-6


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_structure_and_evaluation_counts(name):
    tab = TABLEAUX[name]
    assert tab.name == name and len(tab.b) == tab.stages
    expected = {  # (stages, adaptive, fsal, new evaluations per step)
        "euler": (1, False, False, 1),
        "midpoint": (2, False, False, 2),
        "rk4": (4, False, False, 4),
        "rk38": (4, False, False, 4),
        "bs3": (4, True, True, 3),
        "dp5": (7, True, True, 6),
        "tsit5": (7, True, True, 6),
        "dp8": (13, True, True, 12),
    }[name]
    assert (tab.stages, tab.adaptive, tab.fsal, tab.new_evaluations_per_step) == expected
    if tab.adaptive:
        assert len(tab.b_error) == tab.stages and max(map(abs, tab.b_error)) > 1e-3
        assert tab.b[-1] == 0.0  # the FSAL stage only serves the next step / the estimate
    else:
        assert tab.b_error == () and tab.dense is None
    assert (len(tab.b_error_low) > 0) == (name == "dp8")
    assert (tab.dense is not None) == (name in DENSE_ORDER)


# -- convergence orders, measured --------------------------------------------------------
def f(t, y):
    return math.cos(t) * y


def y_exact(t):
    return math.exp(math.sin(t))


def stages(tab: Tableau, t, y, h):
    ks = [f(t, y)]
    for ci, row in zip(tab.c, tab.a):
        ks.append(f(t + ci * h, y + h * sum(a * k for a, k in zip(row, ks))))
    return ks


def integrate(tab: Tableau, weights, n_steps, t1=1.0):
    """Fixed steps over [0, t1] with the tableau's stages and the given weights (b or an
    embedded b̂); the largest error on the grid (robust against a global error that
    happens to cross zero at t1)."""
    h = t1 / n_steps
    y, worst = y_exact(0.0), 0.0
    for i in range(n_steps):
        ks = stages(tab, i * h, y, h)
        y += h * sum(w * k for w, k in zip(weights, ks))
        worst = max(worst, abs(y - y_exact((i + 1) * h)))
    return worst


def measured_order(errors, hs):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


#: (t1, step counts on [0, t1]) per expected order: in the asymptotic range, errors well
#: above round-off (≳1e-12); DP8 over a longer interval, to get there with errors that large
STEPS = {
    1: (1.0, [32, 64, 128, 256]),
    2: (1.0, [16, 32, 64, 128]),
    3: (1.0, [8, 16, 32, 64]),
    4: (1.0, [16, 32, 64, 128]),
    5: (1.0, [12, 16, 24, 32, 48]),
    8: (4.0, [8, 12, 16, 24]),
}


def convergence_cases():
    cases = []
    for name, tab in sorted(TABLEAUX.items()):
        cases.append(pytest.param(name, "b", tab.order, id=f"{name}-b"))
        if tab.adaptive:
            cases.append(pytest.param(name, "b_hat", EMBEDDED_ORDER[name], id=f"{name}-b_hat"))
        if tab.b_error_low:
            low = EMBEDDED_LOW_ORDER[name]
            cases.append(pytest.param(name, "b_hat_low", low, id=f"{name}-b_hat_low"))
    return cases


@pytest.mark.parametrize(("name", "weights", "order"), convergence_cases())
def test_convergence_order_is_measured(name, weights, order):
    tab = TABLEAUX[name]
    w = {
        "b": tab.b,
        "b_hat": [x - e for x, e in zip(tab.b, tab.b_error)],
        "b_hat_low": [x - e for x, e in zip(tab.b, tab.b_error_low)],
    }[weights]
    t1, ns = STEPS[order]
    errors = [integrate(tab, w, n, t1) for n in ns]
    assert min(errors) > 1e-13  # round-off does not dominate
    assert measured_order(errors, [t1 / n for n in ns]) == pytest.approx(order, abs=0.3)


# -- dense output ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DENSE_ORDER))
def test_dense_weights_start_at_zero_and_end_on_b(name):
    tab = TABLEAUX[name]
    assert all(len(row) == len(tab.dense[0]) for row in tab.dense)
    assert len(tab.dense) == tab.stages
    assert dense_weights(tab, 0.0) == (0.0,) * tab.stages
    assert dense_weights(tab, 1.0) == pytest.approx(tab.b, abs=1e-14)
    # Tsit5's interpolant coefficients carry 16 digits, the others are exact fractions
    assert sum(dense_weights(tab, 0.37)) == pytest.approx(0.37, abs=1e-14)  # y' = 1 exactly


@pytest.mark.parametrize("name", sorted(DENSE_ORDER))
@pytest.mark.parametrize("theta", [0.3, 0.7])
def test_dense_output_local_error_order(name, theta):
    tab = TABLEAUX[name]
    weights = dense_weights(tab, theta)
    hs = [0.2, 0.1, 0.05, 0.025]
    errors = []
    for h in hs:
        # one step from each of several starts: the largest error (the error of a single
        # step may happen to cross zero as h changes)
        worst = 0.0
        for t0 in [0.1 * i for i in range(16)]:
            y0 = y_exact(t0)
            ks = stages(tab, t0, y0, h)  # the FSAL last stage is f(t0 + h, y1)
            y_theta = y0 + h * sum(w * k for w, k in zip(weights, ks))
            worst = max(worst, abs(y_theta - y_exact(t0 + theta * h)))
        errors.append(worst)
    assert min(errors) > 1e-13
    # an interpolant of order p has local error ∝ h^(p+1)
    assert measured_order(errors, hs) == pytest.approx(DENSE_ORDER[name] + 1, abs=0.3)


def test_dp5_dense_output_is_hairers_and_torchdiffeqs():
    dp5 = TABLEAUX["dp5"]
    # DOPRI5's b_1(θ) = θ − 8048581381/2820520608 θ² + 8663915743/2820520608 θ³
    #                   − 12715105075/11282082432 θ⁴ (Shampine 1986, Hairer's dense output)
    assert dp5.dense[0] == pytest.approx(
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        rel=1e-15,
    )
    # torchdiffeq's dopri5 interpolates through y(1/2) = y + h Σ c_mid,i k_i
    c_mid = [
        6025192743 / 30085553152 / 2,
        0,
        51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2,
        11237099 / 235043384 / 2,
    ]
    assert dense_weights(dp5, 0.5) == pytest.approx(c_mid, abs=1e-15)


def test_methods_without_dense_output_say_so():
    for name in ("euler", "rk4", "dp8"):
        with pytest.raises(ValueError, match="no dense output"):
            dense_weights(TABLEAUX[name], 0.5)


# -- reference coefficients -----------------------------------------------------------------
def test_rk4_is_the_classical_method_and_rk38_the_three_eighths_rule():
    assert TABLEAUX["rk4"] is RK4 and TABLEAUX["rk38"] is RK38
    assert RK4.c == (0.5, 0.5, 1.0)
    assert RK4.a == ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    assert RK4.b == (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    assert RK38.c == (1 / 3, 2 / 3, 1.0)
    assert RK38.a == ((1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0))
    assert RK38.b == (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    assert RK4.order == RK38.order == 4


def close(x, y, tol=1e-15):
    return abs(x - y) <= tol * max(1.0, abs(y))


def test_dp8_matches_scipys_dop853_coefficients():
    coef = pytest.importorskip("scipy.integrate._ivp.dop853_coefficients")
    dp8, s = TABLEAUX["dp8"], coef.N_STAGES  # 12 stages, then the FSAL evaluation
    assert dp8.stages == s + 1
    assert all(close(x, y) for x, y in zip(dp8.c, coef.C[1 : s + 1], strict=True))
    for i, row in enumerate(dp8.a, start=1):  # row i is stage i + 1; stage 13's row is B
        assert all(close(x, y) for x, y in zip(row, coef.A[i, :i], strict=True)), i
    assert all(close(x, y) for x, y in zip(dp8.b, [*coef.B, 0.0], strict=True))
    assert all(close(x, y) for x, y in zip(dp8.b_error, coef.E5, strict=True))
    assert all(close(x, y) for x, y in zip(dp8.b_error_low, coef.E3, strict=True))


def test_dp8_error_combination_as_documented_is_scipys():
    """err = ‖e5‖² / sqrt(‖e5‖² + 0.01‖e3‖²), RMS norms of e = h Σ w_i k_i / sc."""
    DOP853 = pytest.importorskip("scipy.integrate").DOP853
    dp8 = TABLEAUX["dp8"]
    rng = np.random.default_rng(0)
    solver = DOP853(lambda t, y: -y, 0.0, np.ones(5), 1.0)
    for h in (0.1, -0.03):  # also backwards, as the adjoint integrates
        K = rng.normal(size=(dp8.stages, 5))
        scale = 1e-6 + 1e-3 * rng.uniform(0.5, 2.0, size=5)

        def rms(weights, K=K, h=h, scale=scale):
            e = h * (np.asarray(weights) @ K) / scale
            return float(np.sqrt(np.mean(e**2)))

        e5, e3 = rms(dp8.b_error), rms(dp8.b_error_low)
        err = e5**2 / math.sqrt(e5**2 + 0.01 * e3**2)
        assert err == pytest.approx(solver._estimate_error_norm(K, h, scale), rel=1e-12)


def _real_stability_bound(a_rows, b) -> float:
    """Largest x with |R(-x')| <= 1 on [0, x], R(z) = 1 + z bᵀ(I − zA)⁻¹1."""
    s = len(b)
    a = np.zeros((s, s))
    for i, row in enumerate(a_rows):
        a[i + 1, : len(row)] = row
    bv, ones = np.asarray(b, dtype=float), np.ones(s)
    xs = np.linspace(0.0, 10.0, 20001)
    ok = [abs(1 - x * bv @ np.linalg.solve(np.eye(s) + x * a, ones)) <= 1 + 1e-12 for x in xs]
    return float(xs[ok.index(False)])


@pytest.mark.parametrize("native", sorted(TABLEAUX))
def test_the_registrys_stability_bounds_are_the_tableaus(native):
    from nesterovnode.solve.engines.rk import RKEngine
    from nesterovnode.solve.registry import SOLVERS

    canonical = {v: k for k, v in RKEngine.methods.items()}[native]
    tab = TABLEAUX[native]
    bound = _real_stability_bound(tab.a, tab.b)
    assert bound == pytest.approx(SOLVERS[canonical].stability_bound, abs=2e-3)


def test_torchdiffeqs_dopri8_is_not_dop853():
    """torchdiffeq's dopri8 is Prince & Dormand's 8(7) 13M pair: another method than DP8
    (DOP853), so it has its own canonical name, DP87."""
    from torchdiffeq._impl.dopri8 import _DOPRI8_TABLEAU as t

    from nesterovnode.solve.registry import SOLVERS

    a_rows = [[float(x) for x in row] for row in t.beta]
    b = [float(x) for x in t.c_sol]
    assert len(b) != TABLEAUX["dp8"].stages or a_rows[0][0] != TABLEAUX["dp8"].a[0][0]
    assert _real_stability_bound(a_rows, b) == pytest.approx(
        SOLVERS["DP87"].stability_bound, abs=2e-3
    )
