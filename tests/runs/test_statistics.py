"""The statistics over seeds that judge an NFE claim (runs.statistics), on a small
results dict whose every number is worked out by hand below: per-run quantities, the
per-model spread, paired ratios with their t and bootstrap intervals, the tests' p-values
and the verdict; failed runs are left out."""

from __future__ import annotations

import math

import pytest

from nesterovnode.runs.statistics import (
    describe,
    model_statistics,
    paired,
    run_quantities,
    statistics,
    verdict,
)

#: Student's t quantiles t(0.975, n - 1) from a printed table, for n = 3 and n = 2
T_975_2 = 4.302652729749464
T_975_1 = 12.706204736174707


def _run(seed, losses, fwd, bwd, status="finished"):
    epochs = [
        {"epoch": e + 1, "loss": loss, "nfe_forward": f, "nfe_backward": b}
        for e, (loss, f, b) in enumerate(zip(losses, fwd, bwd))
    ]
    run = {"seed": seed, "status": status, "epochs": epochs}
    if status == "failed":
        run["failure"] = {"epoch": 2, "cause": "the loss became nan", "fix": "-", "message": "-"}
    return run


def _results():
    """NODE seeds 0-3 and NesterovNODE seeds 0-2 finished, NesterovNODE seed 3 failed
    after one epoch that, were it counted, would change every number."""
    node = [
        _run(0, [0.1, 0.01, 0.0005], [20, 30, 40], [10, 20, 30]),
        _run(1, [0.1, 0.002, 0.002], [30, 30, 30], [20, 20, 20]),
        _run(2, [0.0009, 0.0001, 0.0001], [60, 60, 60], [40, 40, 40]),
        _run(3, [0.2, 0.1, 0.05], [10, 10, 10], [5, 5, 5]),
    ]
    nesterov = [
        _run(0, [0.01, 0.0005, 0.0001], [15, 15, 15], [10, 10, 10]),
        _run(1, [0.5, 0.1, 0.05], [10, 20, 30], [10, 10, 10]),
        _run(2, [0.002, 0.0008, 0.0002], [60, 60, 60], [25, 25, 25]),
        _run(3, [1e-4], [1], [1], status="failed"),
    ]
    return {
        "task": "pointcloud",
        "models": {
            "node": {"params": 545, "runs": node},
            "nesterovnode": {"params": 581, "runs": nesterov},
        },
    }


def test_a_run_reaches_the_threshold_in_the_first_epoch_below_it_with_the_nfe_summed_so_far():
    q = run_quantities(_results()["models"]["node"]["runs"][0]["epochs"])
    assert q["final_loss"] == 0.0005
    assert q["nfe_forward"] == 30.0 and q["nfe_backward"] == 20.0  # (20+30+40)/3, (10+20+30)/3
    assert q["nfe_forward_last"] == 40.0 and q["nfe_backward_last"] == 30.0
    # loss 0.1, 0.01, 0.0005: first below 1e-3 in epoch 3, after (20+10)+(30+20)+(40+30)
    assert q["epoch_to_threshold"] == 3 and q["nfe_to_threshold"] == 150.0
    # the threshold is strict and its own argument: 0.01 is not below 0.01, 0.0005 is
    assert (
        run_quantities(_results()["models"]["node"]["runs"][0]["epochs"], 0.01)[
            "epoch_to_threshold"
        ]
        == 3
    )
    never = run_quantities(_results()["models"]["node"]["runs"][1]["epochs"])
    assert never["epoch_to_threshold"] is None and never["nfe_to_threshold"] is None
    with pytest.raises(ValueError, match="no finished epoch"):
        run_quantities([])


