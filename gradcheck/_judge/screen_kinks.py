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
* **inconclusive** also where the mismatch stayed but no step was smooth along the probe and
  no kink sits at x: kinks at several distances can leave a chord's error alike at two steps;
* **fail** otherwise: the mismatch stayed put across the steps, as a wrong gradient's does;
  and also where a smaller step failed with f smooth along the probe and the smallest one
  measured the same mismatch, even if its wider bar lets it pass.

Non-smoothness is never read as rounding: where the pilot's two steps disagree in a way the
screen would take for f's own rounding, ``rounding_confirmed`` asks f at two tiny steps
(``T / TINY``, ``T / (2 TINY)``), where truncation and all but the nearest kinks vanish: the
second differences ``phi(s) + phi(-s) - 2 phi(0)`` there are rounding alone (plus the slope
jump of a kink at x itself, times s). Rounding of u per evaluation shows in them at about u;
when both stay below ``u / ROUNDING_SEEN`` the claim is dropped and the probes that disagree
are re-measured as above instead.

The bisection (``gradcheck._judge.screen``) asks the same of its blocks (``smooth_block``) and
of single elements (``kink_leaf``). The functions at the end work on the screen's prober (its
``measure``, step ``kappa`` and records), passed in, so that this module needs nothing of the
screen's own.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from gradcheck._judge import kinks as _kinks
from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import Verdict, rule_verdict
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Precision

SHRINK = 8.0
TINY = 64.0
ROUNDING_SEEN = 16.0
# As the screen's: (4 D(T/2) - D(T)) / 3 moves by at most 3 u / T for an error u per value.
RICHARDSON_WEIGHT = 3.0


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
    stencil = _engine.Stencil.along(T, values)
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
    """Whether the mismatch moved with the step beyond both error bars
    (``gradcheck._judge.tolerance.moved_bars``): the rule fails their agreement."""
    if not (math.isfinite(first.mismatch) and math.isfinite(later.mismatch)):
        return False
    bars = _tolerance.moved_bars(first.error, later.error)
    return rule_verdict(first.mismatch, later.mismatch, bars, 0.0, math.inf) is Verdict.FAIL


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
    tolerance) of a look at a kink at x: the rule against the nearest value between them, as
    full mode's subgradient test (``gradcheck._judge.compare``)."""
    nearest = min(max(at.analytic, min(at.left, at.right)), max(at.left, at.right))
    return rule_verdict(at.analytic, nearest, 0.0, at.tolerance, math.inf) is Verdict.PASS


