"""The one model registry: the seven models by name, in the paper's order (Table 1), with
their classes and the options each accepts.

``MODELS[name]`` is a ``ModelSpec``; ``MODEL_NAMES`` the names in order (as the CLI and
results files use them); ``check_model_name`` normalises a name or lists the valid ones;
``make_dynamics(name, f, **options)`` builds the model around the network ``f`` with the
options it accepts (options that apply to other models only are ignored, so a task may
pass one set of options to every model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .heavyball import GHBNODE, HBNODE
from .nesterov import GNesterovNODE, NesterovNODE
from .node import ANODE, NODE
from .sonode import SONODE


@dataclass(frozen=True)
class ModelSpec:
    """A model: its name, its class and the keyword options its constructor takes beyond
    the network ``f`` (``augment_dim``: ANODE's p; ``xi``/``learn_xi``: the damping ξ;
    ``sigma``: the generalised models' σ; ``r``: the Nesterov factor)."""

    name: str
    cls: type[nn.Module]
    options: tuple[str, ...] = ()
    #: the state carries a momentum axis ``[B, 2, *D]``
    second_order: bool = False


#: The seven models by their lower-case names, in the paper's order (Table 1).
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("node", NODE),
        ModelSpec("anode", ANODE, ("augment_dim",)),
        ModelSpec("sonode", SONODE, second_order=True),
        ModelSpec("hbnode", HBNODE, ("xi", "learn_xi"), second_order=True),
        ModelSpec("ghbnode", GHBNODE, ("xi", "learn_xi", "sigma"), second_order=True),
        ModelSpec("nesterovnode", NesterovNODE, ("r", "xi", "learn_xi"), second_order=True),
        ModelSpec(
            "gnesterovnode", GNesterovNODE, ("r", "xi", "learn_xi", "sigma"), second_order=True
        ),
    )
}

#: Model names in the paper's order, as used by the CLI and results files.
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: Every option some model accepts.
MODEL_OPTIONS: tuple[str, ...] = tuple(
    dict.fromkeys(o for spec in MODELS.values() for o in spec.options)
)


def check_model_name(name: str) -> str:
    """Lower-case model name; a ValueError listing the valid names otherwise."""
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    return key


def make_dynamics(name: str, f: nn.Module, **options: Any) -> nn.Module:
    """The dynamics of model ``name`` around the network ``f``. Options the model accepts
    are passed on (None: the class's default); options of other models are ignored; names
    no model accepts are refused."""
    spec = MODELS[check_model_name(name)]
    unknown = set(options) - set(MODEL_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown model options {sorted(unknown)}; valid: {', '.join(MODEL_OPTIONS)}"
        )
    kwargs = {k: v for k, v in options.items() if k in spec.options and v is not None}
    return spec.cls(f, **kwargs)


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "MODEL_OPTIONS",
    "ModelSpec",
    "check_model_name",
    "make_dynamics",
]
