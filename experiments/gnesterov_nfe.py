"""Fig. 3 (point cloud): why GNesterovNODE takes the most NFE here, where the paper says
"especially the GNesterovNODE, require[s] significantly fewer NFEs".

Trains the point-cloud models under the task's protocol (DP5 at rtol = atol = 1e-7,
float64, lr 1e-2, batch 50, SmoothL1, Adam) and GNesterovNODE in controlled variations
from the same seeds (the same initial weights and data: a variation changes one thing):

- ``gnesterovnode``: the paper's model, σ = Hardtanh(-5, 5), ξ = 2 fixed (Table 6);
- ``gnesterovnode σ=softclip``: σ replaced by a smooth clip with the same bounds,
  ``softclip(z) = z - softplus(z - 5) + softplus(-z - 5)`` (C^∞, odd, |softclip| < 5,
  within ln 2 of Hardtanh everywhere);
- ``gnesterovnode ξ learnable``: ξ a parameter starting at 2;
- ``gnesterovnode float32``: the model and data in float32 (at 1e-7, float32's rounding);
- ``MODEL @1e-5``: trained at rtol = atol = 1e-5 (the image tasks' tolerance);

and the references NODE, ANODE, HBNODE, GHBNODE, NesterovNODE at 1e-7. During training it
probes every ``--probe-every`` epochs, on all 120 points: the solve's NFE, steps and
rejections, the network's output f along the trajectory (max |f|, the share of σ(f)'s
inputs beyond the bounds, how often a sample's f crosses them: the kinks of Hardtanh),
the norm of f's output layer and ξ. After training, on each trained model (float64):

- stiffness (``diagnostics.stiffness_along_trajectory``): the Jacobian's spectral radius ρ
  per sample at 21 times, the accepted step h there and h·ρ against DP5's stability
  bound (≈ 3.3); h·ρ/bound near 1 means stability limits the step, far below 1 accuracy;
- the tolerance sweep: forward NFE at rtol = atol 1e-4 ... 1e-8 and its exponent p in
  NFE ∝ tol^(-p), fitted over 1e-6 ... 1e-8. A 5th-order method on a smooth field gives
  p ≈ 1/5; a field whose derivative jumps (a Lipschitz kink) makes the local error of a
  step across the kink O(h²), so p ≈ 1/2;
- for the σ models, the same trained weights with σ swapped (Hardtanh, softclip sharpened
  to β = 10, softclip): NFE, rejections, the sweep's exponent and the accuracy.

CPU default (about 10 CPU-minutes on one thread): seeds 0 and 1, 100 epochs (the task's).
``--paper``: 200 epochs (Fig. 3's length), 5 seeds.

    python experiments/gnesterov_nfe.py [--seeds N] [--epochs E] [--arms LABEL ...]
                                        [--paper] [--out DIR]

Writes ``results.json``, ``gnesterov_nfe.png`` and ``seen.txt``, and prints a table and
the verdict.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from nesterovnode.diagnostics import stiffness_along_trajectory  # noqa: E402
from nesterovnode.dynamics.base import position, velocity  # noqa: E402
from nesterovnode.runs import TrainConfig  # noqa: E402
from nesterovnode.runs.provenance import git_commit  # noqa: E402
from nesterovnode.runs.training import train  # noqa: E402
from nesterovnode.solve import solve  # noqa: E402
from nesterovnode.solve.config import ToleranceWarning  # noqa: E402
from nesterovnode.tasks.pointcloud import PointCloudTask  # noqa: E402

#: σ's bounds: Hardtanh(-5, 5), the generalised models' σ (dynamics/heavyball.py).
BOUND = 5.0
#: The models the paper says the Nesterov models beat in NFE (Fig. 3; MATH.md).
CLAIM_REFERENCES = ("node", "anode", "hbnode")
#: Tolerances of the sweep, and the part of it the exponent is fitted on (the tight end,
#: where the step count, not the start-up, sets the NFE).
SWEEP_TOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
FIT_TOLS = (1e-6, 1e-7, 1e-8)
#: "zero training loss" of Fig. 3, as a threshold on the SmoothL1 loss
LOSS_REACHED = 1e-2
#: h·ρ/bound from which a step counts as limited by stability
STABILITY_LIMITED = 0.5


class SoftClip(nn.Module):
    """``z - softplus_β(z - b) + softplus_β(-z - b)``: a smooth (C^∞), odd clip to (-b, b),
    within ln(2)/β of Hardtanh(-b, b) everywhere; β → ∞ gives Hardtanh."""

    def __init__(self, bound: float = BOUND, beta: float = 1.0):
        super().__init__()
        self.bound, self.beta = float(bound), float(beta)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        sp = nn.functional.softplus
        return z - sp(z - self.bound, beta=self.beta) + sp(-z - self.bound, beta=self.beta)

    def extra_repr(self) -> str:
        return f"bound={self.bound:g}, beta={self.beta:g}"


#: σ's swapped into a trained σ model: name -> factory.
SIGMAS = {
    "hardtanh": lambda: nn.Hardtanh(-BOUND, BOUND),
    "softclip β=10": lambda: SoftClip(BOUND, 10.0),
    "softclip": lambda: SoftClip(BOUND, 1.0),
}


@dataclass(frozen=True)
class Arm:
    """One trained variant: a model under one change to the task's protocol."""

    label: str
    model: str
    tol: float = 1e-7
    dtype: str = "float64"
    sigma: str | None = None  #: a SIGMAS name in place of the model's Hardtanh
    learn_xi: bool = False

    def model_options(self) -> dict:
        options = {}
        if self.sigma is not None:
            options["sigma"] = SIGMAS[self.sigma]()
        if self.learn_xi:
            options["learn_xi"] = True
        return options


