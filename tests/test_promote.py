"""The float64 side computes in float64 whatever torch tensors f meets (``promote``): float32
float32 tensors captured from the enclosing scope, a module's parameters, dtype arguments.

Expected verdicts come from the maths: each correct gradient is derived by hand (or is torch's
autograd); each buggy one is the correct one times ``1 + r`` or without a ridge term, and is
required to fail only where its error lies clearly above the float32 rounding of the correct
one, measured against the same code built in float64 (``tests/twins_float32.py``).
"""

from __future__ import annotations

import pytest
import torch
import twins_float32

import gradcheck
from gradcheck._sources.promote import computing_in_float64

torch.set_num_threads(1)

X = torch.randn(8, generator=torch.Generator().manual_seed(0))  # float32, captured
W = 0.5 * torch.randn(4, 8, generator=torch.Generator().manual_seed(1))


def tanh_layer(w: torch.Tensor) -> torch.Tensor:
    return torch.tanh(w @ X).sum()


def tanh_layer_grad(scale: float):
    return lambda w: (1 - torch.tanh(w @ X) ** 2)[:, None] * X[None, :] * scale


@pytest.mark.parametrize("error", [0.0, 1e-3, 1e-4])
def test_a_tanh_layer_capturing_a_float32_tensor_is_judged_on_its_measured_rounding(error):
    result = gradcheck.check(tanh_layer, (W,), tanh_layer_grad(1 + error))
    assert result.inputs[0].tolerance_basis == "measured"
    assert result.numerics.policy == "promoted"
    assert "captured tensors" in result.numerics.policy_reason
    assert result.verdict.value == ("pass" if error == 0 else "fail")


@pytest.mark.parametrize("error", [0.0, 1e-3, 1e-4])
def test_an_nn_linear_float32_module_is_judged_on_its_measured_rounding(error):
    torch.manual_seed(2)
    layer = torch.nn.Linear(8, 4)  # float32 parameters, never among the inputs
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))

    def f(x):
        return torch.tanh(layer(x)).sum()

    def grad(x):
        with torch.no_grad():
            return (1 - torch.tanh(layer(x)) ** 2) @ layer.weight * (1 + error)

    result = gradcheck.check(f, (x,), grad)
    assert result.inputs[0].tolerance_basis == "measured"
    assert result.verdict.value == ("pass" if error == 0 else "fail")
    autograd = gradcheck.check(f, (x,))
    assert autograd.verdict.value == "pass"
    assert autograd.inputs[0].tolerance_basis == "measured"


def test_the_module_and_the_captured_tensors_are_left_as_they_were():
    torch.manual_seed(4)
    layer = torch.nn.BatchNorm1d(8)  # training mode: the kernel updates running stats in place
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(5))
    with computing_in_float64():
        out = layer(x.double())
    assert out.dtype == torch.float64
    assert layer.weight.dtype == torch.float32
    assert torch.equal(layer.weight, before["weight"])
    assert X.dtype == torch.float32


def test_dtype_arguments_downcasts_and_factories_compute_in_float64():
    def f(w):
        scale = torch.full((), 0.1, dtype=torch.float32)
        return (w.float() * scale + torch.tensor(0.3)).to(torch.float16).sum()

    with computing_in_float64():
        out = f(torch.ones(3, dtype=torch.float64))
    assert out.dtype == torch.float64
    # 0.1 and 0.3 in float64, not rounded to float32 or float16 on the way
    assert abs(float(out) - 3 * (0.1 + 0.3)) < 1e-15
    assert torch.get_default_dtype() == torch.float32


def test_in_place_writes_land_in_the_tensor_f_holds():
    def f(w):
        acc = torch.zeros(3, dtype=torch.float32)
        acc.add_(w * 2)  # in place, into the tensor f made
        acc[0] = w[0] * 5
        return acc

    with computing_in_float64():
        out = f(torch.full((3,), 1.0 / 3, dtype=torch.float64))
    assert out.tolist()[1] == pytest.approx(2.0 / 3, rel=1e-7)
    assert out.tolist()[0] == pytest.approx(5.0 / 3, rel=1e-7)


def test_where_the_float64_run_still_fails_the_result_says_why():
    def float32_only(w):
        if w.dtype != torch.float32:
            raise TypeError("this kernel takes float32 only")
        return torch.tanh(w @ X).sum()

    result = gradcheck.check(float32_only, (W,), tanh_layer_grad(1.0))
    assert result.numerics.policy == "native"
    assert "raised" in result.numerics.policy_reason
    assert result.inputs[0].tolerance_basis == "default"
    assert result.verdict.value == "pass"


def test_code_that_already_runs_in_float64_is_not_put_under_the_mode():
    calls = []

    def f(w):
        calls.append(torch.overrides._get_current_function_mode_stack())
        return (w * X).sum()  # elementwise: float32 X promotes by itself

    result = gradcheck.check(f, (W[0],))
    assert result.verdict.value == "pass"
    assert all(stack == [] for stack in calls)


TWINS = twins_float32.twins()


@pytest.mark.parametrize("twin", TWINS, ids=[t.name for t in TWINS])
def test_float32_twins_capturing_tensors_are_told_apart_without_a_false_alarm(twin):
    correct = gradcheck.check(twin.f, (twin.x,), twin.correct)
    assert correct.verdict.value == "pass", correct.summary()
    gap = twins_float32.gap(twin)
    buggy = gradcheck.check(twin.buggy_f or twin.f, (twin.x,), twin.buggy)
    if gap > 4:  # the planted error is clearly above the analytic side's own rounding
        assert buggy.verdict.value == "fail", (gap, buggy.summary())


def test_the_twins_corpus_reaches_down_to_errors_near_float32_rounding():
    gaps = [twins_float32.gap(t) for t in TWINS]
    assert len(TWINS) >= 30
    assert {t.error for t in TWINS} >= {1e-3, 1e-4, 1e-5, 1e-6, "ridge"}
    assert min(gaps) < 10  # some twins sit within an order of magnitude of the rounding
