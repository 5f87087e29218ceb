"""The fields an engine integrates, and what engines and the adjoint share about them.

- ``DynamicsField``: the forward field on the state ``(y,)``, ``(f(t, y),)``.
- ``AugmentedField``: the adjoint system's field on ``(y, a, g)``,
  ``(f, −aᵀ∂f/∂y, −aᵀ∂f/∂θ)``: the one place where the vector–Jacobian products are formed.
- ``dense_jacobian``: ∂f/∂y as a matrix (implicit methods, stiffness diagnostics).
- ``model_fingerprint``: everything about a model that a compiled program or a captured
  CUDA graph may have baked in, as one hashable value: a field's ``key``.

Field contract (``engines/base.py``): ``field(t, z) -> dz/dt`` on a tuple of tensors,
``field.reads`` the components it reads, ``field.key`` a hashable identity for caches (None:
do not cache). The key is computed on first use: engines that keep nothing never pay it.
"""

from __future__ import annotations

import functools
import types

import torch
from torch import nn

#: a solver's state: ``(y,)`` forward, ``(y, a, g)`` for the adjoint system
State = tuple[torch.Tensor, ...]


def trainable(dynamics: nn.Module, named=None) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Names and tensors of the parameters of ``dynamics`` that require gradients (of
    ``named``, its ``named_parameters()`` where the caller has it already)."""
    named = dynamics.named_parameters() if named is None else named
    kept = [(n, p) for n, p in named if p.requires_grad]
    return [n for n, _ in kept], tuple(p for _, p in kept)


# -- what a program may have captured from a model -----------------------------------------
#: attributes every ``nn.Module`` has: walked apart (parameters, buffers, submodules, hooks)
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_HOOKS = tuple(
    k for k in sorted(_MODULE_INTERNALS) if k.endswith("hooks") and k != "_is_full_backward_hook"
)
#: how deep ``_value_key`` follows containers and closures
_DEPTH = 4
#: a longer list, dict or set is keyed by identity and length, not by content (a log a
#: module appends to would make the key grow with it)
_CONTENT_UP_TO = 64


def model_fingerprint(model: nn.Module) -> tuple:
    """A hashable value that changes whenever a program traced from ``model`` (a compiled
    step, a CUDA graph) could compute differently, other than through the values of its
    parameters and buffers, which programs read as inputs:

    - the module tree: every submodule's type, name and training flag;
    - every parameter and buffer: its storage (data pointer), dtype, shape, device and
      ``requires_grad`` (which parameters the adjoint differentiates);
    - every other attribute a module holds (the Nesterov factor r, σ, a layer's sizes…):
      numbers and strings by value, tensors by storage and version (a plain tensor
      attribute is a constant of a traced program), functions by identity and the values
      their closures hold, containers element by element (lists, dicts and sets of more
      than 64 items by identity and length), other objects by identity;
    - registered hooks, by identity.

    Identities cannot see a change inside an object that is neither a module nor a tensor
    nor a short container (an attribute of a custom class mutated in place): make such
    values module attributes, or clear the engines' caches after changing them. State a
    module changes at every call (a call counter) changes the fingerprint at every solve:
    the programs are then rebuilt each time, and the rk engine warns
    (``fingerprint_changes`` names the attributes)."""
    out: list = []
    _walk(model, out, set())
    return tuple(out)


def _walk(module: nn.Module, out: list, seen: set) -> None:
    if id(module) in seen:  # a module shared twice in the tree: its place is enough
        out.append(("shared", id(module)))
        return
    seen.add(id(module))
    d = module.__dict__
    out.append(type(module))
    out.append(d["training"])
    for group in (d["_parameters"], d["_buffers"]):
        for name, t in group.items():
            out.append(name)
            out.append(None if t is None else _storage_key(t))
    for hooks in _HOOKS:
        found = d.get(hooks)
        if found:
            out.append((hooks, tuple(id(h) for h in found.values())))
    for name, value in d.items():
        if name not in _MODULE_INTERNALS:
            out.append(name)
            out.append(_value_key(value, _DEPTH))
    for name, sub in d["_modules"].items():
        out.append(name)
        if sub is None:
            out.append(None)
        else:
            _walk(sub, out, seen)
    out.append(")")  # where this module's children end: the tree, not a flat list


def _storage_key(t: torch.Tensor) -> tuple:
    return (t.data_ptr(), t.dtype, tuple(t.shape), t.device, t.requires_grad)


def _value_key(value, depth: int):
    """A hashable stand-in for an attribute's value (see ``model_fingerprint``)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value), value)
    if isinstance(value, torch.Tensor):
        return ("tensor", value._version, *_storage_key(value))
    if isinstance(value, (torch.dtype, torch.device)):
        return value
    if depth <= 0:
        return ("object", type(value), id(value))
    if isinstance(value, (list, dict, set)) and len(value) > _CONTENT_UP_TO:
        return ("long", type(value), id(value), len(value))
    if isinstance(value, (tuple, list, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return (type(value), tuple(_value_key(v, depth - 1) for v in items))
    if isinstance(value, dict):
        return (dict, tuple((k, _value_key(v, depth - 1)) for k, v in value.items()))
    if isinstance(value, nn.Module):  # held outside the tree (a list attribute, a closure)
        inner: list = []
        _walk(value, inner, set())
        return ("module", tuple(inner))
    if isinstance(value, types.FunctionType):
        cells = tuple(
            _value_key(c.cell_contents, depth - 1) if cell_filled(c) else "empty"
            for c in (value.__closure__ or ())
        )
        defaults = _value_key(value.__defaults__, depth - 1)
        return ("function", id(value), id(value.__code__), cells, defaults)
    if isinstance(value, types.MethodType):
        return ("method", id(value.__func__), _value_key(value.__self__, depth - 1))
    if isinstance(value, functools.partial):
        return (
            "partial",
            _value_key(value.func, depth - 1),
            _value_key(value.args, depth - 1),
            _value_key(value.keywords, depth - 1),
        )
    return ("object", type(value), id(value))


def fingerprint_changes(old: tuple, new: tuple) -> list[str]:
    """The attribute names (as the fingerprint lists them, each after its module's) whose
    values differ between two fingerprints of the same model; ["the module tree"] where
    the trees themselves differ."""
    if len(old) != len(new):
        return ["the module tree"]
    names, last = [], "?"
    for a, b in zip(old, new):
        if isinstance(a, str) and a == b and a != ")":
            last = a
        elif a != b and last not in names:
            names.append(last)
    return names


def cell_filled(cell) -> bool:
    """Whether a closure cell holds a value (an unassigned one raises on reading)."""
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


# -- the fields ----------------------------------------------------------------------------
class DynamicsField:
    """The forward field on the state ``(y,)``: ``(f(t, y),)``.

    Its first call checks that f returns a tensor of the state's shape and dtype (once
    per solve: a field is made for one solve), so that a network of the wrong output size
    is an error naming both shapes on every engine, never a silent broadcast."""

    reads = (0,)

    def __init__(self, dynamics: nn.Module):
        self.dynamics = dynamics
        self._checked = False

    @functools.cached_property
    def fingerprint(self) -> tuple:
        """``model_fingerprint`` of the dynamics, taken once (at the first ``key``)."""
        return model_fingerprint(self.dynamics)

    @property
    def key(self) -> tuple:
        return ("f", self.fingerprint)

    def __call__(self, t: torch.Tensor, state: State) -> State:
        out = self.dynamics(t, state[0])
        if not self._checked:
            check_field_output(self.dynamics, out, state[0])
            self._checked = True
        return (out,)

    def traceable(self) -> DynamicsField:
        """The field as a tracer (``make_fx``) can record it: itself."""
        return self


def check_field_output(dynamics, out, y: torch.Tensor) -> None:
    """Raise unless ``out = dynamics(t, y)`` is a tensor of y's shape and dtype."""
    name = type(dynamics).__name__
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the dynamics {name} returned {type(out).__name__}, not a tensor")
    if out.shape != y.shape:
        raise ValueError(
            f"the dynamics {name} returned dy/dt of shape {tuple(out.shape)} for a state of "
            f"shape {tuple(y.shape)}: dy/dt must have the state's shape (its last layer's "
            f"output size, or a reshape, is off); no engine broadcasts it"
        )
    if out.dtype != y.dtype:
        raise TypeError(
            f"the dynamics {name} returned dy/dt in {out.dtype} for a state in {y.dtype}: "
            f"make the model and the state one dtype (model.to(y0.dtype))"
        )


class AugmentedField:
    """The adjoint system's field on ``(y, a, g)``: ``(f, −aᵀ∂f/∂y, −aᵀ∂f/∂θ)``, with g
    the flat concatenation of the trainable parameters' gradients (``trainable`` order).

    On CUDA the products are taken with respect to fresh aliases of the parameters (same
    storage, so optimiser updates are seen): the parameters' own AccumulateGrad nodes live
    on the stream they were created on, and reaching them from a CUDA graph being captured
    on another stream breaks the capture (the rk engine captures this field). Elsewhere
    they are taken with respect to the parameters themselves (``autograd.grad`` does not
    accumulate into ``.grad``): the alias swap costs about a third of a small network's
    product on the CPU.

    ``traceable()`` gives the same field with its products formed through ``torch.func``
    (``functional``), which a tracer such as ``make_fx`` can record (``autograd.grad`` on
    parameters it cannot): the rk engine's compiled programs integrate that one.
    """

    reads = (0, 1)

    def __init__(self, dynamics: nn.Module, named=None, forward: DynamicsField | None = None):
        """``named``: ``dynamics.named_parameters()`` where the caller has it; ``forward``:
        the forward field of the same solve, whose fingerprint (taken once) the key shares."""
        self.dynamics = dynamics
        self.names, self.params = trainable(dynamics, named)
        self.sizes = [p.numel() for p in self.params]
        self._forward = DynamicsField(dynamics) if forward is None else forward
        self._functional = False

    @property
    def key(self) -> tuple:
        return ("adjoint", self._forward.fingerprint)

    def traceable(self) -> AugmentedField:
        """This field with its products through ``torch.func`` (see the class docstring)."""
        traced = AugmentedField.__new__(AugmentedField)
        traced.__dict__.update(self.__dict__)
        traced._functional = True
        return traced

    def vjp(self, t, y, a):
        """``f(t, y)`` and ``(aᵀ∂f/∂y, aᵀ∂f/∂θ_1, …)`` (None where f does not depend on an
        input)."""
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            if y.is_cuda:  # aliases: a CUDA graph may be capturing this call
                leaves = tuple(p.detach().requires_grad_(True) for p in self.params)
                named = dict(zip(self.names, leaves))
                f = torch.func.functional_call(self.dynamics, named, (t, y_))
            else:  # no capture off CUDA: the parameters themselves, without the swap's cost
                leaves = self.params
                f = self.dynamics(t, y_)
            grads = torch.autograd.grad(f, (y_, *leaves), a, allow_unused=True)
        return f.detach(), grads

    def __call__(self, t: torch.Tensor, state: State) -> State:
        y, a = state[0], state[1]
        if self._functional:
            return self.functional(t, y, a)
        f, grads = self.vjp(t, y, a)
        vjp_y = torch.zeros_like(y) if grads[0] is None else grads[0]
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads[1:], self.params)
        ]
        vjp_p = torch.cat(flat) if flat else y.new_zeros(0)
        return (f, -vjp_y, -vjp_p.to(y.dtype))

    def functional(self, t: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> State:
        """The same values as ``__call__`` through ``torch.func`` (so that it can itself be
        differentiated, e.g. for the exact Jacobian implicit methods need). The parameters
        are read from the module at the call, so that ``functional_call`` can substitute
        them (the compiled steps pass them in as inputs)."""
        live = dict(self.dynamics.named_parameters())
        theta = tuple(live[n].detach() for n in self.names)

        def f(yy, th):
            return torch.func.functional_call(self.dynamics, dict(zip(self.names, th)), (t, yy))

        out, vjp_fn = torch.func.vjp(f, y, theta)
        gy, gth = vjp_fn(a)
        flat = torch.cat([g.reshape(-1) for g in gth]) if gth else y.new_zeros(0)
        return (out, -gy, -flat.to(y.dtype))


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """θ: every parameter flattened row-major and concatenated, in ``parameters()`` order."""
    params = list(module.parameters())
    if not params:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in params])


def dense_jacobian(fn, y: torch.Tensor) -> torch.Tensor:
    """∂fn/∂y as a dense ``[fn(y).numel(), y.numel()]`` matrix (forward-mode autograd,
    reverse mode for ops without a forward rule). The one Jacobian of the package: the
    implicit methods of external engines and the stiffness diagnostics use it."""

    def flat(v):
        return fn(v.view_as(y)).reshape(-1)

    v = y.detach().reshape(-1)
    try:
        return torch.func.jacfwd(flat)(v)
    except (RuntimeError, NotImplementedError):
        return torch.func.jacrev(flat)(v)