ARMS = {
    arm.label: arm
    for arm in (
        Arm("node", "node"),
        Arm("anode", "anode"),
        Arm("hbnode", "hbnode"),
        Arm("ghbnode", "ghbnode"),
        Arm("nesterovnode", "nesterovnode"),
        Arm("gnesterovnode", "gnesterovnode"),
        Arm("gnesterovnode σ=softclip", "gnesterovnode", sigma="softclip"),
        Arm("gnesterovnode ξ learnable", "gnesterovnode", learn_xi=True),
        Arm("gnesterovnode float32", "gnesterovnode", dtype="float32"),
        Arm("node @1e-5", "node", tol=1e-5),
        Arm("hbnode @1e-5", "hbnode", tol=1e-5),
        Arm("nesterovnode @1e-5", "nesterovnode", tol=1e-5),
        Arm("gnesterovnode @1e-5", "gnesterovnode", tol=1e-5),
    )
}
PAPER_ARM = "gnesterovnode"
SMOOTH_ARM = "gnesterovnode σ=softclip"
#: Colours of the GNesterovNODE variations (a plain arm takes its model's, plotting.COLORS)
VARIATION_COLORS = {
    "gnesterovnode σ=softclip": "#2ca02c",
    "gnesterovnode ξ learnable": "#e377c2",
    "gnesterovnode float32": "#bcbd22",
}


# -- measurements on a model ------------------------------------------------------------------
def _sigma_models(dyn) -> bool:
    return hasattr(dyn, "sigma")


def _network_output(dyn, t: torch.Tensor, y: torch.Tensor):
    """(f, m): the network's output where the field evaluates it and the velocity, for the
    momentum models (HBNODE, GHBNODE, NesterovNODE, GNesterovNODE); None for others."""
    if type(dyn).__name__ not in ("HBNODE", "GHBNODE", "NesterovNODE", "GNesterovNODE"):
        return None
    x, m = position(y), velocity(y)
    h = dyn._h(t, x) if hasattr(dyn, "_h") else x  # the Nesterov models' h = σ(k) x
    return dyn.call_f(t, h), m


def _crossings(values: torch.Tensor) -> float:
    """Mean per sample of the switches of ``|v| > BOUND`` along the time axis 0 (every
    component of a sample), on ``values [T, B, ...]``."""
    beyond = (values.abs() > BOUND).flatten(2).to(torch.int8)
    return float((beyond.diff(dim=0) != 0).sum(dim=(0, 2)).double().mean())


