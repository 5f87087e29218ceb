"""The Walker2D kinematic data set (Lechner & Hasani 2020, the ODE-LSTM walker data; the
paper's §4.3 / Fig. 7) and its protocol.

Format: one ``.npz`` file, ``rollouts.npz``, whose arrays ``rollout_000``, ``rollout_001``,
… are the rollouts, each ``[T, 17]`` (float64): the Walker2d observation at every control
step (qpos[1:] and qvel). ``nesterovnode data walker2d`` writes files of this format.

Protocol (``walker2d_splits``), every random choice drawn from ``numpy.random.default_rng``
seeded by ``seed`` (0 by default, the same for every model and training seed, so all runs
see one split):

1. split by rollout: a permutation of the sorted names, 75 % train / 10 % validation /
   15 % test (rounded down, the rest to train), so no rollout is in two parts;
2. drop about 10 % of the time steps of each rollout at random (each step after the first
   with probability ``drop``; never more than ``max_gap - 1`` in a row) and keep the times
   of the others: gaps of 1 to ``max_gap`` (6) steps, divided by 64 (``time_scale``);
3. cut windows of ``window`` (64) kept steps with stride ``stride`` (16): a rollout with K
   kept steps gives ``(K - window) // stride + 1`` windows (none when K < window);
4. the task is next-step prediction, MSE on the raw 17 features (no normalisation).

A window is ``x [window, 18]``: the 17 features and, last, the gap ``Δ_i = τ_i - τ_(i-1)``
to the previous kept step (0 for the first); its target ``y [window - 1, 17]`` holds the
features of steps 1 … window-1 (the ODE-RNN predicts step i from steps < i and the gap Δ_i).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .paths import DataUnavailableError, resolve_data_dir

FILE_NAME = "rollouts.npz"
#: Observed features per step (Walker2d's observation).
FEATURES = 17
#: Train / validation / test fractions of the rollouts.
FRACTIONS = (0.75, 0.10, 0.15)


@dataclass(frozen=True)
class WalkerProtocol:
    """The protocol's constants (the paper's / ODE-LSTM's values by default)."""

    window: int = 64
    stride: int = 16
    drop: float = 0.1
    max_gap: int = 6
    time_scale: float = 64.0
    seed: int = 0

    def __post_init__(self):
        if self.window < 2 or self.stride < 1 or self.max_gap < 1:
            raise ValueError(f"window >= 2, stride >= 1 and max_gap >= 1 needed, got {self}")
        if not 0.0 <= self.drop < 1.0:
            raise ValueError(f"drop must be in [0, 1), got {self.drop}")


@dataclass
class WalkerSplits:
    """The three parts as datasets and the record of how they were made."""

    train: TensorDataset
    valid: TensorDataset
    test: TensorDataset
    protocol: WalkerProtocol
    #: rollout names per part
    rollouts: dict[str, list[str]] = field(default_factory=dict)
    #: fraction of steps dropped over all rollouts
    dropped_fraction: float = 0.0

    def describe(self) -> dict:
        """What goes into results.json: protocol, rollouts per part, window counts."""
        p = self.protocol
        return {
            "protocol": {
                "window": p.window,
                "stride": p.stride,
                "drop": p.drop,
                "max_gap": p.max_gap,
                "time_scale": p.time_scale,
                "seed": p.seed,
            },
            "dropped_fraction": self.dropped_fraction,
            "windows": {k: len(getattr(self, k)) for k in ("train", "valid", "test")},
            "rollouts": self.rollouts,
        }


def find_walker_file(data_dir: str | os.PathLike | None = None) -> Path:
    """``rollouts.npz`` in ``data_dir`` (or ``data_dir/walker2d``; default data root:
    ``$NESTEROVNODE_DATA``, else ./data); a DataUnavailableError saying how to get it."""
    root = resolve_data_dir(data_dir)
    if root.is_file():
        return root
    for path in (root / FILE_NAME, root / "walker2d" / FILE_NAME):
        if path.is_file():
            return path
    raise DataUnavailableError(
        f"no Walker2D rollouts ({FILE_NAME}) in {root} or {root / 'walker2d'}; pass --data-dir "
        f"with the paper's rollouts, or generate a set with `nesterovnode data walker2d "
        f"--episodes 400 --out {root / 'walker2d'}` (needs pip install 'nesterovnode[walker]')"
    )


