"""Butcher tableaux of the explicit Runge–Kutta methods of the ``rk`` engine.

A step of size h from (t, y) evaluates the stages

    k_1 = f(t, y),   k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)   (i = 2..s),

and returns y_1 = y + h Σ b_i k_i. Adaptive methods also return the error estimate
e = h Σ (b_i − b̂_i) k_i, the difference to an embedded solution of lower order (DP8 has
two, combined as described at :attr:`Tableau.b_error_low`). In an FSAL method ("first
same as last") the last stage is evaluated at (t + h, y_1), so it is the next step's k_1
and a step costs s − 1 new evaluations.

The names are those of Julia's OrdinaryDiffEq.jl, one method per name on every engine:

* ``euler``, ``midpoint``;
* ``rk4``: the classical Runge–Kutta method (Kutta 1901, c = 0, 1/2, 1/2, 1);
* ``rk38``: Kutta's 3/8 rule (what torchdiffeq calls ``rk4``);
* ``bs3``: Bogacki & Shampine 3(2) (1989);
* ``dp5``: Dormand & Prince 5(4) (1980) with Shampine's embedded 4th-order weights (as
  torchdiffeq's dopri5), not the 5179/57600 set of Hairer's DOPRI5 code; both are 4th-order
  pairs, and these make the rk and torchdiffeq engines take the same steps;
* ``tsit5``: Tsitouras 5(4) (2011), the coefficients of OrdinaryDiffEq.jl and diffrax;
* ``dp8``: Dormand & Prince 8(5,3) as in Hairer's DOP853 (and SciPy's ``DOP853``).

The exactly known coefficients are written as fractions, the published decimal ones as
decimal strings; both are turned into ``Fraction`` (exactly), error weights b − b̂ are
formed exactly, and only the results are rounded to floats.

Dense output (continuous extension): where ``Tableau.dense`` is given,

    y(t + θh) ≈ y + h Σ_i b_i(θ) k_i,   θ ∈ [0, 1],

with the stages of the step (for FSAL methods including the last one, f(t + h, y_1)), and
``b_i(θ) = Σ_m dense[i][m − 1] θ^m`` (no constant term, so b_i(0) = 0; b_i(1) = b_i, so the
interpolant ends on y_1). :func:`dense_weights` evaluates the b_i(θ).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method.

    Fields:
        name: the native key (``TABLEAUX[name] is self``).
        order: order p of the solution that is propagated (y_1 = y + h Σ b_i k_i). The
            step-size controller uses the exponent 1/p (for DP8 1/8, as DOP853 and SciPy).
        c: ``c[i]`` is the node of stage ``i + 2`` (stage 1 has c = 0).
        a: ``a[i]`` is the row of stage ``i + 2``: a_{i+2, 1..i+1}.
        b: the weights of the solution, one per stage.
        b_error: ``b − b̂`` for the (main) embedded solution b̂, one per stage: the error
            estimate is e = h Σ b_error_i k_i. Empty for fixed-step methods.
            Embedded orders: bs3 2, dp5 4, tsit5 4, dp8 5.
        b_error_low: empty except for DP8, whose error estimate combines two embedded
            solutions (Hairer's DOP853, SciPy's ``DOP853._estimate_error_norm``): with
            e5 = h Σ b_error_i k_i (5th-order b̂), e3 = h Σ b_error_low_i k_i (3rd-order
            b̂₃ = b − b_error_low), and ‖·‖ the RMS norm scaled componentwise by the step
            control's tolerance sc (DOP853, SciPy: sc = atol + rtol·max(|y|, |y_1|)),

                err = ‖e5‖² / sqrt(‖e5‖² + 0.01 ‖e3‖²)     (err = 0 when both are 0),

            which is DOP853's |h|·E5²/sqrt(E5² + 0.01 E3²) with E5, E3 the scaled norms of
            Σ b_error_i k_i and Σ b_error_low_i k_i (without h): the formula is homogeneous
            of degree one, so it makes no difference whether h is inside the norms. A step
            is accepted when err ≤ 1 and the next step size uses the exponent 1/8
            (``order``).
        dense: the continuous extension, or None: ``dense[i]`` holds the coefficients of
            b_i(θ) for θ¹, θ², … (all rows of one length), so that
            y(t + θh) ≈ y + h Σ_i b_i(θ) k_i over the s stages of the step, including the
            FSAL last stage f(t + h, y_1). Orders of the interpolant: bs3 3 (cubic Hermite
            through y, y_1, f(t, y), f(t + h, y_1)), dp5 4 (Shampine's / Hairer's DOPRI5
            dense output), tsit5 4 (Tsitouras' free interpolant). None for the
            fixed-step methods and for DP8, whose 7th-order dense output needs three extra
            stages: DP8 steps land on the output times instead.
    """

    name: str
    order: int  #: order of the solution that is propagated
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] = ()
    b_error_low: tuple[float, ...] = ()
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


