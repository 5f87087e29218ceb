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
results/walker2d: ``DIR/runs/MODEL/seedK/checkpoint.pt``) or are trained here for
``--epochs`` on ``--subset`` windows. Writes ``adjoint_norms.json`` and
``adjoint_norms.png`` to ``--out``.

    python experiments/adjoint_norms.py --data-dir ../shared/data --runs results/walker2d
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from nesterovnode.io import write_json_atomic
from nesterovnode.plotting import color, label, new_figure, save
from nesterovnode.runs.training import TrainConfig, load_model, train
from nesterovnode.tasks import get_task

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
    cfg = TrainConfig(
        task="walker2d",
        model=name,
        epochs=args.epochs,
        seed=seed,
        data_dir=args.data_dir,
        subset=args.subset,
        evaluate=False,
    )
    return train(cfg, Path(args.out) / "runs" / name / f"seed{seed}", resume=True).model


def main() -> None:
    p = argparse.ArgumentParser(description="Adjoint norms along Walker2D windows (Fig. 2 right)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", nargs="+", help="walker2d comparison folders with trained checkpoints")
    p.add_argument("--no-train", action="store_true", help="skip trained curves without one")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--windows", type=int, default=64, help="test windows averaged over")
    p.add_argument("--epochs", type=int, default=3, help="training when no checkpoint")
    p.add_argument("--subset", type=int, default=2560)
    p.add_argument("--out", default="results/adjoint_norms")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    task = get_task("walker2d")
    _, test = task.datasets(data_dir=args.data_dir)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(test), generator=g)[: args.windows]
    x, y = test.tensors[0][idx], test.tensors[1][idx]

    results = {}
    for name in args.models:
        for state in ("untrained", "trained"):
            curves, times, ode, rnn = [], [], [], []
            for seed in range(args.seeds):
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
            results[f"{name}/{state}"] = {
                "norm": np.mean(curves, axis=0).tolist(),
                "T_minus_t": np.mean(times, axis=0).tolist(),
                # median over steps of the per-step factors (mean over windows and seeds)
                "ode_factor": float(np.median(np.mean(ode, axis=0))),
                "rnn_factor": float(np.median(np.mean(rnn, axis=0))),
            }
            r = results[f"{name}/{state}"]
            print(
                f"{name:14s} {state:9s} norm at T: {r['norm'][-1]:.3e}  at T-t="
                f"{r['T_minus_t'][0]:.2f}: {r['norm'][0]:.3e}  ratio "
                f"{r['norm'][0] / max(r['norm'][-1], 1e-300):.2e}  per step: ODE gap "
                f"x{r['ode_factor']:.3f}, RNN update x{r['rnn_factor']:.3f}",
                flush=True,
            )
    write_json_atomic(out / "adjoint_norms.json", results)

    fig, ax = new_figure()
    for i, name in enumerate(args.models):
        for state, style in (("trained", "-"), ("untrained", "--")):
            r = results.get(f"{name}/{state}")
            if r is None:
                continue
            ax.plot(
                r["T_minus_t"],
                r["norm"],
                style,
                color=color(name, i),
                label=f"{label(name)} ({state})",
            )
    ax.set_yscale("log")
    ax.set_xlabel("T − t")
    ax.set_ylabel("‖adjoint‖ (mean over windows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save(fig, out / "adjoint_norms.png", title="Walker2D: adjoint norms from the last time stamp")
    print(f"wrote {out / 'adjoint_norms.json'} and {out / 'adjoint_norms.png'}")


if __name__ == "__main__":
    main()
