"""The Walker2D task (the paper's §4.3, Fig. 7): next-step prediction on irregularly
sampled Walker2d rollouts with an ODE-RNN around each of the seven models.

Architectures (MATH.md, Table 5), (d, n, h1, h2): NODE / ANODE (1, 24, 72, 48), SONODE
(2, 23, 46, 46), the momentum models (2, 24, 48, 48); k = 17 observed features:

- ODE: ``input_(n*) -> fc_(n*) -> Tanh -> fc_n -> Tanh -> fc_n`` (no t input; n* = 2n for
  SONODE, whose network reads [h, v]);
- RNN update: ``input_(dn+k) -> fc_h1 -> Tanh -> fc_h2 -> Tanh -> fc_(dn)``;
- output: ``input_n -> fc_17``.

Table 1 counts (9929 / 10019 / 11471 / 10099 / 10099 / 10098 / 10098) come out exactly:
NODE 1800 + 7704 + 425 = 9929. ANODE: the architecture above is NODE's (9929); the 90
more are the published code's learned initial state, ``fc_5`` of the first observation
in 5 of the 24 hidden channels and zeros in the other 19 (the augmentation;
``LearnedInitial``, 17·5 + 5 = 90), so ANODE = 10019. SONODE 3795 + 7268 + 408 = 11471.
HBNODE / GHBNODE 1800 + 7872 + 425 + γ + learnable ξ = 10099; NesterovNODE /
GNesterovNODE 1800 + 7872 + 425 + learnable ξ = 10098 (Table 6: ξ learnable on Walker2D).
ξ starts as on MNIST: 1e-6 for HBNODE and NesterovNODE, softplus(2) for the G models.

Protocol: ``data.walker2d`` (split by rollout 75/10/15, ~10 % of steps dropped, windows of
64 with stride 16, MSE on the raw features); the recorded metric is the MSE (``metric =
"mse"``: the run records ``mse`` and ``test_mse``). The paper: DP5 at 1e-7 with the
adjoint, Adam; the published code: lr 3e-3, batch 256, 500 epochs. ``--paper`` takes
the paper's tolerance and epochs, 5 seeds, and float64 (1e-7 is below float32's
resolution). The CPU defaults are sized to finish in minutes on 2
cores: DP5 at rtol = atol = 1e-3, 5 epochs (a window is 63 solves). Gaps are at most 6/64
long, so early in training every model takes DP5's minimum per gap (14 evaluations at
1e-3, 20 at 1e-7); NFE separates the models only once their fields stiffen (at 1e-7 on the
real rollouts: NODE and ANODE from about epoch 20, the second-order models not by epoch
24; ``experiments/measured/walker2d-cpu-2026-11-29``).
"""

from __future__ import annotations

from torch import nn

from ..data.walker2d import FEATURES, WalkerProtocol, walker2d_splits
from .base import Task, TaskDefaults, make_dynamics
from .images import XI_SOFTPLUS_2
from .networks import mlp
from .odernn import ODERNN, LearnedInitial

#: (d, n, h1, h2) per model (the paper's Table 5).
WIDTHS = {
    "node": (1, 24, 72, 48),
    "anode": (1, 24, 72, 48),
    "sonode": (2, 23, 46, 46),
    "hbnode": (2, 24, 48, 48),
    "ghbnode": (2, 24, 48, 48),
    "nesterovnode": (2, 24, 48, 48),
    "gnesterovnode": (2, 24, 48, 48),
}
#: ANODE's learned initial channels (the rest of its n = 24 start at zero).
ANODE_INITIAL_CHANNELS = 5

#: ξ learnable for the four momentum models (Table 6), started as on MNIST.
XI_DEFAULTS = {
    "hbnode": (1e-6, True),
    "ghbnode": (XI_SOFTPLUS_2, True),
    "nesterovnode": (1e-6, True),
    "gnesterovnode": (XI_SOFTPLUS_2, True),
}


class Walker2DTask(Task):
    """Walker2D next-step prediction; ``correct`` sums the windows' MSEs, so the recorded
    ``mse`` / ``test_mse`` are the mean squared errors over all predictions."""

    name = "walker2d"
    loss = "mse"
    metric = "mse"
    defaults = TaskDefaults(
        epochs=5,
        lr=3e-3,
        batch_size=256,
        tol=1e-3,
        ts=(0.0, 1.0),
        paper_epochs=500,
        paper_seeds=5,
        paper_tol=1e-7,
        dtype="float32",
        paper_dtype="float64",
    )
    xi_defaults = XI_DEFAULTS

    def __init__(self, protocol: WalkerProtocol | None = None):
        self.protocol = protocol or WalkerProtocol()
        self._splits = {}

    def build_model(self, model: str, **options) -> ODERNN:
        """The paper's ODE-RNN for ``model``; options: ``config`` (a SolveConfig) and its
        fields (solver, rtol, atol, dt, sensitivity, engine, …) for every gap's solve, and
        r, xi, learn_xi, sigma for the dynamics. (``ts`` is not an option: each gap is
        solved over s ∈ [0, 1], see ``tasks.odernn``.)"""
        key, dyn_opts, block_opts = self.split_options(model, options)
        d, n, h1, h2 = WIDTHS[key]
        n_in = 2 * n if key == "sonode" else n
        f = mlp([n_in, n_in, n, n], nn.Tanh)
        dynamics = make_dynamics(key, f, augment_dim=0, **dyn_opts)
        rnn = mlp([d * n + FEATURES, h1, h2, d * n], nn.Tanh)
        out = nn.Linear(n, FEATURES)
        initial = None
        if key == "anode":
            initial = LearnedInitial(FEATURES, ANODE_INITIAL_CHANNELS, n)
        return ODERNN(key, dynamics, rnn, out, n, block_opts["config"], initial=initial)

    def splits(self, data_dir: str | None = None):
        """The protocol's ``WalkerSplits`` (read once per data directory)."""
        key = str(data_dir)
        if key not in self._splits:
            self._splits[key] = walker2d_splits(data_dir, self.protocol)
        return self._splits[key]

    def datasets(self, seed: int = 0, data_dir: str | None = None):
        """``(train, test)`` windows. The split is the protocol's (its own seed, 0), not
        the run's: every model and training seed sees the same split."""
        s = self.splits(data_dir)
        return s.train, s.test

    def data_description(self, data_dir: str | None = None) -> dict:
        """The split, for results.json."""
        return self.splits(data_dir).describe()

    def loss_fn(self, output, target):
        return nn.functional.mse_loss(output, target.to(output.dtype))

    def correct(self, output, target):
        """Sum over the batch's windows of each window's MSE."""
        err = (output - target.to(output.dtype)).square()
        return err.mean(dim=tuple(range(1, err.dim()))).sum()