def dense_weights(tableau: Tableau, theta: float) -> tuple[float, ...]:
    """The weights b_i(θ) of the continuous extension: y(t + θh) ≈ y + h Σ b_i(θ) k_i."""
    if tableau.dense is None:
        raise ValueError(f"{tableau.name} has no dense output")
    return tuple(sum(p * theta ** (m + 1) for m, p in enumerate(row)) for row in tableau.dense)


def _exact(x) -> F:
    """A fraction, an integer or a decimal string, as an exact Fraction."""
    return F(x)


def _floats(xs) -> tuple[float, ...]:
    return tuple(float(x) for x in xs)


def _tableau(
    name, order, c, a, b, *, b_hat=None, b_error=None, b_hat_low=None, dense=None
) -> Tableau:
    """Build from exact numbers (fractions or decimal strings); the error weights are
    either given or formed exactly as b − b̂; ``dense`` is a list of exact polynomial
    coefficient rows (θ¹, θ², …) per stage."""
    b = [_exact(x) for x in b]
    if b_hat is not None:
        b_error = [x - _exact(y) for x, y in zip(b, b_hat, strict=True)]
    low = () if b_hat_low is None else [x - _exact(y) for x, y in zip(b, b_hat_low, strict=True)]
    return Tableau(
        name=name,
        order=order,
        c=_floats(_exact(x) for x in c),
        a=tuple(_floats(_exact(x) for x in row) for row in a),
        b=_floats(b),
        b_error=() if b_error is None else _floats(_exact(x) for x in b_error),
        b_error_low=_floats(low),
        dense=None if dense is None else tuple(_floats(_exact(x) for x in row) for row in dense),
    )


# -- polynomial helpers for the continuous extensions (exact, coefficients θ⁰, θ¹, …) ----
def _poly_add(*ps):
    n = max(len(p) for p in ps)
    return [sum((p[m] for p in ps if m < len(p)), F(0)) for m in range(n)]


def _poly_scale(p, x):
    return [x * v for v in p]


def _poly_mul(p, q):
    out = [F(0)] * (len(p) + len(q) - 1)
    for i, u in enumerate(p):
        for j, v in enumerate(q):
            out[i + j] += u * v
    return out


def _dense_rows(polys, degree):
    """Rows θ¹..θ^degree from polynomials with coefficients θ⁰, θ¹, … (θ⁰ must be 0)."""
    rows = []
    for p in polys:
        p = [*p, *[F(0)] * (degree + 1 - len(p))]
        assert p[0] == 0 and len(p) == degree + 1
        rows.append(p[1:])
    return rows


