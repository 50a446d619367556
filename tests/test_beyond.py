"""Beyond first order: forward mode, order 2, the backward's contract and gradgradcheck, each
checked on hand-made custom Functions that are right (they pass) and mutants (they fail)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.autograd.function import once_differentiable  # noqa: E402
from torch.autograd.gradcheck import GradcheckError  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck import BackwardContract, check, check_contract  # noqa: E402
from gradcheck.torch import gradgradcheck  # noqa: E402

torch.set_num_threads(1)


def x64(*shape: int, seed: int = 0) -> Any:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def cube_function(backward: Any, *, materialize: bool = True) -> Any:
    """sum(x**3) with the given backward(ctx, g)."""

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            ctx.set_materialize_grads(materialize)
            return (x**3).sum()

    Cube.backward = staticmethod(backward)  # type: ignore[method-assign]
    return Cube


def right_cube(ctx: Any, g: Any) -> Any:
    (x,) = ctx.saved_tensors
    return 3 * x**2 * g


# -- the contract, by default ------------------------------------------------------------------


def test_a_right_custom_function_passes_every_default_check_and_its_contract():
    result = check(cube_function(right_cube).apply, x64(5))
    assert result.passed
    assert result.beyond is not None and result.beyond.contract is not None
    assert [i.name for i in result.beyond.contract.items] == [
        "linearity",
        "undefined_grad",
        "reentrant",
        "grad_dtypes",
    ]


def test_a_scalar_loss_that_forgets_grad_output_fails_by_default_saying_so():
    def forgot(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2  # the cotangent 1 of a scalar loss hides this from the numbers

    result = check(cube_function(forgot).apply, x64(5))
    assert result.verdict == "fail"
    assert all(c.verdict == "pass" for c in result.inputs)  # the numbers alone pass
    assert "contract (linearity)" in result.beyond.failed  # type: ignore[union-attr]
    assert any("multiply by grad_output" in r for r in result.reasons)


def test_a_float32_gradient_for_a_float64_input_fails_by_default_saying_so():
    def float32(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return (3 * x**2 * g).float()  # autograd casts it back to float64, digits lost

    result = check(cube_function(float32).apply, x64(5))
    assert result.verdict == "fail"
    assert "contract (grad_dtypes)" in result.beyond.failed  # type: ignore[union-attr]
    assert any("float32 for a float64 input" in r for r in result.reasons)


def test_a_backward_that_changes_what_it_saved_is_not_reentrant():
    class Swish(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            s = torch.sigmoid(x)
            ctx.grad = s * (1 + x * (1 - s))
            return (x * s).sum()

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            ctx.grad *= g  # the real kernel's bug: in place, on what forward saved
            return ctx.grad

    contract = check_contract(Swish.apply, (x64(6),))
    assert {"linearity", "reentrant"} <= set(contract.failed)


def test_reentrancy_within_nondet_tol_passes_and_outside_fails():
    calls = {"n": 0}

    def jittery(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        calls["n"] += 1
        return 3 * x**2 * g + 1e-9 * calls["n"] * (calls["n"] % 3 == 0)

    fn = cube_function(jittery).apply
    strict = check_contract(fn, (x64(4),), BackwardContract(linearity=False))
    assert strict.failed == ("reentrant",)
    calls["n"] = 0
    loose = check_contract(fn, (x64(4),), BackwardContract(linearity=False, nondet_tol=1e-6))
    assert loose.verdict == "pass"


def test_linearity_at_a_subnormal_gradient_allows_the_rounding_of_its_products():
    # Found by hypothesis: autograd of log1p(x**2) at the float32 subnormal x = 1.4e-45. The
    # gradient 2 x u is a subnormal, so g(c u) and c g(u) each round to the subnormal spacing
    # 2**-149 (1.4e-45) and differ by one spacing, while sqrt(eps) |g| allows 1e-48.
    x = torch.tensor([1.4e-45], dtype=torch.float32)
    assert float(x) == 2.0**-149
    contract = check_contract(lambda a: torch.log1p(a**2).sum(), (x,))
    assert contract.verdict == "pass", contract.reasons


@pytest.mark.parametrize("value", [1e-40, 1e-30])
def test_a_forgotten_grad_output_at_a_small_gradient_still_fails_linearity(value):
    # The floor is a few subnormal spacings (about 1e-44 in float32): a gradient of 1e-40, itself
    # a subnormal of 71000 spacings, that ignores its cotangent is still off by 3 |g| there.
    def forgets(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2  # no grad_output

    x = torch.full((3,), float(np.sqrt(value / 3)), dtype=torch.float32)
    contract = check_contract(cube_function(forgets).apply, (x,))
    assert "linearity" in contract.failed


def test_contract_false_and_hand_formulas_skip_the_contract():
    x = x64(3)
    assert check(lambda a: (a**2).sum(), x, contract=False).beyond is None
    formula = check(lambda a: (a**2).sum(), x, grad=lambda a: 2 * a)
    assert formula.beyond is None


def test_the_contract_costs_a_handful_of_backward_calls_whatever_the_size():
    small = check_contract(cube_function(right_cube).apply, (x64(3),))
    large = check_contract(cube_function(right_cube).apply, (x64(3000),))
    assert small.backward_calls == large.backward_calls <= 5
    assert large.forward_calls == 1


def test_within_a_check_the_contract_takes_the_first_calls_graph_and_backward():
    # check's first call (inputs requiring grad) gives autograd's gradient by one backward;
    # the contract runs on that graph, with that backward as its first: linearity,
    # undefined grad_outputs and reentrancy add three, and f is not called again.
    calls = []

    def f(a):
        calls.append(1)
        return torch.tanh(a) * a

    result = check(f, x64(40), mode="fast", batch="loop")
    contract = result.beyond.contract
    assert (contract.forward_calls, contract.backward_calls) == (0, 3)
    assert contract.verdict == "pass" and result.passed
    assert len(calls) == result.evaluations == 1 + 4  # the first call and one probe
    # A custom Function's raw backward output is recorded by a backward of the contract's own.
    custom = check(cube_function(right_cube).apply, x64(40), mode="fast").beyond.contract
    assert (custom.forward_calls, custom.backward_calls) == (0, 4)


def test_a_backward_that_is_not_reentrant_still_fails_on_the_shared_graph():
    # Its state changes with every call: the contract's second backward differs from the
    # check's first, as two backward calls at the same point must not.
    class Drifting(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(a)
            ctx.calls = 0
            return a**3

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (a,) = ctx.saved_tensors
            ctx.calls += 1
            return g * 3 * a**2 * (1 + 0.01 * (ctx.calls - 1))

    result = check(Drifting.apply, x64(40), mode="fast")
    assert "reentrant" in result.beyond.contract.failed
    assert result.verdict == "fail"


# -- undefined gradients of tuple outputs (the contract module directly) -----------------------


def sin_cos_function(backward: Any) -> Any:
    class SinCos(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            ctx.set_materialize_grads(False)  # backward sees None for an unused output
            return x.sin(), x.cos()

    SinCos.backward = staticmethod(backward)  # type: ignore[method-assign]
    return SinCos


def zeros_for_none(ctx: Any, ga: Any, gb: Any) -> Any:
    (x,) = ctx.saved_tensors
    ga = torch.zeros_like(x) if ga is None else ga
    gb = torch.zeros_like(x) if gb is None else gb
    return ga * x.cos() - gb * x.sin()


def test_a_tuple_output_function_that_handles_none_grads_passes():
    assert check_contract(sin_cos_function(zeros_for_none).apply, (x64(4),)).verdict == "pass"


def test_a_tuple_output_function_that_crashes_on_a_none_grad_fails_saying_so():
    def crashes(ctx: Any, ga: Any, gb: Any) -> Any:
        (x,) = ctx.saved_tensors
        return ga * x.cos() - gb * x.sin()

    contract = check_contract(sin_cos_function(crashes).apply, (x64(4),))
    assert contract.failed == ("undefined_grad",)
    assert "raised TypeError" in contract.reasons[0]


def test_a_tuple_output_function_that_turns_a_none_grad_into_ones_fails():
    def ones_for_none(ctx: Any, ga: Any, gb: Any) -> Any:
        (x,) = ctx.saved_tensors
        ga = torch.ones_like(x) if ga is None else ga  # garbage: None means zero
        gb = torch.zeros_like(x) if gb is None else gb
        return ga * x.cos() - gb * x.sin()

    contract = check_contract(sin_cos_function(ones_for_none).apply, (x64(4),))
    assert contract.failed == ("undefined_grad",)


def test_one_output_undefined_at_a_time_is_compared_with_a_zero_grad_output():
    def drops_b_when_a_is_none(ctx: Any, ga: Any, gb: Any) -> Any:
        (x,) = ctx.saved_tensors
        if ga is None:
            return torch.zeros_like(x)  # wrong: b's grad_output still counts
        gb = torch.zeros_like(x) if gb is None else gb
        return ga * x.cos() - gb * x.sin()

    contract = check_contract(sin_cos_function(drops_b_when_a_is_none).apply, (x64(4),))
    assert contract.failed == ("undefined_grad",)
    assert "output 0's grad_output" in contract.reasons[0]


def test_non_tensor_arguments_reach_f_unchanged_and_are_not_differentiated():
    contract = check_contract(lambda a, k: (a**k).sum(), (x64(3), 3))
    assert contract.verdict == "pass"


# -- batched gradients (opt-in) -----------------------------------------------------------------


def test_batched_gradients_are_off_by_default_and_checked_when_asked():
    def item_based(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2 * float(g.sum().item())  # .item() cannot run under vmap

    fn = cube_function(item_based).apply
    assert check_contract(fn, (x64(3),)).verdict == "pass"
    batched = check_contract(fn, (x64(3),), BackwardContract(batched_grad=True))
    assert batched.failed == ("batched_grad",)
    right = check_contract(cube_function(right_cube).apply, (x64(3),), BackwardContract(True))
    assert right.verdict == "pass"


# -- forward mode ---------------------------------------------------------------------------------


def sin_times(jvp_scale: float = 1.0, with_jvp: bool = True) -> Any:
    """sin(x) * w, a classic custom Function whose jvp is scaled by ``jvp_scale``."""

    class SinTimes(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            ctx.save_for_backward(x, w)
            ctx.save_for_forward(x, w)  # what jvp reads from ctx.saved_tensors
            return torch.sin(x) * w

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w = ctx.saved_tensors
            return g * torch.cos(x) * w, g * torch.sin(x)

    if with_jvp:

        def jvp(ctx: Any, tx: Any, tw: Any) -> Any:
            x, w = ctx.saved_tensors
            return jvp_scale * tx * torch.cos(x) * w + tw * torch.sin(x)

        SinTimes.jvp = staticmethod(jvp)  # type: ignore[attr-defined]
    return SinTimes


def test_a_right_jvp_passes_forward_mode_through_dual_numbers():
    result = check(sin_times().apply, (x64(5), x64(5, seed=1)), modes=("rev", "fwd"))
    assert result.passed
    assert result.beyond.forward.path == "forward_ad"  # type: ignore[union-attr]


def test_a_wrong_jvp_with_a_right_backward_fails_forward_mode_only():
    result = check(sin_times(1.001).apply, (x64(5), x64(5, seed=1)), modes=("rev", "fwd"))
    assert result.verdict == "fail"
    assert all(c.verdict == "pass" for c in result.inputs)
    assert result.beyond.failed == ("fwd",)  # type: ignore[union-attr]
    assert any(r.startswith("fwd: input 0:") and "direction" in r for r in result.reasons)


def test_a_function_without_jvp_is_inconclusive_with_a_reason_not_a_crash():
    result = check(sin_times(with_jvp=False).apply, (x64(5), x64(5, seed=1)), modes=("rev", "fwd"))
    assert result.verdict == "inconclusive"
    assert any("jvp staticmethod" in r for r in result.reasons)


def test_plain_torch_code_is_checked_with_torch_func_jvp():
    result = check(lambda a, b: torch.tanh(a @ b), (x64(3, 4), x64(4, 2)), modes=("rev", "fwd"))
    assert result.passed
    assert result.beyond.forward.path == "torch.func.jvp"  # type: ignore[union-attr]


def test_a_hand_jvp_formula_is_checked_for_numpy_functions():
    x = np.random.default_rng(0).standard_normal(4)

    def f(a: Any) -> Any:
        return np.sin(a).sum()

    right = check(
        f, x, grad=np.cos, modes=("rev", "fwd"), jvp=lambda a, tangents: np.cos(a) @ tangents[0]
    )
    wrong = check(
        f, x, grad=np.cos, modes=("rev", "fwd"), jvp=lambda a, tangents: np.sin(a) @ tangents[0]
    )
    assert right.passed
    assert wrong.beyond.failed == ("fwd",)  # type: ignore[union-attr]


def test_forward_mode_for_numpy_without_a_jvp_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="jvp="):
        check(np.sin, np.ones(3), grad=np.cos, modes=("rev", "fwd"))


# -- order 2 -------------------------------------------------------------------------------------


def test_order_2_passes_a_twice_differentiable_custom_function():
    result = check(cube_function(right_cube).apply, x64(5), order=2)
    assert result.passed
    assert result.beyond.second.check is not None  # type: ignore[union-attr]


def test_order_2_catches_a_backward_computed_in_numpy_naming_input_and_element():
    def in_numpy(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return torch.from_numpy(3 * x.detach().numpy() ** 2) * g  # right once, no graph

    first = check(cube_function(in_numpy).apply, x64(5))
    second = check(cube_function(in_numpy).apply, x64(5), order=2)
    assert first.passed
    assert second.beyond.failed == ("order 2",)  # type: ignore[union-attr]
    assert any(r.startswith("order 2: input 0 fails at element (") for r in second.reasons)


def test_order_2_catches_an_intermediate_kept_on_ctx():
    class KeepsExp(torch.autograd.Function):  # pytorch#58509
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            y = x.exp()
            ctx.y = y  # computed without a graph: its dependence on x is lost
            return y.sum()

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return ctx.y * g

    assert check(KeepsExp.apply, x64(4)).passed
    assert check(KeepsExp.apply, x64(4), order=2).beyond.failed == ("order 2",)  # type: ignore[union-attr]


def test_order_2_of_a_non_scalar_f_also_checks_the_grad_output_derivative():
    def detaches_grad_output(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g.detach()  # d/d grad_output lost in double backward

    class Cubes(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x**3

        backward = staticmethod(detaches_grad_output)

    result = check(Cubes.apply, x64(4), order=2)
    assert result.beyond.failed == ("order 2",)  # type: ignore[union-attr]
    assert any("order 2: grad_output fails" in r for r in result.reasons)
    assert check(lambda a: a**3, x64(4), order=2).passed


def test_once_differentiable_is_honoured_with_a_clear_reason():
    result = check(cube_function(once_differentiable(right_cube)).apply, x64(4), order=2)
    assert result.verdict == "inconclusive"
    assert result.beyond.second.check is None  # type: ignore[union-attr]
    assert any("@once_differentiable" in r for r in result.reasons)


def test_order_2_with_a_hand_formula_is_refused_pointing_at_the_hessian_recipe():
    with pytest.raises(ValueError, match="hessian_vector_product"):
        check(np.sin, np.ones(3), grad=np.cos, order=2)


def test_bad_modes_and_orders_are_refused():
    with pytest.raises(ValueError, match="modes"):
        check(lambda a: (a**2).sum(), x64(2), modes=("fwd",))
    with pytest.raises(ValueError, match="order"):
        check(lambda a: (a**2).sum(), x64(2), order=3)


# -- gradgradcheck -------------------------------------------------------------------------------


def test_gradgradcheck_takes_torch_s_call_and_returns_true_for_right_code():
    a = x64(3).requires_grad_(True)
    b = x64(3, seed=1).requires_grad_(True)
    assert gradgradcheck(lambda p, q: (p * q.sin(), p.exp()), (a, b))
    assert torch.autograd.gradgradcheck(lambda p, q: (p * q.sin(), p.exp()), (a, b))


def test_gradgradcheck_raises_torch_s_error_or_returns_false_for_a_detached_backward():
    def in_numpy(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return torch.from_numpy(3 * x.detach().numpy() ** 2) * g

    fn = cube_function(in_numpy).apply
    x = x64(4).requires_grad_(True)
    with pytest.raises(GradcheckError, match="fail"):
        gradgradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,), raise_exception=False) is False


def test_gradgradcheck_keeps_non_tensor_arguments_and_non_contiguous_grad_outputs():
    x = x64(3).requires_grad_(True)
    assert gradgradcheck(lambda a, k: a**k, (x, 3), gen_non_contig_grad_outputs=True)


def test_gradgradcheck_refuses_what_it_cannot_mean():
    x = x64(3).requires_grad_(True)
    with pytest.raises(ValueError, match="masked"):
        gradgradcheck(torch.sin, (x,), masked=True)
    with pytest.raises(ValueError, match="nothing to check"):
        gradgradcheck(torch.sin, (x,), check_rev_over_rev=False)


# -- cases and reports -------------------------------------------------------------------------


def test_a_case_carries_modes_and_order_to_the_runner_and_the_reports_name_the_part():
    from gradcheck._cases.runner import run_cases
    from gradcheck._report.text import render_json, render_text

    bad = gradcheck.case(
        name="wrong_jvp",
        f=lambda x, w: sin_times(1.001).apply(x, w),
        inputs={"x": gradcheck.normal(4), "w": gradcheck.normal(4)},
        dtypes=("float64",),
        modes=("rev", "fwd"),
        order=2,
    )
    assert (bad.modes, bad.order) == (("rev", "fwd"), 2)
    result = run_cases([bad])
    (row,) = result.rows
    assert row.verdict == "fail"
    assert "failed beyond first order: fwd" in render_text(result)
    assert json.loads(render_json(result))["rows"][0]["check"]["beyond"]["failed"] == ["fwd"]
    with pytest.raises(ValueError, match="order"):
        gradcheck.case(name="x", f=lambda x: x, inputs={"x": 1.0}, order=3)


def test_gradgradcheck_forward_over_reverse_passes_right_code():
    x = x64(3).requires_grad_(True)
    assert gradgradcheck(torch.sin, (x,), check_fwd_over_rev=True)
    assert gradgradcheck(torch.exp, (x,), check_fwd_over_rev=True, check_rev_over_rev=False)
