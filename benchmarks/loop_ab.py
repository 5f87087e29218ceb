"""The rk engine's compiled solve against its host loop of compiled steps, in one process.

Two models with the same initial weights on the point-cloud protocol of ``peers.py``
(DP5 at 1e-7, float64, adjoint, Adam, batches 50/50/20): one with ``compile=True`` (the
whole adaptive solve in the compiled code, ``solve/engines/rk/solve_loop.py``), one with
``compile=True, loop="host"`` (one compiled step per call from Python). After warm-up
epochs (the compilations), they train in turns, epoch by epoch, and the script prints
the medians of the epoch times and of their ratio, epoch by epoch, and of a forward
solve alone (no autograd). No assertions: timings depend on the machine.

    python benchmarks/loop_ab.py [--model hbnode] [--epochs 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peers import BATCHES, LR, data, torch_adam, torch_model, torch_step  # benchmarks/peers.py

LOOPS = ("compiled", "host")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hbnode")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x, y = data()
    models = {k: torch_model(args.model, 0, options={"compile": True, "loop": k}) for k in LOOPS}
    optims = {k: torch_adam(m.parameters(), LR) for k, m in models.items()}

    def epoch(k: str) -> float:
        start = time.perf_counter()
        for a, b in BATCHES:
            optims[k].zero_grad()
            torch_step(models[k], x[a:b], y[a:b])
            optims[k].step()
        return time.perf_counter() - start

    def forward(k: str) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            models[k](x[:50])
        return time.perf_counter() - start

    for k in LOOPS:
        for _ in range(args.warmup):
            epoch(k)
    times = {k: [] for k in LOOPS}
    forwards = {k: [] for k in LOOPS}
    for _ in range(args.epochs):
        for k in LOOPS:
            times[k].append(epoch(k))
            forwards[k].append(forward(k))
    ratio = statistics.median(h / c for h, c in zip(times["host"], times["compiled"]))
    out = {
        "epoch ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "forward ms": {k: 1e3 * statistics.median(v) for k, v in forwards.items()},
        "host / compiled per epoch": ratio,
    }
    print(
        f"{args.model}, {args.epochs} epochs in turns (medians): epoch "
        f"{out['epoch ms']['compiled']:.2f} ms compiled loop, {out['epoch ms']['host']:.2f} "
        f"ms host loop; host / compiled, epoch by epoch: {ratio:.3f}; a forward solve "
        f"{out['forward ms']['compiled']:.3f} against {out['forward ms']['host']:.3f} ms"
    )
    return out


if __name__ == "__main__":
    main()
