"""Fig. 2 (left) of the paper: ‖h(t)‖₂ of the seven models at initialisation on Silverbox.

The paper's initialisation test (its Table 4, row "Initialization"): the state has width
n = 1 and the ODE network is one linear layer on the state and t, ``[h (n*), t] -> fc_n``
(n* = 2n for SONODE, n + p for ANODE), randomly initialised (PyTorch's default) and never
trained; velocities start at 0. ξ is learnable on Silverbox (the paper's Table 6), so the
models that carry it hold it as a parameter at its starting value, as on MNIST and
Walker2D (``tasks.walker2d.XI_DEFAULTS``: softplus(2) ≈ 2.13 for GHBNODE and GNesterovNODE,
~0 for HBNODE and NesterovNODE); untrained, ξ is that value. Every model is integrated
from t0 = 1 to T = 63 (the paper's long span; t0 > 0 because t = 0 is singular for the
Nesterov models) and ‖h(t)‖₂ (the mean over the batch) is drawn against t on a log axis:
the geometric mean over seeds with the min–max band, on an axis clipped at ``CLIP_FACTOR``
× the largest norm of the models that finish every seed; a curve that leaves it is
marked where it does, with the largest norm it reached.

Not in the paper; stated choices: h0 = rows of the Silverbox column ``--column`` (default
V2, the output voltage, the signal a model of the circuit predicts; V1 is the input), evenly
spaced over the record; ANODE's p = 1 zero channel; DP5 at rtol = atol = 1e-6 in float64,
at most 5000 steps per solve.

Expected (MATH.md): NesterovNODE's h = k(t) x grows like k(t) = t^(-3/2) e^(t/2)
(about 1e11 at t = 63); GNesterovNODE bounds the factor by σ(k) (Hardtanh(-5, 5)) and,
with GHBNODE, stays bounded. A solve that fails (blow-up, step-size underflow, too many
steps) is recorded with the time it reached; its curve stops there.

    python experiments/init_blowup.py [--data-dir DIR] [--column V2] [--seeds 5] [--paper]
                                      [--out DIR]
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import nesterovnode as nno  # noqa: E402
from nesterovnode.dynamics.registry import MODEL_NAMES, make_dynamics  # noqa: E402
from nesterovnode.tasks.walker2d import XI_DEFAULTS  # noqa: E402

N = 1  #: state width: the paper's Table 4 (one Silverbox column, ``--column``)
P = 1  #: ANODE's extra zero channels (a stated choice)
SIGMA_MAX = 5.0  #: the bound of the G models' σ = Hardtanh(-5, 5)
#: Silverbox's columns: V1 the input voltage, V2 the output voltage
COLUMNS = {"V1": 0, "V2": 1}
#: the verdict's threshold: growth max‖h‖/‖h(1)‖ above this counts as blown up
GROWN = 1e3
#: the plot's axis ends at this many times the largest norm of the models that finish
CLIP_FACTOR = 1e3


def g_bound(h0_norm: float, t_end: float, t0: float = 1.0) -> float:
    """The stated bound of GNesterovNODE's ‖h(t)‖ on [t0, T], from its equations alone:
    x' = σ(m) gives ‖x(t)‖ ≤ ‖x0‖ + σ_max √n (t − t0), and h = σ(k(t)) x with
    |σ| ≤ σ_max, x0 = h0/σ(k(t0)), σ(k(t0)) = k(t0) = t0^(-3/2) e^(t0/2) (= e^0.5 ≥ 1 at
    t0 = 1), so ‖h(t)‖ ≤ σ_max (‖h0‖ + σ_max √n (T − t0)) whatever the network does
    (the batch mean obeys the bound of the batch-mean ‖h0‖ too: the bound is affine in
    ‖h0‖)."""
    return SIGMA_MAX * (h0_norm + SIGMA_MAX * math.sqrt(N) * (t_end - t0))


class LinearField(nn.Module):
    """``f(t, h) = W [h, t] + b``: fc_n on the state and t (the initialisation test's ODE)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.fc = nn.Linear(n_in + 1, n_out)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = torch.as_tensor(t, dtype=h.dtype).expand(h.shape[0], 1)
        return self.fc(torch.cat([h, tt], dim=1))


def build(model: str, seed: int) -> nn.Module:
    """The model with a freshly initialised linear field (seeded) and, for the models that
    carry ξ, a learnable ξ at its starting value (``XI_DEFAULTS``)."""
    torch.manual_seed(seed)
    n_in = {"sonode": 2 * N, "anode": N + P}.get(model, N)
    n_out = N + P if model == "anode" else N
    xi, learn = XI_DEFAULTS.get(model, (0.0, False))
    field = LinearField(n_in, n_out)
    return make_dynamics(model, field, augment_dim=P, xi=xi, learn_xi=learn).double()


def start_xi(models) -> dict[str, float]:
    """ξ of each model that carries one, at initialisation."""
    values = {}
    for m in models:
        dyn = build(m, 0)
        if hasattr(dyn, "xi"):
            values[m] = float(dyn.xi().detach())
    return values


def norms(
    model: str, h0: torch.Tensor, ts: torch.Tensor, seed: int, config: nno.SolveConfig
) -> tuple[np.ndarray, float | None, int]:
    """(mean ‖h(t)‖₂ over the batch at ``ts`` (NaN after a failure), failure time or None,
    forward NFE)."""
    dyn = build(model, seed)
    with torch.no_grad():
        y0 = dyn.initial_state(ts[0], h0)
        try:
            sol = nno.solve(dyn, y0, ts, config)
        except nno.SolverError as exc:
            # A blow-up: integrate again up to the time reached, so the curve shows the
            # growth up to the failure.
            t_fail = float(exc.t_reached) if exc.t_reached is not None else float(ts[0])
            keep = ts[ts < t_fail]
            out = np.full(len(ts), np.nan)
            nfe = exc.stats.nfe_forward if exc.stats is not None else 0
            if len(keep) >= 2:
                try:
                    sol = nno.solve(dyn, y0, keep, config)
                    h = dyn.readout(keep, sol.ys)[:, :, :N]
                    out[: len(keep)] = h.norm(dim=-1).mean(dim=-1).numpy()
                except nno.SolverError:
                    pass
            out[~np.isfinite(out)] = np.nan
            return out, t_fail, nfe
        h = dyn.readout(ts, sol.ys)[:, :, :N]  # ANODE: the data channels
        return h.norm(dim=-1).mean(dim=-1).numpy(), None, sol.stats.nfe_forward


def run(
    data: np.ndarray,
    seeds: int,
    batch: int,
    t_end: float = 63.0,
    points: int = 125,
    first_seed: int = 0,
    models: tuple[str, ...] = MODEL_NAMES,
    quiet: bool = True,
    rtol: float = 1e-6,
) -> dict:
    """‖h(t)‖ per model and seed; the inputs are ``batch`` evenly spaced Silverbox rows."""
    rows = np.linspace(0, len(data) - 1, batch).astype(int)
    h0 = torch.as_tensor(data[rows].reshape(batch, -1), dtype=torch.float64)
    ts = torch.linspace(1.0, t_end, points, dtype=torch.float64)
    config = nno.SolveConfig(solver="DP5", rtol=rtol, atol=rtol, max_steps=5_000)
    jobs = [(m, s) for m in models for s in range(first_seed, first_seed + seeds)]
    per_model: dict[str, dict] = {m: {"norms": [], "failed_at": [], "nfe": []} for m in models}
    for m, s in C.progress(jobs, total=len(jobs), desc="models x seeds", quiet=quiet):
        values, failed, nfe = norms(m, h0, ts, s, config)
        per_model[m]["norms"].append(values.tolist())
        per_model[m]["failed_at"].append(failed)
        per_model[m]["nfe"].append(int(nfe))
    x0_norm = float(h0.norm(dim=-1).mean())  # an upper bound of the G models' ‖x0‖ below
    for entry in per_model.values():
        arr = np.array(entry["norms"], dtype=float)
        arr[~np.isfinite(arr)] = np.nan
        start = arr[:, 0]
        peak = np.nanmax(arr, axis=1)
        entry["max_norm"] = peak.tolist()  # max over the times reached of ‖h(t)‖
        entry["growth"] = (peak / start).tolist()  # ... divided by ‖h(t0)‖
        entry["final"] = arr[:, -1].tolist()
    finished = [
        peak
        for entry in per_model.values()
        if all(f is None for f in entry["failed_at"])
        for peak in entry["max_norm"]
    ]
    return {
        "ts": ts.tolist(),
        "n": N,
        "xi": start_xi(models),
        "h0_norm": x0_norm,
        "g_bound": g_bound(x0_norm, t_end),
        "clip": CLIP_FACTOR * max(max(finished, default=1.0), 1.0),
        "bounded": bounded_models(per_model),
        "models": per_model,
    }


def _draw(ax, i: int, m: str, entry: dict, ts: np.ndarray) -> np.ndarray:
    """One model's curves on ``ax``: the geometric mean over seeds while all run, the
    min–max band, each seed thinly up to where its solve stopped; returns the norms."""
    arr = np.array(entry["norms"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # times no seed reached: NaN
        geo = 10 ** np.mean(np.log10(arr), axis=0)  # NaN once any seed has stopped
        lo, hi = np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
    c = C.color(m, i)
    ax.plot(ts, geo, color=c, lw=1.8, label=C.label(m), **C.line_style(m, i, len(ts), 7))
    ax.fill_between(ts, lo, hi, color=c, alpha=0.12, lw=0)
    for row in arr:
        ax.plot(ts, row, color=c, lw=0.6, alpha=0.5)
    return arr


def plot(results: dict, path: Path) -> Path:
    """Two panels of ‖h(t)‖. Left, every model on a log axis that ends at
    ``results["clip"]``: a model whose norm goes beyond is marked (▲) where its first seed
    crosses it, with the largest norm any of its seeds reached. Right, on an axis of their
    own, the models that stay bounded (``results["bounded"]``) and GNesterovNODE's stated
    bound, which the left panel's scale would flatten."""
    ts = np.array(results["ts"])
    clip = float(results["clip"])
    fig, (ax, zoom) = C.new_figure(1, 2, figsize=(11.5, 4.6))
    low = np.inf
    for i, (m, entry) in enumerate(results["models"].items()):
        arr = _draw(ax, i, m, entry, ts)
        positive = arr[np.isfinite(arr) & (arr > 0)]
        low = min(low, float(positive.min()) if positive.size else low)
        above = np.nonzero(np.nan_to_num(arr, nan=0.0) > clip)
        if above[0].size:
            t_cross = float(ts[above[1].min()])
            c = C.color(m, i)
            ax.plot([t_cross], [clip], "^", color=c, ms=8, clip_on=False)
            ax.annotate(
                f"{C.label(m)} ↑ {float(np.nanmax(arr)):.0e}",
                (t_cross, clip),
                xytext=(4, -12 - 9 * (i % 4)),
                textcoords="offset points",
                fontsize=7,
                color=c,
            )
        if m in results["bounded"]:
            _draw(zoom, i, m, entry, ts)
    ax.set_yscale("log")
    ax.set_ylim(0.5 * low if np.isfinite(low) else None, clip)
    ax.set_title(f"every model (axis clipped at {clip:.0e}; ▲: leaves it, with its peak)")
    zoom.set_yscale("log")
    zoom.set_title("the models that stay bounded")
    if "gnesterovnode" in results["bounded"]:
        zoom.axhline(results["g_bound"], color="k", ls=":", lw=1.0)
        zoom.annotate(
            f"GNesterovNODE's bound {results['g_bound']:.4g}",
            (ts[0], results["g_bound"]),
            xytext=(2, -10),
            textcoords="offset points",
            fontsize=7,
        )
        zoom.set_title("the models that stay bounded, and GNesterovNODE's bound")
    for a in (ax, zoom):
        a.set_xlabel("t")
        a.set_ylabel("‖h(t)‖₂ (batch mean)")
        a.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=7, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    return C.save(
        fig,
        path,
        "Silverbox at initialisation: ‖h(t)‖₂ (line: geometric mean while all seeds run; "
        "band: min–max; thin: each seed)",
    )


def bounded_models(models: dict) -> list[str]:
    """The models whose every solve finished the span with growth at most ``GROWN``."""
    return [
        m
        for m, e in models.items()
        if all(f is None for f in e["failed_at"])
        and np.nanmax(np.array(e["growth"], dtype=float)) <= GROWN
    ]


def verdict(results: dict) -> list[str]:
    """One line per model: growth max_t ‖h(t)‖/‖h(1)‖ over seeds and failures."""
    lines = []
    for m, e in results["models"].items():
        growth = np.array(e["growth"], dtype=float)
        peak = np.array(e["max_norm"], dtype=float)
        fails = [f for f in e["failed_at"] if f is not None]
        fail = f"; solver stopped in {len(fails)} seed(s) at t ≈ {min(fails):.1f}" if fails else ""
        lines.append(
            f"  {C.label(m):14s} growth max‖h‖/‖h(1)‖: min {np.nanmin(growth):.3g}, "
            f"median {np.nanmedian(growth):.3g}, max {np.nanmax(growth):.3g}; "
            f"max ‖h‖ {np.nanmax(peak):.3g}; "
            f"NFE {int(np.mean(e['nfe']))}{fail}"
        )
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "results/init_blowup")
    p.add_argument("--data-dir", default=None, help="folder with silverbox.csv")
    p.add_argument(
        "--column",
        choices=tuple(COLUMNS),
        default="V2",
        help="the Silverbox column giving h0 (V1 input, V2 output voltage)",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 5; paper 10)")
    p.add_argument("--batch", type=int, default=None, help="inputs (default 64; paper 1024)")
    p.add_argument("--t-end", type=float, default=63.0)
    args = p.parse_args(argv)
    out = C.setup(args)
    try:
        data = C.load_silverbox(args.data_dir)
    except FileNotFoundError as exc:
        C.die(str(exc))
    seeds = args.seeds or (10 if args.paper else 5)
    batch = args.batch or (1024 if args.paper else 64)
    data = data[:, COLUMNS[args.column]]
    results = run(data, seeds, batch, args.t_end, first_seed=args.seed, quiet=args.quiet)
    nest_entry = results["models"]["nesterovnode"]
    nest = np.array(nest_entry["growth"], dtype=float)
    n_big = int(np.sum(nest > 1e6))
    n_stopped_small = sum(
        1 for g, f in zip(nest, nest_entry["failed_at"]) if not g > 1e6 and f is not None
    )
    g_fail = [f for f in results["models"]["gnesterovnode"]["failed_at"] if f is not None]
    gnest = np.array(results["models"]["gnesterovnode"]["max_norm"], dtype=float)
    ghb = np.array(results["models"]["ghbnode"]["max_norm"], dtype=float)
    bound = results["g_bound"]
    bounded = [C.label(m) for m in results["bounded"]]
    grown = [C.label(m) for m in results["models"] if m not in results["bounded"]]
    k_ratio = math.exp(0.5 * (args.t_end - 1) - 1.5 * math.log(args.t_end))
    results.update(
        figure="Fig. 2 (left)",
        column=args.column,
        seeds=seeds,
        batch=batch,
        t_span=[1.0, args.t_end],
        solver="DP5 rtol=atol=1e-6 float64",
        k_ratio=k_ratio,
    )
    C.write_results(out, results)
    plot(results, out / "init_blowup.png")
    C.report(
        [
            f"Fig. 2 left: ‖h(t)‖ at initialisation, Silverbox {args.column} (n = {N}), "
            f"{batch} inputs, {seeds} seeds, t from 1 to {args.t_end:g} "
            f"(k(T)/k(1) = {k_ratio:.3g}); ξ at its learnable start: "
            + ", ".join(f"{C.label(m)} {v:.3g}" for m, v in results["xi"].items())
            + ":",
            *verdict(results),
            f"  Seen: NesterovNODE's norm grows by more than 1e6× in {n_big} of {seeds} seeds "
            f"(median {np.nanmedian(nest):.3g}×, super-exponentially until the solver stops); "
            f"in {n_stopped_small} other seed(s) the adaptive solver stops before T (a blow-up "
            f"or too many steps) before the norm passes 1e6×; "
            f"GNesterovNODE finishes the span in {seeds - len(g_fail)} of {seeds} seeds and its "
            f"‖h‖ stays at most {np.nanmax(gnest):.3g} "
            f"({'within' if np.nanmax(gnest) <= bound else 'ABOVE'} its stated bound "
            f"σ_max(‖h0‖ + σ_max√n(T − t0)) = {bound:.4g}), GHBNODE's at most "
            f"{np.nanmax(ghb):.3g}. Growth above {GROWN:g}× or a stopped solve in some seed: "
            f"{', '.join(grown) or 'none'}; below in every seed, every solve finished: "
            f"{', '.join(bounded) or 'none'}.",
            f"  wrote {out / 'results.json'} and {out / 'init_blowup.png'}",
        ],
        out,
    )
    return results


if __name__ == "__main__":
    main()
