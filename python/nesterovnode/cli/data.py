"""The ``data`` subcommand: data generators.

nesterovnode data walker2d --episodes 400 --out DIR [--seed 0] [--max-steps 1000]
"""

from __future__ import annotations

from pathlib import Path


def cmd_walker2d(args) -> int:
    import numpy as np

    from ..data.walker2d import feature_statistics, read_rollouts
    from ..data.walker2d_generate import WalkerUnavailableError, generate_walker2d

    try:
        path = generate_walker2d(
            args.out, args.episodes, seed=args.seed, max_steps=args.max_steps, noise=args.noise
        )
    except WalkerUnavailableError as exc:
        raise ValueError(str(exc)) from exc  # a usage error: message, exit status 2
    rollouts = read_rollouts(path)
    lengths = np.array([len(r) for r in rollouts.values()])
    mean, std = feature_statistics(rollouts)
    print(
        f"{path}: {len(rollouts)} rollouts, {lengths.sum()} steps, lengths "
        f"{lengths.min()}-{lengths.max()} (mean {lengths.mean():.0f})"
    )
    print("feature mean:", np.array2string(mean, precision=2, max_line_width=120))
    print("feature std: ", np.array2string(std, precision=2, max_line_width=120))
    return 0


def add_parsers(sub) -> None:
    """Add ``data walker2d`` to the CLI's subparsers."""
    p = sub.add_parser("data", help="generate data sets (walker2d)")
    dsub = p.add_subparsers(dest="dataset", required=True)
    w = dsub.add_parser(
        "walker2d",
        help="Walker2d-v5 rollouts of the shipped walking policy (needs nesterovnode[walker])",
    )
    w.add_argument("--episodes", type=int, default=400, help="rollouts to write (default 400)")
    w.add_argument("--out", type=Path, required=True, help="directory for rollouts.npz")
    w.add_argument("--seed", type=int, default=0, help="episode seeds start here (default 0)")
    w.add_argument("--max-steps", type=int, default=1000, help="steps per episode at most")
    w.add_argument("--noise", type=float, default=0.1, help="action noise scale (default 0.1)")
    w.set_defaults(func=cmd_walker2d)
