"""The rk engine vs the SciPy engine on a point-cloud model: NFE and time, forward + backward.

    .venv/bin/python benchmarks/solvers.py [--model nesterovnode] [--tol 1e-7] [--repeats 3]

For each solver both engines offer (DP5, BS3, DP8) one forward solve of the whole point
cloud (120 points) and one adjoint backward pass of L = sum(h(T)²); prints NFE and the best
wall time of ``--repeats`` runs per engine and their ratios (scipy / rk). No assertions:
timings depend on the machine (the SciPy engine pays a NumPy <-> torch copy per evaluation
and Python-level step control; the rk engine runs in-process on tensors).
"""

from __future__ import annotations

import argparse
import time

import torch

from nesterovnode.solve import solve
from nesterovnode.tasks import get_task


def run(dynamics, y0, ts, solver, tol):
    y0 = y0.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    sol = solve(dynamics, y0, ts, solver=solver, rtol=tol, atol=tol, sensitivity="adjoint")
    forward = time.perf_counter() - start
    start = time.perf_counter()
    (sol.ys[-1] ** 2).sum().backward()
    backward = time.perf_counter() - start
    for p in dynamics.parameters():
        p.grad = None
    return sol.stats, forward, backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nesterovnode")
    parser.add_argument("--tol", type=float, default=1e-7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    task = get_task("pointcloud")
    model = task.build_model(args.model)
    x = task.datasets(0)[0].tensors[0]
    if args.float64:
        model, x = model.double(), x.double()
    with torch.no_grad():
        y0 = model.initial_state(x)
    ts = model.block.ts.to(y0.dtype)
    head = (
        f"{'solver':6} {'engine':6} {'NFE fwd':>8} {'NFE bwd':>8} {'steps':>6} "
        f"{'fwd s':>8} {'bwd s':>8}"
    )
    print(
        f"point cloud {args.model}, {len(x)} points, tol {args.tol:g}, {y0.dtype}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(head)
    print("-" * len(head))
    ratios = []
    for solver in ("DP5", "BS3", "DP8"):
        best = {}
        for engine in ("rk", "scipy"):
            runs = [
                run(model.dynamics, y0, ts, f"{engine}:{solver}", args.tol)
                for _ in range(args.repeats)
            ]
            stats = runs[0][0]
            fwd, bwd = min(r[1] for r in runs), min(r[2] for r in runs)
            best[engine] = (stats, fwd, bwd)
            print(
                f"{solver:6} {engine:6} {stats.nfe_forward:8d} {stats.nfe_backward:8d} "
                f"{stats.steps_accepted:6d} {fwd:8.4f} {bwd:8.4f}"
            )
        (st_t, f_t, b_t), (st_s, f_s, b_s) = best["rk"], best["scipy"]
        ratios.append(
            (
                solver,
                st_s.nfe_forward / st_t.nfe_forward,
                st_s.nfe_backward / max(st_t.nfe_backward, 1),
                f_s / f_t,
                b_s / b_t,
            )
        )
    print()
    print(
        f"{'solver':6} {'NFE fwd':>9} {'NFE bwd':>9} {'time fwd':>9} {'time bwd':>9}   (scipy / rk)"
    )
    for solver, nf, nb, tf, tb in ratios:
        print(f"{solver:6} {nf:9.2f} {nb:9.2f} {tf:9.2f} {tb:9.2f}")


if __name__ == "__main__":
    main()
