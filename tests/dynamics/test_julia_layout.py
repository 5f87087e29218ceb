"""The θ layout contract of the Julia fields, checked on the Python side: the exported
description rebuilds every parameter of each model's dynamics in torch's order, and the
NumPy specification of julia/src/fields.jl (Julia's column-major arithmetic) equals the
torch field; without Julia the engine fails at once with the install command."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

import nesterovnode as nno
from helpers import TinyField
from nesterovnode.dynamics.layout import (
    LayoutError,
    _network,
    dynamics_layout,
    field_numpy,
    layout_json,
    network_layout,
    unflatten,
)
from nesterovnode.solve.engines import julia as julia_engine
from nesterovnode.solve.errors import EngineNotInstalledError
from nesterovnode.solve.fields import flat_parameters
from nesterovnode.tasks.networks import mlp
from nesterovnode.tasks.pointcloud import WIDTHS, PointCloudTask

MODELS = tuple(WIDTHS)


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _pointcloud(model: str, **options):
    task_model = PointCloudTask().build_model(model, **options).double()
    _randomise(task_model, 3)
    return task_model


def _state(layout, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = layout["state"]["features"]
    shape = (batch, 2, n) if layout["state"]["second_order"] else (batch, n)
    return torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("model", MODELS)
def test_the_layout_rebuilds_every_parameter_of_the_pointcloud_dynamics_in_order(model):
    dyn = _pointcloud(model).dynamics
    layout = json.loads(layout_json(dyn))  # what Julia reads: plain JSON
    names = [n for n, _ in dyn.named_parameters()]
    assert [row["name"] for row in layout["parameters"]] == names
    assert layout["theta_length"] == sum(p.numel() for p in dyn.parameters())
    theta = flat_parameters(dyn).numpy()
    rebuilt = unflatten(layout, theta)
    for name, p in dyn.named_parameters():
        np.testing.assert_array_equal(rebuilt[name], p.detach().numpy())
    # every tensor is read by exactly one op or scalar, once
    covered = np.zeros(layout["theta_length"], dtype=int)
    for op in layout["network"]["ops"]:
        if op["kind"] == "dense":
            for part in (op["weight"], op["bias"]):
                size = int(np.prod(part["shape"]))
                covered[part["offset"] : part["offset"] + size] += 1
    for key in ("gamma", "xi"):
        if key in layout and layout[key]["kind"] != "fixed":
            covered[layout[key]["offset"]] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("model", MODELS)
def test_the_julia_field_specification_equals_the_torch_field(model):
    dyn = _pointcloud(model).dynamics
    layout = dynamics_layout(dyn)
    theta = flat_parameters(dyn).numpy()
    y = _state(layout)
    for t in (1.0, 1.37, 2.0):
        tt = torch.tensor(t, dtype=torch.float64)
        expected = dyn(tt, y).detach().numpy().reshape(-1)
        got = field_numpy(layout, theta, t, y.numpy().reshape(-1))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "model,options",
    [
        ("ghbnode", {"xi": 0.7, "learn_xi": True, "sigma": nn.Tanh()}),
        ("nesterovnode", {"r": 5.0, "xi": 0.3, "learn_xi": True}),
        ("gnesterovnode", {"r": 10.0, "xi": 1.5, "sigma": nn.Hardtanh(-2.0, 2.0)}),
    ],
)
def test_learned_xi_general_r_and_sigma_are_in_the_layout(model, options):
    dyn = _pointcloud(model, **options).dynamics
    layout = dynamics_layout(dyn)
    assert layout["r"] == float(options.get("r", 3.0))
    if options.get("learn_xi"):
        assert layout["xi"]["kind"] == "softplus"
        assert layout["parameters"][-1]["name"] == "xi.raw"
    theta = flat_parameters(dyn).numpy()
    y = _state(layout, seed=4)
    expected = dyn(torch.tensor(1.6, dtype=torch.float64), y).detach().numpy().reshape(-1)
    np.testing.assert_allclose(
        field_numpy(layout, theta, 1.6, y.numpy().reshape(-1)), expected, rtol=0, atol=1e-12
    )


def test_a_fixed_gamma_is_exported_as_its_value():
    dyn = nno.HBNODE(mlp([3, 4, 3], nn.Tanh).double(), gamma_logit=0.4, learn_gamma=False)
    layout = dynamics_layout(dyn)
    assert layout["gamma"] == {"kind": "fixed", "value": pytest.approx(1 / (1 + np.exp(-0.4)))}
    assert layout["network"]["time_input"] == "none"


@pytest.mark.parametrize("model", ["node", "sonode", "hbnode", "nesterovnode"])
def test_a_time_series_mlp_walker_style_is_mirrored(model):
    """Walker2D's ODE network: input_(n*) -> fc_(n*) -> Tanh -> fc_n -> Tanh -> fc_n (no t)."""
    n = 4
    n_in = 2 * n if model == "sonode" else n
    net = nn.Sequential(
        nn.Linear(n_in, n_in), nn.Tanh(), nn.Linear(n_in, n), nn.Tanh(), nn.Linear(n, n)
    ).double()
    dyn = {"node": nno.NODE, "sonode": nno.SONODE, "hbnode": nno.HBNODE}.get(
        model, nno.NesterovNODE
    )(net).double()
    _randomise(dyn, 5)
    layout = dynamics_layout(dyn)
    y = _state(layout, batch=3, seed=2)
    expected = dyn(torch.tensor(1.2, dtype=torch.float64), y).detach().numpy().reshape(-1)
    got = field_numpy(layout, flat_parameters(dyn).numpy(), 1.2, y.numpy().reshape(-1))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("model", ["nesterovnode", "hbnode"])
def test_the_pointcloud_encoder_and_head_networks_are_described_too(model):
    task_model = _pointcloud(model)
    for net in (task_model.encoder.velocity, task_model.head):
        layout = network_layout(net)
        x = torch.randn(7, layout["inputs"], dtype=torch.float64)
        theta = flat_parameters(net).numpy()
        got = _network(layout, theta, x.numpy().T, 0.0).T
        np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=0, atol=1e-12)


def test_networks_julia_does_not_mirror_raise_layout_error():
    with pytest.raises(LayoutError, match="TinyField"):
        dynamics_layout(nno.NODE(TinyField(2)))
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with pytest.raises(LayoutError, match="Conv2d"):
        dynamics_layout(nno.NODE(conv))


@pytest.mark.skipif(julia_engine.JuliaEngine.available(), reason="Julia is installed here")
@pytest.mark.parametrize("sensitivity", ["julia:GaussAdjoint", "julia:BacksolveAdjoint", "adjoint"])
def test_without_julia_every_julia_path_fails_at_once_with_the_install_command(sensitivity):
    dyn = _pointcloud("nesterovnode").dynamics
    y0 = dyn.initial_state(1.0, torch.zeros(3, 2, dtype=torch.float64))
    start = time.perf_counter()
    with pytest.raises(EngineNotInstalledError) as info:
        nno.solve(dyn, y0, [1.0, 2.0], engine="julia", sensitivity=sensitivity)
    assert time.perf_counter() - start < 1.0
    assert julia_engine.INSTALL_COMMAND in str(info.value)
    import sys

    assert "juliacall" not in sys.modules


def test_the_julia_engine_offers_the_four_named_adjoints():
    from nesterovnode.solve import sensitivity_names

    names = set(sensitivity_names())
    for s in ("GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "BacksolveAdjoint"):
        assert f"julia:{s}" in names
