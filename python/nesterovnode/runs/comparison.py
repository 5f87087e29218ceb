"""Compare models on one task: train each over several seeds, then tabulate and plot.

The output directory holds

    results.json            {"task", "config", "models": {NAME: {"params", "runs": [...]}},
                             "summary", "failed", "configuration", "versions",
                             "git_commit", "hardware", "started", "finished"}
    runs/NAME/seedK/        each run's folder (``checkpoint``)
    loss.png, nfe_forward.png, nfe_backward.png    geometric mean and band over seeds against epoch
    features.png            learned features h(T) coloured by class after the last epoch
                            (2-D tasks), seed 0 of each model
    features_epochE.png     ... after epoch E, for each of the task's ``feature_epochs``
                            before the last (the point cloud's --paper: features_epoch100.png)

(``"config"``: the comparison's identity, ``comparison_config``, with epochs and seeds;
``"models"``, ``"summary"``, ``"failed"``: ``summary``; the rest: ``provenance``; the
pictures: ``plotting.write_plots``).

``out`` follows the run-folder protocol (``runs.folder``): results there are continued
only with ``resume`` (same configuration) and replaced only with ``overwrite``. The runs
are a sweep (``sweep``): independent, on an executor (one after another, parallel
processes: ``jobs``, or Ray tasks on a cluster: ``cluster.RayExecutor``); every finished
epoch is checkpointed, so an interrupted comparison resumes where it stopped. A run that
fails (``RunFailed``) is recorded as failed (``"status": "failed"`` with its cause) and
the comparison goes on; results.json, the table and the plots always show what finished.
Resuming keeps every model and seed already in results.json (a subset asked for extends
nothing away) and refuses fewer epochs than were saved. Under torchrun the runs go one
after another, each trained by all processes with DDP; only rank 0 writes
``results.json`` and the plots.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_json, write_json_atomic
from ..plotting import write_plots
from ..tasks import MODEL_NAMES, check_model_name, get_task
from .config import TrainConfig, comparable, dtype_hint, read_identity
from .distributed import distributed_env
from .folder import claim
from .provenance import now, run_metadata
from .summary import failed_runs, model_results, summary
from .sweep import Executor, OnEpoch, executor_for, grid, sweep


def comparison_config(base: TrainConfig) -> dict[str, Any]:
    """What makes two comparisons the same experiment (models, seeds and epochs may grow):
    the run identity of the resolved ``base`` without model and seed, its engine the
    engine that runs (the default resolved to its name)."""
    d = comparable(base.identity())
    d.pop("model")
    d.pop("seed")
    return d


def _saved_comparison_config(results: Path) -> dict[str, Any]:
    """The configuration of a comparison's ``results.json`` in today's layout
    (``config.read_identity``), not epochs or seeds, which a resumed comparison may
    extend."""
    saved = comparable(read_identity(read_json(results).get("config", {})))
    return {k: v for k, v in saved.items() if k not in ("epochs", "seeds")}


def compare(
    base: TrainConfig,
    models: list[str] | None = None,
    seeds: int = 1,
    out: str | Path = "results/pointcloud",
    *,
    resume: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
    paper: bool = False,
    paper_departures: dict[str, Any] | None = None,
    on_epoch: OnEpoch | None = None,
    notify=None,
) -> dict[str, Any]:
    """Train ``models`` (default all seven) for ``seeds`` seeds each; write results and plots.

    The runs go to ``executor`` (``sweep.Executor``), by default the local one for
    ``jobs`` runs at a time (one under torchrun, where every process takes part in every
    run). ``on_epoch(model, seed, record)`` receives every finished epoch and
    ``notify(text)`` the runs' messages (resume point, duration estimate, failure), in the
    main process. ``paper`` records that the run is the paper's protocol;
    ``paper_departures`` ({option: value}) the options given with ``--paper`` that replace
    the paper's (the run is then recorded as not the paper's protocol). Returns the
    ``results.json`` content; ``results["failed"]`` lists the runs that failed.
    """
    task = get_task(base.task)
    base = base.resolved(task)
    base.solve.resolve()  # an engine missing here fails before --out is made
    models = [check_model_name(m) for m in (models or MODEL_NAMES)]
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    config = comparison_config(base)
    resuming = claim(
        out,
        config,
        results="results.json",
        read_config=_saved_comparison_config,
        outputs=("results.json", "runs"),
        resume=resume,
        overwrite=overwrite,
        what="comparison",
        unfinished="runs",
        hint=dtype_hint,
    )
    if resuming:
        models, seeds = _extend(out / "results.json", models, seeds, base.epochs, notify)
    if executor is None:
        runs = len(models) * seeds
        # under torchrun every process takes part in every run
        executor = executor_for(1 if distributed_env()[2] > 1 else min(jobs, runs), progress)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        paper = {"requested": bool(paper), "departures": dict(paper_departures or {})}
        return _compare(base, task, models, seeds, out, config, executor, paper, on_epoch, notify)
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves no empty --out
        raise


def _extend(results: Path, models: list[str], seeds: int, epochs: int, notify):
    """A resumed comparison's models and seeds: those saved plus those asked; fewer
    epochs than saved are refused (the saved runs would no longer match the config)."""
    saved = read_json(results)
    saved_epochs = saved.get("config", {}).get("epochs")
    if saved_epochs is not None and epochs < saved_epochs:
        raise ValueError(
            f"{results} holds {saved_epochs} epochs per run; --epochs {epochs} would "
            f"describe it wrongly: pass --epochs {saved_epochs} or more to resume (or "
            f"--overwrite, or another --out)"
        )
    saved_models = list(saved.get("models", {}))
    merged = [m for m in MODEL_NAMES if m in saved_models or m in models]
    saved_seeds = int(saved.get("config", {}).get("seeds", seeds))
    kept = [m for m in saved_models if m not in models]
    if notify is not None and (kept or saved_seeds > seeds):
        notify(
            f"resuming {results.parent}: it holds {', '.join(saved_models)} with "
            f"{saved_seeds} seed(s); all are kept (models {', '.join(merged)}, "
            f"{max(seeds, saved_seeds)} seed(s), {epochs} epochs)"
        )
    return merged, max(seeds, saved_seeds)


def _compare(base, task, models, seeds, out, config, executor, paper, on_epoch, notify):
    """Run the sweep, writing results.json after every run and the plots at the end (or
    at an error, with what finished)."""
    results: dict[str, Any] = {
        "task": task.name,
        "config": {**config, "epochs": base.epochs, "seeds": seeds},
        "models": {},
    }
    data = task.data_description(base.data_dir)
    if data is not None:  # the split and protocol of the task's data (walker2d)
        results["data"] = data
    entries: dict[tuple[str, int], dict] = {}
    features: dict[str, np.ndarray] = {}
    features_at: dict[int, dict[str, np.ndarray]] = {}  # epoch -> model -> h (seed 0)
    labels = None
    is_main = distributed_env()[0] == 0  # under torchrun only rank 0 writes
    where = getattr(executor, "name", "local")
    results.update(run_metadata(base, seeds, executor.workers, paper, now(), where))

    def collect(entry: dict[str, Any]) -> None:
        nonlocal labels
        entries[(entry["model"], entry["seed"])] = entry
        entry_features, entry_labels = entry.pop("features", None), entry.pop("labels", None)
        snapshots = entry.pop("features_at", {})
        if entry_features is not None and entry["seed"] == 0:
            features[entry["model"]] = entry_features
            labels = entry_labels
            for epoch, h in snapshots.items():
                features_at.setdefault(epoch, {})[entry["model"]] = h
        if is_main:
            _write_results(out, results, models, seeds, entries)

    def finish(entries_done: bool) -> dict[str, Any]:
        results["finished"] = now() if entries_done else None
        return _write_results(out if is_main else None, results, models, seeds, entries)

    def plot() -> None:
        """The pictures, the features' panels in the paper's order of the models."""
        ordered = {e: _in_order(models, at) for e, at in sorted(features_at.items())}
        write_plots(results, out, _in_order(models, features), labels, ordered)

    try:
        sweep(grid(base, models, seeds, out), executor, collect, on_epoch=on_epoch, notify=notify)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every finished epoch is checkpointed under {out / 'runs'}; run "
            f"the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    except Exception:
        # another error: what finished is still written, with its pictures
        if is_main and entries:
            finish(False)
            plot()
        raise
    results = finish(True)
    if is_main:
        plot()
    return results


def _in_order(models: list[str], by_model: dict[str, Any]) -> dict[str, Any]:
    """``by_model`` in the order of ``models`` (the paper's)."""
    return {m: by_model[m] for m in models if m in by_model}


def _write_results(out: Path | None, results: dict, models, seeds: int, entries: dict) -> dict:
    """Fill ``results["models"]``, ``["summary"]`` and ``["failed"]`` from ``entries``;
    write ``results.json`` unless ``out`` is None."""
    results["models"] = model_results(models, seeds, entries)
    results["summary"] = summary(results)
    results["failed"] = failed_runs(results)
    if out is not None:
        write_json_atomic(out / "results.json", results)
    return results


__all__ = ["compare", "comparison_config"]
