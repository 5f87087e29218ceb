"""The library against its peers on the point-cloud protocol, from the same data and weights.

Protocol: the paper's point cloud (120 points), HBNODE and NesterovNODE with the paper's
architectures, float64, DP5 at rtol = atol = 1e-7 over t in [1, 2], a continuous
(backsolve) adjoint, Adam at 1e-2, batches of 50/50/20 in a fixed order, the same initial
weights everywhere. Implementations:

- ours, each in-process engine (``rk``, ``rk`` with compiled steps, ``torchdiffeq``),
  sensitivity ``adjoint``; the compiled steps' compile time is what their runners
  measured (run twice with a fresh ``TORCHINDUCTOR_CACHE_DIR`` to see a cold and a warm
  cache);
- torchode (``JointBacksolveAdjoint``, ``Dopri5``, ``IntegralController``), the whole batch
  as one sample (one step size, as ours);
- diffrax (JAX, jit; ``Dopri5``, ``PIDController`` as an integral controller,
  ``BacksolveAdjoint``), the networks rebuilt in JAX from the torch weights.

First h(T) is checked to agree across them at tolerance 1e-12 (from the same weights);
then each trains ``--epochs`` epochs and the table gives s/epoch and forward/backward NFE
per batch over the same last epochs (at most 5; never the first, which compiles; NFE:
torchode and ours, the calls f observes; diffrax, the calls its field makes, through a
host callback in an untimed pass), µs per evaluation, compile time (diffrax: the first
epoch's extra time) and the ratios to ours on rk. Peers missing here are skipped with a message
(``pip install -e ".[bench]"``). No assertions: timings depend on the machine.

    python benchmarks/peers.py [--epochs 10] [--models hbnode nesterovnode] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time

import numpy as np
import torch
from torchode_peer import TorchodeBlock  # benchmarks/torchode_peer.py

from nesterovnode.runs.training import adam as torch_adam
from nesterovnode.solve.engines.rk.compiled import COMPILE_SECONDS
from nesterovnode.tasks import get_task

TOL, LR, T0, T1 = 1e-7, 1e-2, 1.0, 2.0
BATCHES = ((0, 50), (50, 100), (100, 120))


# -- data and models -----------------------------------------------------------------------
def data(seed: int = 0):
    x, y = get_task("pointcloud").datasets(seed=seed)[0][:]
    return x.double(), y.double()


def torch_model(name: str, seed: int, **options):
    torch.manual_seed(seed)
    return get_task("pointcloud").build_model(name, rtol=TOL, atol=TOL, **options).double()


# -- ours ----------------------------------------------------------------------------------
def torch_step(model, x, y):
    """One batch's loss and backward; (loss, NFE forward, NFE backward) from ``model.stats``
    (ours, and torchode's block)."""
    out = model(x)
    loss = torch.nn.functional.smooth_l1_loss(out.reshape(-1), y)
    loss.backward()
    s = model.stats
    return loss.item(), s.nfe_forward, s.nfe_backward


def ours_hT(model, x, tol):
    model.block.config = model.block.config.replace(rtol=tol, atol=tol)
    with torch.no_grad():
        return model.features(x).numpy()


# -- torchode ------------------------------------------------------------------------------
def torchode_model(name: str, seed: int, tol: float):
    """``torch_model``, its block solved by torchode (``torchode_peer.TorchodeBlock``:
    the same dynamics, times and readout; NFE in ``model.stats`` as ours)."""
    model = torch_model(name, seed)
    model.block = TorchodeBlock(model.block, tol)
    return model


# -- diffrax -------------------------------------------------------------------------------
def jax_params(model) -> dict:
    return {k: np.asarray(v.detach().numpy()) for k, v in model.named_parameters()}


def diffrax_model(name: str, model, count=None):
    """``(value_and_grad(params, x, y), h_T(params, x, tol))``; with ``count`` (a list)
    every evaluation of the field appends to it through a host callback (slow: for
    counting NFE only, never timed)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    keys = jax_params(model)
    ode = sorted({k.split(".")[-2] for k in keys if k.startswith("block.dynamics.f.net.")})
    vel = sorted({k.split(".")[-2] for k in keys if k.startswith("encoder.velocity.")})

    def mlp(p, prefix, idx, h, act):
        for j, i in enumerate(idx):
            h = h @ p[f"{prefix}.{i}.weight"].T + p[f"{prefix}.{i}.bias"]
            if j < len(idx) - 1:
                h = act(h)
        return h

    def f(p, t, h):
        inp = jnp.concatenate([h, jnp.full((h.shape[0], 1), t)], axis=1)
        return mlp(p, "block.dynamics.f.net", ode, inp, jax.nn.elu)

    def k(t):
        return jnp.exp(0.5 * t - 1.5 * jnp.log(t))

    def field(t, state, p):
        if count is not None:
            jax.debug.callback(lambda: count.append(1))
        a, m = state
        if name == "hbnode":
            gamma = jax.nn.sigmoid(p["block.dynamics.gamma_logit"])
            return (m, -gamma * m + f(p, t, a))
        return (m, -m - f(p, t, k(t) * a))

    def solve(p, x, tol, adjoint):
        v0 = mlp(p, "encoder.velocity", vel, x, lambda z: jnp.clip(z, -5.0, 5.0))
        a0 = x if name == "hbnode" else x / k(T0)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Dopri5(),
            T0,
            T1,
            None,
            (a0, v0),
            args=p,
            stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol, pcoeff=0.0, icoeff=1.0),
            adjoint=adjoint,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=100_000,
        )
        a = sol.ys[0][-1]
        return (a if name == "hbnode" else k(T1) * a), sol.stats

    def loss(p, x, y):
        h, stats = solve(p, x, TOL, diffrax.BacksolveAdjoint())
        out = jnp.tanh(h @ p["head.0.weight"].T + p["head.0.bias"]).reshape(-1)
        d = jnp.abs(out - y)
        return jnp.mean(jnp.where(d < 1.0, 0.5 * d**2, d - 0.5)), stats

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))

    def h_T(p, x, tol):
        return np.asarray(solve(p, x, tol, diffrax.RecursiveCheckpointAdjoint())[0])

    return grad, h_T


# -- the runs ------------------------------------------------------------------------------
def adam(params, grads, state, lr=LR, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on dicts of NumPy arrays (the diffrax run's optimiser, torch's formula)."""
    state["t"] = state.get("t", 0) + 1
    for k, g in grads.items():
        g = np.asarray(g)
        m = state.setdefault(("m", k), np.zeros_like(g)) * b1 + (1 - b1) * g
        v = state.setdefault(("v", k), np.zeros_like(g)) * b2 + (1 - b2) * g * g
        state[("m", k)], state[("v", k)] = m, v
        mh, vh = m / (1 - b1 ** state["t"]), v / (1 - b2 ** state["t"])
        params[k] = params[k] - lr * mh / (np.sqrt(vh) + eps)


def run_torch(step, model, x, y, epochs):
    opt = torch_adam(model.parameters(), LR)  # the training runs' Adam (fused on the CPU)
    times, nfe = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        for a, b in BATCHES:
            opt.zero_grad()
            loss, fwd, bwd = step(model, x[a:b], y[a:b])
            opt.step()
            nfe.append((fwd, bwd))
        times.append(time.perf_counter() - start)
    return times, nfe, loss


def run_diffrax(name, model, x, y, epochs):
    import jax

    grad, _ = diffrax_model(name, model)
    calls: list = []
    counting, h_T = diffrax_model(name, model, count=calls)
    params, state = jax_params(model), {}
    times, nfe = [], []
    xs, ys = np.asarray(x.numpy()), np.asarray(y.numpy())
    for _ in range(epochs):
        start = time.perf_counter()
        for a, b in BATCHES:
            (loss, _), grads = grad(params, xs[a:b], ys[a:b])
            adam(params, grads, state)
        times.append(time.perf_counter() - start)
        # NFE of the same batches at the weights reached, counted by a host callback
        for a, b in BATCHES:
            calls.clear()
            h_T(params, xs[a:b], TOL)
            jax.effects_barrier()
            forward = len(calls)
            calls.clear()
            counting(params, xs[a:b], ys[a:b])
            jax.effects_barrier()
            nfe.append((forward, len(calls) - forward))
    return times, nfe, float(loss)


def agreement(name, x) -> dict:
    """max |h(T) - h(T) of ours on rk| at tol 1e-12, per peer available."""
    out = {}
    ref = ours_hT(torch_model(name, 0, engine="rk"), x, 1e-12)
    out["torchdiffeq"] = float(
        np.abs(ours_hT(torch_model(name, 0, engine="torchdiffeq"), x, 1e-12) - ref).max()
    )
    if importlib.util.find_spec("torchode"):
        with torch.no_grad():
            h = torchode_model(name, 0, 1e-12).features(x).numpy()
        out["torchode"] = float(np.abs(h - ref).max())
    if importlib.util.find_spec("diffrax"):
        model = torch_model(name, 0)
        _, h_T = diffrax_model(name, model)
        out["diffrax"] = float(np.abs(h_T(jax_params(model), x.numpy(), 1e-12) - ref).max())
    return out


def summary(label, times, nfe, loss):
    # time and NFE over the same last epochs (at most 5, never the first: it compiles)
    last = max(1, min(5, len(times) - 1))
    per_epoch = float(np.mean(times[-last:]))
    fwd = float(np.mean([f for f, _ in nfe[-3 * last :]]))
    bwd = float(np.mean([b for _, b in nfe[-3 * last :]]))
    evals = 3 * (fwd + (0 if math.isnan(bwd) else bwd))
    return {
        "impl": label,
        "s/epoch": per_epoch,
        "nfe fwd": fwd,
        "nfe bwd": bwd,
        "us/eval": 1e6 * per_epoch / evals if not math.isnan(bwd) else math.nan,
        "compile s": max(0.0, times[0] - float(np.mean(times[1:] or times))),
        "final loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=["hbnode", "nesterovnode"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = data()
    results = {}
    for name in args.models:
        print(f"\n{name}: max |h(T) - h(T) on rk| at tol 1e-12: {agreement(name, x)}")
        rows = []
        for label, options in (
            ("ours, rk", {"engine": "rk"}),
            ("ours, rk compiled", {"engine": "rk", "options": {"compile": True}}),
            # the main job's setting: the first-step rule eager (its compile s: the steps
            # from the disk cache the row above filled)
            ("ours, rk steps", {"engine": "rk", "options": {"compile": "steps"}}),
            ("ours, torchdiffeq", {"engine": "torchdiffeq"}),
        ):
            m = torch_model(name, 0, **options)
            before = COMPILE_SECONDS["total"]
            rows.append(summary(label, *run_torch(torch_step, m, x, y, args.epochs)))
            if "options" in options:  # what the compiled runners measured themselves
                rows[-1]["compile s"] = COMPILE_SECONDS["total"] - before
        if importlib.util.find_spec("torchode"):
            m = torchode_model(name, 0, TOL)
            rows.append(summary("torchode", *run_torch(torch_step, m, x, y, args.epochs)))
        else:
            print("torchode is not installed: pip install -e '.[bench]'")
        if importlib.util.find_spec("diffrax"):
            rows.append(
                summary(
                    "diffrax (jit)",
                    *run_diffrax(name, torch_model(name, 0), x, y, args.epochs),
                )
            )
        else:
            print("diffrax is not installed: pip install -e '.[bench]'")
        base = rows[0]["s/epoch"]
        print(
            f"{'implementation':<22}{'s/epoch':>9}{'x rk':>7}{'NFE fwd':>9}{'NFE bwd':>9}"
            f"{'us/eval':>9}{'compile s':>10}{'loss':>9}"
        )
        for r in rows:
            print(
                f"{r['impl']:<22}{r['s/epoch']:>9.3f}{r['s/epoch'] / base:>7.2f}"
                f"{r['nfe fwd']:>9.1f}{r['nfe bwd']:>9.1f}{r['us/eval']:>9.0f}"
                f"{r['compile s']:>10.2f}{r['final loss']:>9.4f}"
            )
        results[name] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
