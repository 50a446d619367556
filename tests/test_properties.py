"""Property tests: random polynomials and compositions whose derivatives we know in closed form."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
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
    assert result.policy == "native"
    assert result.verdict != "fail", result.table()
