"""Order 2 cannot be skipped: a backward computed in NumPy, under ``torch.no_grad`` or on
detached tensors is not differentiable again, and ``order=2`` (and ``gradgradcheck``) fails it,
saying so, even where f is linear and h's true gradient is zero (so that differences of h
alone would agree with the detached backward's zero).

The correct backwards are the same formulas in differentiable torch operations; their first-
order gradients are exact, so every verdict here follows from how the backward is computed.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import Function

import gradcheck
from gradcheck.torch import gradgradcheck

torch.set_num_threads(1)
C = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
KINDS = ("numpy", "no_grad", "detached")


def backward_of(kind: str, grad: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``grad * factor`` (broadcast product) computed the way ``kind`` says."""
    if kind == "numpy":
        return torch.from_numpy(grad.detach().numpy() * factor.detach().numpy())
    if kind == "no_grad":
        with torch.no_grad():
            return grad * factor
    if kind == "detached":
        return (grad * factor).detach()
    return grad * factor


def linear_map(kind: str) -> type[Function]:
    """``x @ C``: linear, so its Hessian is zero."""

    class LinearMap(Function):
        @staticmethod
        def forward(ctx, x):
            return x @ C

        @staticmethod
        def backward(ctx, grad):
            if kind == "numpy":
                return torch.from_numpy(grad.detach().numpy() @ C.numpy().T)
            if kind == "no_grad":
                with torch.no_grad():
                    return grad @ C.T
            if kind == "detached":
                return (grad @ C.T).detach()
            return grad @ C.T

    return LinearMap


def cube(kind: str) -> type[Function]:
    """``x ** 3``: its gradient ``3 x^2`` has a non-zero derivative."""

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return backward_of(kind, grad, 3 * x**2)

    return Cube


X = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def functions(kind: str):
    lin, cub = linear_map(kind), cube(kind)
    return {
        "linear, scalar": lambda x: lin.apply(x).sum(),
        "linear": lambda x: lin.apply(x),
        "cube, scalar": lambda x: cub.apply(x).sum(),
        "cube": lambda x: cub.apply(x),
    }


NAMES = list(functions("correct"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_backward_outside_autograd_fails_order_2_saying_why(kind, name):
    f = functions(kind)[name]
    first = gradcheck.check(f, (X,))
    assert first.verdict.value == "pass"  # right once
    result = gradcheck.check(f, (X,), order=2)
    assert result.verdict.value == "fail"
    assert any("does not depend on the inputs or on grad_output" in r for r in result.reasons)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradgradcheck_fails_a_backward_outside_autograd_saying_why(kind, name):
    f = functions(kind)[name]
    with pytest.raises(RuntimeError, match="does not depend on the inputs or on grad_output"):
        gradgradcheck(f, (X.clone().requires_grad_(True),))


@pytest.mark.parametrize("name", NAMES)
def test_a_twice_differentiable_backward_passes_order_2(name):
    f = functions("correct")[name]
    assert gradcheck.check(f, (X,), order=2).verdict.value == "pass"
    assert gradgradcheck(f, (X.clone().requires_grad_(True),))


def test_a_float32_backward_outside_autograd_fails_order_2():
    x32 = X.float()

    class LinearMap32(Function):
        @staticmethod
        def forward(ctx, x):
            return x @ C.to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            with torch.no_grad():
                return grad @ C.to(grad.dtype).T

    result = gradcheck.check(lambda x: LinearMap32.apply(x).sum(), (x32,), order=2)
    assert result.verdict.value == "fail"


def test_a_gradient_that_is_zero_everywhere_is_not_called_detached():
    class Step(Function):  # piecewise constant: the true gradient is zero
        @staticmethod
        def forward(ctx, x):
            return torch.floor(x)

        @staticmethod
        def backward(ctx, grad):
            return torch.zeros_like(grad)

    x = torch.tensor([0.3, 1.4, 2.6], dtype=torch.float64)
    assert gradcheck.check(lambda x: Step.apply(x).sum(), (x,), order=2).verdict.value == "pass"
