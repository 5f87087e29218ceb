"""Generate Walker2D rollouts in the data set's format (``data.walker2d``) from gymnasium's
Walker2d-v5 (MuJoCo) with the walking policy that ships with the package.

The policy (``walker_policy.npz`` beside this file) is linear on normalised observations,
``a = clip(M (o - μ) / σ, -1, 1)``, trained offline by augmented random search with
``scripts/train_walker_policy.py`` (seeded; three stages, the last two fine-tuning the
gait upright, as the real rollouts walk). Per feature, its rollouts' means lie within 1.4
standard deviations of the real set's and their spreads within a factor 3
(``tests/tasks/test_walker2d.py`` checks 1.5 and 3.5). A rollout
is the 17-dimensional observation at every step of one episode (at most ``max_steps``,
1000 as in gymnasium's time limit), float64, until the walker falls or time runs out.
Episodes are reset with seeds ``seed, seed + 1, …`` and the policy acts with Gaussian
action noise of scale ``noise`` (drawn from ``default_rng(seed)``), so a (seed, episodes)
pair always gives the same rollouts on the same gymnasium/mujoco versions, and rollouts
differ from one another as the paper's (trained-policy) rollouts do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .walker2d import FILE_NAME, write_rollouts

POLICY_FILE = Path(__file__).with_name("walker_policy.npz")
ENV_ID = "Walker2d-v5"


class WalkerUnavailableError(ImportError):
    """gymnasium or mujoco is not installed."""


def require_gymnasium():
    """The gymnasium module with MuJoCo; an error naming the extra to install otherwise."""
    try:
        import gymnasium
        import mujoco  # noqa: F401
    except ImportError as exc:
        raise WalkerUnavailableError(
            f"generating Walker2D rollouts needs gymnasium with MuJoCo ({exc}); install it "
            f'with: pip install "nesterovnode[walker]"  (or pip install "gymnasium[mujoco]")'
        ) from exc
    return gymnasium


def load_policy(path: str | os.PathLike = POLICY_FILE) -> dict[str, np.ndarray]:
    """The shipped linear policy: ``M [6, 17]``, ``mean [17]``, ``std [17]``."""
    with np.load(path) as data:
        return {k: np.asarray(data[k]) for k in ("M", "mean", "std")}


def act(policy: dict[str, np.ndarray], obs: np.ndarray) -> np.ndarray:
    """``clip(M (o - μ) / σ, -1, 1)``."""
    return np.clip(policy["M"] @ ((obs - policy["mean"]) / policy["std"]), -1.0, 1.0)


def generate_rollouts(
    episodes: int,
    seed: int = 0,
    max_steps: int = 1000,
    noise: float = 0.1,
    policy: dict[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """``episodes`` rollouts ``[T, 17]`` (float64) of the policy in Walker2d-v5."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    gym = require_gymnasium()
    policy = load_policy() if policy is None else policy
    rng = np.random.default_rng(seed)
    env = gym.make(ENV_ID, max_episode_steps=max_steps)
    out = []
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            seen = [obs]
            for _ in range(max_steps - 1):
                a = act(policy, obs) + noise * rng.standard_normal(policy["M"].shape[0])
                obs, _, term, trunc, _ = env.step(np.clip(a, -1.0, 1.0))
                if term or trunc:
                    break
                seen.append(obs)
            out.append(np.asarray(seen, dtype=np.float64))
    finally:
        env.close()
    return out


def generate_walker2d(out_dir: str | os.PathLike, episodes: int, seed: int = 0, **options) -> Path:
    """Write ``episodes`` rollouts to ``out_dir/rollouts.npz``; returns the file."""
    rollouts = generate_rollouts(episodes, seed=seed, **options)
    return write_rollouts(Path(out_dir) / FILE_NAME, rollouts)
