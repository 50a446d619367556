"""``from gradcheck.torch import gradcheck`` runs a torch-style test suite unchanged: the suite
below is written for torch.autograd.gradcheck; only its import line changes."""

from __future__ import annotations

import textwrap

import pytest
import torch

from gradcheck.torch import TORCH_KEYWORDS, GradcheckError, gradcheck

torch.set_num_threads(1)

TORCH_STYLE_SUITE = textwrap.dedent(
    """
    import pytest
    import torch
    from torch.autograd import gradcheck
    from torch.autograd.gradcheck import GradcheckError

    class Power(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, p):
            ctx.save_for_backward(x)
            ctx.p = p
            return x.abs() ** p

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ctx.p * x.abs() ** (ctx.p - 1) * x.sign(), None

    class Wrong(Power):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ctx.p * x.abs() ** ctx.p * x.sign(), None

    def test_power_with_an_int_exponent():
        x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
        assert gradcheck(Power.apply, (x, 3), eps=1e-6, atol=1e-4)

    def test_linear_with_a_bias():
        inputs = (
            torch.randn(5, 3, dtype=torch.double, requires_grad=True),
            torch.randn(2, 3, dtype=torch.double, requires_grad=True),
            torch.randn(2, dtype=torch.double, requires_grad=True),
        )
        assert gradcheck(torch.nn.functional.linear, inputs)

    def test_a_wrong_backward_raises():
        x = torch.randn(3, dtype=torch.double, requires_grad=True)
        with pytest.raises(GradcheckError):
            gradcheck(Wrong.apply, (x, 3))
        assert not gradcheck(Wrong.apply, [x, 3], raise_exception=False)
    """
)


def test_a_torch_style_suite_runs_unchanged_with_the_one_line_migration(pytester):
    migrated = TORCH_STYLE_SUITE.replace(
        "from torch.autograd import gradcheck", "from gradcheck.torch import gradcheck"
    )
    assert migrated != TORCH_STYLE_SUITE
    pytester.makepyfile(test_suite=migrated)
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_the_failure_message_names_the_input_then_the_worst_element_table():
    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * 3.001

    with pytest.raises(GradcheckError) as raised:
        gradcheck(Off.apply, (torch.ones(2, dtype=torch.double, requires_grad=True),))
    lines = str(raised.value).splitlines()
    assert lines[0] == "gradcheck fail, per input:"
    assert lines[1] == "  input 0: fail at 2 of 2 elements"
    assert lines[2].startswith("fail: autograd vs numerical")
    assert lines[3].startswith("worst elements (sign flips first, then by")
    assert "analytic" in lines[4]
    assert "0.000333" in lines[6]  # 3.001 against 3: a relative error of 1/3000
    assert raised.value.result.verdict == "fail"


@pytest.mark.parametrize(
    ("keyword", "says"),
    [
        ("check_batched_forward_grad", "forward mode"),
        ("masked", "dense"),
    ],
)
def test_what_is_not_available_is_refused_saying_why(keyword, says):
    x = torch.ones(2, dtype=torch.double, requires_grad=True)
    with pytest.raises(NotImplementedError, match=says):
        gradcheck(torch.sin, (x,), **{keyword: True})


class SinNoJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.cos(x)


class SinWrongJvp(SinNoJvp):
    @staticmethod
    def jvp(ctx, t):
        return t * torch.cos(ctx.saved_for_jvp) * 1.01

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.saved_for_jvp = x
        return torch.sin(x)


def test_check_forward_ad_checks_forward_mode_as_torch_does():
    x = torch.linspace(-1, 1, 5, dtype=torch.double, requires_grad=True)
    assert gradcheck(torch.sin, (x,), check_forward_ad=True)
    assert gradcheck(SinNoJvp.apply, (x,))  # reverse mode alone: right
    assert not gradcheck(SinWrongJvp.apply, (x,), check_forward_ad=True, raise_exception=False)
    with pytest.raises(GradcheckError, match="fwd"):
        gradcheck(SinNoJvp.apply, (x,), check_forward_ad=True)  # no jvp: said, not a pass


class ForgetsGradOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x**2).sum()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x  # forgets g: invisible to a scalar loss's cotangent of 1


def test_the_backward_contract_runs_under_torch_s_keywords():
    x = torch.linspace(-1, 1, 5, dtype=torch.double, requires_grad=True)
    with pytest.raises(GradcheckError, match="grad_output"):
        gradcheck(ForgetsGradOutput.apply, (x,))
    assert gradcheck(torch.sin, (x,), check_batched_grad=True, check_grad_dtypes=True)


class NumpyCube(torch.autograd.Function):
    """Right once, not twice: its backward leaves autograd through NumPy."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.from_numpy(3 * x.detach().numpy() ** 2)


def test_gradgradcheck_is_a_one_line_migration_too():
    from gradcheck.torch import gradgradcheck

    x = torch.linspace(-1, 1, 4, dtype=torch.double, requires_grad=True)
    assert gradgradcheck(torch.tanh, (x,))
    assert gradcheck(NumpyCube.apply, (x,))
    with pytest.raises(GradcheckError):
        gradgradcheck(NumpyCube.apply, (x,))
    assert not gradgradcheck(NumpyCube.apply, (x,), raise_exception=False)


def test_every_torch_keyword_is_accepted_at_its_default_and_unknown_ones_are_refused():
    x = torch.linspace(-1, 1, 4, dtype=torch.double, requires_grad=True)
    defaults = dict(
        eps=1e-6,
        atol=1e-5,
        rtol=1e-3,
        raise_exception=True,
        nondet_tol=0.0,
        check_undefined_grad=True,
        check_grad_dtypes=False,
        check_batched_grad=False,
        check_batched_forward_grad=False,
        check_forward_ad=False,
        check_backward_ad=True,
        fast_mode=False,
        masked=None,
    )
    assert set(defaults) == set(TORCH_KEYWORDS)
    assert gradcheck(torch.sin, (x,), **defaults)
    assert gradcheck(torch.sin, x, fast_mode=True, gradcheck_seed=3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        gradcheck(torch.sin, (x,), epsilon=1e-6)