def test_a_models_spread_has_sample_std_and_linear_quartiles_and_leaves_failed_runs_out():
    node = model_statistics(_results(), "node")
    f = node["nfe_forward"]  # per-run means 30, 30, 60, 10
    assert f["n"] == 4 and f["mean"] == 32.5
    # deviations -2.5, -2.5, 27.5, -22.5: squares sum to 1275, over n - 1 = 3
    assert f["std"] == pytest.approx(math.sqrt(425))
    # sorted 10, 30, 30, 60: q25 at position 0.75 -> 10 + 0.75 * 20, q75 at 2.25 -> 30 + 0.25 * 30
    assert (f["q25"], f["median"], f["q75"]) == (25.0, 30.0, 37.5)
    assert (f["min"], f["max"]) == (10.0, 60.0)
    # final losses 0.0005, 0.002, 0.0001, 0.05: two of four below 1e-3; seeds 0, 2 reached it
    assert node["final_below_fraction"] == 0.5 and node["reached"] == 2
    assert node["nfe_to_threshold"]["n"] == 2 and node["nfe_to_threshold"]["mean"] == 125.0
    assert node["epoch_to_threshold"]["median"] == 2.0  # epochs 3 and 1
    nest = model_statistics(_results(), "nesterovnode")
    assert (nest["runs"], nest["finished"], nest["failed"]) == (4, 3, 1)
    assert nest["failed_seeds"] == [3]
    # the failed seed's 1 NFE and loss 1e-4 count nowhere: means of 15, 20, 60 only
    assert nest["nfe_forward"]["mean"] == pytest.approx(95 / 3)
    assert nest["nfe_forward"]["min"] == 15.0
    assert nest["final_below_fraction"] == pytest.approx(2 / 3)
    assert nest["nfe_to_threshold"]["mean"] == 110.0  # (50 + 170) / 2
    assert nest["epochs"] == [3, 3]


def test_describe_of_one_value_has_no_std_and_of_none_only_a_count():
    assert describe([4.0])["std"] is None and describe([4.0])["median"] == 4.0
    assert describe([None, None]) == {
        "n": 0,
        **dict.fromkeys(("mean", "std", "median", "q25", "q75", "min", "max")),
    }


