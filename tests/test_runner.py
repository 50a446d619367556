"""Collect: one row per case x source x dtype, exceptions captured, expectations weighed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import case, descent, normal, run
from gradcheck._cases.runner import outcome_of, run_cases, sample_inputs

torch.set_num_threads(1)


def square(x):
    return (x**2).sum()


def by_id(result):
    return {row.id: row for row in result.rows}


def test_each_source_and_dtype_gets_its_own_row_with_the_cases_fields():
    c = case(
        name="square",
        f=square,
        inputs={"x": np.array([3.0, 4.0])},
        grad=lambda x: 2 * x,
        autograd=True,
        tags=["t"],
    )
    result = run_cases([c], seed=5)
    assert [r.id for r in result.rows] == [
        "square[autograd-float64]",
        "square[autograd-float32]",
        "square[formula-float64]",
        "square[formula-float32]",
    ]
    row = result.rows[0]
    assert (row.verdict, row.outcome, row.expected, row.kind) == ("pass", "passed", "pass", "check")
    assert (row.file, row.line, row.tags, row.parameters) == (
        "tests/test_runner.py",
        c.line,
        ("t",),
        2,
    )
    assert row.check is not None and row.check.inputs[0].analytic.tolist() == [6.0, 8.0]
    assert result.seed == 5 and result.ok and result.exit_code == 0


def test_the_dtype_filter_keeps_only_the_asked_dtypes():
    c = case(name="square", f=square, inputs={"x": np.ones(2)}, grad=lambda x: 2 * x)
    result = run_cases([c], dtypes=["float32"])
    assert [r.dtype for r in result.rows] == ["float32"]


def test_a_wrong_gradient_fails_and_makes_the_run_not_ok():
    c = case(name="wrong", f=square, inputs={"x": np.array([3.0, 4.0])}, grad=lambda x: 2.01 * x)
    result = run_cases([c], dtypes=["float64"])
    assert result.rows[0].verdict == "fail" and result.rows[0].outcome == "failed"
    assert not result.ok and result.exit_code == 1


def test_a_known_bad_case_that_fails_is_an_expected_failure():
    c = case(name="bad", f=square, inputs={"x": np.ones(2)}, grad=lambda x: x, expect="fail")
    result = run_cases([c])
    assert {r.outcome for r in result.rows} == {"xfailed"}
    assert result.ok and result.exit_code == 0


def test_a_known_bad_case_that_passes_is_a_failure():
    c = case(name="fixed", f=square, inputs={"x": np.ones(2)}, grad=lambda x: 2 * x, expect="fail")
    result = run_cases([c], dtypes=["float64"])
    assert result.rows[0].outcome == "xpassed" and result.exit_code == 1


@pytest.mark.parametrize(
    ("expected", "verdict", "outcome"),
    [
        ("pass", "pass", "passed"),
        ("pass", "fail", "failed"),
        ("pass", "inconclusive", "failed"),
        ("fail", "fail", "xfailed"),
        ("fail", "pass", "xpassed"),
        ("fail", "inconclusive", "failed"),
        ("inconclusive", "inconclusive", "xfailed"),
        ("pass", "error", "error"),
    ],
)
def test_outcomes_weigh_the_verdict_against_the_expectation(expected, verdict, outcome):
    assert outcome_of(expected, verdict) == outcome


def test_an_exception_in_a_case_becomes_an_error_row_and_the_next_case_still_runs():
    def explode(x):
        raise ZeroDivisionError("no luck")

    broken = case(name="a_broken", f=explode, inputs={"x": np.ones(2)}, grad=lambda x: x)
    fine = case(name="b_fine", f=square, inputs={"x": np.ones(2)}, grad=lambda x: 2 * x)
    result = run_cases([broken, fine], dtypes=["float64"])
    rows = by_id(result)
    error = rows["a_broken[formula-float64]"]
    assert (error.verdict, error.outcome, error.error) == (
        "error",
        "error",
        "ZeroDivisionError: no luck",
    )
    assert "explode" in error.traceback
    assert rows["b_fine[formula-float64]"].outcome == "passed"
    assert result.exit_code == 1


def test_a_formula_returning_the_wrong_shape_is_an_error_row_that_says_so():
    c = case(name="shape", f=square, inputs={"x": np.ones((2, 3))}, grad=lambda x: 2 * x.T)
    row = run_cases([c], dtypes=["float64"]).rows[0]
    assert row.outcome == "error" and "transposed" in row.error


def test_constants_are_passed_by_name_and_only_wrt_is_differentiated():
    seen = {}

    def cost(w, x, y):
        seen["x"] = x
        return ((x * w - y) ** 2).mean()

    c = case(
        name="linear",
        f=cost,
        inputs={"w": 1.0, "x": np.array([1.0, 2.0, 3.0]), "y": np.array([2.0, 4.0, 6.0])},
        wrt="w",
        grad=lambda w, x, y: (2 * x * (x * w - y)).mean(),
    )
    row = run_cases([c], dtypes=["float64"]).rows[0]
    assert row.outcome == "passed" and row.parameters == 1
    # d/dw mean((x w - y)^2) at w = 1 is mean(2 x (x - 2x)) = -2 mean(x^2) = -28/3
    assert row.check.inputs[0].analytic == pytest.approx(-28 / 3, rel=1e-15)
    assert isinstance(seen["x"], np.ndarray)


def test_autograd_gets_torch_tensors_and_a_formula_gets_numpy_arrays():
    kinds = []

    def f(x):
        kinds.append(type(x).__module__.split(".")[0])
        return (x**2).sum()

    c = case(name="kinds", f=f, inputs={"x": np.ones(2)}, grad=lambda x: 2 * x, autograd=True)
    run_cases([c], dtypes=["float64"])
    assert "torch" in kinds and "numpy" in kinds


def test_float32_constants_follow_the_promoted_inputs_so_the_engine_can_promote():
    c = case(
        name="promoted",
        f=lambda w, x: (torch.sigmoid(x * w)).sum(),
        inputs={"w": np.array([0.5, -1.0]), "x": np.array([1.5, 2.0])},
        wrt="w",
    )
    row = run_cases([c], dtypes=["float32"]).rows[0]
    assert row.check.numerics.policy == "promoted", row.check.numerics.policy_reason


def test_sampled_inputs_depend_on_the_seed_and_are_replayed_by_it():
    c = case(name="sampled", f=square, inputs={"x": normal(3)}, grad=lambda x: 2 * x)
    first = run_cases([c], seed=1, dtypes=["float64"]).rows[0].check.inputs[0].analytic
    again = run_cases([c], seed=1, dtypes=["float64"]).rows[0].check.inputs[0].analytic
    other = run_cases([c], seed=2, dtypes=["float64"]).rows[0].check.inputs[0].analytic
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    x = sample_inputs(c, run_cases([c], seed=1).rows[0].seed)["x"]
    assert np.array_equal(first, 2 * x)


def test_the_users_arrays_are_never_modified():
    x = np.array([3.0, 4.0])
    data = np.array([1.0, 2.0])
    c = case(name="untouched", f=lambda x, d: (x**2 * d).sum(), inputs={"x": x, "d": data}, wrt="x")
    run_cases([c])
    assert x.tolist() == [3.0, 4.0] and data.tolist() == [1.0, 2.0]


def test_the_progress_callback_hears_of_every_row():
    calls = []
    c = case(name="square", f=square, inputs={"x": np.ones(2)}, grad=lambda x: 2 * x)
    run_cases(
        [c, case(name="s2", f=square, inputs={"x": np.ones(2)})],
        progress=lambda *a: calls.append(a),
    )
    assert [(done, total) for done, total, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[-1][2].id == "s2[autograd-float32]"


def test_a_non_scalar_function_is_checked_along_the_cases_cotangent():
    c = case(
        name="vjp",
        f=lambda x: x**2 - 2 * x + 1,
        inputs={"x": np.array([[0.0, 0.0], [1.0, 2.0]])},
        grad=lambda x, cotangent: cotangent * (2 * x - 2),
        autograd=True,
        cotangent=np.ones((2, 2)),
    )
    for row in run_cases([c]).rows:
        assert row.outcome == "passed"
        assert row.check.inputs[0].analytic.tolist() == [[-2.0, -2.0], [0.0, 2.0]]


def test_a_descent_case_agrees_with_its_numerical_twin_and_reaches_the_target():
    d = descent(
        name="gd",
        loss=lambda w, x, y: ((x * w - y) ** 2).mean(),
        grad=lambda w, x, y: (2 * x * (x * w - y)).mean(),
        params={"w": 1.0},
        data={"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]},
        epochs=100,
        readout=lambda w: {"predict(4)": 4 * w},
        target={"w": 2.0},
    )
    result = run_cases([d])
    assert [r.outcome for r in result.rows] == ["passed", "passed"]
    row = result.rows[0]
    # Each step multiplies w - 2 by 1 - 0.01 * 28/3, from w - 2 = -1.
    expected_w = 2 - (1 - 0.01 * 28 / 3) ** 100
    assert row.descent.analytic.params["w"][0] == pytest.approx(expected_w, rel=1e-12)
    assert row.descent.numerical.params["w"][0] == pytest.approx(expected_w, rel=1e-9)
    assert len(row.descent.analytic.losses) == 100
    assert row.descent.analytic.losses[0] == pytest.approx(14 / 3)  # mean(x^2) at w = 1
    assert row.descent.analytic.readout["predict(4)"] == pytest.approx(4 * expected_w)


def test_a_descent_with_a_wrong_gradient_parts_ways_with_the_numerical_run():
    d = descent(
        name="gd_wrong",
        loss=lambda w: (w - 3.0) ** 2,
        grad=lambda w: 1.5 * (w - 3.0),
        params={"w": 0.0},
        epochs=20,
        dtypes=["float64"],
    )
    row = run_cases([d]).rows[0]
    assert row.verdict == "fail" and "differ" in row.descent.reasons[0]


def test_a_descent_that_misses_its_target_fails_saying_which_run_reached_what():
    d = descent(
        name="short",
        loss=lambda w: (w - 3.0) ** 2,
        params={"w": 0.0},
        epochs=2,
        target={"w": 3.0},
        dtypes=["float64"],
    )
    row = run_cases([d]).rows[0]
    assert row.verdict == "fail"
    assert any("autograd run reached w = " in r and "not 3 ± 0.001" in r for r in row.reasons)


def test_run_loads_selects_and_runs_the_cases_under_a_path(tmp_path):
    (tmp_path / "m.py").write_text(
        "import numpy as np\nfrom gradcheck import case\n"
        "a = case(name='alpha', f=lambda x: (x**2).sum(), inputs={'x': np.ones(2)}, "
        "grad=lambda x: 2 * x)\n"
        "b = case(name='beta', f=lambda x: (x**2).sum(), inputs={'x': np.ones(2)}, "
        "grad=lambda x: 2 * x, tags=['t'])\n"
    )
    (tmp_path / "broken.py").write_text("raise ImportError('no such thing')\n")
    result = run([str(tmp_path)], keyword="beta", dtypes=["float64"])
    assert [r.id for r in result.rows] == ["beta[formula-float64]", result.rows[1].case]
    assert result.rows[1].kind == "load" and result.rows[1].error == "ImportError: no such thing"
    assert result.exit_code == 2
    assert [r.case for r in run([str(tmp_path)], tags=["t"]).rows if r.kind != "load"] == [
        "beta",
        "beta",
    ]


def test_a_case_can_declare_a_batched_form_of_f_and_the_check_batches_through_it():
    calls = []

    def f(x, c):
        calls.append(1)
        return np.sum(c * x**2)

    def declared(name, batched):
        x, c = np.linspace(-1, 1, 64), np.linspace(1, 2, 64)
        grad = lambda x, c: 2 * c * x  # noqa: E731
        inputs = {"x": x, "c": c}
        return case(name=name, f=f, inputs=inputs, wrt="x", grad=grad, batched=batched)

    # x: (B, 64); the constant c as it is.
    row = run_cases([declared("batched", lambda x, c: np.sum(c * x**2, axis=-1))]).rows[0]
    assert row.outcome == "passed", row.error
    assert row.check is not None and row.check.numerics.path == "batched"
    # f itself only at x (and the noise repeat, a pilot, a few ladders): not 4 * 64 times.
    assert len(calls) < row.check.evaluations / 4

    error = run_cases([declared("wrong", lambda x, c: np.sum(x**2, axis=-1))]).rows[0]
    assert error.outcome == "error"
    assert "a batched form must return f(*row) for every row" in error.error
