"""Check the rk engine's CUDA-graph path against its eager path and torchdiffeq, on a GPU.

For each model, one MNIST-shaped batch (real with ``--data-dir``, else random) goes
through the paper's architecture three times — rk engine with CUDA graphs, rk engine
eager, the torchdiffeq engine — at DP5, rtol = atol = 1e-5, adjoint. Printed: the
forward/backward NFE of each and the largest relative difference of the loss and of the
parameter gradients (graph vs eager: same operations, so equal up to the order of
floating-point reductions; rk vs torchdiffeq: same method and step control, so close at
the tolerance). The graph is replayed on a second batch too, and checked the same way;
so are graphs of ``--graph-chunk`` attempts each (the step-size control on the device).
Exit status 1 when graph and eager disagree (NFE differ, or a relative difference above
``--rtol``) or when a capture fell back to eager; prints GRAPHS_OK otherwise.

    python benchmarks/graph_check.py --device cuda --models node,hbnode,nesterovnode
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings

import torch
from gradients import flat_gradient  # benchmarks/gradients.py

from nesterovnode.tasks import MODEL_NAMES, get_task


def run_once(model, task, x, y):
    model.zero_grad(set_to_none=True)
    loss = task.loss_fn(model(x), y)
    loss.backward()
    stats, grads = model.stats, flat_gradient(model)  # torch.cat: a copy of the gradients
    return float(loss.detach()), grads, stats.nfe_forward, stats.nfe_backward


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", default="node,hbnode,nesterovnode,gnesterovnode")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rtol", type=float, default=1e-3, help="graph vs eager bound")
    p.add_argument(
        "--graph-chunk",
        type=int,
        default=8,
        metavar="K",
        help="also check graphs of K attempts (the graph_chunk option; 0: skip)",
    )
    args = p.parse_args(argv)
    device = torch.device(args.device)
    task = get_task("mnist")
    g = torch.Generator().manual_seed(0)
    if args.data_dir:
        train, _ = task.datasets(data_dir=args.data_dir)
        idx = torch.randperm(len(train), generator=g)[: 2 * args.batch_size].tolist()
        xs = torch.stack([train[i][0] for i in idx])
        ys = torch.tensor([int(train[i][1]) for i in idx])
    else:
        xs = torch.rand(2 * args.batch_size, *task.input_shape(), generator=g)
        ys = torch.randint(0, 10, (2 * args.batch_size,), generator=g)
    batches = [
        (xs[i : i + args.batch_size].to(device), ys[i : i + args.batch_size].to(device))
        for i in (0, args.batch_size)
    ]
    ok = True
    print(
        f"{'model':<14}{'batch':>6}{'engine':>10}{'NFE f':>7}{'NFE b':>7}{'loss':>12}"
        f"{'rel.loss':>10}{'rel.grad':>10}"
    )
    for name in [m.strip() for m in args.models.split(",")]:
        if name not in MODEL_NAMES:
            sys.exit(f"unknown model {name}")
        torch.manual_seed(0)
        graphed = task.build_model(name, engine="rk", options={"cuda_graphs": True}).to(device)
        eager = copy.deepcopy(graphed)
        eager.block.config = eager.block.config.replace(options={"cuda_graphs": False})
        reference = copy.deepcopy(graphed)
        reference.block.config = reference.block.config.replace(engine="torchdiffeq", options={})
        chunked = copy.deepcopy(graphed)
        chunked.block.config = chunked.block.config.replace(
            options={"cuda_graphs": True, "graph_chunk": args.graph_chunk}
        )
        for b, (x, y) in enumerate(batches):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rg = run_once(graphed, task, x, y)
                rc = run_once(chunked, task, x, y) if args.graph_chunk else None
            fell_back = [w for w in caught if "capture" in str(w.message)]
            re_ = run_once(eager, task, x, y)
            rt = run_once(reference, task, x, y)
            rows = [("rk+graph", rg, re_), ("rk", re_, re_), ("torch", rt, re_)]
            if rc is not None:
                rows.insert(1, (f"rk+g{args.graph_chunk}", rc, re_))
            for label, r, base in rows:
                dl = abs(r[0] - base[0]) / max(abs(base[0]), 1e-30)
                dg = rel(r[1], base[1])
                print(
                    f"{name:<14}{b:>6}{label:>10}{r[2]:>7}{r[3]:>7}{r[0]:>12.6f}"
                    f"{dl:>10.2e}{dg:>10.2e}"
                )
            if fell_back:
                ok = False
                print(f"!! {name}: capture fell back to eager: {fell_back[0].message}")
            for label, r in (("graph", rg), (f"graph of {args.graph_chunk} attempts", rc)):
                if r is not None and (r[2:] != re_[2:] or rel(r[1], re_[1]) > args.rtol):
                    ok = False
                    print(f"!! {name} batch {b}: {label} and eager disagree")
        # The optimiser's in-place updates must be seen by the captured graph.
        with torch.no_grad():
            for pg, pe, pc in zip(graphed.parameters(), eager.parameters(), chunked.parameters()):
                pg.mul_(1.01)
                pe.mul_(1.01)
                pc.mul_(1.01)
        rg, re_ = run_once(graphed, task, *batches[0]), run_once(eager, task, *batches[0])
        d = rel(rg[1], re_[1])
        print(
            f"{name:<14}{'upd':>6}{'rk+graph':>10}{rg[2]:>7}{rg[3]:>7}{rg[0]:>12.6f}"
            f"{abs(rg[0] - re_[0]) / abs(re_[0]):>10.2e}{d:>10.2e}"
        )
        if d > args.rtol:
            ok = False
            print(f"!! {name}: after a parameter update, graph and eager disagree")
        if args.graph_chunk:
            rc = run_once(chunked, task, *batches[0])
            if rel(rc[1], re_[1]) > args.rtol:
                ok = False
                print(f"!! {name}: after a parameter update, chunked graphs and eager disagree")
    print("GRAPHS_OK" if ok else "GRAPHS_FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
