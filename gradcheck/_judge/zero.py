"""Compare (zero gradients under torch's atol): what torch's default ``atol=1e-5`` lets pass.

torch's checker compares with ``atol=1e-5`` unless told otherwise, so a gradient that is zero
up to rounding (a soft histogram's 1e-11 tails, SSIM of an image with itself at 1e-13, a
polynomial whose derivative rounds to exactly 0 at integers) passes there, while gradcheck's
own tolerances (``gradcheck._judge.verdict``) ask for more digits than a central difference
can give about a number that small: such elements end inconclusive (an error bar wider than
1% of the gradient) or fail by a few error bars.

``zero_within`` passes, in an input whose other elements passed, every element that is zero
twice over:

* to within torch's atol: ``|a| <= atol`` and ``|n| <= atol`` (n finite);
* to within what the step can resolve: ``|a - n| <= RESOLVED_BARS e``, the element's error bar
  (rounding of f over the step, and truncation): the numerical side cannot tell the two apart.

A gradient of 1e-6 that should be 2e-6, measured to 1e-11, is still a fail: it is resolved.
The input's reasons say which rule decided and how many elements it passed. A screened input
has no per-element numbers: there ``zero_along_probes`` asks the same of each probe that did
not pass, per element moved.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import InputComparison, Verdict, rule


def _zero(
    a: np.ndarray, n: np.ndarray, e: np.ndarray | float, limit: np.ndarray | float
) -> np.ndarray:
    """Where, by the verdict rule, ``a`` and ``n`` are both zero to within ``limit`` and agree
    to within ``RESOLVED_BARS`` error bars ``e`` (``gradcheck._judge.tolerance.resolved``)."""
    shown = []
    for got, want, bar, within in ((a, 0.0, 0.0, limit), (n, 0.0, 0.0, limit), (a, n, e, 0.0)):
        verdicts, _ = rule(
            np.asarray(got), np.asarray(want), _tolerance.resolved(bar), within, math.inf
        )
        shown.append(verdicts == Verdict.PASS.value)
    return np.asarray(shown[0] & shown[1] & shown[2])


def zero_within(c: InputComparison, atol: float) -> InputComparison:
    """``c`` with the elements that are zero to within ``atol`` and their error bar passed
    (module docstring); ``c`` itself when that does not make every element pass, or when it
    holds no per-element numbers (a screen's input)."""
    if c.verdict is Verdict.PASS or c.elements is not None or c.element_verdicts.size == 0:
        return c
    verdicts = c.element_verdicts.reshape(-1)
    a, n = c.analytic.reshape(-1), c.numeric.reshape(-1)
    e = np.nan_to_num(c.error_estimate.reshape(-1), nan=0.0)
    pending = verdicts != Verdict.PASS.value
    with np.errstate(invalid="ignore"):
        zero = _zero(a, n, e, atol)
    if not np.all(zero[pending]):
        return c
    count = int(np.sum(pending))
    diff = float(np.max(np.abs(a - n)[pending]))
    bar = float(np.max(e[pending]))
    note = (
        f"torch's default atol={atol:g} decided: {count} element(s) not passed by gradcheck's "
        f"own tolerance are zero to within {atol:g} and to within what the step resolves "
        f"(largest |a - n| {diff:.3g}, error bar up to {bar:.3g}): passed, as torch passes them"
    )
    new = np.where(pending, Verdict.PASS.value, verdicts).reshape(c.element_verdicts.shape)
    return dataclasses.replace(
        c, verdict=Verdict.PASS, element_verdicts=new, notes=(*c.notes, note)
    )


def zero_along_probes(c: InputComparison, probes: Sequence[Any], atol: float) -> InputComparison:
    """A screened input (``c`` without per-element numbers) passed where every probe that did
    not pass is zero to within ``atol`` per element moved (``|D|, |a . w| <= atol size``) and
    to within its error bar (``|a . w - D| <= RESOLVED_BARS e``); ``c`` itself otherwise."""
    if c.verdict is Verdict.PASS or c.element_verdicts.size or not probes:
        return c
    judged = [p for p in probes if p.kind == "screen" or p.verdict is Verdict.FAIL]
    pending = [p for p in judged if p.verdict is not Verdict.PASS]
    if not pending:
        return c
    for p in pending:
        bound = _tolerance.per_element(atol, p.size)
        if not _zero(np.array(p.analytic), np.array(p.numeric), p.error_estimate, bound):
            return c
    worst = max(abs(p.analytic - p.numeric) for p in pending)
    note = (
        f"torch's default atol={atol:g} decided: {len(pending)} probe(s) not passed by "
        f"gradcheck's own tolerance see a gradient zero to within {atol:g} per element and to "
        f"within what the step resolves (largest |a . w - D| {worst:.3g}, within its error "
        "bar): passed, as torch passes it"
    )
    return dataclasses.replace(c, verdict=Verdict.PASS, notes=(*c.notes, note))
