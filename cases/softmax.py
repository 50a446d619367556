"""Seed 003's simpleNet: L = cross_entropy(softmax(x W), t), W 2x3, x = [0.6, 0.9], t = [0, 0, 1].

With z = x W and y = softmax(z), dL/dz = y - t, so dL/dW = x^T (y - t) (an outer product).
The seed initialises W with np.random.randn(2, 3); here W is a seeded normal draw.
"""

from __future__ import annotations

import numpy as np
from _common import simple_net_inputs, simple_net_loss, softmax

from gradcheck import case


def simple_net_grad(W, x, t):
    return np.outer(x, softmax(x @ W) - t)


seed003_simple_net = case(
    name="seed003_simple_net_softmax_ce",
    description="dL/dW = x^T (softmax(x W) - t) for the 2x3 simpleNet",
    f=simple_net_loss,
    inputs=simple_net_inputs(),
    wrt="W",
    grad=simple_net_grad,
    autograd=True,
    tags=["seed003", "softmax"],
)
