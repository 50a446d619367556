"""Smooth elementwise torch ops for random op chains (tests/test_properties.py and
tests/test_separable.py): each maps a tensor to one of its shape, with a known-good autograd."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

CHAIN_OPS = {
    "sin": torch.sin,
    "exp(x/4)": lambda x: torch.exp(x / 4),
    "tanh": torch.tanh,
    "x^2/8": lambda x: x**2 / 8,
    "log1p(x^2)": lambda x: torch.log1p(x**2),
    "sigmoid": torch.sigmoid,
    "sqrt(1+x^2)": lambda x: torch.sqrt(1 + x**2),
    "atan": torch.atan,
    "softplus": torch.nn.functional.softplus,
}


def chained(names: Sequence[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ops named in ``names`` applied in turn, summed: a scalar f of a tensor."""

    def f(x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = CHAIN_OPS[name](x)
        return x.sum()

    return f
