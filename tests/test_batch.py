"""Batched evaluation of the perturbations: same numbers as the loop, counted, chunked, refused
cleanly; expected derivatives come from calculus, not from the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from counted import Counted

from gradcheck import check, estimate_gradient
from gradcheck._numerics import evaluate as _batch
from gradcheck._numerics.engine import ROUNDING_POINTS

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _without_the_elementwise_path(monkeypatch):
    """These tests are about vmap and the loop; elementwise f has a faster path of its own
    (``gradcheck._numerics.separable``, tests/test_separable.py) that would otherwise take them."""
    monkeypatch.setattr(_batch, "_attach_elementwise", lambda *args: None)


def sin_sum(x):
    return (torch.sin(x) * torch.linspace(0.5, 1.5, x.numel(), dtype=x.dtype)).sum()


def sin_sum_grad(x):
    return np.cos(x.numpy()) * np.linspace(0.5, 1.5, x.numel())


def test_vmap_path_gives_the_calculus_gradient_and_says_it_batched():
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    estimate = estimate_gradient(sin_sum, (x,))
    assert estimate.path == "batched"
    assert "vmap" in estimate.path_reason
    assert np.all(np.abs(estimate.values[0] - sin_sum_grad(x)) <= estimate.errors[0])


def test_the_loop_path_gives_the_same_numbers_as_the_batched_one():
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    batched = estimate_gradient(sin_sum, (x,))
    looped = estimate_gradient(sin_sum, (x,), batch="loop")
    assert looped.path == "loop"
    np.testing.assert_allclose(batched.values[0], looped.values[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(batched.errors[0], looped.errors[0], rtol=1e-3, atol=1e-15)


def test_a_batched_point_counts_as_one_evaluation():
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    estimate = estimate_gradient(sin_sum, (x,))
    # f(x) for the policy, two trial rows for vmap, four points per element.
    assert estimate.evaluations == 1 + 2 + 4 * 64 + ROUNDING_POINTS


def test_f_that_vmap_refuses_falls_back_to_the_loop_and_says_why():
    def uses_item(x):
        return torch.sin(x).sum() * (1.0 + 0.0 * x.sum().item())

    estimate = estimate_gradient(uses_item, (torch.linspace(0, 1, 40, dtype=torch.float64),))
    assert estimate.path == "loop"
    assert estimate.path_reason.startswith("vmap(f) failed")
    assert np.all(np.abs(estimate.values[0] - np.cos(np.linspace(0, 1, 40))) <= estimate.errors[0])


def test_data_dependent_control_flow_falls_back_to_the_loop():
    def branchy(x):
        return torch.sin(x).sum() if x.sum() > 0 else -torch.sin(x).sum()

    estimate = estimate_gradient(branchy, (torch.linspace(0, 1, 40, dtype=torch.float64),))
    assert estimate.path == "loop"


def test_small_inputs_loop_so_that_side_effects_stay_one_per_point():
    calls = []

    def f(x):
        calls.append(1)
        return (x**2).sum()

    estimate = estimate_gradient(f, (torch.ones(5, dtype=torch.float64),))
    assert estimate.path == "loop"
    assert "small" in estimate.path_reason
    assert estimate.evaluations == len(calls) == 1 + 4 * 5 + ROUNDING_POINTS


def test_numpy_f_loops_unless_a_batched_form_is_declared():
    x = np.linspace(0, 1, 50)
    plain = estimate_gradient(lambda v: np.sum(np.sin(v)), x)
    assert plain.path == "loop"
    assert "batch=" in plain.path_reason
    rows_seen = []

    def batched(v):
        rows_seen.append(v.shape[0])
        return np.sum(np.sin(v), axis=1)

    declared = estimate_gradient(lambda v: np.sum(np.sin(v)), x, batch=batched)
    assert declared.path == "batched"
    assert np.all(np.abs(declared.values[0] - np.cos(x)) <= declared.errors[0])
    assert declared.evaluations - ROUNDING_POINTS == 1 + sum(rows_seen) == 1 + 2 + 4 * 50


def test_the_memory_budget_sets_the_chunk_size():
    x = np.linspace(-1, 1, 50)
    chunks = []

    def batched(v):
        chunks.append(v.shape[0])
        return np.sum(np.sin(v), axis=1)

    # One row is 50 float64 = 400 bytes: a 1600-byte budget holds one element's four points.
    estimate_gradient(lambda v: np.sum(np.sin(v)), x, batch=batched, memory_budget=1600)
    assert chunks[0] == 2  # the trial rows
    assert chunks[1:] == [4] * 50


def test_a_declared_form_that_is_not_f_is_an_error_not_a_fallback():
    x = np.linspace(0, 1, 50)
    with pytest.raises(ValueError, match="batched form must return f"):
        estimate_gradient(lambda v: np.sum(np.sin(v)), x, batch=lambda v: np.sum(v, axis=1))


def test_a_declared_form_with_the_wrong_number_of_values_is_an_error():
    x = np.linspace(-1, 1, 50)
    with pytest.raises(ValueError, match="one value per row"):
        estimate_gradient(lambda v: np.sum(np.sin(v)), x, batch=lambda v: np.sin(v))


@pytest.mark.parametrize("budget", [0, -5, 1.5])
def test_a_memory_budget_that_is_not_a_positive_integer_is_refused(budget):
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes"):
        estimate_gradient(lambda v: np.sum(v), np.ones(3), memory_budget=budget)


def test_an_unknown_batch_option_is_refused():
    with pytest.raises(ValueError, match="batch='vmap' is not 'auto', 'loop'"):
        estimate_gradient(lambda v: np.sum(v), np.ones(3), batch="vmap")


def test_check_counts_batched_points_of_a_non_scalar_f_as_evaluations_of_f():
    calls, rows_seen = [], []

    def f(v):
        calls.append(1)
        return np.sin(v) * 2.0

    def batched(v):
        rows_seen.append(v.shape[0])
        return np.sin(v) * 2.0

    x = np.linspace(-1, 1, 40)
    result = check(f, x, lambda v, cotangent: 2.0 * np.cos(v) * cotangent, batch=batched)
    assert result.passed, result.summary()
    assert result.numerics.path == "batched"
    assert result.evaluations == len(calls) + sum(rows_seen)
    assert sum(rows_seen) == 2 + 2 * 40


def test_vmap_of_a_non_scalar_torch_f_is_counted_per_point():
    x = torch.linspace(-1, 1, 40, dtype=torch.float64)
    result = check(torch.sin, x, mode="full")
    assert result.passed and result.numerics.path == "batched"
    assert result.evaluations >= 2 * 40


def test_the_loop_writes_through_a_view_of_the_working_copy():
    for buffer in (np.zeros((2, 3)), torch.zeros(2, 3, dtype=torch.float64), np.zeros(())):
        view = _batch.flat_view(buffer)
        view[-1] = 7.0
        assert float(np.asarray(buffer).reshape(-1)[-1]) == 7.0


def test_the_callers_tensor_is_untouched_when_f_raises_inside_a_batched_run():
    x = torch.linspace(-1, 1, 64, dtype=torch.float64)
    before = x.clone()
    seen = []

    def f(v):
        seen.append(1)
        if len(seen) > 3:
            raise RuntimeError("boom")
        return torch.sin(v).sum()

    with pytest.raises(RuntimeError, match="boom"):
        estimate_gradient(f, (x,), batch="loop")
    assert torch.equal(x, before)


def test_numpy_inputs_never_import_torch_on_the_batched_decision(fresh_python):
    code = (
        "import sys, numpy as np, gradcheck\n"
        "e = gradcheck.estimate_gradient(lambda v: np.sum(v**2), np.ones(100))\n"
        "assert e.path == 'loop', e.path\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    fresh_python(code)


@pytest.mark.parametrize(("rows", "path"), [(_batch.MIN_CHUNK_ROWS, "batched"), (5, "loop")])
def test_an_input_batches_only_when_a_chunk_holds_enough_of_its_rows(rows, path):
    # One row of x is 64 float64 = 512 bytes: the budget holds exactly `rows` of them.
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    estimate = estimate_gradient(sin_sum, (x,), memory_budget=rows * 512)
    assert estimate.path == path
    if path == "loop":
        assert estimate.path_reason == (
            "vmap(f) is not tried: a chunk of input 0 holds 5 batched rows (each a copy of its "
            f"64 elements, memory_budget=2560 bytes), fewer than the {_batch.MIN_CHUNK_ROWS} "
            "that batching needs to beat the loop"
        )
    assert np.all(np.abs(estimate.values[0] - sin_sum_grad(x)) <= estimate.errors[0])
    # f(x), the two trial rows only where vmap is tried, four points per element.
    assert estimate.evaluations == 1 + 2 * (path == "batched") + 4 * 64 + ROUNDING_POINTS


def test_the_default_budget_batches_float64_inputs_up_to_16384_elements():
    # 4 MiB / (16384 * 8 bytes) = 32 rows; one element more and a chunk holds 31.
    budget = _batch.DEFAULT_MEMORY_BUDGET
    assert _batch.chunk_rows(torch.zeros(16384, dtype=torch.float64), budget) == 32
    assert _batch.chunk_rows(torch.zeros(16385, dtype=torch.float64), budget) == 31
    assert _batch.chunk_rows(torch.zeros(128, 128, dtype=torch.float32), budget) == 64
    assert _batch.MIN_CHUNK_ROWS == 32


def test_a_small_input_beside_a_large_one_batches_while_the_large_one_loops():
    from torch._C._functorch import is_batchedtensor

    looped_w = []  # a plain call made while only w is perturbed, i.e. a looped point of w

    def f(w, b):
        if not is_batchedtensor(b) and not torch.equal(w, w0):
            looped_w.append(1)
        return torch.sin(w).sum() * torch.cos(b).sum()

    w0 = torch.linspace(-1, 1, 256, dtype=torch.float64)
    b = torch.linspace(0, 1, 40, dtype=torch.float64)
    # b's row is 320 bytes and w's 2048: the budget holds MIN_CHUNK_ROWS rows of b, 5 of w.
    budget = 320 * _batch.MIN_CHUNK_ROWS
    estimate = estimate_gradient(f, (w0.clone(), b), memory_budget=budget)
    assert estimate.path == "batched"
    assert estimate.path_reason.startswith(
        "torch.func.vmap(f) for input 1; the loop for the others: a chunk of input 0 holds "
    )
    assert len(looped_w) == 4 * 256 + ROUNDING_POINTS
    expected_w = np.cos(w0.numpy()) * np.cos(b.numpy()).sum()
    expected_b = -np.sin(b.numpy()) * np.sin(w0.numpy()).sum()
    np.testing.assert_allclose(estimate.values[0], expected_w, rtol=1e-6)
    np.testing.assert_allclose(estimate.values[1], expected_b, rtol=1e-6, atol=1e-6)


def test_choosing_the_path_reads_no_clock(monkeypatch):
    import time

    def no_clock():
        raise AssertionError("the evaluation path must not depend on timing")

    for name in ("perf_counter", "monotonic", "time", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    x = torch.linspace(-2, 2, 4096, dtype=torch.float64)
    estimate = estimate_gradient(sin_sum, (x,))
    assert estimate.path == "batched"


def test_a_chunk_vmap_cannot_evaluate_hands_the_rest_to_the_loop():
    from torch._C._functorch import is_batchedtensor

    vmapped = []

    def f(v):
        if is_batchedtensor(v):
            vmapped.append(1)
            if len(vmapped) > 1:  # the trial passes; a batching rule breaks on the chunks
                raise RuntimeError("batching rule broke")
        return (torch.sin(v) * torch.linspace(0.5, 1.5, 64, dtype=v.dtype)).sum()

    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    estimate = estimate_gradient(f, (x,))
    assert estimate.path == "loop"
    assert estimate.path_reason == "vmap(f) failed on a chunk: RuntimeError: batching rule broke"
    assert np.all(np.abs(estimate.values[0] - sin_sum_grad(x)) <= estimate.errors[0])
    # f(x), two trial rows, one failed batched call, then four looped points per element.
    assert estimate.evaluations == 1 + 2 + 1 + 4 * 64 + ROUNDING_POINTS


def test_a_declared_form_that_raises_is_the_callers_error():
    def batched(v):
        raise RuntimeError("my batched form is broken")

    x = np.linspace(0, 1, 50)
    with pytest.raises(RuntimeError, match="my batched form is broken"):
        estimate_gradient(lambda v: np.sum(np.sin(v)), x, batch=batched)


def test_the_kink_ladders_are_batched_too_and_find_the_same_kinks_as_the_loop():
    # relu has a kink at 0, subgradients [0, 1] (autograd's 0 among them); the plain central
    # difference there is 1/2, so the first level leaves those elements to the second. The
    # pair products couple elements, so f is not elementwise and vmap takes it.
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)
    x[::8] = 0.0
    python_calls = []

    def f(v):
        python_calls.append(1)
        return torch.relu(v).sum() + (v[:32] * v[32:]).sum()

    batched = check(f, x, mode="full")
    batched_calls, python_calls[:] = len(python_calls), []
    looped = check(f, x, mode="full", batch="loop")
    for result in (batched, looped):
        reasons = np.asarray(result.inputs[0].element_reasons).reshape(-1)
        assert result.passed, result.summary()
        assert np.flatnonzero(reasons == "subgradient").tolist() == list(range(0, 64, 8))
    assert (batched.numerics.path, looped.numerics.path) == ("batched", "loop")
    # 8 ladders of 14 points: as one call each in the loop, a few chunks under vmap.
    assert len(python_calls) == looped.evaluations
    assert batched_calls < looped.evaluations / 10


def test_vmap_refusing_f_says_which_exception_with_its_first_line():
    def uses_item(x):
        return torch.sin(x).sum() * x.sum().item()

    x = torch.linspace(0, 1, 40, dtype=torch.float64)
    try:  # what vmap itself raises on two rows, written out here
        torch.func.vmap(uses_item)(x.expand(2, 40))
    except Exception as exc:
        expected = f"vmap(f) failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    estimate = estimate_gradient(uses_item, (x,))
    assert estimate.path == "loop"
    assert estimate.path_reason == expected
    assert len(expected) > len("vmap(f) failed: RuntimeError: ") + 10
    # f(x), the trial's two rows, one plain call to tell vmap's error from f's, 4 per element.
    assert estimate.evaluations == 1 + 2 + 1 + 4 * 40 + ROUNDING_POINTS


def test_an_error_of_f_at_x_itself_is_f_s_error_not_vmap_refusing():
    x = torch.linspace(0, 1, 40, dtype=torch.float64)

    def broken(v):
        if bool((v == x).all()):  # under vmap: data-dependent control flow, vmap refuses
            raise ValueError("f cannot be evaluated at x")
        return torch.sin(v).sum()

    buffers = [x.clone()]
    counted = Counted(broken)
    with pytest.raises(ValueError, match="f cannot be evaluated at x") as raised:
        _batch.make_evaluator(counted, buffers, "auto", f0=float(torch.sin(x).sum()))
    assert raised.value.__context__ is None  # f's own error, not chained to vmap's
    assert counted.calls == 2 + 1  # the trial's rows, then the plain call that raised


def test_an_error_only_under_vmap_means_vmap_refused_and_the_loop_runs():
    x = torch.linspace(0, 1, 40, dtype=torch.float64)

    def fine_plainly(v):
        if bool((v == x).all()):  # raises under vmap only; plainly, a branch that returns
            return torch.sin(v).sum()
        return torch.sin(v).sum()

    counted = Counted(fine_plainly)
    evaluator = _batch.make_evaluator(counted, [x.clone()], "auto", f0=float(torch.sin(x).sum()))
    assert evaluator.path == "loop"
    assert evaluator.reason.startswith("vmap(f) failed: RuntimeError: ")
