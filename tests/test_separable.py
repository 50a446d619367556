"""The elementwise path: every element moved at once when f is elementwise, then summed. Expected
derivatives come from calculus; the structure is refused where it does not hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chains import CHAIN_OPS
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradcheck import check, estimate_gradient
from gradcheck._numerics import separable as _separable
from gradcheck._numerics.engine import ROUNDING_POINTS

torch.set_num_threads(1)


def tanh_sq(x):
    return (torch.tanh(x) ** 2).sum()


def tanh_sq_grad(x):
    t = np.tanh(x.numpy())
    return 2 * t * (1 - t**2)


def test_an_elementwise_sum_costs_a_few_evaluations_whatever_n():
    x = torch.linspace(-3, 3, 2000, dtype=torch.float64)
    estimate = estimate_gradient(tanh_sq, (x,))
    assert estimate.path == "separable"
    assert "elementwise in input 0" in estimate.path_reason
    # f(x), two vmap trial rows, the trace, four stencil passes, two structure trials.
    assert estimate.evaluations == 1 + 2 + 1 + 4 + 2 + ROUNDING_POINTS
    assert np.all(np.abs(estimate.values[0] - tanh_sq_grad(x)) <= estimate.errors[0])


def test_a_mean_divides_by_the_number_of_terms():
    x = torch.linspace(-2, 2, 300, dtype=torch.float64).reshape(20, 15)
    estimate = estimate_gradient(lambda v: torch.nn.functional.softplus(v).mean(), (x,))
    assert estimate.path == "separable"
    expected = 1 / (1 + np.exp(-x.numpy())) / 300
    assert np.all(np.abs(estimate.values[0] - expected) <= estimate.errors[0])


class ScaledSwish(torch.autograd.Function):
    """x * sigmoid(x), with a backward that can be wrong in one element."""

    wrong_element: int | None = None

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        grad = grad_out * (s + x * s * (1 - s))
        if ScaledSwish.wrong_element is not None:
            grad = grad.clone()
            grad.view(-1)[ScaledSwish.wrong_element] *= 1 + 1e-4
        return grad


@pytest.fixture
def swish():
    yield ScaledSwish
    ScaledSwish.wrong_element = None


def test_a_custom_activation_is_checked_element_by_element_in_a_few_passes(swish):
    results = [
        check(swish.apply, torch.linspace(-4, 4, n, dtype=torch.float64), mode="full")
        for n in (1500, 6000)
    ]
    for result in results:
        assert result.passed, result.summary()
        assert result.numerics.path == "separable"
    # The step pilot's 32 points, a dozen passes, and a ladder for an element flagged as
    # turning inside the stencil (swish has its minimum at -1.278): not 4n at either size.
    assert all(result.evaluations < 64 for result in results)


def test_a_one_element_bug_in_a_custom_backward_is_found_at_that_element(swish):
    swish.wrong_element = 1234
    x = torch.linspace(-4, 4, 1500, dtype=torch.float64)
    result = check(swish.apply, x, mode="full")
    assert result.verdict == "fail"
    assert result.numerics.path == "separable"
    assert result.inputs[0].worst_index == (1234,)
    assert np.flatnonzero(result.inputs[0].element_verdicts.reshape(-1) == "fail").tolist() == [
        1234
    ]


def test_an_elementwise_input_beside_a_broadcast_one_takes_each_its_path():
    x = torch.linspace(-2, 2, 100, dtype=torch.float64)
    w = torch.tensor(0.7, dtype=torch.float64)
    estimate = estimate_gradient(lambda a, b: torch.tanh(b * a).sum(), (x, w))
    assert estimate.path == "separable"
    assert "elementwise in input 0" in estimate.path_reason
    assert "other inputs: torch.func.vmap(f)" in estimate.path_reason
    sech2 = 1 - np.tanh(0.7 * x.numpy()) ** 2
    assert np.all(np.abs(estimate.values[0] - 0.7 * sech2) <= estimate.errors[0])
    assert abs(estimate.values[1] - np.sum(x.numpy() * sech2)) <= estimate.errors[1]


@pytest.mark.parametrize(
    ("f", "why"),
    [
        (lambda v: ((v - v.mean()) ** 2).sum(), "aten.mean.default is not elementwise"),
        (lambda v: torch.cumsum(v, 0).sum(), "aten.cumsum.default is not elementwise"),
        (lambda v: (v[1:] * v[:-1]).sum(), "the summed terms have shape (63,)"),
        (lambda v: v.clone().mul_(2.0).sum(), "writes in place"),
        (lambda v: torch.dot(v, v), "does not end in a full sum or mean"),
        (lambda v: v.sum(0, keepdim=True).sum(), "the summed terms have shape (1,)"),
        (lambda v: (v * v.flip(0)).sum(), "aten.flip.default is not elementwise"),
        (lambda v: torch.nn.functional.dropout(v, 0.5).sum(), "draws random numbers"),
        (lambda v: (v * v).sum() if v.sum() > 0 else v.sum(), "is not elementwise"),
    ],
)
def test_coupled_or_random_f_is_not_taken_for_elementwise(f, why):
    x = torch.linspace(-1, 1, 64, dtype=torch.float64)
    structure = _separable.trace(f, [x])
    reason = structure if isinstance(structure, str) else structure.why_not[0]
    assert why in reason
    assert estimate_gradient(f, (x,)).path != "separable"


def test_coupling_the_trace_cannot_see_is_caught_by_moving_half_the_elements():
    def hidden_cumsum(v):  # a NumPy round trip: the trace sees only the final sum
        return torch.from_numpy(np.cumsum(v.numpy())).sum()

    x = torch.linspace(-1, 1, 64, dtype=torch.float64)
    assert _separable.trace(hidden_cumsum, [x]).inputs == {0}
    estimate = estimate_gradient(hidden_cumsum, (x,))
    assert estimate.path == "loop"
    assert "the elementwise structure did not hold" in estimate.path_reason
    expected = np.arange(64, 0, -1, dtype=np.float64)  # d/dx_i sum_j cumsum_j = n - i
    assert np.all(np.abs(estimate.values[0] - expected) <= estimate.errors[0])
    result = check(hidden_cumsum, x, lambda v: torch.from_numpy(expected))
    assert result.passed, result.summary()
    assert result.numerics.path == "loop"
    assert "the elementwise structure did not hold" in result.numerics.path_reason


def test_float32_f_that_casts_inside_is_still_elementwise():
    def casts(v):
        return torch.sin(v.to(torch.float32)).sum()

    x = torch.linspace(-1, 1, 200, dtype=torch.float32)
    result = check(casts, x, mode="full")
    # its float64 side computes the cast in float64 (gradcheck._sources.promote)
    assert result.numerics.policy == "promoted"
    assert result.numerics.path == "separable"
    assert result.passed, result.summary()
    assert result.inputs[0].tolerance_basis == "measured"


def test_the_callers_tensor_is_untouched_when_f_raises_on_the_moved_pass():
    x = torch.linspace(-1, 1, 64, dtype=torch.float64)
    before = x.clone()

    def f(v):
        if not torch.equal(v, before):
            raise RuntimeError("moved")
        return torch.sin(v).sum()

    with pytest.raises(RuntimeError, match="moved"):
        estimate_gradient(f, (x,))
    assert torch.equal(x, before)


def test_tracing_does_not_import_torch_dynamo(fresh_python):
    code = (
        "import sys, torch, gradcheck\n"
        "x = torch.linspace(-1, 1, 100, dtype=torch.float64)\n"
        "r = gradcheck.check(lambda v: torch.tanh(v).sum(), x)\n"
        "assert r.numerics.path == 'separable' and r.passed, r.summary()\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
        "print('ok')\n"
    )
    fresh_python(code)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(CHAIN_OPS)), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
    st.sampled_from([torch.float64, torch.float32]),
    st.sampled_from(["sum", "mean"]),
)
def test_random_elementwise_chains_agree_with_the_loop_and_catch_a_planted_error(
    chain, seed, dtype, reduce
):
    def terms(v):
        for name in chain:
            v = CHAIN_OPS[name](v)
        return v

    def f(v):
        return getattr(terms(v), reduce)()

    x = torch.from_numpy(np.random.default_rng(seed).uniform(-4, 4, 64)).to(dtype)
    fast = estimate_gradient(f, (x,))
    slow = estimate_gradient(f, (x,), batch="loop")
    assert fast.path == "separable", fast.path_reason
    # Two estimates of the same derivatives, by different evaluations: within both error bars.
    assert np.all(np.abs(fast.values[0] - slow.values[0]) <= fast.errors[0] + slow.errors[0])

    exact = torch.func.grad(f)(x.double())
    assert check(f, x).verdict != "fail"
    j = int(np.random.default_rng(seed + 1).integers(64))
    assume(float(exact[j].abs()) > 0.1 * float(exact.abs().max()))
    wrong = exact.clone()
    wrong[j] *= 1 + (1e-4 if dtype == torch.float64 else 1e-2)
    result = check(f, x, lambda v: wrong.to(dtype))
    assert result.verdict == "fail", result.summary()
    assert result.numerics.path == "separable"
    assert np.flatnonzero(result.inputs[0].element_verdicts.reshape(-1) == "fail").tolist() == [j]


def test_an_input_whose_structure_fails_leaves_the_others_on_the_elementwise_path():
    def f(a, b):  # a's coupling is hidden in NumPy; b is elementwise
        return (torch.from_numpy(np.cumsum(a.numpy())) + torch.sin(b)).sum()

    a = torch.linspace(-1, 1, 64, dtype=torch.float64)
    b = torch.linspace(0, 2, 64, dtype=torch.float64)
    estimate = estimate_gradient(f, (a, b))
    assert estimate.path == "separable"
    assert estimate.path_reason.startswith("f is elementwise in input 1, then summed")
    assert "other inputs: the elementwise structure did not hold" in estimate.path_reason
    expected = np.arange(64, 0, -1, dtype=np.float64)
    assert np.all(np.abs(estimate.values[0] - expected) <= estimate.errors[0])
    assert np.all(np.abs(estimate.values[1] - np.cos(b.numpy())) <= estimate.errors[1])


def test_kinks_at_many_elements_are_refined_in_a_few_passes_not_a_ladder_each():
    # relu has a kink at 0 with subgradients [0, 1]; autograd's 0 is one of them, and the plain
    # central difference there is 1/2, so each goes to the second level and its ladder.
    x = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    x[::20] = 0.0
    result = check(lambda v: torch.relu(v).sum(), x, mode="full")
    assert result.passed, result.summary()
    assert result.numerics.path == "separable"
    reasons = np.asarray(result.inputs[0].element_reasons).reshape(-1)
    assert np.flatnonzero(reasons == "subgradient").tolist() == list(range(0, 4001, 20))
    assert set(reasons[reasons != "subgradient"].tolist()) == {""}
    # One ladder of 14 points per kink would alone cost 201 * 14 = 2814 evaluations.
    assert result.evaluations < 100


def test_elements_restepped_for_a_large_constant_cost_a_few_passes():
    # Terms of 2e5 make f ~ 1e8: its rounding widens the error bars until the bar decides
    # the verdict, and the most decided elements (64 at most) are tried at larger steps.
    x = torch.linspace(0.5, 2, 500, dtype=torch.float64)
    result = check(lambda v: (v**3 + 2e5).sum(), x, mode="full")
    looped = check(lambda v: (v**3 + 2e5).sum(), x, mode="full", batch="loop")
    for r in (result, looped):
        comparison = r.inputs[0]
        reasons = np.asarray(comparison.element_reasons).reshape(-1)
        assert r.passed, r.summary()
        assert np.sum(reasons == "refined") == 64
        numeric = np.asarray(comparison.numeric).reshape(-1)
        bars = np.asarray(comparison.error_estimate).reshape(-1)
        assert np.all(np.abs(numeric - 3 * x.numpy() ** 2) <= bars)
    assert result.numerics.path == "separable"
    assert result.evaluations < 100 < 4 * x.numel() < looped.evaluations


def test_auto_mode_checks_every_element_of_a_large_elementwise_f(swish):
    # Above 4096 elements 'auto' screens, unless f is elementwise: then a full check is cheap.
    swish.wrong_element = 7000
    x = torch.linspace(-4, 4, 10_000, dtype=torch.float64)
    result = check(swish.apply, x)
    assert (result.mode, result.numerics.path, result.verdict) == ("full", "separable", "fail")
    verdicts = result.inputs[0].element_verdicts.reshape(-1)
    assert np.flatnonzero(verdicts == "fail").tolist() == [7000]
    assert result.evaluations < 100
    swish.wrong_element = None
    assert check(swish.apply, x).passed


def test_auto_mode_still_screens_a_large_f_that_is_not_elementwise_at_one_more_call():
    x = torch.linspace(-1, 1, 5000, dtype=torch.float64)
    result = check(lambda v: (v[1:] * v[:-1]).sum(), x)
    assert (result.mode, result.verdict) == ("screen", "pass")
    # The trace is a call of its own, after the plain first call (whose error is the check's);
    # that first call runs without grad there, so autograd and the backward's contract make
    # a forward each, which mode 'screen' takes from its first call's graph.
    screened = check(lambda v: (v[1:] * v[:-1]).sum(), x, mode="screen")
    assert result.evaluations == screened.evaluations + 3


def test_auto_mode_screens_after_all_when_the_structure_fails_on_a_later_pass():
    # A NumPy round trip the trace cannot see couples neighbours: f(x) = sum_i x_(i-1) x_i
    # (cyclic), whose gradient is x_(i-1) + x_(i+1).
    def hidden(v):
        return (torch.as_tensor(np.roll(v.detach().numpy(), 1)) * v).sum()

    def grad(v):
        return np.roll(v.numpy(), 1) + np.roll(v.numpy(), -1)

    x = torch.linspace(-1, 1, 5000, dtype=torch.float64)
    result = check(hidden, x, grad=grad)
    assert result.mode == "screen"
    assert any("screened after all" in r and "did not hold" in r for r in result.reasons)
    assert result.passed, result.summary()


def test_auto_mode_screens_a_large_elementwise_f_when_the_loop_is_asked_for():
    x = torch.linspace(-1, 1, 5000, dtype=torch.float64)
    assert check(tanh_sq, x, batch="loop").mode == "screen"
