"""Training on images: MNIST and CIFAR-10 through the training loop and the CLI, a
two-process DDP run under the real torchrun launcher, and the CLI's errors for bad data.

The quick runs use a fixed-step solver (Euler, dt = 0.5: two steps over [1, 2]) so that a
512-image run takes seconds on two CPU cores; the adjoint backward, DDP and the data path
are the same as at the paper's settings. The paper's solver (DP5, adjoint) is used by the
DDP and CIFAR-10 runs at a loose tolerance, and by the slow real-MNIST run.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, shared_data_dir
from nesterovnode.cli import main
from nesterovnode.data import write_idx, write_synthetic_cifar10, write_synthetic_mnist
from nesterovnode.data.mnist import MNIST_FILES
from nesterovnode.runs import TrainConfig, read_log, train
from nesterovnode.tasks import get_task

_REAL = shared_data_dir()
_REAL_MNIST = _REAL / "mnist" if _REAL is not None else None
needs_real_mnist = pytest.mark.skipif(
    _REAL_MNIST is None or not _REAL_MNIST.is_dir(),
    reason="real MNIST not present (set NESTEROVNODE_DATA to a folder with mnist/*.gz)",
)
REPO = REPO
QUICK_SOLVER = dict(solve={"solver": "Euler", "dt": 0.5})


def quick_mnist(data_dir, **kw) -> TrainConfig:
    """NesterovNODE on a 512-image MNIST subset, two epochs of eight batches."""
    opts = dict(
        task="mnist",
        model="nesterovnode",
        epochs=2,
        lr=2e-3,
        batch_size=64,
        subset=512,
        test_subset=256,
        data_dir=str(data_dir),
        **QUICK_SOLVER,
    )
    opts.update(kw)
    return TrainConfig(**opts)


@pytest.fixture(scope="module")
def synthetic_mnist(tmp_path_factory) -> Path:
    """MNIST-format files whose digits are noise plus a bar at a class-dependent row."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=512, n_test=128)


def assert_loss_falls(history, factor=0.8):
    losses = [e["loss"] for e in history]
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < factor * losses[0], losses


# -- (a) a short run whose loss falls ----------------------------------------------------


def test_short_mnist_run_on_synthetic_digits_lowers_the_loss_and_logs_every_column(
    synthetic_mnist, tmp_path
):
    result = train(quick_mnist(synthetic_mnist), tmp_path, progress=False)
    history = result.history
    assert [e["epoch"] for e in history] == [1, 2]
    assert_loss_falls(history)
    for e in history:
        assert e["iterations"] == 8  # 512 images / batch 64
        assert e["nfe_forward"] == 2 and e["nfe_backward"] == 2  # Euler, 2 steps, adjoint
        assert e["seconds"] > 0
        assert e["samples_per_second"] == pytest.approx(512 / e["seconds"])
        assert 0.0 <= e["test_accuracy"] <= 1.0
    assert history[-1]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert read_log(tmp_path) == history


@pytest.mark.slow  # an end-to-end run on real MNIST
@needs_real_mnist
def test_short_run_on_a_512_image_subset_of_real_mnist_lowers_the_loss():
    history = train(quick_mnist(_REAL_MNIST), progress=False).history
    assert_loss_falls(history)
    assert history[-1]["accuracy"] > 0.5 and history[-1]["test_accuracy"] > 0.5


@pytest.mark.slow
@needs_real_mnist
def test_real_mnist_subset_at_the_paper_solver_dp5_adjoint_lowers_the_loss():
    cfg = quick_mnist(_REAL_MNIST, solve={"solver": "DP5", "tol": 1e-3})
    history = train(cfg, progress=False).history
    assert_loss_falls(history)
    assert all(e["nfe_forward"] > 6 and e["nfe_backward"] > 6 for e in history)


def test_max_iters_truncates_every_epoch_and_test_subset_limits_evaluation(
    synthetic_mnist, tmp_path
):
    cfg = quick_mnist(synthetic_mnist, max_iters=3, test_subset=10, epochs=1)
    history = train(cfg, tmp_path, progress=False).history
    assert history[0]["iterations"] == 3
    assert history[0]["samples_per_second"] == pytest.approx(3 * 64 / history[0]["seconds"])
    tenths = history[0]["test_accuracy"] * 10  # ten test images: a multiple of 1/10
    assert tenths == pytest.approx(round(tenths), abs=1e-9)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["max_iters"] == 3 and saved["test_subset"] == 10
    # Resuming with another truncation is another experiment, refused.
    with pytest.raises(ValueError, match="another configuration"):
        train(quick_mnist(synthetic_mnist, epochs=2), tmp_path, resume=True, progress=False)


