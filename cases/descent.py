"""Gradient descent as the seeds run it, once with the analytic gradient and once with the
numerical one: both runs must take the same path and reach what the seeds print.

Seed 000: torch.optim.SGD(lr=0.01) for 500 steps on x^2 - 2x + 1 from x = 0 prints
x = 1.0000 (and y = 0). Each step multiplies x - 1 by 0.98, so x = 1 - 0.98^500 = 0.99996.
Seed 004: 100 epochs of gradient descent on the mean squared error of y = x w (x = [1, 2, 3],
y = [2, 4, 6]) from w = 1 reach w = 2 and predict 8 at x = 4; its stochastic variant (one
step per sample) does the same.
Seed 002: 1000 epochs of SGD on w1 x^2 + w2 x + b against y = (x + 1)^2 (x = [1, 2, 3]) from
w1 = w2 = b = 1 predict 25.152122497558594 at x = 4 (float32), on the way to 25.
"""

from __future__ import annotations

from gradcheck import descent

seed000_sgd = descent(
    name="seed000_sgd_parabola",
    description="500 SGD steps on x^2 - 2x + 1 from 0 reach x = 1.0000",
    loss=lambda x: x**2 - 2 * x + 1,
    params={"x": 0.0},
    lr=0.01,
    epochs=500,
    readout=lambda x: {"y": x**2 - 2 * x + 1},
    target={"x": 1.0},
    target_atol=5e-5,  # the seed prints four decimals
    tags=["seed000", "descent"],
)

X_DATA = [1.0, 2.0, 3.0]


def linear_readout(w):
    return {"predict(4)": 4 * w}


seed004_gd = descent(
    name="seed004_gd_linear",
    description="100 epochs of gradient descent on mean((x w - y)^2) reach w = 2, predict 8",
    loss=lambda w, x, y: ((x * w - y) ** 2).mean(),
    grad=lambda w, x, y: (2 * x * (x * w - y)).mean(),
    params={"w": 1.0},
    data={"x": X_DATA, "y": [2.0, 4.0, 6.0]},
    batch="full",
    lr=0.01,
    epochs=100,
    readout=linear_readout,
    target={"w": 2.0, "predict(4)": 8.0},
    tags=["seed004", "descent"],
)

seed004_sgd = descent(
    name="seed004_sgd_linear",
    description="100 epochs of SGD on (x w - y)^2, one sample a step, reach w = 2, predict 8",
    loss=lambda w, x, y: (x * w - y) ** 2,
    grad=lambda w, x, y: 2 * x * (x * w - y),
    params={"w": 1.0},
    data={"x": X_DATA, "y": [2.0, 4.0, 6.0]},
    batch="sample",
    lr=0.01,
    epochs=100,
    readout=linear_readout,
    target={"w": 2.0, "predict(4)": 8.0},
    tags=["seed004", "descent"],
)


def quadratic_readout(w1, w2, b):
    return {"predict(4)": 16 * w1 + 4 * w2 + b}


seed002_sgd = descent(
    name="seed002_sgd_quadratic_model",
    description="1000 epochs of SGD on (w1 x^2 + w2 x + b - y)^2 predict 25.152 at x = 4",
    loss=lambda w1, w2, b, x, y: (x * x * w1 + x * w2 + b - y) ** 2,
    params={"w1": 1.0, "w2": 1.0, "b": 1.0},
    data={"x": X_DATA, "y": [4.0, 9.0, 16.0]},
    batch="sample",
    lr=0.01,
    epochs=1000,
    readout=quadratic_readout,
    target={"predict(4)": 25.152},
    dtypes=["float32"],  # the seed's dtype; 3000 steps twice over cost seconds per dtype
    tags=["seed002", "descent"],
)
