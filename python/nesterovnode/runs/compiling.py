"""Whether a run's ODE steps are compiled (the rk engine's ``compile`` option).

``TrainConfig.compile``: "on" (each solve compiled whole: the first-step rule and the
adaptive loop, forward and adjoint), "steps" (the adaptive steps, called one by one from
the host's loop; the first-step rule, one call per solve, eager), "off", or "auto" (the
default): compiled on the CPU when the task says compilation pays
(``TaskDefaults.compile_after``: a number of iterations) and the run has at least that
many iterations left; whole solves (the first-step rule as well) from
``TaskDefaults.compile_rule_after`` iterations on. A model compiles in
``FIRST_RUN_SECONDS`` on a machine's first run, in seconds with a warm Inductor cache;
each iteration then saves the difference between an eager and a compiled step
(benchmarks/PERFORMANCE.md). Compiled steps give the eager numbers to round-off, so the
setting is not part of a run's identity (a run may resume with another).
"""

from __future__ import annotations

import torch
from torch import nn

from ..solve import SolveConfig

SETTINGS = ("auto", "on", "steps", "off")
#: seconds a model's compilation takes on a machine's first run (empty Inductor cache, its
#: precompiled headers built by the first model), by ``compile`` value: every step, or
#: the adaptive steps only (the point cloud's main job, benchmarks/PERFORMANCE.md)
FIRST_RUN_SECONDS = {True: "20-45", "steps": "10-30"}


def check_setting(setting: str) -> None:
    """Raise unless ``setting`` is one of ``SETTINGS``."""
    if setting not in SETTINGS:
        raise ValueError(f"compile must be one of {', '.join(SETTINGS)}, got {setting!r}")


def compile_value(
    setting: str,
    device: torch.device,
    iterations: int,
    after: int | None,
    rule_after: int | None,
) -> bool | str:
    """The rk engine's ``compile`` option for a run of ``iterations`` (left) on
    ``device``: True, "steps" or False. Under "auto": compiled on the CPU from ``after``
    iterations on (None: never), the first-step rule too from ``rule_after`` on (None:
    whenever the steps are)."""
    check_setting(setting)
    if setting != "auto":
        return {"on": True, "steps": "steps", "off": False}[setting]
    if device.type != "cpu" or after is None or iterations < after:
        return False
    return "steps" if rule_after is not None and iterations < rule_after else True


def compile_steps(model: nn.Module, setting: str, value) -> bool:
    """Set ``compile=value`` on every ODE block of ``model`` (every module with a
    ``SolveConfig`` as its ``config``) solved by the rk engine whose options do not set it
    already; True when some block compiles. "on" with a block on another engine is an
    error (auto leaves such blocks as they are)."""
    compiled = False
    for block in model.modules():
        # ODE blocks, and any module that solves with its own SolveConfig (the ODE-RNN)
        config = getattr(block, "config", None)
        if not isinstance(config, SolveConfig) or "compile" in config.options:
            continue
        engine = config.resolve().engine.name
        if engine != "rk":
            if setting in ("on", "steps"):
                raise ValueError(
                    f"--compile {setting} applies to the rk engine's steps; this run solves on "
                    f"{engine}: drop --compile or choose --engine rk"
                )
            continue
        if value:
            block.config = config.replace(options={**config.options, "compile": value})
            compiled = True
    return compiled