def decide(looks: list[Look]) -> tuple[Verdict, str]:
    """The verdict of a probe that failed at its own step (``looks[0]``), given its
    re-measurements at smaller steps (``looks[1:]``), and the sentence that says why; '' when
    the fail stands."""
    first, last = looks[0], looks[-1]
    went = any(moved(first, later) for later in looks[1:])
    steps = ", ".join(f"{m.mismatch:.3g} at step {m.step:.3g}" for m in looks)
    for earlier, later in itertools.pairwise(looks[1:]):
        # A smaller step that failed where f is smooth along the probe, and a smaller one
        # still that measures the same mismatch (a wider bar may let it pass): the gradient's.
        if earlier.verdict is Verdict.FAIL and not earlier.nonsmooth and not moved(earlier, later):
            return Verdict.FAIL, ""
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
    if at is None and len(looks) > 1 and all(m.nonsmooth for m in looks):
        # The mismatch stayed, but no step was smooth along the probe and no kink sits at x
        # (whose bracket decides): kinks at several distances can leave a chord's error alike
        # at two steps. Not a confirmation.
        return Verdict.INCONCLUSIVE, (
            f"f is not smooth along the probe at any step tried (mismatch {steps}): kinks "
            "within every step"
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


# -- the screen's prober (gradcheck._judge.screen._Prober) at work ----------------------


def rounding_real(prober: Any, pilot: Any, rounding: float) -> bool:
    """Whether f's rounding of ``rounding`` per evaluation shows at tiny steps along the
    pilot's direction (``gradcheck._judge.screenrounding_confirmed``): four
    evaluations that keep a kink from being reported as rounding."""
    s = pilot.probe.step_scale * prober.t0 / TINY
    w = pilot.signs * prober.scale
    rows = np.stack(
        [_arrays.rounded(prober.dtype, prober.base + tau * w) for tau in (s, -s, s / 2, -s / 2)]
    )
    values = prober.setup.evaluator.at_rows(prober.k, rows)
    return rounding_confirmed(values, prober.setup.f0, rounding)


def second_looks(prober: Any, screened: list[Any]) -> list[Any]:
    """Each failing probe measured again before it counts (``gradcheck._judge.screen_kinks``):
    until one fail is confirmed every failing probe is; after that, those whose own stencil is
    not smooth."""
    out, confirmed = [], False
    for i, m in enumerate(screened):
        if kink_wide(prober, m):
            out.append(wide_look(prober, m, i))
            continue
        if m.probe.verdict is not Verdict.FAIL:
            out.append(m)
            continue
        first = look_at(prober, m)
        if confirmed and not first.nonsmooth:
            out.append(m)
            continue
        verdict, why, bound = second_look(prober, m, first)
        if verdict is Verdict.FAIL:
            confirmed = True
            out.append(m)
            continue
        prober.notes.append(f"probe {i + 1} {why}")
        out.append(relabelled(m, verdict))
        if verdict is Verdict.PASS:
            prober.decided[id(out[-1])] = bound
    return out


def kink_wide(prober: Any, m: Any) -> bool:
    """A screen probe left inconclusive by a bar that its two central differences' spread
    dominates (not rounding: a smaller step would only widen that)."""
    p = m.probe
    if p.kind != "screen" or p.verdict is not Verdict.INCONCLUSIVE:
        return False
    if not math.isfinite(p.numeric):
        return False
    rounding = RICHARDSON_WEIGHT * prober.rounding / (p.step_scale * prober.t0)
    return bool(m.spread > max(rounding, p.error_estimate / 8))


def wide_look(prober: Any, m: Any, i: int) -> Any:
    """A probe left inconclusive by a wide error bar (its two central differences disagree:
    a kink inside its stencil), measured again at 1/8 of its step, and at 1/64 where that is
    no pass either: a pass there is a probe like any other, with that look's bound; anything
    else leaves it inconclusive."""
    kappa = prober.kappa
    prober.kinked = True
    for j in (1, 2):
        prober.kappa = m.probe.step_scale / SHRINK**j
        again = prober.measure("restep", m.signs)
        prober.localise_log.append(again)
        if again.probe.verdict is Verdict.PASS:
            break
    prober.kappa = kappa
    if again.probe.verdict is not Verdict.PASS:
        return m
    prober.notes.append(
        f"probe {i + 1}'s error bar was too wide at step {m.probe.step_scale * prober.t0:.3g} "
        f"(its two central differences disagree by {m.spread:.3g}: f is not smooth within it); "
        f"at step {again.probe.step_scale * prober.t0:.3g} it agrees"
    )
    passed = relabelled(m, Verdict.PASS)
    prober.decided[id(passed)] = prober.bound(again)
    return passed


def look_at(prober: Any, m: Any) -> Look:
    T = m.probe.step_scale * prober.t0
    return look(m, T, prober.setup.f0, prober.setup.eps_f, prober.rounding)


def second_look(prober: Any, m: Any, first: Look) -> tuple[Verdict, str, float]:
    """The probe ``m`` re-measured at 1/8 of its step, and at 1/64 when the mismatch moved but
    did not settle; the verdict, why (``decide``) and, for a pass, the single-element bound
    the deciding look honours: the re-measurement's own where it agrees, or, where a kink at
    x brackets the analytic value, the bracket's width plus twice its tolerance (an error
    must carry the analytic value out of it). A confirmed fail whose re-measurement fails too
    leaves that re-measurement as the lead for the bisection (``prober.cleaner``): a smaller
    step crosses fewer kinks."""
    kappa, looks = prober.kappa, [first]
    verdict, why = Verdict.FAIL, ""
    for j in (1, 2):
        prober.kappa = m.probe.step_scale / SHRINK**j
        again = prober.measure("restep", m.signs)
        prober.localise_log.append(again)
        looks.append(look_at(prober, again))
        verdict, why = decide(looks)
        if verdict is not Verdict.INCONCLUSIVE:
            break
    prober.kappa = kappa
    if any(moved(first, b) for b in looks[1:]) or any(b.nonsmooth for b in looks):
        prober.kinked = True
    if verdict is Verdict.FAIL and again.probe.verdict is Verdict.FAIL:
        prober.cleaner[id(m)] = again
    bound = math.nan
    if verdict is Verdict.PASS:
        at = stable_kink(looks)
        if again.probe.verdict is Verdict.PASS and any(moved(first, b) for b in looks[1:]):
            bound = prober.bound(again)
        elif at is not None:
            bound = abs(at.right - at.left) + 2 * at.tolerance + at.side_error
    return verdict, why, bound


def kink_leaf(prober: Any, measured: Any, look: Look) -> tuple[int, float, float]:
    """(index, numeric, error bar) of an element whose own stencil is not smooth (a kink
    within its step), measured again at 1/8 and 1/64 of the step: the first smooth
    measurement is its value. Where it stays
    non-smooth with the same one-sided gap (a kink at x itself), the midpoint of its one-sided
    derivatives with half their gap as the error bar, so that it fails only outside them (as
    full mode's subgradient rule) and is inconclusive inside; otherwise (a gap that changes
    with the step is rounding, not a kink) the first measurement stands."""
    kappa, looks, measures = prober.kappa, [look], [measured]
    for factor in (SHRINK, SHRINK**2):
        prober.kappa = measured.probe.step_scale / factor
        again = prober.measure("localise", measured.signs, measured.block)
        prober.localise_log.append(again)
        looks.append(look_at(prober, again))
        measures.append(again)
        if not looks[-1].nonsmooth:
            break
    prober.kappa = kappa
    chosen, kink = measured, None
    if not looks[-1].nonsmooth:
        chosen = measures[-1]
    else:
        kink = stable_kink(looks)
    assert chosen.block is not None and chosen.w_eff is not None
    j, w, p = int(chosen.block[0]), float(chosen.w_eff[0]), chosen.probe
    if kink is None:
        return j, p.numeric / w, p.error_estimate / abs(w)
    middle = (kink.left + kink.right) / 2
    return j, middle / w, (abs(kink.left - kink.right) / 2 + kink.side_error) / abs(w)


def smooth_block(prober: Any, measure: Any) -> Any:
    """A bisection block's measurement; where its stencil is not smooth (a kink of one of its
    elements within the step), measured again at 1/8 and 1/64 of the step, the first smooth
    one: a block's mismatch must be the gradient's, not a kink's. Never smooth: rounding the
    model misses rather than a kink further out, and the first measurement stands."""
    if not look_at(prober, measure).nonsmooth:
        return measure
    kappa, first = prober.kappa, measure
    for factor in (SHRINK, SHRINK**2):
        prober.kappa = kappa / factor
        measure = prober.measure("localise", first.signs, first.block)
        prober.localise_log.append(measure)
        if not look_at(prober, measure).nonsmooth:
            prober.kappa = kappa
            return measure
    prober.kappa = kappa
    return first
