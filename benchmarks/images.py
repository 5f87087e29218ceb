"""Time one training iteration of the image models at the paper's settings.

One iteration is what training does per batch: forward (encoder, ODE solve, head, loss),
backward (the adjoint solve by default) and an Adam step. Defaults are the paper's MNIST
protocol: batch 64, Dormand–Prince 4(5) at rtol = atol = 1e-5, adjoint gradients, t in [1, 2].

    python benchmarks/images.py --device cuda --models node,hbnode,gnesterovnode --iters 5
    python benchmarks/images.py --device cpu --models nesterovnode --iters 2 --json out.json
    python benchmarks/images.py --device cuda --engine torchode --models nesterovnode

Engines: ours (``rk``, the default, with CUDA graphs on the GPU; ``torchdiffeq``, the
published code's solver) and the peer torchode (``benchmarks/torchode_peer.py``: Dopri5,
its integral controller, ``JointBacksolveAdjoint``, the whole batch as one sample). For
torchode, h(T) is first compared with ours on four images in float64 at tol 1e-10, where
the solutions themselves are good to about 5e-8 (rk at 1e-10 against rk at 1e-12 on
MNIST): a difference of that size says both solve the same system.

Reported per model, averaged over the timed iterations (after ``--warmup`` untimed ones):
seconds per iteration and images per second; forward/backward NFE per batch (from
``model.stats``, counted by the solve layer); the forward and backward wall times; and the
share of that time spent inside the ODE network f.

How f is timed: the network is wrapped by ``FieldTimer``, which brackets every call of f
(its forward) and every backward through f. The backward is bracketed by tensor hooks: one
on f's output fires when the gradient reaches it (f's backward starts), one on f's input
fires when the gradient w.r.t. the input is complete (f's backward, including its weight
gradients, is done). On CUDA the brackets are CUDA events recorded on the current stream
(no synchronisation inside the iteration: events are read after the iteration's final
synchronize); on CPU they are ``time.perf_counter`` readings. Calls are attributed to the
phase they run in: "forward" (the forward solve) or "backward" (in an adjoint backward
pass, f is re-evaluated and differentiated at every stage; with ``--sensitivity backprop``
only differentiated). The rest of the time is the solver proper (stage combinations, error
norms, step-size control and its host round trips), the dynamics' own arithmetic around f
(stacking [x, m], k(t), ...), encoder, head, loss and the autograd/Python overhead.

No synthetic data is needed beyond MNIST's shape: with ``--data-dir`` the batches come from
the real MNIST (or CIFAR-10 with ``--task cifar10``), otherwise uniform random images with
random labels (NFE on random images differs from NFE on digits). Batches are moved to the
device before timing starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torchode_peer import TorchodeBlock  # benchmarks/torchode_peer.py

from nesterovnode.solve.engines.rk.programs.runners import GraphRunner
from nesterovnode.solve.fields import AugmentedField
from nesterovnode.tasks import MODEL_NAMES, count_parameters, get_task


class PhaseClock:
    """Brackets of time per phase: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.phase = "forward"
        self.pairs: dict[str, list] = {"forward": [], "backward": []}

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def add(self, start, end, phase: str | None = None) -> None:
        self.pairs[phase or self.phase].append((start, end))

    def seconds(self, phase: str) -> float:
        """Total bracketed time of ``phase``; on CUDA call after a synchronize."""
        if self.cuda:
            return sum(s.elapsed_time(e) for s, e in self.pairs[phase]) / 1000.0
        return sum(e - s for s, e in self.pairs[phase])

    def reset(self) -> None:
        self.pairs = {"forward": [], "backward": []}


class FieldTimer(nn.Module):
    """Wraps the ODE network f(t, h) and records how long its calls and backwards take."""

    def __init__(self, inner: nn.Module, clock: PhaseClock):
        super().__init__()
        self.inner = inner
        self.clock = clock

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        clock = self.clock
        start = clock.mark()
        out = self.inner(t, h)
        clock.add(start, clock.mark())
        if out.requires_grad and h.requires_grad:
            phase = "backward"  # a backward through f always runs in the backward phase
            marks: list = []
            out.register_hook(lambda grad: marks.append(clock.mark()))

            def done(grad):
                if marks:
                    clock.add(marks.pop(), clock.mark(), phase)

            h.register_hook(done)
        return out


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here (use --device cpu)")
    return torch.device(name)


