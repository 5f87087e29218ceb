"""The torchode peer of the benchmarks (benchmarks/torchode_peer.py): it must solve the
system our solves do (the published code's state/derivative mismatch would not), count
what f observes, and give gradients, or its times compare nothing. Skipped where torchode
is absent (``pip install -e ".[bench]"``)."""

from __future__ import annotations

import sys

import pytest
import torch

from helpers import REPO

pytest.importorskip("torchode")
sys.path.insert(0, str(REPO / "benchmarks"))

from torchode_peer import TorchodeBlock  # noqa: E402

from nesterovnode.tasks import get_task  # noqa: E402


@pytest.mark.parametrize("name", ["nesterovnode", "hbnode", "node"])
def test_torchode_solves_our_system_to_our_solution(name, float64):
    """h(T) by torchode equals ours (rk) to the solutions' own accuracy at tol 1e-12 on the
    point cloud, from the same weights, with forward and backward NFE and gradients of
    every parameter."""
    task = get_task("pointcloud")
    x = task.datasets(seed=0)[0][:][0][:12].double()
    torch.manual_seed(0)
    ours = task.build_model(name, rtol=1e-12, atol=1e-12).double()
    torch.manual_seed(0)
    peer = task.build_model(name, rtol=1e-12, atol=1e-12).double()
    peer.block = TorchodeBlock(peer.block, 1e-12)
    with torch.no_grad():
        h_ours, h_peer = ours.features(x), peer.features(x)
    assert h_ours.abs().max() > 0.1
    assert (h_peer - h_ours).abs().max() < 1e-9

    peer.zero_grad()
    peer(x).square().sum().backward()
    assert peer.stats.nfe_forward > 20 and peer.stats.nfe_backward > 20
    grads = [p.grad for p in peer.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert max(g.abs().max() for g in grads) > 1e-3
