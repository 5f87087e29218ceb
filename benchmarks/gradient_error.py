"""Work against precision of the adjoint on one MNIST batch: the gradient's error, relative
to a tight-tolerance reference, and the forward/backward NFE, at several tolerances.

The paper's MNIST models (untrained, seed 0), float64, the first ``--batch`` training
images of ``--data-dir`` (MNIST's IDX files), the task's loss, DP5 and the adjoint at
rtol = atol = each of ``--tols``; the reference at ``--reference-tol``. Run it on two
versions of the library (e.g. ``PYTHONPATH=<other checkout>/python``) to compare their
work–precision: benchmarks/PERFORMANCE.md (the gradient-error table).

    python benchmarks/gradient_error.py --data-dir DIR [--models node hbnode ...]
                                        [--tols 1e-5 1e-6 1e-7] [--reference-tol 1e-8]

No assertions: it prints a table (and ``--json PATH`` writes it).
"""

from __future__ import annotations

import argparse

import torch
from gradients import flat_gradient, relative_error  # benchmarks/gradients.py

from nesterovnode.io import write_json_atomic
from nesterovnode.tasks import get_task


def gradient(name: str, x, y, tol: float) -> tuple[torch.Tensor, int, int]:
    """(the parameters' gradient, flat; forward NFE; backward NFE) at ``tol``."""
    task = get_task("mnist")
    torch.manual_seed(0)
    model = task.build_model(name, rtol=tol, atol=tol).double()
    task.loss_fn(model(x), y).backward()
    return flat_gradient(model), model.stats.nfe_forward, model.stats.nfe_backward


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="MNIST's IDX files")
    parser.add_argument("--models", nargs="+", default=["node", "hbnode", "nesterovnode"])
    parser.add_argument("--tols", nargs="+", type=float, default=[1e-5, 1e-6, 1e-7])
    parser.add_argument("--reference-tol", type=float, default=1e-8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    train, _ = get_task("mnist").datasets(seed=0, data_dir=args.data_dir)
    images, labels = zip(*[train[i] for i in range(args.batch)])
    x, y = torch.stack(images).double(), torch.tensor(labels)
    results = {}
    print(f"{'model':<15}{'tol':>8}{'NFE fwd':>9}{'NFE bwd':>9}{'rel. error':>12}")
    for name in args.models:
        reference, *_ = gradient(name, x, y, args.reference_tol)
        results[name] = []
        for tol in args.tols:
            grad, fwd, bwd = gradient(name, x, y, tol)
            error = relative_error(grad, reference)
            results[name].append({"tol": tol, "nfe fwd": fwd, "nfe bwd": bwd, "error": error})
            print(f"{name:<15}{tol:>8.0e}{fwd:>9}{bwd:>9}{error:>12.2e}")
    if args.json:
        write_json_atomic(args.json, results)
    return results


if __name__ == "__main__":
    main()
