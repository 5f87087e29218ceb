"""A failing run stops with one line (model, seed, epoch, cause, fix) and keeps what it
finished; saved runs are checked when read back."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nesterovnode.runs import (
    CorruptRunError,
    RunFailed,
    TrainConfig,
    load_model,
    read_failure,
    read_log,
    train,
)
from nesterovnode.solve import SolverError


def quick(model="node", epochs=2, solve=(), **kw):
    solve = dict(solve)
    return TrainConfig(
        task="pointcloud", model=model, epochs=epochs, solve={"tol": 1e-4, **solve}, **kw
    )


def poison_after_first_epoch(result_model_holder):
    """An on_epoch hook that makes the model's weights NaN after epoch 1."""

    def hook(record):
        if record["epoch"] == 1:
            with torch.no_grad():
                for p in result_model_holder["model"].parameters():
                    p.fill_(float("nan"))

    return hook


def test_a_diverging_run_stops_with_one_line_and_keeps_its_finished_epochs(tmp_path, monkeypatch):
    import nesterovnode.runs.training as training

    holder = {}
    real = training.build_model

    def build(*a, **kw):
        holder["model"] = real(*a, **kw)
        return holder["model"]

    monkeypatch.setattr(training, "build_model", build)
    with pytest.raises(RunFailed) as info:
        train(quick(epochs=3), tmp_path, progress=False, on_epoch=poison_after_first_epoch(holder))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("node seed 0 failed in epoch 2: ")
    assert "--lr" in message and "--tol" in message and "--solver" in message
    assert "epochs 1-1 are kept" in message
    # the checkpoint holds epoch 1; the log ends with the failure
    assert [e["epoch"] for e in read_log(tmp_path)] == [1]
    failure = read_failure(tmp_path)
    assert failure["status"] == "failed" and failure["epoch"] == 2
    assert torch.isfinite(load_model(tmp_path).head[0].weight).all()


def test_a_solver_failure_names_the_solve_and_suggests_what_to_change():
    with pytest.raises(RunFailed) as info:
        train(quick(lr=1e6, epochs=1), progress=False)
    assert isinstance(info.value.__cause__, (SolverError, FloatingPointError))
    text = str(info.value)
    assert "node seed 0 failed in epoch 1" in text and "lower --lr (now 1e+06)" in text


def test_out_of_memory_is_a_run_failure_with_a_batch_size_fix(tmp_path):
    from nesterovnode.tasks import get_task

    task = get_task("pointcloud")

    def loss_fn(output, y):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    task.loss_fn = loss_fn
    with pytest.raises(RunFailed, match="out of memory in the forward pass.*--batch-size"):
        train(quick(epochs=1), tmp_path, task=task, progress=False)
    assert read_failure(tmp_path)["epoch"] == 1


def test_a_corrupt_checkpoint_is_refused_with_a_message_and_left_untouched(tmp_path):
    train(quick(epochs=1), tmp_path, progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage" * 10)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(
        CorruptRunError, match="checkpoint.pt is not a readable checkpoint.*--overwrite"
    ):
        train(quick(epochs=2), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    (tmp_path / "log.jsonl").write_text('{"epoch": 1}\n{"epo')
    with pytest.raises(CorruptRunError, match="log.jsonl line 2 is not JSON"):
        read_log(tmp_path)


def test_a_checkpoint_knows_its_task_model_and_options_and_refuses_another_name(tmp_path):
    train(
        quick(model="gnesterovnode", epochs=1, model_options={"r": 4.0}), tmp_path, progress=False
    )
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["task"] == "pointcloud" and state["model_name"] == "gnesterovnode"
    assert state["config"]["model_options"] == {"r": 4.0}
    with pytest.raises(ValueError, match="gnesterovnode run, not pointcloud node"):
        load_model(tmp_path, model="node")
    assert load_model(tmp_path, model="gnesterovnode") is not None
    # resuming it as another model is refused too
    with pytest.raises(ValueError, match="pointcloud gnesterovnode run, not pointcloud node"):
        train(quick(model="node", epochs=2), tmp_path, resume=True, progress=False)


def test_files_are_written_with_the_users_umask(tmp_path):
    from nesterovnode.io import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_json_atomic(tmp_path / "b.json", {"x": 1})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_a_resumed_run_says_from_where_and_the_default_engine_matches_its_name(tmp_path):
    messages = []
    train(quick(epochs=1), tmp_path, progress=False)
    train(
        quick(epochs=2, solve={"engine": "rk"}),
        tmp_path,
        resume=True,
        progress=False,
        notify=messages.append,
    )
    assert any("resuming" in m and "after epoch 1, from epoch 2 to 2" in m for m in messages)


def test_the_duration_estimate_warns_about_hours_of_cpu_image_training():
    from nesterovnode.runs.training import _estimate

    cfg = TrainConfig(task="mnist", model="node", seed=0)
    text = _estimate(0.5, 469, 40, "mnist", "cpu", cfg)
    assert "2.6 h" in text and "warning: image training on the CPU" in text
    assert "warning" not in _estimate(0.5, 469, 40, "mnist", "cuda", cfg)