def test_paired_forward_nfe_has_the_hand_computed_ratio_and_t_interval_over_shared_seeds():
    p = paired(_results(), "nesterovnode", "node", "nfe_forward")
    # seed 3 failed for NesterovNODE: left out of the pair, and said so
    assert p["seeds"] == [0, 1, 2] and p["excluded"]["failed"] == [3]
    assert p["a_values"] == [15.0, 20.0, 60.0] and p["b_values"] == [30.0, 30.0, 60.0]
    assert p["difference"]["per_seed"] == [-15.0, -10.0, 0.0]
    assert p["difference"]["mean"] == pytest.approx(-25 / 3)
    # differences: sd² = ((-20/3)² + (-5/3)² + (25/3)²) / 2 = 175/3
    half = T_975_2 * math.sqrt(175 / 3) / math.sqrt(3)
    assert p["difference"]["t_ci"] == pytest.approx([-25 / 3 - half, -25 / 3 + half])
    # ratios 1/2, 2/3, 1: the geometric mean is (1/3)^(1/3)
    logs = [math.log(0.5), math.log(2 / 3), 0.0]
    assert p["ratio"]["per_seed"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert p["ratio"]["geometric_mean"] == pytest.approx((1 / 3) ** (1 / 3))
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = T_975_2 * sd / math.sqrt(3)
    assert p["ratio"]["t_ci"] == pytest.approx([math.exp(mean - half), math.exp(mean + half)])
    assert p["ratio"]["t_ci"] == pytest.approx([0.29192, 1.64685], abs=1e-5)
    # every resample of three seeds has a mean log-ratio between log(1/2) and 0, and each
    # end is hit by 1/27 = 3.7 % of the resamples, more than the 2.5 % in each tail
    assert p["ratio"]["bootstrap_ci"] == pytest.approx([0.5, 1.0], rel=1e-12)
    # two seeds favour NesterovNODE, one ties: the sign test's p is 2 × (1/2)², Wilcoxon's
    # (ties dropped, both ranks negative) the same 2 × 1/4
    assert (p["a_less"], p["a_more"], p["ties"]) == (2, 0, 1)
    assert p["sign_test_p"] == pytest.approx(0.5)
    assert p["wilcoxon_p"] == pytest.approx(0.5)
    assert verdict(p) == {"holds": False, "reason": "CI contains 1", "bootstrap_agrees": True}


def test_fewer_backward_nfe_holds_when_the_ratios_interval_lies_below_one():
    p = paired(_results(), "nesterovnode", "node", "nfe_backward")
    # 10/20, 10/20, 25/40 on seeds 0, 1, 2
    logs = [math.log(0.5), math.log(0.5), math.log(0.625)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    high = math.exp(mean + T_975_2 * sd / math.sqrt(3))
    assert p["ratio"]["t_ci"][1] == pytest.approx(high) and high == pytest.approx(0.74176, abs=1e-5)
    assert p["a_less"] == 3 and p["sign_test_p"] == pytest.approx(0.25)  # 2 × (1/2)³
    assert p["wilcoxon_p"] == pytest.approx(0.25)
    v = verdict(p)
    assert v["holds"] is True and v["reason"] == "CI below 1" and v["bootstrap_agrees"]
    # the other way round: NODE takes more
    assert verdict(paired(_results(), "node", "nesterovnode", "nfe_backward"))["reason"] == (
        "CI above 1"
    )


def test_nfe_to_threshold_pairs_only_seeds_where_both_reached_it_and_names_the_rest():
    p = paired(_results(), "nesterovnode", "node", "nfe_to_threshold")
    # seed 0: 50 vs 150, seed 2: 170 vs 100; seed 1: neither run fell below 1e-3
    assert p["seeds"] == [0, 2] and p["excluded"]["neither_reached"] == [1]
    assert p["ratio"]["geometric_mean"] == pytest.approx(math.sqrt(50 / 150 * 170 / 100))
    logs = [math.log(1 / 3), math.log(1.7)]
    half = T_975_1 * abs(logs[0] - logs[1]) / math.sqrt(2) / math.sqrt(2)
    mean = sum(logs) / 2
    assert p["ratio"]["t_ci"] == pytest.approx([math.exp(mean - half), math.exp(mean + half)])
    # below 3e-4: NODE seed 0 never gets there (0.0005), NesterovNODE seed 0 in epoch 3
    p = paired(_results(), "nesterovnode", "node", "nfe_to_threshold", threshold=3e-4)
    assert p["excluded"]["only_a_reached"] == [0] and p["seeds"] == [2]
    assert p["a_values"] == [255.0] and p["b_values"] == [200.0]  # 3 × 85 and 2 × 100
    assert verdict(p) == {
        "holds": None,
        "reason": "fewer than 2 paired seeds",
        "bootstrap_agrees": None,
    }


def test_the_bootstrap_interval_is_the_same_every_time_for_its_rng_seed():
    a = paired(_results(), "nesterovnode", "node", "nfe_backward", rng_seed=7)
    b = paired(_results(), "nesterovnode", "node", "nfe_backward", rng_seed=7)
    assert a["ratio"]["bootstrap_ci"] == b["ratio"]["bootstrap_ci"]
    assert a["ratio"]["bootstrap"] == {"resamples": 10_000, "rng_seed": 7}


def test_statistics_pairs_the_models_present_with_a_verdict_each_and_lists_the_missing():
    s = statistics(_results(), [("nesterovnode", "node"), ("nesterovnode", "hbnode")])
    assert s["missing_pairs"] == [["nesterovnode", "hbnode"]]
    assert [(p["quantity"], p["verdict"]["holds"]) for p in s["paired"]] == [
        ("nfe_forward", False),
        ("nfe_backward", True),
        ("nfe_to_threshold", False),
    ]
    assert sorted(s["runs"]["nesterovnode"]) == ["0", "1", "2"]  # not the failed seed 3
    assert s["models"]["node"]["nfe_forward"]["mean"] == 32.5
    with pytest.raises(ValueError, match="unknown quantity"):
        paired(_results(), "nesterovnode", "node", "seconds")
