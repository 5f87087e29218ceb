"""Fig. 9 of the paper: NODE, GHBNODE and GNesterovNODE trained with the explicit Euler
method at fixed steps dt ∈ {0.1, 0.2, 0.5}.

Each model (the paper's image architecture, t from 1 to 2, adjoint gradients whose
backward solve uses the same Euler steps, Adam) is trained once per step size; per epoch
the training loss and test accuracy (and the NFE, fixed by dt: ceil(1/dt) per solve) are
recorded. The paper's reading: GNesterovNODE keeps training well at the large steps where
NODE and GHBNODE degrade. CIFAR-10 in the paper; **MNIST** here by default (CIFAR-10 cannot
be obtained on these machines; ``--task cifar10 --data-dir DIR`` where it is present).

CPU defaults: the first 128 training images, 2 epochs, batch 64, 300 test images, lr
1e-3. ``--paper``: whole data, the task's epochs, batch and lr (GPU: ``--device cuda``).

    python experiments/euler_stability.py [--models node ghbnode gnesterovnode]
                                          [--dts 0.1 0.2 0.5] [--paper] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from nesterovnode.runs import TrainConfig  # noqa: E402


def configs(args, data_dir: str) -> list[tuple[str, TrainConfig]]:
    common = C.image_run_options(args, data_dir)
    return [
        (
            f"{m} dt={dt:g}",
            TrainConfig(model=m, seed=s, solve={"solver": "Euler", "dt": dt}, **common),
        )
        for m in args.models
        for dt in args.dts
        for s in range(args.seed, args.seed + args.seeds)
    ]


def stability_table(rows: list[dict], models: list[str], dts: list[float]) -> dict:
    """Final test accuracy and train loss by model and dt, and per model the accuracy drop
    from the smallest to the largest step."""
    by = {r["label"]: r for r in rows}
    table = {}
    for m in models:
        accs = [by.get(f"{m} dt={dt:g}", {}).get("test_accuracy", np.nan) for dt in dts]
        losses = [by.get(f"{m} dt={dt:g}", {}).get("final_loss", np.nan) for dt in dts]
        table[m] = {
            "test_accuracy": accs,
            "final_loss": losses,
            "accuracy_drop": float(accs[0] - accs[-1]),
        }
    return table


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "results/euler_stability")
    C.add_image_arguments(p)
    p.add_argument("--models", nargs="+", default=["node", "ghbnode", "gnesterovnode"])
    p.add_argument("--dts", type=float, nargs="+", default=[0.1, 0.2, 0.5])
    args = p.parse_args(argv)
    out = C.setup(args)
    data_dir = C.image_data_dir(args, args.task)
    runs = configs(args, data_dir)
    extra = C.run_description(args, runs, "Fig. 9", solver="Euler", dts=args.dts)
    label = extra["data"]
    executor = C.make_executor(args)
    try:
        results = C.train_runs(runs, out, args.task, extra, quiet=args.quiet, executor=executor)
    except FileNotFoundError as exc:
        C.die(f"{exc}\n(pass --data-dir with the {args.task} files)")
    finally:
        if executor is not None:
            executor.close()
    C.plot_panels(results, out / "euler_stability.png", f"Euler at fixed dt, {label}")
    rows = C.final_rows(results)
    table = stability_table(rows, args.models, args.dts)
    results["summary"] = {"rows": rows, "by_model": table}
    C.write_results(out, results)
    lines = [
        f"Fig. 9 on {label} (Euler, dt = {', '.join(f'{d:g}' for d in args.dts)}):",
        C.rows_table(rows),
    ]
    for m, t in table.items():
        lines.append(
            f"  {m}: test accuracy {' / '.join(f'{a:.3f}' for a in t['test_accuracy'])}, "
            f"train loss {' / '.join(f'{v:.3f}' for v in t['final_loss'])}; change from "
            f"the smallest to the largest dt {-t['accuracy_drop']:+.3f}"
        )
    best = max(table, key=lambda m: table[m]["test_accuracy"][-1])
    lines.append(
        f"  Seen: at dt = {args.dts[-1]:g} the best test accuracy is {best}'s "
        f"({table[best]['test_accuracy'][-1]:.3f}). Paper (CIFAR-10): GNesterovNODE stays "
        f"accurate at large Euler steps where NODE and GHBNODE lose accuracy."
    )
    lines.append(f"  wrote {out / 'results.json'} and {out / 'euler_stability.png'}")
    C.report(lines, out)
    return results


if __name__ == "__main__":
    main()