def probe(model, x: torch.Tensor, tol: float) -> dict:
    """The trained-so-far model on all points at ``tol`` in its own dtype: its solve's
    NFE, steps and rejections, and the scale of its network (see the module doc)."""
    dyn = model.dynamics
    was = model.training
    model.eval()
    times = torch.linspace(1.0, 2.0, 101, dtype=x.dtype)  # dense output: no extra steps
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ToleranceWarning)  # the float32 arm's own setting
        y0 = model.initial_state(x)
        sol = solve(dyn, y0, times, rtol=tol, atol=tol)
        last = [m for m in dyn.f.modules() if isinstance(m, nn.Linear)][-1]
        out = {
            "nfe": sol.stats.nfe_forward,
            "steps": sol.stats.steps_accepted,
            "rejected": sol.stats.steps_rejected,
            "w_out_norm": float(last.weight.norm()),
            "xi": float(dyn.xi()) if hasattr(dyn, "xi") else None,
        }
        parts = [_network_output(dyn, t, sol.ys[i]) for i, t in enumerate(times)]
        if parts[0] is not None:
            f = torch.stack([p[0] for p in parts])
            m = torch.stack([p[1] for p in parts])
            out.update(
                max_abs_f=float(f.abs().max()),
                median_abs_f=float(f.abs().median()),
                max_abs_m=float(m.abs().max()),
                f_beyond_bound=float((f.abs() > BOUND).double().mean()),
                m_beyond_bound=float((m.abs() > BOUND).double().mean()),
                f_crossings_per_sample=_crossings(f),
                m_crossings_per_sample=_crossings(m),
            )
    model.train(was)
    return out


def _accuracy(model, dyn, x, y, tol: float) -> float:
    with torch.no_grad():
        y0 = model.initial_state(x)
        sol = solve(dyn, y0, model.block.ts.to(x.dtype), rtol=tol, atol=tol)
        out = model.head(dyn.readout(sol.ts[-1], sol.ys[-1])).reshape(y.shape)
    return float(((out > 0) == (y > 0)).double().mean())


def sweep(dyn, y0: torch.Tensor, tols=SWEEP_TOLS) -> dict:
    """Forward NFE and rejections at each tolerance, and the exponent p of NFE ∝ tol^(-p)
    over ``FIT_TOLS``."""
    nfe, rejected = [], []
    with torch.no_grad():
        for tol in tols:
            st = solve(dyn, y0, [1.0, 2.0], rtol=tol, atol=tol).stats
            nfe.append(st.nfe_forward)
            rejected.append(st.steps_rejected)
    fit = [i for i, tol in enumerate(tols) if tol in FIT_TOLS]
    p = C.fit_slope(1.0 / np.array(tols)[fit], np.array(nfe, float)[fit])
    return {"tols": list(tols), "nfe": nfe, "rejected": rejected, "exponent": p}


def analyse(model, x: torch.Tensor, y: torch.Tensor, tol: float) -> dict:
    """After training, in float64 on a copy: stiffness along the trajectory at the arm's
    tolerance (float64 runs it at 1e-7 where the arm trained in float32), the tolerance
    sweep and, for the σ models, the same weights with σ swapped."""
    model = copy.deepcopy(model).double().eval()
    x, y = x.double(), y.double()
    dyn = model.dynamics
    with torch.no_grad():
        y0 = model.initial_state(x)
    times = torch.linspace(1.0, 2.0, 21, dtype=torch.float64)
    rep = stiffness_along_trajectory(dyn, y0, times, rtol=tol, atol=tol, per_sample=True)
    # the last output time sits in the final step, clipped to land on T: not a step the
    # controller chose
    inner = [p for p in rep.points if p.t < 2.0]
    out = {
        "stiffness": {
            "nfe": rep.nfe,
            "steps": rep.steps_accepted,
            "rejected": rep.steps_rejected,
            "max_spectral_radius": rep.max_spectral_radius,
            "median_step": float(np.median(rep.step_sizes)),
            "t": [p.t for p in inner],
            "spectral_radius": [p.spectral_radius for p in inner],
            "step": [p.step_size for p in inner],
            "h_rho_over_bound": [p.h_rho_over_bound for p in inner],
            "max_h_rho_over_bound": max(p.h_rho_over_bound for p in inner),
            "median_h_rho_over_bound": float(np.median([p.h_rho_over_bound for p in inner])),
            "stability_bound": rep.stability_bound,
            # the histories: every accepted step (start, size) and every rejected attempt
            "step_times": rep.step_times,
            "step_sizes": rep.step_sizes,
            "rejected_times": rep.rejected_times,
            "rejected_sizes": rep.rejected_sizes,
        },
        "sweep": sweep(dyn, y0),
    }
    if _sigma_models(dyn):
        swaps = {}
        for name, make in SIGMAS.items():
            d2 = copy.deepcopy(dyn)
            d2.sigma = make().double()
            swept = sweep(d2, y0)
            at = swept["tols"].index(1e-7)
            swaps[name] = {
                **swept,
                "nfe_at_1e-7": swept["nfe"][at],
                "rejected_at_1e-7": swept["rejected"][at],
                "accuracy": _accuracy(model, d2, x, y, 1e-7),
            }
        out["sigma_swap"] = swaps
    return out


