"""Known-bad gradients, declared expect="fail": the harness must catch each of them.

An unexpected pass of any of these is reported as a failure (the checker went blind).
"""

from __future__ import annotations

import numpy as np
from _common import sigmoid, simple_net_inputs, simple_net_loss

from gradcheck import case, normal


def sigmoid_sum(x):
    return sigmoid(x).sum()


sigmoid_derivative_without_one_minus_s = case(
    name="bad_sigmoid_derivative_s",
    description="d sigmoid/dx written as s instead of s (1 - s)",
    f=sigmoid_sum,
    inputs={"x": normal(5)},
    grad=lambda x: sigmoid(x),
    expect="fail",
    tags=["known-bad", "sigmoid"],
)


softmax_ce_forgets_softmax = case(
    name="bad_softmax_ce_forgets_softmax",
    description="dL/dW = x^T (z - t) with the logits z where softmax(z) belongs",
    f=simple_net_loss,
    inputs=simple_net_inputs(),
    wrt="W",
    grad=lambda W, x, t: np.outer(x, x @ W - t),
    expect="fail",
    tags=["known-bad", "softmax", "seed003"],
)


def numerical_diff_as_printed(f, x):
    """Seed 003's central difference exactly as printed: / 2*h is (... / 2) * h."""
    h = 1e-4
    return (f(x + h) - f(x - h)) / 2 * h


def function_2(x):
    return x[0] ** 2 + x[1] ** 2


def gradient_by_numerical_diff_as_printed(x):
    """Each partial by numerical_diff_as_printed: h^2 = 1e-8 times the true gradient."""
    grad = np.zeros_like(x)
    for i in range(x.size):

        def along_i(xi, i=i):
            moved = x.copy()
            moved[i] = xi
            return function_2(moved)

        grad[i] = numerical_diff_as_printed(along_i, x[i])
    return grad


numerical_diff_precedence_slip = case(
    name="bad_numerical_diff_precedence",
    description="seed 003's numerical_diff with / 2*h (divides by 2, multiplies by h)",
    f=function_2,
    inputs={"x": np.array([3.0, 4.0])},
    grad={"numerical_diff_as_printed": gradient_by_numerical_diff_as_printed},
    expect="fail",
    tags=["known-bad", "seed003"],
)
