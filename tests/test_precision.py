"""Judged as precisely as the code allows: float32 and half precision by measured rounding, zero
gradients on the scale f's rounding sets, huge inputs inconclusive (``gradcheck._judge.tolerance``).

Expected verdicts come from the maths: each correct gradient is derived by hand (or is torch's
autograd), each mutant is a one-line slip of the kind found in real backward code, and its size
(1e-3 of a term, 0.1% of a slope, a 2% scale) is far outside what float32 rounding can explain.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck

torch.set_num_threads(1)
RNG = np.random.default_rng(14)


# -- half precision: a kernel that computes in bfloat16/float16, and its float64 reference ------


def silu_kernel(dtype: torch.dtype, factor: float = 1.0) -> type[torch.autograd.Function]:
    """``silu(x @ w).sum()`` computed forward and backward in ``dtype`` (as a Triton or CUDA
    kernel would), its backward scaled by ``factor`` (1.0: correct)."""

    class Kernel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            xl, wl = x.to(dtype), w.to(dtype)
            ctx.save_for_backward(xl, wl)
            return F.silu(xl @ wl).sum().to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            xl, wl = ctx.saved_tensors
            z = xl @ wl
            s = torch.sigmoid(z)
            dz = (g.to(dtype) * s * (1 + z * (1 - s))) * factor
            return (dz @ wl.T).to(g.dtype), (xl.T @ dz).to(g.dtype)

    return Kernel


def reference_f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.silu(x @ w).sum()


def half_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 32, generator=g).to(dtype)
    w = (torch.randn(32, 8, generator=g) / 4).to(dtype)
    return x, w


def kernel_grads(kernel: type[torch.autograd.Function]):
    def grads(x, w):
        xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
        kernel.apply(xx, ww).backward()
        return xx.grad, ww.grad

    return grads


HALF_CASES = [
    (torch.bfloat16, 1.0, "pass"),
    (torch.bfloat16, 1.02, "fail"),
    (torch.bfloat16, 1.05, "fail"),
    (torch.float16, 1.0, "pass"),
    (torch.float16, 1.01, "fail"),
]


@pytest.mark.parametrize(("dtype", "factor", "expected"), HALF_CASES)
def test_a_half_precision_kernel_is_judged_against_the_measuring_stick(dtype, factor, expected):
    kernel = silu_kernel(dtype, factor)
    x, w = half_inputs(dtype)
    given = gradcheck.check(reference_f, (x, w), grad=kernel_grads(kernel))
    referenced = gradcheck.check(kernel.apply, (x, w), reference=reference_f)
    for result in (given, referenced):
        assert result.verdict == expected, result.summary()
        assert [c.tolerance_basis for c in result.inputs] == ["stick", "stick"]
        assert all("measuring stick" in c.tolerance_note for c in result.inputs)


def test_the_stick_leaves_margin_both_ways():
    # A correct kernel's worst element sits well inside its tolerance; a 2% bfloat16 error
    # well outside it, at many elements: neither verdict rests on one lucky element.
    x, w = half_inputs(torch.bfloat16)
    right = gradcheck.check(silu_kernel(torch.bfloat16).apply, (x, w), reference=reference_f)
    for c in right.inputs:
        ratio = np.abs(c.analytic - c.numeric) / c.tolerance
        assert np.max(ratio) < 0.6, np.max(ratio)
    wrong = gradcheck.check(silu_kernel(torch.bfloat16, 1.02).apply, (x, w), reference=reference_f)
    assert sum(int(np.sum(c.element_verdicts == "fail")) for c in wrong.inputs) >= 10


def test_reference_must_be_callable():
    x, w = half_inputs(torch.bfloat16)
    with pytest.raises(TypeError, match="reference must be callable"):
        gradcheck.check(reference_f, (x, w), reference=1.0)


# -- zero and near-zero gradients ---------------------------------------------------------------


def test_a_gradient_zero_by_symmetry_passes_and_a_wrong_one_fails_without_a_jump():
    x = torch.linspace(-2, 2, 100, dtype=torch.float64)
    b = torch.tensor(0.7, dtype=torch.float64)

    def f(b):
        return torch.tanh(b * x).sum()  # odd in x: 0 for every b, to rounding

    right = gradcheck.check(f, (b,))
    assert right.verdict == "pass", right.summary()
    wrong = gradcheck.check(f, (b,), grad=lambda b: torch.tensor(0.5, dtype=torch.float64))
    assert wrong.verdict == "fail", wrong.summary()
    assert not any("jump" in r for r in wrong.reasons)
    beside = gradcheck.check(lambda x, b: torch.tanh(b * x).sum(), (x, b))
    assert beside.verdict == "pass", beside.summary()


def test_x_squared_at_zero():
    x = np.zeros(1)
    assert gradcheck.check(lambda v: np.sum(v**2), x, lambda v: 2 * v).verdict == "pass"
    assert gradcheck.check(lambda v: np.sum(v**2), x, lambda v: 2 * v + 1e-3).verdict == "fail"


X_BN = RNG.standard_normal((16, 5))
Y_BN = RNG.standard_normal((16, 3))
W_BN = RNG.standard_normal((5, 3))
C_BN = RNG.standard_normal(3)


def batchnorm_loss(w, c):
    """A linear layer with bias c feeding a batch normalisation: the loss cannot depend on c."""
    h = X_BN.astype(w.dtype) @ w + c
    hn = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)
    return np.sum((hn - Y_BN.astype(w.dtype)) ** 2) / 2


def batchnorm_grad(w, c, variance_term=1.0, bias_error=0.0):
    h = X_BN.astype(w.dtype) @ w + c
    s = np.sqrt(h.var(0) + 1e-5)
    hn = (h - h.mean(0)) / s
    up = hn - Y_BN.astype(w.dtype)
    dh = (up - up.mean(0) - variance_term * hn * (up * hn).mean(0)) / s
    gw = X_BN.astype(w.dtype).T @ dh
    return gw, dh.sum(0) + bias_error * np.max(np.abs(gw))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_bias_before_batchnorm_has_a_zero_gradient_and_a_wrong_one_fails(dtype):
    w, c = W_BN.astype(dtype), C_BN.astype(dtype)
    right = gradcheck.check(batchnorm_loss, (w, c), batchnorm_grad)
    assert right.verdict == "pass", right.summary()
    off = gradcheck.check(batchnorm_loss, (w, c), lambda w, c: batchnorm_grad(w, c, 1.0, 1e-3))
    assert off.verdict == "fail", off.summary()
    assert [str(c.verdict) for c in off.inputs] == ["pass", "fail"]


# -- huge inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [torch.floor, torch.ceil, torch.round, torch.trunc, torch.frac])
def test_beyond_1_over_eps_a_mismatch_is_inconclusive_not_fail(op):
    x = torch.tensor([2.0**53, -(2.0**60), 1e20], dtype=torch.float64)
    result = gradcheck.check(lambda v: op(v).sum(), x)
    assert result.verdict != "fail", result.summary()
    mismatched = np.abs(result.inputs[0].analytic - result.inputs[0].numeric) > 0.5
    if np.any(mismatched):
        assert set(result.inputs[0].element_reasons[mismatched]) == {"huge"}


# -- resolution: what a pass vouches for -------------------------------------------------------


def test_every_comparison_states_its_resolution_and_float32_resolves_far_below_sqrt_eps():
    x = torch.linspace(-1, 1, 20)
    result = gradcheck.check(lambda v: torch.tanh(v).pow(2).sum(), x)
    comparison = result.inputs[0]
    assert result.verdict == "pass"
    assert comparison.tolerance_basis == "measured"
    assert comparison.resolution < 1e-5  # sqrt(eps32) = 3.5e-4
    # An error of a few resolutions is caught.
    off = gradcheck.check(
        lambda v: torch.tanh(v).pow(2).sum(),
        x,
        lambda v: 2 * torch.tanh(v) * (1 - torch.tanh(v) ** 2) * (1 + 4 * comparison.resolution),
    )
    assert off.verdict == "fail", off.summary()


def test_the_reports_state_resolution_and_tolerance_basis():
    from gradcheck import case
    from gradcheck._cases.runner import run_cases
    from gradcheck._report.text import render_json, render_text

    def f(x):
        return np.sum(x**3)

    cases = [
        case(name="cube", f=f, inputs={"x": np.array([0.5, -1.0, 2.0])}, grad=lambda x: 3 * x**2),
        case(name="off", f=f, inputs={"x": np.array([0.5, -1.0, 2.0])}, grad=lambda x: 3.1 * x**2),
    ]
    result = run_cases(cases, seed=0)
    document = json.loads(render_json(result))
    entries = {(row["case"], row["dtype"]): row["check"]["inputs"][0] for row in document["rows"]}
    cube = entries["cube", "float64"]
    assert cube["tolerance_basis"] == "default"  # float64: sqrt(eps) rule
    assert 0 < cube["resolution"] < 1e-6
    assert cube["absolute_resolution"] > 0
    assert all("resolution" in entry for entry in entries.values())
    assert "resolution: x " in render_text(result)  # the failing row's details say it


# -- a corpus of correct gradients and one-line mutants -----------------------------------------


def svm_loss(w, x, y, reg):
    scores = x @ w
    correct = scores[np.arange(len(y)), y][:, None]
    margins = np.maximum(0, scores - correct + 1)
    margins[np.arange(len(y)), y] = 0
    return margins.sum() / len(y) + reg * np.sum(w * w)


def svm_grad(w, x, y, reg, regulariser=True):
    scores = x @ w
    correct = scores[np.arange(len(y)), y][:, None]
    positive = (scores - correct + 1 > 0).astype(w.dtype)
    positive[np.arange(len(y)), y] = 0
    positive[np.arange(len(y)), y] = -positive.sum(1)
    grad = x.T @ positive / len(y)
    return grad + 2 * reg * w if regulariser else grad


def softmax_loss(w, x, y):
    z = x @ w
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y]).mean()


def softmax_grad(w, x, y, scale=1.0):
    z = x @ w
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return scale * x.T @ p / len(y)


def leaky_loss(x, v, slope=0.01):
    return np.sum(v * np.where(x > 0, x, slope * x))


def leaky_grad(x, v, slope=0.01):
    return v * np.where(x > 0, 1.0, slope).astype(x.dtype)


def conv_loss(k, x, v):
    return np.sum(v * np.convolve(x, k, mode="valid"))


def conv_grad(k, x, v, flipped=True):
    # d/dk_j sum_i v_i sum_m x_(i+m) k_(K-1-m): the correlation of x with v, reversed.
    corr = np.correlate(x, v, mode="valid")
    return corr[::-1] if flipped else corr


def rnn_loss(wh, h0, xs, v):
    h = h0
    for x in xs:
        h = np.tanh(wh @ h + x)
    return np.sum(v * h)


def rnn_grad(wh, h0, xs, v, through_tanh=True):
    hs = [h0]
    for x in xs:
        hs.append(np.tanh(wh @ hs[-1] + x))
    dh = v
    dwh = np.zeros_like(wh)
    for t in range(len(xs), 0, -1):
        dz = dh * (1 - hs[t] ** 2) if through_tanh else dh
        dwh += np.outer(dz, hs[t - 1])
        dh = wh.T @ dz
    return dwh


def l2_loss(w, x, y):
    return np.sum((x @ w - y) ** 2) / 2 + 1e-3 * np.sum(w * w) / 2


def l2_grad(w, x, y, l2=True):
    grad = x.T @ (x @ w - y)
    return grad + 1e-3 * w if l2 else grad


def corpus(dtype):
    """(name, f, x, right gradient, mutant gradient): one-line slips in real backward code."""
    rng = np.random.default_rng(3)

    def r(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    xs, ys = r(12, 6), rng.integers(0, 4, 12)
    reg = dtype(0.05)
    x_lin, y_lin = r(10, 4), r(10, 3)
    x_leaky, v_leaky = r(40), r(40)
    x_conv, v_conv = r(20), r(16)
    h0, seq, v_rnn = r(4), r(5, 4, scale=0.5), r(4)
    w_bn, c_bn = W_BN.astype(dtype), C_BN.astype(dtype)
    return [
        (
            "svm, regulariser gradient dropped",
            lambda w: svm_loss(w, xs, ys, reg),
            r(6, 4),
            lambda w: svm_grad(w, xs, ys, reg),
            lambda w: svm_grad(w, xs, ys, reg, False),
        ),
        (
            "softmax, 1e-4 scale error",
            lambda w: softmax_loss(w, xs, ys),
            r(6, 4),
            lambda w: softmax_grad(w, xs, ys),
            lambda w: softmax_grad(w, xs, ys, 1 + 1e-4),
        ),
        (
            "leaky relu, slope off by 0.1%",
            lambda x: leaky_loss(x, v_leaky),
            x_leaky,
            lambda x: leaky_grad(x, v_leaky),
            lambda x: leaky_grad(x, v_leaky, 0.01 * 1.001),
        ),
        (
            "conv1d, kernel not flipped",
            lambda k: conv_loss(k, x_conv, v_conv),
            r(5),
            lambda k: conv_grad(k, x_conv, v_conv),
            lambda k: conv_grad(k, x_conv, v_conv, False),
        ),
        (
            "rnn step, tanh' forgotten",
            lambda wh: rnn_loss(wh, h0, seq, v_rnn),
            r(4, 4, scale=0.5),
            lambda wh: rnn_grad(wh, h0, seq, v_rnn),
            lambda wh: rnn_grad(wh, h0, seq, v_rnn, False),
        ),
        (
            "l2 term 1e-3 w forgotten",
            lambda w: l2_loss(w, x_lin, y_lin),
            r(4, 3),
            lambda w: l2_grad(w, x_lin, y_lin),
            lambda w: l2_grad(w, x_lin, y_lin, False),
        ),
        (
            "batchnorm variance term x1.001",
            lambda w: batchnorm_loss(w, c_bn),
            w_bn,
            lambda w: batchnorm_grad(w, c_bn)[0],
            lambda w: batchnorm_grad(w, c_bn, 1.001)[0],
        ),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_correct_twins_pass_and_one_line_mutants_fail(dtype):
    wrong = []
    for name, f, x, right, mutant in corpus(dtype):
        twin = gradcheck.check(f, x, right)
        bug = gradcheck.check(f, x, mutant)
        if twin.verdict != "pass":
            wrong.append(f"{name}: correct twin {twin.summary()}")
        if bug.verdict != "fail":
            wrong.append(f"{name}: mutant {bug.summary()}")
    assert not wrong, "\n".join(wrong)
