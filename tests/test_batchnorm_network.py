"""A float32 network from NumPy course code: affine, batch normalisation, ReLU, affine, softmax
cross-entropy, with its backward written by hand as courses teach it (the batchnorm backward
through the staged computation graph). The correct backward passes (not inconclusive) in
float32 and float64; a 1e-3 slip in the batchnorm backward fails.

Expected verdicts come from the maths: the backward below is the chain rule applied stage by
stage; the mutant drops 1e-3 of the variance path's gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck

RNG = np.random.default_rng(0)  # a draw where b1 (zero gradient) needs a bar
N, D, H, C = 8, 5, 6, 3
X = RNG.standard_normal((N, D))
Y = RNG.integers(0, C, N)
PARAMS = {
    "w1": RNG.standard_normal((D, H)) * 0.5,
    "b1": RNG.standard_normal(H) * 0.1,
    "gamma": 1 + 0.1 * RNG.standard_normal(H),
    "beta": 0.1 * RNG.standard_normal(H),
    "w2": RNG.standard_normal((H, C)) * 0.5,
    "b2": RNG.standard_normal(C) * 0.1,
}
BN_EPS = 1e-5


def forward(w1, b1, gamma, beta, w2, b2):
    """The loss, and the cache the backward needs (course style)."""
    x = X.astype(w1.dtype)
    a = x @ w1 + b1
    mu = a.mean(axis=0)
    xmu = a - mu
    var = (xmu**2).mean(axis=0)
    sqrtvar = np.sqrt(var + BN_EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    bn = gamma * xhat + beta
    r = np.maximum(bn, 0)
    scores = r @ w2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(N), Y].mean()
    return loss, (x, xmu, var, sqrtvar, ivar, xhat, bn, r, logp)


def loss(w1, b1, gamma, beta, w2, b2):
    return forward(w1, b1, gamma, beta, w2, b2)[0]


def backward(w1, b1, gamma, beta, w2, b2, slip=0.0):
    """Hand backprop, stage by stage; ``slip`` drops that share of the variance path."""
    _, (x, xmu, var, sqrtvar, ivar, xhat, bn, r, logp) = forward(w1, b1, gamma, beta, w2, b2)
    dscores = np.exp(logp)
    dscores[np.arange(N), Y] -= 1
    dscores /= N
    dw2 = r.T @ dscores
    db2 = dscores.sum(axis=0)
    dr = dscores @ w2.T
    dbn = dr * (bn > 0)
    dgamma = (dbn * xhat).sum(axis=0)
    dbeta = dbn.sum(axis=0)
    dxhat = dbn * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / np.sqrt(var + BN_EPS) * dsqrtvar * (1 - slip)
    dsq = np.ones_like(xmu) / N * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=0)
    da = dx1 + np.ones_like(dx1) / N * dmu
    dw1 = x.T @ da
    db1 = da.sum(axis=0)
    return dw1, db1, dgamma, dbeta, dw2, db2


def params(dtype):
    return tuple(PARAMS[k].astype(dtype) for k in ("w1", "b1", "gamma", "beta", "w2", "b2"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_correct_batchnorm_network_passes(dtype):
    result = gradcheck.check(loss, params(dtype), backward)
    assert result.verdict == "pass", f"{result.summary()}\n{result.table()}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_slip_in_the_batchnorm_backward_fails(dtype):
    result = gradcheck.check(loss, params(dtype), lambda *p: backward(*p, slip=1e-3))
    assert result.verdict == "fail", result.summary()


def test_the_bias_before_batchnorm_has_a_zero_gradient_and_a_wrong_one_fails():
    """b1 cannot move the loss (batch normalisation removes it): its gradient is zero, and a
    hand backprop that leaks 1e-3 of dw1's size into it fails."""
    w = params(np.float32)

    def leaky(*p):
        grads = list(backward(*p))
        grads[1] = grads[1] + 1e-3 * np.abs(grads[0]).max()
        return tuple(grads)

    result = gradcheck.check(loss, w, leaky)
    assert result.verdict == "fail"
    assert [str(c.verdict) for c in result.inputs] == [
        "pass",
        "fail",
        "pass",
        "pass",
        "pass",
        "pass",
    ]
