"""Verdicts at the edges: kinks, jumps, noise, the Taylor test, complex step
(gradcheck._judge.kinks,
_noise, _taylor, _complex).

Expected values come from calculus: relu' is 0 left of 0 and 1 right of it, a max tie splits
evenly in torch, floor jumps by 1 at an integer, a Taylor remainder of a C^2 function is O(h^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gradcheck
from gradcheck._judge import kinks as _kinks
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Precision, Probe

torch.set_num_threads(1)

DTYPES = [torch.float64, torch.float32]
# The engine's automatic step at |x| <= 1 in float64 (and for promoted float32): eps ** (1/3).
H64 = float(np.finfo(np.float64).eps) ** (1 / 3)


def reasons(result: gradcheck.CheckResult, position: int = 0) -> list[str]:
    return [str(r) for r in result.inputs[position].element_reasons.reshape(-1)]


def verdicts(result: gradcheck.CheckResult, position: int = 0) -> list[str]:
    return [str(v) for v in result.inputs[position].element_verdicts.reshape(-1)]


# ---------------------------------------------------------------------------------------------
# Kinks


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_at_zero_with_autograd_passes_as_a_subgradient(dtype):
    x = torch.tensor([0.0, 1.5, -2.0], dtype=dtype)
    result = gradcheck.check(lambda x: torch.relu(x).sum(), x)
    assert result.verdict == "pass", result.summary()
    assert reasons(result) == ["subgradient", "", ""]
    assert "accepted as subgradients" in result.summary()


@pytest.mark.parametrize("dtype", DTYPES)
def test_abs_at_zero_with_autograd_passes_as_a_subgradient(dtype):
    x = torch.tensor([0.0, -0.5, 3.0], dtype=dtype)
    result = gradcheck.check(lambda x: (torch.abs(x) * torch.tensor([2.0, 1.0, 1.0])).sum(), x)
    assert result.verdict == "pass", result.summary()
    # Autograd's 0 is the mean of the one-sided derivatives, which the plain central
    # difference equals: the first level passes it, no kink analysis needed.
    assert reasons(result)[0] == ""
    assert result.numerics.refined == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_max_tie_passes_with_the_gradient_split_between_the_tied_elements(dtype):
    x = torch.tensor([1.0, 1.0, 0.0], dtype=dtype)
    result = gradcheck.check(lambda x: torch.max(x), x)
    assert result.verdict == "pass", result.summary()
    # The split 0.5/0.5 is what the central difference sees: a plain pass at the first level.
    assert reasons(result) == ["", "", ""]
    assert list(result.inputs[0].analytic) == [0.5, 0.5, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_elementwise_maximum_tie_passes_for_both_inputs(dtype):
    a = torch.tensor([1.0, 2.0], dtype=dtype)
    b = torch.tensor([1.0, 0.0], dtype=dtype)
    result = gradcheck.check(lambda a, b: torch.maximum(a, b).sum(), (a, b))
    assert result.verdict == "pass", result.summary()
    # torch splits the tie 0.5/0.5, the central difference's value: a plain pass.
    assert reasons(result, 0)[0] == reasons(result, 1)[0] == ""


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.clamp(x, -1.0, 1.0),
        torch.nn.functional.hardtanh,
        lambda x: torch.nn.functional.softshrink(x, 1.0),
    ],
    ids=["clamp", "hardtanh", "softshrink"],
)
def test_clamp_hardtanh_and_softshrink_at_their_corners_pass_as_subgradients(fn):
    x = torch.tensor([1.0, -1.0, 0.25], dtype=torch.float64)
    result = gradcheck.check(lambda x: fn(x).sum(), x)
    assert result.verdict == "pass", result.summary()
    assert reasons(result)[:2] == ["subgradient", "subgradient"]


def test_a_hand_formula_at_a_numpy_kink_is_judged_like_autograd():
    x = np.array([0.0, 2.0, -1.0])
    result = gradcheck.check(lambda x: np.sum(np.abs(x)), x, np.sign)
    assert result.verdict == "pass", result.summary()
    assert reasons(result) == ["", "", ""]  # sign(0) = 0 is the central difference at 0
    # A one-sided value is no central difference: the kink analysis accepts it.
    one_sided = gradcheck.check(
        lambda x: np.sum(np.abs(x)), x, lambda x: np.where(x >= 0, 1.0, -1.0)
    )
    assert one_sided.verdict == "pass", one_sided.summary()
    assert reasons(one_sided) == ["subgradient", "", ""]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_gradient_away_from_the_kink_still_fails(dtype):
    x = torch.tensor([0.0, 1.5, -2.0], dtype=dtype)
    wrong = torch.tensor([0.0, 1.01, 0.0], dtype=dtype)
    result = gradcheck.check(lambda x: torch.relu(x).sum(), x, lambda x: wrong)
    assert result.verdict == "fail", result.summary()
    assert verdicts(result) == ["pass", "fail", "pass"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_value_outside_the_one_sided_derivatives_at_a_kink_is_inconclusive_not_fail(dtype):
    x = torch.tensor([0.0, 1.5], dtype=dtype)
    outside = torch.tensor([-1.0, 1.0], dtype=dtype)  # relu'(0) lies in [0, 1]; -1 does not
    result = gradcheck.check(lambda x: torch.relu(x).sum(), x, lambda x: outside)
    assert result.verdict == "inconclusive", result.summary()
    assert reasons(result) == ["kink", ""]
    assert "left and right derivatives differ" in result.summary()
    assert "-1 lies outside the left and right derivatives 0 and 1" in result.summary()
    assert "kink" in result.table()


def test_the_edge_analysis_reports_the_left_and_right_derivatives_at_a_kink():
    # f(x) = 3 relu(x) - 2 relu(-x) at 0: left derivative 2, right derivative 3.
    def f(x):
        return 3 * np.maximum(x, 0.0) - 2 * np.maximum(-x, 0.0)

    estimate = _engine.estimate_gradient(lambda x: np.sum(f(x)), np.array([0.0]))
    probe = Probe(lambda x: np.sum(f(x)), (np.array([0.0]),), ["float64"])
    precision = Precision(eps_f=2.2e-16)
    edges = _kinks.analyse_edges(
        probe, 0, estimate.stencils[0], estimate.values[0], estimate.errors[0], 0.0, precision
    )
    assert edges.nonsmooth.kind[0] == "kink"
    assert edges.nonsmooth.left[0] == pytest.approx(2.0, rel=1e-9)
    assert edges.nonsmooth.right[0] == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize("where", [0.25, 0.29, 0.6])
def test_a_kink_inside_the_stencil_but_not_at_x_is_judged_with_a_smaller_step(where):
    # relu at x = where * h > 0: the derivative at x is 1, though x - h lies left of the kink.
    x = torch.tensor([where * H64], dtype=torch.float64)
    result = gradcheck.check(lambda x: torch.relu(x).sum(), x)
    assert result.verdict == "pass", result.summary()
    wrong = gradcheck.check(lambda x: torch.relu(x).sum(), x, lambda x: torch.zeros_like(x))
    assert wrong.verdict == "fail", wrong.summary()


def test_smooth_functions_get_no_edge_reasons():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    result = gradcheck.check(lambda x: (torch.sin(x) * torch.exp(x) + x**3).sum(), x)
    assert result.verdict == "pass", result.summary()
    assert set(reasons(result)) == {""}


def test_rounding_inside_a_cancelling_sum_is_not_mistaken_for_a_kink():
    # sum(v * a b^T) cancels heavily: |terms| ~ 100 |f|. Linear in every element: no kinks.
    rng = np.random.default_rng(3)
    a = torch.tensor(rng.uniform(-9, 9, (5, 1)))
    b = torch.tensor(rng.uniform(-9, 9, 5))
    v = torch.tensor(rng.standard_normal((5, 5)))
    result = gradcheck.check(lambda a, b: (v * (a * b)).sum(), (a, b))
    assert result.verdict == "pass", result.summary()
    assert "kink" not in reasons(result, 0) + reasons(result, 1)


# ---------------------------------------------------------------------------------------------
# Jumps


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_floor_step_is_a_jump_and_inconclusive_never_a_fail(dtype):
    x = torch.tensor([1.0, 2.5, -3.0], dtype=dtype)
    result = gradcheck.check(lambda x: (torch.floor(x) + x**2).sum(), x)
    assert result.verdict == "inconclusive", result.summary()
    assert reasons(result) == ["jump", "", "jump"]
    assert "f jumps here" in result.summary()


@pytest.mark.parametrize(
    "fn", [torch.sign, torch.ceil, torch.frac, torch.round], ids=["sign", "ceil", "frac", "round"]
)
def test_sign_ceil_frac_and_round_at_their_steps_are_jumps(fn):
    x = torch.tensor([0.0, 0.5, 2.0, 2.25], dtype=torch.float64)  # 0.5: round's tie step
    result = gradcheck.check(lambda x: fn(x).sum(), x)
    assert result.verdict != "fail", result.summary()
    assert "jump" in reasons(result)


def test_a_floor_step_inside_the_stencil_but_not_at_x_is_judged_with_a_smaller_step():
    x = torch.tensor([1 + 0.25 * H64, 1 - 0.29 * H64, 1 - 0.75 * H64], dtype=torch.float64)
    result = gradcheck.check(lambda x: torch.floor(x).sum(), x)
    assert result.verdict == "pass", result.summary()
    assert set(reasons(result)) == {"refined"}
    wrong = gradcheck.check(lambda x: torch.floor(x).sum(), x, lambda x: torch.ones_like(x))
    assert wrong.verdict == "fail", wrong.summary()


def test_a_jump_does_not_inflate_the_tolerance_of_the_other_elements():
    # floor's jump makes its central difference ~ 1/h; the scale of atol must ignore it.
    x = torch.tensor([1.0, 0.3], dtype=torch.float64)
    wrong = torch.tensor([0.0, 2 * 0.3 * 1.001], dtype=torch.float64)
    result = gradcheck.check(lambda x: (torch.floor(x) + x**2).sum(), x, lambda x: wrong)
    assert result.verdict == "fail", result.summary()
    assert verdicts(result) == ["inconclusive", "fail"]


# ---------------------------------------------------------------------------------------------
# Nondeterminism


def noisy(x):
    return np.sum(x**2) + 1e-10 * np.random.standard_normal()


def test_a_noisy_function_widens_the_tolerance_and_says_by_how_much():
    x = np.array([0.5, -1.0, 2.0])
    result = gradcheck.check(noisy, x, lambda x: 2 * x)
    assert result.verdict == "pass", result.summary()
    assert 3e-11 < result.noise_floor < 3e-10
    assert "f is nondeterministic" in result.summary()
    assert "tolerance widened by up to" in result.summary()


def test_a_one_percent_error_still_fails_under_small_noise():
    x = np.array([0.5, -1.0, 2.0])
    result = gradcheck.check(noisy, x, lambda x: 2.02 * x)
    assert result.verdict == "fail", result.summary()


def test_noise_can_make_the_check_inconclusive_on_request():
    x = np.array([0.5, -1.0])
    result = gradcheck.check(noisy, x, lambda x: 2 * x, nondeterministic="inconclusive")
    assert result.verdict == "inconclusive", result.summary()
    assert set(reasons(result)) == {"noise"}


def test_noise_detection_can_be_switched_off():
    x = np.array([0.5, -1.0])
    result = gradcheck.check(noisy, x, lambda x: 2 * x, nondeterministic="ignore")
    assert result.noise_floor == 0.0


def test_an_unknown_nondeterminism_policy_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'widen', 'inconclusive', 'ignore'"):
        gradcheck.check(noisy, np.ones(2), lambda x: 2 * x, nondeterministic="maybe")


def dropout_loss(x):
    return (torch.nn.functional.dropout(x, 0.5) ** 2).sum()


def test_dropout_without_a_seed_is_inconclusive_and_suggests_rng_seed():
    x = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    result = gradcheck.check(dropout_loss, x)
    assert result.verdict == "inconclusive", result.summary()
    assert set(reasons(result)) == {"noise"}
    assert "rng_seed=" in result.summary()


def test_dropout_with_rng_seed_draws_the_same_mask_every_time_and_passes():
    x = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    result = gradcheck.check(dropout_loss, x, rng_seed=7)
    assert result.verdict == "pass", result.summary()
    assert result.noise_floor == 0.0
    wrong = gradcheck.check(dropout_loss, x, lambda x: 2 * x, rng_seed=7)  # ignores the mask
    assert wrong.verdict == "fail", wrong.summary()


def test_rng_seed_leaves_the_callers_random_states_as_they_were():
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    gradcheck.check(dropout_loss, torch.ones(3, dtype=torch.float64), rng_seed=7)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_a_bad_rng_seed_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="rng_seed must be a non-negative integer"):
        gradcheck.check(dropout_loss, torch.ones(3, dtype=torch.float64), rng_seed="abc")


# ---------------------------------------------------------------------------------------------
# Taylor remainder


def sin_x_times_x(x):
    return (torch.sin(x) * x).sum()


def grad_sin_x_times_x(x):
    return torch.cos(x) * x + torch.sin(x)


def test_the_taylor_test_sees_order_two_for_the_right_gradient():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    result = gradcheck.taylor_test(sin_x_times_x, x)
    assert result.verdict == "pass", result.reason
    assert result.order == pytest.approx(2.0, abs=0.1)
    assert result.steps[1] == result.steps[0] / 2


def test_the_taylor_test_sees_order_one_for_a_gradient_off_by_1e_5():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    result = gradcheck.taylor_test(sin_x_times_x, x, lambda x: grad_sin_x_times_x(x) * (1 + 1e-5))
    assert result.verdict == "fail", result.reason
    assert result.order == pytest.approx(1.0, abs=0.1)
    assert "order 1.0" in result.table() or "1.0" in result.table()


def test_the_taylor_test_passes_a_linear_function_at_the_rounding_floor():
    x = np.array([1.0, -2.0, 3.0])
    result = gradcheck.taylor_test(lambda x: np.sum(3 * x), x, lambda x: np.full(3, 3.0))
    assert result.verdict == "pass", result.reason
    assert math.isnan(result.order)
    assert "linear along d" in result.reason


def test_the_taylor_test_is_inconclusive_when_f_never_moves_clear_of_rounding():
    # 1e-300 x is lost next to 1: a claimed 2e-300 (twice the truth) cannot be told apart.
    x = np.array([1.0])
    f = lambda x: 1.0 + 1e-300 * x[0]  # noqa: E731
    result = gradcheck.taylor_test(f, x, lambda x: np.array([2e-300]))
    assert result.verdict == "inconclusive", result.reason
    assert result.resolution == math.inf
    # ... but a claim of 5 moves the linear term clear of rounding: order 1, a fail.
    assert gradcheck.taylor_test(f, x, lambda x: np.array([5.0])).verdict == "fail"


def test_the_taylor_test_does_not_fail_an_f_saturated_within_every_step():
    # sigmoid(5000 x) at x = 34/5000 is 1 - e**-34 = 1 - 1.7e-15; every step (h >= 1e-4)
    # reaches 1.0 exactly, so f moves by the same 16 ulps at each, under the rounding floor,
    # and the remainder is the analytic term alone (order 1). The exact gradient is
    # 5000 e**-34 / (1 + e**-34)**2 = 8.57e-12: no step here can tell it from a wrong one.
    k = 5000.0
    x = np.array([34 / k])

    def f(x):
        with np.errstate(over="ignore"):  # exp(1000) at the largest step back: f is 0 there
            return float(1 / (1 + np.exp(-k * x[0])))

    def exact(x, factor=1.0):
        return factor * k * np.exp(-k * x) / (1 + np.exp(-k * x)) ** 2

    for factor in (1.0, 2.0):
        run = gradcheck.taylor_test(f, x, lambda x, c=factor: exact(x, c), direction=np.ones(1))
        assert run.verdict == "inconclusive", run.table()
        assert "saturates" in run.reason
    assert gradcheck.check(f, x, exact).verdict != "fail"
    # ... while the difference check still fails a gradient 100 times too large.
    assert gradcheck.check(f, x, lambda x: exact(x, 100.0)).verdict == "fail"


def test_the_taylor_test_takes_a_direction_shaped_like_the_input():
    x = np.array([0.3, 0.7])
    good = gradcheck.taylor_test(
        lambda x: np.sum(np.exp(x)), x, np.exp, direction=np.array([1.0, 0.0])
    )
    assert good.verdict == "pass", good.reason
    with pytest.raises(ValueError, match="shaped like its input"):
        gradcheck.taylor_test(lambda x: np.sum(x), x, np.ones_like, direction=np.ones(3))


def test_the_taylor_test_wants_a_scalar_function():
    with pytest.raises(ValueError, match="scalar"):
        gradcheck.taylor_test(lambda x: x * 2, torch.ones(3, dtype=torch.float64))


def test_an_element_too_curved_for_the_automatic_step_is_judged_with_a_smaller_one():
    # sin(1e5 x): at the automatic step (omega h ~ 0.6) the difference's error bar is wide.
    x = torch.tensor([0.1, 0.2], dtype=torch.float64)

    def f(x):
        return torch.sin(1e5 * x).sum()

    result = gradcheck.check(f, x)
    assert result.verdict == "pass", result.summary()
    assert set(reasons(result)) == {"refined"}
    assert result.inputs[0].max_rel_error < 1e-6
    wrong = gradcheck.check(f, x, lambda x: 1e5 * torch.cos(1e5 * x) * (1 + 1e-5))
    assert wrong.verdict == "fail", wrong.summary()


def test_a_big_constant_in_f_does_not_hide_a_1e_5_error():
    # |f| ~ 1e4 against a gradient ~ 1e-2: rounding dominates the step rule's error bar, so
    # the plain central difference cannot pass alone; the second level re-steps it.
    x = np.array([0.5, -1.2, 2.0])
    right = gradcheck.check(lambda x: 1e4 + 1e-2 * np.sum(x**2), x, lambda x: 2e-2 * x)
    assert right.verdict == "pass", right.summary()
    assert right.numerics.refined == (3,)
    ruled = gradcheck.check(
        lambda x: 1e4 + 1e-2 * np.sum(x**2),
        x,
        lambda x: 2e-2 * x,
        step=np.finfo(np.float64).eps ** (1 / 3),
    )
    assert ruled.verdict == "pass", ruled.summary()
    assert set(reasons(ruled)) == {"refined"}
    off = gradcheck.check(lambda x: 1e4 + 1e-2 * np.sum(x**2), x, lambda x: 2e-2 * x * (1 + 1e-5))
    assert off.verdict == "fail", off.summary()


def cumsum_loss(v):
    # f = sum_i x_i * (x_1 + ... + x_i) = ((sum x)**2 + sum x**2) / 2, so df/dx_j = sum x + x_j.
    # The running sum rounds at the size of its partial sums, far above eps |f|.
    return (torch.cumsum(v, 0) * v).sum()


def cumsum_loss_grad(v, wrong_element=None, by=0.0):
    g = v.sum().item() + v.numpy().copy()
    if wrong_element is not None:
        g[wrong_element] *= 1 + by
    return g


def test_rounding_coarser_than_eps_f_is_measured_and_widens_the_bars():
    # The rounding is measured near x (and on the ladders of refined elements), not modelled
    # from |f|: the running sums round far coarser than eps |f|.
    x = torch.linspace(-1, 1, 3000, dtype=torch.float64)
    right = gradcheck.check(cumsum_loss, x, cumsum_loss_grad, mode="full")
    assert right.verdict == "pass", right.summary()
    # The bars are wider, not blind: a 1% error is still caught, at its element.
    off = gradcheck.check(cumsum_loss, x, lambda v: cumsum_loss_grad(v, 2500, 1e-2), mode="full")
    assert off.verdict == "fail", off.summary()
    assert np.flatnonzero(off.inputs[0].element_verdicts == "fail").tolist() == [2500]


def test_a_nan_inside_the_stencil_is_decided_by_taylor():
    # sqrt at 1e-7: x - h < 0 gives NaN in the stencil; small steps along +e_i do not.
    x = np.array([1e-7, 4.0])
    f = lambda x: np.sum(np.sqrt(x))  # noqa: E731
    with np.errstate(invalid="ignore"):
        result = gradcheck.check(f, x, lambda x: 0.5 / np.sqrt(x))
        wrong = gradcheck.check(f, x, lambda x: 0.4 / np.sqrt(x))
        undecided = gradcheck.check(f, x, lambda x: 0.5 / np.sqrt(x), taylor=False)
    assert result.verdict == "pass", result.summary()
    assert reasons(result) == ["taylor", ""]
    assert result.taylor[0].order == pytest.approx(2.0, abs=0.25)
    assert wrong.verdict == "fail", wrong.summary()
    assert reasons(wrong) == ["taylor", ""]
    assert undecided.verdict == "inconclusive"
    assert reasons(undecided) == ["nonfinite", ""]


def test_a_taylor_test_that_disagrees_across_a_kink_is_inconclusive_not_fail():
    # relu(x) + sqrt(x + 1e-7) at 0: the stencil hits NaN, and relu's kink is at x itself.
    # From the right the remainder of relu'(0) = 0 shrinks at order 1, from the left at 2.
    def f(x):
        return np.sum(np.maximum(x, 0.0) + np.sqrt(x + 1e-7))

    def grad(x):
        return (x > 0).astype(float) + 0.5 / np.sqrt(x + 1e-7)

    with np.errstate(invalid="ignore"):
        result = gradcheck.check(f, np.array([0.0, 1.0]), grad)
    assert result.verdict == "inconclusive", result.summary()
    assert [t.verdict for t in result.taylor] == ["fail", "pass"]


# ---------------------------------------------------------------------------------------------
# Complex step


def test_complex_step_is_exact_to_rounding_for_a_complex_safe_function():
    x = np.array([0.3, -1.2, 2.0])
    exact = (np.cos(x) + np.sin(x)) * np.exp(x)
    result = gradcheck.check(
        lambda x: np.sum(np.sin(x) * np.exp(x)), x, lambda x: exact, method="complex"
    )
    assert result.numerics.method == "complex", result.numerics.method_reason
    assert result.max_rel_error < 1e-14
    off = gradcheck.check(
        lambda x: np.sum(np.sin(x) * np.exp(x)),
        x,
        lambda x: exact * (1 + 1e-11),
        method="complex",
        rtol=1e-13,
    )
    assert off.verdict == "fail", off.summary()


def test_complex_step_works_on_torch_tensors_including_float32():
    x = torch.linspace(-1, 1, 4)
    result = gradcheck.check(lambda x: (torch.tanh(x) ** 2).sum(), x, method="complex")
    assert result.verdict == "pass", result.summary()
    assert result.numerics.method == "complex"


@pytest.mark.parametrize(
    ("f", "grad", "why"),
    [
        (lambda x: np.sum(np.abs(x) * x), lambda x: 2 * np.abs(x), "not complex-analytic"),
        (lambda x: np.sum(np.abs(x)), np.sign, "returned float64 for complex inputs"),
    ],
    ids=["abs-times-x", "abs"],
)
def test_a_function_that_is_not_complex_safe_falls_back_to_central_and_says_why(f, grad, why):
    x = np.array([0.4, -1.3])
    result = gradcheck.check(f, x, grad, method="complex")
    assert result.numerics.method == "central"
    assert why in result.numerics.method_reason
    assert result.verdict == "pass", result.summary()


def test_a_function_that_raises_on_complex_inputs_falls_back_to_central():
    x = torch.tensor([0.4, -1.3], dtype=torch.float64)
    result = gradcheck.check(lambda x: torch.relu(x).sum(), x, method="complex")
    assert result.numerics.method == "central"
    assert "raised" in result.numerics.method_reason


def test_an_unknown_method_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'central', 'complex'"):
        gradcheck.check(lambda x: np.sum(x), np.ones(2), np.ones_like, method="forward")


# ---------------------------------------------------------------------------------------------
# Nothing the caller passed is modified


def test_the_callers_inputs_are_untouched_by_edges_taylor_and_complex_step():
    x_np = np.array([0.0, 1e-7, 2.0])
    x_t = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    before_np, before_t = x_np.copy(), x_t.clone()
    with np.errstate(invalid="ignore"):
        gradcheck.check(lambda x: np.sum(np.sqrt(np.abs(x)) + np.abs(x)), x_np, np.sign)
    gradcheck.check(lambda x: (torch.floor(x) + torch.relu(x)).sum(), x_t)
    gradcheck.check(lambda x: (torch.sin(x) ** 2).sum(), x_t, method="complex")
    gradcheck.taylor_test(lambda x: (torch.sin(x) ** 2).sum(), x_t)
    assert np.array_equal(x_np, before_np)
    assert torch.equal(x_t, before_t)
