"""The θ layout the Julia fields read: a model's dynamics described as plain data.

``dynamics_layout(dynamics)`` (also ``Dynamics.julia_layout``, the hook the julia engine
calls) describes a dynamics module (one of the seven models around an MLP network; each
model family gives its own part, ``layout_parts``) so that ``julia/src`` can evaluate the
same vector field on ONE flat parameter vector
θ = ``torch.cat([p.reshape(-1) for p in dynamics.parameters()])`` (torch's
``parameters()`` order, row-major). The description (format ``nesterovnode-layout/1``):

- ``model`` (node, anode, sonode, hbnode, ghbnode, nesterovnode, gnesterovnode), ``r``;
- ``state``: ``features`` n (per row of the state) and ``second_order``;
- ``network``: ``time_input`` ("concat": t appended as the last input feature, as
  ``networks.TimeConcat``; "none": an autonomous network), ``inputs``, ``outputs``
  and ``ops`` in order: ``{"kind": "dense", "in", "out", "weight": {"offset", "shape"},
  "bias": {...} or None}`` or an activation ``{"kind": "tanh" | "relu" | "sigmoid" |
  "identity" | "elu" (alpha) | "leaky_relu" (slope) | "hardtanh" (min, max) | "softplus"
  (beta, threshold)}``;
- ``gamma`` (HBNODE, GHBNODE) and ``xi``: ``{"kind": "fixed", "value"}`` or
  ``{"kind": "sigmoid" | "softplus" | "identity", "offset"}`` (a learned scalar, θ[offset]
  through that function); ``sigma``: the bounded activation of the generalised models;
- ``parameters``: every tensor of ``parameters()`` with its name, shape, offset and size;
  ``theta_length`` their total (θ itself: ``solve.fields.flat_parameters``).

Offsets are 0-based. Networks other than ``nn.Linear`` and elementwise activations in
(nested) ``nn.Sequential``, optionally inside ``TimeConcat`` or ``Autonomous``, raise
``LayoutError``: the julia engine then evaluates them by call-back into torch.

``field_numpy(layout, theta, t, y)`` is the executable specification of
``julia/src/fields.jl`` in NumPy, with Julia's column-major reshapes, so that the layout
arithmetic the Julia code does is tested where no Julia is installed.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .networks import Autonomous, TimeConcat

FORMAT = "nesterovnode-layout/1"


class LayoutError(ValueError):
    """The module has a part the Julia fields do not mirror (a convolution, a custom
    module): the julia engine uses its call-back mode for it."""


def activation_layout(module: nn.Module) -> dict[str, Any]:
    """An elementwise activation module as an op of the layout (``LayoutError`` for others)."""
    if isinstance(module, nn.Tanh):
        return {"kind": "tanh"}
    if isinstance(module, nn.ReLU):
        return {"kind": "relu"}
    if isinstance(module, nn.Sigmoid):
        return {"kind": "sigmoid"}
    if isinstance(module, nn.Identity):
        return {"kind": "identity"}
    if isinstance(module, nn.ELU):
        return {"kind": "elu", "alpha": float(module.alpha)}
    if isinstance(module, nn.LeakyReLU):
        return {"kind": "leaky_relu", "slope": float(module.negative_slope)}
    if isinstance(module, nn.Hardtanh):
        return {"kind": "hardtanh", "min": float(module.min_val), "max": float(module.max_val)}
    if isinstance(module, nn.Softplus):
        return {
            "kind": "softplus",
            "beta": float(module.beta),
            "threshold": float(module.threshold),
        }
    raise LayoutError(
        f"{type(module).__name__} is not a layer the Julia fields mirror (Linear and the "
        f"activations Tanh, ReLU, Sigmoid, Identity, ELU, LeakyReLU, Hardtanh, Softplus)"
    )


def _offset(module: nn.Module, name: str, offsets: dict[int, int]) -> int:
    """The offset in θ of ``module.<name>``, which must be a parameter of the dynamics
    itself: a weight computed from others (``torch.nn.utils.parametrize``, weight or
    spectral norm) is not in θ as it is, so Julia cannot read it."""
    offset = offsets.get(id(getattr(module, name)))
    if offset is None:
        raise LayoutError(
            f"the {name} of {module} is computed (a parametrization, weight or spectral "
            f"norm), not a parameter the Julia fields can read from θ"
        )
    return offset


def _ops(module: nn.Module, offsets: dict[int, int]) -> list[dict[str, Any]]:
    if isinstance(module, nn.Sequential):
        return [op for child in module for op in _ops(child, offsets)]
    if isinstance(module, nn.Linear):
        bias = None
        if module.bias is not None:
            bias = {"offset": _offset(module, "bias", offsets), "shape": list(module.bias.shape)}
        return [
            {
                "kind": "dense",
                "in": module.in_features,
                "out": module.out_features,
                "weight": {
                    "offset": _offset(module, "weight", offsets),
                    "shape": list(module.weight.shape),
                },
                "bias": bias,
            }
        ]
    return [activation_layout(module)]


def parameter_table(module: nn.Module) -> list[dict[str, Any]]:
    """Every tensor of ``module.parameters()`` in order: name, shape, offset, size."""
    table, offset = [], 0
    for name, p in module.named_parameters():
        table.append({"name": name, "shape": list(p.shape), "offset": offset, "size": p.numel()})
        offset += p.numel()
    return table


def _offsets(module: nn.Module) -> dict[int, int]:
    return {id(p): row["offset"] for p, row in zip(module.parameters(), parameter_table(module))}


def network_layout(net: nn.Module, offsets: dict[int, int] | None = None) -> dict[str, Any]:
    """The ``network`` part of a layout for an MLP (``nn.Sequential`` of Linear layers and
    activations), optionally wrapped in ``TimeConcat`` (t appended as the last input) or
    ``Autonomous``; offsets relative to ``net``'s own parameters unless given."""
    offsets = _offsets(net) if offsets is None else offsets
    time_input = "none"
    inner = net
    if isinstance(net, TimeConcat):
        time_input, inner = "concat", net.net
    elif isinstance(net, Autonomous):
        inner = net.net
    if not isinstance(inner, (nn.Sequential, nn.Linear)):
        raise LayoutError(
            f"the network is a {type(inner).__name__}; the Julia fields mirror nn.Sequential "
            f"MLPs (Linear layers and activations), optionally in TimeConcat"
        )
    ops = _ops(inner, offsets)
    dense = [op for op in ops if op["kind"] == "dense"]
    if not dense:
        raise LayoutError("the network has no Linear layer")
    for a, b in zip(dense, dense[1:]):
        if a["out"] != b["in"]:
            raise LayoutError(f"Linear layers of {a['out']} and {b['in']} features do not chain")
    return {
        "time_input": time_input,
        "inputs": dense[0]["in"],
        "outputs": dense[-1]["out"],
        "ops": ops,
    }


