"""OpInfo ``reference_inputs`` of the kink-prone ops, float64, huge values included: autograd's
gradient is never called "fail".

``tests/test_opinfo.py`` leaves out samples with ``|x| > 1e4``; this test keeps them. There
floor, ceil, round, trunc and frac are the identity or zero on every float a difference can
reach (beyond 2**52 every float64 is an integer), and sqrt and the losses meet their kinks and
roots at OpInfo's special values (0, +-1, ties). A mismatch there must be inconclusive with its
reason ('huge', 'jump', 'kink', ...), never a fail.

The sample: per op, the first ``PER_OP`` of its ``reference_inputs`` (``torch.manual_seed(0)``
first) whose floating tensors are finite and whose f is finite and differentiable there; a
single-tensor sample above ``MAX_ELEMENTS`` elements is cut to its first 48 distinct values,
a larger one of several tensors skipped. Runtime: about 20 s on one core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_opinfo import _op_db, _usable, as_function

import gradcheck

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

PER_OP = 6
MAX_ELEMENTS = 64
KINK_PRONE_OPS = [
    "abs",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "sign",
    "sqrt",
    "nn.functional.relu",
    "nn.functional.relu6",
    "nn.functional.leaky_relu",
    "nn.functional.hardtanh",
    "nn.functional.threshold",
    "nn.functional.softshrink",
    "nn.functional.hardshrink",
    "clamp",
    "clamp_min",
    "clamp_max",
    "max.binary",
    "min.binary",
    "maximum",
    "minimum",
    "max.reduction_no_dim",
    "min.reduction_no_dim",
    "fmod",
    "remainder",
    "nn.functional.l1_loss",
    "nn.functional.smooth_l1_loss",
    "nn.functional.huber_loss",
    "nn.functional.margin_ranking_loss",
    "nn.functional.hinge_embedding_loss",
]


def kink_samples(op: Any) -> list[tuple[Callable, tuple]]:
    """The sample of the module docstring, for one op."""
    torch.manual_seed(0)
    chosen: list[tuple[Callable, tuple]] = []
    for s in op.reference_inputs("cpu", torch.float64, requires_grad=False):
        args = _cut((s.input, *s.args))
        if args is None or any(torch.is_tensor(v) for v in s.kwargs.values()):
            continue
        f, inputs = as_function(op, args, dict(s.kwargs))
        if inputs and _usable(f, inputs):
            chosen.append((f, inputs))
        if len(chosen) >= PER_OP:
            break
    return chosen


def _cut(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    floats = [a for a in args if torch.is_tensor(a) and a.is_floating_point()]
    if not floats or any(t.numel() == 0 or not torch.isfinite(t).all() for t in floats):
        return None
    if sum(t.numel() for t in floats) <= MAX_ELEMENTS:
        return args
    if len(args) == 1:
        return (args[0].reshape(-1).unique()[:48],)
    return None


@pytest.mark.parametrize("name", KINK_PRONE_OPS)
def test_kink_prone_reference_inputs_never_fail_autograds_gradient(name):
    op = _op_db()[name]
    cases = kink_samples(op)
    assert cases, f"no usable reference input for {name}"
    for j, (f, inputs) in enumerate(cases):
        result = gradcheck.check(f, inputs, seed=j)
        shapes = [tuple(t.shape) for t in inputs]
        assert result.verdict != "fail", f"{name} {shapes}: {result.summary()}\n{result.table()}"
