"""Solver comparison (work-precision) and the `solvers compare` / `stiffness` commands."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

from nesterovnode import cli
from nesterovnode.diagnostics import compare_solvers, format_table
from nesterovnode.plotting import plot_work_precision
from nesterovnode.runs import models as run_models


class Decay(nn.Module):
    """y' = -y + sin(t): smooth, with a closed-form solution."""

    def forward(self, t, y):
        return -y + torch.sin(t)


def exact(t, y0):
    # y = (sin t - cos t)/2 + (y0 + 1/2) e^-t
    return (math.sin(t) - math.cos(t)) / 2 + (y0 + 0.5) * math.exp(-t)


@pytest.fixture(scope="module")
def comparison():
    y0 = torch.full((2, 1), 0.3, dtype=torch.float64)
    return compare_solvers(
        Decay(),
        y0,
        [0.0, 1.0, 2.0],
        ["DP5", "RK4", "scipy:Radau", "scipy:LSODA", "Vern7", "Kutta9"],
        [1e-4, 1e-8],
        dt=[0.1, 0.05],
    )


def test_the_reference_is_exact_to_its_tolerance(comparison):
    from nesterovnode.diagnostics import reference_solution

    ref = reference_solution(Decay(), torch.full((1, 1), 0.3, dtype=torch.float64), [0.0, 2.0])
    assert abs(float(ref.ys[-1]) - exact(2.0, 0.3)) < 1e-11
    assert comparison.reference == "scipy:DOP853"


def test_errors_fall_with_the_tolerance_and_the_work_grows(comparison):
    rows = {(r.solver, r.tol, r.dt): r for r in comparison.rows}
    for name in ("DP5", "scipy:Radau", "scipy:LSODA"):
        loose, tight = rows[(name, 1e-4, None)], rows[(name, 1e-8, None)]
        assert loose.status == tight.status == "ok"
        assert tight.error < loose.error and tight.error < 1e-6
        assert tight.nfe > loose.nfe and tight.steps >= loose.steps
    assert rows[("scipy:Radau", 1e-8, None)].njev >= 1
    # RK4 is fourth order: halving dt divides the error by about 16
    ratio = rows[("RK4", None, 0.1)].error / rows[("RK4", None, 0.05)].error
    assert 14 < ratio < 19
    assert rows[("RK4", None, 0.1)].nfe == 4 * 20


def test_unavailable_and_unknown_solvers_become_rows_with_the_reason(comparison):
    rows = {r.solver: r for r in comparison.rows}
    assert rows["Vern7"].status.startswith("error") and "julia" in rows["Vern7"].status
    assert "unknown solver" in rows["Kutta9"].status
    assert math.isnan(rows["Kutta9"].error)


def test_the_table_and_the_work_precision_plot(comparison, tmp_path):
    table = format_table(comparison)
    for word in ("solver", "NFE", "error", "DP5", "scipy:LSODA", "reference: scipy:DOP853"):
        assert word in table
    path = plot_work_precision(comparison, tmp_path / "wp.png")
    assert open(path, "rb").read(4) == b"\x89PNG"


def _parser():
    return cli.build_parser()


def test_the_list_command_shows_names_properties_and_engines(capsys):
    args = _parser().parse_args(["list"])
    args.func(args)
    out = capsys.readouterr().out
    assert "RadauIIA5" in out and "scipy (Radau)" in out and "torchdiffeq (dopri5)" in out
    assert "julia (Vern7) [not installed]" in out or shutil.which("julia")
    # `solvers list` is an alias: the same text, one format
    alias = _parser().parse_args(["solvers", "list"])
    alias.func(alias)
    assert capsys.readouterr().out == out


def test_the_solvers_compare_command_on_an_untrained_point_cloud_model(tmp_path, capsys):
    args = _parser().parse_args(
        [
            "solvers",
            "compare",
            "--task",
            "pointcloud",
            "--model",
            "nesterovnode",
            "--epochs",
            "0",
            "--points",
            "8",
            "--solvers",
            "DP5",
            "RK4",
            "scipy:LSODA",
            "--tols",
            "1e-3",
            "1e-6",
            "--dt",
            "0.1",
            "--reference-tol",
            "1e-10",
            "--out",
            str(tmp_path),
        ]
    )
    result = args.func(args)
    out = capsys.readouterr().out
    assert "nesterovnode (untrained), 8 points" in out and "scipy:LSODA" in out
    data = json.loads((tmp_path / "compare_pointcloud_nesterovnode.json").read_text())
    assert data["points"] == 8 and len(data["rows"]) == 5
    assert all(r["status"] == "ok" and r["error"] < 1e-2 for r in data["rows"])
    assert open(result["png"], "rb").read(4) == b"\x89PNG"


def test_the_stiffness_command_compares_untrained_models(tmp_path, capsys):
    args = _parser().parse_args(
        [
            "stiffness",
            "--task",
            "pointcloud",
            "--models",
            "node",
            "hbnode",
            "nesterovnode",
            "--epochs",
            "0",
            "--points",
            "6",
            "--times",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    result = args.func(args)
    out = capsys.readouterr().out
    for name in ("node", "hbnode", "nesterovnode", "max ratio"):
        assert name in out
    data = json.loads((tmp_path / "stiffness_pointcloud.json").read_text())
    assert set(data["models"]) == {"node", "hbnode", "nesterovnode"}
    nest = data["models"]["nesterovnode"]
    assert len(nest["points"]) == 3 and len(nest["points"][0]["samples"]) == 6
    # [x, m] state of a 2-D point: 4 eigenvalues per sample; m' = -m - ... damps at rate ~1
    assert len(nest["points"][0]["samples"][0]["eig_real"]) == 4
    assert open(result["png"], "rb").read(4) == b"\x89PNG"


def test_models_for_the_commands_come_from_training_unless_untrained(monkeypatch):
    calls = []

    def fake_load_or_train(task, model, checkpoint=None, epochs=None, seed=0, out_dir=None):
        calls.append((task, model, checkpoint, epochs, seed))
        from nesterovnode.tasks import get_task

        return get_task(task).build_model(model)

    import nesterovnode.runs.training as training
    from nesterovnode.tasks import get_task

    monkeypatch.setattr(training, "load_or_train", fake_load_or_train)
    run_models.get_model("pointcloud", "hbnode", epochs=3, seed=1)
    run_models.get_model("pointcloud", "node", checkpoint="run/x.pt")
    run_models.get_model("pointcloud", "node", epochs=0)  # untrained: no training call
    default = get_task("pointcloud").defaults.epochs
    assert calls == [
        ("pointcloud", "hbnode", None, 3, 1),
        ("pointcloud", "node", "run/x.pt", default, 0),
    ]