# -- training ---------------------------------------------------------------------------------
def run_arm(arm: Arm, seed: int, epochs: int, probe_every: int, compile_: str) -> dict:
    """Train ``arm`` from ``seed`` (its weights, its data) and measure it (module doc)."""
    task = PointCloudTask()
    cfg = TrainConfig(
        task="pointcloud",
        model=arm.model,
        epochs=epochs,
        seed=seed,
        dtype=arm.dtype,
        solve={"tol": arm.tol},
        model_options=arm.model_options(),
        compile=compile_,
    )
    data, _ = task.datasets(seed=seed)
    x_all, y_all = data.tensors
    dtype = torch.float32 if arm.dtype == "float32" else torch.float64
    x_all = x_all.to(dtype)
    probes: list[dict] = []

    def after_epoch(e: int, model) -> None:
        if e == 1 or e % probe_every == 0 or e == epochs:
            probes.append({"epoch": e, **probe(model, x_all, arm.tol)})

    start = time.perf_counter()
    with warnings.catch_warnings():
        # the float32 arm asks for 1e-7 on purpose: it measures what that costs
        warnings.simplefilter("ignore", ToleranceWarning)
        result = train(cfg, None, task=task, progress=False, after_epoch=after_epoch)
    seconds = time.perf_counter() - start
    final = analyse(result.model, x_all, y_all, max(arm.tol, 1e-7))
    return {
        "seed": seed,
        "params": result.params,
        "seconds": seconds,
        "epochs": [
            {k: r[k] for k in ("epoch", "loss", "accuracy", "nfe_forward", "nfe_backward")}
            for r in result.history
        ],
        "probes": probes,
        "final": final,
    }


def run_summary(run: dict, last: int) -> dict:
    """Per run: mean NFE per batch over the last ``last`` epochs, the final loss, the epoch
    and the cumulative NFE (forward + backward per batch, summed over epochs) at which the
    loss first fell below ``LOSS_REACHED``, and the final measurements' headline numbers."""
    epochs = run["epochs"]
    tail = epochs[-last:]
    reached, cumulative = None, 0.0
    for r in epochs:
        cumulative += r["nfe_forward"] + r["nfe_backward"]
        if r["loss"] < LOSS_REACHED:
            reached = {"epoch": r["epoch"], "cumulative_nfe": cumulative}
            break
    final = run["final"]
    probe = run["probes"][-1]
    out = {
        "nfe_forward": float(np.mean([r["nfe_forward"] for r in tail])),
        "nfe_backward": float(np.mean([r["nfe_backward"] for r in tail])),
        "final_loss": epochs[-1]["loss"],
        "final_accuracy": epochs[-1]["accuracy"],
        "loss_reached": reached,
        "rejected": final["stiffness"]["rejected"],
        "steps": final["stiffness"]["steps"],
        "rejected_share": final["stiffness"]["rejected"]
        / max(1, final["stiffness"]["rejected"] + final["stiffness"]["steps"]),
        "max_h_rho_over_bound": final["stiffness"]["max_h_rho_over_bound"],
        "median_h_rho_over_bound": final["stiffness"]["median_h_rho_over_bound"],
        "max_spectral_radius": final["stiffness"]["max_spectral_radius"],
        "exponent": final["sweep"]["exponent"],
        "max_abs_f": probe.get("max_abs_f"),
        "f_beyond_bound": probe.get("f_beyond_bound"),
        "f_crossings_per_sample": probe.get("f_crossings_per_sample"),
        "w_out_norm": probe["w_out_norm"],
        "xi": probe["xi"],
    }
    swap = final.get("sigma_swap")
    if swap:
        for name, s in swap.items():
            out[f"swap {name}"] = {
                "nfe": s["nfe_at_1e-7"],
                "rejected": s["rejected_at_1e-7"],
                "exponent": s["exponent"],
                "accuracy": s["accuracy"],
            }
    return out


