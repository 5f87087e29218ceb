"""The main job: `nesterovnode compare pointcloud` end to end, and the CLI's errors."""

from __future__ import annotations

import json

import pytest

from nesterovnode.cli import main
from nesterovnode.runs import format_table, summary_rows

PNG = b"\x89PNG\r\n\x1a\n"


def test_compare_writes_results_plots_and_a_table(tmp_path, capsys):
    out = tmp_path / "cmp"

    def args(epochs="2", tol="1e-5", *extra):
        return [
            "compare",
            "pointcloud",
            "--models",
            "node",
            "nesterovnode",
            "--epochs",
            epochs,
            "--seeds",
            "2",
            "--tol",
            tol,
            "--out",
            str(out),
            "--jobs",
            "1",
            "--no-progress",
            *extra,
        ]

    assert main(args()) == 0
    printed = capsys.readouterr().out
    assert "nesterovnode" in printed and "NFE fwd" in printed and "581" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "pointcloud"
    assert set(results["models"]) == {"node", "nesterovnode"}
    entry = results["models"]["nesterovnode"]
    assert entry["params"] == 581
    assert [r["seed"] for r in entry["runs"]] == [0, 1]
    epoch = entry["runs"][1]["epochs"][-1]
    assert set(epoch) >= {"epoch", "loss", "accuracy", "nfe_forward", "nfe_backward", "seconds"}
    assert epoch["epoch"] == 2 and epoch["nfe_forward"] > 0
    for name in ("loss", "nfe_forward", "nfe_backward", "features"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG

    # The same --out: refused without --resume; another configuration refused outright.
    assert main(args()) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args("2", "1e-3", "--resume")) == 2
    assert "another configuration" in capsys.readouterr().err
    # --resume extends the runs by one epoch without repeating any.
    assert main(args("3", "1e-5", "--resume")) == 0
    results = json.loads((out / "results.json").read_text())
    assert [e["epoch"] for e in results["models"]["node"]["runs"][0]["epochs"]] == [1, 2, 3]
    rows = summary_rows(results)
    assert [r["model"] for r in rows] == ["node", "nesterovnode"]
    assert "final loss" in format_table(rows)


def test_compare_runs_in_parallel_processes(tmp_path):
    out = tmp_path / "par"
    assert (
        main(
            [
                "compare",
                "pointcloud",
                "--models",
                "hbnode",
                "gnesterovnode",
                "--epochs",
                "1",
                "--tol",
                "1e-4",
                "--out",
                str(out),
                "--jobs",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["gnesterovnode"]["params"] == 581
    assert results["models"]["hbnode"]["runs"][0]["epochs"][0]["nfe_backward"] > 0


def test_train_command_trains_one_model(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "pointcloud",
                "--model",
                "ghbnode",
                "--epochs",
                "1",
                "--tol",
                "1e-4",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "epoch   1" in capsys.readouterr().out
    assert (tmp_path / "checkpoint.pt").exists()
    # --dtype omitted: the task's (float64 for the point cloud), recorded with the run
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float64"
    from nesterovnode.cli import build_parser

    args = build_parser().parse_args(
        ["train", "pointcloud", "--model", "node", "--dtype", "float32"]
    )
    assert args.dtype == "float32"


def test_unknown_names_list_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "pointcloud", "--models", "transformer"])
    assert "valid models: node, anode" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "imagenet"])
    assert "valid tasks: pointcloud" in capsys.readouterr().err


def test_list_shows_models_solvers_and_engines(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "gnesterovnode" in out and "DP5" in out
    assert "torchdiffeq (dopri5)" in out and "rk (dp5)" in out
    # each model with the options it accepts (the model registry)
    assert "anode" in out and "augment_dim" in out and "r, xi, learn_xi, sigma" in out


@pytest.mark.slow  # signals between processes: kept out of the default run on loaded machines
def test_ctrl_c_stops_a_parallel_comparison_and_leaves_resumable_runs(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "nesterovnode.cli",
        "compare",
        "pointcloud",
        "--epochs",
        "200",
        "--models",
        "node",
        "hbnode",
        "nesterovnode",
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-progress",
        # eager steps: compiled ones (auto, at 600 iterations) can finish a run before the
        # interrupt, and the resume below needs every run unfinished
        "--compile",
        "off",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    logs = [out / "runs" / m / "seed0" / "log.jsonl" for m in ("node", "hbnode")]
    deadline = time.time() + 60
    while time.time() < deadline and not all(p.exists() for p in logs):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)  # the main process only, as `kill -INT` would
    start = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - start < 20
    assert b"--resume" in err
    # No worker goes on training after the command returned.
    sizes = [p.stat().st_size for p in logs]
    time.sleep(1.0)
    assert [p.stat().st_size for p in logs] == sizes
    done = len(logs[0].read_text().splitlines())
    assert 1 <= done < 200
    assert (
        main(
            [
                "compare",
                "pointcloud",
                "--models",
                "node",
                "--epochs",
                str(done + 1),
                "--out",
                str(out),
                "--jobs",
                "1",
                "--no-progress",
                "--resume",
            ]
        )
        == 0
    )
    assert len(logs[0].read_text().splitlines()) == done + 1


def test_python_dash_m_runs_the_command_and_json_is_strict(tmp_path):
    import subprocess
    import sys

    from nesterovnode.io import finite_json, write_json_atomic

    for module in ("nesterovnode", "nesterovnode.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "list"], capture_output=True, text=True, check=True
        )
        assert "gnesterovnode" in done.stdout and "DP5" in done.stdout
    # a failed solve's NaN error (or an infinity) is written as null: strict JSON
    assert finite_json({"a": [1.0, float("nan")], "b": (float("inf"),)}) == {
        "a": [1.0, None],
        "b": [None],
    }
    write_json_atomic(tmp_path / "x.json", {"error": float("nan")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"error": None}
