"""The drop-in's answers where torch's engine and torch users expect them: gradients the engine
sums to the input's shape, rounding-level nondeterminism, undefined grad_outputs, zero
gradients under torch's atol, a given eps as an upper bound, f's own exceptions, and a screen
that re-measures a probe before a kink can fail it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from gradcheck import check
from gradcheck._judge import zero as _zero
from gradcheck._judge.contract import BackwardContract, check_contract, summable
from gradcheck._judge.verdict import InputComparison, Verdict
from gradcheck._sources.reference import CallError
from gradcheck.torch import GradcheckError, _stepped_down, gradcheck

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "grad_shape, input_shape",
    [
        ((4, 1), ()),
        ((4, 3), (3,)),
        ((4, 3), (1, 3)),
        ((2, 3), (2, 3)),
        ((3,), (4,)),
        ((3,), (2, 3)),
        ((4, 2), (4, 1, 2)),
        ((5, 4), (4, 1)),
    ],
)
def test_summable_is_torch_broadcasting_of_the_input_to_the_gradient(grad_shape, input_shape):
    try:
        expected = torch.broadcast_shapes(input_shape, grad_shape) == torch.Size(grad_shape)
    except RuntimeError:
        expected = False
    assert summable(grad_shape, input_shape) is expected


class Scaled(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any, alpha: Any) -> Any:
        ctx.save_for_backward(x, alpha)
        return alpha * x.sin()

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, alpha = ctx.saved_tensors
        return g * alpha * x.cos(), (g * x.sin()).sum(dim=1, keepdim=True)  # (4, 1) for 0-d


def test_a_gradient_the_engine_sums_to_the_input_shape_passes_and_a_wrong_sum_fails():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(Scaled.apply, (x, alpha))

    class Wrong(Scaled):
        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            gx, ga = Scaled.backward(ctx, g)
            return gx, ga[:1] * 4  # still summable, but the wrong value

    assert not gradcheck(Wrong.apply, (x, alpha), raise_exception=False)


def jittery_function(scale: float) -> Any:
    class Jittery(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            out = g * x.exp()
            return out + scale * out.abs().max() * torch.randn_like(out)

    return Jittery.apply


def test_rounding_level_nondeterminism_passes_with_a_note_saying_how_large():
    x = torch.randn(6, dtype=torch.float64)
    contract = check_contract(jittery_function(4 * 2.0**-52), (x,))
    assert contract.verdict == "pass"
    assert any("nondeterministic at rounding level" in r and "ulps" in r for r in contract.reasons)


def test_nondeterminism_above_rounding_fails_unless_nondet_tol_covers_it():
    x = torch.randn(6, dtype=torch.float64)
    fn = jittery_function(1e-6)
    assert "reentrant" in check_contract(fn, (x,), BackwardContract(linearity=False)).failed
    loose = check_contract(fn, (x,), BackwardContract(linearity=False, nondet_tol=1e-3))
    assert loose.verdict == "pass"


class RaisesOnUndefined(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.exp()

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return g.mul(x.exp())  # AttributeError on None


def test_a_backward_that_raises_on_an_undefined_grad_output_is_a_failed_contract_item():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"undefined_grad.*AttributeError"):
        gradcheck(RaisesOnUndefined.apply, (x,))


def comparison(
    analytic: list[float], numeric: list[float], bars: list[float], verdicts: list[str]
) -> InputComparison:
    n = len(analytic)
    return InputComparison(
        position=0,
        shape=(n,),
        dtype="float64",
        verdict=Verdict.INCONCLUSIVE,
        rtol=1e-8,
        atol=0.0,
        numeric=np.array(numeric),
        analytic=np.array(analytic),
        error_estimate=np.array(bars),
        tolerance=np.ones(n),
        element_verdicts=np.array(verdicts),
        element_reasons=np.array([""] * n),
    )


def test_torch_atol_passes_what_is_zero_to_within_it_and_to_within_the_step():
    noise = comparison([1e-11, 2.0], [3e-12, 2.0], [2e-11, math.nan], ["inconclusive", "pass"])
    passed = _zero.zero_within(noise, 1e-5)
    assert passed.verdict == "pass"
    assert any("torch's default atol=1e-05 decided" in n for n in passed.notes)
    # resolved: 1e-6 against 2e-6 with a bar of 1e-11 is a wrong gradient, not noise
    resolved = comparison([1e-6, 2.0], [2e-6, 2.0], [1e-11, math.nan], ["fail", "pass"])
    assert _zero.zero_within(resolved, 1e-5).verdict == "inconclusive"
    # not zero: above torch's atol
    big = comparison([3e-5, 2.0], [2e-5, 2.0], [2e-5, math.nan], ["inconclusive", "pass"])
    assert _zero.zero_within(big, 1e-5).verdict == "inconclusive"


def test_a_given_step_is_an_upper_bound_for_the_screen():
    x = torch.linspace(-1, 1, 5000, dtype=torch.float64)
    auto = check(lambda v: (v**4).sum(), x, mode="screen")
    given = check(lambda v: (v**4).sum(), x, mode="screen", step=1e-6)
    assert max(p.step_scale for p in auto.screen.probes) > 1  # rounding-bound: it grows
    assert given.verdict == "pass"
    assert max(p.step_scale for p in given.screen.probes) <= 1


def strict_box(v: torch.Tensor) -> torch.Tensor:
    if not torch.allclose(v[1::2] - v[::2], torch.full_like(v[::2], 3.0), rtol=1e-5, atol=0):
        raise ValueError("not a valid box")
    return (v**2).sum()


def test_f_that_raises_at_the_screens_steps_is_checked_at_smaller_ones():
    x = torch.tensor([10.0, 13.0, 20.0, 23.0] * 10, dtype=torch.float64, requires_grad=True)
    with pytest.raises(CallError, match="perturbed point"):  # the screen's steps leave the boxes
        check(strict_box, x.detach(), mode="screen")
    result = _stepped_down(strict_box, (x,), {"mode": "screen"})
    assert result.verdict == "pass"
    assert any("checked again at step 1e-06" in r for r in result.reasons)
    assert gradcheck(strict_box, (x,), fast_mode=True)


def test_f_that_still_raises_propagates_its_own_exception_with_a_note():
    x = torch.tensor([10.0, 14.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="not a valid box") as info:
        gradcheck(strict_box, (x,))
    assert any("gradcheck: f raised ValueError at x" in n for n in info.value.__notes__)


def coupled_l1(target: int, seed: int) -> tuple[Any, torch.Tensor]:
    """A d-w-w-1 tanh MLP's squared error plus 0.1 |theta|.sum(), of its ~target parameters:
    not elementwise, so mode 'auto' screens it, and every parameter near 0 is a kink."""
    gen = torch.Generator().manual_seed(seed)
    w = max(2, int((-3 + math.sqrt(9 + 8 * target)) / 4))
    data = torch.randn(16, w, generator=gen, dtype=torch.float64)
    labels = torch.randn(16, generator=gen, dtype=torch.float64)
    shapes = [(w, w), (w,), (w, w), (w,), (1, w), (1,)]
    sizes = [math.prod(s) for s in shapes]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = (
            p.reshape(s) for p, s in zip(torch.split(theta, sizes), shapes, strict=True)
        )
        h = torch.tanh(torch.tanh(data @ w1.T + b1) @ w2.T + b2)
        return ((h @ w3.T + b3).reshape(-1) - labels).pow(2).mean() + 0.1 * theta.abs().sum()

    return loss, torch.randn(sum(sizes), generator=gen, dtype=torch.float64) / math.sqrt(w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_coupled_l1_loss_at_ten_thousand_passes_in_mode_auto(seed):
    loss, theta = coupled_l1(10**4, seed)
    result = check(loss, theta)
    assert result.mode == "screen"
    assert result.verdict == "pass", result.summary()
    assert not any("f rounds" in r for r in result.reasons)


def test_a_wrong_element_beside_the_kinks_still_fails_after_the_second_look():
    loss, theta = coupled_l1(10**4, 0)
    right = check(loss, theta)
    index = 123

    def wrong(t: torch.Tensor) -> torch.Tensor:
        g = torch.func.grad(loss)(t).detach().clone()
        g[index] += 1e-3
        return g

    result = check(loss, theta, wrong)
    assert right.verdict == "pass"
    assert result.verdict == "fail", result.summary()
    assert index in result.screen.located[0]
