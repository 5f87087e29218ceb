"""A runner's arguments and results: nested tuples of tensors and numbers, flattened and
rebuilt by hand.

Every runner (``runners.py``, ``compiled.py``) flattens a step's arguments on every call.
These few lines do it several times faster than pytree's general walk (docs/performance.md).
``None`` is kept where it stands and is not a leaf, as in pytree.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

_NONE = "none"  # the structure of a None


def flatten(obj) -> list:
    """The leaves of ``obj``, depth first."""
    out: list = []
    _flatten_into(obj, out)
    return out


def _flatten_into(obj, out: list) -> None:
    if isinstance(obj, (tuple, list)):
        for x in obj:
            _flatten_into(x, out)
    elif obj is not None:
        out.append(obj)


def structure(obj):
    """``obj``'s shape: None for a leaf, the tuple of the parts' structures for a tuple or
    list (rebuilt as a tuple)."""
    if isinstance(obj, (tuple, list)):
        return tuple(structure(x) for x in obj)
    return _NONE if obj is None else None


def rebuild(shape, leaves: Iterable):
    """The nested tuples of ``shape`` holding ``leaves`` in order."""
    return _rebuild(shape, iter(leaves))


def _rebuild(shape, leaves):
    if shape is None:
        return next(leaves)
    if shape == _NONE:
        return None
    return tuple(_rebuild(s, leaves) for s in shape)


def leaf_tensors(args, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """The leaves of ``args``, Python numbers as 0-dim tensors of ``dtype``."""
    return [
        x
        if isinstance(x, torch.Tensor)
        else torch.scalar_tensor(float(x), dtype=dtype, device=device)
        for x in flatten(args)
    ]
