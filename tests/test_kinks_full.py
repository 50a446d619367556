"""Full mode at kinks and domain edges: sqrt at 0 is never a fail, sqrt next to 0 is decided,
and a value between the one-sided derivatives passes as a subgradient.

Expected verdicts come from the maths: autograd's ``sqrt`` gradient at 0 is ``+inf``, the right
derivative there (the left side is outside the domain), so it is never wrong; next to 0 the
derivative ``1 / (2 sqrt(x))`` is smooth but curves fast, and a small enough step resolves it;
``relu`` and ``abs`` at 0 have one-sided derivatives (0, 1) and (-1, 1), which bracket
autograd's 0.
"""

from __future__ import annotations

import pytest
import torch

import gradcheck

torch.set_num_threads(1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "values",
    [[0.0], [0.0, 0.0], [0.0, 1.0, 4.0], [-0.0, 2.5], [0.0, 1e-3, 3.0]],
    ids=["zero", "zeros", "zero-and-others", "minus-zero", "zero-and-near"],
)
@pytest.mark.parametrize("reduce", [True, False], ids=["sum", "vector"])
def test_sqrt_at_zero_is_never_called_fail(dtype, values, reduce):
    x = torch.tensor(values, dtype=dtype)

    def f(v):
        out = torch.sqrt(v)
        return out.sum() if reduce else out

    for seed in range(3):
        result = gradcheck.check(f, x, seed=seed)
        assert result.verdict != "fail", f"{result.summary()}\n{result.table()}"


def test_sqrt_next_to_zero_is_decided_by_a_smaller_step():
    # The automatic step (6e-6) is close to x = 1e-5, where sqrt curves fast; the kink ladder
    # finds sqrt smooth there and re-stepping resolves the element.
    x = torch.tensor([1e-5, 501.0, 1001.2], dtype=torch.float64)
    v = torch.tensor([-0.65, 0.17, 1.2], dtype=torch.float64)
    result = gradcheck.check(lambda t: (torch.sqrt(t) * v).sum(), x)
    assert result.verdict == "pass", result.table()
    assert float(result.inputs[0].analytic[0]) == pytest.approx(-0.65 / (2 * 1e-5**0.5))
    wrong = gradcheck.check(
        lambda t: (torch.sqrt(t) * v).sum(), x, lambda t: 0.5 / torch.sqrt(t) * v * (1 + 1e-3)
    )
    assert wrong.verdict == "fail"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("op", [torch.relu, torch.abs], ids=["relu", "abs"])
def test_a_value_between_the_one_sided_derivatives_passes_as_a_subgradient(op, dtype):
    x = torch.tensor([0.0, -1.5, 0.0, 2.0], dtype=dtype)
    result = gradcheck.check(lambda t: (op(t) * torch.arange(1, 5, dtype=dtype)).sum(), x)
    assert result.verdict == "pass", result.table()
    reasons = result.inputs[0].element_reasons
    # relu's central difference at 0 is 1/2 of the weight, autograd's 0: the kink analysis
    # decides; abs's central difference is 0 and agrees at once
    expected = ["subgradient", "subgradient"] if op is torch.relu else ["", ""]
    assert list(reasons[[0, 2]]) == expected
    outside = gradcheck.check(
        lambda t: op(t).sum(), x, lambda t: torch.where(t == 0, 3.0, torch.sign(t) * (t > -2))
    )
    assert outside.verdict != "pass"  # 3 is outside every one-sided derivative at 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_an_f_that_cancels_to_exactly_zero_is_not_a_fail(dtype):
    # torch's ndtr(-8.48) is exactly 0 (1 + erf cancels; the true value is 1e-17), while its
    # autograd gives the true derivative, 9.8e-17: no difference can see that, so no fail
    x = torch.tensor(-8.4784, dtype=dtype)
    assert float(torch.special.ndtr(x.double())) == 0.0
    assert gradcheck.check(torch.special.ndtr, x).verdict != "fail"
    # a real error where f is exactly 0 still fails
    wrong = gradcheck.check(lambda t: torch.relu(t).sum(), -x.new_ones(3), lambda t: t * 0 + 1e-9)
    assert wrong.verdict == "fail"
