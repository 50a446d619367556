"""Tried as a new user would: a varied set of correct and subtly wrong gradients.

Smooth losses, the seeds' functions, ill-scaled inputs, large |x|, tiny gradients, a big
constant offset, non-scalar outputs; in float64 and float32. The correct side is torch autograd
(or the calculus in a hand formula); the wrong sides are autograd off by a relative 1e-5
(float64) or 1e-2, one flipped sign, and classic slips (a forgotten factor, a missing 1 - s).
No correct gradient may be called "fail"; every planted error must be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck
from gradcheck._sources.reference import Autograd

torch.set_num_threads(1)


@dataclass(frozen=True)
class Problem:
    name: str
    f: Callable[..., torch.Tensor]
    make: Callable[[torch.dtype], tuple[torch.Tensor, ...]]


def rng_tensor(seed: int, shape: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0):
    values = np.random.default_rng(seed).standard_normal(shape) * scale
    return torch.tensor(values, dtype=dtype)


def quadratic(x):  # seed 000: a x^2 + b x + c, non-scalar
    return 1.0 * x**2 - 2.0 * x + 1.0


def perceptron(w, x):  # seed 001: sigmoid(x w^T) against a target of ones
    return F.mse_loss(torch.sigmoid(x @ w.T), torch.ones(1, 1, dtype=w.dtype))


def two_layer(w, x):  # seed 001: sigmoid(W x), 4 outputs
    return F.mse_loss(torch.sigmoid(w @ x), torch.ones(4, 1, dtype=w.dtype))


def bp_model(w1, w2, b):  # seed 002: (x^2 w1 + x w2 + b - y)^2 summed over the data
    x = torch.tensor([1.0, 2.0, 3.0], dtype=w1.dtype)
    y = torch.tensor([4.0, 9.0, 16.0], dtype=w1.dtype)
    return ((x * x * w1 + x * w2 + b - y) ** 2).sum()


def function_2(x):  # seed 003
    return x[0] ** 2 + x[1] ** 2


def simple_net(w):  # seed 003: softmax cross-entropy of x W against a one-hot label
    x = torch.tensor([0.6, 0.9], dtype=w.dtype)
    y = torch.softmax(x @ w, dim=0)
    return -torch.log(y[2] + 1e-7)


def linear_cost(w):  # seed 004: MSE of x w against 2x
    x = torch.tensor([1.0, 2.0, 3.0], dtype=w.dtype)
    return ((x * w - 2 * x) ** 2).mean()


def logistic(w, b, x):
    t = (x[:, 0] > 0).to(x.dtype)
    return F.binary_cross_entropy_with_logits(x @ w + b, t)


def mlp(w1, w2, x):
    return (torch.tanh(x @ w1) @ w2).pow(2).mean()


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def gaussian_nll(mu, log_sigma, x):
    return (0.5 * ((x - mu) / torch.exp(log_sigma)) ** 2 + log_sigma).sum()


def layer_norm(x, w):
    return (F.layer_norm(x, (x.shape[-1],), weight=w) ** 3).sum()


def cross_entropy(logits):
    return F.cross_entropy(logits, torch.tensor([0, 2, 1, 2]))


def conv(x, k):
    return F.conv1d(x, k).pow(2).sum()


def spd_logdet(a):
    return torch.logdet(a @ a.T + torch.eye(3, dtype=a.dtype))


class Cube(torch.autograd.Function):
    """A custom backward, as users write them."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 3 * x**2


def t(values, dtype):
    return torch.tensor(values, dtype=dtype)


