"""Modules that moved: importing an old path fails with the new one in the message.

A finder at the end of ``sys.meta_path`` is asked only after the normal import found
nothing, so it costs nothing for modules that exist.
"""

from __future__ import annotations

import importlib.abc
import sys

#: old module -> where its contents live now
MOVED = {
    "nesterovnode.training": "nesterovnode.runs.training",
    "nesterovnode.comparison": "nesterovnode.runs.comparison",
    "nesterovnode.plots": "nesterovnode.plotting",
    "nesterovnode.cli_solvers": "nesterovnode.cli.solvers (library code: nesterovnode.diagnostics)",
    "nesterovnode.solve.engine": "nesterovnode.solve.engines.base",
    "nesterovnode.solve.bridge": "nesterovnode.solve.engines.external",
    "nesterovnode.solve.torch_engine": "nesterovnode.solve.engines.torchdiffeq",
    "nesterovnode.solve.scipy_engine": "nesterovnode.solve.engines.scipy",
    "nesterovnode.solve.julia_engine": "nesterovnode.solve.engines.julia",
    "nesterovnode.solve.rk_engine": "nesterovnode.solve.engines.rk",
    "nesterovnode.solve.rk": "nesterovnode.solve.engines.rk.step / .loop / .controller",
    "nesterovnode.solve.tableaux": "nesterovnode.solve.engines.rk.tableaux",
    "nesterovnode.solve.graphs": "nesterovnode.solve.engines.rk.graphs",
}


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            raise ModuleNotFoundError(
                f"{fullname} has moved: import it from {MOVED[fullname]}", name=fullname
            )
        return None


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
