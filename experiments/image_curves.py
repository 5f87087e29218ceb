"""Fig. 5 and 6 of the paper: the image panels from any image comparison's results.

Reads a ``results.json`` written by ``nesterovnode compare mnist|cifar10`` (or by
``nesterov_factor.py`` / ``euler_stability.py``, same format) and draws, one line per
model (mean ± std over seeds): forward NFE, backward NFE, training loss (log axis) and
test accuracy per epoch, and test accuracy against cumulative training time.

    python experiments/image_curves.py RESULTS_JSON_OR_DIR [--out DIR]

With no results at hand, ``--demo`` first runs a CPU-sized comparison (NODE, HBNODE,
GNesterovNODE on 256 MNIST images, 2 epochs; ``--paper``: all seven models, the paper's
protocol) into ``--out`` and plots it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from nesterovnode.io import read_json  # noqa: E402


def demo(args, out: Path) -> Path:
    """A small ``compare`` run into ``out/comparison``; returns its results.json."""
    from nesterovnode.runs import TrainConfig, compare

    base = TrainConfig(
        task=args.task,
        epochs=None if args.paper else 2,
        lr=None if args.paper else 1e-3,
        subset=None if args.paper else 256,
        test_subset=None if args.paper else 500,
        data_dir=C.image_data_dir(args, args.task),
        device=args.device,
    )
    models = None if args.paper else ["node", "hbnode", "gnesterovnode"]
    target = out / "comparison"
    compare(base, models, seeds=1, out=target, resume=True, progress=not args.quiet)
    return target / "results.json"


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "results/image_curves")
    p.add_argument("results", nargs="?", help="results.json (or its folder)")
    p.add_argument("--demo", action="store_true", help="run a small comparison first")
    p.add_argument("--task", default="mnist", choices=("mnist", "cifar10"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = C.setup(args)
    if args.demo:
        path = demo(args, out)
    elif args.results:
        path = Path(args.results)
        path = path / "results.json" if path.is_dir() else path
    else:
        C.die("give a results.json (or its folder), or --demo")
    if not path.exists():
        C.die(f"no results at {path}")
    results = read_json(path)
    if not results.get("models"):
        C.die(f"{path} holds no runs")
    task = results.get("task", "?")
    png = C.plot_panels(results, out / "image_curves.png", f"{task}: NFE, loss and accuracy")
    rows = C.final_rows(results)
    summary = {"source": str(path), "task": task, "rows": rows}
    C.write_results(out, summary)
    best_nfe = min(rows, key=lambda r: r["nfe_forward"])
    lines = [
        f"Fig. 5/6 panels from {path}:",
        C.rows_table(rows),
        f"  Seen: the fewest forward NFE per batch is {best_nfe['label']}'s "
        f"({best_nfe['nfe_forward']:.1f})",
    ]
    if all("test_accuracy" in r for r in rows):
        best = max(rows, key=lambda r: r["test_accuracy"])
        lines[-1] += (
            f"; the best final test accuracy {best['label']}'s ({best['test_accuracy']:.4f})"
        )
    lines.append(f"  wrote {png} and {out / 'results.json'}")
    C.report(lines, out)
    return summary


if __name__ == "__main__":
    main()