def _hermite_dense(b):
    """The cubic Hermite interpolant through y, y_1 = y + h Σ b_i k_i, f(t, y) = k_1 and
    f(t + h, y_1) = k_s (FSAL), in the b_i(θ) form:
    b_i(θ) = (3θ² − 2θ³) b_i + (θ − 2θ² + θ³) δ_i1 + (θ³ − θ²) δ_is."""
    h01 = [F(0), F(0), F(3), F(-2)]
    h10 = [F(0), F(1), F(-2), F(1)]
    h11 = [F(0), F(0), F(-1), F(1)]
    s = len(b)
    polys = []
    for i, bi in enumerate(b):
        p = _poly_scale(h01, _exact(bi))
        if i == 0:
            p = _poly_add(p, h10)
        if i == s - 1:
            p = _poly_add(p, h11)
        polys.append(p)
    return _dense_rows(polys, 3)


def _dopri5_dense(b, d):
    """Hairer's DOPRI5 dense output (Shampine 1986) in the b_i(θ) form. DOPRI5 evaluates

        y(θ) = y + θ(r2 + (1 − θ)(r3 + θ(r4 + (1 − θ) r5))),
        r2 = y_1 − y,  r3 = h k_1 − r2,  r4 = r2 − h k_7 − r3,  r5 = h Σ d_i k_i,

    i.e. b_i(θ) = θ b_i + θ(1 − θ)(δ_i1 − b_i) + θ²(1 − θ)(2b_i − δ_i1 − δ_i7)
                  + θ²(1 − θ)² d_i."""
    th = [F(0), F(1)]
    th_1m = _poly_mul(th, [F(1), F(-1)])  # θ(1 − θ)
    th2_1m = _poly_mul(th, th_1m)  # θ²(1 − θ)
    th2_1m2 = _poly_mul(th_1m, th_1m)  # θ²(1 − θ)²
    s = len(b)
    polys = []
    for i, (bi, di) in enumerate(zip(b, d, strict=True)):
        bi, di = _exact(bi), _exact(di)
        first, last = F(int(i == 0)), F(int(i == s - 1))
        polys.append(
            _poly_add(
                _poly_scale(th, bi),
                _poly_scale(th_1m, first - bi),
                _poly_scale(th2_1m, 2 * bi - first - last),
                _poly_scale(th2_1m2, di),
            )
        )
    return _dense_rows(polys, 4)


EULER = _tableau("euler", 1, [], [], [F(1)])
MIDPOINT = _tableau("midpoint", 2, [F(1, 2)], [[F(1, 2)]], [F(0), F(1)])
RK4 = _tableau(  # the classical Runge–Kutta method
    "rk4",
    4,
    [F(1, 2), F(1, 2), F(1)],
    [[F(1, 2)], [F(0), F(1, 2)], [F(0), F(0), F(1)]],
    [F(1, 6), F(1, 3), F(1, 3), F(1, 6)],
)
RK38 = _tableau(  # Kutta's 3/8 rule
    "rk38",
    4,
    [F(1, 3), F(2, 3), F(1)],
    [[F(1, 3)], [F(-1, 3), F(1)], [F(1), F(-1), F(1)]],
    [F(1, 8), F(3, 8), F(3, 8), F(1, 8)],
)
_BS3_B = [F(2, 9), F(1, 3), F(4, 9), F(0)]
BS3 = _tableau(
    "bs3",
    3,
    [F(1, 2), F(3, 4), F(1)],
    [[F(1, 2)], [F(0), F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
    _BS3_B,
    b_hat=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
    dense=_hermite_dense(_BS3_B),
)
_DP5_B = [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)]
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
        _DP5_B[:-1],
    ],
    _DP5_B,
    # Shampine's embedded 4th-order weights (as torchdiffeq's dopri5), see the module doc
    b_hat=[
        F(1951, 21600),
        F(0),
        F(22642, 50085),
        F(451, 720),
        F(-12231, 42400),
        F(649, 6300),
        F(1, 60),
    ],
    # the d_i of Hairer's DOPRI5 dense output (Shampine 1986)
    dense=_dopri5_dense(
        _DP5_B,
        [
            F(-12715105075, 11282082432),
            F(0),
            F(87487479700, 32700410799),
            F(-10690763975, 1880347072),
            F(701980252875, 199316789632),
            F(-1453857185, 822651844),
            F(69997945, 29380423),
        ],
    ),
)

