"""What each model is: its state layout and vector field (MATH.md's table)."""

from .base import Constant, Dynamics, position, velocity
from .heavyball import GHBNODE, HBNODE
from .nesterov import GNesterovNODE, NesterovNODE, nesterov_k, nesterov_k_dot
from .node import ANODE, NODE
from .sonode import SONODE

#: The seven models by their lower-case names (as used by the CLI and results files).
MODELS = {
    "node": NODE,
    "anode": ANODE,
    "sonode": SONODE,
    "hbnode": HBNODE,
    "ghbnode": GHBNODE,
    "nesterovnode": NesterovNODE,
    "gnesterovnode": GNesterovNODE,
}

__all__ = [
    "ANODE",
    "GHBNODE",
    "GNesterovNODE",
    "HBNODE",
    "MODELS",
    "NODE",
    "SONODE",
    "Constant",
    "Dynamics",
    "NesterovNODE",
    "nesterov_k",
    "nesterov_k_dot",
    "position",
    "velocity",
]
