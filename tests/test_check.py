"""check() and assert_gradients_close(): seed 000's numbers, sensitivity, float32, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradcheck import CheckResult, Verdict, assert_gradients_close, check

torch.set_num_threads(1)
GEN = torch.Generator().manual_seed(1234)


def quadratic(x):
    """Seed 000: a*x**2 + b*x + c with a=1, b=-2, c=1."""
    return 1.0 * torch.pow(x, 2) + -2.0 * x + 1.0


def test_seed_000_scalar_backward_gives_minus_2_at_0():
    result = check(quadratic, torch.tensor(0.0))
    assert result.verdict == "pass"
    assert result.inputs[0].analytic == pytest.approx(-2.0, abs=0)
    assert result.inputs[0].numeric == pytest.approx(-2.0, abs=1e-9)


def test_seed_000_non_scalar_backward_with_a_gradient_of_ones():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    result = check(quadratic, x, cotangent=torch.ones(2, 2))
    expected = np.array([[-2.0, -2.0], [0.0, 2.0]])
    assert result.passed
    np.testing.assert_array_equal(result.inputs[0].analytic, expected)
    np.testing.assert_allclose(result.inputs[0].numeric, expected, atol=1e-9)


def test_a_non_scalar_output_without_cotangent_uses_a_seeded_random_one():
    x = torch.tensor([[0.0, 0.5], [1.0, 2.0]], dtype=torch.float64)
    first, again, other = (check(quadratic, x, seed=s) for s in (7, 7, 8))
    assert first.passed
    np.testing.assert_array_equal(first.cotangent, again.cotangent)
    assert not np.array_equal(first.cotangent, other.cotangent)
    expected_vjp = first.cotangent * (2 * x.numpy() - 2)
    np.testing.assert_allclose(first.inputs[0].analytic, expected_vjp, rtol=1e-15)


def smooth_loss(x):
    return np.sum(np.sin(x) * np.exp(x / 3.0))


def smooth_grad(x):
    return np.cos(x) * np.exp(x / 3.0) + np.sin(x) * np.exp(x / 3.0) / 3.0


X64 = np.linspace(-1.5, 2.5, 9)


def test_float64_the_exact_gradient_passes():
    assert check(smooth_loss, X64, smooth_grad).verdict == "pass"


def test_float64_a_1e_4_relative_scale_error_fails():
    result = check(smooth_loss, X64, lambda x: smooth_grad(x) * (1 + 1e-4))
    assert result.verdict == "fail"


def test_a_single_flipped_element_fails_and_is_the_worst():
    def flipped(x):
        g = smooth_grad(x)
        g[4] = -g[4]
        return g

    result = check(smooth_loss, X64, flipped)
    assert result.verdict == "fail"
    assert result.inputs[0].worst_index == (4,)
    assert list(result.inputs[0].element_verdicts).count("fail") == 1


def test_a_transposed_square_matrix_gradient_fails():
    a = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.5, 0.2, -0.7]])

    def f(w):
        return np.sum(a * w**2)

    assert check(f, a.copy(), lambda w: 2 * a * w).passed
    assert check(f, a.copy(), lambda w: (2 * a * w).T).verdict == "fail"


# Seed 001 / 003 shapes in float32, checked with default settings.
W43 = torch.randn(4, 3, generator=GEN)
X31 = torch.randn(3, 1, generator=GEN)
W13 = torch.randn(1, 3, generator=GEN)
X13 = torch.randn(1, 3, generator=GEN)
W23 = torch.randn(2, 3, generator=GEN)
X2 = torch.tensor([0.6, 0.9])
T3 = torch.tensor([0.0, 0.0, 1.0])


def perceptron(w):
    o = torch.sigmoid(X13.to(w.dtype) @ w.T)
    return F.mse_loss(o, torch.ones(1, 1, dtype=w.dtype))


def perceptron_grad(w):
    o = torch.sigmoid(X13.to(w.dtype) @ w.T)
    return 2 * (o - 1) * o * (1 - o) * X13.to(w.dtype)


def mlp(w):
    o = torch.sigmoid(w @ X31.to(w.dtype))
    return F.mse_loss(o, torch.ones(4, 1, dtype=w.dtype))


def mlp_grad(w):
    """Seed 001's matrix form: (o(1-o)(o-t)) x^T / 2 (mse over 4 outputs: 2/4)."""
    x = X31.to(w.dtype)
    o = torch.sigmoid(w @ x)
    return (o * (1 - o) * (o - 1)) @ x.T / 2


