"""The training loop: loss falls, checkpoints resume exactly, results are not clobbered."""

from __future__ import annotations

import json

import pytest

from nesterovnode.runs import TrainConfig, load_model, read_log, train


def quick(model="nesterovnode", epochs=3, **kw):
    return TrainConfig(task="pointcloud", model=model, epochs=epochs, solve={"tol": 1e-5}, **kw)


def test_training_loss_falls_and_nfe_is_logged():
    result = train(quick(epochs=8), progress=False)
    losses = [e["loss"] for e in result.history]
    assert losses[-1] < 0.8 * losses[0]
    for e in result.history:
        assert e["nfe_forward"] > 10 and e["nfe_backward"] > 10 and e["seconds"] > 0
        assert 0.0 <= e["accuracy"] <= 1.0
    assert result.params == 581


def test_resume_continues_exactly_where_an_interrupted_run_stopped(tmp_path):
    full = train(quick(epochs=4), tmp_path / "full", progress=False).history

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(record):
        if record["epoch"] == 2:
            raise Stop  # as Ctrl-C after the second epoch's checkpoint

    with pytest.raises(Stop):
        train(quick(epochs=4), tmp_path / "cut", progress=False, on_epoch=interrupt)
    assert [e["epoch"] for e in read_log(tmp_path / "cut")] == [1, 2]
    resumed = train(quick(epochs=4), tmp_path / "cut", resume=True, progress=False).history
    assert [e["epoch"] for e in resumed] == [1, 2, 3, 4]
    for a, b in zip(resumed, full):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["nfe_forward"] == b["nfe_forward"]
    assert len(read_log(tmp_path / "cut")) == 4
    assert not list((tmp_path / "cut").glob(".*tmp"))  # atomic writes leave no debris


def test_an_existing_run_is_not_overwritten_or_mixed(tmp_path):
    train(quick(epochs=1), tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(quick(epochs=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train(quick(epochs=2, lr=0.5), tmp_path, resume=True, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "nesterovnode" and config["solve"]["rtol"] == 1e-5
    # overwrite replaces the run (the same folder protocol as a comparison's --out)
    again = train(quick(epochs=1, lr=0.5), tmp_path, overwrite=True, progress=False)
    assert [e["epoch"] for e in again.history] == [1]
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.5


def test_a_checkpoint_loads_back_into_the_same_model(tmp_path):
    result = train(quick(model="hbnode", epochs=1), tmp_path, progress=False)
    model = load_model(tmp_path)
    for (k, a), (_, b) in zip(result.model.state_dict().items(), model.state_dict().items()):
        assert a.equal(b), k


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train(quick(epochs=0), progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        train(quick(model="transformer"), progress=False)


def test_the_point_cloud_trains_in_float64_and_records_it(tmp_path):
    import torch

    from nesterovnode.runs import compare
    from nesterovnode.tasks import get_task

    result = train(quick(epochs=1), tmp_path / "run", progress=False)
    assert all(p.dtype == torch.float64 for p in result.model.parameters())
    assert result.config.dtype == "float64"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dtype"] == "float64"
    assert load_model(tmp_path / "run").head[0].weight.dtype == torch.float64
    single = train(quick(epochs=1, dtype="float32"), progress=False).model
    assert all(p.dtype == torch.float32 for p in single.parameters())
    # the image tasks stay float32
    assert TrainConfig(task="mnist").resolved(get_task("mnist")).dtype == "float32"
    with pytest.raises(ValueError, match="dtype must be one of float32, float64"):
        train(quick(dtype="float16"), progress=False)

    results = compare(quick(epochs=1), models=["node"], out=tmp_path / "cmp", progress=False)
    assert results["config"]["dtype"] == "float64"
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved["config"]["dtype"] == "float64"


def _drop_dtype(folder):
    """Make ``folder`` look like a run saved before the dtype was recorded."""
    import torch

    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    del state["config"]["dtype"]
    torch.save(state, folder / "checkpoint.pt")


def test_runs_saved_without_a_dtype_resume_as_float32_only_when_asked(tmp_path):
    import torch

    from nesterovnode.runs import compare

    train(quick(epochs=1, dtype="float32"), tmp_path, progress=False)
    _drop_dtype(tmp_path)
    assert load_model(tmp_path).head[0].weight.dtype == torch.float32
    # the task's default is now float64: refused, saying how to resume
    with pytest.raises(ValueError, match="another configuration.*--dtype float32"):
        train(quick(epochs=2), tmp_path, resume=True, progress=False)
    resumed = train(quick(epochs=2, dtype="float32"), tmp_path, resume=True, progress=False)
    assert [e["epoch"] for e in resumed.history] == [1, 2]
    assert all(p.dtype == torch.float32 for p in resumed.model.parameters())

    # the same for a comparison whose results.json has no dtype
    out = tmp_path / "cmp"
    compare(quick(epochs=1, dtype="float32"), models=["node"], out=out, progress=False)
    results = json.loads((out / "results.json").read_text())
    del results["config"]["dtype"]
    (out / "results.json").write_text(json.dumps(results))
    _drop_dtype(out / "runs" / "node" / "seed0")
    with pytest.raises(FileExistsError, match="--dtype float32"):
        compare(quick(epochs=2), models=["node"], out=out, resume=True, progress=False)
    again = compare(
        quick(epochs=2, dtype="float32"), models=["node"], out=out, resume=True, progress=False
    )
    assert len(again["models"]["node"]["runs"][0]["epochs"]) == 2


def test_the_runs_adam_is_fused_on_the_cpu_and_gives_torchs_default_update():
    """The training runs' Adam (``runs.training.adam``) is torch's fused one where torch has
    it: after 20 steps from the same gradients, the parameters equal the default Adam's
    to round-off, and differ from the start."""
    import torch

    from nesterovnode.runs.training import adam

    torch.manual_seed(0)
    start = [torch.randn(14, 3, dtype=torch.float64), torch.randn(14, dtype=torch.float64)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(20)]
    finals = []
    for make in (lambda ps: adam(ps, 1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2)):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(params)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        finals.append(params)
        assert opt.defaults["fused"] is (True if len(finals) == 1 else None)
    for fused, default, p0 in zip(*finals, start):
        assert torch.allclose(fused, default, rtol=0, atol=1e-14)
        assert (fused - p0).abs().max() > 0.05
