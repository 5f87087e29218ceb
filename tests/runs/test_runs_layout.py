"""runs/ by concern: a run carries one SolveConfig, run folders of the old flat layout
still resume, the sweep's executor is a seam that changes no number, a single run makes
its own table row, each training session leaves its provenance, and the layers hold
(diagnostics imports nothing from runs, tasks or cli; no module over 600 lines)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nesterovnode
from helpers import without_timings
from nesterovnode.runs import (
    InProcess,
    TrainConfig,
    compare,
    format_table,
    load_model,
    read_log,
    run_rows,
    summary_rows,
    train,
)
from nesterovnode.runs.config import read_identity
from nesterovnode.runs.sweep import run_job
from nesterovnode.solve import SolveConfig
from nesterovnode.tasks import get_task

PACKAGE = Path(nesterovnode.__file__).resolve().parent

#: A point-cloud NODE run's identity and config.json as d52ad81 saved them (copied from
#: its ``nesterovnode compare pointcloud --epochs 3``), before a run carried a SolveConfig.
OLD_IDENTITY = {
    "task": "pointcloud",
    "model": "node",
    "lr": 0.01,
    "batch_size": 50,
    "solver": "DP5",
    "tol": 1e-07,
    "sensitivity": "adjoint",
    "engine": None,
    "seed": 0,
    "subset": None,
    "dtype": "float64",
    "model_options": {},
}
OLD_CONFIG_JSON = {
    **OLD_IDENTITY,
    "epochs": 3,
    "device": "cpu",
    "data_dir": None,
    "evaluate": True,
    "test_subset": None,
    "max_iters": None,
    "download": False,
    "num_workers": 0,
    "compile": "auto",
}


def quick(model="node", epochs=1, **kw):
    return TrainConfig(task="pointcloud", model=model, epochs=epochs, **kw)


# -- a run carries a SolveConfig ---------------------------------------------------------------
def test_a_run_carries_the_tasks_solve_config_or_changes_to_it_or_one_given_whole():
    task = get_task("pointcloud")  # the paper's DP5 at rtol = atol = 1e-7
    assert quick().resolved(task).solve == SolveConfig(rtol=1e-7, atol=1e-7)
    changed = quick(solve={"solver": "RK4", "dt": 0.1, "tol": 1e-5}).resolved(task).solve
    assert (changed.solver, changed.dt, changed.rtol, changed.atol) == ("RK4", 0.1, 1e-5, 1e-5)
    assert changed.sensitivity == "adjoint" and changed.max_steps == 100_000
    whole = SolveConfig(solver="BS3", rtol=1e-4, atol=1e-6)
    assert quick(solve=whole).resolved(task).solve is whole
    with pytest.raises(TypeError, match="SolveConfig has no field tolerance"):
        quick(solve={"tolerance": 1e-3}).resolved(task)
    with pytest.raises(ValueError, match="model_options dt: solve options go in solve"):
        quick(model_options={"dt": 0.1}).resolved(task)


def test_the_identity_serialises_the_solve_config_and_the_model_solves_with_it(tmp_path):
    cfg = quick(solve={"solver": "BS3", "tol": 1e-4}, model_options={"xi": 0.5})
    result = train(cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["config"]["solve"] == SolveConfig(solver="BS3", rtol=1e-4, atol=1e-4).as_dict()
    assert state["config"]["model_options"] == {"xi": 0.5}
    assert result.model.block.config == result.config.solve
    saved = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == result.config


# -- run folders of the old flat layout --------------------------------------------------------
def test_an_old_flat_identity_reads_as_todays_solve_config():
    today = read_identity(OLD_IDENTITY)
    assert today["solve"] == SolveConfig(rtol=1e-7, atol=1e-7).as_dict()
    assert "solver" not in today and "tol" not in today and today["model_options"] == {}
    # dt and engine options lived among the model options: they move into the solve
    old = {**OLD_IDENTITY, "solver": "Euler", "model_options": {"dt": 0.5, "r": 3.0}}
    del old["dtype"]  # saved before the dtype was recorded: float32
    today = read_identity(old)
    assert today["solve"]["solver"] == "Euler" and today["solve"]["dt"] == 0.5
    assert today["model_options"] == {"r": 3.0} and today["dtype"] == "float32"
    cfg = TrainConfig.from_dict(OLD_CONFIG_JSON)
    assert cfg.solve == SolveConfig(rtol=1e-7, atol=1e-7) and cfg.epochs == 3


def _make_old_layout(folder: Path) -> None:
    """Rewrite a run folder as d52ad81 wrote it: the flat identity in the checkpoint, the
    flat config.json, no provenance.json."""
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    state["config"] = dict(OLD_IDENTITY)
    torch.save(state, folder / "checkpoint.pt")
    (folder / "config.json").write_text(json.dumps({**OLD_CONFIG_JSON, "epochs": 1}))
    (folder / "provenance.json").unlink()


def test_a_run_folder_of_the_old_flat_layout_resumes_exactly_and_loads(tmp_path):
    full = train(quick(epochs=2), tmp_path / "full", progress=False).history
    old = tmp_path / "old"
    train(quick(epochs=1), old, progress=False)
    _make_old_layout(old)
    assert load_model(old).head[0].weight.dtype == torch.float64
    # the same run, asked for by the engine's name: the default engine resolves to it
    resumed = train(quick(epochs=2, solve={"engine": "rk"}), old, resume=True, progress=False)
    assert [e["epoch"] for e in resumed.history] == [1, 2]
    for a, b in zip(resumed.history, full):
        assert a["loss"] == b["loss"] and a["nfe_forward"] == b["nfe_forward"]
    # now saved in today's layout
    assert "solve" in torch.load(old / "checkpoint.pt", weights_only=False)["config"]
    # another solve is another experiment, refused as before
    with pytest.raises(ValueError, match="another configuration"):
        train(quick(epochs=3, solve={"tol": 1e-5}), old, resume=True, progress=False)


def test_a_comparison_saved_in_the_old_flat_layout_resumes(tmp_path):
    out = tmp_path / "cmp"
    compare(quick(), models=["node"], out=out, progress=False)
    _make_old_layout(out / "runs" / "node" / "seed0")
    results = json.loads((out / "results.json").read_text())
    identity = {k: v for k, v in OLD_IDENTITY.items() if k not in ("model", "seed")}
    results["config"] = {**identity, "engine": "rk", "epochs": 1, "seeds": 1}
    (out / "results.json").write_text(json.dumps(results))
    again = compare(quick(epochs=2), models=["node"], out=out, resume=True, progress=False)
    assert [e["epoch"] for e in again["models"]["node"]["runs"][0]["epochs"]] == [1, 2]
    assert again["config"]["solve"] == {
        **SolveConfig(rtol=1e-7, atol=1e-7).as_dict(),
        "engine": "rk",
    }


# -- the sweep's executor is a seam ------------------------------------------------------------
class Reversed:
    """An executor of another kind: runs the jobs last first, as a remote pool might
    finish them, and gives their entries back to the driver."""

    workers = 1

    def __init__(self):
        self.seen = []

    def run(self, jobs, on_result, *, on_epoch=None, notify=None):
        entries = []
        for job in reversed(list(jobs)):
            self.seen.append((job.config.model, job.config.seed))
            entries.append(run_job(job, progress=False, on_epoch=on_epoch, notify=notify))
            on_result(entries[-1])
        return entries


def test_results_json_is_the_same_on_any_executor_and_holds_trains_own_numbers(tmp_path):
    kw = dict(models=["node", "hbnode"], seeds=2, progress=False)
    compare(quick(epochs=2), out=tmp_path / "a", executor=InProcess(progress=False), **kw)
    other = Reversed()
    compare(quick(epochs=2), out=tmp_path / "b", executor=other, **kw)
    assert other.seen == [("hbnode", 1), ("hbnode", 0), ("node", 1), ("node", 0)]
    a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    for key in ("task", "config", "models", "summary", "failed", "configuration"):
        assert without_timings(a[key]) == without_timings(b[key]), key
    assert list(b["models"]) == ["node", "hbnode"]  # the table's order, not the finish order
    alone = train(quick(model="hbnode", epochs=2, seed=1), progress=False).history
    saved = a["models"]["hbnode"]["runs"][1]["epochs"]
    assert [e["loss"] for e in saved] == [e["loss"] for e in alone]
    assert [e["nfe_backward"] for e in saved] == [e["nfe_backward"] for e in alone]


# -- a single run's row; its provenance ----------------------------------------------------------
def test_a_single_run_makes_the_row_a_comparison_of_one_seed_makes(tmp_path):
    result = train(quick(model="hbnode", epochs=3), tmp_path / "run", progress=False)
    (row,) = run_rows(result)
    history = result.history
    assert row["model"] == "hbnode" and row["params"] == 582 and row["seeds"] == 1
    assert row["epochs"] == 3 and row["final_loss"] == history[-1]["loss"]
    assert row["nfe_forward"] == pytest.approx(np.mean([e["nfe_forward"] for e in history]))
    assert row["nfe_backward_last"] == history[-1]["nfe_backward"]
    results = compare(quick(epochs=3), models=["hbnode"], out=tmp_path / "cmp", progress=False)
    (theirs,) = summary_rows(results)
    assert without_timings(theirs) == without_timings(row)
    assert format_table([row]).splitlines()[2].split()[:4] == ["hbnode", "582", "1", "3"]


def test_each_training_session_records_its_versions_commit_and_hardware(tmp_path):
    train(quick(epochs=1), tmp_path, progress=False)
    train(quick(epochs=3), tmp_path, resume=True, progress=False)
    train(quick(epochs=3), tmp_path, resume=True, progress=False)  # nothing left: no session
    sessions = json.loads((tmp_path / "provenance.json").read_text())["sessions"]
    assert [s["first_epoch"] for s in sessions] == [1, 2]
    assert sessions[0]["versions"]["torch"] == torch.__version__
    assert sessions[0]["hardware"]["cpu_count"] >= 1 and sessions[0]["device"] == "cpu"
    assert len(read_log(tmp_path)) == 3


# -- the layers hold -----------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    """The nesterovnode modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
            if node.level == 0:
                module = node.module or ""
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("nesterovnode")}


def test_diagnostics_imports_nothing_from_runs_tasks_or_the_cli():
    for path in sorted((PACKAGE / "diagnostics").glob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[1:2] in (["runs"], ["tasks"], ["cli"])}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_no_module_of_runs_is_over_600_lines_and_each_is_one_concern():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "runs").glob("*.py")}
    assert max(sizes.values()) <= 600, sizes
    for name in ("config", "training", "checkpoint", "distributed", "sweep", "provenance"):
        assert f"{name}.py" in sizes
    assert sizes["training.py"] < 600 and sizes["comparison.py"] < 300
