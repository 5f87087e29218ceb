"""How tensors cross to Julia and back without a host copy: DLPack.

A CUDA tensor handed to the julia engine's native sensitivities stays on its GPU: the
engine passes ``handover(t)`` (the tensor, float64 and contiguous on its own device) to
Julia, where DLPack.jl wraps its memory as a ``CuArray`` (the package extension
``NesterovNODEJuliaGPUExt`` of julia/, loaded when CUDA.jl and DLPack.jl are); Julia's
results come back as tensors through ``torch.from_dlpack``. Host tensors take the same
route to Julia's ``Array``.

Layouts: a row-major ``[rows, cols]`` tensor is the column-major ``(cols, rows)`` array
in Julia (DLPack.jl reverses the dimensions of row-major data), so the ``[len(ts), n]``
tensor of states at the output times is Julia's ``n × len(ts)`` matrix, one column per
time, with no transpose in memory. Flat vectors (the state u, θ) are the same either way.
"""

from __future__ import annotations

import torch

#: DLPack's device codes (dlpack.h: kDLCPU = 1, kDLCUDA = 2) for the devices handed over
DLPACK_DEVICE = {"cpu": 1, "cuda": 2}


def handover(t: torch.Tensor) -> torch.Tensor:
    """``t`` as Julia receives it: detached, float64, C-contiguous, on ``t``'s device.

    ``ValueError`` for a device DLPack.jl does not wrap (only CPU and CUDA) and for a
    tensor that is not floating point (an integer or complex state is not an ODE state
    of these models)."""
    if t.device.type not in DLPACK_DEVICE:
        raise ValueError(
            f"the julia engine takes tensors on the CPU or a CUDA device, not {t.device}: "
            f"move the model and the state with .to('cuda') or .cpu()"
        )
    if not t.dtype.is_floating_point:
        raise ValueError(
            f"the julia engine takes floating-point tensors, not {t.dtype}: convert with .double()"
        )
    return t.detach().to(dtype=torch.float64).contiguous()


def dlpack_device(t: torch.Tensor) -> tuple[int, int]:
    """``(device type, index)`` as the DLPack capsule of ``t`` announces it to Julia."""
    kind, index = t.__dlpack_device__()
    return int(kind), int(index)


def received(obj, device: torch.device) -> torch.Tensor:
    """A tensor on ``device`` from what Julia returned: a DLPack-capable object (a shared
    Julia array) is taken without a copy; anything else goes through NumPy (a Julia
    ``Array`` read through its array interface) and then to ``device``."""
    if hasattr(obj, "__dlpack__"):
        out = torch.from_dlpack(obj)
    else:
        import numpy as np

        out = torch.from_numpy(np.array(obj, dtype=np.float64, copy=True))
    return out.to(device)
