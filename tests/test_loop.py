"""The judging loop (gradcheck._judge.loop): a right gradient costs 2n evaluations, error bars only
where a verdict needs them. Expected gradients are derived by hand; expected costs are the
loop's documented arithmetic (f at x, its repeat, 2 per element, 2 more per open element)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import check, estimate_gradient, numerical_gradient
from gradcheck._numerics.engine import ROUNDING_POINTS

torch.set_num_threads(1)

RNG = np.random.default_rng(0)
D, WIDTH, SAMPLES = 6, 27, 16
X = RNG.standard_normal((SAMPLES, D))
T = RNG.standard_normal(SAMPLES)
SHAPES = [(D, WIDTH), (WIDTH,), (WIDTH, WIDTH), (WIDTH,), (WIDTH,), ()]
N = sum(int(np.prod(s)) for s in SHAPES)  # 973 parameters


def unpack(theta):
    out, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        out.append(theta[start : start + size].reshape(shape))
        start += size
    return out


def mlp_loss(theta):
    w1, b1, w2, b2, w3, b3 = unpack(theta)
    h1 = np.tanh(X @ w1 + b1)
    h2 = np.tanh(h1 @ w2 + b2)
    return np.mean((h2 @ w3 + b3 - T) ** 2)


def mlp_grad(theta):
    """Backpropagation written out by hand."""
    w1, b1, w2, b2, w3, b3 = unpack(theta)
    h1 = np.tanh(X @ w1 + b1)
    h2 = np.tanh(h1 @ w2 + b2)
    dy = 2 * (h2 @ w3 + b3 - T) / SAMPLES
    dz2 = np.outer(dy, w3) * (1 - h2**2)
    dz1 = (dz2 @ w2.T) * (1 - h1**2)
    parts = [X.T @ dz1, dz1.sum(0), h1.T @ dz2, dz2.sum(0), h2.T @ dy, np.array(dy.sum())]
    return np.concatenate([p.reshape(-1) for p in parts])


THETA = RNG.standard_normal(N) / np.sqrt(WIDTH)


class Counted:
    """f with its calls counted by the test itself, not by the harness."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args):
        self.calls += 1
        return self.f(*args)


def test_a_right_mlp_gradient_costs_two_evaluations_per_parameter():
    f = Counted(mlp_loss)
    result = check(f, THETA, mlp_grad, mode="full")
    assert result.passed, result.summary()
    assert result.evaluations == f.calls <= 2 * N + 100
    assert result.numerics.refined == (0,)


def test_a_1e_6_scale_error_fails_in_float64():
    result = check(mlp_loss, THETA, lambda t: mlp_grad(t) * (1 + 1e-6), mode="full")
    assert result.verdict == "fail", result.summary()


def test_a_1e_6_error_in_the_largest_element_fails_and_is_named_in_the_table():
    exact = mlp_grad(THETA)
    largest = int(np.argmax(np.abs(exact)))
    wrong = exact.copy()
    wrong[largest] *= 1 + 1e-6
    result = check(mlp_loss, THETA, lambda t: wrong, mode="full")
    assert result.verdict == "fail", result.summary()
    assert result.inputs[0].worst_index == (largest,)
    first_row = result.table().splitlines()[2]
    assert f"({largest},)" in first_row and "fail" in first_row
    assert np.flatnonzero(result.inputs[0].element_verdicts == "fail").tolist() == [largest]


def sin_sum(v):
    return np.sum(np.sin(v))


@pytest.mark.parametrize("n", [1, 7, 40])
def test_a_right_gradient_costs_exactly_2n_plus_f_at_x_and_its_repeat(n):
    f = Counted(sin_sum)
    result = check(f, np.linspace(-2, 2, n), np.cos, mode="full")
    assert result.passed, result.summary()
    assert f.calls == result.evaluations == 2 * n + 2


def test_each_element_the_first_level_leaves_open_costs_two_more():
    x = np.linspace(-2, 2, 30)
    wrong = np.cos(x)
    wrong[[3, 11, 29]] += 1e-3
    f = Counted(sin_sum)
    result = check(f, x, lambda v: wrong, mode="full")
    assert result.verdict == "fail", result.summary()
    assert np.flatnonzero(result.inputs[0].element_verdicts == "fail").tolist() == [3, 11, 29]
    # ... and, once per check, f's rounding measured near x for the bars it needs.
    assert f.calls == 2 * 30 + 2 + 2 * 3 + ROUNDING_POINTS
    assert result.numerics.refined == (3,)


