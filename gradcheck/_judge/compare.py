"""Compare (one input): the rule of ``gradcheck._judge.verdict`` over an input's elements.

:func:`compare` turns one input's numerical values, error bars and analytic values into an
:class:`~gradcheck._judge.verdict.InputComparison`: the tolerances in force
(``gradcheck._judge.tolerance``), the noise and own-rounding widenings, the edges (kinks,
subgradients, jumps) and the input's verdict and reasons. :func:`decide` and :func:`never_fail`
give a second opinion on some elements (the Taylor test; huge inputs) and redo the summary.
The rule itself and what each reason means are stated in ``gradcheck._judge.verdict``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TypedDict, Unpack

import numpy as np

from gradcheck._judge.tolerance import limit_of, tolerances, widened
from gradcheck._judge.verdict import (
    REASONS,
    WIDE_ERROR_BAR,
    InputComparison,
    Nonsmooth,
    Verdict,
    combine,
    rule,
)


class CompareExtras(TypedDict, total=False):
    """What :func:`compare` may take besides the arrays and the tolerances (its docstring)."""

    noise: np.ndarray | None
    nonsmooth: Nonsmooth | None
    notes: tuple[str, ...]
    widen: np.ndarray | None
    basis: tuple[str, str]
    zero_scale: np.ndarray | None


def compare(
    position: int,
    numeric: np.ndarray,
    error: np.ndarray,
    analytic: np.ndarray,
    *,
    dtype: str,
    rtol: float | None = None,
    atol: float | None = None,
    **more: Unpack[CompareExtras],
) -> InputComparison:
    """Judge one input's analytic gradient against its numerical estimate (rule above).

    ``noise`` is the per-element noise bar ``z`` (None: f is deterministic); ``nonsmooth`` the
    edge analysis (None: every element is judged by the plain rule); ``widen`` the analytic
    side's own rounding ``w`` (None: none measured), added to the tolerance only; ``basis``
    (tolerance_basis, tolerance_note) says what rtol and ``w`` rest on (``_precision``);
    ``zero_scale`` the gradient scale f's measured rounding sets (None: not measured): when
    the whole input's numerical gradient is zero within its error bars, its elements are
    judged on that scale (a bar below ``WIDE_ERROR_BAR`` of it is not 'wide'), so a correct
    zero passes and a wrong 0.5 fails.
    """
    noise, nonsmooth = more.get("noise"), more.get("nonsmooth")
    notes, widen = more.get("notes", ()), more.get("widen")
    basis, zero_scale = more.get("basis", ("default", "")), more.get("zero_scale")
    shape = numeric.shape
    kind = _kinds(nonsmooth, shape)
    atol_given = atol
    rtol, atol, scale = tolerances(numeric, dtype, rtol, atol, kind != "jump")
    z = np.zeros(shape) if noise is None else np.asarray(noise, dtype=np.float64).reshape(shape)
    finite_n = np.isfinite(numeric)
    if nonsmooth is not None:
        kind = _demote_small_kinks(nonsmooth, kind, atol, rtol, z)
    judged = (kind == "") | (kind == "refined")

    abs_err = np.abs(analytic - numeric)
    # An element the judging loop passed at its first level has no error bar (NaN): it needed
    # none. It is kept NaN in the result and counts as 0 here.
    stored_error, error = error, np.where(np.isnan(error) & finite_n, 0.0, error)
    w = widened(widen, shape)
    limit0 = limit_of(atol, rtol, numeric) + (0.0 if w is None else w)
    zero = zero_scale is not None and _zero_within_bars(numeric, stored_error, judged, limit0)
    if zero and atol_given is None:  # the scale is the bars': an element without one gets it
        atol = max(atol, float(np.max(error[judged & np.isfinite(error)], initial=0.0)))
    limit = limit_of(atol, rtol, numeric, z)
    if w is not None:
        with np.errstate(invalid="ignore"):
            rescued = (abs_err > limit + error) & (abs_err <= limit + error + w)
        limit = limit + w
        if np.any(rescued) and basis[0] not in ("measured", "stick"):  # else w is the basis
            notes = (
                *notes,
                f"{int(np.sum(rescued))} element(s) within tolerance only after widening it by "
                f"the analytic gradient's own {dtype} rounding (up to {float(np.max(w)):.3g}, "
                "from the same code run in float64)",
            )
    tolerance = limit + error
    magnitude = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), scale)
    if zero and zero_scale is not None:
        magnitude = np.maximum(magnitude, zero_scale)
    # The noise bar moves from the limit to the error bar; an infinite one (nondeterministic=
    # 'inconclusive') leaves the limit without it, and the bar makes the element 'wide'.
    with np.errstate(invalid="ignore"):
        without_noise = limit - z
    if np.any(np.isinf(z)):
        without_noise = np.where(np.isinf(z), limit_of(atol, rtol, numeric), without_noise)
        if w is not None:
            without_noise = np.where(np.isinf(z), without_noise + w, without_noise)
    verdicts, rule_why = rule(analytic, numeric, error + z, without_noise, magnitude)
    element = np.where(judged, verdicts, Verdict.PASS.value).astype(object)
    wide = judged & (rule_why == "wide")
    unknown = judged & (rule_why == "nonfinite")
    why = np.where(kind == "refined", "refined", "").astype(object)
    why[wide] = "wide"
    with np.errstate(invalid="ignore"):
        why[wide & (z > error)] = "noise"
    why[unknown] = "nonfinite"
    if nonsmooth is not None:
        notes = (*notes, *_judge_edges(nonsmooth, kind, analytic, atol, rtol, z, element, why))
    arrays = (numeric, stored_error, analytic, tolerance, element, why)
    summary = _summarise(position, arrays, notes, dtype, (rtol, atol))
    return dataclasses.replace(summary, tolerance_basis=basis[0], tolerance_note=basis[1])


def _zero_within_bars(n: np.ndarray, error: np.ndarray, ok: np.ndarray, limit: np.ndarray) -> bool:
    """Whether every judged (``ok``) element's numerical value is 0 within its error bar, one
    at least having a bar; one that passed without a bar (NaN), within its ``limit``: the
    input's gradient is zero as far as f's rounding can tell."""
    usable, barless = (
        ok & np.isfinite(n) & np.isfinite(error),
        ok & np.isfinite(n) & np.isnan(error),
    )
    with np.errstate(invalid="ignore"):
        within = np.abs(n) <= np.where(barless, limit, error)
        return bool(np.any(usable & (error > 0)) and np.all(within[usable | barless]))


def _kinds(nonsmooth: Nonsmooth | None, shape: tuple[int, ...]) -> np.ndarray:
    if nonsmooth is None:
        return np.full(shape, "", dtype=object)
    return np.asarray(nonsmooth.kind, dtype=object).reshape(shape)


def _demote_small_kinks(
    edges: Nonsmooth, kind: np.ndarray, atol: float, rtol: float, z: np.ndarray
) -> np.ndarray:
    """A kink whose left and right derivatives differ by less than the tolerance cannot turn
    a right answer into a fail: judge it by the plain rule (as 'refined')."""
    kink = kind == "kink"
    if not np.any(kink):
        return kind
    left, right = edges.left.reshape(kind.shape)[kink], edges.right.reshape(kind.shape)[kink]
    with np.errstate(invalid="ignore"):
        limit = atol + rtol * np.maximum(np.abs(left), np.abs(right)) + z[kink]
        verdicts, _ = rule(right, left, 0.0, limit, math.inf)
    out = kind.copy()
    out[kink] = np.where(verdicts == Verdict.PASS.value, "refined", "kink")
    return out


def _judge_edges(
    edges: Nonsmooth,
    kind: np.ndarray,
    analytic: np.ndarray,
    atol: float,
    rtol: float,
    z: np.ndarray,
    element: np.ndarray,
    why: np.ndarray,
) -> list[str]:
    """Kinks: a subgradient passes, anything else is inconclusive; jumps are inconclusive.
    Returns a sentence for the first few kinks whose analytic value lies outside."""
    shape = kind.shape
    left, right = edges.left.reshape(shape), edges.right.reshape(shape)
    kink = kind == "kink"
    inside = np.zeros(shape, dtype=bool)
    if np.any(kink):
        lo, hi = np.minimum(left[kink], right[kink]), np.maximum(left[kink], right[kink])
        slack = edges.side_error.reshape(shape)[kink] + atol + z[kink]
        slack = slack + rtol * np.maximum(np.abs(left[kink]), np.abs(right[kink]))
        with np.errstate(invalid="ignore"):
            # within the slack of the interval between the one-sided derivatives, by the rule
            nearest = np.clip(analytic[kink], lo, hi)
            verdicts, _ = rule(analytic[kink], nearest, 0.0, slack, math.inf)
        inside[kink] = verdicts == Verdict.PASS.value
    element[kink & inside] = Verdict.PASS.value
    why[kink & inside] = "subgradient"
    element[kink & ~inside] = Verdict.INCONCLUSIVE.value
    why[kink & ~inside] = "kink"
    element[kind == "jump"] = Verdict.INCONCLUSIVE.value
    why[kind == "jump"] = "jump"
    outside = np.flatnonzero((kink & ~inside).reshape(-1))
    return [
        f"at flat element {i} the analytic value {analytic.reshape(-1)[i]:.6g} lies outside "
        f"the left and right derivatives {left.reshape(-1)[i]:.6g} and {right.reshape(-1)[i]:.6g}"
        for i in outside[:3]
    ]


def decide(
    comparison: InputComparison, flat: list[int], verdicts: list[Verdict], reason: str
) -> InputComparison:
    """A copy of the comparison with the given elements' verdicts set by a second opinion."""
    element = comparison.element_verdicts.copy()
    why = comparison.element_reasons.copy()
    for i, verdict in zip(flat, verdicts, strict=True):
        if verdict is not Verdict.INCONCLUSIVE:
            element.reshape(-1)[i] = verdict.value
            why.reshape(-1)[i] = reason
    return _resummarised(comparison, element, why)