def mean_summary(summaries: list[dict]) -> dict:
    """The mean over seeds of every number of ``run_summary`` (None where a seed has none;
    ``loss_reached``: the seeds that reached it)."""

    def mean(values):
        vals = [v for v in values if v is not None]
        return float(np.mean(vals)) if len(vals) == len(values) and vals else None

    out: dict = {}
    for key, value in summaries[0].items():
        if isinstance(value, dict) and key != "loss_reached":
            out[key] = {k: mean([s[key][k] for s in summaries]) for k in value}
        elif key == "loss_reached":
            hit = [s[key] for s in summaries if s[key] is not None]
            out[key] = {
                "seeds": len(hit),
                "epoch": float(np.mean([h["epoch"] for h in hit])) if hit else None,
                "cumulative_nfe": float(np.mean([h["cumulative_nfe"] for h in hit]))
                if hit
                else None,
            }
        else:
            out[key] = mean([s[key] for s in summaries])
    return out


# -- the verdict ------------------------------------------------------------------------------
def _below(g: dict, refs: dict) -> dict:
    """Whether ``g`` takes fewer forward and fewer backward NFE than every one of ``refs``,
    and the references that take fewer of either."""
    cheaper = [
        r
        for r, m in refs.items()
        if not (g["nfe_forward"] < m["nfe_forward"] and g["nfe_backward"] < m["nfe_backward"])
    ]
    return {"holds": not cheaper, "cheaper_references": cheaper}


def verdict(arms: dict, results_arms: dict) -> dict:
    """What the numbers say (each a plain boolean or number, so that a test can recompute
    them): whether stability limits any step, whether σ's kinks set GNesterovNODE's cost,
    and at which trained tolerance the paper's claim (GNesterovNODE below NODE, ANODE and
    HBNODE in forward and backward NFE) holds."""
    mean = {label: entry["mean"] for label, entry in results_arms.items()}
    out: dict = {
        "max_h_rho_over_bound": max(m["max_h_rho_over_bound"] for m in mean.values()),
    }
    out["stability_limited"] = out["max_h_rho_over_bound"] >= STABILITY_LIMITED
    if PAPER_ARM in mean:
        g = mean[PAPER_ARM]
        hard, smooth = g.get("swap hardtanh"), g.get("swap softclip")
        out["paper_arm"] = {
            "nfe_forward": g["nfe_forward"],
            "nfe_backward": g["nfe_backward"],
            "exponent": g["exponent"],
            "f_beyond_bound": g["f_beyond_bound"],
            "f_crossings_per_sample": g["f_crossings_per_sample"],
            "rejected_share": g["rejected_share"],
        }
        if hard and smooth:
            ratio = hard["nfe"] / smooth["nfe"]
            out["swap_nfe_ratio"] = ratio
            out["swap_exponents"] = [hard["exponent"], smooth["exponent"]]
            # kinks: the field's NFE falls when only σ's kinks are smoothed, and its growth
            # with 1/tol is steeper than the smooth σ's
            out["kink_limited"] = bool(ratio > 1.5 and hard["exponent"] > smooth["exponent"] + 0.1)
        rank = sorted(
            (m["nfe_forward"], label)
            for label, m in mean.items()
            if arms[label].tol == 1e-7 and arms[label].dtype == "float64"
        )
        out["forward_rank_at_1e-7"] = [label for _, label in rank]
    claim = {}
    plain = {  # (model, tol) -> label of the arms that change nothing but the tolerance
        (a.model, a.tol): a.label
        for a in arms.values()
        if a.label in mean and a.dtype == "float64" and a.sigma is None and not a.learn_xi
    }
    for tol in sorted({tol for _, tol in plain}):
        g = mean.get(plain.get(("gnesterovnode", tol)))
        refs = {r: mean[plain[(r, tol)]] for r in CLAIM_REFERENCES if (r, tol) in plain}
        if g is None or not refs:
            continue
        claim[f"{tol:g}"] = {
            "gnesterovnode": [g["nfe_forward"], g["nfe_backward"]],
            "references": {r: [m["nfe_forward"], m["nfe_backward"]] for r, m in refs.items()},
            **_below(g, refs),
        }
    if SMOOTH_ARM in mean:
        s = mean[SMOOTH_ARM]
        refs = {r: mean[r] for r in CLAIM_REFERENCES if r in mean}
        if refs:
            claim["1e-07 with σ=softclip"] = {
                "gnesterovnode": [s["nfe_forward"], s["nfe_backward"]],
                "references": {r: [m["nfe_forward"], m["nfe_backward"]] for r, m in refs.items()},
                **_below(s, refs),
            }
    out["claim"] = claim
    # the models trained at 1e-7, solved at every tolerance of the sweep: where is the
    # paper's GNesterovNODE below all of CLAIM_REFERENCES in forward NFE?
    refs = [mean[r] for r in CLAIM_REFERENCES if r in mean]
    if PAPER_ARM in results_arms and refs:

        def swept(label):
            return np.mean([r["final"]["sweep"]["nfe"] for r in results_arms[label]["runs"]], 0)

        g = swept(PAPER_ARM)
        below = np.all([g < swept(r) for r in CLAIM_REFERENCES if r in mean], axis=0)
        out["sweep_below_references"] = {f"{tol:g}": bool(b) for tol, b in zip(SWEEP_TOLS, below)}
    return out


