"""Adjoint norms along a Walker2D window (the paper's Fig. 2, right).

For ODE-RNN, GHBNODE-RNN, NesterovNODE-RNN and GNesterovNODE-RNN, trained and untrained,
the loss of the LAST prediction of a window, L = MSE(ŷ_(L-1), x_(L-1)), is backpropagated
and at every observation time t_i (the end of gap i, before the RNN update) the adjoint
norm is recorded as the paper defines it per model:

- NODE: ‖∂L/∂h(t_i)‖;
- GHBNODE: ‖[∂L/∂h, ∂L/∂m](t_i)‖ (the solver state is [h, m]);
- NesterovNODE, GNesterovNODE: ‖[∂L/∂h, ∂L/∂x, ∂L/∂m](t_i)‖, h the readout k(t) x (σ(k) x),
  [x, m] the solver state (∂L/∂x includes the path through h = k x).

Norms are per window, then averaged over windows and seeds at each step index, and plotted
against T - t (T the window's last time, averaged likewise) on a log axis. A vanishing
adjoint shows as a curve that falls fast with T - t. Where it vanishes is split per step:
the factor by which the solver state's adjoint norm changes across a gap's ODE flow, and
across the RNN update between two gaps (``ode_factor``, ``rnn_factor``: medians over the
window's steps).

Trained models come from a comparison's run folders (``--runs DIR``, e.g.
results/walker2d: ``DIR/runs/MODEL/seedK/checkpoint.pt``) or are trained here. CPU
defaults: 64 test windows, 1 seed, models without a checkpoint trained for 3 epochs on
2,560 windows (the task's CPU solve, DP5 at 1e-3). ``--paper``: every test window, and
models without a checkpoint trained under the task's paper protocol (500 epochs on every
training window, DP5 at 1e-7 in float64: hours per model). Like every experiment here it
takes ``--out``, ``--threads`` (default 1) and ``--quiet``, writes ``results.json`` and
``adjoint_norms.png`` atomically and a ``seen.txt``, and ends with what it saw.

    python experiments/adjoint_norms.py [--data-dir DIR] [--runs results/walker2d] [--paper]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from nesterovnode.data.paths import DataUnavailableError  # noqa: E402
from nesterovnode.runs import TrainConfig, load_model, train  # noqa: E402
from nesterovnode.tasks import get_task  # noqa: E402

MODELS = ("node", "ghbnode", "nesterovnode", "gnesterovnode")


def adjoint_norms(model, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """The mean over windows, backpropagated from the last prediction's loss, of:
    ``norm [L-1]``, the adjoint norm at each observation time; ``T_minus_t [L-1]``; and
    per step, the factors by which the solver state's adjoint norm changes across the ODE
    flow of a gap (``ode``: ‖∂L/∂z(gap start)‖ / ‖∂L/∂z(gap end)‖) and across the RNN
    update between gaps (``rnn``: ‖∂L/∂z(end of gap i)‖ / ‖∂L/∂z(start of gap i+1)‖)."""
    model.record = []
    try:
        pred = model(x)
        loss = torch.nn.functional.mse_loss(pred[:, -1], y[:, -1])
        loss.backward()
        nesterov = hasattr(model.dynamics, "factor")
        norms, starts, ends = [], [], []
        for _gap, start, end, H in model.record:
            ends.append(end.grad.reshape(len(x), -1).norm(dim=1))
            starts.append(start.grad.reshape(len(x), -1).norm(dim=1))
            # the paper's norm: the solver state's, with ∂L/∂h too for the Nesterov models
            h_part = H.grad[:, : model.n].norm(dim=1) if nesterov else 0.0
            norms.append((ends[-1].square() + h_part**2).sqrt())
    finally:
        model.record = None
    norms = torch.stack(norms, dim=1).detach()  # [W, L-1]
    starts, ends = torch.stack(starts, dim=1), torch.stack(ends, dim=1)
    times = torch.cumsum(x[:, 1:, -1], dim=1)  # time of each observation after the first
    to_end = (times[:, -1:] - times).detach()
    return {
        "norm": norms.mean(0).numpy(),
        "T_minus_t": to_end.mean(0).numpy(),
        "ode": (starts / ends).mean(0).numpy(),
        "rnn": (ends[:, :-1] / starts[:, 1:]).mean(0).numpy(),
    }


def trained_model(name: str, seed: int, args) -> torch.nn.Module | None:
    """From the first ``--runs`` folder with a checkpoint, else trained here (None with
    ``--no-train``)."""
    for runs in args.runs or []:
        path = Path(runs) / "runs" / name / f"seed{seed}" / "checkpoint.pt"
        if path.exists():
            return load_model(path)
    if args.no_train:
        return None
    paper = get_task("walker2d").defaults.paper_protocol() if args.paper else {}
    cfg = TrainConfig(
        task="walker2d",
        model=name,
        epochs=args.epochs or paper.get("epochs", 3),
        seed=seed,
        data_dir=args.data_dir,
        subset=None if args.paper else args.subset,
        solve={"tol": paper.get("tol")},
        dtype=paper.get("dtype"),
        evaluate=False,
    )
    out = Path(args.out) / "runs" / name / f"seed{seed}"
    return train(cfg, out, resume=True, progress=not args.quiet).model


def measure(args, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Per ``MODEL/untrained`` and ``MODEL/trained``: the norm curve and its times (means
    over seeds) and the median per-step factors of the gap's ODE flow and the RNN update."""
    task = get_task("walker2d")
    results = {}
    jobs = [(name, state) for name in args.models for state in ("untrained", "trained")]
    for name, state in C.progress(jobs, desc="models", quiet=args.quiet):
        curves, times, ode, rnn = [], [], [], []
        for seed in range(args.seed, args.seed + args.seeds):
            if state == "trained":
                model = trained_model(name, seed, args)
                if model is None:
                    continue
            else:
                torch.manual_seed(seed)
                model = task.build_model(name)
            # float64: the norms fall by many orders along a window, below float32's
            # range for the untrained models
            r = adjoint_norms(model.double(), x.double(), y.double())
            curves.append(r["norm"])
            times.append(r["T_minus_t"])
            ode.append(r["ode"])
            rnn.append(r["rnn"])
        if not curves:
            continue
        norm = np.mean(curves, axis=0)
        results[f"{name}/{state}"] = {
            "norm": norm.tolist(),
            "T_minus_t": np.mean(times, axis=0).tolist(),
            # the norm at the window's first observation over the norm at T
            "ratio": float(norm[0] / max(norm[-1], 1e-300)),
            # median over steps of the per-step factors (mean over windows and seeds)
            "ode_factor": float(np.median(np.mean(ode, axis=0))),
            "rnn_factor": float(np.median(np.mean(rnn, axis=0))),
        }
    return results


