"""The library against its peers on the point-cloud protocol, from the same data and weights.

Protocol: the paper's point cloud (120 points), HBNODE and NesterovNODE with the paper's
architectures, float64, DP5 at rtol = atol = 1e-7 over t in [1, 2], a continuous
(backsolve) adjoint, Adam at 1e-2, batches of 50/50/20 in a fixed order, the same initial
weights everywhere. Implementations:

- ours, each in-process engine (``rk``; ``rk`` compiled: each solve one compiled
  program, or compiled steps called from the host's loop, or the adaptive steps only;
  ``torchdiffeq``), sensitivity ``adjoint``; the compile time is what the compiled
  runners measured (run with a fresh ``TORCHINDUCTOR_CACHE_DIR`` for a cold cache, then
  again for a warm one);
- torchode (``JointBacksolveAdjoint``, ``Dopri5``, ``IntegralController``), the whole batch
  as one sample (one step size, as ours);
- diffrax (JAX, jit; ``Dopri5``, ``PIDController`` as an integral controller,
  ``BacksolveAdjoint``), the networks rebuilt in JAX from the torch weights.

First h(T) is checked to agree across them at tolerance 1e-12 (from the same weights);
then each trains ``--epochs`` epochs, the implementations taking turns epoch by epoch (so
that the machine's drifts in speed fall on all alike). The table gives, over the same last
epochs (at most 10; never the first, which compiles), the median s/epoch and µs per
evaluation (wall time, and CPU time: every thread's, JAX's computing on more than one
core when it can), forward/backward NFE per batch (torchode and ours: the calls f observes;
diffrax: the calls its field makes, through a host callback in an untimed pass), compile
time (diffrax: the first epoch's extra time) and the ratio to the first implementation;
then ours compiled over each peer, µs per evaluation, CPU time and s/epoch, epoch by
epoch (median and range). ``--cores N`` pins the process to N cores. ``--alone R`` runs
each implementation alone in a process of its own instead, R rounds in turns, and gives
the ratios round by round: an epoch of a few milliseconds that follows another
implementation's in the same process starts from the state that one left in the CPU's
caches (``alone``).
Peers missing here are skipped with a message (``pip install -e ".[bench]"``). No
assertions: timings depend on the machine.

    python benchmarks/peers.py [--epochs 10] [--models hbnode nesterovnode]
                               [--impls rk "rk compiled" ... diffrax] [--cores N]
                               [--alone ROUNDS] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time

import numpy as np
import torch
from torchode_peer import TorchodeBlock  # benchmarks/torchode_peer.py

from nesterovnode.io import write_json_atomic
from nesterovnode.runs.training import adam as torch_adam
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
    """One batch's loss and backward; (loss, NFE forward, NFE backward, seconds compiling)
    from ``model.stats`` (ours, and torchode's block, which compiles nothing)."""
    out = model(x)
    loss = torch.nn.functional.smooth_l1_loss(out.reshape(-1), y)
    loss.backward()
    s = model.stats
    return loss.item(), s.nfe_forward, s.nfe_backward, getattr(s, "compile_seconds", 0.0)


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


def diffrax_args(params: dict) -> dict:
    """The dynamics' parameters only, as ours: diffrax's ``BacksolveAdjoint`` integrates a
    gradient for every array in ``args``, and the encoder's and head's, zero throughout,
    would dilute the RMS of its error norm (HBNODE: 43.0 backward NFE per batch instead
    of 44.6)."""
    return {k: v for k, v in params.items() if k.startswith("block.dynamics.")}


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
            args=diffrax_args(p),
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


class Run:
    """One implementation's training, an epoch at a time (``epoch``), so that the
    implementations take turns epoch by epoch: each one's epoch k is timed in the same
    stretch of the machine's time as the others' (this machine's speed drifts by 10-50 %
    over minutes, as much as the differences measured). Per epoch: ``times`` (seconds of
    the timed batches), ``cpu`` (the process's CPU seconds in them: every thread's, so a
    run that computes on more than one core shows more CPU than wall time), ``nfe``
    ((forward, backward) per batch), ``compile`` (seconds the compiled runners booked),
    ``loss`` (the last batch's)."""

    jit = False  #: compiles in its first epoch without booking it in its solves' stats

    def __init__(self, label: str):
        self.label = label
        self.impl = ""  #: its key in OURS or PEERS (``runs_of``)
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.nfe: list[list[tuple[float, float]]] = []
        self.compile: list[float] = []
        self.compiling = 0.0  #: seconds the current epoch's solves spent compiling
        self.loss = math.nan

    def epoch(self) -> None:
        self.compiling = 0.0
        seconds, cpu, nfe = self._epoch()
        self.times.append(seconds)
        self.cpu.append(cpu)
        self.nfe.append(nfe)
        self.compile.append(self.compiling)

    def _epoch(self) -> tuple[float, float, list[tuple[float, float]]]:
        """(wall seconds, CPU seconds, NFE per batch) of one epoch's timed batches."""
        raise NotImplementedError


class TorchRun(Run):
    """Ours on an engine, or torchode's block: ``torch_step`` per batch, the training
    runs' Adam (fused on the CPU)."""

    def __init__(self, label: str, model, x, y):
        super().__init__(label)
        self.model, self.x, self.y = model, x, y
        self.opt = torch_adam(model.parameters(), LR)

    def _epoch(self):
        nfe, start, cpu = [], time.perf_counter(), time.process_time()
        for a, b in BATCHES:
            self.opt.zero_grad()
            self.loss, fwd, bwd, compiling = torch_step(self.model, self.x[a:b], self.y[a:b])
            self.opt.step()
            self.compiling += compiling
            nfe.append((fwd, bwd))
        return time.perf_counter() - start, time.process_time() - cpu, nfe


class DiffraxRun(Run):
    """diffrax's jitted value and gradient per batch and NumPy Adam; the NFE of the same
    batches at the weights reached, counted by a host callback after the timed part."""

    jit = True

    def __init__(self, name: str, model, x, y):
        super().__init__("diffrax (jit)")
        self.grad, _ = diffrax_model(name, model)
        self.calls: list = []
        self.counting, self.h_T = diffrax_model(name, model, count=self.calls)
        self.params, self.state = jax_params(model), {}
        self.x, self.y = np.asarray(x.numpy()), np.asarray(y.numpy())

    def _epoch(self):
        import jax

        start, cpu = time.perf_counter(), time.process_time()
        for a, b in BATCHES:
            (loss, _), grads = self.grad(self.params, self.x[a:b], self.y[a:b])
            adam(self.params, grads, self.state)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        self.loss, nfe = float(loss), []
        for a, b in BATCHES:
            self.calls.clear()
            self.h_T(self.params, self.x[a:b], TOL)
            jax.effects_barrier()
            forward = len(self.calls)
            self.calls.clear()
            self.counting(self.params, self.x[a:b], self.y[a:b])
            jax.effects_barrier()
            nfe.append((forward, len(self.calls) - forward))
        return seconds, cpu, nfe


def interleaved(runs: list[Run], epochs: int) -> None:
    """``epochs`` epochs of every run, taking turns epoch by epoch."""
    for _ in range(epochs):
        for run in runs:
            run.epoch()


def agreement(name, x, impls=("torchdiffeq", "torchode", "diffrax")) -> dict:
    """max |h(T) - h(T) of ours on rk| at tol 1e-12, per implementation of ``impls``
    that is not rk and is available."""
    out = {}
    ref = ours_hT(torch_model(name, 0, engine="rk"), x, 1e-12)
    if "torchdiffeq" in impls:
        h = ours_hT(torch_model(name, 0, engine="torchdiffeq"), x, 1e-12)
        out["torchdiffeq"] = float(np.abs(h - ref).max())
    if "torchode" in impls and importlib.util.find_spec("torchode"):
        with torch.no_grad():
            h = torchode_model(name, 0, 1e-12).features(x).numpy()
        out["torchode"] = float(np.abs(h - ref).max())
    if "diffrax" in impls and importlib.util.find_spec("diffrax"):
        model = torch_model(name, 0)
        _, h_T = diffrax_model(name, model)
        out["diffrax"] = float(np.abs(h_T(jax_params(model), x.numpy(), 1e-12) - ref).max())
    return out


def timed_epochs(epochs: int) -> int:
    """How many of the last epochs the table is measured over: at most 10, never the
    first (it compiles)."""
    return max(1, min(10, epochs - 1))


def per_evaluation(run: Run, last: int, cpu: bool = False) -> np.ndarray:
    """µs per function evaluation (forward and backward) in each of the ``last`` epochs:
    wall time, or with ``cpu`` the process's CPU time (all its threads)."""
    out = []
    for seconds, nfe in zip((run.cpu if cpu else run.times)[-last:], run.nfe[-last:]):
        evals = sum(f + b for f, b in nfe)
        out.append(1e6 * seconds / evals if evals > 0 else math.nan)
    return np.array(out)


def summary(run: Run, last: int) -> dict:
    """The table's row of ``run`` over its ``last`` epochs: medians of s/epoch and µs per
    evaluation (robust to the machine's hiccups), mean NFE per batch, compile seconds
    (the compiled runners' own count; a jit: its first epoch's extra time over the
    median), the final loss."""
    per_epoch = float(np.median(run.times[-last:]))
    batches = [b for epoch in run.nfe[-last:] for b in epoch]
    compiled = sum(run.compile)
    if run.jit:  # traced and compiled in its first epoch
        compiled = max(0.0, run.times[0] - per_epoch)
    return {
        "impl": run.label,
        "s/epoch": per_epoch,
        "nfe fwd": float(np.mean([f for f, _ in batches])),
        "nfe bwd": float(np.mean([b for _, b in batches])),
        "us/eval": float(np.median(per_evaluation(run, last))),
        "cpu us/eval": float(np.median(per_evaluation(run, last, cpu=True))),
        "compile s": compiled,
        "final loss": run.loss,
    }


def ratio_per_epoch(
    a: Run, b: Run, last: int, cpu: bool = False, per: str = "evaluation"
) -> tuple[float, float, float]:
    """(median, lowest, highest) over the ``last`` epochs of ``a``'s µs per evaluation
    over ``b``'s, epoch by epoch (each pair timed in the same stretch of time); with
    ``cpu``, of CPU time; with ``per="epoch"``, of the epochs' wall time (what a user
    waits for: fewer evaluations count as well)."""
    if per == "epoch":
        r = np.array(a.times[-last:]) / np.array(b.times[-last:])
    else:
        r = per_evaluation(a, last, cpu) / per_evaluation(b, last, cpu)
    return spread(r)


SPREAD = ("median", "min", "max")


def spread(ratios: np.ndarray) -> tuple[float, float, float]:
    """(median, lowest, highest) of ``ratios`` (epoch by epoch, or round by round)."""
    return float(np.median(ratios)), float(ratios.min()), float(ratios.max())


def spread_text(median_min_max) -> str:
    """A ``spread`` (tuple, or dict keyed by ``SPREAD``) as "median (lowest-highest)"."""
    if isinstance(median_min_max, dict):
        median_min_max = [median_min_max[k] for k in SPREAD]
    median, lo, hi = median_min_max
    return f"{median:.2f} ({lo:.2f}-{hi:.2f})"


OURS = {
    "rk": {"engine": "rk"},
    "rk compiled": {"engine": "rk", "options": {"compile": True}},
    # the main job's setting: the first-step rule eager (its compile s: the steps from
    # the disk cache that "rk compiled" filled in the same first epoch)
    "rk steps": {"engine": "rk", "options": {"compile": "steps"}},
    # the compiled steps called one by one from the host's loop (the sixth pass's)
    "rk compiled, host loop": {"engine": "rk", "options": {"compile": True, "loop": "host"}},
    "torchdiffeq": {"engine": "torchdiffeq"},
}
PEERS = ("torchode", "diffrax")


def runs_of(name: str, x, y, impls) -> list[Run]:
    """The runs of model ``name`` for the implementations ``impls`` (keys of ``OURS``
    and ``PEERS``), each from the same initial weights; peers not installed are skipped
    with a message."""
    runs: list[Run] = []
    for impl in impls:
        if impl in OURS:
            run = TorchRun(f"ours, {impl}", torch_model(name, 0, **OURS[impl]), x, y)
        elif not importlib.util.find_spec(impl):
            print(f"{impl} is not installed: pip install -e '.[bench]'")
            continue
        elif impl == "torchode":
            run = TorchRun("torchode", torchode_model(name, 0, TOL), x, y)
        else:
            run = DiffraxRun(name, torch_model(name, 0), x, y)
        run.impl = impl
        runs.append(run)
    return runs


def impl_pairs(impls: list[str]) -> list[tuple[str, str]]:
    """The implementations compared: the first (the table's base) against each other,
    then each of our compiled ones against each peer."""
    pairs = [(impls[0], i) for i in impls[1:]]
    compiled = [i for i in impls if OURS.get(i, {}).get("options", {}).get("compile")]
    peers = [i for i in impls if i in PEERS]
    pairs += [(a, b) for a in compiled for b in peers if (a, b) not in pairs]
    return pairs


def ratio_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """The runs compared epoch by epoch (``impl_pairs``)."""
    by_impl = {run.impl: run for run in runs}
    return [(by_impl[a], by_impl[b]) for a, b in impl_pairs([run.impl for run in runs])]


def alone(args) -> dict:
    """``--alone R``: each implementation in a process of its own, alone on the machine,
    in R rounds that take turns implementation by implementation (a round's runs fall
    in the same stretch of the machine's time). Nothing of one implementation is left in
    the next one's process or caches, as when a user trains one model: in one process,
    taking turns epoch by epoch, an epoch of a few milliseconds starts where the other
    implementation left the CPU's caches and the allocator (ours compiled: 32 µs per
    evaluation alone, 37-43 right after a diffrax epoch; benchmarks/PERFORMANCE-history.md,
    ninth pass)."""
    import subprocess
    import sys
    import tempfile

    per_round: dict[str, list[dict]] = {impl: [] for impl in args.impls}
    for r in range(args.alone):
        for impl in args.impls:
            with tempfile.TemporaryDirectory() as folder:
                out = os.path.join(folder, "run.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--epochs", str(args.epochs)]
                cmd += ["--models", *args.models, "--impls", impl, "--json", out]
                cmd += ["--cores", str(args.cores)] if args.cores else []
                cmd += ["--no-agreement"] if r > 0 else []  # the solutions agree: once
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                with open(out) as fh:
                    per_round[impl].append(json.load(fh))
            print(f"round {r + 1}/{args.alone}: {impl} done", flush=True)
    return rounds_summary(per_round, args.models)


def rounds_summary(per_round: dict[str, list[dict]], models: list[str]) -> dict:
    """The table of ``alone``'s rounds (``per_round[impl]``: each round's results of one
    implementation alone): the h(T) agreement its first round checked; per
    implementation the median over rounds of its s/epoch and
    µs per evaluation, its NFE and loss, compile seconds in the first and the last round;
    then the ratios round by round (median and range over rounds) of s/epoch (what a user
    waits for: fewer evaluations count) and of µs per evaluation."""
    results = {}
    for name in models:
        rows, agree = {}, {}
        for impl, rounds in per_round.items():
            got = [r[name]["rows"][0] for r in rounds if r[name]["rows"]]
            if got:
                rows[impl] = got
                agree.update(rounds[0][name].get("agreement", {}))  # its first round's
        count = max(len(rounds) for rounds in per_round.values())
        print(f"\n{name}: max |h(T) - h(T) on rk| at tol 1e-12: {agree}")
        print(f"each implementation alone in its process, {count} rounds")
        print(
            f"{'implementation':<30}{'s/epoch':>9}{'us/eval':>9}{'cpu us':>8}{'NFE fwd':>9}"
            f"{'NFE bwd':>9}{'compile s':>14}{'loss':>9}"
        )
        table = {}
        for impl, got in rows.items():
            row = {
                key: float(np.median([g[key] for g in got]))
                for key in ("s/epoch", "us/eval", "cpu us/eval", "nfe fwd", "nfe bwd")
            }
            row["compile s"] = [got[0]["compile s"], got[-1]["compile s"]]
            row["final loss"] = got[-1]["final loss"]
            table[impl] = row
            print(
                f"{got[0]['impl']:<30}{row['s/epoch']:>9.4f}{row['us/eval']:>9.1f}"
                f"{row['cpu us/eval']:>8.1f}{row['nfe fwd']:>9.1f}{row['nfe bwd']:>9.1f}"
                f"{row['compile s'][0]:>7.1f}/{row['compile s'][1]:<6.1f}"
                f"{row['final loss']:>9.4f}"
            )
        ratios = {}
        for a, b in impl_pairs(list(rows)):
            ratio = {}
            for key in ("s/epoch", "us/eval"):
                r = np.array([x[key] for x in rows[a]]) / np.array([y[key] for y in rows[b]])
                ratio[key] = dict(zip(SPREAD, spread(r)))
            ratios[f"{a} / {b}"] = ratio
            print(
                f"{a} / {b}, round by round: s/epoch {spread_text(ratio['s/epoch'])}; "
                f"µs per evaluation {spread_text(ratio['us/eval'])}"
            )
        results[name] = {"agreement": agree, "rows": table, "ratios": ratios}
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=["hbnode", "nesterovnode"])
    parser.add_argument(
        "--impls",
        nargs="+",
        default=[*OURS, *PEERS],
        choices=[*OURS, *PEERS],
        help="the implementations to run (default: all; the first is the ratios' base)",
    )
    parser.add_argument(
        "--cores",
        type=int,
        help="run on this many cores (the process pinned to them; default: all): JAX "
        "computes on more than one when it can, ours and torchode on one thread",
    )
    parser.add_argument(
        "--alone",
        type=int,
        metavar="ROUNDS",
        help="run each implementation alone in a process of its own, ROUNDS rounds in "
        "turns, instead of taking turns epoch by epoch in one process",
    )
    parser.add_argument("--json", help="write the results here")
    # --alone's later rounds: the h(T) check of its first round stands for them
    parser.add_argument("--no-agreement", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    print(f"cores: {len(os.sched_getaffinity(0))} (torch: 1 thread)")
    results = alone(args) if args.alone else in_turns(args)
    if args.json:
        write_json_atomic(args.json, results)
    return results


def in_turns(args) -> dict:
    """The implementations taking turns epoch by epoch in this process: the table and the
    ratios epoch by epoch, per model."""
    torch.set_num_threads(1)
    x, y = data()
    results = {}
    last = timed_epochs(args.epochs)
    for name in args.models:
        agree = {} if args.no_agreement else agreement(name, x, args.impls)
        print(f"\n{name}: max |h(T) - h(T) on rk| at tol 1e-12: {agree}")
        runs = runs_of(name, x, y, args.impls)
        interleaved(runs, args.epochs)
        rows = [summary(run, last) for run in runs]
        base = rows[0]["s/epoch"]
        print(
            f"epochs {args.epochs - last + 1}-{args.epochs} (medians; the implementations "
            f"took turns epoch by epoch)"
        )
        print(
            f"{'implementation':<30}{'s/epoch':>9}{'x base':>7}{'NFE fwd':>9}{'NFE bwd':>9}"
            f"{'us/eval':>9}{'cpu us':>8}{'compile s':>10}{'loss':>9}"
        )
        for r in rows:
            print(
                f"{r['impl']:<30}{r['s/epoch']:>9.3f}{r['s/epoch'] / base:>7.2f}"
                f"{r['nfe fwd']:>9.1f}{r['nfe bwd']:>9.1f}{r['us/eval']:>9.0f}"
                f"{r['cpu us/eval']:>8.0f}"
                f"{r['compile s']:>10.2f}{r['final loss']:>9.4f}"
            )
        ratios = {}
        for a, b in ratio_pairs(runs):
            wall = ratio_per_epoch(a, b, last)
            cpu = ratio_per_epoch(a, b, last, cpu=True)
            epoch = ratio_per_epoch(a, b, last, per="epoch")
            ratios[f"{a.label} / {b.label}"] = {
                **dict(zip(SPREAD, wall)),
                "cpu": dict(zip(SPREAD, cpu)),
                "epoch": dict(zip(SPREAD, epoch)),
            }
            print(
                f"{a.label} / {b.label}, µs per evaluation epoch by epoch: "
                f"{spread_text(wall)}; CPU time: {spread_text(cpu)}; s/epoch: "
                f"{spread_text(epoch)}"
            )
        results[name] = {"agreement": agree, "rows": rows, "ratios": ratios}
    return results


if __name__ == "__main__":
    main()
