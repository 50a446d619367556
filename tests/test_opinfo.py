"""PyTorch's own operator database as a test bed: autograd is right there, so no correct gradient
may be called "fail", and planted errors (a 1e-2 scale, one flipped sign) must be caught.

The sample, chosen once and deterministic (``torch.manual_seed(0)`` before each op's samples):

* ops: the kinked and stepped ones the issue names (relu, abs, clamp, max/min ties, floor, ceil,
  frac, sign, hardtanh, softshrink, ...) and a spread of smooth unary, binary and reduction ops;
* samples: each op's ``reference_inputs`` (its ``sample_inputs`` plus OpInfo's special values:
  zeros, integers, ties, +-1, +-pi, ...), float tensors only, every value finite, f finite there,
  at most ``MAX_ELEMENTS`` elements (a larger single-tensor sample of a unary op is cut to its
  distinct values, or its first 48): the first ``PER_OP`` that qualify, and the first
  ``SPECIAL_PER_OP`` holding an integer or a repeated value (relu at 0, floor at 1, ...);
* ties: for max/min/clamp ops, one sample more with a tie made from an OpInfo sample (the
  second input a copy of the first: ``maximum(a, a)``, ``clamp(x, min=x)``; a lone input rounded
  to integers: ``max`` over repeated values). Any value between the one-sided derivatives is
  right at a tie, so these count for "no correct gradient fails" only, not for planted errors;
* excluded: samples with any ``|x| > MAX_MAGNITUDE``. At ``|x| = 1e20`` every float64 is an
  integer, so floor, ceil, round, trunc and frac are the identity or zero on every point a
  finite difference can reach, and ``special.log_ndtr``'s autograd is itself wrong there
  (0.399 where the derivative is 1e20); and next to a 1e39 term the other elements' share of
  ``sum(v * op(x))`` is lost to rounding, which leaves them inconclusive.

Both dtypes use the same ops; float32 inputs are differentiated in float64 (the engine's
"promoted" policy) and judged with float32's tolerance.
"""

from __future__ import annotations

import sys
import types
import unittest
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import gradcheck
from gradcheck._sources.reference import Autograd

torch.set_num_threads(1)
# vmap (the batched path) warns when an op has no batching rule; it then loops, correctly.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

MAX_ELEMENTS = 64
MAX_MAGNITUDE = 1e4
PER_OP = 4
SPECIAL_PER_OP = 1
REQUIRED_CATCH_RATE = 0.99

KINKED_OPS = [
    "abs",
    "nn.functional.relu",
    "clamp",
    "clamp_min",
    "clamp_max",
    "max.binary",
    "min.binary",
    "maximum",
    "minimum",
    "fmax",
    "fmin",
    "max.reduction_no_dim",
    "max.reduction_with_dim",
    "min.reduction_no_dim",
    "amax",
    "floor",
    "ceil",
    "frac",
    "round",
    "trunc",
    "sign",
    "nn.functional.hardtanh",
    "nn.functional.softshrink",
    "nn.functional.hardshrink",
    "nn.functional.relu6",
    "nn.functional.threshold",
    "nn.functional.hardsigmoid",
    "nn.functional.hardswish",
    "nn.functional.leaky_relu",
]
SMOOTH_OPS = [
    "sin",
    "cos",
    "tan",
    "tanh",
    "exp",
    "expm1",
    "log",
    "log1p",
    "sqrt",
    "rsqrt",
    "sigmoid",
    "atan",
    "asinh",
    "erf",
    "erfinv",
    "lgamma",
    "digamma",
    "reciprocal",
    "square",
    "sinc",
    "logit",
    "nn.functional.softplus",
    "nn.functional.silu",
    "nn.functional.mish",
    "nn.functional.elu",
    "nn.functional.selu",
    "nn.functional.logsigmoid",
    "nn.functional.softsign",
    "nn.functional.gelu",
    "add",
    "sub",
    "mul",
    "div.no_rounding_mode",
    "pow",
    "atan2",
    "hypot",
    "logaddexp",
    "xlogy",
    "sum",
    "mean",
    "prod",
    "logsumexp",
    "std",
    "var",
    "norm",
    "cumsum",
    "softmax",
    "log_softmax",
    "dist",
    "polygamma.polygamma_n_1",
    "acosh",
    "cosh",
    "special.log_ndtr",
    "special.erfcx",
    "special.i1",
]