def verdict_line(v: dict) -> str:
    """The one-line statement of ``verdict``."""
    parts = [
        f"Seen: the step is limited by {'STABILITY' if v['stability_limited'] else 'accuracy'}"
        f" (max h·ρ/bound {v['max_h_rho_over_bound']:.3f} over every arm)"
    ]
    if "kink_limited" in v:
        p = v["paper_arm"]
        hard, smooth = v["swap_exponents"]
        parts.append(
            f"GNesterovNODE's cost is {'set' if v['kink_limited'] else 'NOT set'} by σ's "
            f"Hardtanh kinks ({p['f_beyond_bound']:.0%} of f beyond ±5, "
            f"{p['f_crossings_per_sample']:.1f} crossings per sample; NFE ∝ tol^-{hard:.2f} "
            f"vs tol^-{smooth:.2f} with a smooth σ; the smooth σ on the same weights takes "
            f"{v['swap_nfe_ratio']:.1f}x fewer NFE)"
        )
    for where, c in v["claim"].items():
        said = "holds" if c["holds"] else "does NOT hold"
        if c["cheaper_references"]:
            said += f" ({', '.join(c['cheaper_references'])} take fewer)"
        parts.append(f"the paper's claim at {where}: {said}")
    below = [tol for tol, b in v.get("sweep_below_references", {}).items() if b]
    if "sweep_below_references" in v:
        parts.append(
            "solved at rtol = atol 1e-4..1e-8 after training at 1e-7, its forward NFE is below "
            f"{', '.join(CLAIM_REFERENCES)} at {', '.join(below) if below else 'no tolerance'}"
        )
    return "; ".join(parts) + "."


# -- the picture ------------------------------------------------------------------------------
def _mean_curve(runs: list[dict], key: str, source: str = "epochs"):
    rows = [[r[key] for r in run[source] if r.get(key) is not None] for run in runs]
    n = min(len(r) for r in rows)
    if n == 0:
        return None
    x = [r["epoch"] for r in runs[0][source][:n]]
    return np.array(x), np.array([r[:n] for r in rows], float).mean(axis=0)