def test_error_bars_are_made_only_where_a_verdict_needs_them():
    x = np.linspace(-2, 2, 10)
    wrong = np.cos(x)
    wrong[4] *= 1.01
    comparison = check(sin_sum, x, lambda v: wrong, mode="full").inputs[0]
    bars = comparison.error_estimate
    assert np.isfinite(bars[4]) and bars[4] > 0
    assert np.all(np.isnan(np.delete(bars, 4)))  # passed at the first level, no bar needed
    # The failing element's value is the second level's Richardson value: cos to ~1e-10.
    assert abs(comparison.numeric[4] - np.cos(x[4])) < 1e-8


def test_a_nondeterministic_f_takes_every_element_to_the_second_level():
    x = np.linspace(-1, 1, 12)
    noise = np.random.default_rng(1)

    def f(v):
        return np.sum(np.sin(v)) + 1e-9 * noise.standard_normal()

    result = check(f, x, np.cos, mode="full")
    assert result.numerics.refined == (12,)
    assert result.noise_floor > 0
    assert result.verdict != "fail", result.summary()


def test_torch_inputs_of_several_dimensions_cost_2n_too():
    x = torch.linspace(-1, 1, 36, dtype=torch.float64).reshape(6, 6)
    result = check(lambda v: torch.tanh(v @ v).sum(), x, mode="full", batch="loop", contract=False)
    assert result.passed, result.summary()
    # f at x (whose graph autograd's gradient is one backward of) and its repeat beside the 2
    # per element (the backward's contract, off here, adds one forward more:
    # tests/test_beyond.py).
    assert result.evaluations == 2 * 36 + 2


def test_numerical_gradient_keeps_the_step_rule():
    x = np.array([0.5, -3.0, 40.0])
    estimate = estimate_gradient(sin_sum, x)
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1, np.abs(x))
    # Realised steps: (x + h) - x rounds at eps * |x|.
    np.testing.assert_allclose(estimate.steps[0], h, rtol=1e-9)
    np.testing.assert_allclose(numerical_gradient(sin_sum, x), np.cos(x))


def test_a_given_step_is_used_as_given():
    x = np.array([1.0, 2.0])
    wrong = lambda v: 3 * v**2 + 1.0  # noqa: E731 - off by 1: the second level's value shows
    given = check(lambda v: np.sum(v**3), x, wrong, step=0.5)
    # Richardson is exact for a cubic at any step; only the rounding of f remains.
    np.testing.assert_allclose(given.inputs[0].numeric, [3.0, 12.0], rtol=1e-13)
    assert given.verdict == "fail"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_coupled_f_never_fails_a_right_gradient_and_locates_a_wrong_element(dtype):
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


def layer(w, b):
    x = torch.linspace(-1, 1, 8 * 100, dtype=torch.float64).reshape(8, 100)
    return torch.tanh(x @ w[:, :10] + b).pow(2).sum() + 1e-3 * (w**2).sum()


def test_auto_checks_a_small_bias_element_by_element_beside_a_screened_weight():
    w = torch.linspace(-0.1, 0.1, 100 * 100, dtype=torch.float64).reshape(100, 100)
    b = torch.linspace(-0.5, 0.5, 10, dtype=torch.float64)
    exact_w, exact_b = torch.func.grad(layer, argnums=(0, 1))(w, b)
    right = check(layer, (w, b))
    assert right.passed and right.mode == "mixed", right.summary()
    weight, bias = right.inputs
    assert weight.elements is not None  # screened: only located elements
    assert bias.elements is None and bias.numeric.shape == (10,)  # every element
    wrong_b = exact_b.clone()
    wrong_b[7] *= 1 + 1e-6  # far below any screen's single-element bound
    wrong = check(layer, (w, b), lambda w, b: (exact_w, wrong_b))
    assert wrong.verdict == "fail", wrong.summary()
    assert wrong.inputs[0].verdict == "pass" and wrong.inputs[1].worst_index == (7,)


class FailsOnce:
    """f that raises on its first call only: flaky code must not pass by being called again."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first call fails")
        return self.f(*args)


@pytest.mark.parametrize("n", [10, 5000])  # 5000: 'auto' also traces f (screen-sized input)
def test_an_f_that_raises_only_on_its_first_call_is_an_error_not_a_pass(n):
    f = FailsOnce(lambda v: torch.tanh(v).sum())
    with pytest.raises(RuntimeError, match="first call fails"):
        check(f, torch.linspace(-1, 1, n, dtype=torch.float64))
    assert f.calls == 1
