"""Differentiate (screen localisation): a failing probe bisected down to the wrong elements.

``gradcheck._judge.screen``'s module docstring states the search (signs that narrow the
suspects, bisection of the lead probe's mismatch, the budget); here it is, with the per-element
comparison of the elements it differentiated alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from gradcheck._judge import screen_kinks as _kinks
from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.compare import compare
from gradcheck._judge.prober import Measure, Probe, Prober
from gradcheck._judge.verdict import InputComparison, Verdict, combine

NONFINITE_SHOWN = 16
# Bisection splits with mismatch in both halves after which the error counts as spread out,
# and the bisection probes left to it then.
SPREAD_BRANCHES = 8
SPREAD_PROBES = 8


@dataclass(frozen=True)
class Leaf:
    """One element, differentiated alone: its numerical value and error bar."""

    index: int
    numeric: float
    error: float


def localise(prober: Prober, screened: list[Measure]) -> tuple[list[Leaf], int]:
    """Bisect the most significant failing probe's mismatch down to single elements, until the
    elements found explain it or the budget runs out; returns the elements and, when the
    mismatch is still unexplained, how many elements were never differentiated."""
    failing = [m for m in screened if m.probe.verdict is Verdict.FAIL]
    lead = max(failing, key=lambda m: abs(m.mismatch) / max(m.probe.tolerance, 1e-300))
    lead = prober.cleaner.get(id(lead), lead)
    kappa = prober.kappa
    prober.kappa = lead.probe.step_scale  # the blocks at the lead's step
    # A probe whose own stencil crosses a kink carries the kink's mismatch, not only the
    # gradient's: its signs would clear the wrong element from the suspects.
    smooth = [m for m in failing if not _kinks.look_at(prober, m).nonsmooth]
    try:
        return _search(prober, lead, _suspects(smooth, prober.n))
    finally:
        prober.kappa = kappa


def _search(prober: Prober, lead: Measure, region: np.ndarray | None) -> tuple[list[Leaf], int]:
    """``localise``'s loop: bisect ``region``, then every element not differentiated yet."""
    budget = [4 * math.ceil(math.log2(max(prober.n, 2))) + 8]
    leaves: list[Leaf] = []
    while True:
        mismatch, tolerance = _unexplained(prober, lead, leaves)
        if abs(mismatch) <= tolerance:
            return leaves, 0
        if region is None:  # after the suspects: every element not differentiated yet
            region = np.setdiff1d(np.arange(prober.n), [leaf.index for leaf in leaves])
        if budget[0] <= 0 or region.size == 0:
            return leaves, prober.n - len(leaves)
        found = _bisect(prober, lead, region, mismatch, tolerance, budget)
        if not found:
            return leaves, prober.n - len(leaves)
        leaves += found
        region = None


def _unexplained(prober: Prober, lead: Measure, leaves: list[Leaf]) -> tuple[float, float]:
    """The lead probe's mismatch less what the elements found so far account for, and its bar."""
    mismatch, tolerance = lead.mismatch, lead.probe.tolerance
    assert lead.w_eff is not None and lead.block is None  # a failing whole-input probe
    for leaf in leaves:
        w = float(lead.w_eff[leaf.index])
        mismatch -= (float(prober.probed[leaf.index]) - leaf.numeric) * w
        tolerance += leaf.error * abs(w)
    return mismatch, tolerance


def nonfinite_leaves(prober: Prober, probe: Measure) -> list[Leaf]:
    """Each element whose analytic value is NaN/Inf, differentiated alone (the first 16)."""
    blocks = (np.array([j]) for j in prober.nonfinite[:NONFINITE_SHOWN])
    return [_leaf(prober, _probe_block(prober, probe, block)) for block in blocks]