def plot(results: dict, path: Path) -> Path:
    """Six panels: forward and backward NFE per batch per epoch (mean over seeds, log
    axis), the crossings of σ's bounds per sample and max |f| along training (probes),
    forward NFE against tolerance of the trained models (the paper's GNesterovNODE also with
    σ swapped), and h·ρ/bound along the trajectory."""
    arms = results["arms"]
    fig, axes = C.new_figure(2, 3, figsize=(15.5, 8.4))
    (a_f, a_b, a_x), (a_m, a_t, a_s) = axes
    for i, (name, entry) in enumerate(arms.items()):
        runs = entry["runs"]
        model = results["config"]["arms"][name]["model"]
        dash = "--" if "@" in name else "-"  # the arms at another tolerance: their model's colour
        c = VARIATION_COLORS.get(name, C.color(model, i))
        for ax, key in ((a_f, "nfe_forward"), (a_b, "nfe_backward")):
            curve = _mean_curve(runs, key)
            if curve is not None:
                ax.plot(*curve, color=c, ls=dash, lw=1.3, label=name)
        for ax, key in ((a_x, "f_crossings_per_sample"), (a_m, "max_abs_f")):
            if ax is a_x and not model.startswith("g"):
                continue  # crossings of |f| = 5 are kinks of the field only where σ is
            curve = _mean_curve(runs, key, "probes")
            if curve is not None:
                ax.plot(*curve, color=c, ls=dash, lw=1.3, marker=".", label=name)
        sw = [r["final"]["sweep"] for r in runs]
        a_t.plot(sw[0]["tols"], np.mean([s["nfe"] for s in sw], axis=0), color=c, ls=dash,
                 marker="o", ms=3, lw=1.2, label=name)  # fmt: skip
        st = [r["final"]["stiffness"] for r in runs]
        a_s.plot(st[0]["t"], np.mean([s["h_rho_over_bound"] for s in st], axis=0), color=c,
                 ls=dash, lw=1.2, label=name)  # fmt: skip
    if PAPER_ARM in arms:
        for j, (name, _) in enumerate(SIGMAS.items()):
            sw = [r["final"]["sigma_swap"][name] for r in arms[PAPER_ARM]["runs"]]
            a_t.plot(sw[0]["tols"], np.mean([s["nfe"] for s in sw], axis=0), color="k",
                     ls=(0, (1, 1 + j)), marker="x", ms=4, lw=1.0,
                     label=f"{PAPER_ARM} weights, σ→{name}")  # fmt: skip
    a_f.set_ylabel("forward NFE per batch")
    a_b.set_ylabel("backward NFE per batch")
    a_x.set_ylabel("crossings of |f| = 5 per sample on [1, 2] (σ models)")
    a_m.set_ylabel("max |f| along the trajectory")
    for ax in (a_f, a_b, a_x, a_m):
        ax.set_xlabel("epoch")
    for ax in (a_f, a_b, a_m):
        ax.set_yscale("log")
    a_t.set_xscale("log")
    a_t.set_yscale("log")
    a_t.invert_xaxis()
    a_t.set_xlabel("rtol = atol (trained models, all 120 points)")
    a_t.set_ylabel("forward NFE")
    a_s.axhline(1.0, color="k", lw=0.8, ls=":")
    a_s.set_yscale("log")
    a_s.set_xlabel("t")
    a_s.set_ylabel("h·ρ(J) / DP5 stability bound")
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
    handles, labels_ = a_t.get_legend_handles_labels()
    fig.legend(handles, labels_, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=4)  # fmt: skip
    cfg = results["config"]
    title = (
        f"Point cloud: where GNesterovNODE's NFE comes from ({cfg['epochs']} epochs, "
        f"seeds {cfg['seeds'][0]}..{cfg['seeds'][-1]}, DP5)"
    )
    return C.save(fig, path, title)


# -- the table --------------------------------------------------------------------------------
def table(results: dict) -> str:
    from nesterovnode.tables import text_table

    head = [
        "arm", "loss", "NFE fwd", "NFE bwd", "rej/steps", "max hρ/b", "p (tol^-p)",
        "max|f|", "f>5", "cross/sample", "‖W_out‖", "loss<1e-2: epoch", "cum NFE",
    ]  # fmt: skip

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    body = []
    for name, entry in results["arms"].items():
        m = entry["mean"]
        reached = m["loss_reached"]
        body.append(
            [
                name,
                num(m["final_loss"], ".2g"),
                num(m["nfe_forward"], ".0f"),
                num(m["nfe_backward"], ".0f"),
                f"{m['rejected']:.0f}/{m['steps']:.0f}",
                num(m["max_h_rho_over_bound"], ".3f"),
                num(m["exponent"], ".2f"),
                num(m["max_abs_f"], ".3g"),
                num(m["f_beyond_bound"], ".0%"),
                num(m["f_crossings_per_sample"], ".1f"),
                num(m["w_out_norm"], ".3g"),
                f"{num(reached['epoch'], '.0f')} ({reached['seeds']}/{entry_seeds(entry)})",
                num(reached["cumulative_nfe"], ".3g"),
            ]
        )
    return text_table(head, body, numbers_right=True)


def entry_seeds(entry: dict) -> int:
    return len(entry["runs"])


