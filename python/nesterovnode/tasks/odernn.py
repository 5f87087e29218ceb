"""The ODE-RNN (Rubanova et al., 2019) around any of the seven models: the paper's
time-series architecture (§4.3, Tables 1 and 5, MATH.md's Walker2D rows).

A window of observations ``x_0 … x_(L-1)`` at irregular times with gaps ``Δ_i`` is read as

    H ← rnn([H, x_0])
    for i = 1 … L-1:
        H⁻ ← the model's ODE flow of H over the gap Δ_i          (one ``solve``)
        ŷ_i = out(h⁻)                                            (predicts x_i)
        H ← rnn([H⁻, x_i])

where ``H`` is what the RNN cell sees and writes, ``[h]`` (d = 1) or ``[h, m]`` (d = 2:
SONODE's [h, v], the heavy-ball models' [h, m], the Nesterov models' [h, m] with h the
readout k(t) x, or σ(k(t)) x, and m = x'); ``H⁻``'s h is the model's readout after the gap.
So the window costs L - 1 solves, each over the whole batch as one state.

Time layout — per-gap restart at t0 = 1. Every gap is integrated over the model's own
time t from 1 to 1 + Δ_i, whatever the gap's place in the window: a Nesterov state is
rebuilt at each observation with x = h / k(1) (``initial_state(1, h, m)``) and read out at
1 + Δ_i. Why: (a) the Nesterov models need t > 0 and k(t) = t^(-r/2) e^(t/2) bounded; with
gaps of at most 6/64 every t lies in [1, 1.094], so k ∈ [0.911, 1.65] for r = 3; (b) the
windows are arbitrary cuts (stride 16) of longer rollouts, so a clock running from the
window's start would make the same gap evolve differently at step 3 and step 60 (the
friction r/t decays along a window) — an artefact of where the cut fell; restarting makes
the flow over a gap a function of the state and the gap only, as the RNN update is.
(One clock over the window would also be safe here — t ≤ 1 + 63·6/64 ≈ 6.9, k ≤ 1.2 —
but it would tie the dynamics to the window position.) The non-Nesterov models do not
read t (their ODE network has no t input), so for them the layout changes nothing.

Irregular gaps per sample, one solve per step: the gap is rescaled out of the time axis.
With s ∈ [0, 1] and t = 1 + Δ_b s for sample b, ``dz/ds = Δ_b F(1 + Δ_b s, z)``
(``GapFlow``); Δ rides in the solver state as one more constant channel (its derivative
is 0), so the field is a pure function of (s, z): no per-gap attribute to mutate, which
keeps the adjoint's backward pass of gap i on gap i's Δ (and CUDA-graph replay valid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..dynamics.base import position, velocity
from ..solve import SolveConfig, SolveStats, solve

#: The model time at which every gap starts (per-gap restart; see the module docstring).
T0 = 1.0


class GapFlow(nn.Module):
    """The field of ``dynamics`` over a gap, on the flat state ``z = [state (S), Δ]``:
    ``dz/ds = [Δ · F(t0 + Δ s, state), 0]`` for s ∈ [0, 1], so solving from s = 0 to 1
    integrates the model over its time from t0 to t0 + Δ, Δ per sample."""

    def __init__(self, dynamics: nn.Module, state_shape: tuple[int, ...], t0: float = T0):
        super().__init__()
        self.dynamics = dynamics
        self.state_shape = tuple(state_shape)
        self.t0 = float(t0)

    def pack(self, state: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """``[B, S + 1]`` from the model state ``[B, *state_shape]`` and gaps ``[B]``."""
        return torch.cat([state.reshape(state.shape[0], -1), gaps.reshape(-1, 1)], dim=1)

    def unpack(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(state [B, *state_shape], gaps [B, 1])``."""
        return z[:, :-1].reshape(z.shape[0], *self.state_shape), z[:, -1:]

    def time(self, s: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """The model time ``t0 + Δ s``, ``[B, 1]`` (broadcasts against a position [B, n])."""
        return self.t0 + gaps * s

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        state, gaps = self.unpack(z)
        d = self.dynamics(self.time(s, gaps), state).reshape(z.shape[0], -1)
        return torch.cat([gaps * d, torch.zeros_like(gaps)], dim=1)


def hidden(dynamics: nn.Module, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The model's h at per-sample times ``t [B, 1]``: ``factor(t) · x`` for the Nesterov
    models (k(t) or σ(k(t))), the position for the other momentum models, the state for
    first-order ones."""
    if not getattr(dynamics, "second_order", False):
        return state
    x = position(state)
    factor = getattr(dynamics, "factor", None)
    return x if factor is None else factor(t).to(x.dtype) * x


@dataclass
class SummedStats:
    """The statistics of a window's solves, summed: ``nfe_forward`` and ``nfe_backward``
    read the live ``SolveStats`` of every solve (their backward counts fill in when
    ``.backward()`` runs), so they are the NFE of the whole batch."""

    parts: list[SolveStats] = field(default_factory=list)

    @property
    def nfe_forward(self) -> int:
        return sum(s.nfe_forward for s in self.parts)

    @property
    def nfe_backward(self) -> int:
        return sum(s.nfe_backward for s in self.parts)

    @property
    def nfe(self) -> int:
        return self.nfe_forward + self.nfe_backward

    @property
    def compile_seconds(self) -> float:
        return sum(s.compile_seconds for s in self.parts)

    @property
    def solves(self) -> int:
        return len(self.parts)


class ODERNN(nn.Module):
    """ODE-RNN over windows ``x [B, L, k + 1]`` (k features, then the gap to the previous
    step; the first gap is ignored) returning the next-step predictions ``[B, L - 1, k]``.

    Args:
        name: the model's name (registry key).
        dynamics: the model's dynamics (``nesterovnode.dynamics``), on n features.
        rnn: the update ``[H, x_i] (d·n + k) -> H (d·n)``.
        out: the output ``h (n) -> k``.
        n: hidden features; ``d`` = 2 for momentum models, else 1.
        config: how each gap is solved.
        initial: optional ``x_0 -> H`` (ANODE's learned initial channels); zeros otherwise.
    """

    def __init__(
        self,
        name: str,
        dynamics: nn.Module,
        rnn: nn.Module,
        out: nn.Module,
        n: int,
        config: SolveConfig,
        initial: nn.Module | None = None,
    ):
        super().__init__()
        self.name = name
        self.dynamics = dynamics
        self.rnn = rnn
        self.out = out
        self.initial = initial
        self.n = int(n)
        self.d = 2 if getattr(dynamics, "second_order", False) else 1
        self.config = config
        self.flow = GapFlow(dynamics, (2, n) if self.d == 2 else (n,))
        self.stats = SummedStats()
        #: when set (a list), ``forward`` appends ``(gap, start, end, H⁻)`` per gap: the
        #: solver states it solves from and reaches and the RNN's view at the end (the
        #: adjoint-norm experiment reads their gradients)
        self.record: list | None = None

    def _solver_state(self, H: torch.Tensor) -> torch.Tensor:
        """The solver state at t0 from the RNN's H."""
        if self.d == 1:
            return self.dynamics.initial_state(T0, H)
        h, m = H[:, : self.n], H[:, self.n :]
        return self.dynamics.initial_state(T0, h, m)

    def _rnn_view(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """H⁻ from the solver state at the gap's end (model time ``t [B, 1]``)."""
        h = hidden(self.dynamics, t, state)
        return h if self.d == 1 else torch.cat([h, velocity(state)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        obs, gaps = x[..., :-1], x[..., -1]
        B, L, _ = obs.shape
        H = obs.new_zeros(B, self.d * self.n)
        if self.initial is not None:
            H = self.initial(obs[:, 0])
        H = self.rnn(torch.cat([H, obs[:, 0]], dim=1))
        self.stats = SummedStats()
        ts = torch.tensor([0.0, 1.0], dtype=obs.dtype, device=obs.device)
        preds = []
        for i in range(1, L):
            y0 = self._solver_state(H)
            z0 = self.flow.pack(y0, gaps[:, i])
            sol = solve(self.flow, z0, ts, self.config)
            self.stats.parts.append(sol.stats)
            end, gap = self.flow.unpack(sol.ys[-1])
            H = self._rnn_view(self.flow.time(1.0, gap), end)
            if self.record is not None:  # (gap, solver state at its start and end, H⁻)
                for v in (y0, end, H):
                    v.retain_grad()
                self.record.append((gap, y0, end, H))
            preds.append(self.out(H[:, : self.n]))
            if i < L - 1:
                H = self.rnn(torch.cat([H, obs[:, i]], dim=1))
        return torch.stack(preds, dim=1)


class LearnedInitial(nn.Module):
    """ANODE's initial hidden state: ``fc_c(x_0)`` in the first c channels, zeros in the
    other ``n - c`` (the augmentation)."""

    def __init__(self, k: int, channels: int, n: int):
        super().__init__()
        self.fc = nn.Linear(k, channels)
        self.pad = n - channels

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        y = self.fc(x0)
        return torch.cat([y, y.new_zeros(y.shape[0], self.pad)], dim=1)