PROBLEMS = [
    Problem("seed000 quadratic", quadratic, lambda d: (t([[0.0, 0.0], [1.0, 2.0]], d),)),
    Problem(
        "seed001 perceptron",
        perceptron,
        lambda d: (rng_tensor(1, (1, 3), d), rng_tensor(2, (1, 3), d)),
    ),
    Problem(
        "seed001 two layer",
        two_layer,
        lambda d: (rng_tensor(3, (4, 3), d), rng_tensor(4, (3, 1), d)),
    ),
    Problem("seed002 bp model", bp_model, lambda d: (t([1.0], d), t([1.0], d), t([1.0], d))),
    Problem("seed003 function_2", function_2, lambda d: (t([3.0, 4.0], d),)),
    Problem("seed003 function_2 at (0, 2)", function_2, lambda d: (t([0.0, 2.0], d),)),
    Problem("seed003 simple net", simple_net, lambda d: (rng_tensor(5, (2, 3), d),)),
    Problem("seed004 linear cost", linear_cost, lambda d: (t([1.0], d),)),
    Problem(
        "logistic regression",
        logistic,
        lambda d: (rng_tensor(6, (5,), d), t([0.1], d), rng_tensor(7, (20, 5), d)),
    ),
    Problem(
        "tanh mlp",
        mlp,
        lambda d: (
            rng_tensor(8, (4, 6), d, 0.5),
            rng_tensor(9, (6, 2), d),
            rng_tensor(10, (8, 4), d),
        ),
    ),
    Problem("rosenbrock", rosenbrock, lambda d: (t([-1.2, 1.0], d),)),
    Problem("rosenbrock near its minimum", rosenbrock, lambda d: (t([1.001, 1.0], d),)),
    Problem(
        "gaussian nll",
        gaussian_nll,
        lambda d: (t([0.3], d), t([-0.5], d), rng_tensor(11, (10,), d)),
    ),
    Problem(
        "layer norm cubed",
        layer_norm,
        lambda d: (rng_tensor(12, (3, 5), d), rng_tensor(13, (5,), d)),
    ),
    Problem("cross entropy", cross_entropy, lambda d: (rng_tensor(14, (4, 3), d),)),
    Problem("conv1d", conv, lambda d: (rng_tensor(15, (1, 2, 9), d), rng_tensor(16, (3, 2, 3), d))),
    Problem("logdet of an spd matrix", spd_logdet, lambda d: (rng_tensor(17, (3, 3), d),)),
    Problem(
        "custom autograd.Function",
        lambda x: Cube.apply(x).sum(),
        lambda d: (rng_tensor(18, (5,), d),),
    ),
    Problem(
        "softplus of a mixed-sign input",
        lambda x: F.softplus(x).sum(),
        lambda d: (rng_tensor(19, (7,), d, 5.0),),
    ),
    # Ill-scaled: elements from 1e-4 to 1e3 in one input.
    Problem(
        "ill-scaled weights",
        lambda x: (torch.tensor([1e3, 1.0, 1e-3, 1e2], dtype=x.dtype) * x**2).sum(),
        lambda d: (t([1e-4, 1.0, 30.0, 1e3], d),),
    ),
    Problem(
        "ill-scaled exp", lambda x: torch.exp(x).sum(), lambda d: (t([-20.0, 0.0, 5.0, 20.0], d),)
    ),
    # Large |x|.
    Problem("log at 1e6..1e8", lambda x: torch.log(x).sum(), lambda d: (t([1e6, 3e7, 1e8], d),)),
    Problem("sqrt at 1e10", lambda x: torch.sqrt(x).sum(), lambda d: (t([1e10, 4e10], d),)),
    Problem(
        "scaled square at 1e6",
        lambda x: ((x / 1e6) ** 2).sum(),
        lambda d: (t([1e6, -2e6, 5e5], d),),
    ),
    Problem("sin at 1e3", lambda x: torch.sin(x).sum(), lambda d: (t([1e3, 1234.5, -999.0], d),)),
    # Tiny gradients, and a gradient tiny next to f.
    Problem(
        "tiny factor", lambda x: 1e-8 * torch.sin(x).sum(), lambda d: (rng_tensor(20, (4,), d),)
    ),
    Problem(
        "very tiny factor", lambda x: 1e-20 * (x**2).sum(), lambda d: (rng_tensor(21, (4,), d),)
    ),
    Problem(
        "big constant offset",
        lambda x: 1e4 + 1e-2 * (x**2).sum(),
        lambda d: (rng_tensor(22, (4,), d),),
    ),
    Problem(
        "mixed tiny and large elements",
        lambda x: (x**2 * torch.tensor([1e-6, 1.0, 1e-6], dtype=x.dtype)).sum(),
        lambda d: (t([0.5, 2.0, -1.5], d),),
    ),
    # Non-scalar outputs: vector-Jacobian products along a seeded cotangent.
    Problem(
        "non-scalar softmax",
        lambda x: torch.softmax(x, dim=-1),
        lambda d: (rng_tensor(23, (3, 4), d),),
    ),
    Problem(
        "non-scalar matmul",
        lambda a, b: a @ b,
        lambda d: (rng_tensor(24, (3, 4), d), rng_tensor(25, (4, 2), d)),
    ),
]

