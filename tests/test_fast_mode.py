"""Mode 'fast' (torch's fast_mode): one probe (moving every input of one dtype at once), and the
screen only where it disagrees.

Gradients here are exact from calculus; wrong ones are exact ones with planted errors. What is
asserted is what the maths of a probe makes certain (gradcheck._judge.screen's docstring): a
probe along Rademacher signs sees a single-element error ``delta`` at ``|delta| s_j``
(``s_j = max(1, |x_j|)``), so one above the reported bound fails with certainty; one below it
may pass or fail, and nothing is asserted about it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck.torch as gradcheck_torch
from gradcheck import check

torch.set_num_threads(1)


# -- f with coupled elements, and its gradient by hand ----------------------------------------


def chain(x):
    """sum_i x_i sin(x_{i+1}): every element meets its neighbours."""
    return (x[:-1] * torch.sin(x[1:])).sum()


def chain_grad(x):
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    g[:-1] += np.sin(x[1:])  # d/dx_i of x_i sin(x_{i+1})
    g[1:] += x[:-1] * np.cos(x[1:])  # d/dx_{i+1} of the same term
    return g


# A one-hidden-layer tanh network's squared loss, as a function of its flat parameters.
MLP_DATA = torch.Generator().manual_seed(11)
MLP_X = torch.randn(40, 12, generator=MLP_DATA, dtype=torch.float64)
MLP_Y = torch.randn(40, generator=MLP_DATA, dtype=torch.float64)
MLP_HIDDEN = 30


def mlp_loss(p):
    d, h = MLP_X.shape[1], MLP_HIDDEN
    w, v = p[: d * h].reshape(d, h), p[d * h :]
    return ((torch.tanh(MLP_X @ w) @ v - MLP_Y) ** 2).sum()


def mlp_loss_grad(p):
    """r = tanh(X W) v - y, L = sum r**2: dL/dv = 2 A^T r, dL/dW = X^T ((2 r v^T) * (1 - A**2))."""
    p = np.asarray(p, dtype=np.float64)
    X, y = MLP_X.numpy(), MLP_Y.numpy()
    d, h = X.shape[1], MLP_HIDDEN
    w, v = p[: d * h].reshape(d, h), p[d * h :]
    a = np.tanh(X @ w)
    r = a @ v - y
    dw = X.T @ (2 * np.outer(r, v) * (1 - a**2))
    return np.concatenate([dw.reshape(-1), 2 * a.T @ r])


def normal(n, seed=0, scale=1.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, generator=gen, dtype=torch.float64)).to(dtype)


def planted(grad, index, delta):
    """``grad`` with ``delta`` added to one element."""

    def wrong(*xs):
        g = np.array(grad(*xs), dtype=np.float64)
        g.reshape(-1)[index] += delta
        return g

    return wrong


class Calls:
    """f, counting its calls at x itself and at perturbed points (batch='loop': one point a
    call). Independent of the harness's own count."""

    def __init__(self, f, x):
        self.f, self.x = f, x.detach().double()
        self.at_x = self.perturbed = 0

    def __call__(self, v):
        if torch.equal(v.detach().double(), self.x):
            self.at_x += 1
        else:
            self.perturbed += 1
        return self.f(v)


# -- 1. cost: one probe, whatever n ----------------------------------------------------------