def softmax_ce(w):
    z = X2.to(w.dtype) @ w
    return -(T3.to(w.dtype) * torch.log_softmax(z, dim=0)).sum()


def softmax_ce_grad(w):
    x = X2.to(w.dtype)
    return torch.outer(x, torch.softmax(x @ w, dim=0) - T3.to(w.dtype))


FLOAT32_CASES = [
    ("perceptron", perceptron, perceptron_grad, W13),
    ("mlp 4x3", mlp, mlp_grad, W43),
    ("softmax cross-entropy", softmax_ce, softmax_ce_grad, W23),
]


@pytest.mark.parametrize(("name", "f", "formula", "w"), FLOAT32_CASES)
def test_float32_correct_gradients_pass_by_autograd_and_by_formula(name, f, formula, w):
    for grad in (None, formula):
        result = check(f, w.clone(), grad)
        assert result.verdict == "pass", (name, result.summary(), result.table())


@pytest.mark.parametrize(("name", "f", "formula", "w"), FLOAT32_CASES)
def test_float32_a_1e_2_relative_error_fails(name, f, formula, w):
    result = check(f, w.clone(), lambda v: formula(v) * 1.01)
    assert result.verdict == "fail", (name, result.summary())


def test_float32_judged_against_a_float64_reference_with_its_measured_rounding():
    result = check(mlp, W43.clone())
    assert result.numerics.policy == "promoted"
    assert result.inputs[0].tolerance_basis == "measured"
    assert result.inputs[0].rtol == 1e-7  # the floor; the rest is |a - a64|, measured
    assert result.inputs[0].resolution < 1e-5  # sqrt(eps32) = 3.5e-4 would vouch for far less


def test_a_float32_formula_that_never_computes_in_float64_keeps_the_float32_tolerance():
    def formula32(v):  # casts down: its float64 run measures nothing
        return torch.autograd.functional.jacobian(mlp, v.float()).double()

    result = check(mlp, W43.clone(), formula32)
    assert result.inputs[0].tolerance_basis == "default"
    assert result.inputs[0].rtol == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
    assert result.verdict == "pass"


class WrongBackwardSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 2 * x * 1.001  # off by 0.1%


class RightBackwardSquare(WrongBackwardSquare):
    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 2 * x


def test_a_custom_autograd_function_is_checked_through_autograd():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    assert check(lambda v: RightBackwardSquare.apply(v).sum(), x).passed
    assert check(lambda v: WrongBackwardSquare.apply(v).sum(), x).verdict == "fail"


def test_the_callers_tensors_are_untouched_and_not_marked_requires_grad():
    x = torch.tensor([0.5, 1.5])
    before = x.clone()
    check(lambda v: (v**3).sum(), x)
    assert torch.equal(x, before)
    assert not x.requires_grad and x.grad is None


def test_several_inputs_with_a_formula_returning_a_tuple():
    a, b = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    result = check(lambda a, b: np.sum(a**2 * b), (a, b), lambda a, b: (2 * a * b, a**2))
    assert result.passed and len(result.inputs) == 2
    wrong = check(lambda a, b: np.sum(a**2 * b), (a, b), lambda a, b: (2 * a * b, a))
    assert wrong.verdict == "fail"
    assert [c.verdict for c in wrong.inputs] == ["pass", "fail"]


def test_evaluations_count_every_call_of_f():
    calls = []

    def f(x):
        calls.append(1)
        return (x**2).sum()

    result = check(f, torch.ones(3, dtype=torch.float64))
    assert result.evaluations == len(calls)


def test_f_returning_nan_is_inconclusive():
    with np.errstate(invalid="ignore", divide="ignore"):
        result = check(
            lambda x: np.sum(np.sqrt(x)), np.array([-1.0, 4.0]), lambda x: 0.5 / np.sqrt(x)
        )
    assert result.verdict == "inconclusive"
    assert any("NaN" in r for r in result.reasons)


def test_an_analytic_nan_where_the_numeric_is_finite_fails():
    result = check(smooth_loss, X64, lambda x: smooth_grad(x) * np.nan)
    assert result.verdict == "fail"


