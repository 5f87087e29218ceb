"""Statistics over seeds of a comparison's ``results.json``: per run, per model, and
paired between two models; what judges a claim such as the paper's Fig. 3 ("the
Nesterov models reach zero training loss with fewer forward and backward NFE than
NODE, ANODE and HBNODE").

Pure functions of the results dict (``summary.model_results``' layout: ``{"models":
{NAME: {"params", "runs": [{"seed", "status", "epochs": [record, ...]}]}}}``).

Per run (``run_quantities``), from its epoch records (``loss``, ``nfe_forward``,
``nfe_backward`` per epoch, NFE per batch):

    final_loss          the last epoch's training loss
    nfe_forward         forward NFE per batch, mean over all epochs
    nfe_backward        backward NFE per batch, mean over all epochs
    nfe_forward_last    forward NFE per batch of the last epoch
    nfe_backward_last   backward NFE per batch of the last epoch
    epoch_to_threshold  k, the first epoch whose loss < threshold (None: never)
    nfe_to_threshold    sum over epochs e = 1..k of (nfe_forward_e + nfe_backward_e)
                        (None: never)

An epoch's loss is the mean over its batches, so reaching it takes the whole epoch k:
its NFE count. NFE per batch summed over epochs is a run's total NFE divided by its
batches per epoch, the same number for every model of a comparison (same data, same
batch size), so ratios of it are ratios of total work.

Per model (``model_statistics``): ``describe`` of each quantity over the runs that
finished (n, mean, std with ddof = 1, median, quartiles by numpy's linear interpolation,
min, max); the NFE to the threshold over the runs that reached it; the fraction of
finished runs whose final loss < threshold, and of those that reached it in some epoch.
Failed runs (``"status": "failed"``) are counted, their seeds named, and left out of
every number.

Paired (``paired``): models A and B over the seeds both finished. The same seed gives
both the same data, the same batch order and the same torch seed before building the
model, so seed-wise comparison takes the data's share out of the spread. For a quantity
x with per-seed values a_s, b_s (n seeds):

    difference  d_s = a_s - b_s;  mean d̄ and d̄ ± t(1-α/2, n-1) sd(d)/√n
    ratio       l_s = log(a_s / b_s);  geometric-mean ratio exp(l̄), its interval
                exp(l̄ ± t(1-α/2, n-1) sd(l)/√n), and a percentile bootstrap interval of
                exp(l̄) resampling the seeds (fixed RNG seed, so reproducible)
    order       seeds with a_s < b_s, a_s > b_s and ties; the sign test's two-sided p
                (binomial over the untied seeds) and the Wilcoxon signed-rank two-sided
                p on l_s

``verdict``: "A takes less x than B" holds when the t interval of the ratio lies
wholly below 1 (undetermined with fewer than two paired seeds).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The loss below which a run counts as trained to (near) zero loss.
THRESHOLD = 1e-3
CONFIDENCE = 0.95
BOOTSTRAP = 10_000  #: bootstrap resamples of the seeds
RNG_SEED = 0  #: the bootstrap's generator seed

#: per-run quantities: key -> what it is
QUANTITIES = {
    "final_loss": "training loss of the last epoch",
    "nfe_forward": "forward NFE per batch, mean over all epochs",
    "nfe_backward": "backward NFE per batch, mean over all epochs",
    "nfe_forward_last": "forward NFE per batch, last epoch",
    "nfe_backward_last": "backward NFE per batch, last epoch",
    "epoch_to_threshold": "first epoch whose training loss < threshold",
    "nfe_to_threshold": "forward + backward NFE per batch summed over the epochs up to "
    "and including the first whose training loss < threshold",
}


# -- per run ---------------------------------------------------------------------------------
def run_quantities(epochs: list[dict[str, Any]], threshold: float = THRESHOLD) -> dict[str, Any]:
    """The ``QUANTITIES`` of one run from its epoch records (at least one)."""
    if not epochs:
        raise ValueError("a run with no finished epoch has no quantities")
    last = epochs[-1]
    out: dict[str, Any] = {
        "epochs": len(epochs),
        "final_loss": last["loss"],
        "nfe_forward": float(np.mean([e["nfe_forward"] for e in epochs])),
        "nfe_backward": float(np.mean([e["nfe_backward"] for e in epochs])),
        "nfe_forward_last": float(last["nfe_forward"]),
        "nfe_backward_last": float(last["nfe_backward"]),
        "epoch_to_threshold": None,
        "nfe_to_threshold": None,
    }
    total = 0.0
    for i, e in enumerate(epochs):
        total += e["nfe_forward"] + e["nfe_backward"]
        # a non-finite loss is stored as null (io.finite_json): never below
        if e["loss"] is not None and e["loss"] < threshold:
            out["epoch_to_threshold"] = int(e.get("epoch", i + 1))
            out["nfe_to_threshold"] = float(total)
            break
    return out


def _finished(run: dict[str, Any]) -> bool:
    return run.get("status", "finished") == "finished"


def model_runs(
    results: dict[str, Any], model: str, threshold: float = THRESHOLD
) -> tuple[dict[int, dict[str, Any]], list[int], list[int]]:
    """``(quantities by seed, failed seeds, empty seeds)`` of ``model``: the quantities of
    every finished run; the seeds whose run failed, and of finished runs without a single
    epoch (left out of the numbers both)."""
    done: dict[int, dict[str, Any]] = {}
    failed: list[int] = []
    empty: list[int] = []
    for run in results["models"][model]["runs"]:
        if not _finished(run):
            failed.append(run["seed"])
        elif not run["epochs"]:
            empty.append(run["seed"])
        else:
            done[run["seed"]] = run_quantities(run["epochs"], threshold)
    return done, failed, empty


# -- per model -------------------------------------------------------------------------------
def describe(values) -> dict[str, Any]:
    """``n``, ``mean``, ``std`` (ddof = 1; None for fewer than 2), ``median``, ``q25``,
    ``q75`` (numpy's linear interpolation between order statistics), ``min``, ``max``
    of ``values`` (all None but n when there are none)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        keys = ("mean", "std", "median", "q25", "q75", "min", "max")
        return {"n": 0, **{k: None for k in keys}}
    q25, median, q75 = np.percentile(x, [25, 50, 75])
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if x.size > 1 else None,
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def model_statistics(
    results: dict[str, Any], model: str, threshold: float = THRESHOLD
) -> dict[str, Any]:
    """One model's block: ``runs`` (all in results), ``finished``, ``failed`` (count),
    ``failed_seeds``, ``empty_seeds``, ``epochs`` ([fewest, most] of the finished runs),
    ``describe`` of each ``QUANTITIES`` key (the two ``*_to_threshold`` over the runs that
    reached it), ``reached`` (runs whose loss fell below ``threshold`` in some epoch),
    ``reached_fraction`` and ``final_below_fraction`` (of the finished runs; None when
    none finished)."""
    done, failed, empty = model_runs(results, model, threshold)
    per = list(done.values())
    n = len(per)
    block: dict[str, Any] = {
        "runs": len(results["models"][model]["runs"]),
        "finished": n,
        "failed": len(failed),
        "failed_seeds": failed,
        "empty_seeds": empty,
        "epochs": [min(p["epochs"] for p in per), max(p["epochs"] for p in per)] if per else None,
    }
    for key in QUANTITIES:
        block[key] = describe(p[key] for p in per)
    reached = sum(p["epoch_to_threshold"] is not None for p in per)
    below = sum(p["final_loss"] is not None and p["final_loss"] < threshold for p in per)
    block["reached"] = reached
    block["reached_fraction"] = reached / n if n else None
    block["final_below_fraction"] = below / n if n else None
    return block


# -- paired ----------------------------------------------------------------------------------
def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """``(mean, low, high)``: Student's t interval mean ± t(1-α/2, n-1) sd/√n (sd with
    ddof = 1); None for fewer than two values."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    mean = float(x.mean())
    half = float(t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def bootstrap_interval(
    values,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP,
    rng_seed: int = RNG_SEED,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of ``values``: the α/2 and 1-α/2
    quantiles of the means of ``resamples`` resamples with replacement, drawn by
    ``numpy.random.default_rng(rng_seed)``; None for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    rng = np.random.default_rng(rng_seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


def _p_values(a: np.ndarray, b: np.ndarray, logs: np.ndarray | None) -> dict[str, Any]:
    """Sign test and Wilcoxon signed-rank test (two-sided) of the pairs; None where the
    test has nothing to test (no untied pair)."""
    from scipy.stats import binomtest, wilcoxon

    less, more = int(np.sum(a < b)), int(np.sum(a > b))
    out = {"a_less": less, "a_more": more, "ties": int(a.size - less - more)}
    out["sign_test_p"] = float(binomtest(less, less + more, 0.5).pvalue) if less + more else None
    out["wilcoxon_p"] = None
    if logs is not None and np.any(logs != 0):
        with warnings.catch_warnings():
            # small samples with ties: scipy warns that it uses the normal approximation
            warnings.simplefilter("ignore")
            out["wilcoxon_p"] = float(wilcoxon(logs).pvalue)
    return out


def paired(
    results: dict[str, Any],
    a: str,
    b: str,
    key: str,
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP,
    rng_seed: int = RNG_SEED,
) -> dict[str, Any]:
    """Model ``a`` against model ``b`` on quantity ``key`` over the seeds both finished
    (see the module's text for the formulas). ``excluded`` names the seeds left out: a
    run failed (or has no epoch) in either model, a seed only one model has; for the
    ``*_to_threshold`` quantities, seeds where one or neither run reached the threshold
    (``only_a_reached``, ``only_b_reached``, ``neither_reached``), which have no value to
    pair. The ratio's numbers are None when a value is not positive."""
    if key not in QUANTITIES:
        raise ValueError(f"unknown quantity {key!r}; one of {', '.join(QUANTITIES)}")
    runs_a, failed_a, empty_a = model_runs(results, a, threshold)
    runs_b, failed_b, empty_b = model_runs(results, b, threshold)
    seeds_a = set(runs_a) | set(failed_a) | set(empty_a)
    seeds_b = set(runs_b) | set(failed_b) | set(empty_b)
    shared = sorted(set(runs_a) & set(runs_b))
    excluded: dict[str, list[int]] = {
        "failed": sorted((set(failed_a) | set(failed_b)) & seeds_a & seeds_b),
        "empty": sorted((set(empty_a) | set(empty_b)) & seeds_a & seeds_b),
        "unpaired": sorted(seeds_a ^ seeds_b),
    }
    seeds = [s for s in shared if runs_a[s][key] is not None and runs_b[s][key] is not None]
    if key.endswith("_to_threshold"):
        reached = {s: (runs_a[s][key] is not None, runs_b[s][key] is not None) for s in shared}
        excluded["only_a_reached"] = [s for s, r in reached.items() if r == (True, False)]
        excluded["only_b_reached"] = [s for s, r in reached.items() if r == (False, True)]
        excluded["neither_reached"] = [s for s, r in reached.items() if r == (False, False)]
    va = np.array([runs_a[s][key] for s in seeds], dtype=float)
    vb = np.array([runs_b[s][key] for s in seeds], dtype=float)
    out: dict[str, Any] = {
        "a": a,
        "b": b,
        "quantity": key,
        "confidence": confidence,
        "n": len(seeds),
        "seeds": seeds,
        "a_values": va.tolist(),
        "b_values": vb.tolist(),
        "excluded": excluded,
    }
    diff = va - vb
    ti = t_interval(diff, confidence)
    out["difference"] = {
        "per_seed": diff.tolist(),
        "mean": float(diff.mean()) if diff.size else None,
        "t_ci": list(ti[1:]) if ti else None,
    }
    logs = None
    if va.size and np.all(va > 0) and np.all(vb > 0):
        logs = np.log(va / vb)
    ratio: dict[str, Any] = {
        "per_seed": (va / vb).tolist() if logs is not None else None,
        "geometric_mean": float(np.exp(logs.mean())) if logs is not None else None,
        "t_ci": None,
        "bootstrap_ci": None,
    }
    if logs is not None:
        ti = t_interval(logs, confidence)
        bi = bootstrap_interval(logs, confidence, resamples, rng_seed)
        ratio["t_ci"] = [math.exp(ti[1]), math.exp(ti[2])] if ti else None
        ratio["bootstrap_ci"] = [math.exp(bi[0]), math.exp(bi[1])] if bi else None
        ratio["bootstrap"] = {"resamples": resamples, "rng_seed": rng_seed}
    out["ratio"] = ratio
    out.update(_p_values(va, vb, logs))
    return out


def verdict(pair: dict[str, Any]) -> dict[str, Any]:
    """Whether "a takes less of the quantity than b" holds for ``paired``'s ``pair``:
    ``holds`` True when the t interval of the geometric-mean ratio a/b lies wholly below
    1, False when it does not, None when there is no interval (fewer than 2 paired
    seeds, or a value not positive: undetermined, not refuted); ``reason`` one of "CI
    below 1", "CI contains 1", "CI above 1" (b takes less), "fewer than 2 paired
    seeds", "no ratio (a value <= 0)"; ``bootstrap_agrees``: whether the bootstrap
    interval lies on the same side of 1 (or also contains it); None without one."""
    t_ci = pair["ratio"]["t_ci"]
    if t_ci is None:
        few = pair["n"] < 2
        reason = "fewer than 2 paired seeds" if few else "no ratio (a value <= 0)"
        return {"holds": None, "reason": reason, "bootstrap_agrees": None}
    reason = _side(t_ci)
    boot = pair["ratio"]["bootstrap_ci"]
    return {
        "holds": reason == "CI below 1",
        "reason": reason,
        "bootstrap_agrees": None if boot is None else _side(boot) == reason,
    }


def _side(ci: list[float]) -> str:
    if ci[1] < 1:
        return "CI below 1"
    if ci[0] > 1:
        return "CI above 1"
    return "CI contains 1"


# -- all of it -------------------------------------------------------------------------------
def statistics(
    results: dict[str, Any],
    pairs: Sequence[tuple[str, str]] = (),
    keys: tuple[str, ...] = ("nfe_forward", "nfe_backward", "nfe_to_threshold"),
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP,
    rng_seed: int = RNG_SEED,
) -> dict[str, Any]:
    """``{"threshold", "confidence", "bootstrap", "models": {NAME: model_statistics},
    "runs": {NAME: {SEED: run_quantities}}, "paired": [paired(a, b, key) with its
    "verdict"]}`` for every (a, b) of ``pairs`` whose models both are in ``results``, and
    every key of ``keys``; ``"missing_pairs"`` lists the pairs left out."""
    models = list(results["models"])
    present = [(a, b) for a, b in pairs if a in models and b in models]
    out: dict[str, Any] = {
        "threshold": threshold,
        "confidence": confidence,
        "bootstrap": {"resamples": resamples, "rng_seed": rng_seed},
        "models": {m: model_statistics(results, m, threshold) for m in models},
        # JSON keys are strings: the seeds too
        "runs": {
            m: {str(s): q for s, q in model_runs(results, m, threshold)[0].items()} for m in models
        },
        "paired": [],
        "missing_pairs": [[a, b] for a, b in pairs if (a, b) not in present],
    }
    for a, b in present:
        for key in keys:
            pair = paired(results, a, b, key, threshold, confidence, resamples, rng_seed)
            pair["verdict"] = verdict(pair)
            out["paired"].append(pair)
    return out


__all__ = [
    "BOOTSTRAP",
    "CONFIDENCE",
    "QUANTITIES",
    "RNG_SEED",
    "THRESHOLD",
    "bootstrap_interval",
    "describe",
    "model_runs",
    "model_statistics",
    "paired",
    "run_quantities",
    "statistics",
    "t_interval",
    "verdict",
]