def read_rollouts(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The rollouts of an npz file by name (sorted), each checked to be ``[T, 17]``."""
    with np.load(path) as data:
        out = {k: np.asarray(data[k], dtype=np.float64) for k in sorted(data.files)}
    for name, arr in out.items():
        if arr.ndim != 2 or arr.shape[1] != FEATURES:
            raise ValueError(f"{path}: {name} has shape {arr.shape}; expected [T, {FEATURES}]")
    if not out:
        raise ValueError(f"{path} holds no rollouts")
    return out


def write_rollouts(path: str | os.PathLike, rollouts: list[np.ndarray]) -> Path:
    """Write rollouts as ``rollout_000`` … (the data set's format); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{f"rollout_{i:03d}": np.asarray(r) for i, r in enumerate(rollouts)})
    os.replace(tmp, path)
    return path


def split_rollouts(names: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
    """Names permuted and cut 75 / 10 / 15 % (train takes the rounding rest)."""
    order = [names[i] for i in rng.permutation(len(names))]
    n_valid = int(len(names) * FRACTIONS[1])
    n_test = int(len(names) * FRACTIONS[2])
    n_train = len(names) - n_valid - n_test
    return {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }


def kept_steps(length: int, drop: float, max_gap: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the steps kept: the first always, every other dropped with probability
    ``drop``, a step kept whenever ``max_gap - 1`` in a row were dropped before it."""
    u = rng.random(length)
    keep = []
    run = 0
    for i in range(length):
        if i > 0 and u[i] < drop and run < max_gap - 1:
            run += 1
            continue
        keep.append(i)
        run = 0
    return np.asarray(keep, dtype=np.int64)


def window_count(kept: int, window: int = 64, stride: int = 16) -> int:
    """Windows a rollout of ``kept`` steps gives: ``(kept - window) // stride + 1``."""
    return 0 if kept < window else (kept - window) // stride + 1


def windows(
    rollout: np.ndarray, protocol: WalkerProtocol, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``([n, window, 18], dropped)``: the windows of one rollout (features then gap)."""
    idx = kept_steps(len(rollout), protocol.drop, protocol.max_gap, rng)
    gaps = np.diff(idx, prepend=idx[0]).astype(np.float64) / protocol.time_scale
    seq = np.concatenate([rollout[idx], gaps[:, None]], axis=1)
    n = window_count(len(idx), protocol.window, protocol.stride)
    if n == 0:
        return np.zeros((0, protocol.window, FEATURES + 1)), len(rollout) - len(idx)
    starts = np.arange(n) * protocol.stride
    out = seq[starts[:, None] + np.arange(protocol.window)]
    out[:, 0, FEATURES] = 0.0  # the first step of a window has no gap before it
    return out, len(rollout) - len(idx)


def _dataset(parts: list[np.ndarray], protocol: WalkerProtocol) -> TensorDataset:
    x = np.concatenate(parts) if parts else np.zeros((0, protocol.window, FEATURES + 1))
    x = torch.from_numpy(x.astype(np.float32))
    return TensorDataset(x, x[:, 1:, :FEATURES].clone())


def walker2d_splits(
    data_dir: str | os.PathLike | None = None,
    protocol: WalkerProtocol | None = None,
    rollouts: dict[str, np.ndarray] | None = None,
) -> WalkerSplits:
    """The protocol above on the rollouts in ``data_dir`` (or the given ``rollouts``):
    train / validation / test ``TensorDataset``s of ``(x [N, window, 18], y [N, window-1,
    17])`` (float32) and the record of the split."""
    protocol = protocol or WalkerProtocol()
    if rollouts is None:
        rollouts = read_rollouts(find_walker_file(data_dir))
    rng = np.random.default_rng(protocol.seed)
    split = split_rollouts(sorted(rollouts), rng)
    dropped = total = 0
    parts: dict[str, list[np.ndarray]] = {}
    for part in ("train", "valid", "test"):
        parts[part] = []
        for name in split[part]:
            w, d = windows(rollouts[name], protocol, rng)
            parts[part].append(w)
            dropped += d
            total += len(rollouts[name])
    return WalkerSplits(
        train=_dataset(parts["train"], protocol),
        valid=_dataset(parts["valid"], protocol),
        test=_dataset(parts["test"], protocol),
        protocol=protocol,
        rollouts=split,
        dropped_fraction=dropped / max(total, 1),
    )


def feature_statistics(rollouts: dict[str, np.ndarray] | list[np.ndarray]) -> tuple:
    """Per-feature ``(mean [17], std [17])`` over all steps of all rollouts."""
    arrays = list(rollouts.values()) if isinstance(rollouts, dict) else list(rollouts)
    allx = np.concatenate(arrays)
    return allx.mean(axis=0), allx.std(axis=0)