def swap_table(results: dict) -> str:
    from nesterovnode.tables import text_table

    rows = []
    for name, entry in results["arms"].items():
        m = entry["mean"]
        for sig in SIGMAS:
            s = m.get(f"swap {sig}")
            if s is not None:
                rows.append(
                    [name, sig, f"{s['nfe']:.0f}", f"{s['rejected']:.0f}",
                     f"{s['exponent']:.2f}", f"{s['accuracy']:.3f}"]
                )  # fmt: skip
    head = ["trained arm", "σ evaluated", "NFE @1e-7", "rejected", "p", "accuracy"]
    return text_table(head, rows, numbers_right=True)


def finish(results: dict, out: Path) -> dict:
    """From the runs in ``results``: each arm's mean summary, the verdict, results.json,
    the PNG and the printed statement (seen.txt)."""
    cfg = results["config"]
    arms = {label: Arm(**fields) for label, fields in cfg["arms"].items()}
    for entry in results["arms"].values():
        entry["mean"] = mean_summary([run_summary(r, cfg["last"]) for r in entry["runs"]])
    results["verdict"] = verdict(arms, results["arms"])
    line = verdict_line(results["verdict"])
    results["seen"] = line
    C.write_results(out, results)
    png = plot(results, out / "gnesterov_nfe.png")
    seeds = cfg["seeds"]
    C.report(
        [
            f"Point cloud, {cfg['epochs']} epochs, seeds {seeds[0]}..{seeds[-1]} (means over "
            f"seeds; NFE per batch over the last {cfg['last']} epochs; rejections, steps, "
            f"h·ρ/bound, the exponent p and f on all 120 points after training):",
            table(results),
            "The trained σ models with σ swapped (same weights, all 120 points):",
            swap_table(results),
            line,
            f"  wrote {out / 'results.json'} and {png} (runs: {results['seconds']:.0f} s)",
        ],
        out,
    )
    return results


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "results/gnesterov_nfe")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 2; --paper 5)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 100; --paper 200)")
    p.add_argument("--last", type=int, default=20, help="epochs the NFE means are taken over")
    p.add_argument("--probe-every", type=int, default=10, help="epochs between probes")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM",
                   help=f"arms to train, of: {', '.join(ARMS)}")  # fmt: skip
    p.add_argument("--compile", default="steps", choices=("auto", "on", "steps", "off"),
                   help="the rk engine's compiled steps (runs/compiling.py)")  # fmt: skip
    p.add_argument("--redraw", action="store_true",
                   help="no training: restate the summaries, the verdict, the table and the PNG "
                   "from the results.json in --out")  # fmt: skip
    args = p.parse_args(argv)
    out = C.setup(args)
    if args.redraw:
        from nesterovnode.io import read_json

        results = read_json(out / "results.json")
        results["redrawn_at"] = git_commit()  # the runs keep the commit they ran at
        return finish(results, out)
    seeds = list(range(args.seed, args.seed + (args.seeds or (5 if args.paper else 2))))
    epochs = args.epochs or (200 if args.paper else 100)
    last = min(args.last, epochs)
    arms = {label: ARMS[label] for label in args.arms}
    results: dict = {
        "figure": "Fig. 3 (point cloud): the NFE of GNesterovNODE",
        "git_commit": git_commit(),
        "config": {
            "epochs": epochs,
            "seeds": seeds,
            "last": last,
            "probe_every": args.probe_every,
            "protocol": "pointcloud task defaults: DP5, float64, lr 1e-2, batch 50, SmoothL1, "
            "Adam; ξ = 2 fixed for the generalised models",
            "bound": BOUND,
            "smooth_sigma": "softclip(z) = z - softplus(z - 5) + softplus(-z - 5)",
            "sweep_tols": list(SWEEP_TOLS),
            "fit_tols": list(FIT_TOLS),
            "loss_reached": LOSS_REACHED,
            "arms": {label: asdict(arm) for label, arm in arms.items()},
        },
        "arms": {},
    }
    jobs = [(arm, seed) for arm in arms.values() for seed in seeds]
    start = time.perf_counter()
    for arm, seed in C.progress(jobs, total=len(jobs), desc="runs", quiet=args.quiet):
        entry = results["arms"].setdefault(arm.label, {"runs": []})
        entry["runs"].append(run_arm(arm, seed, epochs, args.probe_every, args.compile))
        C.write_results(out, results)  # after every run: an interrupted study keeps its runs
    results["seconds"] = time.perf_counter() - start
    finish(results, out)
    return results


if __name__ == "__main__":
    main()
