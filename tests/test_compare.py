"""The verdict rule (gradcheck._judge.verdict.rule), table-driven over hand-made arrays.

Each row: analytic a, numeric n, error bar e, limit L (atol + rtol |n| and what widens it),
magnitude m (what a pass vouches for), and the verdict and reason the rule must give:
fail when |a - n| > L + e or a is not finite; inconclusive when n is not finite ('nonfinite')
or e > 1% of m ('wide'); pass otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck._judge.compare import compare
from gradcheck._judge.verdict import WIDE_ERROR_BAR, Verdict, rule, rule_verdict

INF, NAN = math.inf, math.nan

ROWS = [
    # a, n, e, L, m, verdict, reason
    (1.0, 1.0, 0.0, 1e-8, 1.0, "pass", ""),
    (1.0 + 2e-8, 1.0, 0.0, 1e-8, 1.0, "fail", ""),  # just outside L, no bar
    (1.0 + 2e-8, 1.0, 2e-8, 1e-8, 1.0, "pass", ""),  # the bar widens the tolerance
    (1.0 + 4e-8, 1.0, 2e-8, 1e-8, 1.0, "fail", ""),  # even the most favourable value is out
    (1.0, 1.0, 0.02, 1e-8, 1.0, "inconclusive", "wide"),  # bar wider than 1% of m
    (1.0, 1.0, 0.009, 1e-8, 1.0, "pass", ""),  # bar just inside 1%
    (2.0, 1.0, 0.02, 1e-8, 2.0, "fail", ""),  # a wide bar does not hide a clear fail
    (1.0, NAN, NAN, 1e-8, 1.0, "inconclusive", "nonfinite"),
    (1.0, INF, 0.0, 1e-8, 1.0, "inconclusive", "nonfinite"),
    (NAN, 1.0, 0.0, 1e-8, 1.0, "fail", ""),  # a NaN analytic value where n is finite
    (INF, 1.0, 0.0, 1e-8, 1.0, "fail", ""),
    (0.0, 0.0, 0.0, 0.0, 0.0, "pass", ""),  # exactly zero, nothing to vouch for
    (0.0, 0.0, 1e-20, 1e-30, 0.0, "pass", ""),  # a finite bar on a zero magnitude
    (0.0, 0.0, INF, 0.0, 0.0, "inconclusive", "wide"),  # an infinite bar vouches for nothing
    (-3.0, -3.0 + 1e-7, 0.0, 3e-7, 3.0, "pass", ""),  # sign does not matter
    # Pass is what the comparison shows: a NaN or an infinity anywhere is never a pass.
    (1.0, -INF, 0.0, 1e-8, 1.0, "inconclusive", "nonfinite"),
    (NAN, NAN, 0.0, 1e-8, 1.0, "inconclusive", "nonfinite"),  # nothing to compare with
    (-INF, 1.0, 0.0, 1e-8, 1.0, "fail", ""),
    (INF, 1.0, INF, INF, 1.0, "fail", ""),  # a non-finite analytic value stays a fail
    (1e14, 1.0, 0.0, NAN, 1e14, "inconclusive", "nonfinite"),  # a NaN limit: the hole
    (1.0, 1.0, 0.0, NAN, 1.0, "inconclusive", "nonfinite"),  # even where a and n agree
    (1e14, 1.0, 0.0, INF, 1e14, "inconclusive", "nonfinite"),  # an infinite limit
    (1e14, 1.0, NAN, 1e-8, 1e14, "inconclusive", "nonfinite"),  # a NaN error bar
    (1.0, 1.0, NAN, 1e-8, 1.0, "inconclusive", "nonfinite"),
    (1.0, 1.0, INF, 1e-8, 1.0, "inconclusive", "wide"),  # an infinite bar vouches for nothing
    (1e14, 1.0, INF, 1e-8, 1e14, "inconclusive", "wide"),  # ... and shows no fail either
    (1.0, 1.0, 0.0, 1e-8, NAN, "inconclusive", "wide"),  # nothing a pass could vouch for
    (1.0, 1.0, 0.001, 1e-8, INF, "pass", ""),  # an infinite magnitude asks no width
    (2.0, 1.0, 0.0, 1e-8, INF, "fail", ""),
]


@pytest.mark.parametrize(("a", "n", "e", "limit", "m", "verdict", "reason"), ROWS)
def test_the_rule_row_by_row(a, n, e, limit, m, verdict, reason):
    verdicts, why = rule(np.array([a]), np.array([n]), np.array([e]), limit, np.array([m]))
    assert (verdicts[0], why[0]) == (verdict, reason)


def test_the_rule_is_elementwise_over_whole_arrays():
    a, n, e, limit, m, verdict, reason = (np.array(col) for col in zip(*ROWS, strict=True))
    verdicts, why = rule(a, n, e, limit, m)
    assert verdicts.tolist() == verdict.tolist() and why.tolist() == reason.tolist()


def test_the_wide_threshold_is_one_percent():
    assert WIDE_ERROR_BAR == 0.01


def test_compare_applies_the_rule_with_the_default_tolerances():
    # float64: rtol = sqrt(eps) = 1.49e-8, atol = rtol * max|n| = 1.49e-8 * 4.
    numeric = np.array([1.0, -4.0, 0.0, 2.0])
    error = np.array([NAN, 1e-9, 1e-12, 1e-9])  # NaN: passed without a bar
    analytic = np.array([1.0 + 5e-8, -4.0, 3e-8, 2.0 + 2e-6])
    c = compare(0, numeric, error, analytic, dtype="float64")
    rtol = math.sqrt(np.finfo(np.float64).eps)
    assert c.rtol == pytest.approx(rtol) and c.atol == pytest.approx(4 * rtol)
    # 5e-8 < atol + rtol = 7.45e-8: pass; 3e-8 < atol: pass; 2e-6 > 1.5e-7: fail.
    assert c.element_verdicts.tolist() == ["pass", "pass", "pass", "fail"]
    assert c.verdict == "fail" and c.worst_index == (3,)
    assert math.isnan(c.error_estimate[0])  # kept as "no bar" in the result
    np.testing.assert_allclose(c.tolerance[0], 4 * rtol + rtol * 1.0)  # counted as 0
    assert c.max_abs_error == pytest.approx(2e-6)
    assert c.max_error_estimate == pytest.approx(1e-9)


def test_compare_widens_by_the_analytic_sides_own_rounding_and_says_so():
    numeric, analytic = np.array([1.0, 1.0]), np.array([1.0, 1.0 + 1e-5])
    plain = compare(0, numeric, np.zeros(2), analytic, dtype="float32")
    assert plain.verdict == "pass"  # float32 rtol 3.5e-4
    tight = compare(0, numeric, np.zeros(2), analytic, dtype="float64")
    assert tight.verdict == "fail"
    widened = compare(0, numeric, np.zeros(2), analytic, dtype="float64", widen=np.array([0, 2e-5]))
    assert widened.verdict == "pass"
    assert any("own float64 rounding" in note for note in widened.notes)


def test_the_rule_never_passes_where_a_number_is_missing():
    """Every combination of NaN/+Inf/-Inf in a, n, e and the limit: a pass needs them all
    finite (an infinite bar vouches for nothing either)."""
    special = [NAN, INF, -INF]
    for column in range(4):
        for value in special:
            row = [1.0, 1.0, 0.0, 1e-8]
            row[column] = value
            a, n, e, limit = row
            verdicts, _ = rule(np.array([a]), np.array([n]), np.array([e]), limit, 1.0)
            assert verdicts[0] != "pass", (column, value)


def test_rule_verdict_combines_the_rule_over_a_set_of_comparisons():
    assert rule_verdict(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 0.0, 1e-8, 2.0) is Verdict.PASS
    assert rule_verdict(np.array([1.0, 2.5]), np.array([1.0, 2.0]), 0.0, 1e-8, 2.0) is Verdict.FAIL
    assert rule_verdict(1.0, 1.0, 0.0, NAN, 1.0) is Verdict.INCONCLUSIVE
    # a fail anywhere fails the set, whatever else is unknown
    assert rule_verdict(np.array([NAN, 2.5]), np.array([NAN, 2.0]), 0.0, 1e-8, 2.0) is Verdict.FAIL


def test_one_comparison_of_plain_floats_gets_the_verdict_of_the_table():
    """rule_verdict judges plain floats without arrays; every row of the table, given as
    floats, gets the verdict the table gives."""
    for a, n, e, limit, m, verdict, _ in ROWS:
        assert rule_verdict(float(a), float(n), float(e), float(limit), float(m)).value == verdict


def test_plain_floats_and_arrays_give_the_same_verdict_on_every_edge_value():
    """The float path and the array path of the rule agree on every combination of zeros,
    signs, tiny and huge values, infinities and NaN in all five places."""
    import itertools

    values = [0.0, 1.0, -1.0, 1e-300, 1e300, 0.005, INF, -INF, NAN]
    for combo in itertools.product(values, repeat=5):
        arrays = rule_verdict(*(np.array([v]) for v in combo))
        assert rule_verdict(*combo) is arrays, combo