def test_runs_saved_without_the_new_options_still_resume():
    # identity() leaves unset max_iters/test_subset out: older checkpoints still match.
    mnist = get_task("mnist")
    ident = TrainConfig(task="mnist").resolved(mnist).identity()
    assert "max_iters" not in ident and "test_subset" not in ident and "download" not in ident
    assert TrainConfig(task="mnist", max_iters=5).resolved(mnist).identity()["max_iters"] == 5


# -- the CLI end to end ------------------------------------------------------------------


def test_train_mnist_command_prints_loss_accuracy_nfe_time_and_images_per_second(
    synthetic_mnist, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["train", "mnist", "--model", "gnesterovnode", "--data-dir", str(synthetic_mnist)]
    argv += ["--subset", "128", "--test-subset", "64", "--epochs", "1", "--batch-size", "32"]
    argv += ["--solver", "Euler", "--dt", "0.5", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("epoch"))
    for part in ("loss", "acc", "test acc", "NFE 2.0/2.0", "s/it", "images/s"):
        assert part in line, line
    (record,) = read_log(out)
    assert record["iterations"] == 4 and record["nfe_forward"] == 2.0
    assert (out / "checkpoint.pt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model_options"] == {}
    assert config["solve"]["dt"] == 0.5 and config["solve"]["solver"] == "Euler"


def test_compare_mnist_command_writes_results_with_test_accuracy_and_plots(
    synthetic_mnist, tmp_path, capsys
):
    out = tmp_path / "cmp"
    argv = ["compare", "mnist", "--models", "hbnode", "nesterovnode"]
    argv += ["--data-dir", str(synthetic_mnist), "--subset", "64", "--test-subset", "32"]
    argv += ["--epochs", "1", "--batch-size", "32", "--solver", "Euler", "--dt", "0.5"]
    argv += ["--out", str(out), "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed and "85931" in printed and "85930" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "mnist" and set(results["models"]) == {"hbnode", "nesterovnode"}
    for entry in results["models"].values():
        (epoch,) = entry["runs"][0]["epochs"]
        assert {"loss", "test_accuracy", "nfe_forward", "nfe_backward", "seconds"} <= set(epoch)
    for name in ("loss", "nfe_forward", "nfe_backward", "test_accuracy"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


# -- (b) CIFAR-10 end to end -------------------------------------------------------------


def test_train_cifar10_command_runs_end_to_end_on_synthetic_python_batches(tmp_path, capsys):
    write_synthetic_cifar10(tmp_path / "data", n_train=40, n_test=16, seed=1)
    out = tmp_path / "run"
    argv = ["train", "cifar10", "--model", "gnesterovnode", "--data-dir", str(tmp_path / "data")]
    argv += ["--subset", "16", "--test-subset", "8", "--epochs", "1", "--batch-size", "8"]
    argv += ["--tol", "1e-3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "images/s" in capsys.readouterr().out
    (record,) = read_log(out)
    assert record["iterations"] == 2 and math.isfinite(record["loss"])
    assert record["nfe_forward"] > 0 and record["nfe_backward"] > 0  # DP5 with its adjoint
    assert record["test_accuracy"] in {k / 8 for k in range(9)}
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["task"] == "cifar10" and state["model_name"] == "gnesterovnode"
    assert sum(v.numel() for k, v in state["model"].items() if "xi" not in k) > 170_000


# -- (c) two processes with DDP under torchrun -------------------------------------------

# The real CLI under the real torchrun launcher; the only addition is that each rank saves
# the parameters it ends with, so the replicas can be compared from outside.
_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import nesterovnode.runs.training as training
    from nesterovnode.cli import main

    _train = training.train

    def train(*args, **kwargs):
        result = _train(*args, **kwargs)
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        name = f"rank{os.environ['RANK']}.pt"
        torch.save(state, os.path.join(os.environ["RANK_STATE_DIR"], name))
        return result

    training.train = train
    sys.exit(main(sys.argv[1:]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes under torchrun
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_process_ddp_run_under_torchrun_ends_with_identical_replicas(synthetic_mnist, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(worker)]
    cmd += ["train", "mnist", "--model", "nesterovnode", "--data-dir", str(synthetic_mnist)]
    cmd += ["--subset", "64", "--test-subset", "32", "--epochs", "3", "--batch-size", "16"]
    cmd += ["--lr", "2e-3", "--tol", "1e-3", "--out", str(out), "--no-progress"]
    env = dict(os.environ, RANK_STATE_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Rank 0 alone prints and writes: one line per epoch, one log, one checkpoint.
    assert sum(line.startswith("epoch") for line in proc.stdout.splitlines()) == 3
    history = read_log(out)
    assert [e["epoch"] for e in history] == [1, 2, 3]
    for e in history:
        assert e["iterations"] == 2  # 64 images / 2 processes / batch 16
        assert e["samples_per_second"] == pytest.approx(64 / e["seconds"])
    assert all(math.isfinite(e["loss"]) for e in history)
    assert history[-1]["loss"] < history[0]["loss"]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert rank0.keys() == rank1.keys() == saved.keys()
    diff = max(float((rank0[k] - rank1[k]).abs().max()) for k in rank0)
    assert diff == 0.0  # gradients averaged, same steps: bitwise identical replicas
    assert all(torch.equal(rank0[k], saved[k]) for k in rank0)
    torch.manual_seed(0)
    start = get_task("mnist").build_model("nesterovnode").state_dict()
    assert any(not torch.equal(start[k], rank0[k]) for k in rank0)  # training moved them


# -- (d) bad inputs through the CLI ------------------------------------------------------


def _train_cli(data_dir, tmp_path, *extra):
    return main(
        ["train", "mnist", "--model", "node", "--data-dir", str(data_dir), "--epochs", "1"]
        + ["--subset", "8", "--out", str(tmp_path / "run"), "--no-progress", *extra]
    )


def test_missing_data_directory_exits_2_saying_where_the_files_go(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert _train_cli(missing, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("nesterovnode: error: MNIST train files not found")
    assert str(missing) in err and "train-images-idx3-ubyte" in err and "--download" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_download_without_torchvision_exits_2_with_the_install_command(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert _train_cli(tmp_path / "nowhere", tmp_path, "--download") == 2
    assert "pip install" in capsys.readouterr().err


def test_download_for_a_task_without_data_files_is_refused(tmp_path, capsys):
    argv = ["train", "pointcloud", "--model", "node", "--download", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "image tasks" in capsys.readouterr().err


def test_mnist_images_of_the_wrong_shape_exit_2_naming_the_expected_shape(tmp_path, capsys):
    write_synthetic_mnist(tmp_path, n_train=8, n_test=4, compress=False)
    write_idx(tmp_path / MNIST_FILES["train"][0], np.zeros((8, 32, 32), dtype=np.uint8))
    assert _train_cli(tmp_path, tmp_path) == 2
    err = capsys.readouterr().err
    assert "[N, 28, 28]" in err and "(8, 32, 32)" in err


def test_cifar10_rows_of_the_wrong_length_exit_2_naming_the_expected_shape(tmp_path, capsys):
    folder = write_synthetic_cifar10(tmp_path / "data", n_train=10, n_test=4)
    bad = {b"data": np.zeros((2, 28 * 28), dtype=np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    argv = ["train", "cifar10", "--model", "node", "--data-dir", str(tmp_path / "data")]
    assert main(argv + ["--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert "3072 = 3x32x32" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_device_without_cuda_exits_2_with_advice(synthetic_mnist, tmp_path, capsys):
    assert _train_cli(synthetic_mnist, tmp_path, "--device", "cuda") == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--max-iters", "--subset", "--test-subset"])
def test_non_positive_limits_are_refused(synthetic_mnist, tmp_path, capsys, option):
    # refused when parsed, in the option's own words (a usage error: exit status 2)
    with pytest.raises(SystemExit) as info:
        _train_cli(synthetic_mnist, tmp_path, option, "0")
    assert info.value.code == 2
    assert f"argument {option}: must be an integer >= 1" in capsys.readouterr().err