def make_batches(task, args, device, count: int):
    """``count`` (x, y) batches on ``device``: real data from --data-dir, else random."""
    g = torch.Generator().manual_seed(args.seed)
    if args.data_dir:
        from torch.utils.data import DataLoader

        train, _ = task.datasets(seed=args.seed, data_dir=args.data_dir)
        loader = DataLoader(
            train, batch_size=args.batch_size, shuffle=True, drop_last=True, generator=g
        )
        batches = []
        while len(batches) < count:
            for x, y in loader:
                batches.append((x.to(device), y.to(device)))
                if len(batches) == count:
                    break
        return batches, "real"
    shape = task.input_shape()
    return [
        (
            torch.rand(args.batch_size, *shape, generator=g).to(device),
            torch.randint(0, 10, (args.batch_size,), generator=g).to(device),
        )
        for _ in range(count)
    ], "random"


class ShapeProbe(nn.Module):
    """Wraps f and remembers the (t, h) of its first call; adds nothing to a captured
    graph (used instead of ``FieldTimer`` when steps are CUDA graphs, where a Python
    wrapper runs only at capture)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.example: tuple | None = None

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.example is None:
            self.example = (t.detach().clone(), h.detach().clone())
        return self.inner(t, h)


class ChannelsLast(nn.Module):
    """Runs the ODE network f in the channels-last memory format (NHWC, the layout cuDNN's
    tensor-core convolutions use natively); state in and out stay in the default layout."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.to(memory_format=torch.channels_last)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = self.inner(t, h.contiguous(memory_format=torch.channels_last))
        return out.contiguous()


def graphed_network_seconds(f: nn.Module, example, reps: int = 50) -> tuple[float, float]:
    """Seconds of one evaluation of f, and of one evaluation with its vector-Jacobian
    product (w.r.t. h and f's parameters, as the rk engine's adjoint takes it), each
    captured by the rk engine's ``GraphRunner`` and replayed: the network's own cost with
    no launch overhead, which the graphed solver also pays per NFE."""
    t, h = example
    field = AugmentedField(f)  # the one vector–Jacobian product of the solve layer
    # a fixed cotangent (no random numbers: the generator must not advance here)
    a = torch.linspace(-1.0, 1.0, h.numel(), device=h.device, dtype=h.dtype).view_as(h)

    def forward_only():
        with torch.no_grad():
            return f(t, h)

    def with_vjp():
        return field.vjp(t, h, a)

    seconds = []
    for fn in (forward_only, with_vjp):
        runner = GraphRunner(fn, (), h.dtype, h.device)
        runner()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            runner()
        end.record()
        torch.cuda.synchronize()
        seconds.append(start.elapsed_time(end) / 1e3 / reps)
    return seconds[0], seconds[1]


def build(name: str, task, args, device, tol: float | None = None) -> nn.Module:
    """The task's model ``name`` on ``device``, its block solved by the chosen engine
    (``--engine torchode``: the peer, ``TorchodeBlock``) at rtol = atol = ``tol`` (default
    ``--tol``), from the seed's weights."""
    torch.manual_seed(args.seed)
    tol = tol or args.tol
    peer = args.engine == "torchode"
    options = {} if args.cuda_graphs is None else {"cuda_graphs": args.cuda_graphs == "on"}
    if args.graph_chunk:
        options["graph_chunk"] = args.graph_chunk
    model = task.build_model(
        name,
        rtol=tol,
        atol=tol,
        sensitivity="adjoint" if peer else args.sensitivity,
        engine=None if peer else args.engine,
        options=None if peer or not options else options,
    )
    if peer:
        model.block = TorchodeBlock(model.block, tol, adjoint=args.sensitivity != "backprop")
    return model.to(device)


def torchode_agreement(name: str, task, args, device, tol: float = 1e-10) -> float:
    """max |h(T) by torchode - h(T) by ours (rk)| on four images of the first batch, in
    float64 at rtol = atol = ``tol``, from the same weights: the check that both solve
    the same system before their times are compared."""
    x = make_batches(task, args, device, 1)[0][0][0][:4].double()
    ours = build(name, task, argparse.Namespace(**{**vars(args), "engine": "rk"}), device, tol)
    peer = build(name, task, args, device, tol)
    with torch.no_grad():
        return float((peer.double().features(x) - ours.double().features(x)).abs().max())


