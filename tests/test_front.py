"""The front door takes calls as torch users write them (the PyTorch documentation's own
examples, written out), NumPy calls with constants, and says clearly what is wrong with a bad
one. Expected verdicts come from the maths: each correct backward is exact, each mutant wrong."""

from __future__ import annotations

import corpus_functions
import numpy as np
import pytest
import torch

from gradcheck import check
from gradcheck._sources.reference import CallError

torch.set_num_threads(1)


def double(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


# The tutorial's LinearFunction, and one whose grad_weight is guarded by the bias's flag.
LinearFunction = corpus_functions.linear(None)
LinearWrongGuard = corpus_functions.linear("needs_input_grad_index")


def test_linear_function_with_a_none_bias_passes_and_a_wrong_needs_input_grad_index_fails():
    x, w = double(4, 3, seed=1), double(2, 3, seed=2)
    assert check(LinearFunction.apply, (x, w, None)).verdict == "pass"
    b = double(2, seed=3)
    assert check(LinearFunction.apply, (x, w, b)).verdict == "pass"
    wrong = check(LinearWrongGuard.apply, (x, w, None))
    assert wrong.verdict == "fail"
    assert [(c.position, c.verdict) for c in wrong.inputs] == [(0, "pass"), (1, "fail")]
    assert "input 1:" in " ".join(wrong.reasons) or wrong.inputs[1].verdict == "fail"


MulConstant = corpus_functions.mul_constant(None)
MulForgetsConstant = corpus_functions.mul_constant("ignores_constant")


def test_mul_constant_gets_its_float_and_a_mutant_that_forgets_it_fails_on_input_0():
    x = double(3, 2, seed=4)
    assert check(MulConstant.apply, (x, 5.5)).verdict == "pass"
    wrong = check(MulForgetsConstant.apply, (x, 5.5))
    assert wrong.verdict == "fail"
    assert [c.position for c in wrong.inputs] == [0]
    # 5.5 g against g: the relative error is 1 - 1/5.5 everywhere
    assert wrong.max_rel_error == pytest.approx(1 - 1 / 5.5, rel=1e-6)


SinExp = corpus_functions.sin_exp(None)
SinExpDropsExp = corpus_functions.sin_exp("ignores_the_second_grad")


def test_a_tuple_output_function_passes_and_a_mutant_is_traced_to_the_output_it_ignores():
    x = double(4, seed=5)
    result = check(SinExp.apply, (x,))
    assert result.verdict == "pass"
    assert result.outputs is not None and result.outputs.judged == ("output 0", "output 1")
    wrong = check(SinExpDropsExp.apply, (x,))
    assert wrong.verdict == "fail"
    assert wrong.outputs is not None
    traced = wrong.outputs.traced
    assert traced and all(t.outputs == ("output 1",) for t in traced)
    # the Jacobian is diagonal: element i of x is wrong through element i of exp(x) only
    assert all(t.elements == (("output 1", t.index),) for t in traced)
    assert any("output 1" in r for r in wrong.reasons)
    header, _, first = wrong.table().splitlines()[:3]
    assert header.split()[:2] == ["output", "input"] and first.startswith("output 1[")


class Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        attn = torch.softmax(q @ k.T, dim=-1)
        ctx.save_for_backward(k, v, attn, q)
        return attn @ v, attn

    @staticmethod
    def backward(ctx, g_out, g_attn, ignore_attn=False):
        k, v, attn, q = ctx.saved_tensors
        d_attn = g_out @ v.T + (0 if ignore_attn else g_attn)
        d_scores = attn * (d_attn - (d_attn * attn).sum(-1, keepdim=True))
        return d_scores @ k, d_scores.T @ q, attn.T @ g_out


class AttentionIgnoresAttnGrad(Attention):
    @staticmethod
    def backward(ctx, g_out, g_attn):
        return Attention.backward(ctx, g_out, g_attn, ignore_attn=True)


def test_an_attention_backward_that_ignores_grad_attn_fails_though_softmax_rows_sum_to_1():
    q, k, v = double(3, 2, seed=6), double(4, 2, seed=7), double(4, 2, seed=8)
    assert check(Attention.apply, (q, k, v)).verdict == "pass"
    wrong = check(AttentionIgnoresAttnGrad.apply, (q, k, v))
    assert wrong.verdict == "fail"
    assert {c.position for c in wrong.inputs if c.verdict == "fail"} == {0, 1}  # v is right
    assert wrong.outputs is not None
    assert {n for t in wrong.outputs.traced for n in t.outputs} == {"output 1"}
    # with a cotangent of ones on attn (the workaround of summing outputs) the bug hides
    ones = (np.random.default_rng(0).standard_normal((3, 2)), np.ones((3, 4)))
    assert check(AttentionIgnoresAttnGrad.apply, (q, k, v), cotangent=ones).verdict == "pass"


class MaskedSum(torch.autograd.Function):  # an int dim and a bool mask
    @staticmethod
    def forward(ctx, x, dim, mask):
        assert type(dim) is int and mask.dtype == torch.bool
        ctx.save_for_backward(mask)
        ctx.dim = dim
        return (x.pow(2) * mask).sum(dim)

    @staticmethod
    def backward(ctx, g):
        return MaskedSum.grad(ctx, g, True), None, None

    @staticmethod
    def grad(ctx, g, use_mask):
        (mask,) = ctx.saved_tensors
        x = ctx.x
        return 2 * x * g.unsqueeze(ctx.dim) * (mask if use_mask else 1)


class MaskedSumSaved(MaskedSum):
    @staticmethod
    def forward(ctx, x, dim, mask):
        ctx.x = x.detach()
        return MaskedSum.forward(ctx, x, dim, mask)


class MaskedSumIgnoresMask(MaskedSumSaved):
    @staticmethod
    def backward(ctx, g):
        return MaskedSum.grad(ctx, g, False), None, None


def test_a_function_with_an_int_dim_and_a_bool_mask_passes_and_a_mutant_fails_where_masked():
    x = double(3, 4, seed=9)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert check(MaskedSumSaved.apply, (x, 1, mask)).verdict == "pass"
    wrong = check(MaskedSumIgnoresMask.apply, (x, 1, mask))
    assert wrong.verdict == "fail"
    failed = wrong.inputs[0].element_verdicts == "fail"
    assert np.array_equal(failed, ~mask.numpy())  # exactly the masked-out elements


ComplexMul = corpus_functions.complex_scale(None)
ComplexMulMissingConj = corpus_functions.complex_scale("missing_conj")


def test_a_complex_function_passes_and_a_missing_conj_fails_on_that_input():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(3, generator=g, dtype=torch.complex128)
    w = torch.randn(3, generator=g, dtype=torch.complex128)
    result = check(ComplexMul.apply, (z, w))
    assert result.verdict == "pass"
    assert [c.dtype for c in result.inputs] == ["complex128", "complex128"]
    wrong = check(ComplexMulMissingConj.apply, (z, w))
    assert [c.verdict for c in wrong.inputs] == ["fail", "pass"]


def test_torch_conjugate_wirtinger_convention_worked_example():
    # L = |z|^2 = a^2 + b^2: dL/da + i dL/db = 2z, which is what torch's backward returns
    z = torch.tensor([1.0 + 2.0j, -0.5 + 0.25j], dtype=torch.complex128)
    right = check(lambda z: (z.abs() ** 2).sum(), (z,), lambda z: 2 * z)
    assert right.verdict == "pass"
    assert check(lambda z: (z.abs() ** 2).sum(), (z,), lambda z: 2 * z.conj()).verdict == "fail"
    # a complex output with a hand formula: y = z^2, grad_output v, gradient v conj(2 z)
    formula = check(lambda z: z**2, (z,), lambda z, cotangent: cotangent * (2 * z).conj())
    assert formula.verdict == "pass"


def test_requires_grad_chooses_the_differentiated_inputs_and_the_others_reach_f_unchanged():
    x, w = double(3, seed=11), double(3, seed=12, grad=False)
    seen = []

    def f(x, w, scale, name, nothing, shape):
        seen.append((type(scale), name, nothing, shape, w.requires_grad))
        return (x * w * scale).sum()

    result = check(f, (x, w, 2.5, "mean", None, (3,)))
    assert result.verdict == "pass" and [c.position for c in result.inputs] == [0]
    assert result.inputs[0].name == "x"
    assert set(seen) == {(float, "mean", None, (3,), False)}
    both = check(f, (x.detach(), w, 2.5, "mean", None, (3,)))  # no tensor requires grad
    assert [c.position for c in both.inputs] == [0, 1]
    only_w = check(f, (x, w, 2.5, "mean", None, (3,)), wrt=(1,))
    assert [c.position for c in only_w.inputs] == [1]


def test_numpy_constants_with_wrt_and_a_formula_returning_none_for_them():
    x = np.linspace(0.1, 1.0, 5)

    def f(x, n, how):
        return getattr(np, how)(np.sin(x) * n)

    def grad(x, n, how):
        return (np.cos(x) * n / x.size, None, None)

    assert check(f, (x, 3, "mean"), grad, wrt=(0,)).verdict == "pass"
    assert check(f, (x, 3, "mean"), grad).verdict == "pass"  # only x is floating


def test_a_dict_of_inputs_is_called_by_name_and_wrt_takes_names():
    x, w = np.linspace(0.1, 1.0, 4), np.array([2.0, 3.0])

    def f(x, w):
        return np.sum(x**2) * w[0] + w[1]

    def grad(x, w):
        return {"x": 2 * x * w[0], "w": None}

    result = check(f, {"x": x, "w": w}, grad, wrt=("x",))
    assert result.verdict == "pass" and result.inputs[0].name == "x"
    wrong = check(f, {"x": x, "w": w}, lambda x, w: (x * w[0], None), wrt="x")
    assert wrong.table().splitlines()[2].split()[:2] == ["0", "(x)"]


def test_none_for_a_differentiated_input_is_judged_as_a_zero_gradient():
    x = np.array([1.0, 2.0])
    result = check(lambda x, y: np.sum(x * y), (x, x.copy()), lambda x, y: (y, None))
    assert [c.verdict for c in result.inputs] == ["pass", "fail"]
    assert np.array_equal(result.inputs[1].analytic, [0.0, 0.0])


def test_an_integer_output_is_skipped_and_said():
    x = double(4, seed=13)
    result = check(lambda x: (x.sin(), x.argmax()), (x,))
    assert result.verdict == "pass"
    assert result.outputs is not None and result.outputs.skipped == ("output 1 (dtype int64)",)


def test_an_empty_input_is_refused_in_a_sentence():
    with pytest.raises(ValueError, match=r"input 0 is empty \(shape \(0,\)\)"):
        check(lambda x: x.sum(), np.zeros(0), lambda x: np.ones(0))
    with pytest.raises(ValueError, match="inputs is empty"):
        check(lambda: 0.0, ())


def test_f_raising_says_at_which_point_and_keeps_the_original_as_cause():
    def f(v):
        if v[1] > 2.0:
            raise ZeroDivisionError("no luck")
        return np.sum(v**2)

    with pytest.raises(CallError, match=r"perturbed point: input 0 \(v\), element \(1,\)") as e:
        check(f, np.array([1.0, 2.0]), lambda v: 2 * v)
    assert isinstance(e.value.__cause__, ZeroDivisionError)
    with pytest.raises(CallError, match="f raised ValueError at x: bad") as e:
        check(lambda v: (_ for _ in ()).throw(ValueError("bad")), np.ones(2), lambda v: v)
    with pytest.raises(CallError, match="gradient formula raised KeyError at x"):
        check(lambda v: np.sum(v), np.ones(2), lambda v: {}["missing"])


def test_a_backward_that_raises_is_named():
    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("kaput")

    says = r"backward of f \(autograd\) raised RuntimeError at x: kaput"
    with pytest.raises(CallError, match=says):
        check(Broken.apply, (double(2),))


def test_a_nan_analytic_gradient_is_said_not_hidden_as_a_zero_error():
    x = np.array([1.0, 2.0])
    result = check(lambda v: np.sum(v**2), x, lambda v: np.array([np.nan, 4.0]))
    assert result.verdict == "fail"
    assert "input 0 (v): the analytic gradient is nan at 1 element(s), the first at (0,)" in (
        result.summary()
    )


def test_a_non_scalar_f_with_a_formula_without_cotangent_names_the_two_fixes():
    with pytest.raises(ValueError, match=r"accept a `cotangent`.*check\(\.\.\., cotangent=v\)"):
        check(lambda v: v**2, np.array([1.0, 2.0]), lambda v: 2 * v)
    given = check(lambda v: v**2, np.array([1.0, 2.0]), lambda v: 2 * v, cotangent=np.ones(2))
    assert given.verdict == "pass"


def test_check_under_inference_mode_leaves_it_and_passes_a_right_gradient():
    with torch.inference_mode():
        x = torch.linspace(-1, 1, 5, dtype=torch.float64)
        w = torch.ones(5, dtype=torch.float64)
        result = check(lambda x, w: (x.sin() * w).sum(), (x, w))
        assert torch.is_inference_mode_enabled()
    assert result.verdict == "pass", result.summary()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_tensors_keep_their_device_and_the_cuda_rng_is_restored():
    x = torch.randn(5, dtype=torch.float64, device="cuda")
    devices = []

    def f(v, w):
        devices.append((v.device.type, w.device.type))
        return (torch.nn.functional.dropout(v, 0.5) * w).sum()

    state = torch.cuda.get_rng_state()
    result = check(f, (x, torch.ones(5, device="cuda", dtype=torch.float64)), rng_seed=0)
    assert result.verdict == "pass", result.summary()
    assert set(devices) == {("cuda", "cuda")}
    assert torch.equal(torch.cuda.get_rng_state(), state)
    traced = check(lambda v: (v.sin(), v.exp()), (x,))
    assert traced.verdict == "pass"
