"""A run's identity: what it trains (task, model, optimiser, data) and how it solves (one
``SolveConfig``), and how a saved identity is read back.

``TrainConfig.solve`` is the run's ``SolveConfig``: given whole, or as changes to the
task's (``{"solver": "RK4", "dt": 0.1}``; ``"tol"`` sets rtol = atol), or None for the
task's own (``TaskDefaults.solve``). ``resolved(task)`` turns it into the one
``SolveConfig`` the run's model solves with; the run's identity (``identity()``, saved in
every checkpoint and, without model and seed, in a comparison's results.json) carries it
as ``"solve": SolveConfig.as_dict()``.

Runs saved before a run carried a SolveConfig have a flat identity (``solver``, ``tol``,
``sensitivity``, ``engine`` at the top, ``dt``/``options``/``max_steps`` among the
``model_options``). ``read_identity`` reads either layout as today's, so such runs and
comparisons still resume; runs saved before the dtype was recorded read as float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from ..solve import SolveConfig
from ..solve.config import FIELDS as SOLVE_FIELDS
from ..tasks import Task, TaskModel
from .compiling import check_setting

#: The floating-point types a run may train in (``TrainConfig.dtype``).
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The dtype of runs saved before the dtype was recorded (every task trained in float32).
LEGACY_DTYPE = "float32"
#: The solve fields of the flat identity of runs saved before ``TrainConfig.solve``.
LEGACY_SOLVE_KEYS = ("solver", "tol", "sensitivity", "engine")


@dataclass
class TrainConfig:
    """What a run is: the task, the model, the optimiser, the data and the solve.

    ``None`` fields take the task's paper defaults (``task.defaults``); ``solve`` is a
    ``SolveConfig``, a mapping of changes to the task's (SolveConfig field names, and
    ``"tol"`` for rtol = atol), or None for the task's. ``model_options`` go to the
    dynamics (r, xi, ...); solve options belong in ``solve``.
    """

    task: str = "pointcloud"
    model: str = "nesterovnode"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    solve: SolveConfig | Mapping[str, Any] | None = None
    device: str = "cpu"
    seed: int = 0
    data_dir: str | None = None
    evaluate: bool = True  #: test accuracy at the end of each epoch (when a test set exists)
    subset: int | None = None  #: train on the first N samples only (quick checks)
    test_subset: int | None = None  #: evaluate on the first N test samples only
    max_iters: int | None = None  #: stop each epoch after N iterations (quick timings)
    download: bool = False  #: fetch missing data files (image tasks; needs torchvision)
    num_workers: int = 0
    #: "float32" or "float64": the model and data in training (None: the task's default)
    dtype: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  #: r, xi, …
    #: compiled ODE steps: "auto", "on" or "off" (``runs/compiling.py``)
    compile: str = "auto"

    def resolved(self, task: Task) -> TrainConfig:
        """A copy with every default filled in from the task and ``solve`` a
        ``SolveConfig`` (built, so its names and tolerances are checked, here once)."""
        d = task.defaults
        out = replace(self, task=task.name, model_options=dict(self.model_options))
        out.epochs = d.epochs if self.epochs is None else self.epochs
        out.lr = d.lr if self.lr is None else self.lr
        out.batch_size = d.batch_size if self.batch_size is None else self.batch_size
        misplaced = sorted(set(self.model_options) & set(SOLVE_FIELDS))
        if misplaced:
            raise ValueError(
                f"model_options {', '.join(misplaced)}: solve options go in solve, e.g. "
                f"TrainConfig(solve={{{misplaced[0]!r}: ...}}); model_options are the "
                f"dynamics' (r, xi, ...)"
            )
        out.solve = solve_for(d.solve, self.solve)
        for name in ("epochs", "batch_size"):
            if getattr(out, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(out, name)}")
        if not out.lr > 0:
            raise ValueError(f"lr must be > 0, got {out.lr}")
        for name in ("subset", "test_subset", "max_iters"):
            value = getattr(out, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None for all), got {value}")
        out.dtype = d.dtype if self.dtype is None else self.dtype
        if out.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {out.dtype!r}")
        check_setting(out.compile)
        return out

    def identity(self) -> dict[str, Any]:
        """The fields that make two runs the same experiment (not epochs: a run may be
        extended; not device or data location), ``solve`` as ``SolveConfig.as_dict()``
        (before ``resolved``: as given). Runs compare by the identity of their resolved
        configs."""
        d = asdict(self)  # the SolveConfig, a dataclass, becomes its as_dict()
        # compile: compiled steps give the eager numbers to round-off
        for k in ("epochs", "device", "data_dir", "num_workers", "evaluate", "download", "compile"):
            d.pop(k)
        # Absent unless set, so runs saved before these options existed still resume.
        for k in ("test_subset", "max_iters", "dtype"):
            if d[k] is None:
                d.pop(k)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config a run folder's ``config.json`` holds (``asdict`` of a resolved
        config), in today's layout or the flat one of runs saved before ``solve``."""
        d = read_identity(data)
        if isinstance(d.get("solve"), Mapping):
            d["solve"] = SolveConfig(**d["solve"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def solve_for(
    task_solve: SolveConfig, given: SolveConfig | Mapping[str, Any] | None
) -> SolveConfig:
    """The SolveConfig of a run: ``given`` whole, the task's (``task_solve``) for None, or
    the task's with the changes of a mapping (None values left out; ``"tol"`` sets rtol
    and atol unless they are given). An unknown name raises, listing SolveConfig's."""
    if given is None:
        return task_solve
    if isinstance(given, SolveConfig):
        return given
    changes = {k: v for k, v in dict(given).items() if v is not None}
    tol = changes.pop("tol", None)
    if tol is not None:
        changes.setdefault("rtol", tol)
        changes.setdefault("atol", tol)
    return task_solve.replace(**changes)


def read_identity(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved run identity (or config) in today's layout: the flat solve fields of runs
    saved before ``TrainConfig.solve`` gathered into ``"solve"`` (with SolveConfig's
    defaults for the fields they did not record, which those runs solved with), and the
    dtype of runs saved before it was recorded (float32)."""
    d = dict(saved)
    if "solve" not in d and any(k in d for k in LEGACY_SOLVE_KEYS):
        options = dict(d.get("model_options") or {})
        solve = SolveConfig().as_dict()  # unvalidated: a saved identity compares as saved
        solve.update({k: options.pop(k) for k in SOLVE_FIELDS if k in options})
        for key in ("solver", "sensitivity", "engine"):
            solve[key] = d.pop(key, solve[key])
        tol = d.pop("tol", None)
        if tol is not None:
            solve["rtol"] = solve["atol"] = tol
        d["solve"] = solve
        if "model_options" in d:
            d["model_options"] = options
    d["dtype"] = d.get("dtype", LEGACY_DTYPE)
    return d


def engine_of(solve: Mapping[str, Any]) -> str | None:
    """The engine a saved or asked solve (``SolveConfig.as_dict()``) runs on: its
    ``engine``, or for None (the default) the engine the solver resolves to; None when it
    cannot be resolved here."""
    if solve.get("engine") is not None:
        return solve["engine"]
    try:
        return SolveConfig(**solve).resolve().engine.name
    except Exception:  # noqa: BLE001 - an identity that does not resolve compares as saved
        return None


def comparable(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A run identity with its engine resolved (None -> the engine that runs), so a run
    saved with the default engine and one asked for by that engine's name are the same."""
    solve = identity.get("solve")
    if not isinstance(solve, Mapping):
        return dict(identity)
    return {**identity, "solve": {**solve, "engine": engine_of(solve)}}


def dtype_hint(saved: dict[str, Any], asked: dict[str, Any]) -> str:
    """The way to resume a run saved in another dtype (older runs are float32)."""
    if saved.get("dtype") != asked.get("dtype"):
        return (
            f"; it was trained in {saved.get('dtype')} (runs saved before the dtype was "
            f"recorded are {LEGACY_DTYPE}): pass --dtype {saved.get('dtype')} "
            f"(dtype={saved.get('dtype')!r}) to resume it"
        )
    return ""


def build_model(
    task: Task, model: str, solve: SolveConfig, model_options: Mapping[str, Any]
) -> TaskModel:
    """The task's ``model`` solving with ``solve``, its dynamics with ``model_options``
    (a run's, or a saved identity's)."""
    return task.build_model(model, config=solve, **model_options)


__all__ = [
    "DTYPES",
    "LEGACY_DTYPE",
    "TrainConfig",
    "build_model",
    "comparable",
    "dtype_hint",
    "engine_of",
    "read_identity",
    "solve_for",
]