def bench_model(name: str, task, args, device) -> dict:
    peer = args.engine == "torchode"
    # the peer must solve our system before its time means anything
    agreement = torchode_agreement(name, task, args, device) if peer else None
    model = build(name, task, args, device)
    clock = PhaseClock(device)
    dyn = model.dynamics
    f = dyn.f
    if args.channels_last:
        f = ChannelsLast(f)
    if args.compile:
        f = torch.compile(f)
    engine = "torchode" if peer else model.block.config.resolve().engine.name
    graphed = (
        device.type == "cuda"
        and engine == "rk"
        and args.cuda_graphs != "off"
        and args.sensitivity != "backprop"
    )
    probe, network_ms = None, {}
    if graphed:
        dyn.f = probe = ShapeProbe(f)
    else:
        dyn.f = FieldTimer(f, clock)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr or task.defaults.lr)
    batches, source = make_batches(task, args, device, args.warmup + args.iters)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rows = []
    for i, (x, y) in enumerate(batches):
        clock.reset()
        sync()
        t0 = clock.mark()
        clock.phase = "forward"
        opt.zero_grad(set_to_none=True)
        loss = task.loss_fn(model(x), y)
        t1 = clock.mark()
        clock.phase = "backward"
        loss.backward()
        t2 = clock.mark()
        opt.step()
        t3 = clock.mark()
        sync()
        stats = model.stats
        if device.type == "cuda":
            fwd, bwd, step = (
                t0.elapsed_time(t1) / 1e3,
                t1.elapsed_time(t2) / 1e3,
                t2.elapsed_time(t3) / 1e3,
            )
        else:
            fwd, bwd, step = t1 - t0, t2 - t1, t3 - t2
        if i < args.warmup:
            continue
        rows.append(
            {
                "fwd": fwd,
                "bwd": bwd,
                "step": step,
                "total": fwd + bwd + step,
                "f_fwd": clock.seconds("forward"),
                "f_bwd": clock.seconds("backward"),
                "nfe_forward": stats.nfe_forward,
                "nfe_backward": stats.nfe_backward,
                "loss": float(loss.detach()),
            }
        )

    def mean(key):
        return sum(r[key] for r in rows) / len(rows)

    if probe is not None:
        # Inside graphs f cannot be bracketed: its share is estimated as NFE times the
        # cost of f (forward; with its VJP in the backward) replayed alone as a graph.
        f_one, f_vjp = graphed_network_seconds(probe.inner, probe.example)
        network_ms = {"f_ms": 1e3 * f_one, "f_with_vjp_ms": 1e3 * f_vjp}
        for r in rows:
            r["f_fwd"] = r["nfe_forward"] * f_one
            r["f_bwd"] = r["nfe_backward"] * f_vjp
    total = mean("total")
    fb = mean("fwd") + mean("bwd")
    f_time = mean("f_fwd") + mean("f_bwd")
    return {
        "model": name,
        "engine": engine,
        "h_T_vs_rk": agreement,
        "cuda_graphs": graphed,
        "graph_chunk": args.graph_chunk if graphed else 0,
        "f_share_method": "NFE x graphed f alone" if graphed else "timed calls",
        **network_ms,
        "params": count_parameters(model),
        "data": source,
        "s_per_iter": total,
        "images_per_s": args.batch_size / total,
        "nfe_forward": mean("nfe_forward"),
        "nfe_backward": mean("nfe_backward"),
        "forward_s": mean("fwd"),
        "backward_s": mean("bwd"),
        "step_s": mean("step"),
        "f_forward_s": mean("f_fwd"),
        "f_backward_s": mean("f_bwd"),
        "f_share_forward": mean("f_fwd") / mean("fwd") if mean("fwd") else float("nan"),
        "f_share_backward": mean("f_bwd") / mean("bwd") if mean("bwd") else float("nan"),
        "f_share": f_time / fb if fb else float("nan"),
        "iterations": rows,
    }


