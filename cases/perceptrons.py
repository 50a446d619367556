"""Seed 001: sigmoid perceptrons and their hand-derived gradients, in torch as the seed writes them.

Single layer: o = sigmoid(x w^T) with x, w of shape 1x3 and loss = mse(o, 1); by the chain rule
dL/dw = 2 (o - t) o (1 - o) x (the mean is over one element).
Matrix form: W 4x3, x 3x1, o = sigmoid(W x), loss = mse(o, ones(4, 1)) = mean over 4 outputs,
so dL/dW = (2/4) (o (1 - o) (o - t)) x^T = (o (1 - o) (o - t)) x^T / 2: the seed's matGrad.
The seed draws x and w with torch.randn; here they are seeded normal draws (the run's seed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradcheck import case, normal


def perceptron_loss(w, x, t):
    o = torch.sigmoid(torch.matmul(x, w.T))
    return F.mse_loss(o, t)


def perceptron_grad(w, x, t):
    o = torch.sigmoid(torch.matmul(x, w.T))
    return 2 * (o - t) * o * (1 - o) * x


seed001_perceptron = case(
    name="seed001_single_layer_perceptron",
    description="dL/dw = 2 (o - t) o (1 - o) x for o = sigmoid(x w^T), L = mse(o, 1)",
    f=perceptron_loss,
    inputs={"w": normal(1, 3), "x": normal(1, 3), "t": torch.ones(1, 1)},
    wrt="w",
    grad=perceptron_grad,
    autograd=True,
    arrays="torch",
    tags=["seed001", "perceptron"],
)


def mlp_loss(W, x, t):
    o = torch.sigmoid(torch.matmul(W, x))
    return F.mse_loss(o, t)


def matGrad(W, x, t):  # the seed's name
    o = torch.sigmoid(torch.matmul(W, x))
    a = torch.multiply(o, 1.0 - o)
    b = torch.multiply(a, o - t)
    return torch.matmul(b, x.T) / 2.0


seed001_matrix = case(
    name="seed001_mlp_matrix_gradient",
    description="dL/dW = (o (1 - o) (o - t)) x^T / 2 for o = sigmoid(W x), W 4x3, L = mse(o, 1)",
    f=mlp_loss,
    inputs={"W": normal(4, 3), "x": normal(3, 1), "t": torch.ones(4, 1)},
    wrt="W",
    grad=matGrad,
    autograd=True,
    arrays="torch",
    tags=["seed001", "perceptron", "matrix"],
)
