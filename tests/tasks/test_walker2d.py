"""The Walker2D task: the loader's protocol, the ODE-RNN's gap flow, the paper's parameter
counts, a short training run, resume, and the generator (when MuJoCo is installed)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from helpers import shared_data_dir
from nesterovnode.data.walker2d import (
    FEATURES,
    WalkerProtocol,
    kept_steps,
    walker2d_splits,
    window_count,
    write_rollouts,
)
from nesterovnode.runs import TrainConfig, train
from nesterovnode.tasks import MODEL_NAMES, count_parameters, get_task
from nesterovnode.tasks.odernn import GapFlow
from nesterovnode.tasks.walker2d import Walker2DTask

#: tests of the real rollouts skip where ../shared/data/walker2d is absent; the
#: generator's skip without gymnasium and MuJoCo
needs_real_rollouts = pytest.mark.skipif(
    shared_data_dir() is None or not (shared_data_dir() / "walker2d").is_dir(),
    reason="the real Walker2D rollouts (../shared/data/walker2d) are not here",
)
needs_mujoco = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gymnasium", "mujoco")),
    reason='needs gymnasium with MuJoCo: pip install "nesterovnode[walker]"',
)

TABLE_1 = {
    "node": 9929,
    "anode": 10019,
    "sonode": 11471,
    "hbnode": 10099,
    "ghbnode": 10099,
    "nesterovnode": 10098,
    "gnesterovnode": 10098,
}


def synthetic_rollouts(n: int = 20, length: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Smooth 17-feature signals (sines of random frequency and phase) as rollouts."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None] * 0.05
    out = {}
    for i in range(n):
        freq = rng.uniform(0.5, 2.0, FEATURES)
        phase = rng.uniform(0, 2 * math.pi, FEATURES)
        out[f"rollout_{i:03d}"] = np.sin(freq * t + phase)
    return out


def test_split_is_disjoint_by_rollout_and_75_10_15():
    s = walker2d_splits(rollouts=synthetic_rollouts(40))
    parts = [set(s.rollouts[k]) for k in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [30, 4, 6]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(synthetic_rollouts(40))


def test_window_count_for_a_known_rollout_length():
    # no drops: 200 steps give (200 - 64) // 16 + 1 = 9 windows per rollout
    s = walker2d_splits(rollouts=synthetic_rollouts(20, 200), protocol=WalkerProtocol(drop=0.0))
    assert window_count(200) == 9
    assert len(s.train) == 9 * len(s.rollouts["train"])
    assert window_count(63) == 0 and window_count(64) == 1 and window_count(80) == 2
    x, y = s.train[0]
    assert x.shape == (64, FEATURES + 1) and y.shape == (63, FEATURES)
    torch.testing.assert_close(y, x[1:, :FEATURES])


def test_about_ten_percent_of_steps_are_dropped_and_gaps_are_positive():
    rng = np.random.default_rng(1)
    kept = kept_steps(100_000, 0.1, 6, rng)
    assert 0.09 < 1 - len(kept) / 100_000 < 0.11
    gaps = np.diff(kept)
    assert gaps.min() >= 1 and gaps.max() <= 6
    s = walker2d_splits(rollouts=synthetic_rollouts(20, 400))
    assert 0.08 < s.dropped_fraction < 0.12
    g = s.train.tensors[0][:, 1:, FEATURES]
    assert bool((g > 0).all()) and float(g.max()) <= 6 / 64 + 1e-7
    assert float(g.min()) == pytest.approx(1 / 64)


def test_the_split_is_reproducible_and_recorded():
    a = walker2d_splits(rollouts=synthetic_rollouts(20))
    b = walker2d_splits(rollouts=synthetic_rollouts(20))
    assert a.rollouts == b.rollouts
    torch.testing.assert_close(a.test.tensors[0], b.test.tensors[0])
    d = a.describe()
    assert d["protocol"]["window"] == 64 and d["windows"]["train"] == len(a.train)


@needs_real_rollouts
def test_real_rollouts_split_300_40_60():
    s = walker2d_splits(shared_data_dir() / "walker2d")
    assert [len(s.rollouts[k]) for k in ("train", "valid", "test")] == [300, 40, 60]
    assert 0.09 < s.dropped_fraction < 0.11


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_walker_models_have_the_paper_parameter_counts(name):
    assert count_parameters(get_task("walker2d").build_model(name)) == TABLE_1[name]


def test_gap_flow_integrates_each_sample_over_its_own_gap(float64):
    # NODE h' = -2 h over per-sample gaps: h(Δ) = h0 exp(-2 Δ), in one solve from s = 0 to 1
    import nesterovnode as nno

    dyn = nno.NODE(torch.nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        dyn.f.net.weight.fill_(-2.0)
    flow = GapFlow(dyn, (1,))
    gaps = torch.tensor([1 / 64, 3 / 64, 6 / 64])
    z0 = flow.pack(torch.ones(3, 1), gaps)
    sol = nno.solve(flow, z0, [0.0, 1.0], rtol=1e-10, atol=1e-10)
    end, g = flow.unpack(sol.ys[-1])
    torch.testing.assert_close(end[:, 0], torch.exp(-2 * gaps), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g[:, 0], gaps)


def test_nesterov_gap_flow_matches_a_solve_from_t_1(float64):
    # the per-gap restart: a sample with gap Δ is the model solved from t = 1 to 1 + Δ
    import nesterovnode as nno

    task = Walker2DTask()
    model = task.build_model("nesterovnode", rtol=1e-10, atol=1e-10).double()
    dyn = model.dynamics
    torch.manual_seed(0)
    h, m = torch.randn(2, 24), torch.randn(2, 24)
    gaps = torch.tensor([2 / 64, 5 / 64])
    y0 = dyn.initial_state(1.0, h, m)
    with torch.no_grad():
        sol = nno.solve(model.flow, model.flow.pack(y0, gaps), [0.0, 1.0], rtol=1e-10, atol=1e-10)
    end, _ = model.flow.unpack(sol.ys[-1])
    for b in range(2):
        ref = nno.solve(dyn, y0[b : b + 1], [1.0, 1.0 + float(gaps[b])], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(end[b : b + 1], ref.ys[-1].detach(), rtol=1e-7, atol=1e-9)


def _tiny_task():
    return Walker2DTask(protocol=WalkerProtocol(window=12, stride=12))


@pytest.fixture
def tiny_data(tmp_path):
    write_rollouts(tmp_path / "rollouts.npz", list(synthetic_rollouts(8, 100).values()))
    return tmp_path


def _config(tiny_data, epochs, model="nesterovnode"):
    return TrainConfig(
        task="walker2d",
        model=model,
        epochs=epochs,
        batch_size=16,
        lr=1e-2,
        solve={"tol": 1e-3},
        data_dir=str(tiny_data),
        subset=32,
        test_subset=16,
    )


def test_a_short_walker_run_lowers_the_loss_and_records_mse(tiny_data, tmp_path):
    torch.set_num_threads(1)
    r = train(_config(tiny_data, 4), tmp_path / "run", task=_tiny_task(), progress=False)
    losses = [e["loss"] for e in r.history]
    assert losses[-1] < 0.8 * losses[0]
    last = r.history[-1]
    assert {"mse", "test_mse", "nfe_forward", "nfe_backward"} <= set(last)
    assert last["nfe_forward"] > 0 and last["nfe_backward"] > 0


def test_the_recorded_training_mse_is_the_epochs_mean_not_truncated(tiny_data, tmp_path):
    """Every window has the same number of predictions, so the epoch's mean per-window MSE
    is its mean loss (the MSE over all predictions), to float32 rounding. It was summed
    through int(), which truncated each batch's sum of MSEs (an epoch at 0.507 recorded
    0.469; the Walker2D runs' training MSEs were all off by up to 1/256)."""
    torch.set_num_threads(1)
    r = train(_config(tiny_data, 2), tmp_path / "run", task=_tiny_task(), progress=False)
    for e in r.history:
        assert e["mse"] == pytest.approx(e["loss"], rel=1e-6)  # float32 sums


