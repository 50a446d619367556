"""Batched evaluation hands f inputs of the caller's shapes: every batched path (vmap and a
declared form, element points, kink ladders, screen rows) gives the values of plain calls of f,
which these tests make themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from counted import Counted

import gradcheck
from gradcheck._numerics import evaluate as _batch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _without_the_elementwise_path(monkeypatch):
    """The batched paths are under test, not the elementwise one (tests/test_separable.py)."""
    monkeypatch.setattr(_batch, "_attach_elementwise", lambda *args: None)


def lse_sq(v):
    """Smooth, and its value depends on the shape: logsumexp over the last axis."""
    return torch.logsumexp(v, dim=-1).pow(2).sum()


def lse_sq_batched(v):
    assert v.shape[1:] == (8, 8), f"a batched row must be 8x8, got {tuple(v.shape[1:])}"
    return torch.logsumexp(v, dim=-1).pow(2).sum(dim=-1)


def lse_sq_grad(x):
    """d/dx_ij sum_i lse_i^2 = 2 lse_i softmax_ij, by hand."""
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    return (2 * lse * torch.exp(x - lse)).numpy()


def inputs_8x8():
    return torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def test_an_f_that_asserts_its_argument_s_shape_is_batched_through_vmap():
    seen = []

    def shaped(v):
        seen.append(tuple(v.shape))
        assert v.shape == (8, 8), f"f was called with shape {tuple(v.shape)}"
        return (torch.tanh(v @ v)).sum()

    result = gradcheck.check(shaped, inputs_8x8(), mode="full")
    assert result.passed, result.summary()
    assert (result.numerics.path, result.numerics.path_reason) == ("batched", "torch.func.vmap(f)")
    assert set(seen) == {(8, 8)}


@pytest.mark.parametrize("batch", ["auto", lse_sq_batched], ids=["vmap", "declared"])
def test_logsumexp_over_the_last_axis_of_an_8x8_input_passes_batched(batch):
    x = inputs_8x8()
    result = gradcheck.check(lse_sq, x, batch=batch, mode="full")
    assert result.passed, result.summary()
    assert result.numerics.path == "batched"
    np.testing.assert_allclose(result.inputs[0].numeric, lse_sq_grad(x), rtol=1e-7, atol=1e-9)


def plain(f, x, flat_index, value):
    """f at x with flat element ``flat_index`` set to ``value``, by a plain call."""
    y = x.clone()
    y.view(-1)[flat_index] = value
    return float(f(y))


@pytest.mark.parametrize("shape", [(8, 8), (2, 4, 8)])
@pytest.mark.parametrize("option", ["auto", "declared"])
def test_every_batched_call_site_gives_the_values_of_plain_calls(shape, option):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def fb(v):
        assert v.shape[1:] == shape
        return torch.logsumexp(v, dim=-1).pow(2).reshape(v.shape[0], -1).sum(dim=-1)

    evaluator = _batch.make_evaluator(
        Counted(lse_sq), [x.clone()], "auto" if option == "auto" else fb, float(lse_sq(x))
    )
    assert evaluator.path == "batched" and evaluator.batches(0)
    base = x.numpy().reshape(-1).copy()
    n = base.size
    # The full check's points: every element moved by +-h.
    points = base[:, None] + np.array([0.25, -0.5])
    values = evaluator.at_elements(0, base, points)
    expected = [[plain(lse_sq, x, i, points[i, j]) for j in range(2)] for i in range(n)]
    np.testing.assert_allclose(values, expected, rtol=1e-13)
    # The kink ladders: a few elements, some points left out.
    elements = np.array([0, 9, n - 1])
    ladder = base[elements][:, None] + np.array([0.1, 0.2, 0.3])
    valid = np.array([[True, False, True], [True, True, True], [False, False, True]])
    some = evaluator.at_some(0, base, elements, ladder, valid)
    assert np.isnan(some[~valid]).all()
    for r, c in zip(*np.nonzero(valid), strict=True):
        assert some[r, c] == pytest.approx(plain(lse_sq, x, elements[r], ladder[r, c]), rel=1e-13)
    # The screen's rows: whole inputs, flat.
    rows = base + np.random.default_rng(0).normal(size=(3, n))
    at_rows = evaluator.at_rows(0, rows)
    direct = [float(lse_sq(torch.as_tensor(row).reshape(shape))) for row in rows]
    np.testing.assert_allclose(at_rows, direct, rtol=1e-13)
    assert torch.equal(evaluator.buffers[0], x)  # the working copy is back at x
