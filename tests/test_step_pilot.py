"""The step pilot of a full check: a larger step where f is smooth (the Richardson value is then
limited by rounding), the step rule's own where it is not. Expected gradients come from calculus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import _engine, check, estimate_gradient, numerical_gradient

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 40))
Y = RNG.standard_normal(16)
W = RNG.standard_normal(40) / 6


def tanh_regression(w):
    return np.mean((np.tanh(X @ w) - Y) ** 2)


def tanh_regression_grad(w):
    t = np.tanh(X @ w)
    return 2 / 16 * X.T @ ((t - Y) * (1 - t**2))


def median_rel_error(numeric, exact):
    return float(np.median(np.abs(numeric - exact) / np.abs(exact)))


def test_the_candidates_reach_eps_to_the_one_fifth():
    # eps**(1/3) * 2**j <= eps**(1/5): 2**j <= eps**(-2/15) = 122 (float64), 8.4 (float32).
    assert _engine.pilot_candidates("float64") == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    assert _engine.pilot_candidates("float32") == (1.0, 2.0, 4.0, 8.0)


def test_a_smooth_loss_gets_a_larger_step_and_a_more_accurate_gradient():
    exact = tanh_regression_grad(W)
    result = check(tanh_regression, W, tanh_regression_grad)
    assert result.passed, result.summary()
    assert result.step_scales[0] > 1
    full = median_rel_error(result.inputs[0].numeric, exact)
    plain = median_rel_error(estimate_gradient(tanh_regression, W).values[0], exact)
    assert full <= 1e-10
    assert full < plain / 4  # the step rule's step is limited by the rounding of f


def test_numerical_gradient_keeps_the_step_rule():
    x = np.array([0.5, -3.0, 40.0])
    estimate = estimate_gradient(lambda v: np.sum(np.sin(v)), x)
    assert estimate.step_scales == (1.0,)
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1, np.abs(x))
    # Realised steps: (x + h) - x rounds at eps * |x|.
    np.testing.assert_allclose(estimate.steps[0], h, rtol=1e-9)
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(np.sin(v)), x), np.cos(x))


def test_a_kink_within_the_larger_steps_keeps_the_step_rule():
    # Every element is within 64 steps of the kink of |x| at 0, none within one.
    x = np.concatenate([np.linspace(2e-5, 1e-4, 8), -np.linspace(2e-5, 1e-4, 8)])
    result = check(lambda v: np.sum(np.abs(v)), x, np.sign)
    assert result.step_scales == (1.0,)
    assert result.passed, result.summary()


def test_a_given_step_is_used_as_given():
    x = np.array([1.0, 2.0])
    given = check(lambda v: np.sum(v**3), x, lambda v: 3 * v**2, step=0.5)
    assert given.step_scales == (1.0,)
    # Richardson is exact for a cubic at any step; only the rounding of f remains.
    np.testing.assert_allclose(given.inputs[0].numeric, [3.0, 12.0], rtol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_pilot_never_makes_a_correct_gradient_fail_or_a_wrong_one_pass(dtype):
    x = torch.linspace(-3, 3, 50, dtype=dtype)

    def f(v):
        return (torch.sin(3 * v) * torch.exp(-(v**2))).sum() + (v[1:] * v[:-1]).sum()

    assert check(f, x).passed
    exact = torch.func.grad(f)(x)
    wrong = exact.clone()
    wrong[17] *= 1 + (1e-4 if dtype == torch.float64 else 1e-2)
    result = check(f, x, lambda v: wrong)
    assert result.verdict == "fail"
    assert result.inputs[0].worst_index == (17,)


def test_the_pilot_costs_32_evaluations_per_input():
    x = np.linspace(-1, 1, 20)
    calls = []

    def f(v):
        calls.append(1)
        return np.sum(np.sin(v))

    piloted = check(f, x, np.cos, taylor=False)
    given = len(calls)
    calls.clear()
    check(
        f,
        x,
        np.cos,
        taylor=False,
        step=piloted.step_scales[0] * np.finfo(np.float64).eps ** (1 / 3),
    )
    assert given - len(calls) == 4 * _engine.PILOT_ELEMENTS