def scalar_layout(value: torch.Tensor, offsets: dict[int, int], through: str) -> dict[str, Any]:
    """A scalar of the model: θ[offset] through ``through`` where it is a parameter, else
    its fixed value (through ``through`` already)."""
    if isinstance(value, nn.Parameter):
        return {"kind": through, "offset": offsets[id(value)]}
    x = float(value.detach().double())
    if through == "sigmoid":
        x = 1.0 / (1.0 + math.exp(-x))
    return {"kind": "fixed", "value": x}


def constant_layout(const, offsets: dict[int, int]) -> dict[str, Any]:
    """``base.Constant``: softplus(raw) when learnable and non-negative."""
    if const.learnable:
        return scalar_layout(const.raw, offsets, "softplus" if const.nonnegative else "identity")
    return {"kind": "fixed", "value": float(const.raw.detach().double())}


def dynamics_layout(dynamics: nn.Module) -> dict[str, Any]:
    """The layout description of ``dynamics`` (see the module docstring); ``LayoutError``
    when a part of it is not mirrored in Julia. The model's own part (its name, γ, ξ, σ,
    r) comes from ``layout_parts(offsets)``, which each of the seven models' classes
    defines: a subclass that does not define it is not mirrored."""
    if "layout_parts" not in type(dynamics).__dict__:
        raise LayoutError(
            f"{type(dynamics).__name__} is not one of the seven models the Julia fields mirror"
        )
    f = dynamics.f
    if not isinstance(f, nn.Module):
        raise LayoutError("the network is a plain callable, not an nn.Module")
    offsets = _offsets(dynamics)
    parts = dynamics.layout_parts(offsets)
    model = parts["model"]
    network = network_layout(f, offsets)
    n = network["outputs"]
    expected_in = (2 * n if model == "sonode" else n) + (network["time_input"] == "concat")
    if network["inputs"] != expected_in:
        raise LayoutError(
            f"{model}'s network reads {network['inputs']} features; expected {expected_in}"
        )
    return {
        "format": FORMAT,
        "model": model,
        "r": float(parts.get("r", 3.0)),
        "state": {"features": n, "second_order": bool(dynamics.second_order)},
        "network": network,
        "parameters": parameter_table(dynamics),
        "theta_length": sum(p.numel() for p in dynamics.parameters()),
        **{k: v for k, v in parts.items() if k not in ("model", "r")},
    }


