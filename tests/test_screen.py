"""Screening and localisation: what a screen of k probes guarantees, tested as stated.

Gradients here are exact from calculus; wrong ones are exact ones with planted errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from chains import CHAIN_OPS
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gradcheck import check
from gradcheck._check import check as _check
from gradcheck._judge import screen as _screen

torch.set_num_threads(1)
N = 2**13


def tanh_sq(x):
    return (torch.tanh(x) ** 2).sum()


def tanh_sq_grad(x):
    t = np.tanh(np.asarray(x, dtype=np.float64))
    return 2 * t * (1 - t * t)


def np_tanh_sq(x):
    return np.sum(np.tanh(x) ** 2)


def inputs(n=N, seed=0, dtype=torch.float64):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(
        dtype
    )


def planted(x, index, delta):
    """The exact gradient with ``delta`` added to one element."""

    def grad(v):
        g = tanh_sq_grad(v.double().numpy() if torch.is_tensor(v) else v)
        g = g.copy()
        g.reshape(-1)[index] += delta
        return torch.as_tensor(g) if torch.is_tensor(v) else g

    return grad


def test_the_correct_gradient_passes_the_screen_within_thirty_evaluations():
    result = check(tanh_sq, inputs(), mode="screen", contract=False)  # the screen's own cost
    assert result.verdict == "pass", result.summary()
    assert result.mode == "screen"
    assert result.evaluations <= 30
    assert result.screen is not None and result.screen.located == ((),)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_correct_gradients_pass_at_other_seeds_and_points(seed):
    x = inputs(seed=seed) * 2
    assert check(tanh_sq, x, mode="screen", seed=seed).passed


def test_a_single_element_error_just_above_the_bound_is_caught_and_located():
    x = inputs()
    bound = check(tanh_sq, x, tanh_sq_grad, mode="screen").screen.bounds[0]
    rng = np.random.default_rng(7)
    for index in rng.choice(N, size=3, replace=False):
        scale = max(1.0, abs(float(x[index])))  # the bound is for |delta| max(1, |x_j|)
        for sign in (1, -1):
            result = check(
                tanh_sq, x, planted(x, index, sign * 1.05 * bound / scale), mode="screen"
            )
            assert result.verdict == "fail", (index, result.summary())
            assert result.screen.located[0] == (int(index),)
            assert result.inputs[0].worst_index == (int(index),)
            probes = result.screen.probes
            assert all(p.verdict == "fail" for p in probes if p.kind == "screen")


def test_the_bound_is_the_documented_formula_in_rtol_the_gradient_norm_and_the_error_bars():
    x = inputs()
    result = check(tanh_sq, x, tanh_sq_grad, mode="screen")
    rtol = math.sqrt(np.finfo(np.float64).eps)
    g_s = tanh_sq_grad(x) * np.maximum(1.0, np.abs(x.numpy()))
    norm = float(np.linalg.norm(g_s))
    expected = min(
        (rtol * max(abs(p.numeric), norm) + 2 * p.error_estimate) / (1 - rtol)
        for p in result.screen.probes
        if p.kind == "screen"
    )
    assert result.screen.bounds[0] == pytest.approx(expected, rel=1e-6)
    # sqrt(eps) ||g s||_2 is the floor; the rest is the rounding of f across a probe.
    assert result.screen.bounds[0] >= rtol * norm


def test_float32_bounds_are_set_by_float32_rtol():
    x = inputs(dtype=torch.float32)
    result = check(tanh_sq, x, mode="screen")
    assert result.passed, result.summary()
    x64 = x.double().numpy()
    norm = float(np.linalg.norm(tanh_sq_grad(x64) * np.maximum(1, np.abs(x64))))
    assert result.screen.bounds[0] >= math.sqrt(np.finfo(np.float32).eps) * norm


def test_a_flipped_element_fails_and_the_table_names_it():
    x = inputs()
    g = tanh_sq_grad(x)
    index = int(np.argmax(np.abs(g)))
    result = check(tanh_sq, x, planted(x, index, -2 * g[index]), mode="screen")
    assert result.verdict == "fail"
    assert f"({index},)" in result.table()
    assert result.inputs[0].elements.tolist() == [index]
    row = result.inputs[0].worst_elements(1)[0]
    assert row["analytic"] == pytest.approx(-g[index])
    assert row["numeric"] == pytest.approx(g[index], rel=1e-7)


def test_localising_one_error_costs_about_log2_n_probe_pairs():
    x = inputs()
    g = tanh_sq_grad(x)
    result = check(tanh_sq, x, planted(x, 1234, 1e-3 * g[1234]), mode="screen")
    assert result.screen.unresolved == (0,)
    localise = [p for p in result.screen.probes if p.kind == "localise"]
    # Each probe is two central-difference pairs: within 2 log2(n) pairs.
    assert 2 * len(localise) <= 2 * math.log2(N)
    assert result.screen.located[0] == (1234,)


def test_two_wrong_elements_are_both_located():
    x = inputs()
    g = tanh_sq_grad(x)

    def grad(v):
        out = tanh_sq_grad(v).copy()
        out[[100, 5000]] *= 1.01
        return out

    result = check(tanh_sq, x, grad, mode="screen")
    assert result.verdict == "fail"
    failing = [
        int(i)
        for i, v in zip(result.inputs[0].elements, result.inputs[0].element_verdicts, strict=True)
        if v == "fail"
    ]
    assert sorted(failing) == [100, 5000]
    assert g[100] != 0


def test_a_scaled_gradient_fails_and_reports_some_wrong_elements():
    x = inputs()
    result = check(tanh_sq, x, lambda v: 1.001 * tanh_sq_grad(v), mode="screen")
    assert result.verdict == "fail"
    assert "fail" in result.inputs[0].element_verdicts.tolist()
    # Every element is wrong: the budget runs out first, and the result says how far it got.
    located = len(result.screen.located[0])
    assert result.screen.unresolved == (N - located,)
    assert any("mode='full' checks every element" in r for r in result.reasons)


def test_only_the_wrong_input_fails_when_there_are_two():
    a, b = inputs(seed=1), inputs(seed=2)

    def f(u, v):
        return (torch.tanh(u) ** 2).sum() + (torch.tanh(v) ** 2).sum()

    def grad(u, v):
        gb = tanh_sq_grad(v).copy()
        gb[77] += 1e-3
        return tanh_sq_grad(u), gb

    result = check(f, (a, b), grad, mode="screen")
    assert [c.verdict for c in result.inputs] == ["pass", "fail"]
    assert result.screen.located == ((), (77,))


def test_numpy_functions_are_screened_through_the_loop_and_inputs_are_untouched():
    x = inputs().numpy()
    before = x.copy()
    result = check(np_tanh_sq, x, planted(x, 42, 1e-3), mode="screen")
    assert result.numerics.path == "loop"
    assert result.screen.located[0] == (42,)
    np.testing.assert_array_equal(x, before)


def test_a_non_scalar_f_is_screened_along_its_cotangent():
    x = inputs(n=3000)
    result = check(torch.tanh, x, mode="screen")
    assert result.passed, result.summary()


def test_the_same_seed_replays_the_same_probes():
    x = inputs()
    first = check(tanh_sq, x, mode="screen", seed=5).screen.probes
    again = check(tanh_sq, x, mode="screen", seed=5).screen.probes
    other = check(tanh_sq, x, mode="screen", seed=6).screen.probes
    assert first == again
    assert first != other


def test_nan_along_every_probe_is_inconclusive_not_fail():
    x = torch.rand(N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[0] = 0.0  # sqrt is undefined on one side of 0: every probe moves element 0 both ways

    def f(v):
        return torch.sqrt(v).sum()

    def grad(v):
        return torch.where(v > 0, 0.5 / torch.sqrt(v), torch.zeros_like(v))

    result = check(f, x, grad, mode="screen")
    assert result.verdict == "inconclusive", result.summary()


def test_auto_mode_is_full_for_small_inputs_and_screen_for_large_ones():
    small = check(tanh_sq, inputs(n=100))
    # Not elementwise (an elementwise f is checked in full at any size: test_separable.py).
    large = check(lambda x: torch.tanh(x).sum() ** 2, inputs(n=_check.AUTO_FULL_MAX_ELEMENTS + 1))
    assert (small.mode, small.screen) == ("full", None)
    assert large.mode == "screen" and large.passed


def test_a_full_check_can_be_asked_for_at_any_size():
    result = check(tanh_sq, inputs(n=_check.AUTO_FULL_MAX_ELEMENTS + 1), mode="full")
    assert result.mode == "full" and result.screen is None


def test_bad_mode_and_probe_count_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="mode='quick' is not one of 'auto', 'full', 'screen'"):
        check(tanh_sq, inputs(n=10), mode="quick")
    with pytest.raises(ValueError, match="mode='fast' runs central differences"):
        check(tanh_sq, inputs(n=10), mode="fast", method="complex")
    with pytest.raises(ValueError, match="probes must be a positive integer"):
        check(tanh_sq, inputs(n=10), mode="screen", probes=0)


def test_more_probes_cost_four_evaluations_each():
    x = inputs()
    five = check(tanh_sq, x, tanh_sq_grad, mode="screen", probes=5)
    nine = check(tanh_sq, x, tanh_sq_grad, mode="screen", probes=9)
    assert nine.evaluations - five.evaluations == 4 * 4
    assert len(nine.screen.probes) - len(five.screen.probes) == 4


def test_probe_records_say_what_they_measured():
    result = check(tanh_sq, inputs(), mode="screen")
    kinds = {p.kind for p in result.screen.probes}
    assert kinds <= {"pilot", "screen"}
    for p in result.screen.probes:
        assert p.size == N and p.tolerance > p.error_estimate > 0
        assert abs(p.analytic - p.numeric) <= p.tolerance
    assert sum(p.kind == "screen" for p in result.screen.probes) == _screen.DEFAULT_PROBES


def test_a_nondeterministic_f_widens_the_probes_instead_of_failing():
    x = inputs()
    noise = np.random.default_rng(0)

    def noisy(v):
        return tanh_sq(v) + float(noise.standard_normal()) * 1e-9

    result = check(noisy, x, mode="screen")
    assert result.verdict != "fail", result.summary()
    assert result.noise_floor > 0
    assert "nondeterministic" in result.summary()
    unsure = check(noisy, x, mode="screen", nondeterministic="inconclusive")
    assert unsure.verdict == "inconclusive"


def test_a_nan_in_the_analytic_gradient_fails_and_is_located():
    x = inputs()

    def grad(v):
        out = tanh_sq_grad(v).copy()
        out[321] = np.nan
        return out

    result = check(tanh_sq, x, grad, mode="screen")
    assert result.verdict == "fail"
    assert 321 in result.screen.located[0]


# -- f that rounds far coarser than eps |f| ---------------------------------------------------


def cumsum_loss(v):
    """((sum x)**2 + sum x**2) / 2, through running sums that round at their own size."""
    return (torch.cumsum(v, 0) * v).sum()


def cumsum_loss_grad(v):
    x = np.asarray(v, dtype=np.float64)
    return x.sum() + x  # d/dx_i of ((sum x)**2 + sum x**2) / 2


def running_square_mean(v):
    """mean(cumsum(sin x)**2): its rounding is random, ~40x eps |f| at n = 20000."""
    return torch.cumsum(torch.sin(v), 0).pow(2).mean()


def running_square_mean_grad(v):
    x = np.asarray(v, dtype=np.float64)
    c = np.cumsum(np.sin(x))
    return np.cos(x) * (2 / x.size) * np.cumsum(c[::-1])[::-1]


@pytest.mark.parametrize("n", [3000, 5000, 20000])
def test_rounding_odd_in_the_step_is_measured_not_read_as_truncation(n):
    # At linspace the running sums round hundreds of times coarser near x than at x: the
    # pilot used to shrink the step and the correct gradient failed (253 evaluations at 3000).
    x = torch.linspace(-1, 1, n, dtype=torch.float64)
    result = check(cumsum_loss, x, cumsum_loss_grad, mode="screen")
    assert result.verdict == "pass", result.summary()
    assert any("f rounds at up to" in r for r in result.inputs[0].reasons)
    assert result.evaluations <= 34
    pilots = [p for p in result.screen.probes if p.kind == "pilot"]
    assert [p.step_scale for p in pilots] == [1.0, 0.125 if n < 20000 else 0.0625]


def test_random_rounding_the_two_differences_agree_on_is_measured_by_the_fit():
    x = torch.linspace(-1, 1, 20000, dtype=torch.float64)
    result = check(running_square_mean, x, running_square_mean_grad, mode="screen")
    assert result.verdict == "pass", result.summary()
    assert any("f rounds at up to" in r for r in result.inputs[0].reasons)


@pytest.mark.parametrize(
    "f, grad", [(cumsum_loss, cumsum_loss_grad), (running_square_mean, running_square_mean_grad)]
)
def test_measured_rounding_still_catches_an_error_just_above_the_bound(f, grad):
    x = torch.linspace(-1, 1, 20000, dtype=torch.float64)
    right = check(f, x, grad, mode="screen")
    bound = right.screen.bounds[0]
    g = grad(x)
    index = int(np.argmax(np.abs(g)))

    def wrong(v):
        out = grad(v).copy()
        out[index] += 1.05 * bound  # |x| <= 1: the bound is for |delta|
        return out

    result = check(f, x, wrong, mode="screen")
    assert result.verdict == "fail", result.summary()
    assert result.screen.located[0] == (index,)


def test_rounding_the_model_covers_widens_nothing():
    def log1p_sq(v):
        return torch.log1p(v**2).sum()

    for f, x in [(tanh_sq, inputs()), (log1p_sq, inputs(seed=3))]:
        result = check(f, x, mode="screen")
        assert result.verdict == "pass"
        assert not any("f rounds" in r for r in result.inputs[0].reasons), result.summary()


# -- the analytic side's own float32 rounding -------------------------------------------------


def half_sum_squared(v):
    """(sum x)**2 / 2: every gradient element is sum x, 0 at a symmetric linspace."""
    return v.sum() ** 2 / 2


def test_float32_autograd_rounding_is_measured_against_float64_not_called_wrong():
    x = torch.linspace(-1, 1, 5000, dtype=torch.float32)
    # float32 sums it to 6.4e-6, not 0: the whole gradient is that rounding, and every probe's
    # analytic value is it times sum(w). float64 sums the same values to exactly 0.
    assert float(x.sum()) != 0 and float(x.double().sum()) == 0
    result = check(half_sum_squared, x, mode="screen")
    assert result.verdict == "pass", result.summary()
    assert any("own float32 rounding" in r for r in result.inputs[0].reasons)


def test_a_formula_wrong_in_both_dtypes_is_still_caught_in_float32():
    x = torch.linspace(-1, 1, 5000, dtype=torch.float32)

    def wrong(v):  # d/dx_i = sum x, plus an error in element 7 in whatever dtype v has
        g = torch.full_like(v, float(v.sum()))
        g[7] += 1e-3
        return g

    result = check(half_sum_squared, x, wrong, mode="screen")
    assert result.verdict == "fail", result.summary()
    assert result.screen.located[0] == (7,)


# -- random functions: no false alarm, and the bound holds ------------------------------------

COUPLINGS = {
    "sum": lambda y: y.sum(),
    "norm": lambda y: y.norm(),
    "cumsum": lambda y: torch.tanh(torch.cumsum(y, 0) / y.numel() ** 0.5).sum(),
    "variance": lambda y: ((y - y.mean()) ** 2).mean(),
    "logsumexp": lambda y: torch.logsumexp(y, 0),
    "sum squared": lambda y: y.sum() ** 2 + (y**2).sum(),
    "running": lambda y: (torch.cumsum(y, 0) * y).sum(),
}
INPUTS = {
    "normal": lambda n, gen, dt: torch.randn(n, generator=gen, dtype=dt),
    "linspace": lambda n, gen, dt: torch.linspace(-1, 1, n, dtype=dt),
    "wide": lambda n, gen, dt: 5 * torch.randn(n, generator=gen, dtype=dt),
}


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.sampled_from(sorted(CHAIN_OPS)), max_size=2),
    coupling=st.sampled_from(sorted(COUPLINGS)),
    start=st.sampled_from(sorted(INPUTS)),
    n=st.integers(100, 3000),
    dt=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**16),
)
# Running sums at a linspace round hundreds of times coarser than eps |f| (pilot, above).
@example(ops=[], coupling="running", start="linspace", n=3000, dt=torch.float64, seed=0)
@example(ops=[], coupling="running", start="linspace", n=300, dt=torch.float64, seed=1)
def test_random_functions_pass_and_an_error_above_the_bound_is_caught(
    ops, coupling, start, n, dt, seed
):
    def f(v):
        for op in ops:
            v = CHAIN_OPS[op](v)
        return COUPLINGS[coupling](v)

    x = INPUTS[start](n, torch.Generator().manual_seed(seed), dt)
    right = check(f, x, mode="screen", seed=seed)  # autograd: the reference gradient
    assert right.verdict != "fail", right.summary()
    if right.verdict != "pass":
        return
    g = torch.func.grad(f)(x.double()).numpy()  # float64 autograd: one formula in every dtype
    j = int(np.argmax(np.abs(g)))
    delta = 1.5 * right.screen.bounds[0] / max(1.0, abs(float(x[j])))

    def wrong(v):
        out = torch.func.grad(f)(v).clone()
        out[j] += delta
        return out

    caught = check(f, x, wrong, mode="screen", seed=seed)
    assert caught.verdict == "fail", caught.summary()
    assert j in caught.screen.located[0]
