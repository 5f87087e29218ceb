"""Butcher tableaux of the explicit Runge–Kutta methods of the ``rk`` engine.

A step of size h from (t, y) evaluates the stages

    k_1 = f(t, y),   k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)   (i = 2..s),

and returns y_1 = y + h Σ b_i k_i. Adaptive methods also return the error estimate
e = h Σ (b_i − b̂_i) k_i, the difference to an embedded solution of lower order. In an
FSAL method ("first same as last") the last stage is evaluated at (t + h, y_1), so it is
the next step's k_1 and a step costs s − 1 new evaluations.

The coefficients are those of the methods' original papers (Dormand & Prince 1980;
Bogacki & Shampine 1989), Kutta's 3/8 rule, and for DP5's error estimate Shampine's
embedded 4th-order weights; they are the ones torchdiffeq uses under the names dopri5,
bosh3, rk4, midpoint and euler, so both engines take the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method: ``c[i]``, ``a[i]`` are the node and row of stage
    ``i + 2``; ``b`` the weights of the solution; ``b_error`` the weights of the error
    estimate (``b − b̂``), empty for fixed-step methods."""

    name: str
    order: int  #: order of the solution that is propagated
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] = ()
    b_error_low: tuple[float, ...] | None = None
    dense: tuple[tuple[float, ...], ...] | None = None

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def adaptive(self) -> bool:
        return bool(self.b_error)

    @property
    def fsal(self) -> bool:
        """True when the last stage is f(t + h, y_1): c = 1 and its row equals b."""
        return bool(self.a) and self.c[-1] == 1.0 and tuple(self.a[-1]) == tuple(self.b[:-1])

    @property
    def new_evaluations_per_step(self) -> int:
        """Evaluations of f a step costs (the first stage is reused in FSAL methods)."""
        return self.stages - 1 if self.fsal else self.stages


def _tableau(name, order, c, a, b, b_hat=None) -> Tableau:
    """Build from exact fractions (the error weights b − b̂ are formed exactly)."""
    b_error = () if b_hat is None else tuple(float(x - y) for x, y in zip(b, b_hat))
    return Tableau(
        name=name,
        order=order,
        c=tuple(float(x) for x in c),
        a=tuple(tuple(float(x) for x in row) for row in a),
        b=tuple(float(x) for x in b),
        b_error=b_error,
    )


EULER = _tableau("euler", 1, [], [], [F(1)])
MIDPOINT = _tableau("midpoint", 2, [F(1, 2)], [[F(1, 2)]], [F(0), F(1)])
RK4 = _tableau(  # Kutta's 3/8 rule
    "rk4",
    4,
    [F(1, 3), F(2, 3), F(1)],
    [[F(1, 3)], [F(-1, 3), F(1)], [F(1), F(-1), F(1)]],
    [F(1, 8), F(3, 8), F(3, 8), F(1, 8)],
)
BS3 = _tableau(
    "bs3",
    3,
    [F(1, 2), F(3, 4), F(1)],
    [[F(1, 2)], [F(0), F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
    [F(2, 9), F(1, 3), F(4, 9), F(0)],
    [F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
)
DP5 = _tableau(
    "dp5",
    5,
    [F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1)],
    [
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(44, 45), F(-56, 15), F(32, 9)],
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
        [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)],
    ],
    [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)],
    # Shampine's embedded 4th-order weights (as torchdiffeq's dopri5), not the 5179/57600
    # set of Hairer's DOPRI5 code: both are 4th-order pairs; these make both engines take
    # the same steps.
    [F(1951, 21600), F(0), F(22642, 50085), F(451, 720), F(-12231, 42400), F(649, 6300), F(1, 60)],
)

#: the engine's native names
TABLEAUX: dict[str, Tableau] = {t.name: t for t in (EULER, MIDPOINT, RK4, BS3, DP5)}


def dense_weights(tableau: Tableau, theta: float) -> tuple[float, ...]:
    """b_i(θ) of the tableau's dense output."""
    return tuple(sum(c * theta ** (k + 1) for k, c in enumerate(row)) for row in tableau.dense)
