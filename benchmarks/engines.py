"""Forward and backward NFE of one point-cloud batch on every engine, for all seven models.

The point-cloud protocol (DP5 at rtol = atol = 1e-7, float64, t from 1 to 2), untrained
models, mean over ``--seeds`` seeds; the loss is the task's SmoothL1 on all 120 points.
Backward NFE is counted one way everywhere (solve/adjoint.py), so the columns differ only
by what the engines do differently: their step control (rk and torchdiffeq share the
first-step rule, controller and norm; SciPy's RK45 has its own; all three start the
backward from the step the forward proposed at T), and torchdiffeq's native adjoint
(``torchdiffeq:adjoint``), which also integrates an unused dL/dt channel.

    python benchmarks/engines.py [--seeds 4] [--outputs 2]

Each column also gives the gradient's largest relative error over the seeds against the
rk engine's adjoint at tol 1e-12 (``REFERENCE_TOL``), so fewer evaluations can be seen to
cost no accuracy. No assertions: it prints a table (and ``--json PATH`` writes it).
"""

from __future__ import annotations

import argparse

import torch
from gradients import flat_gradient, relative_error  # benchmarks/gradients.py

from nesterovnode.io import write_json_atomic
from nesterovnode.tasks import MODEL_NAMES, get_task

RUNS = (
    ("rk", "adjoint"),
    ("torchdiffeq", "adjoint"),
    ("torchdiffeq", "torchdiffeq:adjoint"),
    ("scipy", "adjoint"),
)


#: the reference gradient: the rk engine's adjoint at this tolerance
REFERENCE_TOL = 1e-12


def one_batch(
    model_name: str, engine: str, sensitivity: str, seed: int, outputs: int, tol=None
) -> tuple:
    """(forward NFE, backward NFE, the parameters' gradient, flat) of one batch."""
    task = get_task("pointcloud")
    torch.manual_seed(seed)
    ts = torch.linspace(1.0, 2.0, outputs, dtype=torch.float64)
    tols = {} if tol is None else {"rtol": tol, "atol": tol}
    model = task.build_model(
        model_name, engine=engine, sensitivity=sensitivity, ts=ts, **tols
    ).double()
    data, _ = task.datasets(seed=seed)
    x, y = data.tensors if hasattr(data, "tensors") else data[:]
    loss = task.loss_fn(model(x.double()), y)
    loss.backward()
    s = model.stats
    return s.nfe_forward, s.nfe_backward, flat_gradient(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--outputs", type=int, default=2, help="output times in [1, 2]")
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = {}
    header = "model".ljust(15) + "".join(f"{e + ' ' + s:>34}" for e, s in RUNS)
    print(
        f"forward / backward NFE, mean of {args.seeds} seeds, {args.outputs} output times; "
        f"(the gradient's largest relative error over the seeds, against rk's adjoint at "
        f"tol {REFERENCE_TOL:g})"
    )
    print(header)
    for name in MODEL_NAMES:
        row = {}
        references = [
            one_batch(name, "rk", "adjoint", seed, args.outputs, REFERENCE_TOL)[2]
            for seed in range(args.seeds)
        ]
        for engine, sens in RUNS:
            runs = [one_batch(name, engine, sens, seed, args.outputs) for seed in range(args.seeds)]
            error = max(relative_error(r[2], ref) for r, ref in zip(runs, references))
            mean = [sum(r[i] for r in runs) / len(runs) for i in (0, 1)]
            row[f"{engine} {sens}"] = [*mean, error]
        table[name] = row
        print(
            name.ljust(15)
            + "".join(f"{f'{v[0]:.1f} / {v[1]:.1f} ({v[2]:.1e})':>34}" for v in row.values())
        )
    if args.json:
        write_json_atomic(args.json, table)


if __name__ == "__main__":
    main()