def environment(device: torch.device, args) -> dict:
    env = {
        "torch": torch.__version__,
        "device": str(device),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "task": args.task,
        "batch_size": args.batch_size,
        "tol": args.tol,
        "sensitivity": args.sensitivity,
        "engine": args.engine,
        "cuda_graphs": args.cuda_graphs,
        "graph_chunk": args.graph_chunk,
        "compile": args.compile,
        "channels_last": args.channels_last,
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def print_table(results: list[dict], env: dict) -> None:
    print(
        f"\n{env['task']} on {env['device']} ({env['device_name']}), batch {env['batch_size']}, "
        f"DP5 tol {env['tol']:g}, {env['sensitivity']}, engine {env['engine'] or 'task default'}, "
        f"torch {env['torch']}"
        + (
            f", tf32 conv={env['tf32_cudnn']} matmul={env['tf32_matmul']}"
            if "tf32_cudnn" in env
            else f", {env['threads']} threads"
        )
    )
    head = (
        f"{'model':<14}{'engine':>9}{'params':>8}{'s/iter':>9}{'img/s':>9}{'NFE f':>7}{'NFE b':>7}"
        f"{'fwd s':>8}{'bwd s':>8}{'f% fwd':>8}{'f% bwd':>8}{'f% all':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        engine = r["engine"] + ("+g" if r["cuda_graphs"] else "")
        if r.get("graph_chunk"):
            engine += str(r["graph_chunk"])
        print(
            f"{r['model']:<14}{engine:>9}{r['params']:>8}{r['s_per_iter']:>9.3f}"
            f"{r['images_per_s']:>9.1f}"
            f"{r['nfe_forward']:>7.1f}{r['nfe_backward']:>7.1f}{r['forward_s']:>8.3f}"
            f"{r['backward_s']:>8.3f}{100 * r['f_share_forward']:>7.1f}%"
            f"{100 * r['f_share_backward']:>7.1f}%{100 * r['f_share']:>7.1f}%"
        )
    for r in results:
        if r.get("h_T_vs_rk") is not None:
            print(
                f"{r['model']}: h(T) by torchode against ours (rk), float64, tol 1e-10, four "
                f"images: max difference {r['h_T_vs_rk']:.2e}"
            )
        if "f_ms" in r:
            print(
                f"{r['model']}: f alone, replayed as a graph: {r['f_ms']:.3f} ms, "
                f"with its VJP {r['f_with_vjp_ms']:.3f} ms"
            )
    print(
        "f%: share of forward / backward / forward+backward wall time spent inside the ODE "
        "network f (calls and their backward); the rest is solver, dynamics arithmetic, "
        "encoder/head and overhead. Engine +g: steps replayed as CUDA graphs; there f% is "
        "estimated as NFE x the cost of f (with its VJP in the backward) replayed alone."
    )


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="mnist", choices=["mnist", "cifar10"])
    p.add_argument(
        "--models",
        default="node,hbnode,nesterovnode",
        help=f"comma-separated, from {','.join(MODEL_NAMES)} (or 'all')",
    )
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--iters", type=int, default=3, help="timed iterations per model")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    p.add_argument("--batch-size", type=int, default=None, help="default: the task's (MNIST 64)")
    p.add_argument("--tol", type=float, default=None, help="rtol = atol; default: 1e-5")
    p.add_argument(
        "--sensitivity", default="adjoint", choices=["adjoint", "adjoint-seminorm", "backprop"]
    )
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--data-dir",
        default=None,
        help="read real batches from here (else random images of the task's shape)",
    )
    p.add_argument(
        "--engine",
        default=None,
        help="solver engine: rk or torchdiffeq (default: rk), or the peer torchode (Dopri5, "
        "integral controller, JointBacksolveAdjoint; benchmarks/torchode_peer.py)",
    )
    p.add_argument(
        "--cuda-graphs",
        choices=["on", "off"],
        default=None,
        help="rk engine: replay steps as CUDA graphs (default on, on CUDA)",
    )
    p.add_argument(
        "--graph-chunk",
        type=int,
        default=0,
        metavar="K",
        help="rk engine with CUDA graphs: K attempts per graph, the step-size control on the "
        "device (one host read per K attempts); 0 (default): one step per graph",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the ODE network f")
    p.add_argument(
        "--channels-last", action="store_true", help="run f in the channels-last memory format"
    )
    p.add_argument(
        "--tf32",
        choices=["on", "off"],
        default=None,
        help="TF32 for CUDA convolutions and matmuls (default: PyTorch's defaults)",
    )
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)

    task = get_task(args.task)
    args.batch_size = args.batch_size or task.defaults.batch_size
    args.tol = args.tol or task.defaults.tol
    if args.iters < 1 or args.warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    models = (
        list(MODEL_NAMES)
        if args.models == "all"
        else [m.strip().lower() for m in args.models.split(",")]
    )
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        p.error(f"unknown models {bad}; valid: {', '.join(MODEL_NAMES)}")
    if args.engine == "torchode":
        if importlib.util.find_spec("torchode") is None:
            p.error('--engine torchode: torchode is not installed (pip install -e ".[bench]")')
        if args.sensitivity == "adjoint-seminorm":
            p.error("--engine torchode: torchode has no seminorm adjoint (use adjoint)")
    device = pick_device(args.device)
    if args.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True

    env = environment(device, args)
    results = []
    for name in models:
        print(f"{name}: {args.warmup} warm-up + {args.iters} timed iterations ...", flush=True)
        results.append(bench_model(name, task, args, device))
    print_table(results, env)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"environment": env, "results": results}, indent=2))
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
