"""Custom autograd Functions, as the suites of libraries that ship their own kernels check them."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.autograd import gradcheck
from torch.autograd.gradcheck import GradcheckError


class ScaledSparsemax(torch.autograd.Function):
    """alpha * softplus(x) with a 0-d alpha whose backward returns the per-row partial sums,
    shape (rows, 1): torch's engine sums that to alpha's shape."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        return alpha * torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, alpha = ctx.saved_tensors
        grad_x = grad * alpha * torch.sigmoid(x)
        grad_alpha = (grad * torch.nn.functional.softplus(x)).sum(dim=1, keepdim=True)
        return grad_x, grad_alpha


@pytest.mark.parametrize("fast", [False, True])
def test_broadcast_shaped_gradient(fast):
    torch.manual_seed(5)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(ScaledSparsemax.apply, (x, alpha), fast_mode=fast)


class ScatterSum(torch.autograd.Function):
    """Sums rows into buckets; the backward accumulates in a shuffled order, as an atomicAdd
    kernel does on a GPU: rounding-level nondeterminism."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(values, index)
        out = torch.zeros(int(index.max()) + 1, values.shape[1], dtype=values.dtype)
        return out.index_add(0, index, values**2)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        values, index = ctx.saved_tensors
        picked = grad[index] * 2 * values
        # the same sum, in a random order: partial sums round differently each call
        order = torch.randperm(picked.shape[1])
        total = torch.zeros_like(picked)
        for j in order:
            total[:, j] = picked[:, j] * 1.0
        noise = (torch.rand_like(total) - 0.5) * torch.finfo(total.dtype).eps * total.abs()
        return total + noise, None


def test_nondeterministic_backward_at_rounding_level():
    torch.manual_seed(6)
    values = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 4, (12,), dtype=torch.int64)
    assert gradcheck(ScatterSum.apply, (values, index), nondet_tol=1e-12)


class ForgetsUndefined(torch.autograd.Function):
    """Two outputs; the backward assumes both grad_outputs are tensors."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx: Any, g_sin: torch.Tensor, g_cos: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g_sin * x.cos() - g_cos * x.sin()  # TypeError when either is None


def test_undefined_grad_bug_raising_is_reported():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    # torch's own Jacobian rows pass None for the other output and the backward's TypeError
    # escapes; a checker that reports it as a failed check is as good
    with pytest.raises((GradcheckError, TypeError), match=r"(?i)undefined|NoneType"):
        gradcheck(ForgetsUndefined.apply, (x,))


class OnesWhenUndefined(torch.autograd.Function):
    """The backward treats an undefined grad_output as ones, not zero."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.exp()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        if grad is None:
            grad = torch.ones_like(x)
        return grad * x.exp()


def test_undefined_grad_taken_as_ones_is_reported():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"(?i)undefined"):
        gradcheck(OnesWhenUndefined.apply, (x,))


def test_linear_solve_and_cholesky():
    torch.manual_seed(7)
    m = torch.randn(5, 5, dtype=torch.float64)
    a = (m @ m.T + 5 * torch.eye(5, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)

    def solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sym = (a + a.T) / 2
        chol = torch.linalg.cholesky(sym)
        return torch.cholesky_solve(b, chol)

    assert gradcheck(solve, (a, b), eps=1e-6, atol=1e-4)


class FixedPoint(torch.autograd.Function):
    """Solves z = tanh(W z + x) by iteration; backward by implicit differentiation."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(x)
        for _ in range(200):
            z = torch.tanh(z @ w.T + x)
        ctx.save_for_backward(z, w)
        return z

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, w = ctx.saved_tensors
        d = 1 - z**2  # tanh' at the fixed point
        n = z.shape[-1]
        eye = torch.eye(n, dtype=z.dtype)
        # u (I - diag(d) W) = grad  per row  =>  u = grad (I - D W)^-1
        u = torch.stack(
            [torch.linalg.solve((eye - d[i][:, None] * w).T, grad[i]) for i in range(z.shape[0])]
        )
        v = u * d
        return v, v.T @ z


def test_fixed_point_solver():
    torch.manual_seed(8)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = (0.3 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_(True)
    assert gradcheck(FixedPoint.apply, (x, w), eps=1e-6, atol=1e-5, nondet_tol=1e-10)
