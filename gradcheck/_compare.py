"""Compare: (numeric, error estimate, analytic, tolerance) -> per-element errors and a verdict.

The tolerance rule, stated once
-------------------------------
For every element i of an input, with ``n`` the numerical value, ``e`` its error estimate and
``a`` the analytic value::

    tolerance_i = atol + rtol * |n_i| + e_i
    fail          if |a_i - n_i| > tolerance_i
    inconclusive  otherwise, if e_i > WIDE_ERROR_BAR * max(|n_i|, |a_i|, scale)
                  or n_i is not finite (f returned NaN/Inf inside the stencil)
    pass          otherwise

* ``rtol`` defaults to ``sqrt(eps)`` of the analytic gradient's dtype (1.5e-8 for float64,
  3.5e-4 for float32): a correct gradient is good to a few eps times the problem's condition,
  and sqrt(eps) leaves room for that while catching a 1e-4 relative error in float64.
* ``atol`` defaults to ``rtol * scale``, where ``scale = max_i |n_i|``: elements far smaller than
  the largest are judged against the gradient's size, since the rounding in a gradient scales
  with the terms that made it, not with its own value.
* ``e`` widens the tolerance: a fail is only called when even the most favourable value within
  the numerical error bar is beyond tolerance. When the error bar is wider than WIDE_ERROR_BAR
  (1%) of the gradient's size, a pass would vouch for nothing, so the element is inconclusive.
* An analytic value that is NaN/Inf where the numerical one is finite is a fail.

``relative error`` in reports is ``|a_i - n_i| / max(|n_i|, |a_i|, atol)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from gradcheck import _arrays

WIDE_ERROR_BAR = 0.01


class Verdict(str, enum.Enum):
    """The answer for an element, an input, a check: compare with plain strings freely."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


def default_rtol(dtype: str) -> float:
    """sqrt(eps) of the analytic gradient's dtype: 1.5e-8 for float64, 3.5e-4 for float32."""
    return float(np.sqrt(_arrays.eps(dtype)))


def combine(verdicts: list[Verdict]) -> Verdict:
    """Any fail fails; otherwise any inconclusive is inconclusive; otherwise pass."""
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


@dataclass(frozen=True)
class InputComparison:
    """The comparison of one input's gradient, element by element.

    Fields:
        position: which input (0-based).
        shape, dtype: the input's shape and dtype.
        verdict: the input's verdict (see the module docstring for the rule).
        max_abs_error, max_rel_error: over all elements with a finite numerical value.
        worst_index: the element with the largest ``|a - n| / tolerance``.
        worst_numeric, worst_analytic, worst_error_estimate, worst_tolerance: values there.
        max_error_estimate: the largest error estimate over the elements.
        rtol, atol: the tolerances in force.
        reasons: why the verdict is not a plain pass, one sentence each.
        numeric, analytic, error_estimate, tolerance, element_verdicts: full arrays, shaped
            like the input (element_verdicts holds 'pass'/'fail'/'inconclusive' strings).
    """

    position: int
    shape: tuple[int, ...]
    dtype: str
    verdict: Verdict
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    worst_numeric: float
    worst_analytic: float
    worst_error_estimate: float
    worst_tolerance: float
    max_error_estimate: float
    rtol: float
    atol: float
    reasons: tuple[str, ...] = ()
    numeric: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    analytic: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    error_estimate: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    tolerance: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    element_verdicts: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )

    def worst_elements(self, count: int = 5) -> list[dict[str, object]]:
        """The `count` elements furthest outside (or closest to) their tolerance, worst first."""
        abs_err = np.abs(self.analytic - self.numeric).reshape(-1)
        ratio = _ratio(abs_err, self.tolerance.reshape(-1))
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        order = np.argsort(-ratio, kind="stable")[:count]
        rows = []
        for flat in order:
            index = (
                tuple(int(i) for i in np.unravel_index(int(flat), self.shape)) if self.shape else ()
            )
            n = float(self.numeric.reshape(-1)[flat])
            a = float(self.analytic.reshape(-1)[flat])
            rows.append(
                {
                    "index": index,
                    "analytic": a,
                    "numeric": n,
                    "abs_error": abs(a - n),
                    "rel_error": _rel(abs(a - n), n, a, self.atol),
                    "error_estimate": float(self.error_estimate.reshape(-1)[flat]),
                    "tolerance": float(self.tolerance.reshape(-1)[flat]),
                    "verdict": str(self.element_verdicts.reshape(-1)[flat]),
                }
            )
        return rows