# Tsitouras 5(4): the published coefficients are decimals (here with the digits of the
# paper as diffrax carries them). They satisfy the order conditions only to the precision
# of those digits, i.e. ~1e-16 once rounded to floats, not exactly.
_TSIT5_B = [
    "0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396",
    "0.01",
    "0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509",
    "1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331",
    "-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677",
    "2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841",
    "0",
]
TSIT5 = _tableau(
    "tsit5",
    5,
    [
        "0.161",
        "0.327",
        "0.9",
        "0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604",
        "1",
        "1",
    ],
    [
        ["0.161"],
        [
            "-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943",
            "0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569",
        ],
        [
            "2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289",
            "-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366",
            "4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077",
        ],
        [
            "5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791",
            "-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589",
            "7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753",
            "-0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635",
        ],
        [
            "5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748",
            "-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452",
            "8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986",
            "-0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835",
            "-0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206",
        ],
        _TSIT5_B[:-1],
    ],
    _TSIT5_B,
    b_hat=[
        "0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271",
        "0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270",
        "0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813",
        "1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761",
        "-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702",
        "1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089",
        F(1, 66),
    ],
    # Tsitouras' free 4th-order interpolant: b_i(θ) for θ¹..θ⁴, the coefficients of
    # OrdinaryDiffEq.jl's Tsit5Interp (diffrax's in factored form); 16 significant digits,
    # so b_i(1) = b_i to ~1e-15.
    dense=[
        ["1.0", "-2.763706197274826", "2.9132554618219126", "-1.0530884977290216"],
        ["0", "0.13169999999999998", "-0.2234", "0.1017"],
        ["0", "3.9302962368947516", "-5.941033872131505", "2.490627285651253"],
        ["0", "-12.411077166933676", "30.33818863028232", "-16.548102889244902"],
        ["0", "37.50931341651104", "-88.1789048947664", "47.37952196281928"],
        ["0", "-27.896526289197286", "65.09189467479366", "-34.87065786149661"],
        ["0", "1.5", "-4", "2.5"],
    ],
)

