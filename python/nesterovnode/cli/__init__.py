"""The ``nesterovnode`` command: parse arguments, call the library, print, write files.

nesterovnode list
nesterovnode compare pointcloud [--models ...] [--epochs N] [--seeds K] [--out DIR] [--resume]
nesterovnode train pointcloud --model nesterovnode [--epochs N] [--out DIR] [--resume]
nesterovnode train mnist --model gnesterovnode --data-dir DIR [--download] [--device cuda]
                         [--subset N] [--test-subset N] [--max-iters N]
torchrun --nproc_per_node=K -m nesterovnode.cli train mnist ...   (DDP, one GPU per process)
nesterovnode solvers compare --task pointcloud --model NAME --solvers DP5 scipy:Radau ...
nesterovnode stiffness --task pointcloud --models node hbnode nesterovnode
nesterovnode data walker2d --episodes 400 --out DIR

One module per group of subcommands, each adding its parsers (``add_parsers``):
``runs`` (train, compare), ``data`` (data generators), ``solvers`` (list, solvers compare,
stiffness); ``args`` holds the argument types they share. ``python -m nesterovnode`` and
``python -m nesterovnode.cli`` run ``main``.
"""

from __future__ import annotations

import argparse
import sys

from . import data, runs, solvers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nesterovnode",
        description="Momentum neural ODEs (NODE, ANODE, SONODE, HBNODE, GHBNODE, NesterovNODE, "
        "GNesterovNODE) on solver engines chosen by name.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"nesterovnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    solvers.add_list_parser(sub)
    runs.add_parsers(sub)
    solvers.add_parsers(sub)
    data.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit status 0; 2 for a usage or data error (the message on
    stderr, no traceback); 130 on Ctrl-C."""
    from ..data.paths import DataUnavailableError
    from ..runs.cluster import ClusterError  # imports no Ray
    from ..runs.distributed import DeviceUnavailableError, shutdown_distributed
    from ..solve.errors import EngineNotInstalledError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)  # handlers may return their results for library use
        return rc if isinstance(rc, int) else 0
    except KeyboardInterrupt:
        return 130  # checkpoints are written atomically; the message says how to resume
    except (
        ValueError,
        FileExistsError,
        FileNotFoundError,
        DataUnavailableError,
        DeviceUnavailableError,
        EngineNotInstalledError,
        ClusterError,
    ) as exc:
        print(f"nesterovnode: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed()  # the DDP process group, when a command joined one


__all__ = ["build_parser", "main"]
