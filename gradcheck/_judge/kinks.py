"""Differentiate (kinks): is f smooth across the stencil, and if not, what is it at x?

Kinks and jumps, from the stencil the engine already sampled
------------------------------------------------------------
The stencil holds f at ``x``, ``x +- h`` and ``x +- h/2``. Each side gives two one-sided
quotients, ``S(t) = (f(x + t) - f(x)) / t`` on the right and ``(f(x) - f(x - t)) / t`` on the
left, which err by ``f'' t / 2 + O(t**2)``; first-order Richardson with the realised ratio
``rho = t_half / t_full`` (1/2 up to rounding) cancels that term::

    right = (S_right(h/2) - rho S_right(h)) / (1 - rho)      (left alike)

For smooth f, ``right - left = O(h**3)``: smaller than the central difference's own error bar
``e`` (which holds ``|D1 - D2| ~ f''' h**2``). Each one-sided value also carries the rounding of
its two f values, ``u`` each (below), which propagates as
``2 u (1/t_half + rho/t_full) / (1 - rho)``. An element is *non-smooth across its stencil*
when::

    |right - left| > KINK_BAR * (e + rounding_left + rounding_right)

``KINK_BAR = 1/2`` because a kink a quarter-step from x biases the central estimate by more than
e while moving ``right - left`` by only twice e; at one half every such kink is flagged. An odd
jump (sign at 0) leaves ``right == left``, so a side whose increment ``f(x +- h/2) - f(x)`` is
more than ``STEEP_RATIO`` of ``f(x +- h) - f(x)`` (it should be about half) is flagged too.

How far one evaluation of f may be off::

    u = ROUNDING_SAFETY eps_f (max|f| + sum_i |g_i x_i|) + NOISE_SIGMAS sigma

A backward-stable f computes f exactly at inputs off by ``eps |x_i|``, so its rounding is about
``eps sum_i |g_i x_i|`` (g: the smaller of the numerical and analytic values, so that neither a
jump's quotient nor a wild analytic value counts), which can dwarf ``eps |f|`` when f cancels
(``sin(1e5 x)`` at 0.1, a sum of large terms of either sign).

A flag does not say where the trouble is, so flagged elements (and only those) are refined: f is
sampled on a ladder ``x +- h 2**-j`` for ``j = 2 .. REFINE_LEVELS + 1`` and the two finest rungs
form a small stencil of their own. Every flagged element's ladder is one request to the engine's
evaluation path (``gradcheck._numerics.evaluate``): an elementwise f samples all of them in one
pass per
rung, a vmap-able one in chunks; otherwise one call per point, element by element. Richardson
estimates of neighbouring rungs differ by ``O(t**4)`` for smooth f and by nothing at a kink at
x, so their scatter over the last ``LADDER_PAIRS`` rungs measures the rounding f really shows;
``LADDER_SAFETY`` times it replaces u on the fine stencil when larger. When at least
``ROUNDING_LADDERS`` ladders found f smooth at x (below: "refined"), that measured rounding
(their median) is f's, not just theirs: a sequential reduction (``cumsum``) rounds at its
partial sums, far above ``eps |f|``, and for elements never flagged its two central differences
can agree by chance while the Richardson value is off. Their bars are widened to
``|D1 - D2| + rounding * kappa`` where larger, and the other steps below use it for ``u``.
Kinks at x do not inflate it: their ladders are "kink", not "refined". Then, per element:

* **jump** when, on either side, the increment ``f(x +- t) - f(x)`` at the finest rung is still
  more than ``JUMP_RATIO`` of the increment at ``h`` (and clear of rounding): an increment that
  does not shrink with t is a step in f, not a slope. There is no derivative to compare with;
  the element is inconclusive.
* **kink** when the fine one-sided derivatives still disagree by the test above. Any value
  between them (widened by their error bars and the tolerance) is a valid one-sided
  derivative combination — for convex or concave f exactly the subgradients — and is accepted
  ("subgradient"); a value outside is inconclusive ("kink").
* **refined** otherwise: f is smooth at x and the trouble was further out (a kink or jump
  inside the big stencil but not at x). The element is judged by the usual rule with the fine
  stencil's Richardson estimate and error bar.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge.verdict import (
    Nonsmooth,
)
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Precision, Probe

KINK_BAR = 0.5
JUMP_RATIO = 0.25
STEEP_RATIO = 0.75
JUMP_SIGNIFICANCE = 4.0
REFINE_LEVELS = 7
LADDER_PAIRS = 3
LADDER_SAFETY = 4.0
# Fewest ladders that must find f smooth at x before their rounding widens every bar.
ROUNDING_LADDERS = 3


@dataclass(frozen=True)
class EdgeAnalysis:
    """One input's elements after the kink/jump analysis, flat.

    Fields:
        numeric, error: the estimate to judge by (the fine stencil's where refined).
        nonsmooth: kind per element ('', 'refined', 'kink', 'jump') with the one-sided
            derivatives and their error bars (see :class:`gradcheck._judge.verdict.Nonsmooth`).
        flagged: elements whose full stencil was not smooth (each cost a refinement).
        rounding: the per-evaluation rounding the ladders measured, when it widened bars (else
            0.0); widened: how many bars of elements never flagged it widened.
    """

    numeric: np.ndarray
    error: np.ndarray
    nonsmooth: Nonsmooth
    flagged: int
    rounding: float = 0.0
    widened: int = 0


def one_sided(
    s: _engine.Stencil, f0: float, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, left rounding bar, right rounding bar), per element of the stencil."""
    right, right_err = _side(
        s.f_plus - f0, s.f_plus_half - f0, s.x_plus - s.x, s.x_plus_half - s.x, u
    )
    left, left_err = _side(
        f0 - s.f_minus, f0 - s.f_minus_half, s.x - s.x_minus, s.x - s.x_minus_half, u
    )
    return left, right, left_err, right_err


def _side(
    rise_full: np.ndarray, rise_half: np.ndarray, t_full: np.ndarray, t_half: np.ndarray, u: Any
) -> tuple[np.ndarray, np.ndarray]:
    """First-order Richardson of two one-sided quotients, and its rounding bound."""
    rho = t_half / t_full
    value = (rise_half / t_half - rho * rise_full / t_full) / (1 - rho)
    rounding = 2 * u * (1 / t_half + rho / t_full) / (1 - rho)
    return value, rounding


def steep(rise_full: np.ndarray, rise_half: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A side whose increment does not halve with the step: a jump at x, or f turning inside
    the stencil (the ladder tells which)."""
    with np.errstate(invalid="ignore"):
        big = np.abs(rise_half) > JUMP_SIGNIFICANCE * u
        return np.asarray(big & (np.abs(rise_half) > STEEP_RATIO * np.abs(rise_full)))


def disagree(
    left: np.ndarray, right: np.ndarray, bar: np.ndarray
) -> np.ndarray:  # NaN compares False: a stencil with NaN is never called a kink
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(right - left) > KINK_BAR * bar)


def analyse_edges(
    probe: Probe,
    k: int,
    stencil: _engine.Stencil,
    numeric: np.ndarray,
    error: np.ndarray,
    f0: float,
    precision: Precision,
) -> EdgeAnalysis:
    """Flag elements whose stencil is not smooth, then refine each flagged one (module doc)."""
    s = stencil
    numeric, error = numeric.reshape(-1).copy(), error.reshape(-1).copy()
    f_mag = np.maximum.reduce([np.abs(s.f_plus), np.abs(s.f_minus), np.abs(s.f_plus_half)])
    f_mag = np.maximum(np.maximum(f_mag, np.abs(s.f_minus_half)), abs(f0))
    u = precision.unit(f_mag)
    left, right, left_err, right_err = one_sided(s, f0, u)
    flagged = disagree(left, right, error + left_err + right_err)
    flagged |= steep(s.f_plus - f0, s.f_plus_half - f0, u)
    flagged |= steep(f0 - s.f_minus, f0 - s.f_minus_half, u)
    kind = np.full(numeric.shape, "", dtype=object)
    left_out = np.full(numeric.shape, np.nan)
    right_out = np.full(numeric.shape, np.nan)
    side_error = np.full(numeric.shape, np.nan)
    todo = np.flatnonzero(flagged)
    ladders = _ladders(probe, k, s, todo)
    noise = []  # what the ladders that found f smooth at x measured of its rounding
    for i, (points, values) in zip(todo, ladders, strict=True):
        fine = _refine(s, int(i), points, values, f0, precision)
        if fine is None:
            continue
        kind[i], left_out[i], right_out[i], side_error[i], n_fine, e_fine, scatter = fine
        if kind[i] != "jump":
            numeric[i], error[i] = n_fine, e_fine
        if kind[i] == "refined":
            noise.append(scatter)
    rounding, widened = _widen_to_ladders(s, error, ~flagged, noise)
    return EdgeAnalysis(
        numeric=numeric,
        error=error,
        nonsmooth=Nonsmooth(kind=kind, left=left_out, right=right_out, side_error=side_error),
        flagged=int(np.sum(flagged)),
        rounding=rounding,
        widened=widened,
    )


def _widen_to_ladders(
    s: _engine.Stencil, error: np.ndarray, smooth: np.ndarray, noise: list[float]
) -> tuple[float, int]:
    """When at least ``ROUNDING_LADDERS`` ladders found f smooth at x and rounding coarser than
    assumed, the bars of the elements never flagged are widened to that rounding too (in
    place; module doc). Returns (the per-evaluation rounding taken, 0.0 for none; how many
    bars it widened)."""
    if len(noise) < ROUNDING_LADDERS:
        return 0.0, 0
    rounding = LADDER_SAFETY * float(np.median(noise))
    d1, d2, kappa = _engine.kappa(s)
    with np.errstate(invalid="ignore"):
        bar = np.abs(d1 - d2) + rounding * kappa
        wider = smooth & np.isfinite(error) & (bar > error)
    error[wider] = bar[wider]
    return rounding, int(np.sum(wider))


def _ladders(
    probe: Probe, k: int, s: _engine.Stencil, elements: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per element, the ladder's realised points ``x + t_j, x - t_j`` (``t_j = h 2**-j``,
    ``j = 2 .. REFINE_LEVELS + 1``, interleaved, up to the first rung that rounding loses) and
    f there; every element's ladder in one request, so the engine's path can batch them."""
    if elements.size == 0:
        return []
    x = s.x[elements]
    h = (s.x_plus[elements] - s.x_minus[elements]) / 2
    t = h[:, None] * 2.0 ** -np.arange(2, REFINE_LEVELS + 2)
    plus = probe.rounded(k, x[:, None] + t)
    minus = probe.rounded(k, x[:, None] - t)
    kept = np.cumprod((plus != x[:, None]) & (minus != x[:, None]), axis=1).astype(bool)
    points = np.stack([plus, minus], axis=2).reshape(elements.size, -1)
    valid = np.repeat(kept, 2, axis=1)
    values = probe.many(k, s.flat_index(elements), points, valid)
    return [(points[r, valid[r]], values[r, valid[r]]) for r in range(elements.size)]


def _refine(
    s: _engine.Stencil,
    i: int,
    points: np.ndarray,
    values: np.ndarray,
    f0: float,
    precision: Precision,
) -> tuple[str, float, float, float, float, float, float] | None:
    """Classify one flagged element from its ladder of smaller steps (``points``, f at them:
    see :func:`_ladders`): (kind, left, right, side error, numeric, error, the rounding the
    ladder measured); None when the ladder could not be sampled (NaN, lost steps)."""
    x = float(s.x[i])
    rungs = [
        (float(s.x_plus[i]), float(s.x_minus[i]), float(s.f_plus[i]), float(s.f_minus[i])),
        (
            float(s.x_plus_half[i]),
            float(s.x_minus_half[i]),
            float(s.f_plus_half[i]),
            float(s.f_minus_half[i]),
        ),
    ]
    for j in range(0, points.size - 1, 2):
        rungs.append(
            (float(points[j]), float(points[j + 1]), float(values[j]), float(values[j + 1]))
        )
    if len(rungs) < 4 or not all(math.isfinite(r[2]) and math.isfinite(r[3]) for r in rungs):
        return None
    pairs = [_pair(x, a, b) for a, b in itertools.pairwise(rungs)]
    f_mag = max(abs(f0), *(max(abs(r[2]), abs(r[3])) for r in rungs[2:]))
    u = float(precision.unit(f_mag))
    scatter = _ladder_noise(pairs[2:])
    u_eff = max(u, LADDER_SAFETY * scatter)
    fine = pairs[-1]
    n_fine, e_fine, _ = _engine.central(fine, u_eff)
    left, right, left_err, right_err = (float(v[0]) for v in one_sided(fine, f0, np.array(u_eff)))
    side_error = left_err + right_err + float(e_fine[0])
    # A jump keeps its rise as the step shrinks; a smooth side's rise shrinks with it. The
    # reference is the largest coarser rise, not the coarsest: where f turns inside the
    # stencil (f' t ~ f'' t**2 / 2), the coarsest rise can cancel to almost nothing.
    finest, coarser = rungs[-1], rungs[:-1]
    floor = JUMP_SIGNIFICANCE * u
    jump = abs(finest[2] - f0) > max(JUMP_RATIO * max(abs(r[2] - f0) for r in coarser), floor)
    jump |= abs(f0 - finest[3]) > max(JUMP_RATIO * max(abs(f0 - r[3]) for r in coarser), floor)
    if jump:
        kind = "jump"
    elif bool(disagree(np.array(left), np.array(right), np.array(side_error))):
        kind = "kink"
    else:
        kind = "refined"
    return kind, left, right, side_error, float(n_fine[0]), float(e_fine[0]), scatter


Rung = tuple[float, float, float, float]  # (x + t, x - t, f(x + t), f(x - t)), realised


def _pair(x: float, big: Rung, small: Rung) -> _engine.Stencil:
    """Two rungs of the ladder as a one-element stencil (x +- t and x +- t/2)."""
    return _engine.Stencil(
        *(np.array([v]) for v in (x, big[0], big[1], small[0], small[1], *big[2:], *small[2:]))
    )


def _ladder_noise(pairs: list[_engine.Stencil]) -> float:
    """The per-evaluation error f really shows on the ladder: Richardson estimates of
    neighbouring rungs differ by O(t**4) for smooth f (and by nothing at a kink at x), so
    their scatter is rounding, cancellation inside f included, that ``eps |f|`` misses."""
    estimates = [_engine.central(p, 0.0) for p in pairs[-(LADDER_PAIRS + 1) :]]
    return max(
        (
            float(abs(a[0][0] - b[0][0]) / (a[2][0] + b[2][0]))
            for a, b in itertools.pairwise(estimates)
        ),
        default=0.0,
    )