def check_state(layout: dict[str, Any], shape: tuple[int, ...]) -> None:
    """``LayoutError`` unless the Julia field reads a state of ``shape`` as torch does:
    ``[..., n]`` for a first-order model (every row of n features is one column of
    Julia's ``reshape(u, n, :)``), exactly ``[B, 2, n]`` for a second-order one (Julia's
    ``reshape(u, n, 2, :)``: position and velocity rows of each sample)."""
    n = layout["state"]["features"]
    shape = tuple(int(s) for s in shape)
    if layout["state"]["second_order"]:
        if len(shape) != 3 or shape[1] != 2 or shape[2] != n:
            raise LayoutError(
                f"the Julia field of {layout['model']} reads a state [B, 2, {n}]; this one is "
                f"{list(shape)}"
            )
    elif not shape or shape[-1] != n:
        raise LayoutError(
            f"the Julia field of {layout['model']} reads a state [..., {n}]; this one is "
            f"{list(shape)}"
        )


def layout_json(dynamics: nn.Module, state_shape: tuple[int, ...] | None = None) -> str:
    """``dynamics_layout`` as the JSON text ``NesterovNODEJulia.parse_layout`` reads,
    checked against a state of ``state_shape`` where given (``check_state``)."""
    layout = dynamics_layout(dynamics)
    if state_shape is not None:
        check_state(layout, state_shape)
    return json.dumps(layout)


def unflatten(layout: dict[str, Any], theta) -> dict[str, np.ndarray]:
    """Each parameter by name, rebuilt from θ through the layout's table."""
    theta = np.asarray(theta, dtype=np.float64)
    return {
        row["name"]: theta[row["offset"] : row["offset"] + row["size"]].reshape(row["shape"])
        for row in layout["parameters"]
    }


# -- the specification of julia/src/fields.jl, in NumPy ----------------------------------------
def _act(op: dict[str, Any], x):
    kind = op["kind"]
    if kind == "identity":
        return x
    if kind == "tanh":
        return np.tanh(x)
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "elu":
        return np.where(x > 0, x, op["alpha"] * np.expm1(np.minimum(x, 0.0)))
    if kind == "leaky_relu":
        return np.where(x > 0, x, op["slope"] * x)
    if kind == "hardtanh":
        return np.clip(x, op["min"], op["max"])
    if kind == "softplus":
        bx = op["beta"] * x
        return np.where(
            bx > op["threshold"], x, np.log1p(np.exp(np.minimum(bx, 50.0))) / op["beta"]
        )
    raise ValueError(f"unknown activation {kind}")


def _network(net: dict[str, Any], theta: np.ndarray, H: np.ndarray, t: float) -> np.ndarray:
    x = np.vstack([H, np.full((1, H.shape[1]), t)]) if net["time_input"] == "concat" else H
    for op in net["ops"]:
        if op["kind"] == "dense":
            w = op["weight"]
            Wt = theta[w["offset"] : w["offset"] + op["in"] * op["out"]].reshape(
                (op["in"], op["out"]), order="F"
            )
            x = Wt.T @ x
            if op["bias"] is not None:
                b = op["bias"]["offset"]
                x = x + theta[b : b + op["out"]][:, None]
        else:
            x = _act(op, x)
    return x


def _value(s: dict[str, Any] | None, theta: np.ndarray) -> float:
    if s is None:
        return 0.0
    if s["kind"] == "fixed":
        return s["value"]
    x = theta[s["offset"]]
    if s["kind"] == "identity":
        return x
    if s["kind"] == "sigmoid":
        return 1.0 / (1.0 + math.exp(-x))
    return x if x > 20.0 else math.log1p(math.exp(x))


def field_numpy(layout: dict[str, Any], theta, t: float, u) -> np.ndarray:
    """The model's field on the flat state ``u`` (torch's row-major ``y.reshape(-1)``),
    computed as ``julia/src/fields.jl`` does (column-major reshapes, one column per sample);
    returns the flat dy/dt."""
    theta = np.asarray(theta, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    n, model, net = layout["state"]["features"], layout["model"], layout["network"]
    if not layout["state"]["second_order"]:
        return _network(net, theta, u.reshape((n, -1), order="F"), t).reshape(-1, order="F")
    U = u.reshape((n, 2, -1), order="F")
    X, M = U[:, 0, :], U[:, 1, :]

    def stack(dx, dm):
        return np.stack([dx, dm], axis=1).reshape(-1, order="F")

    if model == "sonode":
        return stack(M, _network(net, theta, u.reshape((2 * n, -1), order="F"), t))
    xi = _value(layout.get("xi"), theta)
    sigma = layout.get("sigma", {"kind": "identity"})
    if model in ("hbnode", "ghbnode"):
        gamma = _value(layout["gamma"], theta)
        f = _network(net, theta, X, t)
        if model == "hbnode":
            return stack(M, -gamma * M + f - xi * X)
        return stack(_act(sigma, M), -gamma * M + _act(sigma, f) - xi * X)
    r = layout["r"]
    k = math.exp(t / 2 - r / 2 * math.log(t))
    if model == "nesterovnode":
        H = k * X
        return stack(M, -M - _network(net, theta, H, t) - xi * H)
    H = float(_act(sigma, np.array(k))) * X
    return stack(_act(sigma, M), -M - _act(sigma, _network(net, theta, H, t)) - xi * H)
