"""Compare (support): a failing input element traced to the outputs responsible for it.

The check compares one vector-Jacobian product, ``v . J``, with v a seeded random cotangent
over every judged output of f (``gradcheck._sources.call``). When an element ``(input k, element
i)``
fails, the column ``J[:, i]`` of the Jacobian is wrong somewhere, and this module says where:

* The numerical column: one central difference of every output along element i (2
  evaluations of f), ``(f(x + h e_i) - f(x - h e_i)) / (x_plus - x_minus)``, in the dtype the
  check differentiated in.
* Small outputs (at most ``UNIT_COTANGENTS_MAX`` values): the analytic column, from one
  backward per output value with a unit cotangent. The output values whose entry disagrees
  (beyond the input's rtol, and within a factor 10 of the largest disagreement) are the ones
  responsible: the table reads (output, input, element).
* Larger outputs: one backward per output j with the cotangent restricted to j; an output
  whose analytic product ``(v_j . J_j)_i`` disagrees with ``v_j . column_j`` is named.

It runs only on failures and only for the ``TRACED_ELEMENTS`` worst failing elements of each
input, so a passing check costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import InputComparison, Verdict, rule, rule_verdict
from gradcheck._numerics import arrays as _arrays
from gradcheck._sources.call import Call
from gradcheck._sources.reference import GradientSource

UNIT_COTANGENTS_MAX = 64
TRACED_ELEMENTS = 3


@dataclass(frozen=True)
class Traced:
    """One failing input element and the outputs that make it fail.

    Fields:
        input: the input's position in f's call.
        index: the element of that input.
        outputs: the names of the outputs whose vector-Jacobian product disagrees there
            ('' for f's only output).
        elements: for small outputs, the output elements whose Jacobian entry disagrees, as
            (output name, index) pairs, worst first; () when not traced to elements.
    """

    input: int
    index: tuple[int, ...]
    outputs: tuple[str, ...]
    elements: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def describe(self) -> str:
        """'output[0, 1], output[1, 1]' (f's only output) or 'output 1[2]', 'output 1': what
        the table's output column shows, in one notation (``OUTPUT_LEGEND``)."""
        if self.elements:
            return ", ".join(
                f"{name or 'output'}[{', '.join(map(str, index))}]" for name, index in self.elements
            )
        return ", ".join(name or "output" for name in self.outputs)


# The line under a table with an output column: how to read it.
OUTPUT_LEGEND = (
    "output: where a failing element was traced to in f's outputs: output[4] is element 4 of "
    "f's only output; output 1[0, 2] is element (0, 2) of output 1 (f's outputs counted from "
    "0, or named by their keys); a name alone is the whole output"
)


@dataclass(frozen=True)
class OutputReport:
    """The outputs of an f that is not scalar.

    Fields:
        judged: the names of the judged outputs ('' for f's only output).
        skipped: the outputs not judged, each with why (integer, not differentiable).
        traced: failing input elements traced to the outputs responsible (:class:`Traced`).
    """

    judged: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    traced: tuple[Traced, ...] = ()

    def find(self, position: int, index: tuple[int, ...]) -> Traced | None:
        for t in self.traced:
            if (t.input, t.index) == (position, index):
                return t
        return None


def trace(
    call: Call,
    source: GradientSource,
    f: Callable[..., Any],
    v: np.ndarray,
    comparisons: Sequence[InputComparison],
    dtypes: Sequence[str],
) -> tuple[Traced, ...]:
    """Every input's worst failing elements traced to outputs (see the module docstring);
    ``dtypes``: per input, the dtype the numerical side differentiated in."""
    failing: list[tuple[int, InputComparison, tuple[int, ...]]] = [
        (call.chosen.index(c.position), c, row["index"])  # type: ignore[misc]
        for c in comparisons
        if c.verdict is Verdict.FAIL
        for row in c.worst_elements(TRACED_ELEMENTS)
        if row["verdict"] == "fail"
    ]
    if not failing:
        return ()
    layout = call.layout
    buffers = [_arrays.working_copy(x, d) for x, d in zip(call.items, dtypes, strict=True)]
    rows = None
    if layout.size <= UNIT_COTANGENTS_MAX:
        units = np.eye(layout.size).reshape(layout.size, *v.shape)
        rows = [source.gradients(f, call.items, unit) for unit in units]
    traced = []
    for k, c, index in failing:
        shape = _arrays.output_shape(call.items[k])
        flat = int(np.ravel_multi_index(index, shape)) if shape else 0
        column = _numerical_column(f, buffers, k, flat, dtypes[k])
        if rows is not None:
            analytic = np.array([r[k].reshape(-1)[flat] for r in rows])
            traced.append(_by_elements(call, c, index, analytic, column))
        else:
            traced.append(_by_outputs(call, source, f, v, c, (k, flat, index), column))
    return tuple(traced)


def _numerical_column(
    f: Callable[..., Any], buffers: list[Any], k: int, flat: int, dtype: str
) -> np.ndarray:
    """d(outputs)/d(element ``flat`` of input k), one central difference at the step rule."""
    x = float(_arrays.to_numpy64(buffers[k]).reshape(-1)[flat])
    h = _arrays.eps(dtype) ** (1 / 3) * max(1.0, abs(x))
    plus, minus = (float(_arrays.values_in(dtype, np.array([x + s]))[0]) for s in (h, -h))
    values = []
    for point in (plus, minus):
        _arrays.set_flat(buffers[k], flat, point)
        values.append(_arrays.to_numpy64(f(*buffers)).reshape(-1))
    _arrays.set_flat(buffers[k], flat, x)
    column: np.ndarray = (values[0] - values[1]) / (plus - minus)
    return column


def _by_elements(
    call: Call, c: InputComparison, index: tuple[int, ...], analytic: np.ndarray, column: Any
) -> Traced:
    errors = np.abs(analytic - column)
    scale = max(float(np.max(np.abs(column))), float(np.max(np.abs(analytic))), 1e-300)
    limit = _tolerance.responsible(c.rtol, scale, errors)
    verdicts, _ = rule(analytic, column, 0.0, limit, math.inf)
    wrong = verdicts == Verdict.FAIL.value
    responsible = [int(m) for m in np.argsort(-errors, kind="stable") if wrong[m]]
    owners = [call.layout.owner(m) for m in responsible]
    elements = tuple(dict.fromkeys((o.name, o.element(local)) for o, local in owners))
    outputs = tuple(dict.fromkeys(o.name for o, _ in owners))
    return Traced(c.position, index, outputs, elements)


def _by_outputs(
    call: Call,
    source: GradientSource,
    f: Callable[..., Any],
    v: np.ndarray,
    c: InputComparison,
    element: tuple[int, int, tuple[int, ...]],
    column: np.ndarray,
) -> Traced:
    """The outputs whose own vector-Jacobian product disagrees at ``element`` (input k, flat
    index, index), one backward each."""
    k, flat, index = element
    names = []
    v = v.reshape(-1)
    for entry in call.layout.entries:
        part = np.zeros_like(v)
        span = slice(entry.offset, entry.offset + entry.size)
        part[span] = v[span]
        vjp = source.gradients(f, call.items, part.reshape(call.layout.flat_shape))
        analytic = float(vjp[k].reshape(-1)[flat])
        numeric = float(part @ column)
        scale = float(np.abs(part) @ np.abs(column)) + abs(analytic) + 1e-300
        if rule_verdict(analytic, numeric, 0.0, c.rtol * scale, math.inf) is Verdict.FAIL:
            names.append(entry.name)
    return Traced(c.position, index, tuple(names))
