"""Regression losses from the seeds, each against its hand-derived gradient.

Seed 004: the linear model y_hat = x w with the mean squared error on x = [1, 2, 3],
y = [2, 4, 6], from w = 1: cost = mean((x w - y)^2) = 14/3 and d cost/dw = mean(2 x (x w - y))
= -28/3 there.
Seed 002: the quadratic model y_hat = w1 x^2 + w2 x + b on y = (x + 1)^2 (x = [1, 2, 3],
y = [4, 9, 16]) from w1 = w2 = b = 1; its residual r = y_hat - y gives
d/dw1 = mean(2 r x^2), d/dw2 = mean(2 r x), d/db = mean(2 r).
The data are constants: only the weights are differentiated.
"""

from __future__ import annotations

import numpy as np

from gradcheck import case

X_DATA = np.array([1.0, 2.0, 3.0])


def linear_cost(w, x, y):
    return ((x * w - y) ** 2).mean()


def linear_cost_grad(w, x, y):
    return (2 * x * (x * w - y)).mean()


seed004_linear = case(
    name="seed004_linear_mse",
    description="d/dw mean((x w - y)^2) = mean(2 x (x w - y)): -28/3 at w = 1",
    f=linear_cost,
    inputs={"w": 1.0, "x": X_DATA, "y": np.array([2.0, 4.0, 6.0])},
    wrt="w",
    grad=linear_cost_grad,
    autograd=True,
    tags=["seed004", "regression"],
)


def quadratic_model(x, w1, w2, b):
    return x * x * w1 + x * w2 + b


def quadratic_cost(w1, w2, b, x, y):
    return ((quadratic_model(x, w1, w2, b) - y) ** 2).mean()


def quadratic_cost_grad(w1, w2, b, x, y):
    r = quadratic_model(x, w1, w2, b) - y
    return (2 * r * x * x).mean(), (2 * r * x).mean(), (2 * r).mean()


seed002_quadratic = case(
    name="seed002_quadratic_model_mse",
    description="w1 x^2 + w2 x + b on y = (x + 1)^2: mean(2 r x^2), mean(2 r x), mean(2 r)",
    f=quadratic_cost,
    inputs={"w1": 1.0, "w2": 1.0, "b": 1.0, "x": X_DATA, "y": np.array([4.0, 9.0, 16.0])},
    wrt=["w1", "w2", "b"],
    grad=quadratic_cost_grad,
    autograd=True,
    tags=["seed002", "regression"],
)
