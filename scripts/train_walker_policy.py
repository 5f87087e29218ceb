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
        [--init FILE] [--upright W] [--alive A] [--swing S] [--out FILE]

Plain ARS finds a fast gait that is crouched and leans forward (knees bent by 1.2 rad on
average, 6 standard deviations of the real rollouts' knee angle away from their mean). So
``--upright W`` fine-tunes a saved policy (``--init``) on the return less W × the posture
penalty per step (``posture_penalty``: height and torso, thigh and knee angles away from
upright, each joint free within ``--swing`` rad), with ``--alive`` paid per step alive
(else a crouched start scores below falling and ARS learns to fall), and writes the
iteration with the best penalised evaluation score. The shipped file is made in three
stages (all ``--seed 0``; stage 2 is about 10 minutes on one core, the others less):

    # 1. plain ARS: iteration 91, return ≈ 3400-3550, crouched
    python scripts/train_walker_policy.py --iterations 92 --seconds 1e9 --out stage1.npz
    # 2. upright: the best of 153 iterations (the last), posture penalty 3.4 -> 0.22
    python scripts/train_walker_policy.py --init stage1.npz --upright 2 --alive 10 \
        --iterations 153 --seconds 1e9 --out stage2.npz
    # 3. one step with the stride left free (±0.3 rad): the shipped policy
    python scripts/train_walker_policy.py --init stage2.npz --upright 2 --alive 10 \
        --swing 0.3 --iterations 1 --out walker_policy.npz

Stage 3 was run for 900 s and its first iteration scored best; later iterations walked
faster but more bent. What the stages buy (8 episodes of the generator, seed 0, against
the real rollouts; per feature, |mean difference| in real standard deviations and the
ratio of standard deviations): stage 1 7.3 and 0.25-3.0; stage 2 1.17 and 0.05-1.2 (a
stiff, barely bending left knee); stage 3 1.37 and 0.36-1.47. With the generator's action
noise the stage-3 walker falls after 271-577 steps (the real rollouts: 131-1000, 637 on
average); plain ARS walks the full 1000.

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


#: Walker2d's upright posture: torso height at reset, torso, thighs and knees straight
#: (observation indices 0 height, 1 torso angle, 2 / 5 thighs, 3 / 6 knees; the feet are
#: left free: they swing through ±0.6 rad in the real rollouts)
UPRIGHT_HEIGHT = 1.25
UPRIGHT_ANGLES = [1, 2, 3, 5, 6]
#: observations a fine-tuned policy's saved statistics count as
INIT_COUNT = 100_000


def posture_penalty(obs: np.ndarray, swing: float = 0.0) -> float:
    """Distance of a posture from upright: (z − 1.25)² + Σ max(0, |θ| − swing)² over the
    torso, thigh and knee angles θ. With ``swing`` > 0 a joint costs nothing within
    ±swing rad of straight, so a stride (thighs and knees swing through about ±0.2-0.3
    rad in the real rollouts) is free and only a bent posture pays."""
    bent = np.maximum(np.abs(obs[UPRIGHT_ANGLES]) - swing, 0.0)
    return float((obs[0] - UPRIGHT_HEIGHT) ** 2 + np.sum(bent**2))


def episode(env, M, mean, std, seed: int, horizon: int, shift: float = 1.0, upright=0.0, swing=0.0):
    """(return without the alive bonus shift and with ``upright`` × the posture penalty
    per step, observations) of one episode."""
    obs, _ = env.reset(seed=seed)
    total, seen = 0.0, []
    for _ in range(horizon):
        seen.append(obs)
        a = np.clip(M @ ((obs - mean) / std), -1.0, 1.0)
        obs, r, term, trunc, _ = env.step(a)
        # ARS subtracts the alive bonus during training; the posture term keeps the gait
        # upright (without it ARS finds a fast crouched gait, unlike the paper's rollouts)
        reward = r - shift
        if upright:  # (no posture computed in plain ARS's loop)
            reward -= upright * posture_penalty(obs, swing)
        total += reward
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
    p.add_argument("--init", help="start from this saved policy (.npz) instead of zeros")
    p.add_argument("--alive", type=float, default=10.0, help="reward per step alive with --upright")
    p.add_argument(
        "--upright", type=float, default=0.0, help="weight of the posture penalty per step"
    )
    p.add_argument("--swing", type=float, default=0.0, help="free band of each joint's angle (rad)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()

    import gymnasium as gym

    env = gym.make("Walker2d-v5")
    n_obs, n_act = env.observation_space.shape[0], env.action_space.shape[0]
    rng = np.random.default_rng(args.seed)
    M = np.zeros((n_act, n_obs))
    stat = RunningStat(n_obs)
    if args.init:  # fine-tune a saved policy: its weights and observation statistics
        saved = np.load(args.init)
        M = saved["M"].copy()
        stat.count = INIT_COUNT
        stat.mean = saved["mean"].copy()
        stat.m2 = saved["std"] ** 2 * (INIT_COUNT - 1)
    # ARS subtracts the alive bonus (1 per step) so that standing still does not pay. With
    # the posture term the return must instead pay for staying alive, or a crouched gait's
    # steps score below zero and ARS learns to fall at once: --alive adds to each step.
    shift = 1.0 - args.alive if args.upright else 1.0
    start = time.perf_counter()
    history, best_score = [], -np.inf
    for it in range(args.iterations):
        mean, std = stat.mean.copy(), stat.std.copy()
        deltas = rng.standard_normal((args.directions, n_act, n_obs))
        seeds = rng.integers(0, 2**31 - 1, size=args.directions)
        plus, minus = np.zeros(args.directions), np.zeros(args.directions)
        for j in range(args.directions):
            for sign, returns in ((1.0, plus), (-1.0, minus)):
                returns[j], seen = episode(
                    env,
                    M + sign * args.nu * deltas[j],
                    mean,
                    std,
                    int(seeds[j]),
                    args.horizon,
                    shift=shift,
                    upright=args.upright,
                    swing=args.swing,
                )
                stat.push_many(seen)
        best = np.argsort(-np.maximum(plus, minus))[: args.top]
        sigma = np.concatenate([plus[best], minus[best]]).std() + 1e-8
        step = np.tensordot(plus[best] - minus[best], deltas[best], axes=1)
        M = M + args.alpha / (args.top * sigma) * step
        ret, obs = episode(env, M, stat.mean, stat.std, 10_000 + it, args.horizon, shift=0.0)
        penalty = float(np.mean([posture_penalty(o, args.swing) for o in obs]))
        # the score kept: the return less the posture term (the return itself without it)
        score = ret - args.upright * penalty * len(obs)
        history.append((it, ret, len(obs), time.perf_counter() - start, penalty, score))
        print(
            f"iter {it:4d}  return {ret:8.1f}  steps {len(obs):4d}  posture {penalty:.3f}  "
            f"score {score:8.1f}  {history[-1][3]:.0f}s",
            flush=True,
        )
        # with the posture term the best iteration so far is the one written (its score
        # is not monotone in training); without it, every iteration (the last is kept)
        if score >= best_score or not args.upright:
            best_score = score
            np.savez(args.out, M=M, mean=stat.mean, std=stat.std, history=np.asarray(history))
        if time.perf_counter() - start > args.seconds:
            break


if __name__ == "__main__":
    main()
