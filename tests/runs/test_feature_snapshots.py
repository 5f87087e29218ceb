"""Feature snapshots (``runs.features``): a comparison draws the point cloud's features after
the task's snapshot epoch beside the final ones, equal to the bit to a run of that many
epochs; taking them changes no training number; a resumed run keeps them; a run folder's
copy (what the Ray executor ships) carries them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import nesterovnode.plotting as plotting
from helpers import saved_figures, without_timings
from nesterovnode.runs import TrainConfig, compare, read_checkpoint
from nesterovnode.runs.checkpoint import FEATURES, RUN_FILES, run_files, write_run_files
from nesterovnode.runs.features import read_snapshots
from nesterovnode.runs.sweep import Job, run_job
from nesterovnode.tasks import get_task
from nesterovnode.tasks.pointcloud import PointCloudTask


def quick(epochs: int, model: str = "node") -> TrainConfig:
    """A resolved point-cloud run (float64, eager steps) of a few epochs, seed 0."""
    config = TrainConfig(
        task="pointcloud", model=model, epochs=epochs, solve={"tol": 1e-3}, compile="off"
    )
    return config.resolved(get_task("pointcloud"))


@pytest.fixture
def snapshot_at(monkeypatch):
    """Set the point cloud's snapshot epochs (the paper's 100) for the test."""

    def at(*epochs: int) -> None:
        monkeypatch.setattr(PointCloudTask, "feature_epochs", epochs)

    return at


def panels(fig) -> list[np.ndarray]:
    """The points each panel of a feature figure shows, class -1 then class +1."""
    return [
        np.concatenate([c.get_offsets() for c in ax.collections])
        for ax in fig.axes
        if ax.collections
    ]


def test_a_three_epoch_comparison_draws_the_features_after_epoch_two_equal_to_a_two_epoch_run(
    tmp_path, snapshot_at, monkeypatch
):
    snapshot_at(2)
    figures = saved_figures(monkeypatch, plotting)
    models = ["node", "hbnode"]
    compare(quick(3), models=models, out=tmp_path / "cmp", progress=False)
    assert (tmp_path / "cmp" / "features.png").exists()
    assert (tmp_path / "cmp" / "features_epoch2.png").exists()
    final, snapshot = figures["features.png"], figures["features_epoch2.png"]
    assert "120 training points after 3 epochs, seed 0" in final[1]
    assert "120 training points after 2 epochs, seed 0" in snapshot[1]
    for model, shown in zip(models, panels(snapshot[0])):
        two = run_job(Job(quick(2, model), str(tmp_path / "two")), progress=False)
        h, y = two["features"], two["labels"]
        expected = np.concatenate([h[y == -1][:, :2], h[y == 1][:, :2]])
        assert shown.shape == (120, 2)
        assert np.array_equal(shown, expected), model  # to the bit
        kept = read_snapshots(tmp_path / "cmp" / "runs" / model / "seed0")
        assert list(kept) == [2] and np.array_equal(kept[2], h)
        assert kept[2].dtype == np.float64
    # the final panel is another picture: the features moved in the third epoch
    assert not np.array_equal(panels(final[0])[0], panels(snapshot[0])[0])


def test_taking_snapshots_changes_no_loss_nfe_or_weight(tmp_path, snapshot_at):
    for model in ("node", "hbnode"):
        entries, weights = [], []
        for epochs, name in (((), "without"), ((1, 2), "with")):
            snapshot_at(*epochs)
            job = Job(quick(3, model), str(tmp_path / name))
            entries.append(run_job(job, progress=False))
            weights.append(read_checkpoint(job.folder / "checkpoint.pt")["model"])
        without, with_ = entries
        assert "features_at" not in without and sorted(with_["features_at"]) == [1, 2]
        records = [without_timings(e["epochs"]) for e in entries]
        assert records[0] == records[1] and len(records[0]) == 3
        assert all(r["nfe_forward"] > 0 and r["nfe_backward"] > 0 for r in records[0])
        assert np.array_equal(without["features"], with_["features"])
        for name, tensor in weights[0].items():
            assert torch.equal(tensor, weights[1][name]), name


def test_a_run_resumed_or_extended_past_its_snapshot_epoch_still_hands_it_back(
    tmp_path, snapshot_at
):
    snapshot_at(2)
    job = Job(quick(2), str(tmp_path / "cmp"))
    two = run_job(job, progress=False)
    # its last epoch: the final features, kept as a snapshot for a run extended later
    assert "features_at" not in two
    assert np.array_equal(read_snapshots(job.folder)[2], two["features"])
    bare = tmp_path / "bare" / "runs" / "node" / "seed0"
    shutil.copytree(job.folder, bare)
    (bare / FEATURES).unlink()  # as a folder written before snapshots were kept
    extended = run_job(Job(quick(3), str(tmp_path / "cmp")), progress=False)
    assert [e["epoch"] for e in extended["epochs"]] == [1, 2, 3]
    assert list(extended["features_at"]) == [2]
    assert np.array_equal(extended["features_at"][2], two["features"])
    # a run that passed the epoch without the snapshot has none to hand back
    assert "features_at" not in run_job(Job(quick(3), str(tmp_path / "bare")), progress=False)


def test_a_run_folders_copy_carries_its_snapshots_written_before_the_checkpoint(
    tmp_path, snapshot_at
):
    snapshot_at(1)
    job = Job(quick(1), str(tmp_path / "here"))
    run_job(job, progress=False)
    files = run_files(job.folder)
    assert sorted(files) == sorted(RUN_FILES)  # what a cluster's task sends the driver
    write_run_files(tmp_path / "there", files)
    assert np.array_equal(read_snapshots(tmp_path / "there")[1], read_snapshots(job.folder)[1])
    # a copy stopped part way never holds a checkpoint ahead of its snapshots
    assert RUN_FILES.index(FEATURES) < RUN_FILES.index("checkpoint.pt")