@pytest.mark.parametrize(
    "f, grad, x",
    [
        (chain, chain_grad, normal(500)),
        (chain, chain_grad, normal(5000, seed=1)),
        (mlp_loss, mlp_loss_grad, normal(12 * MLP_HIDDEN + MLP_HIDDEN, seed=2, scale=0.3)),
    ],
    ids=["chain-500", "chain-5000", "mlp"],
)
def test_a_right_gradient_passes_on_one_probe_of_four_evaluations(f, grad, x):
    calls = Calls(f, x)
    result = check(calls, x, grad, mode="fast", batch="loop", contract=False)
    assert result.verdict == "pass", result.summary()
    assert result.mode == "fast"
    (probe,) = result.screen.probes  # one probe, at the engine's step, nothing re-measured
    assert (probe.kind, probe.size, probe.step_scale) == ("screen", x.numel(), 1.0)
    # A central difference along one direction with its Richardson half step: f at +-T, +-T/2.
    assert calls.perturbed == 4
    assert result.evaluations == calls.at_x + calls.perturbed  # the count is f's calls
    assert result.screen.located == ((),) and result.screen.unresolved == (0,)
    # The bound is that one probe's (the formula of gradcheck._judge.screen's docstring).
    rtol = np.sqrt(np.finfo(np.float64).eps)
    typical = float(np.linalg.norm(grad(x) * np.maximum(1.0, np.abs(x.numpy()))))
    expected = (rtol * max(abs(probe.numeric), typical) + 2 * probe.error_estimate) / (1 - rtol)
    assert result.screen.bounds[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("grad", [chain_grad, None], ids=["formula", "autograd"])
def test_the_cost_is_the_same_at_n_500_and_5000_and_a_fraction_of_the_screens(grad):
    counts = {}
    for n in (500, 5000):
        x = normal(n)
        fast = check(chain, x, grad, mode="fast")  # the defaults: vmap, contract, autograd
        screen = check(chain, x, grad, mode="screen")
        assert fast.passed and screen.passed, (fast.summary(), screen.summary())
        counts[n] = fast.evaluations
        # Both pay the first call (and the same overheads); the screen measures a pilot and
        # five probes (24 evaluations at least), mode 'fast' one probe (4).
        assert screen.evaluations - fast.evaluations >= 24 - 4
        assert 2 * fast.evaluations < screen.evaluations
    assert counts[500] == counts[5000]


def test_a_float64_input_costs_the_first_call_and_the_probes_four_evaluations():
    x = normal(500)
    calls = Calls(chain, x)
    result = check(calls, x, chain_grad, mode="fast", batch="loop", contract=False)
    assert result.passed
    assert (calls.at_x, calls.perturbed) == (1, 4)


# -- 2. the guarantee: an error above the bound fails --------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_single_element_error_just_above_the_bound_fails_and_is_located(seed):
    # As tests/test_screen.py does for mode 'screen'. Below the bound (0.5x, say) an error may
    # pass or fail: nothing is asserted there.
    n = 2000
    x = normal(n, seed=3, scale=1.5)
    right = check(chain, x, chain_grad, mode="fast", seed=seed)
    assert right.passed and len(right.screen.probes) == 1, right.summary()
    bound = right.screen.bounds[0]
    assert 0 < bound < 1e-3
    for index in np.random.default_rng(seed).choice(n, size=2, replace=False):
        scale = max(1.0, abs(float(x[index])))  # the bound is for |delta| max(1, |x_j|)
        for sign in (1, -1):
            wrong = planted(chain_grad, index, sign * 1.05 * bound / scale)
            result = check(chain, x, wrong, mode="fast", seed=seed)
            assert result.verdict == "fail", (index, sign, result.summary())
            assert result.screen.located[0] == (int(index),)
            assert result.inputs[0].worst_index == (int(index),)


# -- 3. escalation: the screen from the same pilot ------------------------------------------


@pytest.mark.parametrize("seed", [0, 4])
def test_a_wrong_element_escalates_to_the_screen_and_is_located_as_the_screen_locates_it(seed):
    x = normal(3000, seed=5)
    g = chain_grad(x)
    index = 1234
    wrong = planted(chain_grad, index, -2 * g[index] + 0.1)  # sign flipped, and then some
    fast = check(chain, x, wrong, mode="fast", seed=seed)
    screen = check(chain, x, wrong, mode="screen", seed=seed)
    assert fast.verdict == screen.verdict == "fail", fast.summary()
    assert index in fast.inputs[0].elements.tolist()
    assert fast.screen.located == screen.screen.located == ((index,),)
    assert fast.inputs[0].elements.tolist() == screen.inputs[0].elements.tolist()
    assert fast.inputs[0].element_verdicts.tolist() == screen.inputs[0].element_verdicts.tolist()
    # The same probes: the screen started from the pilot the fast probe was.
    assert fast.screen.probes == screen.screen.probes
    assert fast.mode == "fast" and screen.mode == "screen"


# -- 4. kinks -------------------------------------------------------------------------------

L1 = 0.5  # chain(x) + L1 * sum |x|


def chain_l1(x):
    return chain(x) + L1 * x.abs().sum()


def chain_l1_grad(x):
    x = np.asarray(x, dtype=np.float64)
    return chain_grad(x) + L1 * np.sign(x)  # sign(0) = 0: a subgradient, as torch's abs


def near_kinks(count, low, high, seed, n=1000):
    """A normal point with ``count`` elements at distances from ``low`` to ``high`` from 0
    (|x|'s kink), random signs; ``low = high = 0`` puts them on it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    at = rng.choice(n, count, replace=False)
    distances = np.geomspace(low, high, count) if high > 0 else np.zeros(count)
    x[at] = rng.choice([-1.0, 1.0], count) * distances
    return torch.tensor(x), at


RELU_ROWS, RELU_KINKED = 300, 10


def relu_on_kinks(seed, n=500):
    """sum(relu(A x)) + |x|**2 / 2 at an x where RELU_KINKED rows of A x are 0 (to rounding),
    with A, and the maths' bound ``W = sum_{kinked i, j} |A_ij| max(1, |x_j|)`` on the gap
    between the one-sided derivatives along any probe."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(RELU_ROWS, n, generator=gen, dtype=torch.float64) / n**0.5
    x = torch.randn(n, generator=gen, dtype=torch.float64).numpy()
    a = A.numpy()[:RELU_KINKED]
    x = x - a.T @ np.linalg.solve(a @ a.T, a @ x)  # the nearest x with those rows at 0
    gap = float(np.abs(a).sum(axis=0) @ np.maximum(1.0, np.abs(x)))

    def f(v):
        return torch.relu(A @ v).sum() + 0.5 * (v**2).sum()

    def grad(v):
        v = np.asarray(v, dtype=np.float64)
        return A.numpy().T @ (A.numpy() @ v > 0).astype(np.float64) + v

    return f, grad, torch.tensor(x), gap


def kinks_at_x(kind, seed):
    """(f, its gradient, x, a bound on the one-sided gap along any probe)."""
    if kind == "relu":
        return relu_on_kinks(seed)
    x, at = near_kinks(20, 0.0, 0.0, seed)
    # |x_j| at 0: the one-sided derivatives along w differ by 2 L1 |w_j| = 2 L1 per element.
    return chain_l1, chain_l1_grad, x, 2 * L1 * at.size


@pytest.mark.parametrize("kind", ["l1", "relu"])
@pytest.mark.parametrize("seed", [0, 1])
def test_kinks_at_x_are_not_called_wrong_and_an_error_beyond_the_kink_fails(kind, seed):
    f, grad, x, gap = kinks_at_x(kind, seed)
    for source in (grad, None):  # the formula and torch's own (relu'(0) = 0, sign(0) = 0)
        right = check(f, x, source, mode="fast", seed=seed)
        assert right.verdict != "fail", right.summary()
        if right.verdict == "inconclusive":
            assert right.reasons, right.summary()
    # An analytic value further from the right one than the gap lies outside the one-sided
    # derivatives along every probe: beyond any subgradient, and beyond the error bars.
    j = int(np.argmax(np.abs(x.numpy())))
    wrong = check(f, x, planted(grad, j, 2 * gap + 1), mode="fast", seed=seed)
    assert wrong.verdict == "fail", wrong.summary()
    if kind == "l1":  # every element of A x's kinked rows is at a kink: no single one stands out
        assert j in wrong.inputs[0].elements.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kink_the_probe_crosses_is_measured_again_and_an_error_above_the_bound_fails(seed):
    # One element 1e-6 from |x|'s kink: the engine's step (6e-6) crosses it, an eighth does not.
    x, (near,) = near_kinks(1, 1e-6, 1e-6, seed)
    right = check(chain_l1, x, chain_l1_grad, mode="fast", seed=seed)
    assert right.verdict != "fail", right.summary()
    if right.verdict == "inconclusive":
        assert right.reasons, right.summary()
    else:  # settled by the probe measured again at an eighth of the step: no screen
        assert [p.kind for p in right.screen.probes] == ["screen", "restep"]
        assert any("crossed a kink" in r for r in right.reasons), right.reasons
    bound = right.screen.bounds[0]
    j = int(np.argmax(np.abs(x.numpy())))
    assert j != near
    scale = max(1.0, abs(float(x[j])))
    wrong = planted(chain_l1_grad, j, 1.05 * bound / scale)
    result = check(chain_l1, x, wrong, mode="fast", seed=seed)
    assert result.verdict == "fail", result.summary()
    # Just above the bound the search may differentiate a few more elements before the
    # located ones explain the lead probe; the wrong one is among them.
    assert j in result.screen.located[0]


def test_the_bound_holds_when_the_probe_passed_at_a_smaller_step():
    x, _ = near_kinks(3, 2e-7, 5e-7, seed=4)  # a step of 7.6e-7 still crosses these kinks
    right = check(chain_l1, x, chain_l1_grad, mode="fast", seed=2)
    assert right.passed, right.summary()
    assert [p.kind for p in right.screen.probes] == ["screen", "restep"]
    # The bound is the re-measurement's, which decided: its error bar twice over at least
    # (the first measurement's bar is narrower and would promise what the pass cannot).
    restep = right.screen.probes[1]
    bound = right.screen.bounds[0]
    assert bound >= 2 * restep.error_estimate > 2 * right.screen.probes[0].error_estimate
    # Every check keeps its own promise: an error above the bound it reports fails it. (Near
    # kinks a wrong gradient's check may take another path than the right one's, with a
    # wider bound of its own: one-sided derivatives that bracket the analytic value.)
    for index in np.random.default_rng(0).choice(x.numel(), size=2, replace=False):
        scale = max(1.0, abs(float(x[index])))
        for sign in (1, -1):
            error = 1.05 * bound
            result = check(
                chain_l1,
                x,
                planted(chain_l1_grad, index, sign * error / scale),
                mode="fast",
                seed=2,
            )
            assert result.verdict == "fail" or error <= result.screen.bounds[0], (
                index,
                sign,
                result.summary(),
            )


def test_many_elements_near_their_kinks_are_not_called_wrong():
    # 20 of 1000 elements 2e-7 to 4e-6 from |x|'s kink (the step is 6e-6): the probe crosses
    # kinks at every step tried, and its mismatch may stay alike at two of them. That is no
    # confirmation of a wrong gradient while no step is smooth (mode 'screen' used to read the
    # growing spread as f's rounding here and fail the right gradient: docs/limits.md).
    called_wrong = []
    for point, seed in [(0, 0), (0, 1), (1, 1), (3, 0), (2, 2), (4, 3)]:
        x, _ = near_kinks(20, 2e-7, 4e-6, seed=point)
        result = check(chain_l1, x, chain_l1_grad, mode="fast", seed=seed)
        if result.verdict == "fail":
            called_wrong.append((point, seed, result.reasons[0]))
    assert not called_wrong


# -- 5. several inputs ------------------------------------------------------------------------


def two_inputs(u, v):
    return chain(u) + (torch.tanh(v) ** 2).sum() + u.mean() * v.mean()


def two_inputs_grad(u, v):
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    t = np.tanh(v)
    return chain_grad(u) + v.mean() / u.size, 2 * t * (1 - t * t) + u.mean() / v.size


def test_inputs_of_one_dtype_share_one_probe_and_an_error_in_the_second_fails_only_it():
    u, v = normal(600, seed=1), normal(800, seed=2)
    moved = []

    def counted(a, b):
        moved.append((not torch.equal(a, u), not torch.equal(b, v)))
        return two_inputs(a, b)

    right = check(counted, (u, v), two_inputs_grad, mode="fast", batch="loop", contract=False)
    assert right.verdict == "pass", right.summary()
    probes = right.screen.probes
    # One probe moved both inputs (1400 elements) in 4 evaluations; each input's record is it.
    assert [(p.input, p.kind, p.size) for p in probes] == [(0, "screen", 1400), (1, "screen", 1400)]
    assert moved.count((True, True)) == 4 and moved.count((False, False)) == len(moved) - 4
    assert right.screen.bounds[0] == right.screen.bounds[1] > 0

    def wrong(a, b):
        ga, gb = two_inputs_grad(a, b)
        gb = gb.copy()
        gb[77] += 1e-3
        return ga, gb

    # The joint probe fails; each input then takes its own, and only the second fails.
    result = check(two_inputs, (u, v), wrong, mode="fast")
    assert [c.verdict for c in result.inputs] == ["pass", "fail"]
    assert result.screen.located == ((), (77,))
    assert [(p.kind, p.size) for p in result.screen.probes if p.input == 0] == [("screen", 600)]


def test_inputs_of_different_dtypes_each_get_their_own_probe():
    u, v = normal(600, seed=1), normal(800, seed=2).float()
    result = check(two_inputs, (u, v), mode="fast")
    assert result.verdict == "pass", result.summary()
    sizes = [(p.input, p.size) for p in result.screen.probes if p.kind == "screen"]
    assert sizes == [(0, 600), (1, 800)]


def test_the_joint_bound_is_kept_in_every_input():
    # An error just above the joint bound in either input fails the joint probe with
    # certainty (it moves the analytic value by exactly delta w_j).
    u, v = normal(600, seed=1), normal(800, seed=2)
    right = check(two_inputs, (u, v), two_inputs_grad, mode="fast")
    bound = right.screen.bounds[0]
    for k, index in ((0, 5), (1, 400)):
        x = (u, v)[k]
        delta = 1.05 * bound / max(1.0, abs(float(x[index])))

        def wrong(a, b, k=k, index=index, delta=delta):
            grads = [g.copy() for g in two_inputs_grad(a, b)]
            grads[k][index] += delta
            return tuple(grads)

        result = check(two_inputs, (u, v), wrong, mode="fast")
        assert result.verdict == "fail", result.summary()
        assert index in result.screen.located[k]


# -- 6. float32 -------------------------------------------------------------------------------


@pytest.mark.parametrize("grad", [None, chain_grad], ids=["autograd", "formula"])
def test_float32_inputs_pass_a_right_gradient(grad):
    x = normal(2000, seed=6, dtype=torch.float32)
    result = check(chain, x, grad, mode="fast")
    assert result.verdict == "pass", result.summary()
    assert result.mode == "fast"
    assert len(result.screen.probes) == 1


# -- 7. nondeterministic f ----------------------------------------------------------------------


@pytest.mark.parametrize("noise_seed", [0, 1, 2])
def test_a_nondeterministic_f_is_inconclusive_when_asked_and_never_fails_a_right_gradient(
    noise_seed,
):
    x = normal(2000)

    def noisy_f():
        noise = np.random.default_rng(noise_seed)
        return lambda v: chain(v) + float(noise.standard_normal()) * 1e-9

    unsure = check(noisy_f(), x, chain_grad, mode="fast", nondeterministic="inconclusive")
    assert unsure.verdict == "inconclusive", unsure.summary()
    assert any("nondeterministic" in r for r in unsure.reasons)
    widened = check(noisy_f(), x, chain_grad, mode="fast")
    assert widened.verdict != "fail", widened.summary()


# -- 8. bad arguments ---------------------------------------------------------------------------


def test_bad_arguments_are_refused_with_the_fix():
    x = normal(100)
    fix = "mode='fast' runs central differences; method='complex' needs 'full'"
    with pytest.raises(ValueError, match=fix):
        check(chain, x, mode="fast", method="complex")
    with pytest.raises(ValueError, match="probes must be a positive integer"):
        check(chain, x, mode="fast", probes=0)


# -- 9. torch's fast_mode -----------------------------------------------------------------------


class WrongChain(torch.autograd.Function):
    """chain with a backward that is wrong in element 7 by 0.1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return chain(x)

    @staticmethod
    def backward(ctx, out):
        (x,) = ctx.saved_tensors
        g = torch.as_tensor(chain_grad(x.detach()), dtype=x.dtype)
        g[7] += 0.1
        return out * g


@pytest.fixture
def modes(monkeypatch):
    """The mode of every check gradcheck.torch.gradcheck runs."""
    seen = []

    def recording(*args, **kwargs):
        result = check(*args, **kwargs)
        seen.append(result.mode)
        return result

    monkeypatch.setattr(gradcheck_torch, "check", recording)
    return seen


def test_torch_fast_mode_is_mode_fast_above_sixteen_elements(modes):
    x = normal(100, seed=8).requires_grad_()
    assert gradcheck_torch.gradcheck(chain, (x,), fast_mode=True) is True
    assert modes == ["fast"]
    with pytest.raises(gradcheck_torch.GradcheckError) as raised:
        gradcheck_torch.gradcheck(WrongChain.apply, (x,), fast_mode=True)
    assert raised.value.result.mode == "fast"
    assert raised.value.result.verdict == "fail"
    assert 7 in raised.value.result.inputs[0].elements.tolist()
    quiet = gradcheck_torch.gradcheck(WrongChain.apply, (x,), fast_mode=True, raise_exception=False)
    assert quiet is False
    assert modes == ["fast", "fast", "fast"]


@pytest.mark.parametrize(
    "n, dtype, mode",
    [
        (1, torch.float64, "full"),
        (2, torch.float64, "full"),
        (3, torch.float64, "fast"),
        (16, torch.float64, "fast"),
        (16, torch.float32, "full"),
        (17, torch.float32, "fast"),
    ],
)
def test_torch_fast_mode_checks_small_inputs_in_full(modes, n, dtype, mode):
    # A full check costs 2n evaluations, mode 'fast' 4: in float64, full only where that is
    # no more; below float64 one probe's tolerance is coarse, and up to 16 elements are full.
    x = normal(n, seed=9).to(dtype).requires_grad_()
    assert gradcheck_torch.gradcheck(chain, (x,), fast_mode=True) is True
    assert modes == [mode]
