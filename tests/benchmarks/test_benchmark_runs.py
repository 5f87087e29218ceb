"""benchmarks/peers.py's measurement: the implementations take turns epoch by epoch, and
the table's figures are medians over the same last epochs, so that one hiccup of the
machine (or a drift of its speed) does not decide a comparison. The peers themselves are
optional (``pip install -e ".[bench]"``); ours and torchdiffeq run everywhere."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import peers  # noqa: E402


def _run(label, times, evals_per_batch, cpu=None):
    run = peers.Run(label)
    run.times = list(times)
    run.cpu = list(times if cpu is None else cpu)
    run.nfe = [[(e / 2, e / 2)] * 3 for e in evals_per_batch]
    run.compile = [0.0] * len(times)
    return run


def test_the_table_takes_medians_over_the_last_epochs():
    # epoch 1 compiles (10 s); epoch 4 hits a hiccup of the machine (1 s)
    run = _run("ours", [10.0, 0.003, 0.003, 1.0, 0.003, 0.006], [50, 50, 50, 50, 50, 100])
    last = peers.timed_epochs(6)
    assert last == 5 and peers.timed_epochs(30) == 10 and peers.timed_epochs(1) == 1
    # µs per evaluation per epoch: 3 batches of 50 (or 100) evaluations
    assert peers.per_evaluation(run, last) == pytest.approx([20.0, 20.0, 1e6 / 150, 20.0, 20.0])
    row = peers.summary(run, last)
    assert row["us/eval"] == pytest.approx(20.0)  # not the mean, 1350 µs
    assert row["s/epoch"] == pytest.approx(0.003)
    assert row["nfe fwd"] == pytest.approx(30.0) and row["nfe bwd"] == pytest.approx(30.0)
    assert row["compile s"] == 0.0  # eager: nothing compiled, nothing booked
    run.jit = True  # a jit's compilation is its first epoch's extra time
    assert peers.summary(run, last)["compile s"] == pytest.approx(10.0 - 0.003)


def test_the_ratio_is_taken_epoch_by_epoch():
    """Each pair of epochs was timed in the same stretch of the machine's time: a slow
    stretch slows both, and their ratio stays."""
    ours = _run("ours", [9.0, 0.004, 0.008, 0.004], [40] * 4)
    peer = _run("peer", [9.0, 0.005, 0.010, 0.004], [40] * 4)
    median, lo, hi = peers.ratio_per_epoch(ours, peer, 3)
    assert (median, lo, hi) == pytest.approx((0.8, 0.8, 1.0))


def test_the_epoch_time_ratio_counts_fewer_evaluations_as_a_gain():
    """Per evaluation two runs can be level while one takes fewer evaluations per epoch
    (a backward that starts from the forward's step): the epoch-time ratio shows what a
    user waits for."""
    ours = _run("ours", [9.0, 0.0036, 0.0036], [36] * 3)
    peer = _run("peer", [9.0, 0.0040, 0.0040], [40] * 3)
    assert peers.ratio_per_epoch(ours, peer, 2)[0] == pytest.approx(1.0)
    assert peers.ratio_per_epoch(ours, peer, 2, per="epoch") == pytest.approx((0.9, 0.9, 0.9))


def test_cpu_time_per_evaluation_counts_every_core():
    """A run computing on 1.5 cores (JAX's) books 1.5 CPU seconds per wall second: per
    evaluation it can be ahead in wall time and behind in CPU time."""
    ours = _run("ours", [9.0, 0.004, 0.004], [40] * 3)
    peer = _run("peer", [9.0, 0.0036, 0.0036], [40] * 3, cpu=[13.5, 0.0054, 0.0054])
    row = peers.summary(peer, 2)
    assert row["us/eval"] == pytest.approx(30.0) and row["cpu us/eval"] == pytest.approx(45.0)
    assert peers.ratio_per_epoch(ours, peer, 2)[0] == pytest.approx(0.004 / 0.0036)
    assert peers.ratio_per_epoch(ours, peer, 2, cpu=True)[0] == pytest.approx(0.004 / 0.0054)


def test_the_base_is_compared_with_each_run_and_each_compiled_run_with_each_peer():
    runs = []
    for impl in ("rk compiled", "rk compiled, host loop", "rk", "diffrax"):
        runs.append(_run(impl, [1.0], [1]))
        runs[-1].impl = impl
    pairs = [(a.impl, b.impl) for a, b in peers.ratio_pairs(runs)]
    assert pairs == [
        ("rk compiled", "rk compiled, host loop"),
        ("rk compiled", "rk"),
        ("rk compiled", "diffrax"),
        ("rk compiled, host loop", "diffrax"),
    ]


def test_a_short_run_of_ours_takes_turns_and_trains_alike(monkeypatch, tmp_path):
    """Eager rk and torchdiffeq, 3 epochs of NODE: turns epoch by epoch, from the same
    weights to the same loss (the solvers agree to their tolerance), with NFE and
    positive timings in the table and the JSON."""
    order = []
    epoch = peers.Run.epoch

    def logged(run):
        order.append(run.label)
        epoch(run)

    monkeypatch.setattr(peers.Run, "epoch", logged)
    out = tmp_path / "peers.json"
    results = peers.main(
        ["--epochs", "3", "--models", "node", "--impls", "rk", "torchdiffeq", "--json", str(out)]
    )
    assert order == ["ours, rk", "ours, torchdiffeq"] * 3
    node = results["node"]
    assert node["agreement"]["torchdiffeq"] < 1e-9  # h(T) at tol 1e-12
    rk, tdq = node["rows"]
    assert rk["nfe fwd"] > 10 and rk["nfe bwd"] > 10 and tdq["nfe fwd"] > 10
    assert abs(rk["nfe fwd"] - tdq["nfe fwd"]) <= 3  # the same DP5, its own step sizes
    assert math.isclose(rk["final loss"], tdq["final loss"], rel_tol=1e-5)
    assert rk["us/eval"] > 0 and rk["s/epoch"] > 0
    # one thread: CPU time about the wall time (not more than 1.5x: a core's worth)
    assert 0.3 * rk["us/eval"] < rk["cpu us/eval"] < 1.5 * rk["us/eval"]
    assert list(node["ratios"]) == ["ours, rk / ours, torchdiffeq"]  # the base over the rest
    assert node["ratios"]["ours, rk / ours, torchdiffeq"]["median"] > 0
    assert node["ratios"]["ours, rk / ours, torchdiffeq"]["cpu"]["median"] > 0
    assert node["ratios"]["ours, rk / ours, torchdiffeq"]["epoch"]["median"] > 0
    assert out.read_text().count('"impl"') == 2


@pytest.mark.slow  # compiles two models
def test_the_compiled_solve_and_its_host_loop_are_timed_in_turns(float64):
    """``--impls "rk compiled" "rk compiled, host loop"``: the two loops of the compiled
    steps, same weights, the same NFE and loss, and their ratio epoch by epoch."""
    results = peers.main(
        ["--epochs", "2", "--models", "node", "--impls", "rk compiled", "rk compiled, host loop"]
    )
    loop, host = results["node"]["rows"]
    assert loop["s/epoch"] > 0 and host["s/epoch"] > 0
    assert loop["nfe fwd"] == host["nfe fwd"] > 10 and loop["nfe bwd"] == host["nfe bwd"]
    assert math.isclose(loop["final loss"], host["final loss"], rel_tol=1e-9)
    ratio = results["node"]["ratios"]["ours, rk compiled / ours, rk compiled, host loop"]
    assert ratio["median"] > 0


def test_cores_pins_the_run_to_that_many_cores(capsys):
    """``--cores 1``: the process runs on one core (all of JAX's threads with it)."""
    before = os.sched_getaffinity(0)
    try:
        peers.main(["--epochs", "1", "--models", "node", "--impls", "rk", "--cores", "1"])
        assert len(os.sched_getaffinity(0)) == 1
        assert os.sched_getaffinity(0) <= before
    finally:
        os.sched_setaffinity(0, before)
    assert "cores: 1 (torch: 1 thread)" in capsys.readouterr().out


@pytest.mark.slow  # jit-compiles diffrax's solve (seconds)
@pytest.mark.parametrize("name", ["hbnode", "nesterovnode"])
def test_the_diffrax_peer_computes_our_loss_and_gradients(name, float64):
    """The peer is the same model: from the same weights, diffrax's loss and gradient of
    every parameter (encoder, dynamics, head) equal ours on rk to the tolerance's
    accuracy, and its adjoint integrates the dynamics' parameters only (``args``), as
    ours does."""
    pytest.importorskip("diffrax")
    x, y = peers.data()
    model = peers.torch_model(name, 0)
    grad, _ = peers.diffrax_model(name, model)
    (loss, _), grads = grad(peers.jax_params(model), x[:50].numpy(), y[:50].numpy())
    ours, _, _, _ = peers.torch_step(model, x[:50], y[:50])
    assert float(loss) == pytest.approx(ours, rel=1e-6)
    for key, p in model.named_parameters():
        # two adjoint solves at tol 1e-7, each with its own steps: equal to 1e-3 in norm
        g = torch.as_tensor(np.asarray(grads[key]))
        assert (g - p.grad).norm() <= 1e-3 * p.grad.norm() + 1e-9, key
    args = peers.diffrax_args(peers.jax_params(model))
    assert sorted(args) == sorted(n for n, _ in model.named_parameters() if n.startswith("block."))


def _alone_round(impl, seconds, us, nfe=(40.0, 36.0), compile_s=3.0):
    row = {"impl": f"ours, {impl}", "s/epoch": seconds, "us/eval": us, "cpu us/eval": us}
    row.update({"nfe fwd": nfe[0], "nfe bwd": nfe[1], "compile s": compile_s})
    return {"node": {"rows": [{**row, "final loss": 0.5}]}}


def test_alone_rounds_are_compared_round_by_round():
    """``--alone``: each implementation's medians over its rounds, compile seconds of the
    first and the last round, and the ratios taken round by round (a round's runs share
    a stretch of the machine's time): s/epoch, which counts fewer evaluations as a gain,
    and µs per evaluation; a peer that was not installed (no rows) is left out."""
    per_round = {
        "rk compiled": [
            _alone_round("rk compiled", 0.008, 32.0, compile_s=20.0),
            _alone_round("rk compiled", 0.016, 64.0),  # a slow stretch of the machine...
            _alone_round("rk compiled", 0.008, 32.0),
        ],
        "diffrax": [
            {
                "node": {
                    **_alone_round("diffrax", 0.010, 32.0, (44.0, 45.0))["node"],
                    "agreement": {"diffrax": 6e-10},
                }
            },  # checked in the first round
            _alone_round("diffrax", 0.020, 64.0, nfe=(44.0, 45.0)),  # ...slows both
            _alone_round("diffrax", 0.008, 26.0, nfe=(44.0, 45.0)),
        ],
        "torchode": [{"node": {"rows": []}}] * 3,
    }
    out = peers.rounds_summary(per_round, ["node"])["node"]
    assert list(out["rows"]) == ["rk compiled", "diffrax"]
    assert out["agreement"] == {"diffrax": 6e-10}
    ours = out["rows"]["rk compiled"]
    assert ours["s/epoch"] == pytest.approx(0.008) and ours["us/eval"] == pytest.approx(32.0)
    assert ours["compile s"] == [20.0, 3.0] and ours["nfe bwd"] == pytest.approx(36.0)
    ratio = out["ratios"]["rk compiled / diffrax"]
    assert ratio["s/epoch"] == {"median": pytest.approx(0.8), "min": 0.8, "max": 1.0}
    assert ratio["us/eval"]["median"] == pytest.approx(1.0)
    assert ratio["us/eval"]["max"] == pytest.approx(32.0 / 26.0)


@pytest.mark.slow  # four processes, each importing torch
def test_alone_runs_each_implementation_in_a_process_of_its_own(tmp_path):
    out = tmp_path / "alone.json"
    argv = ["--alone", "2", "--epochs", "2", "--models", "node", "--impls", "rk", "torchdiffeq"]
    results = peers.main([*argv, "--json", str(out)])
    rows = results["node"]["rows"]
    assert list(rows) == ["rk", "torchdiffeq"]
    assert rows["rk"]["nfe fwd"] > 10 and rows["rk"]["s/epoch"] > 0
    assert math.isclose(rows["rk"]["final loss"], rows["torchdiffeq"]["final loss"], rel_tol=1e-5)
    assert results["node"]["ratios"]["rk / torchdiffeq"]["s/epoch"]["median"] > 0
    assert out.exists()


@pytest.mark.slow  # a reference gradient at tol 1e-8 on convolutions in float64
def test_the_gradient_error_benchmark_reports_work_against_precision(tmp_path):
    """benchmarks/gradient_error.py on two real MNIST images: NFE grows and the gradient's
    error against the reference shrinks as the tolerance tightens."""
    from helpers import shared_data_dir

    data = shared_data_dir()
    if data is None or not (data / "mnist").is_dir():
        pytest.skip("the real MNIST files are not here")
    import gradient_error

    argv = ["--data-dir", str(data / "mnist"), "--models", "hbnode", "--batch", "2"]
    argv += ["--tols", "1e-3", "1e-6", "--reference-tol", "1e-8"]
    loose, tight = gradient_error.main(argv)["hbnode"]
    assert tight["nfe fwd"] + tight["nfe bwd"] > loose["nfe fwd"] + loose["nfe bwd"]
    assert 0 < tight["error"] < loose["error"] < 0.5


def test_the_engine_table_gives_each_engines_nfe_and_gradient_error(tmp_path, monkeypatch):
    """benchmarks/engines.py on one seed: each engine's NFE and its gradient's error
    against the tight reference (below 1e-3 at the protocol's tol 1e-7); with the
    library's adjoint (the backward from the forward's proposed step) HBNODE's backward
    takes fewer evaluations than its forward on every engine."""
    import json

    import engines

    monkeypatch.setattr(engines, "MODEL_NAMES", ("node", "hbnode"))
    monkeypatch.setattr(
        sys, "argv", ["engines.py", "--seeds", "1", "--json", str(tmp_path / "t.json")]
    )
    engines.main()
    table = json.loads((tmp_path / "t.json").read_text())
    for row in table.values():
        for forward, backward, error in row.values():
            assert forward > 20 and backward > 10 and 0 < error < 1e-3
    hbnode = table["hbnode"]
    for run in ("rk adjoint", "torchdiffeq adjoint", "scipy adjoint"):
        assert hbnode[run][1] < hbnode[run][0]
