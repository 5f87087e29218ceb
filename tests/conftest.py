"""Fixtures shared by the test modules (float64 for numerical comparisons, a spy on the
backward solves' attempts); what else they share is in helpers.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64():
    """Run a test in float64 (numbers compared to 1e-7 and tighter need it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def backward_attempts(monkeypatch):
    """The (t, h) of every step attempt of the backward (adjoint) solves in the test, in
    order, as the engines report them to their ``Recorder``."""
    from nesterovnode.solve.stats import Recorder

    attempts = []
    real_attempt = Recorder.attempt

    def attempt(self, t, h):
        if self.backward:
            attempts.append((float(t), float(h)))
        return real_attempt(self, t, h)

    monkeypatch.setattr(Recorder, "attempt", attempt)
    return attempts