def never_fail(comparison: InputComparison, mask: np.ndarray, reason: str) -> InputComparison:
    """A copy of the comparison in which the failing elements under ``mask`` (flat) are
    inconclusive with ``reason`` instead: where the numbers cannot tell a wrong gradient from
    the limits of the dtype (huge inputs, ``gradcheck._judge.tolerance``)."""
    element = comparison.element_verdicts.copy()
    hit = np.asarray(mask).reshape(element.shape) & (element == Verdict.FAIL.value)
    if not np.any(hit):
        return comparison
    why = comparison.element_reasons.copy()
    element[hit] = Verdict.INCONCLUSIVE.value
    why[hit] = reason
    return _resummarised(comparison, element, why)


def _resummarised(c: InputComparison, element: np.ndarray, why: np.ndarray) -> InputComparison:
    """The comparison with new element verdicts and reasons, its verdict and reasons redone."""
    arrays = (c.numeric, c.error_estimate, c.analytic, c.tolerance, element, why)
    summary = _summarise(c.position, arrays, c.notes, c.dtype, (c.rtol, c.atol))
    return dataclasses.replace(
        summary, tolerance_basis=c.tolerance_basis, tolerance_note=c.tolerance_note
    )


def _sentences(element: np.ndarray, why: np.ndarray) -> list[str]:
    """One sentence per kind of non-plain element, with counts; the verdict's reasons."""

    def count(reason: str, verdict: str | None = None) -> int:
        hit = why == reason
        if verdict is not None:
            hit &= element == verdict
        return int(np.sum(hit))

    out = []
    if count("nonfinite"):
        out.append(f"f returned NaN/Inf near {count('nonfinite')} element(s)")
    if count("wide"):
        out.append(
            f"error bar wider than {WIDE_ERROR_BAR:.0%} of the gradient at "
            f"{count('wide')} element(s)"
        )
    for reason in ("noise", "kink", "jump", "huge"):
        if count(reason):
            out.append(f"{count(reason)} element(s) inconclusive: {REASONS[reason]}")
    if count("subgradient"):
        out.append(f"{count('subgradient')} element(s) at a kink accepted as subgradients")
    for verdict in (Verdict.PASS.value, Verdict.FAIL.value):
        if count("taylor", verdict):
            out.append(
                f"{count('taylor', verdict)} element(s) decided {verdict} by the "
                "Taylor-remainder test"
            )
    return out


def _summarise(
    position: int,
    arrays: tuple[np.ndarray, ...],
    notes: tuple[str, ...],
    dtype: str,
    rtol_atol: tuple[float, float],
) -> InputComparison:
    """The input's comparison from its arrays (numeric, error, analytic, tolerance, element
    verdicts, element reasons): its verdict combined from the elements', and its reasons."""
    numeric, error, analytic, tolerance, element, why = arrays
    rtol, atol = rtol_atol
    verdict = combine([Verdict(v) for v in set(element.reshape(-1).tolist())] or [Verdict.PASS])
    reasons = [*_sentences(element, why), *notes]
    shape = tuple(numeric.shape)
    return InputComparison(
        position=position,
        shape=shape,
        dtype=dtype,
        verdict=verdict,
        rtol=rtol,
        atol=atol,
        reasons=tuple(reasons),
        numeric=numeric,
        analytic=analytic,
        error_estimate=error,
        tolerance=tolerance,
        element_verdicts=element,
        element_reasons=why,
        notes=notes,
    )