def _ratio(err: np.ndarray, tol: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err == 0, 0.0, err / tol)


def _rel(err: float, n: float, a: float, atol: float) -> float:
    denom = max(abs(n), abs(a), atol)
    return 0.0 if err == 0 else (err / denom if denom > 0 else float("inf"))


def compare(
    position: int,
    numeric: np.ndarray,
    error: np.ndarray,
    analytic: np.ndarray,
    *,
    dtype: str,
    rtol: float | None = None,
    atol: float | None = None,
) -> InputComparison:
    """Judge one input's analytic gradient against its numerical estimate (rule above)."""
    rtol = default_rtol(dtype) if rtol is None else float(rtol)
    if rtol < 0 or (atol is not None and atol < 0):
        raise ValueError(f"tolerances must be non-negative, got rtol={rtol}, atol={atol}")
    finite_n = np.isfinite(numeric)
    scale = float(np.max(np.abs(numeric[finite_n]), initial=0.0))
    atol = rtol * scale if atol is None else float(atol)

    abs_err = np.abs(analytic - numeric)
    tolerance = atol + rtol * np.abs(numeric) + error
    with np.errstate(invalid="ignore"):
        failed = finite_n & ((abs_err > tolerance) | ~np.isfinite(analytic))
        magnitude = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), scale)
        wide = finite_n & ~failed & (error > WIDE_ERROR_BAR * magnitude) & (magnitude > 0)
    unknown = ~finite_n
    element = np.full(numeric.shape, Verdict.PASS.value, dtype=object)
    element[wide | unknown] = Verdict.INCONCLUSIVE.value
    element[failed] = Verdict.FAIL.value

    reasons = []
    if np.any(unknown):
        reasons.append(f"f returned NaN/Inf near {int(np.sum(unknown))} element(s)")
    if np.any(wide):
        reasons.append(
            f"error bar wider than {WIDE_ERROR_BAR:.0%} of the gradient at "
            f"{int(np.sum(wide))} element(s)"
        )
    verdict = combine([Verdict(v) for v in set(element.reshape(-1).tolist())] or [Verdict.PASS])
    return _summarise(
        position, numeric, error, analytic, tolerance, element, verdict, reasons, dtype, rtol, atol
    )


def _summarise(
    position: int,
    numeric: np.ndarray,
    error: np.ndarray,
    analytic: np.ndarray,
    tolerance: np.ndarray,
    element: np.ndarray,
    verdict: Verdict,
    reasons: list[str],
    dtype: str,
    rtol: float,
    atol: float,
) -> InputComparison:
    abs_err = np.abs(analytic - numeric)
    finite = np.isfinite(abs_err)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), atol)
        rel = np.where(abs_err == 0, 0.0, abs_err / denom)
        ratio = _ratio(abs_err, tolerance)
    ratio = np.where(np.isfinite(numeric), np.nan_to_num(ratio, nan=np.inf), -1.0)
    flat = int(np.argmax(ratio.reshape(-1))) if ratio.size else 0
    shape = tuple(numeric.shape)
    index = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()

    def pick(a: np.ndarray) -> float:
        return float(a.reshape(-1)[flat]) if a.size else float("nan")

    return InputComparison(
        position=position,
        shape=shape,
        dtype=dtype,
        verdict=verdict,
        max_abs_error=float(np.max(abs_err[finite], initial=0.0)),
        max_rel_error=float(np.max(rel[finite], initial=0.0)),
        worst_index=index,
        worst_numeric=pick(numeric),
        worst_analytic=pick(analytic),
        worst_error_estimate=pick(error),
        worst_tolerance=pick(tolerance),
        max_error_estimate=float(np.max(error[np.isfinite(error)], initial=0.0)),
        rtol=rtol,
        atol=atol,
        reasons=tuple(reasons),
        numeric=numeric,
        analytic=analytic,
        error_estimate=error,
        tolerance=tolerance,
        element_verdicts=element,
    )
