"""The numerical engine: seed 003's numbers, error bars that hold, dtypes, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import estimate_gradient, numerical_gradient
from gradcheck._numerics.engine import ROUNDING_POINTS

torch.set_num_threads(1)


def function_2(x):
    """Seed 003: f(x0, x1) = x0**2 + x1**2."""
    return x[0] ** 2 + x[1] ** 2


@pytest.mark.parametrize(
    ("point", "expected"),
    [((3.0, 4.0), (6.0, 8.0)), ((0.0, 2.0), (0.0, 4.0)), ((3.0, 0.0), (6.0, 0.0))],
)
def test_seed_003_gradients_of_function_2_are_reproduced(point, expected):
    grad = numerical_gradient(function_2, np.array(point))
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-9)


def test_seed_003_partial_derivatives_at_3_4_are_6_and_8():
    at_3 = numerical_gradient(lambda x0: x0 * x0 + 4.0**2.0, 3.0)
    at_4 = numerical_gradient(lambda x1: 3.0**2.0 + x1 * x1, 4.0)
    assert isinstance(at_3, float)
    assert at_3 == pytest.approx(6.0, abs=1e-9)
    assert at_4 == pytest.approx(8.0, abs=1e-9)


def test_a_user_step_lost_to_rounding_in_float32_is_an_error_not_zeros():
    x = np.array([3.0, 4.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"lost to rounding in float32.*step=None"):
        numerical_gradient(function_2, x, step=1e-50, dtype_policy="native")


def test_a_user_step_lost_to_rounding_in_float64_is_an_error_too():
    with pytest.raises(ValueError, match="lost to rounding in float64"):
        numerical_gradient(function_2, np.array([3.0, 4.0]), step=1e-50)


def test_the_seed_step_of_1e_4_gives_the_seed_answer():
    grad = numerical_gradient(function_2, np.array([3.0, 4.0]), step=1e-4)
    np.testing.assert_allclose(grad, [6.0, 8.0], atol=1e-8)


def test_a_non_positive_step_is_refused():
    with pytest.raises(ValueError, match="positive and finite"):
        numerical_gradient(function_2, np.array([3.0, 4.0]), step=-1e-3)


SMOOTH = [
    (lambda x: np.sum(np.exp(x)), lambda x: np.exp(x)),
    (lambda x: np.sum(np.sin(3 * x) * x), lambda x: 3 * np.cos(3 * x) * x + np.sin(3 * x)),
    (lambda x: np.sum(np.log1p(x**2)), lambda x: 2 * x / (1 + x**2)),
    (lambda x: np.sum(x**5) / 7, lambda x: 5 * x**4 / 7),
]


@pytest.mark.parametrize(("f", "df"), SMOOTH)
@pytest.mark.parametrize("policy", ["native", "auto"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_error_estimate_bounds_the_true_error(f, df, policy, dtype):
    x = np.linspace(-2.0, 3.0, 11).astype(dtype)
    estimate = estimate_gradient(f, x, dtype_policy=policy)
    exact = df(x.astype(np.float64))
    true_error = np.abs(estimate.values[0] - exact)
    assert np.all(true_error <= estimate.errors[0] + 1e-300)


def test_float64_estimates_are_accurate_to_about_1e_10_relative():
    x = np.linspace(-2.0, 3.0, 11)
    estimate = estimate_gradient(SMOOTH[1][0], x)
    exact = SMOOTH[1][1](x)
    assert np.max(np.abs(estimate.values[0] - exact)) <= 1e-9 * np.max(np.abs(exact))


def test_float32_inputs_are_differentiated_in_float64_when_f_allows_it():
    x = np.array([0.5, -1.5], dtype=np.float32)
    estimate = estimate_gradient(lambda v: np.sum(np.tanh(v)), x)
    assert estimate.policy == "promoted"
    assert estimate.evaluation_dtype == "float64"
    exact = 1 - np.tanh(x.astype(np.float64)) ** 2
    np.testing.assert_allclose(estimate.values[0], exact, rtol=1e-9)


def test_a_function_that_casts_to_float32_is_differentiated_natively_and_says_so():
    def f(v):
        return np.sum(np.tanh(v.astype(np.float32)))

    x = np.array([0.5, -1.5], dtype=np.float32)
    estimate = estimate_gradient(f, x)
    assert estimate.policy == "native"
    assert "float32" in estimate.policy_reason
    exact = 1 - np.tanh(x.astype(np.float64)) ** 2
    assert np.all(np.abs(estimate.values[0] - exact) <= estimate.errors[0])
    assert np.max(estimate.errors[0]) < 1e-2


def test_a_torch_function_with_a_float32_only_kernel_falls_back_to_native():
    weight = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))

    def f(v):
        return (weight @ v).square().sum()  # float32 matmul refuses float64 v

    estimate = estimate_gradient(f, torch.ones(3))
    assert estimate.policy == "native"
    assert "raised" in estimate.policy_reason


def test_the_result_is_shaped_and_typed_like_the_input():
    x32 = np.ones((2, 3), dtype=np.float32)
    g = numerical_gradient(lambda v: np.sum(v**2), x32)
    assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == (2, 3)
    t = torch.ones(2, 3, dtype=torch.float64)
    gt = numerical_gradient(lambda v: (v**2).sum(), t)
    assert isinstance(gt, torch.Tensor) and gt.dtype == torch.float64 and gt.shape == (2, 3)
    torch.testing.assert_close(gt, 2 * t)


def test_several_inputs_give_one_gradient_each():
    a, b = np.array([1.0, 2.0]), np.array([[3.0], [5.0]])
    ga, gb = numerical_gradient(lambda a, b: np.sum(a * b[:, 0] ** 2), (a, b))
    np.testing.assert_allclose(ga, [9.0, 25.0], rtol=1e-9)
    np.testing.assert_allclose(gb, [[6.0], [20.0]], rtol=1e-9)


def test_evaluations_are_one_at_x_plus_four_per_element():
    calls = []

    def f(v):
        calls.append(1)
        return np.sum(v**2)

    estimate = estimate_gradient(f, np.zeros(5))
    assert estimate.evaluations == len(calls) == 1 + 4 * 5 + ROUNDING_POINTS


def test_the_callers_arrays_are_never_modified_even_when_f_raises_half_way():
    x = np.array([1.0, 2.0, 3.0])
    t = torch.tensor([1.0, 2.0, 3.0])
    for arg in (x, t):
        before = arg.clone() if isinstance(arg, torch.Tensor) else arg.copy()
        calls = []

        def f(v, calls=calls):
            calls.append(1)
            if len(calls) == 6:
                raise RuntimeError("boom half way")
            return (v**2).sum()

        with pytest.raises(RuntimeError, match="boom"):
            numerical_gradient(f, arg)
        assert (arg == before).all()


def test_integer_inputs_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"int64.*float64"):
        numerical_gradient(lambda v: v.sum(), np.array([1, 2]))
    with pytest.raises(TypeError, match="int64"):
        numerical_gradient(lambda v: v.sum(), torch.tensor([1, 2]))


def test_lists_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"np\.asarray"):
        numerical_gradient(lambda v: sum(v), [1.0, 2.0])


def test_a_non_callable_f_is_refused():
    with pytest.raises(TypeError, match="callable"):
        numerical_gradient(3.0, np.ones(2))


def test_a_non_scalar_output_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"shape \(2,\).*cotangent"):
        numerical_gradient(lambda v: v**2, np.ones(2))


def test_an_unknown_dtype_policy_is_refused():
    with pytest.raises(ValueError, match="dtype_policy"):
        numerical_gradient(lambda v: v.sum(), np.ones(2), dtype_policy="fast")


def test_the_error_bar_holds_where_terms_of_50_cancel_found_by_hypothesis():
    # A polynomial whose terms of ~50 cancel: the bar modelled from 8 eps max|f| was 6.9e-10
    # against an error of 9.0e-10 at element 1. Measured rounding keeps it with wide margin.
    coeffs = [1.8330742120742798, -0.3510025143623352, -0.8493937849998474]
    coeffs += [-1.8932561874389648, 0.21348482370376587, 2.1789982318878174]
    x = np.array(
        [1.8330742120742798, -0.3510025143623352, -0.8493937849998474, -1.8932561874389648]
    )
    powers = np.arange(len(coeffs))
    f = lambda v: np.sum(np.polynomial.polynomial.polyval(v, coeffs))  # noqa: E731
    exact = np.polynomial.polynomial.polyval(x, coeffs[1:] * powers[1:])
    estimate = estimate_gradient(f, x)
    assert np.all(np.abs(estimate.values[0] - exact) <= 0.5 * estimate.errors[0])


def test_the_error_bar_holds_for_a_product_of_sums_near_a_zero_of_sin():
    # sin(w).sum() * cos(b).sum() at w = linspace(-1, 1, 256): the modelled bar at element 127
    # (w ~ -0.004) was 7.7 times smaller than the error.
    w = torch.linspace(-1, 1, 256, dtype=torch.float64)
    b = torch.linspace(0, 1, 8, dtype=torch.float64)
    estimate = estimate_gradient(lambda w, b: torch.sin(w).sum() * torch.cos(b).sum(), (w, b))
    exact_w = (torch.cos(w) * torch.cos(b).sum()).numpy()
    exact_b = (-torch.sin(b) * torch.sin(w).sum()).numpy()
    assert np.all(np.abs(estimate.values[0] - exact_w) <= 0.5 * estimate.errors[0])
    assert np.all(np.abs(estimate.values[1] - exact_b) <= 0.5 * estimate.errors[1])
