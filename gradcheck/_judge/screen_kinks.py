"""Differentiate (screen at kinks): a probe that disagrees is measured again before it counts.

A screen probe differentiates ``phi(tau) = f(x + tau w)`` at 0 with the stencil ``tau = +-T,
+-T/2``. Along a random direction every element moves at once, so an f with kinks (ReLU, max,
bilinear interpolation between pixel centres, an L1 term) is non-smooth inside the stencil as
soon as one element's kink lies within its displacement: the central difference then measures
a chord across the kink, not ``phi'(0)``, and a right gradient disagrees with it. Full mode
sees this element by element (``gradcheck._judge.kinks``); a probe sees it in three ways, and
each is asked before a disagreeing probe may fail the check:

* **one-sided**: the probe's own four values and ``f(x)`` give a right and a left derivative
  of phi (``gradcheck._judge.kinks.one_sided``: first-order Richardson per side). For smooth
  phi they agree to ``O(T**2)``; across a kink they differ by the kink's slope jump.
* **a second step**: the same direction is measured again at ``T / SHRINK`` (and, if that does
  not settle it, at ``T / SHRINK**2``). A wrong gradient contributes the same mismatch
  ``a . w - phi'(0)`` at every step; a kink crossed by the stencil contributes one that moves
  with the step (fewer kinks lie within a smaller displacement, and a kink at distance d from x
  biases a central difference by a function of d / T). The mismatch *moved* when the two
  mismatches differ by more than both error bars together.
* **bracketing**: at a kink at x itself (``relu`` at 0, ``max(x, tau)`` at tau) phi has a
  right and a left derivative that stay apart by the same gap at every step (rounding the
  bars underestimate makes a gap that grows as the step shrinks); any value between them
  (widened by the tolerance) is a valid combination of one-sided derivatives, as full mode
  accepts a subgradient.

The verdict of a probe that failed at its own step (``decide``):

* **pass** when the re-measured probe passes and the mismatch moved: the smaller step no
  longer crosses the kink, and the probe there is a probe like any other, with the same
  guarantee at its (wider) bar; or when a kink at x (the same one-sided gap at two steps)
  brackets the analytic value;
* **inconclusive** when the mismatch moved but no step agreed ("the difference moves with the
  step": f is not smooth along the probe within the step);
* **fail** otherwise: the mismatch stayed put across the steps, as a wrong gradient's does.

Non-smoothness is never read as rounding: where the pilot's two steps disagree in a way the
screen would take for f's own rounding, ``rounding_confirmed`` asks f at two tiny steps
(``T / TINY``, ``T / (2 TINY)``), where truncation and all but the nearest kinks vanish: the
second differences ``phi(s) + phi(-s) - 2 phi(0)`` there are rounding alone (plus the slope
jump of a kink at x itself, times s). Rounding of u per evaluation shows in them at about u;
when both stay below ``u / ROUNDING_SEEN`` the claim is dropped and the probes that disagree
are re-measured as above instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from gradcheck._judge import kinks as _kinks
from gradcheck._judge.verdict import Verdict
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Precision

SHRINK = 8.0
# How many times the smaller step's mismatch must move, in units of the two bars, to count.
MOVED_BARS = 1.0
TINY = 64.0
ROUNDING_SEEN = 16.0


@dataclass(frozen=True)
class Look:
    """One measurement of a probe's direction: its step, mismatch, error bar, tolerance and
    verdict, and the one-sided derivatives of phi at that step (NaN when not measurable)."""

    step: float
    analytic: float
    mismatch: float
    error: float
    tolerance: float
    verdict: Verdict
    left: float
    right: float
    side_error: float

    @property
    def nonsmooth(self) -> bool:
        return bool(
            _kinks.disagree(np.array(self.left), np.array(self.right), np.array(self.side_error))
        )


def look(measured: Any, T: float, f0: float, eps_f: float, rounding: float = 0.0) -> Look:
    """A screen measurement (``gradcheck._judge.screen._Measure``) as a :class:`Look`: its
    numbers and the one-sided derivatives its four values give, with ``f(x) = f0``; each
    value of f off by up to ``eps |f|`` modelled, or ``rounding`` where the pilot measured
    more."""
    p = measured.probe
    values = measured.values
    stencil = _engine.Stencil(
        x=np.zeros(1),
        x_plus=np.array([T]),
        x_minus=np.array([-T]),
        x_plus_half=np.array([T / 2]),
        x_minus_half=np.array([-T / 2]),
        f_plus=values[0:1],
        f_minus=values[1:2],
        f_plus_half=values[2:3],
        f_minus_half=values[3:4],
    )
    u = np.maximum(Precision(eps_f).unit(np.max(np.abs(np.append(values, f0)))), rounding)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        left, right, left_err, right_err = _kinks.one_sided(stencil, f0, np.asarray(u))
    side = float(left_err[0] + right_err[0]) + p.error_estimate
    return Look(
        T,
        p.analytic,
        p.analytic - p.numeric,
        p.error_estimate,
        p.tolerance,
        p.verdict,
        float(left[0]),
        float(right[0]),
        side,
    )


def moved(first: Look, later: Look) -> bool:
    """Whether the mismatch moved with the step beyond both error bars."""
    if not (math.isfinite(first.mismatch) and math.isfinite(later.mismatch)):
        return False
    return abs(first.mismatch - later.mismatch) > MOVED_BARS * (first.error + later.error)


def stable_kink(looks: list[Look]) -> Look | None:
    """The latest look at a kink at x itself: one-sidedly non-smooth at two steps with gaps
    ``right - left`` of the same sign that agree to within half the larger. A kink at x keeps
    its gap at every step; rounding that the bars underestimate makes a gap that grows as the
    step shrinks, and a kink further out one that shrinks. None when there is none."""
    kinked = [m for m in looks if m.nonsmooth and math.isfinite(m.left + m.right)]
    for later in reversed(kinked):
        for earlier in kinked:
            if earlier is later:
                continue
            a, b = earlier.right - earlier.left, later.right - later.left
            if a * b > 0 and abs(a - b) <= 0.5 * max(abs(a), abs(b)):
                return later
    return None


def brackets(at: Look) -> bool:
    """Whether the analytic value lies between the one-sided derivatives (widened by the
    tolerance) of a look at a kink at x."""
    low, high = min(at.left, at.right), max(at.left, at.right)
    return low - at.tolerance <= at.analytic <= high + at.tolerance


def decide(looks: list[Look]) -> tuple[Verdict, str]:
    """The verdict of a probe that failed at its own step (``looks[0]``), given its
    re-measurements at smaller steps (``looks[1:]``), and the sentence that says why; '' when
    the fail stands."""
    first, last = looks[0], looks[-1]
    went = any(moved(first, later) for later in looks[1:])
    steps = ", ".join(f"{m.mismatch:.3g} at step {m.step:.3g}" for m in looks)
    if last.verdict is Verdict.PASS and went:
        return Verdict.PASS, (
            f"crossed a kink at step {first.step:.3g} (mismatch {steps}; one-sided "
            f"derivatives {first.left:.6g} and {first.right:.6g}): at step {last.step:.3g} it "
            "agrees"
        )
    at = stable_kink(looks)
    if at is not None and brackets(at):
        return Verdict.PASS, (
            f"lies on a kink at x: the one-sided derivatives along it, {at.left:.6g} and "
            f"{at.right:.6g} at step {at.step:.3g} (the same gap at a larger step), bracket "
            f"the analytic {at.analytic:.6g} (a subgradient)"
        )
    if went:
        return Verdict.INCONCLUSIVE, (
            f"the difference moves with the step (mismatch {steps}): f is not smooth along the "
            "probe within the step"
        )
    return Verdict.FAIL, ""


def rounding_confirmed(values: np.ndarray, f0: float, rounding: float) -> bool:
    """Whether f's rounding of ``rounding`` per evaluation shows at tiny steps: ``values`` are
    phi at ``+-s, +-s/2`` (module docstring)."""
    if not np.all(np.isfinite(values)):
        return True  # nothing to refute it with
    second = np.abs(values[0::2] + values[1::2] - 2 * f0)
    return bool(np.max(second) >= rounding / ROUNDING_SEEN)


M = TypeVar("M")


def relabelled(measured: M, verdict: Verdict) -> M:
    """A measurement with its probe's verdict replaced (after a second look)."""
    probe = dataclasses.replace(measured.probe, verdict=verdict)  # type: ignore[attr-defined]
    return dataclasses.replace(measured, probe=probe)  # type: ignore[type-var]
