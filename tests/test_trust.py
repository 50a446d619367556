"""A wrong gradient never passes where f is NaN or infinite on one side of an element's step.

At x = 1e-7 the automatic step (about 6e-6) reaches below 0, where log is NaN (and the second
f below is +inf): the central difference is not finite there, so the element is left to the
Taylor test, which sees the remainder shrink at order 1. The analytic value 1/x**2 = 1e14 is
seven orders of magnitude off the true 1/x = 1e7: a fail, decided by the Taylor test. The right
gradient still passes (the Taylor test sees order 2 on the side where f is defined).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check

X = np.array([1e-7, 1.0])


def log_sum(x):
    with np.errstate(invalid="ignore"):
        return np.log(x).sum()


def minus_log_or_inf(x):
    """-log(x) for x > 0, +inf at and below 0."""
    with np.errstate(divide="ignore"):
        return np.where(x > 0, -np.log(np.abs(x)), np.inf).sum()


CASES = [
    pytest.param(log_sum, lambda x: 1 / x**2, lambda x: 1 / x, id="nan-below-zero"),
    pytest.param(minus_log_or_inf, lambda x: -1 / x**2, lambda x: -1 / x, id="inf-below-zero"),
]


@pytest.mark.parametrize(("f", "wrong", "right"), CASES)
def test_a_wrong_gradient_where_f_is_not_finite_on_one_side_is_not_a_pass(f, wrong, right):
    result = check(f, X, wrong)
    assert result.verdict == "fail", result.summary()
    c = result.inputs[0]
    assert c.element_verdicts[0] == "fail" and c.element_reasons[0] == "taylor"
    assert c.element_verdicts[1] == "pass"  # 1/x**2 = 1/x at x = 1


@pytest.mark.parametrize(("f", "wrong", "right"), CASES)
def test_the_right_gradient_there_still_passes(f, wrong, right):
    assert check(f, X, right).verdict == "pass"
