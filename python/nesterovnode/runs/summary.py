"""What a comparison's results say: the runs per model, the summary over seeds, one row per
model and the text table of the rows (``compare`` and ``train`` print it).

results.json's ``"models"`` are ``{NAME: {"params", "runs": [{"seed", "status"[,
"failure"], "epochs": [record, ...]}]}}`` (``model_results``); its ``"summary"`` is
``summary``'s, one block per model over the seeds whose runs finished; its ``"failed"``
lists the runs that failed. A single run makes the same rows (``run_rows``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tables import text_table


def model_results(
    models: list[str], seeds: int, entries: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, Any]:
    """results.json's ``"models"`` from the finished or failed runs' ``entries`` (by
    (model, seed), ``sweep.run_job``'s), in the order of ``models`` and seeds; models with
    no entry yet are left out."""
    out = {}
    for m in models:
        runs = [entries[(m, s)] for s in range(seeds) if (m, s) in entries]
        if runs:
            out[m] = {
                "params": runs[0]["params"],
                "runs": [
                    {
                        "seed": r["seed"],
                        "status": r.get("status", "finished"),
                        **({"failure": r["failure"]} if "failure" in r else {}),
                        "epochs": r["epochs"],
                    }
                    for r in runs
                ],
            }
    return out


def failed_runs(results: dict) -> list[dict[str, Any]]:
    """results.json's ``"failed"``: ``{"model", "seed", "epoch", "cause", "fix",
    "message"}`` of every run that failed."""
    return [
        {"model": m, "seed": r["seed"], **r["failure"]}
        for m, e in results["models"].items()
        for r in e["runs"]
        if r.get("status") == "failed"
    ]


#: summary quantities: key -> (what it is, taken from the epochs of one run)
SUMMARY = {
    "final_loss": "training loss of the last epoch (mean over its batches)",
    "accuracy": "training accuracy of the last epoch (running, over its batches)",
    "test_accuracy": "test accuracy after the last epoch",
    "mse": "training MSE of the last epoch (regression tasks: walker2d)",
    "test_mse": "test MSE after the last epoch (regression tasks)",
    "nfe_forward_last": "forward NFE per batch, last epoch",
    "nfe_forward": "forward NFE per batch, mean over all epochs",
    "nfe_backward_last": "backward NFE per batch, last epoch",
    "nfe_backward": "backward NFE per batch, mean over all epochs",
    "s_per_epoch": "wall seconds per epoch of training, compilation left out, mean over epochs",
    "compile_seconds": "seconds spent compiling ODE steps in the run (0 for eager steps)",
}


def _per_run(epochs: list[dict]) -> dict[str, float]:
    """The ``SUMMARY`` quantities of one run from its epoch records."""
    last = epochs[-1]
    out = {
        "final_loss": last["loss"],
        "nfe_forward_last": last["nfe_forward"],
        "nfe_forward": float(np.mean([e["nfe_forward"] for e in epochs])),
        "nfe_backward_last": last["nfe_backward"],
        "nfe_backward": float(np.mean([e["nfe_backward"] for e in epochs])),
        # an epoch's seconds include the steps' compilation (``compile_seconds``): a
        # one-off cost of the run, reported apart
        "s_per_epoch": float(
            np.mean([e["seconds"] - e.get("compile_seconds", 0.0) for e in epochs])
        ),
        "compile_seconds": float(sum(e.get("compile_seconds", 0.0) for e in epochs)),
    }
    for key in ("accuracy", "test_accuracy", "mse", "test_mse"):  # the task's metric
        if key in last:
            out[key] = last[key]
    return out


def summary(results: dict) -> dict[str, Any]:
    """Per model: ``{QUANTITY: {"mean", "std"}}`` over the seeds whose runs finished (see
    ``SUMMARY``; std is the population std, 0 for one seed), with ``seeds``,
    ``finished``, ``failed`` and ``epochs`` (of the finished runs)."""
    return {
        name: model_summary(entry["params"], entry["runs"])
        for name, entry in results["models"].items()
    }


def model_summary(params: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's block of ``summary`` from its ``runs`` (``{"seed", "epochs"[,
    "status", "failure"]}``; no status: finished)."""
    done = [r["epochs"] for r in runs if r.get("status", "finished") == "finished" and r["epochs"]]
    failed = [r for r in runs if r.get("status") == "failed"]
    block: dict[str, Any] = {
        "params": params,
        "seeds": len(runs),
        "finished": len(done),
        "failed": len(failed),
        "epochs": min((len(r) for r in done), default=0),
    }
    per = [_per_run(r) for r in done]
    for key in SUMMARY:
        values = [p[key] for p in per if key in p]
        if values:
            block[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    if failed:
        block["failures"] = [
            f"seed {r['seed']}: epoch {r['failure']['epoch']}, {r['failure']['cause']}"
            for r in failed
        ]
    return block


def summary_rows(results: dict) -> list[dict[str, Any]]:
    """One row per model: params, seeds, epochs, and every ``SUMMARY`` quantity as its
    mean over the seeds that finished (``KEY_std``: the std over them); a model none of
    whose runs finished has ``failed`` set and no numbers."""
    return [_row(name, block) for name, block in summary(results).items()]


def run_rows(result) -> list[dict[str, Any]]:
    """The one row of a single finished run (``training.RunResult``: its model, seed,
    parameters and epoch records), as ``summary_rows`` makes it for a model of one seed."""
    runs = [{"seed": result.config.seed, "status": "finished", "epochs": result.history}]
    return [_row(result.config.model, model_summary(result.params, runs))]


def _row(name: str, block: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": name,
        "params": block["params"],
        "seeds": block["finished"],
        "epochs": block["epochs"],
        "failed": block["failed"],
    }
    for key in SUMMARY:
        if key in block:
            row[key] = block[key]["mean"]
            row[f"{key}_std"] = block[key]["std"]
    if "failures" in block:
        row["failures"] = block["failures"]
    return row


def format_table(rows: list[dict[str, Any]], legend: bool = True) -> str:
    """A fixed-width text table of ``summary_rows``: mean ± std over the seeds that
    finished; a legend under it says what each column is."""
    if not rows:
        return "(no runs)"
    cols = [
        ("final_loss", "final loss", "{:.4g}"),
    ]
    for key, head, fmt in (
        ("accuracy", "train acc", "{:.3f}"),
        ("test_accuracy", "test acc", "{:.4f}"),
        ("mse", "train MSE", "{:.4f}"),
        ("test_mse", "test MSE", "{:.4f}"),
    ):
        if any(key in r for r in rows):
            cols.append((key, head, fmt))
    cols += [
        ("nfe_forward_last", "NFE fwd last", "{:.1f}"),
        ("nfe_forward", "NFE fwd mean", "{:.1f}"),
        ("nfe_backward_last", "NFE bwd last", "{:.1f}"),
        ("nfe_backward", "NFE bwd mean", "{:.1f}"),
        ("s_per_epoch", "s/epoch", "{:.3f}"),
    ]
    if any(r.get("compile_seconds", 0.0) > 0 for r in rows):
        cols.append(("compile_seconds", "compile s", "{:.1f}"))
    spread = any(r["seeds"] > 1 for r in rows)
    body = []
    for r in rows:
        cells = [r["model"], str(r["params"]), _runs_cell(r), str(r["epochs"])]
        for k, _, fmt in cols:
            if k not in r:
                cells.append("failed" if r["failed"] else "-")
                continue
            cell = fmt.format(r[k])
            if spread:
                cell += " ± " + fmt.format(r[f"{k}_std"])
            cells.append(cell)
        body.append(cells)
    head = ["model", "params", "seeds", "epochs"] + [h for _, h, _ in cols]
    text = text_table(head, body, numbers_right=True)
    if legend:
        text += "\n\n" + table_legend(rows, spread)
    return text


def _runs_cell(row: dict) -> str:
    if not row["failed"]:
        return str(row["seeds"])
    return f"{row['seeds']} ({row['failed']} failed)"


def table_legend(rows: list[dict[str, Any]], spread: bool) -> str:
    """What the table's numbers are."""
    lines = [
        ("mean ± std over the seeds that finished; " if spread else "one seed per model; ")
        + "seeds: runs that finished (failed runs counted apart, left out of the numbers)",
        "final loss, train acc / train MSE: the last epoch's training loss and running "
        "metric (mean over its batches, not a separate evaluation)",
        "NFE: function evaluations per batch, forward solve and backward (adjoint) solve; "
        "last: the last epoch; mean: over all epochs",
        "s/epoch: training wall time per epoch without compiling the steps, measured with "
        "the other runs running in parallel when more than one runs at a time",
    ]
    if any(r.get("compile_seconds", 0.0) > 0 for r in rows):
        lines.append(
            "compile s: seconds a run spent compiling its ODE steps (TorchInductor), apart "
            "from s/epoch; a worker's later runs of a model reuse its caches"
        )
    failures = [f"{r['model']} {f}" for r in rows for f in r.get("failures", [])]
    lines += [f"failed: {f}" for f in failures]
    return "\n".join(lines)


__all__ = [
    "SUMMARY",
    "failed_runs",
    "format_table",
    "model_results",
    "model_summary",
    "run_rows",
    "summary",
    "summary_rows",
    "table_legend",
]
