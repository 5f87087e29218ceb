"""A comparison never loses what finished and says what its numbers are: failed runs,
results.json's summary and metadata, resuming with other models or epochs, plots."""

from __future__ import annotations

import json

import pytest

import nesterovnode.runs.sweep as sweep
from helpers import saved_figures
from nesterovnode.runs import RunFailed, TrainConfig, compare, format_table, summary_rows


def quick(epochs=1, solve=(), **kw):
    solve = dict(solve)
    return TrainConfig(task="pointcloud", epochs=epochs, solve={"tol": 1e-3, **solve}, **kw)


def test_a_failed_run_is_recorded_and_the_comparison_writes_what_finished(tmp_path, monkeypatch):
    real = sweep.train

    def train(config, *a, **kw):
        if config.model == "node":
            raise RunFailed("node", 0, 1, "the loss became nan", "lower --lr", history=[])
        return real(config, *a, **kw)

    monkeypatch.setattr(sweep, "train", train)
    messages = []
    results = compare(
        quick(), models=["node", "hbnode"], out=tmp_path, progress=False, notify=messages.append
    )
    assert any(m.startswith("failed: node seed 0 failed in epoch 1") for m in messages)
    saved = json.loads((tmp_path / "results.json").read_text())
    node = saved["models"]["node"]["runs"][0]
    assert node["status"] == "failed" and node["failure"]["cause"] == "the loss became nan"
    assert saved["models"]["hbnode"]["runs"][0]["status"] == "finished"
    assert saved["failed"] == [{"model": "node", "seed": 0, **node["failure"]}]
    assert saved["summary"]["node"]["failed"] == 1 and "final_loss" not in saved["summary"]["node"]
    table = format_table(summary_rows(results))
    assert "1 (1 failed)" not in table and "0 (1 failed)" in table and "failed" in table
    assert "failed: node seed 0: epoch 1, the loss became nan" in table
    for name in ("loss", "nfe_forward", "features"):
        assert (tmp_path / f"{name}.png").exists()