def _op_db() -> dict[str, Any]:
    """op_db by ``name.variant``. torch's test helpers import ``expecttest`` (a test-only
    dependency torch does not install) only for a base class that op_db does not use."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
            sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db

    return {o.name + (f".{o.variant_test_name}" if o.variant_test_name else ""): o for o in op_db}


def as_function(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Callable, tuple]:
    """f of the sample's floating tensors (the rest held fixed), and those tensors."""
    positions = [i for i, a in enumerate(args) if torch.is_tensor(a) and a.is_floating_point()]

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for p, t in zip(positions, tensors, strict=True):
            full[p] = t
        out = op(*full, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    return f, tuple(args[p] for p in positions)


def samples(op: Any, dtype: torch.dtype) -> list[tuple[Callable, tuple, str]]:
    """The deterministic sample described in the module docstring: (f, inputs, origin), with
    origin 'opinfo' or 'tie' (a tie made here from an OpInfo sample)."""
    torch.manual_seed(0)
    plain: list[tuple[Callable, tuple, str]] = []
    special: list[tuple[Callable, tuple, str]] = []
    for s in op.reference_inputs("cpu", dtype, requires_grad=False):
        args = _shrunk((s.input, *s.args), s, op)
        if args is None or any(torch.is_tensor(v) for v in s.kwargs.values()):
            continue
        f, inputs = as_function(op, args, dict(s.kwargs))
        if _usable(f, inputs):
            (special if _at_edges(inputs) else plain).append((f, inputs, "opinfo"))
        if len(plain) >= PER_OP and len(special) >= SPECIAL_PER_OP:
            break
    chosen = plain[:PER_OP] + special[:SPECIAL_PER_OP]
    if any(word in op.name for word in ("max", "min", "clamp")):
        chosen += _ties(chosen)
    return chosen


def _at_edges(inputs: tuple) -> bool:
    """OpInfo's special values: an integer (0 included) or a repeated value in some input."""
    return any(bool((t == t.round()).any()) or t.unique().numel() < t.numel() for t in inputs)


def _ties(chosen: list[tuple[Callable, tuple, str]]) -> list[tuple[Callable, tuple, str]]:
    """A tie made from the first sample that allows one: the second input, when shaped like the
    first, becomes a copy of it (max(a, a), clamp(x, min=x, max=hi)); a lone input is rounded
    to integers, which repeats values (max and amax over ties)."""
    for f, inputs, _ in chosen:
        first = inputs[0]
        if len(inputs) == 1 and first.numel() > 1:
            tied = (first.round(),)
        elif len(inputs) > 1 and inputs[1].shape == first.shape:
            tied = (first, first.clone(), *inputs[2:])
        else:
            continue
        if _usable(f, tied):
            return [(f, tied, "tie")]
    return []


def _shrunk(args: tuple[Any, ...], sample: Any, op: Any) -> tuple[Any, ...] | None:
    floats = [a for a in args if torch.is_tensor(a) and a.is_floating_point()]
    if not floats or any(t.numel() == 0 or not torch.isfinite(t).all() for t in floats):
        return None
    if any(float(t.abs().max()) > MAX_MAGNITUDE for t in floats):
        return None
    if sum(t.numel() for t in floats) <= MAX_ELEMENTS:
        return args
    if len(args) == 1 and sample.input.dim() >= 1 and "Unary" in type(op).__name__:
        distinct = sample.input.reshape(-1).unique()
        return (distinct if distinct.numel() <= 48 else sample.input.reshape(-1)[:48],)
    return None


def _usable(f: Callable, inputs: tuple) -> bool:
    """f runs, is finite and floating at the sample, and autograd can differentiate it."""
    try:
        out = f(*inputs)
        ones = None if out.numel() == 1 else np.ones(tuple(out.shape))
        Autograd().gradients(f, inputs, ones)
    except (RuntimeError, ValueError, TypeError):
        return False
    return bool(out.is_floating_point() and torch.isfinite(out).all())


class Planted:
    """autograd's gradient with one planted error: ``scale`` by ``factor`` (1 + 1e-2), or
    ``flip`` the sign of one element (chosen by seed among those at least 10% of the largest)."""

    def __init__(self, how: str, seed: int, factor: float = 1 + 1e-2) -> None:
        self.how, self.seed, self.name = how, seed, f"autograd with {how}"
        self.factor = factor
        self.planted = False

    def gradients(self, f: Callable, inputs: tuple, cotangent: np.ndarray | None) -> tuple:
        grads = [g.copy() for g in Autograd().gradients(f, inputs, cotangent)]
        top = max(float(np.max(np.abs(g), initial=0.0)) for g in grads)
        self.planted = top > 0  # scaling or flipping a zero gradient plants nothing
        if self.how == "scale":
            return tuple(g * self.factor for g in grads)
        big = [
            (k, i)
            for k, g in enumerate(grads)
            for i in np.flatnonzero(np.abs(g.reshape(-1)) >= 0.1 * top)
        ]
        if big:
            k, i = big[np.random.default_rng(self.seed).integers(len(big))]
            grads[k].reshape(-1)[i] *= -1
        return tuple(grads)


def tally(dtype: torch.dtype) -> tuple[Counter, list[str]]:
    """Verdict counts per (kind, verdict) over the sample, and a line per wrong verdict."""
    ops = _op_db()
    counts: Counter = Counter()
    wrong = []
    for name in KINKED_OPS + SMOOTH_OPS:
        for j, (f, inputs, origin) in enumerate(samples(ops[name], dtype)):
            shapes = [tuple(t.shape) for t in inputs]
            result = gradcheck.check(f, inputs, seed=j)
            counts["correct", result.verdict.value] += 1
            counts["subgradient", origin] += sum(
                int(np.sum(c.element_reasons == "subgradient")) for c in result.inputs
            )
            if result.verdict == "fail":
                wrong.append(f"correct called fail: {name} {shapes}: {result.summary()}")
            if origin == "tie":
                continue  # any value between the one-sided derivatives is right at a tie
            for how in ("scale", "flip"):
                source = Planted(how, seed=j)
                planted = gradcheck.check(f, inputs, source, seed=j)
                if source.planted:
                    counts[how, planted.verdict.value] += 1
                    if planted.verdict != "fail":
                        wrong.append(f"{how} missed: {name} {shapes}: {planted.summary()}")
    return counts, wrong


def caught(counts: Counter, how: str) -> tuple[int, int]:
    total = sum(n for (kind, _), n in counts.items() if kind == how)
    return counts[how, "fail"], total


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_opinfo_correct_gradients_never_fail_and_planted_errors_are_caught(dtype):
    counts, wrong = tally(dtype)
    detail = "\n".join(wrong[:10])
    correct = sum(n for (kind, _), n in counts.items() if kind == "correct")
    assert correct >= 300, f"the sample shrank to {correct} cases: {dict(counts)}"
    assert counts["subgradient", "tie"] >= 20, f"too few kinks in the sample: {dict(counts)}"
    assert counts["correct", "fail"] == 0, detail
    for how in ("scale", "flip"):
        hits, total = caught(counts, how)
        assert total >= 300, f"only {total} planted {how} errors: {dict(counts)}"
        assert hits >= REQUIRED_CATCH_RATE * total, f"{how}: {hits}/{total} caught\n{detail}"
    print(f"\n{dtype}: {dict(sorted(counts.items()))}")


def test_opinfo_float32_catches_1e_4_scale_errors_by_measured_rounding():
    """float32's tolerance is its measured rounding (``gradcheck._judge.tolerance``), not
    sqrt(eps32)
    = 3.5e-4: on every other op of the sample, a 1e-4 scale error is caught (>= 99%) and no
    correct gradient fails. The full count: ``benchmarks/bench_opinfo_float32.py``."""
    ops = _op_db()
    counts: Counter = Counter()
    wrong = []
    for name in KINKED_OPS[::2] + SMOOTH_OPS[::2]:
        for j, (f, inputs, origin) in enumerate(samples(ops[name], torch.float32)):
            assert gradcheck.check(f, inputs, seed=j).verdict != "fail", name
            if origin == "tie":
                continue
            source = Planted("scale", seed=j, factor=1 + 1e-4)
            planted = gradcheck.check(f, inputs, source, seed=j)
            if source.planted:
                counts[planted.verdict.value] += 1
                if planted.verdict != "fail":
                    wrong.append(f"{name}: {planted.summary()}")
    total = sum(counts.values())
    assert total >= 150, dict(counts)
    assert counts["fail"] >= REQUIRED_CATCH_RATE * total, "\n".join(wrong)
