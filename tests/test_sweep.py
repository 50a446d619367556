"""The step-size sweep: the V of truncation and rounding, lost steps, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck._cases.sweep import DEFAULT_STEPS, sweep

torch.set_num_threads(1)


def function_2(x):
    """Seed 003: f(x0, x1) = x0**2 + x1**2, gradient (2 x0, 2 x1)."""
    return x[0] ** 2 + x[1] ** 2


def exp_sum(x):
    return np.sum(np.exp(x))


X = np.array([0.5])
EXP_GRADIENT = np.exp(X)


def error_at(result, dtype, step):
    curve = next(c for c in result.curves if c.dtype == dtype)
    index = int(np.argmin(np.abs(np.log(result.steps / step))))
    assert result.steps[index] == pytest.approx(step)
    return curve.errors[index]


@pytest.mark.parametrize("h", [1e-1, 3.16e-2, 1e-2])
def test_large_steps_show_the_truncation_error_of_a_central_difference(h):
    # (e^(x+h) - e^(x-h)) / 2h = e^x sinh(h)/h, so the relative error is sinh(h)/h - 1.
    result = sweep(exp_sum, X, EXP_GRADIENT, dtypes=("float64",), steps=[h])
    assert error_at(result, "float64", h) == pytest.approx(np.sinh(h) / h - 1, rel=1e-6)


@pytest.mark.parametrize(
    ("dtype", "low", "high"), [("float64", 1e-8, 1e-3), ("float32", 1e-4, 0.3)]
)
def test_the_error_is_a_v_whose_bottom_is_near_the_cube_root_of_eps(dtype, low, high):
    eps = float(np.finfo(dtype).eps)
    x = np.linspace(0.1, 0.9, 8)  # the worst of several elements: rounding is not luck
    result = sweep(exp_sum, x, np.exp(x), dtypes=(dtype,), steps=[*DEFAULT_STEPS, 10 * eps])
    curve = result.curves[0]
    best_step, best_error = curve.best(result.steps)
    assert low < best_step < high
    # Both arms rise well above the bottom: rounding on the left, truncation on the right.
    assert error_at(result, dtype, 1.0) > 1000 * best_error
    assert error_at(result, dtype, 10 * eps) > 1000 * best_error
    assert curve.chosen_step == pytest.approx(np.cbrt(eps), rel=1e-12)
    # The engine's step lands within a factor 30 of the best error on the grid.
    assert error_at(result, dtype, curve.chosen_step) < 30 * best_error


def test_seed_003_step_of_1e_50_is_lost_in_float32_and_float64_while_1e_4_works():
    assert np.float32(1e-50) == 0.0  # the seed: float32 cannot even represent it
    result = sweep(function_2, np.array([3.0, 4.0]), np.array([6.0, 8.0]), steps=[1e-50, 1e-4])
    for curve in result.curves:
        assert curve.lost[0] and np.isnan(curve.errors[0])
        assert not curve.lost[-1 if result.steps[-1] == 1e-4 else 1]
    assert error_at(result, "float32", 1e-4) < 1e-3
    assert "lost" in result.table()


def test_float32_loses_steps_that_float64_still_resolves():
    result = sweep(exp_sum, X, EXP_GRADIENT, steps=[1e-9])
    lost = {c.dtype: bool(c.lost[result.steps == 1e-9][0]) for c in result.curves}
    assert lost == {"float64": False, "float32": True}  # 1e-9 < float32 eps / 2 = 6e-8


def test_a_quadratic_has_no_truncation_error_so_a_unit_step_is_exact():
    result = sweep(function_2, np.array([3.0, 4.0]), np.array([6.0, 8.0]), steps=[1.0])
    assert error_at(result, "float64", 1.0) == 0.0


def test_the_engine_error_bar_covers_its_actual_error_in_both_dtypes():
    result = sweep(exp_sum, np.array([0.5, -1.5, 2.0]), np.exp([0.5, -1.5, 2.0]))
    for curve in result.curves:
        assert curve.engine_error <= curve.engine_estimate


def test_several_torch_inputs_are_swept_together_against_autograd():
    w = torch.tensor([[0.3, -0.7], [1.1, 0.2]], dtype=torch.float64)
    b = torch.tensor([0.1, -0.4], dtype=torch.float64)

    def loss(w, b):
        return torch.sigmoid(w @ torch.ones(2, dtype=w.dtype) + b).sum()

    leaves = (w.clone().requires_grad_(True), b.clone().requires_grad_(True))
    grads = torch.autograd.grad(loss(*leaves), leaves)
    result = sweep(loss, (w, b), tuple(g.numpy() for g in grads))
    assert result.elements == 6
    for curve in result.curves:
        assert curve.failure == ""
        assert np.nanmin(curve.errors) < (1e-9 if curve.dtype == "float64" else 1e-4)


def test_the_callers_inputs_are_not_modified():
    x = np.array([0.5, 1.5])
    before = x.copy()
    sweep(exp_sum, x, np.exp(x), steps=[1e-3, 1e-6])
    assert np.array_equal(x, before) and x.dtype == np.float64


def test_a_function_that_cannot_run_in_a_dtype_is_reported_for_that_dtype_only():
    def float64_only(x):
        if x.dtype != np.float64:
            raise TypeError("this kernel is float64 only")
        return np.sum(x**3)

    result = sweep(float64_only, X, 3 * X**2)
    by_dtype = {c.dtype: c for c in result.curves}
    assert by_dtype["float64"].failure == ""
    assert "TypeError in float32: this kernel is float64 only" in by_dtype["float32"].failure
    assert np.all(np.isnan(by_dtype["float32"].errors))


def test_the_table_lists_every_step_and_marks_the_engines_choice():
    result = sweep(exp_sum, X, EXP_GRADIENT, steps=[1e-3, 1e-2])
    lines = result.table().splitlines()
    assert lines[0].split() == ["h", "float64", "error", "float32", "error", "note"]
    assert len(lines) == 2 + 4  # header, rule, two grid steps, two chosen steps
    assert sum("engine's step in float64" in line for line in lines) == 1
    assert "float32: engine step h = 0.00492" in result.summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtypes": ("int32",)}, "dtype 'int32' cannot be swept; use one of"),
        ({"dtypes": ()}, "dtypes is empty"),
        ({"steps": [1e-3, -1.0]}, "steps must be positive and finite"),
        ({"steps": []}, "steps must be positive and finite"),
    ],
)
def test_bad_options_are_refused_with_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep(exp_sum, X, EXP_GRADIENT, **kwargs)


def test_a_reference_that_does_not_match_the_inputs_is_refused():
    with pytest.raises(ValueError, match="reference has 2 gradients for 1 inputs"):
        sweep(exp_sum, (X,), (EXP_GRADIENT, EXP_GRADIENT))
    with pytest.raises(ValueError, match="reference gradient 0 has 2 elements but input 0 has 1"):
        sweep(exp_sum, X, np.ones(2))
