"""gradcheck.strategies: well-scaled inputs; hypothesis finds a bug on part of the domain."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import array_shapes

from gradcheck import check, strategies
from gradcheck.strategies import arrays, floats, tensors

FEW = settings(max_examples=40, deadline=None, database=None)


def exp_sum(x):
    return np.sum(np.exp(x))


def exp_grad_wrong_on_0_to_0_1(x):
    """d/dx exp(x) = exp(x), except for a sign slip in a 'small positive x' branch."""
    return np.where((x > 0) & (x < 0.1), np.exp(-x), np.exp(x))


def test_the_gradient_with_the_bug_passes_at_a_single_random_point():
    x = np.random.default_rng(0).standard_normal(3)
    assert not np.any((x > 0) & (x < 0.1)), "precondition: the point lies outside the bug"
    assert check(exp_sum, x, exp_grad_wrong_on_0_to_0_1).verdict == "pass"


def test_hypothesis_finds_the_bug_and_shrinks_the_input_into_0_to_0_1():
    tried = []

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(x=arrays(3))
    def gradient_is_right(x):
        tried.append(x)
        result = check(exp_sum, x, exp_grad_wrong_on_0_to_0_1)
        assert result.verdict != "fail", result.table()

    with pytest.raises(AssertionError, match="fail"):
        gradient_is_right()
    shrunk = tried[-1]  # hypothesis replays the shrunk example last
    assert np.any((shrunk > 0) & (shrunk < 0.1))
    # Shrinking leaves simple numbers: zeros, or dyadic fractions such as 1/16.
    assert all(v == 0 or (v * 2**10).is_integer() for v in shrunk.tolist()), shrunk


@FEW
@given(
    data=arrays(array_shapes(max_dims=3, max_side=3), "float32", max_magnitude=4.0),
)
def test_arrays_are_finite_normal_and_within_max_magnitude(data):
    assert data.dtype == np.float32
    assert np.all(np.isfinite(data))
    assert np.all(np.abs(data) <= 4.0)
    tiny = np.finfo(np.float32).tiny
    assert np.all((data == 0) | (np.abs(data) >= tiny)), "a subnormal was drawn"


@FEW
@given(x=arrays((2, 3), min_magnitude=0.5, max_magnitude=2.0))
def test_min_magnitude_keeps_every_element_at_least_that_large(x):
    assert x.shape == (2, 3)
    assert np.all((np.abs(x) >= 0.5) & (np.abs(x) <= 2.0))


@FEW
@given(x=floats(avoid=(0.0, 1.0), margin=0.25))
def test_avoid_keeps_values_a_margin_away_from_each_point(x):
    assert abs(x) >= 0.25
    assert abs(x - 1.0) >= 0.25


@FEW
@given(x=floats("float16", max_magnitude=3.0))
def test_float16_values_are_exactly_representable(x):
    assert float(np.float16(x)) == x


@FEW
@given(t=tensors((2, 2), torch.float32))
def test_tensors_have_the_shape_and_dtype_asked_for(t):
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (2, 2)
    assert not t.requires_grad


@FEW
@given(t=tensors(3, "bfloat16", max_magnitude=8.0))
def test_bfloat16_tensors_are_drawn_as_float32_and_rounded(t):
    assert t.dtype == torch.bfloat16
    assert torch.all(t.abs() <= 8.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: arrays(3, "int64"), "dtype 'int64' is not a floating dtype"),
        (lambda: arrays(3, "bfloat16"), "NumPy has no bfloat16"),
        (lambda: floats(max_magnitude=0.0), "max_magnitude=0.0 must be positive"),
        (lambda: floats("float16", max_magnitude=1e6), "at most 65504"),
        (lambda: floats(min_magnitude=20.0), "min_magnitude=20.0 must be at least 0 and below"),
        (lambda: floats(margin=-1.0), "margin=-1.0 must be non-negative"),
    ],
)
def test_bad_options_are_refused_with_a_message_that_names_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_pattern_in_the_module_docstring_runs_as_written():
    doc = strategies.__doc__
    assert doc is not None
    start = doc.index("property-based gradient check::") + len("property-based gradient check::")
    code = textwrap.dedent(doc[start : doc.index("For torch code")])
    namespace: dict[str, object] = {}
    exec(compile(code, "strategies-docstring", "exec"), namespace)
    namespace["test_softplus_gradient"]()  # hypothesis runs it over many inputs
