"""Helpers shared by the shipped case modules (skipped by the loader: the name starts with _).

Each works on NumPy arrays and torch tensors alike, so one function serves torch autograd (which
gets tensors) and hand formulas (which get NumPy arrays, unless a case says arrays="torch").
"""

from __future__ import annotations

from typing import Any

import numpy as np


def xp(a: Any) -> Any:
    """The array library of ``a``: torch for a tensor, NumPy otherwise."""
    if type(a).__module__.split(".")[0] == "torch":
        import torch

        return torch
    return np


def sigmoid(a: Any) -> Any:
    return 1.0 / (1.0 + xp(a).exp(-a))


def softmax(z: Any) -> Any:
    """Softmax over the last axis, shifted by the max for overflow safety."""
    e = xp(z).exp(z - z.max())
    return e / e.sum()


def cross_entropy(y: Any, t: Any) -> Any:
    """-sum(t log y). The seed's cross_entropy_error adds 1e-7 inside the log to dodge log(0);
    that shifts the true derivative by ~1e-7 relative, more than float64's tolerance, so the
    cases use the exact form (y is a softmax here, never 0)."""
    return -(t * xp(y).log(y)).sum()


def simple_net_inputs() -> dict[str, Any]:
    """Seed 003's simpleNet problem: W 2x3 (a seeded normal draw), x = [0.6, 0.9], t = [0, 0, 1].
    Shared so the known-bad softmax case checks exactly the problem the good one does."""
    from gradcheck import normal

    return {"W": normal(2, 3), "x": np.array([0.6, 0.9]), "t": np.array([0.0, 0.0, 1.0])}


def simple_net_loss(W: Any, x: Any, t: Any) -> Any:
    """Seed 003's simpleNet.loss: cross-entropy of softmax(x W) against the one-hot t."""
    return cross_entropy(softmax(x @ W), t)
