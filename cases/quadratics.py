"""Quadratics from the seeds: seed 000's a x^2 + b x + c, seed 003's function_2 and partials.

Seed 000 (PyTorch autograd): f(x) = x^2 - 2x + 1 has dy/dx = -2 at x = 0; on
x = [[0, 0], [1, 2]] with y.backward(gradient=ones), x.grad = [[-2, -2], [0, 2]].
Seed 003 (NumPy, numerical_diff): function_2(x) = x0^2 + x1^2 has gradient (6, 8) at (3, 4),
(0, 4) at (0, 2), (6, 0) at (3, 0); the partials at (3, 4) print 6.00000000000378 and
7.999999999999119 with the book's corrected central difference, h = 1e-4.
"""

from __future__ import annotations

import numpy as np

from gradcheck import case

A, B, C = 1.0, -2.0, 1.0


def parabola(x, a, b, c):
    return a * x**2 + b * x + c


def parabola_grad(x, a, b, c, cotangent=None):
    """d/dx (a x^2 + b x + c) = 2 a x + b; for a non-scalar f, times the cotangent."""
    slope = 2 * a * x + b
    return slope if cotangent is None else cotangent * slope


seed000_scalar = case(
    name="seed000_parabola_scalar",
    description="dy/dx of x^2 - 2x + 1 at x = 0 is -2",
    f=parabola,
    inputs={"x": 0.0, "a": A, "b": B, "c": C},
    wrt="x",
    grad=parabola_grad,
    autograd=True,
    tags=["seed000", "quadratic"],
)

seed000_matrix = case(
    name="seed000_parabola_matrix",
    description="y.backward(gradient=ones) on x = [[0, 0], [1, 2]] gives [[-2, -2], [0, 2]]",
    f=parabola,
    inputs={"x": np.array([[0.0, 0.0], [1.0, 2.0]]), "a": A, "b": B, "c": C},
    wrt="x",
    grad=parabola_grad,
    autograd=True,
    cotangent=np.ones((2, 2)),
    tags=["seed000", "quadratic", "vjp"],
)


def function_2(x):
    return x[0] ** 2 + x[1] ** 2


def function_2_grad(x):
    return 2 * x


seed003_function_2 = [
    case(
        name=f"seed003_function_2_at_{int(x0)}_{int(x1)}",
        description=f"the gradient of x0^2 + x1^2 at ({x0:g}, {x1:g}) is ({2 * x0:g}, {2 * x1:g})",
        f=function_2,
        inputs={"x": np.array([x0, x1])},
        grad=function_2_grad,
        autograd=True,
        tags=["seed003", "quadratic"],
    )
    for x0, x1 in [(3.0, 4.0), (0.0, 2.0), (3.0, 0.0)]
]


def numerical_diff(f, x):
    """Seed 003's central difference, with the parentheses the text means: / (2*h)."""
    h = 1e-4
    return (f(x + h) - f(x - h)) / (2 * h)


def function_tmp1(x0):
    return x0 * x0 + 4.0**2.0


def function_tmp2(x1):
    return 3.0**2.0 + x1 * x1


seed003_partials = [
    case(
        name="seed003_partial_x0",
        description="d/dx0 of x0^2 + 4^2 at x0 = 3 is 6 (the book prints 6.00000000000378)",
        f=function_tmp1,
        inputs={"x0": 3.0},
        grad={"analytic": lambda x0: 2 * x0},
        autograd=True,
        tags=["seed003", "quadratic", "partial"],
    ),
    case(
        name="seed003_partial_x1",
        description="d/dx1 of 3^2 + x1^2 at x1 = 4 is 8 (the book prints 7.999999999999119)",
        f=function_tmp2,
        inputs={"x1": 4.0},
        grad={"analytic": lambda x1: 2 * x1},
        autograd=True,
        tags=["seed003", "quadratic", "partial"],
    ),
    # The book's own difference quotient as a gradient source: right to ~1e-12 in float64.
    # In float32, x + 1e-4 keeps only ~3 digits of the step, so it is float64 only here.
    case(
        name="seed003_partials_by_numerical_diff",
        description="the book's corrected numerical_diff (h = 1e-4) agrees in float64",
        f=lambda x0, x1: function_tmp1(x0) + function_tmp2(x1) - 25.0,
        inputs={"x0": 3.0, "x1": 4.0},
        grad={
            "numerical_diff": lambda x0, x1: (
                numerical_diff(function_tmp1, x0),
                numerical_diff(function_tmp2, x1),
            )
        },
        dtypes=["float64"],
        tags=["seed003", "quadratic", "partial"],
    ),
]
