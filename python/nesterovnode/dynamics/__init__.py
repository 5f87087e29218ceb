"""What each model is: its state layout and vector field (MATH.md's table), and the
registry of the seven models by name (``registry.py``)."""

from .base import Constant, Dynamics, position, velocity
from .heavyball import GHBNODE, HBNODE
from .nesterov import GNesterovNODE, NesterovNODE, nesterov_k, nesterov_k_dot
from .node import ANODE, NODE
from .registry import MODEL_NAMES, MODELS, ModelSpec, check_model_name, make_dynamics
from .sonode import SONODE

__all__ = [
    "ANODE",
    "GHBNODE",
    "GNesterovNODE",
    "HBNODE",
    "MODELS",
    "MODEL_NAMES",
    "ModelSpec",
    "NODE",
    "SONODE",
    "Constant",
    "Dynamics",
    "check_model_name",
    "make_dynamics",
    "NesterovNODE",
    "nesterov_k",
    "nesterov_k_dot",
    "position",
    "velocity",
]
