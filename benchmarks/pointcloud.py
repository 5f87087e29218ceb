"""Point-cloud benchmark: seconds per epoch and forward/backward NFE per batch per model.

Fixed protocol: 30 epochs, 5 seeds, DP5 at tolerance 1e-7, adjoint, one CPU thread, runs
one after another. Prints a table with NFE ratios against NODE (and HBNODE); no result
here is a test assertion.

    python benchmarks/pointcloud.py [--epochs 30] [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from nesterovnode.runs import TrainConfig, compare, summary_rows
from nesterovnode.tasks import MODEL_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-7)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    base = TrainConfig(task="pointcloud", epochs=args.epochs, solve={"tol": args.tol})
    with tempfile.TemporaryDirectory() as out:
        results = compare(base, args.models, args.seeds, out, jobs=1, progress=False)

    rows = summary_rows(results)
    for row in rows:
        runs = results["models"][row["model"]]["runs"]
        row["s_per_epoch_std"] = float(np.std([e["seconds"] for r in runs for e in r["epochs"]]))
    ref = {r["model"]: r for r in rows}
    print(
        f"point cloud, {args.epochs} epochs x {args.seeds} seeds, DP5 tol {args.tol:g}, "
        f"adjoint, 1 CPU thread (torch {torch.__version__})"
    )
    header = (
        f"{'model':<14}{'params':>7}{'s/epoch':>14}{'NFE fwd':>9}{'NFE bwd':>9}"
        f"{'fwd/NODE':>10}{'bwd/NODE':>10}{'fwd/HB':>8}{'bwd/HB':>8}{'final loss':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:

        def ratio(key, base, r=r):
            return f"{r[key] / ref[base][key]:.2f}" if base in ref else "-"

        print(
            f"{r['model']:<14}{r['params']:>7}{r['s_per_epoch']:>8.3f}±{r['s_per_epoch_std']:<5.3f}"
            f"{r['nfe_forward']:>9.1f}{r['nfe_backward']:>9.1f}"
            f"{ratio('nfe_forward', 'node'):>10}{ratio('nfe_backward', 'node'):>10}"
            f"{ratio('nfe_forward', 'hbnode'):>8}{ratio('nfe_backward', 'hbnode'):>8}"
            f"{r['final_loss']:>12.4f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
