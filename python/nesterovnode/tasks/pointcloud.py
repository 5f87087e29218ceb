"""The point-cloud task (the paper's Fig. 3 and 4): separate nested circles in 2-D.

Architectures (MATH.md), (n, h): NODE (2, 20), ANODE (3, 20), SONODE (2, 13), the momentum
models (2, 14); ODE network ``[input_(n*), t] -> fc_h -> ELU -> fc_h -> ELU -> fc_n``,
initial velocity ``input_2 -> fc_h -> HTanh -> fc_h -> HTanh -> fc_n``, output
``input_n -> fc_1 -> Tanh``. Trained with SmoothL1 on the ±1 labels, DP5 at 1e-7 over
t in [1, 2], ξ = 2 fixed for the generalised models.
"""

from __future__ import annotations

from torch import nn

from .. import dynamics as D
from ..data.pointcloud import point_cloud
from ..layers import ODEBlock
from .base import (
    InputAsPosition,
    InputWithVelocity,
    Task,
    TaskDefaults,
    TaskModel,
    check_model_name,
)
from .networks import TimeConcat, mlp

#: (n, h) per model: state width and hidden width (the paper's Table 4).
WIDTHS = {
    "node": (2, 20),
    "anode": (3, 20),
    "sonode": (2, 13),
    "hbnode": (2, 14),
    "ghbnode": (2, 14),
    "nesterovnode": (2, 14),
    "gnesterovnode": (2, 14),
}

_BLOCK_KEYS = ("solver", "rtol", "atol", "sensitivity", "engine", "dt", "max_steps", "ts")


def build_dynamics(model: str, n: int, hidden: int, r: float = 3.0, xi: float = 2.0):
    """The point-cloud dynamics of ``model`` with its ODE network (t as an input)."""
    n_in = 2 * n if model == "sonode" else n
    f = TimeConcat(mlp([n_in + 1, hidden, hidden, n], nn.ELU))
    if model == "node":
        return D.NODE(f)
    if model == "anode":
        return D.ANODE(f, augment_dim=n - 2)
    if model == "sonode":
        return D.SONODE(f)
    if model == "hbnode":
        return D.HBNODE(f)
    if model == "ghbnode":
        return D.GHBNODE(f, xi=xi)
    if model == "nesterovnode":
        return D.NesterovNODE(f, r=r)
    return D.GNesterovNODE(f, r=r, xi=xi)


class PointCloudTask(Task):
    """Nested circles, SmoothL1 on ±1 labels; accuracy is the sign agreement."""

    name = "pointcloud"
    loss = "smoothl1"
    defaults = TaskDefaults(epochs=100, lr=1e-2, batch_size=50, tol=1e-7)

    def build_model(self, model: str, **options) -> TaskModel:
        """The paper's point-cloud architecture; options: solver, rtol, atol, sensitivity,
        engine, dt, max_steps, ts (block) and r, xi (dynamics)."""
        key = check_model_name(model)
        unknown = set(options) - set(_BLOCK_KEYS) - {"r", "xi"}
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)} for build_model")
        n, hidden = WIDTHS[key]
        dyn = build_dynamics(key, n, hidden, r=options.pop("r", 3.0), xi=options.pop("xi", 2.0))
        block_opts = {k: v for k, v in options.items() if v is not None}
        block_opts.setdefault("rtol", self.defaults.tol)
        block_opts.setdefault("atol", self.defaults.tol)
        block = ODEBlock(dyn, **block_opts)
        if key in ("node", "anode"):
            encoder = InputAsPosition()
        else:
            encoder = InputWithVelocity(mlp([2, hidden, hidden, n], lambda: nn.Hardtanh(-5.0, 5.0)))
        head = nn.Sequential(nn.Linear(n, 1), nn.Tanh())
        return TaskModel(key, encoder, block, head)

    def datasets(self, seed: int = 0, data_dir: str | None = None):
        """The same 120 points train and evaluate (the paper fits the training set)."""
        data = point_cloud(seed=seed)
        return data, data