def _suspects(failing: list[Measure], n: int) -> np.ndarray:
    """Elements whose signs agree with one wrong element in every failing probe (all if < 2)."""
    if len(failing) < 2:
        return np.arange(n)
    signs = np.stack([m.signs for m in failing])
    expected = np.array([math.copysign(1.0, m.mismatch) for m in failing])[:, None]
    agree = np.all(signs == expected, axis=0) | np.all(signs == -expected, axis=0)
    return np.flatnonzero(agree)


def _bisect(
    prober: Prober,
    lead: Measure,
    block: np.ndarray,
    mismatch: float,
    tolerance: float,
    budget: list[int],
) -> list[Leaf]:
    """Depth-first bisection of ``block``, whose mismatch along the lead probe's signs is
    ``mismatch`` (+- ``tolerance``), while the budget lasts; returns the single elements."""
    leaves: list[Leaf] = []
    stack: list[tuple[np.ndarray, float, float, Measure | None]] = [
        (block, mismatch, tolerance, None)
    ]
    while stack:
        part, mismatch, tolerance, measured = stack.pop()
        if part.size == 1 and measured is not None:
            leaves.append(_leaf(prober, measured))
            continue
        if budget[0] <= 0:
            continue
        budget[0] -= 1
        if part.size == 1:
            leaves.append(_leaf(prober, _probe_block(prober, lead, part)))
            continue
        first, second = part[: part.size // 2], part[part.size // 2 :]
        one = _probe_block(prober, lead, first)
        rest, rest_tol = mismatch - one.mismatch, tolerance + one.probe.tolerance
        go_one = abs(one.mismatch) > one.probe.tolerance
        go_rest = abs(rest) > rest_tol
        if not (go_one or go_rest):  # follow the larger relative mismatch
            go_one = abs(one.mismatch) / one.probe.tolerance >= abs(rest) / rest_tol
            go_rest = not go_one
        if go_one and go_rest:
            _spread_out(prober, budget)
        if go_rest:
            stack.append((second, rest, rest_tol, None))
        if go_one:
            stack.append((first, one.mismatch, one.probe.tolerance, one))
    return leaves


def _spread_out(prober: Prober, budget: list[int]) -> None:
    """Both halves of a block carry mismatch: once that has happened ``SPREAD_BRANCHES`` times
    the error is spread over more elements than bisection can find one by one (a scaled
    gradient, a term missing for every element): the remaining budget is cut to
    ``SPREAD_PROBES``, enough for a few more elements to show in the table."""
    prober.spread += 1
    if prober.spread == SPREAD_BRANCHES:
        budget[0] = min(budget[0], SPREAD_PROBES)


def _probe_block(prober: Prober, lead: Measure, block: np.ndarray) -> Measure:
    """A bisection probe along the lead's signs on ``block``; where its own stencil is not
    smooth (a kink of one of its elements within the step), measured again at 1/8 and 1/64 of
    the step: a block's mismatch must be the gradient's, not a kink's."""
    measure = prober.measure("localise", lead.signs, block)
    prober.localise_log.append(measure)
    return _kinks.smooth_block(prober, measure) if block.size > 1 else measure


def _leaf(prober: Prober, measured: Measure) -> Leaf:
    assert measured.block is not None and measured.block.size == 1 and measured.w_eff is not None
    j = int(measured.block[0])
    w = float(measured.w_eff[0])
    p = measured.probe
    first = _kinks.look_at(prober, measured)
    if not first.nonsmooth or not math.isfinite(p.numeric):
        return Leaf(j, p.numeric / w, p.error_estimate / abs(w))
    return Leaf(*_kinks.kink_leaf(prober, measured, first))


def _leaf_fails(prober: Prober, leaf: Leaf) -> bool:
    return _compare_leaves(prober, [leaf]).verdict is Verdict.FAIL


def _compare_leaves(prober: Prober, leaves: list[Leaf]) -> InputComparison:
    """The same per-element comparison as a full check, for the elements differentiated alone."""
    index = np.array([leaf.index for leaf in leaves], dtype=np.int64)
    analytic = prober.analytic[index]
    atol = _tolerance.leaf_atol(prober.rtol, prober.atol, prober.analytic)
    c = compare(
        prober.k,
        np.array([leaf.numeric for leaf in leaves]),
        np.array([leaf.error for leaf in leaves]),
        analytic,
        dtype=prober.input_dtype,
        rtol=prober.rtol,
        atol=atol,
        widen=None if prober.own is None else np.abs(prober.own[index]),
    )
    return dataclasses.replace(c, shape=prober.shape, elements=index)


def comparison(
    prober: Prober, screened: list[Measure], leaves: list[Leaf], unresolved: int
) -> InputComparison:
    """The input's verdict: the probes decide; located elements fill the per-element table."""
    judged = [m.probe for m in screened if m.probe.kind == "screen" or m.probe.verdict == "fail"]
    verdict = combine([p.verdict for p in judged] + [Verdict.FAIL] * bool(prober.nonfinite.size))
    reasons = _reasons(prober, judged, leaves, unresolved)
    rescued = sum(
        m.probe.verdict is Verdict.PASS
        and m.probe.tolerance - m.direction.own < abs(m.mismatch) <= m.probe.tolerance
        for m in screened
    )
    if rescued:
        reasons.append(
            f"{rescued} probe(s) within tolerance only after widening it by the analytic "
            f"gradient's own {prober.input_dtype} rounding (from the same code run in float64)"
        )
    if prober.nonfinite.size:
        reasons.insert(0, f"the analytic gradient is NaN/Inf at {prober.nonfinite.size} element(s)")
    if leaves:
        c = _compare_leaves(prober, leaves)
        return dataclasses.replace(c, verdict=verdict, reasons=tuple(reasons + list(c.reasons)))
    return InputComparison(
        position=prober.k,
        shape=prober.shape,
        dtype=prober.input_dtype,
        verdict=verdict,
        rtol=prober.rtol,
        atol=0.0 if prober.atol is None else prober.atol,
        reasons=tuple(reasons),
        elements=np.zeros(0, dtype=np.int64),
    )


def _reasons(prober: Prober, judged: list[Probe], leaves: list[Leaf], unresolved: int) -> list[str]:
    out = []
    failed = [p for p in judged if p.verdict is Verdict.FAIL]
    if failed:
        worst = max(failed, key=lambda p: abs(p.analytic - p.numeric) / p.tolerance)
        out.append(
            f"{len(failed)} of {len(judged)} probes fail: analytic directional derivative "
            f"{worst.analytic:.6g} vs numerical {worst.numeric:.6g} "
            f"(tolerance {worst.tolerance:.3g})"
        )
        wrong = sum(_leaf_fails(prober, leaf) for leaf in leaves)
        if wrong:
            out.append(f"bisection located {wrong} wrong element(s)")
        else:
            out.append("bisection found no single wrong element: the error is spread out")
        if unresolved:
            spent = "budget is spent"
            if prober.spread >= SPREAD_BRANCHES:
                spent = f"error is spread over more than {SPREAD_BRANCHES} elements"
            out.append(
                f"the located elements do not explain the whole mismatch and the localisation "
                f"{spent}: {unresolved} element(s) not differentiated; "
                "mode='full' checks every element"
            )
    out.extend(prober.notes)
    if prober.rounding > 0:
        model = prober.setup.eps_f * abs(prober.setup.f0)
        times = f" ({prober.rounding / model:.3g}x eps |f|)" if model > 0 else ""
        out.append(
            f"f rounds at up to {prober.rounding:.3g} per evaluation along the pilot's direction"
            f"{times}, measured at two steps: every probe's error bar includes it"
        )
    unsure = [p for p in judged if p.verdict is Verdict.INCONCLUSIVE]
    if unsure and not failed:
        out.append(
            f"{len(unsure)} of {len(judged)} probes inconclusive (f NaN/Inf along the probe, or "
            "an error bar wider than 1% of the directional derivative)"
        )
    return out
