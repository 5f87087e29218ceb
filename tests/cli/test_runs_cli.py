"""The command line as a researcher uses it: its own words for errors, argument checks,
failures in one line, resume and Ctrl-C messages, --max-iters, --version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nesterovnode.cli import build_parser, main


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["compare", "pointcloud", "--seeds", "0"], "argument --seeds: must be an integer >= 1"),
        (["compare", "pointcloud", "--jobs", "0"], "argument --jobs: must be an integer >= 1"),
        (["train", "pointcloud", "--model", "node", "--tol", "0"], "argument --tol: must be a"),
        (["train", "pointcloud", "--model", "node", "--lr", "-1"], "argument --lr: must be a"),
        (["train", "pointcloud", "--model", "node", "--epochs", "0"], "argument --epochs"),
        (["train", "pointcloud", "--model", "node", "--seed", "-1"], "argument --seed"),
        (["train", "pointcloud", "--model", "node", "--max-iters", "0"], "argument --max-iters"),
        (["solvers", "compare", "--tols", "0"], "argument --tols: must be a finite number > 0"),
        (["solvers", "compare", "--repeats", "0"], "argument --repeats"),
        (["stiffness", "--times", "0"], "argument --times"),
    ],
)
def test_every_numeric_option_is_checked_in_the_clis_words(argv, words, capsys):
    assert words in usage_error(argv, capsys)


def test_model_specific_options_are_refused_for_other_models(tmp_path, capsys):
    assert main(["train", "pointcloud", "--model", "node", "--r", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--r applies to nesterovnode, gnesterovnode only, not to node" in err
    assert not (tmp_path / "checkpoint.pt").exists()
    assert main(["compare", "pointcloud", "--r", "5", "--out", str(tmp_path / "c")]) == 2
    assert "not to node, anode" in capsys.readouterr().err


def test_version_device_auto_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from nesterovnode import __version__

    assert capsys.readouterr().out.strip() == f"nesterovnode {__version__}"
    args = build_parser().parse_args(["train", "pointcloud", "--model", "node"])
    assert args.device == "auto"
    done = subprocess.run(
        [sys.executable, "-m", "nesterovnode", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "nesterovnode" in done.stdout


def train_args(out, *extra):
    return [
        "train",
        "pointcloud",
        "--model",
        "node",
        "--tol",
        "1e-3",
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]


def test_a_failing_train_ends_in_one_line_and_exit_status_1(tmp_path, capsys):
    assert main(train_args(tmp_path, "--lr", "1e6", "--epochs", "2")) == 1
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if "failed" in x]
    assert len(line) == 1 and "Traceback" not in err
    assert line[0].startswith("nesterovnode: run failed: node seed 0 failed in epoch 1")
    assert "lower --lr (now 1e+06)" in line[0]
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["status"] == "failed"


def test_max_iters_bounds_the_run_and_a_resume_says_from_where(tmp_path, capsys):
    assert main(train_args(tmp_path, "--max-iters", "2")) == 0
    captured = capsys.readouterr()
    assert "one epoch of at most 2 iterations" in captured.err
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["iterations"]) for r in records] == [(1, 2)]
    assert main(train_args(tmp_path, "--max-iters", "2", "--epochs", "2", "--resume")) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "after epoch 1, from epoch 2 to 2" in err
    # the same checkpoint under another model name, or corrupt: refused in words
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(train_args(tmp_path, "--max-iters", "2", "--epochs", "3", "--resume")) == 2
    err = capsys.readouterr().err
    assert "is not a readable checkpoint" in err and "Traceback" not in err


def test_ctrl_c_in_train_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import nesterovnode.runs.training as training

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert main(train_args(tmp_path)) == 130
    assert "with --resume to continue" in capsys.readouterr().err


def test_a_comparison_prints_plain_epoch_lines_off_a_terminal_and_says_what_it_ran(
    tmp_path, capsys
):
    argv = [
        "compare",
        "pointcloud",
        "--models",
        "node",
        "--epochs",
        "1",
        "--tol",
        "1e-3",
        "--out",
        str(tmp_path),
        "--jobs",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "node seed 0 epoch   1/1  loss" in out
    assert "DP5 on rk" in out and "not the paper's protocol (--paper)" in out
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_solvers_compare_refuses_a_checkpoint_of_another_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "pointcloud",
                "--model",
                "hbnode",
                "--max-iters",
                "1",
                "--tol",
                "1e-3",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = [
        "solvers",
        "compare",
        "--model",
        "node",
        "--checkpoint",
        str(run),
        "--solvers",
        "DP5",
        "--tols",
        "1e-3",
        "--points",
        "4",
        "--out",
        str(tmp_path / "s"),
    ]
    assert main(argv) == 2
    assert "pointcloud hbnode run, not pointcloud node" in capsys.readouterr().err
    argv = [
        "stiffness",
        "--models",
        "node",
        "--checkpoints",
        f"node={run}",
        "--points",
        "4",
        "--out",
        str(tmp_path / "st"),
    ]
    assert main(argv) == 2
    assert "hbnode run, not pointcloud node" in capsys.readouterr().err


def prepared(argv):
    """The arguments of ``argv`` as the command runs them (after --paper and --threads)."""
    from nesterovnode.cli.runs import _prepare

    args = build_parser().parse_args(argv)
    _prepare(args)
    return args


def test_paper_takes_the_papers_seeds_epochs_tolerance_and_float64_on_walker2d():
    args = prepared(["compare", "walker2d", "--paper", "--device", "cpu"])
    assert (args.seeds, args.epochs, args.tol, args.dtype) == (5, 500, 1e-7, "float64")
    assert args.paper_departures == {}
    # the point cloud's paper protocol is float64 at its own tolerance too
    args = prepared(["compare", "pointcloud", "--paper", "--device", "cpu"])
    # Fig. 3 averages 50 runs
    assert (args.seeds, args.epochs, args.tol, args.dtype) == (50, 200, 1e-7, "float64")


def test_an_explicit_option_wins_over_paper_and_is_named_as_a_departure(capsys):
    args = prepared(
        ["compare", "walker2d", "--paper", "--seeds", "1", "--dtype", "float32", "--device", "cpu"]
    )
    assert (args.seeds, args.dtype, args.epochs, args.tol) == (1, "float32", 500, 1e-7)
    assert args.paper_departures == {"seeds": (1, 5), "dtype": ("float32", "float64")}
    err = capsys.readouterr().err
    assert "--paper with --seeds 1 (the paper's: 5), --dtype float32 (the paper's: float64)" in err
    # an option equal to the paper's value is no departure
    args = prepared(["train", "walker2d", "--model", "node", "--paper", "--epochs", "500"])
    assert args.paper_departures == {} and args.dtype == "float64"


def test_a_paper_comparison_with_fewer_seeds_runs_those_and_records_no_paper_protocol(
    tmp_path, capsys
):
    argv = [
        "compare",
        "pointcloud",
        "--paper",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--models",
        "node",
        "--out",
        str(tmp_path),
        "--jobs",
        "1",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["seeds"] == 1
    assert [r["seed"] for r in saved["models"]["node"]["runs"]] == [0]
    assert saved["configuration"]["paper_protocol"] is False
    assert saved["configuration"]["paper_departures"] == {"seeds": 1, "epochs": 1}
    out = capsys.readouterr().out
    assert "not the paper's protocol (--paper with --seeds 1, --epochs 1)" in out


def test_data_dir_help_names_every_task_that_reads_it_and_the_commands_default(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "image tasks;" not in text
    assert "walker2d: rollouts.npz (or DIR/walker2d/rollouts.npz)" in text
    assert "mnist: the four IDX files" in text
    assert "--paper the paper's protocol: its seeds, epochs, tolerance and dtype" in text
    assert "Default: $NESTEROVNODE_DATA, else ./data in the working directory" in text
