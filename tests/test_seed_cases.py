"""The shipped cases reproduce the numbers the seeds print, and each has its declared verdict.

Expected values come from the seeds' printed output (../shared/seeds/) and from calculus done
by hand in the comments, never from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheck._cases.registry import import_case_module, load
from gradcheck._cases.runner import run_cases

torch.set_num_threads(1)
CASES = Path(__file__).resolve().parents[1] / "cases"


@pytest.fixture(scope="module")
def result():
    loaded = load([str(CASES)])
    assert loaded.errors == ()
    return run_cases(loaded.cases, seed=0)


@pytest.fixture(scope="module")
def rows(result):
    return {row.id: row for row in result.rows}


def analytic(rows, row_id, position=0):
    return rows[row_id].check.inputs[position].analytic


def test_every_shipped_case_has_the_verdict_it_declares(result):
    wrong = [(row.id, row.verdict, row.expected, row.error) for row in result.rows if not row.ok]
    assert wrong == []
    assert result.exit_code == 0


def test_the_shipped_cases_cover_every_seed_and_the_known_bad_examples(result):
    tags = {tag for row in result.rows for tag in row.tags}
    assert {"seed000", "seed001", "seed002", "seed003", "seed004", "known-bad"} <= tags
    assert sum(row.outcome == "xfailed" for row in result.rows) == 6  # 3 known-bad x 2 dtypes


def test_seed000_scalar_gradient_is_minus_2_at_0(rows):
    # printed: tensor(-2.)  (d/dx (x^2 - 2x + 1) = 2x - 2)
    for source in ("autograd", "parabola_grad"):
        for dtype in ("float64", "float32"):
            assert analytic(rows, f"seed000_parabola_scalar[{source}-{dtype}]") == -2.0


def test_seed000_matrix_backward_with_ones_gives_the_printed_gradient(rows):
    # printed: x_grad: tensor([[-2., -2.], [ 0.,  2.]])
    for source in ("autograd", "parabola_grad"):
        for dtype in ("float64", "float32"):
            grad = analytic(rows, f"seed000_parabola_matrix[{source}-{dtype}]")
            assert grad.tolist() == [[-2.0, -2.0], [0.0, 2.0]]


@pytest.mark.parametrize(
    ("point", "gradient"),
    [((3, 4), [6.0, 8.0]), ((0, 2), [0.0, 4.0]), ((3, 0), [6.0, 0.0])],
)
def test_seed003_function_2_gradients_at_the_three_printed_points(rows, point, gradient):
    name = f"seed003_function_2_at_{point[0]}_{point[1]}"
    for source in ("autograd", "function_2_grad"):
        assert analytic(rows, f"{name}[{source}-float64]").tolist() == gradient
        numeric = rows[f"{name}[{source}-float64]"].check.inputs[0].numeric
        assert numeric == pytest.approx(gradient, abs=1e-9)


def test_seed003_book_partials_print_the_books_numbers():
    quadratics = import_case_module(CASES / "quadratics.py")
    # printed: 6.00000000000378 (the book drops the dot: "600000000000378") and 7.999999999999119
    assert quadratics.numerical_diff(quadratics.function_tmp1, 3.0) == 6.00000000000378
    assert quadratics.numerical_diff(quadratics.function_tmp2, 4.0) == 7.999999999999119


def test_seed003_partials_are_6_and_8(rows):
    assert analytic(rows, "seed003_partial_x0[analytic-float64]") == 6.0
    assert analytic(rows, "seed003_partial_x1[autograd-float64]") == 8.0
    by_book = rows["seed003_partials_by_numerical_diff[numerical_diff-float64]"].check
    assert by_book.inputs[0].analytic == 6.00000000000378
    assert by_book.inputs[1].analytic == 7.999999999999119


def test_seed003_numerical_diff_as_printed_is_off_by_a_factor_h_squared(rows):
    # (f(x+h) - f(x-h)) / 2*h = ((f(x+h) - f(x-h)) / 2) * h = f'(x) h^2 = 6e-8 and 8e-8
    row = rows["bad_numerical_diff_precedence[numerical_diff_as_printed-float64]"]
    assert row.outcome == "xfailed"
    assert row.check.inputs[0].analytic == pytest.approx([6e-8, 8e-8], rel=1e-6)


def test_seed004_linear_mse_gradient_is_minus_28_thirds_at_w_1(rows):
    # x = [1, 2, 3], y = 2x, w = 1: mean(2 x (x - 2x)) = -2 mean(x^2) = -28/3
    for source in ("autograd", "linear_cost_grad"):
        assert analytic(rows, f"seed004_linear_mse[{source}-float64]") == pytest.approx(
            -28 / 3, rel=1e-15
        )


def test_seed002_quadratic_model_gradient_at_the_start(rows):
    # w1 = w2 = b = 1 predicts x^2 + x + 1 = [3, 7, 13] for y = [4, 9, 16]: r = [-1, -2, -3];
    # mean(2 r x^2) = 2 (-1 - 8 - 27)/3 = -24, mean(2 r x) = 2 (-1 - 4 - 9)/3 = -28/3,
    # mean(2 r) = -4.
    row = rows["seed002_quadratic_model_mse[quadratic_cost_grad-float64]"]
    got = [c.analytic for c in row.check.inputs]
    assert got == pytest.approx([-24.0, -28 / 3, -4.0], rel=1e-15)


def test_seed001_matrix_formula_matches_autograd_computed_here():
    perceptrons = import_case_module(CASES / "perceptrons.py")
    generator = torch.Generator().manual_seed(3)
    W = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 1, generator=generator, dtype=torch.float64)
    t = torch.ones(4, 1, dtype=torch.float64)
    torch.nn.functional.mse_loss(torch.sigmoid(W @ x), t).backward()
    formula = perceptrons.matGrad(W.detach(), x, t)
    assert torch.allclose(formula, W.grad, rtol=1e-14, atol=1e-16)


def test_seed001_and_seed003_rows_pass_in_both_dtypes(rows):
    for name in (
        "seed001_single_layer_perceptron",
        "seed001_mlp_matrix_gradient",
        "seed003_simple_net_softmax_ce",
    ):
        found = [row for row in rows.values() if row.case == name]
        assert len(found) == 4 and all(row.verdict == "pass" for row in found)


def run_of(rows, row_id):
    return rows[row_id].descent


def test_seed000_sgd_reaches_x_1_0000_and_y_0(rows):
    # printed: y= tensor(0.) ; x= tensor(1.0000)   (x = 1 - 0.98^500 = 0.99995...)
    for dtype in ("float64", "float32"):
        d = run_of(rows, f"seed000_sgd_parabola[autograd-{dtype}]")
        for run in (d.analytic, d.numerical):
            assert f"{run.params['x'][0]:.4f}" == "1.0000"
            assert run.params["x"][0] == pytest.approx(1 - 0.98**500, rel=1e-6)
    float32 = run_of(rows, "seed000_sgd_parabola[autograd-float32]")
    assert float32.analytic.readout["y"] == 0.0  # float32 rounds 1.7e-9 + 1 - ... to 0


def test_seed004_gradient_descent_reaches_w_2_and_predicts_8(rows):
    # each step multiplies w - 2 by 1 - 0.01 * 28/3; after 100: w = 2 - 0.9067^100 = 1.99994
    expected_w = 2 - (1 - 0.01 * 28 / 3) ** 100
    d = run_of(rows, "seed004_gd_linear[formula-float64]")
    for run in (d.analytic, d.numerical):
        assert run.params["w"][0] == pytest.approx(expected_w, rel=1e-12)
        assert run.readout["predict(4)"] == pytest.approx(8.0, abs=1e-3)
    assert d.analytic.losses[0] == pytest.approx(14 / 3)  # the first cost printed, at w = 1
    sgd = run_of(rows, "seed004_sgd_linear[formula-float64]")
    assert sgd.analytic.readout["predict(4)"] == pytest.approx(8.0, abs=1e-6)


def test_seed002_sgd_predicts_25_152_at_x_4_after_1000_epochs(rows):
    # printed: predict (after training) 4 25.152122497558594   (float32, torch)
    float32 = run_of(rows, "seed002_sgd_quadratic_model[autograd-float32]")
    assert float32.analytic.readout["predict(4)"] == 25.152122497558594
    assert float32.numerical.readout["predict(4)"] == pytest.approx(25.152, abs=1e-3)
    for run in (float32.analytic, float32.numerical):
        assert len(run.losses) == 1000 and run.losses[-1] < run.losses[0]
    # the model's prediction before training, printed as 21.0: 16 + 4 + 1
    descent_cases = import_case_module(CASES / "descent.py")
    assert descent_cases.quadratic_readout(1.0, 1.0, 1.0) == {"predict(4)": 21.0}


def test_the_known_bad_examples_fail_by_a_wide_margin(rows):
    for name in ("bad_sigmoid_derivative_s", "bad_softmax_ce_forgets_softmax"):
        for row in (r for r in rows.values() if r.case == name):
            assert row.outcome == "xfailed" and row.max_rel_error > 0.1


def test_descent_rows_keep_both_loss_curves_for_plotting(rows):
    d = run_of(rows, "seed004_gd_linear[formula-float32]")
    assert len(d.analytic.losses) == len(d.numerical.losses) == 100
    assert np.all(np.diff(d.analytic.losses) < 0)  # gradient descent on a convex cost