def test_the_result_is_a_frozen_dataclass_with_the_documented_fields():
    result = check(smooth_loss, X64, smooth_grad, seed=3)
    assert isinstance(result, CheckResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = Verdict.FAIL  # type: ignore[misc]
    c = result.inputs[0]
    assert result.seed == 3 and result.numerics.policy == "native" and result.passed
    assert c.max_abs_error >= 0 and c.max_rel_error >= 0 and c.worst_tolerance > 0
    # Every element passed at the first level: no error bar was needed, so none is reported.
    assert np.isnan(c.worst_error_estimate) and isinstance(c.worst_index, tuple)
    assert result.numerics.refined == (0,) and np.all(np.isnan(c.error_estimate))


def test_assert_gradients_close_raises_with_a_table_of_the_worst_elements():
    with pytest.raises(AssertionError) as info:
        assert_gradients_close(smooth_loss, X64, lambda x: smooth_grad(x) * 1.01)
    message = str(info.value)
    for header in ("index", "analytic", "numeric", "abs err", "rel err", "tolerance"):
        assert header in message
    assert message.startswith("gradient check fail")


def test_assert_gradients_close_returns_the_result_when_it_passes():
    assert assert_gradients_close(smooth_loss, X64, smooth_grad).passed


def test_a_numpy_input_without_a_formula_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"torch tensors.*grad="):
        check(smooth_loss, X64)


def test_a_gradient_of_the_wrong_shape_is_refused_naming_both_shapes():
    w = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\).*transposed"):
        check(lambda w: np.sum(w**2), w, lambda w: (2 * w).T)


def test_a_wrong_number_of_gradients_is_refused():
    with pytest.raises(ValueError, match=r"1 gradient\(s\) for 2 input\(s\)"):
        check(lambda a, b: np.sum(a * b), (np.ones(2), np.ones(2)), lambda a, b: b)


def test_a_non_callable_f_or_grad_is_refused():
    with pytest.raises(TypeError, match="f must be callable"):
        check("not a function", np.ones(2), lambda x: x)
    with pytest.raises(TypeError, match="grad must be"):
        check(lambda x: np.sum(x), np.ones(2), grad=3)


def test_a_cotangent_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="cotangent has shape"):
        check(quadratic, torch.zeros(2, 2), cotangent=torch.ones(3))


def test_per_input_tolerances_must_match_the_inputs():
    with pytest.raises(ValueError, match="rtol has 1 entries for 2 inputs"):
        check(
            lambda a, b: np.sum(a * b), (np.ones(2), np.ones(2)), lambda a, b: (b, a), rtol=[1e-3]
        )


class Scaled(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient: a planted scale bug."""

    @staticmethod
    def forward(ctx, y, factor):
        ctx.factor = factor
        return y.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.factor, None


def saturated_tanh(v):
    return torch.tanh(v).sum()


def sin_of_exp(v):
    return torch.sin(torch.exp(v / 4)).sum()


@pytest.mark.parametrize(
    ("f", "x"),
    [(saturated_tanh, 6.0), (sin_of_exp, 49.0)],
    ids=["tanh at 6", "sin(exp(x/4)) at 49"],
)
def test_float32_backprop_as_right_as_float32_allows_passes_and_a_5_percent_error_fails(f, x):
    # float32 autograd of tanh at 6 computes 1 - y**2 from a y rounded next to 1: 8e-4 off;
    # exp(12.25) carries a phase error of 8e-3 into sin. The same code in float64 measures that
    # rounding, and the tolerance allows for it, but no more.
    x32 = torch.tensor([x])
    assert check(f, x32).verdict == "pass"
    assert check(lambda v: Scaled.apply(f(v), 1.05), x32).verdict == "fail"
    assert check(lambda v: Scaled.apply(f(v), 1.05), x32.double()).verdict == "fail"


def test_float32_tanh_at_9_has_no_digit_left_so_it_passes_where_float64_still_sees_a_bug():
    # 1 - y**2 with y = tanh(9) in float32 is 1.25e-7 against the true 6.1e-8: a 5% error is
    # below float32's own rounding there, while float64 resolves it.
    x32 = torch.tensor([9.0])
    assert check(saturated_tanh, x32).verdict == "pass"
    assert check(lambda v: Scaled.apply(saturated_tanh(v), 1.05), x32.double()).verdict == "fail"
