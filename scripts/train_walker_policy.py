"""Train the walking policy the Walker2D generator ships with (reproducible, CPU only).

Augmented random search (Mania, Guy & Recht 2018, ARS V2-t) on a linear policy
``a = clip(M (o - μ) / σ, -1, 1)`` for gymnasium's Walker2d-v5, with μ, σ running
statistics of the observations seen. Each iteration samples ``directions`` perturbations
δ_j, runs one episode each at M ± ν δ_j, keeps the ``top`` best pairs and steps
``M += α / (top · σ_R) Σ (R⁺ - R⁻) δ``. Everything is seeded (numpy's default_rng(seed),
env.reset(seed=…)), so the same command on the same gymnasium/mujoco versions writes the
same weights. The result goes to python/nesterovnode/data/walker_policy.npz (arrays M,
mean, std and the training record).

    python scripts/train_walker_policy.py [--iterations 200] [--seconds 600] [--seed 0]

The shipped file is iteration 91 of `--seed 0` (`--iterations 92 --seconds 1e9`
reproduces it): evaluation return ≈ 3400-3550 over the full 1000 steps (steady walking),
about 6 minutes on one core.

Needs ``pip install "nesterovnode[walker]"``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "python" / "nesterovnode" / "data" / "walker_policy.npz"


class RunningStat:
    """Welford mean / variance of the observations."""

    def __init__(self, n: int):
        self.count = 0
        self.mean = np.zeros(n)
        self.m2 = np.zeros(n)

    def push_many(self, xs: np.ndarray) -> None:
        for x in xs:
            self.count += 1
            d = x - self.mean
            self.mean += d / self.count
            self.m2 += d * (x - self.mean)

    @property
    def std(self) -> np.ndarray:
        if self.count < 2:
            return np.ones_like(self.mean)
        return np.sqrt(np.maximum(self.m2 / (self.count - 1), 1e-8))


def episode(env, M, mean, std, seed: int, horizon: int, shift: float = 1.0):
    """(return without the alive bonus shift, observations) of one episode."""
    obs, _ = env.reset(seed=seed)
    total, seen = 0.0, []
    for _ in range(horizon):
        seen.append(obs)
        a = np.clip(M @ ((obs - mean) / std), -1.0, 1.0)
        obs, r, term, trunc, _ = env.step(a)
        total += r - shift  # ARS subtracts the alive bonus during training
        if term or trunc:
            break
    return total, np.asarray(seen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--seconds", type=float, default=600.0, help="stop after this wall time")
    p.add_argument("--directions", type=int, default=16)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.02)
    p.add_argument("--nu", type=float, default=0.03)
    p.add_argument("--horizon", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()

    import gymnasium as gym

    env = gym.make("Walker2d-v5")
    n_obs, n_act = env.observation_space.shape[0], env.action_space.shape[0]
    rng = np.random.default_rng(args.seed)
    M = np.zeros((n_act, n_obs))
    stat = RunningStat(n_obs)
    start = time.perf_counter()
    history = []
    for it in range(args.iterations):
        mean, std = stat.mean.copy(), stat.std.copy()
        deltas = rng.standard_normal((args.directions, n_act, n_obs))
        seeds = rng.integers(0, 2**31 - 1, size=args.directions)
        plus, minus = np.zeros(args.directions), np.zeros(args.directions)
        for j in range(args.directions):
            plus[j], o1 = episode(
                env, M + args.nu * deltas[j], mean, std, int(seeds[j]), args.horizon
            )
            minus[j], o2 = episode(
                env, M - args.nu * deltas[j], mean, std, int(seeds[j]), args.horizon
            )
            stat.push_many(o1)
            stat.push_many(o2)
        best = np.argsort(-np.maximum(plus, minus))[: args.top]
        sigma = np.concatenate([plus[best], minus[best]]).std() + 1e-8
        step = np.tensordot(plus[best] - minus[best], deltas[best], axes=1)
        M = M + args.alpha / (args.top * sigma) * step
        ret, obs = episode(env, M, stat.mean, stat.std, 10_000 + it, args.horizon, shift=0.0)
        history.append((it, ret, len(obs), time.perf_counter() - start))
        print(
            f"iter {it:4d}  return {ret:8.1f}  steps {len(obs):4d}  {history[-1][3]:.0f}s",
            flush=True,
        )
        np.savez(args.out, M=M, mean=stat.mean, std=stat.std, history=np.asarray(history))
        if time.perf_counter() - start > args.seconds:
            break


if __name__ == "__main__":
    main()