def test_a_resumed_walker_run_equals_an_uninterrupted_one(tiny_data, tmp_path):
    torch.set_num_threads(1)
    full = train(
        _config(tiny_data, 2, "ghbnode"), tmp_path / "a", task=_tiny_task(), progress=False
    )
    train(_config(tiny_data, 1, "ghbnode"), tmp_path / "b", task=_tiny_task(), progress=False)
    resumed = train(
        _config(tiny_data, 2, "ghbnode"),
        tmp_path / "b",
        resume=True,
        task=_tiny_task(),
        progress=False,
    )
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in full.history]
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@needs_mujoco
def test_generator_writes_rollouts_of_the_data_format_deterministically(tmp_path):
    from nesterovnode.data.walker2d import read_rollouts
    from nesterovnode.data.walker2d_generate import generate_walker2d

    a = read_rollouts(generate_walker2d(tmp_path / "a", 2, seed=3, max_steps=60))
    b = read_rollouts(generate_walker2d(tmp_path / "b", 2, seed=3, max_steps=60))
    assert sorted(a) == ["rollout_000", "rollout_001"]
    for k in a:
        assert a[k].shape[1] == FEATURES and 1 <= a[k].shape[0] <= 60
        assert a[k].dtype == np.float64
        np.testing.assert_array_equal(a[k], b[k])


def test_generator_without_mujoco_names_the_extra(monkeypatch):
    import builtins

    from nesterovnode.data import walker2d_generate

    real_import = builtins.__import__

    def no_gym(name, *args, **kwargs):
        if name in ("gymnasium", "mujoco"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gym)
    with pytest.raises(walker2d_generate.WalkerUnavailableError, match=r"nesterovnode\[walker\]"):
        walker2d_generate.require_gymnasium()


@needs_mujoco
def test_models_train_on_generated_rollouts(tmp_path):
    """The generator's output is a data set the task reads and the models learn from."""
    from nesterovnode.data.walker2d_generate import generate_walker2d

    torch.set_num_threads(1)
    generate_walker2d(tmp_path / "data", 8, seed=0, max_steps=100)
    r = train(_config(tmp_path / "data", 4), tmp_path / "run", task=_tiny_task(), progress=False)
    losses = [e["loss"] for e in r.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]
    assert r.history[-1]["test_mse"] < r.history[0]["test_mse"]


#: how close the generated rollouts' per-feature statistics must come to the real set's:
#: |mean difference| within MEAN_WITHIN real standard deviations, spread within a factor
MEAN_WITHIN, SPREAD_FACTOR = 1.5, 3.5


@needs_mujoco
@needs_real_rollouts
def test_generated_rollouts_have_the_statistics_of_the_real_set():
    from nesterovnode.data.walker2d import feature_statistics, read_rollouts
    from nesterovnode.data.walker2d_generate import generate_rollouts

    real = read_rollouts(shared_data_dir() / "walker2d" / "rollouts.npz")
    real_mean, real_std = feature_statistics(real)
    mean, std = feature_statistics(generate_rollouts(8, seed=0))
    shift = np.abs(mean - real_mean) / real_std
    spread = std / real_std
    assert shift.max() <= MEAN_WITHIN, np.round(shift, 2)
    assert (spread <= SPREAD_FACTOR).all() and (spread >= 1 / SPREAD_FACTOR).all(), np.round(
        spread, 2
    )