DTYPES = [torch.float64, torch.float32]


class Off:
    """autograd's gradient times ``factor`` or, with ``flip``, with its largest element negated."""

    def __init__(self, factor: float = 1.0, flip: bool = False) -> None:
        self.factor, self.flip, self.name = factor, flip, "autograd, planted error"

    def gradients(self, f: Callable, inputs: tuple, cotangent: np.ndarray | None) -> tuple:
        grads = [g * self.factor for g in Autograd().gradients(f, inputs, cotangent)]
        if self.flip:
            k = int(np.argmax([np.max(np.abs(g), initial=0.0) for g in grads]))
            i = int(np.argmax(np.abs(grads[k].reshape(-1))))
            grads[k].reshape(-1)[i] *= -1
        return tuple(grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_a_correct_gradient_is_never_called_fail(problem, dtype):
    result = gradcheck.check(problem.f, problem.make(dtype))
    assert result.verdict != "fail", result.summary() + "\n" + result.table()


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_a_relative_error_of_1e_5_is_caught_in_float64(problem):
    result = gradcheck.check(problem.f, problem.make(torch.float64), Off(1 + 1e-5))
    assert result.verdict == "fail", result.summary()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_a_one_percent_error_and_a_flipped_sign_are_caught(problem, dtype):
    inputs = problem.make(dtype)
    assert gradcheck.check(problem.f, inputs, Off(1.01)).verdict == "fail"
    assert gradcheck.check(problem.f, inputs, Off(flip=True)).verdict == "fail"


def sigmoid_sum(x):
    return torch.sigmoid(x).sum()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_classic_slips_in_hand_formulas_fail_and_the_right_formula_passes(dtype):
    x = rng_tensor(30, (6,), dtype)
    s = torch.sigmoid(x)
    assert gradcheck.check(sigmoid_sum, x, lambda x: s * (1 - s)).verdict == "pass"
    assert gradcheck.check(sigmoid_sum, x, lambda x: s).verdict == "fail"  # forgot 1 - s
    w = t([1.0], dtype)
    x3 = t([1.0, 2.0, 3.0], dtype)
    right = lambda w: (2 * x3 * (x3 * w - 2 * x3)).mean().reshape(1)  # noqa: E731
    missing_mean = lambda w: (2 * x3 * (x3 * w - 2 * x3)).sum().reshape(1)  # noqa: E731
    assert gradcheck.check(linear_cost, w, right).verdict == "pass"
    assert gradcheck.check(linear_cost, w, missing_mean).verdict == "fail"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_numpy_functions_with_hand_formulas_behave_the_same(dtype):
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    x = np.array([0.3, -1.2, 2.0, 4.5], dtype=np_dtype)
    grad = lambda x: (np.cos(x) + np.sin(x)) * np.exp(x)  # noqa: E731
    f = lambda x: np.sum(np.sin(x) * np.exp(x))  # noqa: E731
    assert gradcheck.check(f, x, grad).verdict == "pass"
    assert gradcheck.check(f, x, lambda x: grad(x) * 1.01).verdict == "fail"