def plot(results: dict, models, path: Path) -> Path:
    fig, ax = C.new_figure()
    for i, name in enumerate(models):
        for state, style in (("trained", "-"), ("untrained", "--")):
            r = results.get(f"{name}/{state}")
            if r is None:
                continue
            ax.plot(
                r["T_minus_t"],
                r["norm"],
                style,
                color=C.color(name, i),
                label=f"{C.label(name)} ({state})",
            )
    ax.set_yscale("log")
    ax.set_xlabel("T − t")
    ax.set_ylabel("‖adjoint‖ (mean over windows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return C.save(fig, path, "Walker2D: adjoint norms from the last time stamp")


def verdict(curves: dict) -> list[str]:
    """One line per curve and the statement of what the numbers show."""
    lines = [
        f"  {key:24s} norm at T {r['norm'][-1]:.3e}, at T − t = {r['T_minus_t'][0]:.2f} "
        f"{r['norm'][0]:.3e} (×{r['ratio']:.2e}); per step: ODE gap ×{r['ode_factor']:.3f}, "
        f"RNN update ×{r['rnn_factor']:.3f}"
        for key, r in curves.items()
    ]
    for state in ("untrained", "trained"):
        part = {k.split("/")[0]: r for k, r in curves.items() if k.endswith("/" + state)}
        if not part:
            continue
        ratios = [r["ratio"] for r in part.values()]
        ode = [r["ode_factor"] for r in part.values()]
        rnn = [r["rnn_factor"] for r in part.values()]
        flattest = max(part, key=lambda m: part[m]["ratio"])
        lines.append(
            f"  Seen ({state}): along the window the adjoint norm falls to "
            f"{min(ratios):.1e}–{max(ratios):.1e} of its value at T; the flattest curve is "
            f"{C.label(flattest)}'s. Per step a gap's ODE flow multiplies it by "
            f"{min(ode):.3f}–{max(ode):.3f} and the RNN update by {min(rnn):.3f}–{max(rnn):.3f}"
            + (
                ": the RNN update, not the ODE, makes it vanish."
                if max(rnn) < 1 and min(ode) > 0.9
                else "."
            )
        )
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "results/adjoint_norms")
    p.add_argument("--data-dir", default=None, help="folder with walker2d/rollouts.npz")
    p.add_argument("--runs", nargs="+", help="walker2d comparison folders with trained checkpoints")
    p.add_argument("--no-train", action="store_true", help="skip trained curves without one")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--windows", type=int, default=None, help="test windows (default 64; paper all)")
    p.add_argument("--epochs", type=int, default=None, help="training without a checkpoint")
    p.add_argument("--subset", type=int, default=2560, help="training windows (not --paper)")
    args = p.parse_args(argv)
    out = C.setup(args)
    data_dir = args.data_dir or str(C.default_data_dir())
    args.data_dir = data_dir
    try:
        _, test = get_task("walker2d").datasets(data_dir=data_dir)
    except DataUnavailableError as exc:
        C.die(str(exc))
    windows = len(test) if args.paper else min(args.windows or 64, len(test))
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(test), generator=g)[:windows]
    x, y = test.tensors[0][idx], test.tensors[1][idx]
    curves = measure(args, x, y)
    results = {
        "figure": "Fig. 2 (right)",
        "windows": windows,
        "seeds": args.seeds,
        "models": args.models,
        "curves": curves,
    }
    C.write_results(out, results)
    png = plot(curves, args.models, out / "adjoint_norms.png")
    C.report(
        [
            f"Fig. 2 right: adjoint norms along {windows} Walker2D test windows, "
            f"{args.seeds} seed(s), float64:",
            *verdict(curves),
            f"  wrote {out / 'results.json'} and {png}",
        ],
        out,
    )
    return results


if __name__ == "__main__":
    main()