def test_results_json_says_what_ran_where_and_when_with_a_summary_per_model(tmp_path):
    results = compare(quick(), models=["node"], seeds=2, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["solve"]["engine"] == "rk"  # the default, resolved: not null
    conf = saved["configuration"]
    assert conf["engine"] == "rk" and conf["solver"] == "DP5" and conf["rtol"] == 1e-3
    assert conf["dtype"] == "float64" and conf["device"] == "cpu"
    assert conf["paper_protocol"] is False and conf["seeds"] == 2
    assert saved["versions"]["torch"] and saved["versions"]["nesterovnode"]
    assert "git_commit" in saved and saved["hardware"]["cpu_count"] >= 1
    assert saved["started"] <= saved["finished"]
    block = saved["summary"]["node"]
    assert block["finished"] == 2 and block["epochs"] == 1
    for key in ("final_loss", "accuracy", "nfe_forward_last", "nfe_forward", "s_per_epoch"):
        assert set(block[key]) == {"mean", "std"}
    losses = [r["epochs"][-1]["loss"] for r in saved["models"]["node"]["runs"]]
    assert block["final_loss"]["mean"] == pytest.approx(sum(losses) / 2)
    assert block["final_loss"]["std"] == pytest.approx(abs(losses[0] - losses[1]) / 2)
    table = format_table(summary_rows(results))
    assert "NFE fwd last" in table and "NFE fwd mean" in table and " ± " in table
    assert "mean ± std over the seeds" in table and "running metric" in table


def test_resuming_keeps_the_saved_models_and_refuses_fewer_epochs(tmp_path):
    compare(quick(epochs=2), models=["node", "hbnode"], out=tmp_path, progress=False)
    messages = []
    again = compare(
        quick(epochs=2),
        models=["node"],
        out=tmp_path,
        resume=True,
        progress=False,
        notify=messages.append,
    )
    assert set(again["models"]) == {"node", "hbnode"}
    assert set(json.loads((tmp_path / "results.json").read_text())["models"]) == {"node", "hbnode"}
    assert any("all are kept" in m for m in messages)
    with pytest.raises(ValueError, match="holds 2 epochs per run; --epochs 1"):
        compare(quick(epochs=1), models=["node"], out=tmp_path, resume=True, progress=False)
    # a results.json written before the engine was resolved (engine null) still resumes
    path = tmp_path / "results.json"
    old = json.loads(path.read_text())
    old["config"]["solve"]["engine"] = None
    path.write_text(json.dumps(old))
    compare(quick(epochs=2), models=["node"], out=tmp_path, resume=True, progress=False)


def test_a_comparison_on_a_missing_engine_leaves_no_out_folder(tmp_path):
    from nesterovnode.solve import EngineNotInstalledError, engines

    if engines()["julia"].available():
        pytest.skip("julia is installed here")
    out = tmp_path / "cmp"
    with pytest.raises(EngineNotInstalledError, match=r'pip install "nesterovnode\[julia\]"'):
        compare(quick(solve={"engine": "julia"}), models=["node"], out=out, progress=False)
    assert not out.exists()


def fake_results(subset=None):
    def run(seed, nfe, status="finished"):
        epochs = [
            {
                "epoch": e,
                "loss": 1.0 / e,
                "accuracy": 0.5,
                "nfe_forward": nfe * e,
                "nfe_backward": nfe,
                "seconds": 1.0,
            }
            for e in (1, 2, 3)
        ]
        return {"seed": seed, "status": status, "epochs": epochs}

    return {
        "task": "pointcloud",
        "config": {"subset": subset, "epochs": 3, "seeds": 2},
        "configuration": {"paper_protocol": False},
        "models": {
            "node": {"params": 1, "runs": [run(0, 20), run(1, 30)]},
            "anode": {"params": 1, "runs": [run(0, 3000), run(1, 20, "failed")]},
        },
    }


def test_plots_use_log_nfe_axes_integer_epochs_labelled_bands_and_name_the_subset(
    tmp_path, monkeypatch
):
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    import nesterovnode.plotting as plotting

    figures = saved_figures(monkeypatch, plotting)
    rng = np.random.default_rng(0)
    features = {"node": rng.normal(size=(10, 2)), "anode": 4e4 * rng.normal(size=(10, 3))}
    labels = np.array([-1, 1] * 5)
    plotting.write_plots(fake_results(subset=64), tmp_path, features, labels)
    for name in ("nfe_forward.png", "nfe_backward.png", "loss.png"):
        ax = figures[name][0].axes[0]
        assert ax.get_yscale() == "log"
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
        assert "subset of 64 samples" in ax.get_title()
        legend = ax.get_legend()
        assert "geometric std over 2 seeds" in legend.get_title().get_text()
        assert any("seed 1 failed" in t.get_text() for t in legend.get_texts())
    fig, title = figures["features.png"]
    assert "10 training points" in title and "subset of 64" in title
    node, anode = fig.axes[:2]
    assert node.get_xlabel() == "h₁(T)" and node.get_ylabel() == "h₂(T)"
    assert "blown up" in anode.get_title() and "dims 1–2" in anode.get_title()


def test_a_log_axis_band_is_geometric_and_stays_above_zero_where_mean_minus_std_does_not():
    import numpy as np

    from nesterovnode.plotting import curve_stats

    # two seeds whose losses differ by orders of magnitude: mean − std = 0 on a linear scale
    def runs(*losses):
        return [
            {"seed": s, "epochs": [{"epoch": 1, "loss": v}, {"epoch": 2, "loss": v / 10}]}
            for s, v in enumerate(losses)
        ]

    skewed = {"node": {"params": 1, "runs": runs(1e-6, 1e-6, 1.0)}}
    _, mean, low, high = curve_stats(skewed, "loss")["node"]
    assert low[0] < 0  # mean − std: what fell to the bottom of a log plot
    _, centre, low, high = curve_stats(skewed, "loss", log=True)["node"]
    assert np.all(low > 0) and centre[0] == pytest.approx(1e-4)
    models = {"node": {"params": 1, "runs": runs(1e-6, 1.0)}}
    _, centre, low, high = curve_stats(models, "loss", log=True)["node"]
    np.testing.assert_allclose(centre, [1e-3, 1e-4])  # the geometric mean
    np.testing.assert_allclose(low, [1e-6, 1e-7])  # exp(mean − std of log): the lower seed
    np.testing.assert_allclose(high, [1.0, 0.1])


def test_coinciding_curves_of_two_models_differ_in_marker_and_dash(tmp_path, monkeypatch):
    import nesterovnode.plotting as plotting

    figures = {}
    real = plotting.save

    def save(fig, path, title=None):
        figures[path.name] = fig
        return real(fig, path, title)

    monkeypatch.setattr(plotting, "save", save)
    results = fake_results()
    same = results["models"]["node"]["runs"]
    results["models"] = {"node": {"params": 1, "runs": same}, "anode": {"params": 1, "runs": same}}
    plotting.write_plots(results, tmp_path)
    node, anode = figures["nfe_forward.png"].axes[0].get_lines()[:2]
    assert list(node.get_ydata()) == list(anode.get_ydata())
    assert node.get_marker() != anode.get_marker()
    assert node.get_linestyle() != anode.get_linestyle()


def test_parallel_workers_take_the_costliest_runs_first():
    """Longest-first hand-out: on the point cloud the generalised Nesterov model (about
    4x NODE per epoch) starts first, and on 2 workers the modelled wall time falls from
    the model-order schedule's to within 1 % of the balanced bound."""
    from nesterovnode.tasks import get_task

    task = get_task("pointcloud")
    models = ["node", "anode", "sonode", "hbnode", "ghbnode", "nesterovnode", "gnesterovnode"]
    configs = [TrainConfig(task="pointcloud", model=m, seed=s) for m in models for s in (0, 1)]
    ordered = sweep.costliest_first(configs, task)
    assert [c.model for c in ordered[:2]] == ["gnesterovnode", "gnesterovnode"]
    assert [c.model for c in ordered[-2:]] == ["node", "node"]
    assert sorted(id(c) for c in ordered) == sorted(id(c) for c in configs)

    def wall(order, workers=2):
        free = [0.0] * workers
        for c in order:
            i = free.index(min(free))
            free[i] += task.run_cost[c.model]
        return max(free)

    singles = [TrainConfig(task="pointcloud", model=m) for m in models]
    bound = sum(task.run_cost.values()) / 2
    assert wall(singles) > 1.2 * bound  # the model order leaves GNesterovNODE for last
    assert wall(sweep.costliest_first(singles, task)) < 1.01 * bound
