"""A task bundles a data set, the paper's model builders and a metric.

Every task model has the same shape, ``input -> encoder -> ODEBlock -> head``:

- the encoder maps the input x to the block's initial condition ``(h0, v0)`` (``v0`` is
  None for first-order models; for second-order ones it comes from the paper's initial
  velocity network);
- the ``ODEBlock`` integrates the model's dynamics from t0 to T and reads out h(T);
- the head maps h(T) to the output (a score for the point cloud, 10 logits for images).
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

import torch
from torch import nn

from ..dynamics.registry import check_model_name
from ..dynamics.registry import make_dynamics as _make
from ..layers import ODEBlock
from ..solve import SolveConfig
from ..solve.config import FIELDS as SOLVE_FIELDS

#: build_model options that configure the ODEBlock (a SolveConfig, its fields, the output
#: times), and those that configure the dynamics.
BLOCK_OPTIONS = ("config", *SOLVE_FIELDS, "ts")
DYNAMICS_OPTIONS = ("r", "xi", "learn_xi", "sigma")


def make_dynamics(
    model: str,
    f: nn.Module,
    *,
    augment_dim: int = 0,
    r: float = 3.0,
    xi: float = 0.0,
    learn_xi: bool = False,
    sigma: nn.Module | None = None,
) -> nn.Module:
    """The dynamics of ``model`` (MATH.md's table) around the network ``f``, built by the
    model registry (``dynamics.registry``): ``augment_dim`` is ANODE's p; r is the Nesterov
    factor; ξ and σ apply to the models that have them (each model takes the options it
    accepts and ignores the rest)."""
    return _make(model, f, augment_dim=augment_dim, r=r, xi=xi, learn_xi=learn_xi, sigma=sigma)


class TaskModel(nn.Module):
    """``x -> encoder -> ODEBlock -> head``; ``stats`` are the last solve's statistics."""

    def __init__(self, name: str, encoder: nn.Module, block: ODEBlock, head: nn.Module):
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.block = block
        self.head = head

    @property
    def dynamics(self) -> nn.Module:
        return self.block.dynamics

    @property
    def stats(self):
        return self.block.stats

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The solver state at t0 for input x (what ``solve`` starts from)."""
        h0, v0 = self.encoder(x)
        ts = self.block.ts.to(dtype=h0.dtype, device=h0.device)
        return self.dynamics.initial_state(ts[0], h0, v0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """h(T), the features the head sees."""
        h0, v0 = self.encoder(x)
        return self.block(h0, v0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InputAsPosition(nn.Module):
    """Encoder of first-order models: ``h0 = x``, no velocity."""

    def forward(self, x: torch.Tensor):
        return x, None


class InputWithVelocity(nn.Module):
    """Encoder of second-order models on vectors: ``h0 = x``, ``v0 = velocity(x)``."""

    def __init__(self, velocity: nn.Module):
        super().__init__()
        self.velocity = velocity

    def forward(self, x: torch.Tensor):
        return x, self.velocity(x)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (what the paper's Table 1 counts)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class TaskDefaults:
    """The paper's protocol for a task (overridable from the CLI)."""

    epochs: int
    lr: float
    batch_size: int
    #: rtol = atol of the task's solves (every other solve default is SolveConfig's)
    tol: float
    ts: tuple[float, float] = (1.0, 2.0)
    #: the paper's protocol (``--paper``): epochs and seeds
    paper_epochs: int | None = None
    paper_seeds: int = 1
    #: the paper's rtol = atol (``--paper``), when the CPU default ``tol`` is looser
    paper_tol: float | None = None
    #: floating-point type of the model and data in training: "float32" or "float64"
    dtype: str = "float32"
    #: the paper's protocol's floating-point type (``--paper``), when ``dtype`` differs:
    #: float64 wherever ``paper_tol`` is below what float32 resolves (ε ≈ 1.2e-7)
    paper_dtype: str | None = None
    #: ``--compile auto`` compiles the rk engine's steps on the CPU for runs of at least
    #: this many iterations (None: never; set where it was measured to pay)
    compile_after: int | None = None
    #: ... and its first-step rule too (one call per solve) for runs of at least this
    #: many; shorter ones run the rule eagerly (None: whenever the steps compile)
    compile_rule_after: int | None = None

    def paper_protocol(self) -> dict:
        """What ``--paper`` sets unless given: ``{"seeds", "epochs", "tol", "dtype"}``."""
        return {
            "seeds": self.paper_seeds,
            "epochs": self.paper_epochs or self.epochs,
            "tol": self.paper_tol or self.tol,
            "dtype": self.paper_dtype or self.dtype,
        }

    @property
    def solve(self) -> SolveConfig:
        """The task's solve protocol: SolveConfig's defaults at the task's tolerance."""
        return SolveConfig(rtol=self.tol, atol=self.tol)


class Task(abc.ABC):
    """Data + the paper's model builders + loss and metric."""

    name: str = ""
    #: "smoothl1" (regression on ±1 labels) or "cross_entropy" (classification)
    loss: str = "cross_entropy"
    #: what ``correct(output, target) / n`` measures; a run records it as ``metric`` and
    #: ``"test_" + metric`` ("accuracy"; "mse" for regression tasks, lower is better)
    metric: str = "accuracy"
    defaults: TaskDefaults
    #: (ξ, learnable) per model that carries a ξ term in this task (others: ξ = 0).
    xi_defaults: dict[str, tuple[float, bool]] = {}
    #: relative cost of one run per model at the task's defaults (measured; models not
    #: listed count 1): a parallel comparison hands out the costliest runs first, so that
    #: its workers finish together instead of one waiting on a run started last
    run_cost: dict[str, float] = {}
    #: whether a run hands back its learned features h(T) for a comparison's feature plot
    #: (tasks whose features are 2-D points: the point cloud)
    draws_features: bool = False
    #: epochs after which a run keeps its learned features h(T) besides its final ones,
    #: for the task's feature plot (``runs.features``; () for none): a comparison draws
    #: those before its last epoch beside its final features
    feature_epochs: tuple[int, ...] = ()

    def split_options(self, model: str, options: dict) -> tuple[str, dict, dict]:
        """``(key, dynamics options, block options)`` from build_model's options: unknown
        names refused, ξ defaulted per model, the block's ``config`` the task's protocol
        (``defaults.solve``, or the given ``config``) with the given SolveConfig fields."""
        key = check_model_name(model)
        unknown = set(options) - set(BLOCK_OPTIONS) - set(DYNAMICS_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown options {sorted(unknown)} for build_model; valid: "
                f"{', '.join(BLOCK_OPTIONS + DYNAMICS_OPTIONS)}"
            )
        given = {k: v for k, v in options.items() if v is not None}
        dyn = {k: given.pop(k) for k in DYNAMICS_OPTIONS if k in given}
        xi0, learn0 = self.xi_defaults.get(key, (0.0, False))
        dyn.setdefault("xi", xi0)
        dyn.setdefault("learn_xi", learn0)
        config = given.pop("config", None) or self.defaults.solve
        changes = {k: given.pop(k) for k in SOLVE_FIELDS if k in given}
        block = {"ts": given.pop("ts", self.defaults.ts), "config": config.replace(**changes)}
        return key, dyn, block

    @abc.abstractmethod
    def build_model(self, model: str, **options) -> TaskModel:
        """The paper's architecture for ``model``; ``options`` go to the ODEBlock
        (solver, rtol, atol, sensitivity, engine…) or the dynamics (r, xi…)."""

    @abc.abstractmethod
    def datasets(self, seed: int = 0, data_dir: str | None = None):
        """``(train, test)`` as ``torch.utils.data.Dataset``s (test may be None)."""

    def data_description(self, data_dir: str | None = None) -> dict | None:
        """What results.json records about the data (a split, a protocol), or None."""
        return None

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "smoothl1":
            return nn.functional.smooth_l1_loss(
                output.reshape(target.shape), target.to(output.dtype)
            )
        return nn.functional.cross_entropy(output, target)

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Number of correct predictions in a batch (a tensor, to avoid a sync per batch)."""
        if self.loss == "smoothl1":
            return ((output.reshape(target.shape) > 0) == (target > 0)).sum()
        return (output.argmax(dim=-1) == target).sum()


TASKS = {
    "pointcloud": "nesterovnode.tasks.pointcloud:PointCloudTask",
    "mnist": "nesterovnode.tasks.images:MNISTTask",
    "cifar10": "nesterovnode.tasks.images:CIFAR10Task",
    "walker2d": "nesterovnode.tasks.walker2d:Walker2DTask",
}


def get_task(name: str, **kwargs) -> Task:
    """A task by name; ValueError listing the valid names otherwise."""
    key = str(name).lower()
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    module, _, cls = TASKS[key].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