# Dormand & Prince 8(5,3), the coefficients of Hairer's DOP853 (30 digits, as SciPy's
# dop853_coefficients carries them; decimals, so the order conditions hold to rounding).
# Stages 1..12 are DOP853's; stage 13 is the FSAL evaluation f(t + h, y_1) (row = b,
# weight 0), which DOP853 makes for the next step and which no estimate here uses.
_DP8_C = [
    "0.526001519587677318785587544488e-01",
    "0.789002279381515978178381316732e-01",
    "0.118350341907227396726757197510",
    "0.281649658092772603273242802490",
    "0.333333333333333333333333333333",
    "0.25",
    "0.307692307692307692307692307692",
    "0.651282051282051282051282051282",
    "0.6",
    "0.857142857142857142857142857142",
    "1.0",
    "1.0",
]
_DP8_A = [
    [  # stage 2
        "5.26001519587677318785587544488e-2",
    ],
    [  # stage 3
        "1.97250569845378994544595329183e-2",
        "5.91751709536136983633785987549e-2",
    ],
    [  # stage 4
        "2.95875854768068491816892993775e-2",
        "0",
        "8.87627564304205475450678981324e-2",
    ],
    [  # stage 5
        "2.41365134159266685502369798665e-1",
        "0",
        "-8.84549479328286085344864962717e-1",
        "9.24834003261792003115737966543e-1",
    ],
    [  # stage 6
        "3.7037037037037037037037037037e-2",
        "0",
        "0",
        "1.70828608729473871279604482173e-1",
        "1.25467687566822425016691814123e-1",
    ],
    [  # stage 7
        "3.7109375e-2",
        "0",
        "0",
        "1.70252211019544039314978060272e-1",
        "6.02165389804559606850219397283e-2",
        "-1.7578125e-2",
    ],
    [  # stage 8
        "3.70920001185047927108779319836e-2",
        "0",
        "0",
        "1.70383925712239993810214054705e-1",
        "1.07262030446373284651809199168e-1",
        "-1.53194377486244017527936158236e-2",
        "8.27378916381402288758473766002e-3",
    ],
    [  # stage 9
        "6.24110958716075717114429577812e-1",
        "0",
        "0",
        "-3.36089262944694129406857109825",
        "-8.68219346841726006818189891453e-1",
        "2.75920996994467083049415600797e1",
        "2.01540675504778934086186788979e1",
        "-4.34898841810699588477366255144e1",
    ],
    [  # stage 10
        "4.77662536438264365890433908527e-1",
        "0",
        "0",
        "-2.48811461997166764192642586468",
        "-5.90290826836842996371446475743e-1",
        "2.12300514481811942347288949897e1",
        "1.52792336328824235832596922938e1",
        "-3.32882109689848629194453265587e1",
        "-2.03312017085086261358222928593e-2",
    ],
    [  # stage 11
        "-9.3714243008598732571704021658e-1",
        "0",
        "0",
        "5.18637242884406370830023853209",
        "1.09143734899672957818500254654",
        "-8.14978701074692612513997267357",
        "-1.85200656599969598641566180701e1",
        "2.27394870993505042818970056734e1",
        "2.49360555267965238987089396762",
        "-3.0467644718982195003823669022",
    ],
    [  # stage 12
        "2.27331014751653820792359768449",
        "0",
        "0",
        "-1.05344954667372501984066689879e1",
        "-2.00087205822486249909675718444",
        "-1.79589318631187989172765950534e1",
        "2.79488845294199600508499808837e1",
        "-2.85899827713502369474065508674",
        "-8.87285693353062954433549289258",
        "1.23605671757943030647266201528e1",
        "6.43392746015763530355970484046e-1",
    ],
    [  # stage 13
        "5.42937341165687622380535766363e-2",
        "0",
        "0",
        "0",
        "0",
        "4.45031289275240888144113950566",
        "1.89151789931450038304281599044",
        "-5.8012039600105847814672114227",
        "3.1116436695781989440891606237e-1",
        "-1.52160949662516078556178806805e-1",
        "2.01365400804030348374776537501e-1",
        "4.47106157277725905176885569043e-2",
    ],
]
_DP8_B = [*_DP8_A[-1], "0"]
_DP8_ERROR5 = [
    "0.1312004499419488073250102996e-1",
    "0",
    "0",
    "0",
    "0",
    "-0.1225156446376204440720569753e+1",
    "-0.4957589496572501915214079952",
    "0.1664377182454986536961530415e+1",
    "-0.3503288487499736816886487290",
    "0.3341791187130174790297318841",
    "0.8192320648511571246570742613e-1",
    "-0.2235530786388629525884427845e-1",
    "0",
]
_DP8_B_HAT3 = [
    "0.244094488188976377952755905512",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0.733846688281611857341361741547",
    "0",
    "0",
    "0.220588235294117647058823529412e-1",
    "0",
]

DP8 = _tableau(
    "dp8",
    8,
    _DP8_C,
    _DP8_A,
    _DP8_B,
    b_error=_DP8_ERROR5,  # DOP853's er_i: b − b̂ of the 5th-order embedded solution
    b_hat_low=_DP8_B_HAT3,  # DOP853's bhh_i: the 3rd-order embedded solution
)

#: the engine's native names
TABLEAUX: dict[str, Tableau] = {
    t.name: t for t in (EULER, MIDPOINT, RK4, RK38, BS3, DP5, TSIT5, DP8)
}
