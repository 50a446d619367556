"""Property tests: random polynomials and compositions whose derivatives we know in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from chains import CHAIN_OPS, chained
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gradcheck import check, estimate_gradient

coefficient = st.floats(-3.0, 3.0, allow_nan=False, width=32)
point = st.floats(-2.0, 2.0, allow_nan=False, width=32)
dtype = st.sampled_from([np.float64, np.float32])


def polynomial(coeffs):
    """p(x) = sum_k c_k x**k summed over the elements, and its exact derivative."""

    def p(x):
        return np.sum(sum(c * x**k for k, c in enumerate(coeffs)))

    def dp(x):
        return sum(k * c * x ** (k - 1) for k, c in enumerate(coeffs) if k > 0) + 0 * x

    return p, dp


@settings(max_examples=60, deadline=None)
@given(
    st.lists(coefficient, min_size=1, max_size=6), st.lists(point, min_size=1, max_size=4), dtype
)
# Found by hypothesis: terms of size ~5 cancelling to |f| = 0.16 round at their own size.
@example(coeffs=[1.125, -1.0, -1.875, -0.75], xs=[0.0, 0.0, 1.125, -1.875], dt=np.float64)
def test_polynomials_the_exact_derivative_lies_within_the_error_bar(coeffs, xs, dt):
    p, dp = polynomial(coeffs)
    x = np.array(xs, dtype=dt)
    estimate = estimate_gradient(p, x)
    exact = dp(x.astype(np.float64))
    assert np.all(np.abs(estimate.values[0] - exact) <= estimate.errors[0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(coefficient, min_size=2, max_size=6), st.lists(point, min_size=1, max_size=4), dtype
)
def test_polynomials_the_exact_gradient_never_fails(coeffs, xs, dt):
    p, dp = polynomial(coeffs)
    x = np.array(xs, dtype=dt)
    result = check(p, x, lambda v: dp(v).astype(v.dtype))
    assert result.verdict != "fail", result.table()


@settings(max_examples=60, deadline=None)
@given(coefficient, coefficient, st.lists(point, min_size=1, max_size=4), dtype)
# Found by hypothesis: a subnormal float32 gradient (9e-45) is correct yet 7% off its value.
@example(a=0.0, b=1.8216880036222622e-44, xs=[0.0], dt=np.float32)
def test_compositions_sin_of_affine_times_exp_pass_and_a_2_percent_error_fails(a, b, xs, dt):
    def f(x):
        return np.sum(np.sin(a * x + b) * np.exp(x / 2))

    def df(x):
        return (a * np.cos(a * x + b) + 0.5 * np.sin(a * x + b)) * np.exp(x / 2)

    x = np.array(xs, dtype=dt)
    assert check(f, x, lambda v: df(v).astype(v.dtype)).verdict != "fail"
    scale = np.max(np.abs(df(x.astype(np.float64))))
    if scale > 1e-3:  # an all-but-zero gradient has no 2% to find
        wrong = check(f, x, lambda v: (df(v) * 1.02).astype(v.dtype))
        assert wrong.verdict == "fail"


@settings(max_examples=40, deadline=None)
@given(st.lists(point, min_size=1, max_size=4))
def test_float32_native_functions_correct_gradients_never_fail(xs):
    def f(x):
        x32 = x.astype(np.float32)
        return np.sum(np.tanh(x32) * x32)

    def df(x):
        t = np.tanh(x)
        return ((1 - t**2) * x + t).astype(np.float32)

    x = np.array(xs, dtype=np.float32)
    result = check(f, x, df)
    assert result.numerics.policy == "native"
    assert result.verdict != "fail", result.table()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(CHAIN_OPS)), min_size=1, max_size=3),
    st.lists(st.floats(-50, 50, allow_nan=False, allow_subnormal=False), min_size=1, max_size=1),
    st.sampled_from([torch.float64, torch.float32]),
)
# Found by hypothesis: tanh(x**4 / 512) at 9.4375, saturated; a subnormal float32 gradient
# (tests below).
@example(chain=["x^2/8", "x^2/8", "tanh"], xs=[9.4375], dt=torch.float64)
@example(chain=["sigmoid", "x^2/8"], xs=[-47.0], dt=torch.float32)
def test_autograd_of_random_op_chains_over_wide_inputs_is_never_called_fail(chain, xs, dt):
    # Saturated units and ill-conditioned compositions: float32 autograd is only as right as
    # float32 allows there (tanh at 6, sin(exp(12.25))), and that must not read as a bug.
    # One element: terms of several elements that cancel (atan(4**9) + atan(-7**9) ~ 4e-6)
    # round at a size the error estimate cannot see from outside f; and no x**9, whose sine
    # turns by radians within one step (both known limits: docs/limits.md).
    f = chained(chain)
    x = torch.tensor(xs, dtype=dt)
    # A gradient beyond the dtype's range overflows to inf, and that is a fail by design.
    x64 = x.double().requires_grad_(True)
    (grad64,) = torch.autograd.grad(f(x64), x64)
    assume(bool(grad64.abs().max() < torch.finfo(dt).max / 4))
    # ... and so is a NaN from an overflow inside f in the dtype itself (exp(exp(6)/4) in float32).
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(leaf), leaf)
    assume(bool(torch.isfinite(grad).all()))
    result = check(f, x)
    assert result.verdict != "fail", (chain, xs, dt, result.table())


def test_a_saturated_tanh_is_not_failed_by_the_taylor_test_and_a_wrong_gradient_still_fails():
    # Found by hypothesis: tanh(u), u = x**4 / 512 = 15.5 at x = 9.4375, lies 7e-14 below 1. The
    # Taylor test's steps (h |x| >= 0.037) all reach where tanh has saturated, so f moves by
    # the same 7e-14 at each: its remainder is the analytic term alone, order 1, and once read
    # as a wrong gradient. The exact gradient, sech(u)**2 x**3 / 128, is 9.157e-13.
    f = chained(["x^2/8", "x^2/8", "tanh"])
    x = torch.tensor([9.4375], dtype=torch.float64)

    def exact(x, factor=1.0):
        u = x**4 / 512
        return factor * x**3 / 128 / torch.cosh(u) ** 2

    assert float(exact(x)) == pytest.approx(9.157e-13, rel=1e-3)
    assert check(f, x).verdict != "fail", check(f, x).table()
    assert check(f, x, exact).verdict != "fail"
    for factor in (2.0, 0.5, 0.0):  # a wrong gradient is still told apart
        assert check(f, x, lambda x, k=factor: exact(x, k)).verdict == "fail", factor


def test_a_subnormal_float32_gradient_is_not_called_nonlinear_in_grad_output():
    # Found by hypothesis: sigmoid(x)**2 / 8 at -47 has the gradient e**-94 / 4 = 3.4e-42, in
    # float32's subnormal range (below 1.2e-38), where a value keeps a few bits: g(-2u) and
    # -2 g(u) round apart by 1.4e-45, one subnormal step, far beyond rtol of 3.4e-42 itself.
    f = chained(["sigmoid", "x^2/8"])
    x = torch.tensor([-47.0], dtype=torch.float32)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(leaf), leaf)
    assert 0 < float(grad) < torch.finfo(torch.float32).tiny
    assert float(grad) == pytest.approx(math.exp(-94) / 4, rel=1e-2)
    result = check(f, x)
    assert result.verdict != "fail", result.reasons
