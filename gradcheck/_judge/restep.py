"""Differentiate (re-stepping): another step where the automatic one limits the verdict.

Another step where the automatic one limits the verdict
-------------------------------------------------------
The automatic step balances truncation against rounding for ``|f'''| ~ |f|``. When f carries
a large constant, cancels, or curves fast, the error bar of a smooth element can dwarf the
tolerance it widens, and a 1e-5 error would pass. Where the bar decides the verdict — it is
wider than 1% of the gradient, or it is looser than ``RESTEP_BAR rtol`` (4.5e-6 relative in
float64) and the analytic value lies within ``atol + rtol |n| + e`` but not within
``atol + rtol |n|`` — the element is re-estimated with steps ``RESTEP_FACTOR**j`` times larger
(when rounding dominates ``e``) or smaller (when ``|D1 - D2|`` does), ``j = 1 ..
RESTEP_TRIALS``, keeping each estimate whose error bar is smaller and whose stencil passes the
kink and step tests above; it stops at the first that is not, or once the bar is within the
tolerance. Each trial is one request for all elements still trying (batched like the ladders).
Such elements are reported as ``refined``; an element the kink ladder already found smooth
at x (``refined``) may be re-stepped too, when its bar still decides. A bar tighter than
``RESTEP_BAR rtol`` already fails a 1e-5 error by itself, so well-scaled checks never pay for
this; at most ``RESTEP_MAX_ELEMENTS`` per input (the widest bars first) bounds the cost of the
rest.
"""

from __future__ import annotations

import numpy as np

from gradcheck._judge.kinks import disagree, one_sided, steep
from gradcheck._judge.verdict import Verdict, rule
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Precision, Probe

RESTEP_FACTOR = 8.0
RESTEP_TRIALS = 4
RESTEP_BAR = 300.0
RESTEP_MAX_ELEMENTS = 64


def restep(
    probe: Probe,
    k: int,
    s: _engine.Stencil,
    f0: float,
    estimate: tuple[np.ndarray, np.ndarray, np.ndarray],
    decides: np.ndarray,
    limit: np.ndarray,
    precision: Precision,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Another step for smooth elements whose verdict their error bar decides (``decides``:
    how much, 0 for not at all; the RESTEP_MAX_ELEMENTS most decided ones; module doc).
    ``estimate``: (numeric, error, kind) so far; returns them after re-stepping."""
    numeric, error, kind = estimate
    shape = numeric.shape
    numeric, error = numeric.reshape(-1).copy(), error.reshape(-1).copy()
    limit = limit.reshape(-1)
    kind = np.asarray(kind, dtype=object).reshape(-1).copy()
    d1, d2, _ = _engine.kappa(s)
    # 'refined' too: a ladder that found f smooth at x may still leave a wide bar where f
    # curves fast (sqrt at 1e-5: its coarse rungs' truncation reads as rounding).
    smooth = (kind == "") | (kind == "refined")
    severity = np.where(smooth & np.isfinite(error), decides.reshape(-1), 0.0)
    todo = np.argsort(-severity, kind="stable")[: int(np.sum(severity > 0))]
    todo = todo[:RESTEP_MAX_ELEMENTS]
    # Truncation dominates the bar: a smaller step; rounding does: a larger one.
    truncated = np.abs(d1[todo] - d2[todo]) > error[todo] / 2
    factor = np.where(truncated, 1 / RESTEP_FACTOR, RESTEP_FACTOR)
    h = (s.x_plus[todo] - s.x_minus[todo]) / 2
    active = np.ones(todo.size, dtype=bool)
    for trial in range(1, RESTEP_TRIALS + 1):  # every element's trial at once: one request
        idx = todo[active]
        if idx.size == 0:
            break
        value, bar = _smooth_estimates(
            probe,
            k,
            s.flat_index(idx),
            s.x[idx],
            h[active] * factor[active] ** trial,
            f0,
            precision,
        )
        with np.errstate(invalid="ignore"):
            better = bar < error[idx]  # NaN (not smooth, not finite, lost): no better
        numeric[idx[better]], error[idx[better]] = value[better], bar[better]
        kind[idx[better]] = "refined"
        active[np.flatnonzero(active)[~better | (error[idx] <= limit[idx])]] = False
    return numeric.reshape(shape), error.reshape(shape), kind.reshape(shape)


def _smooth_estimates(
    probe: Probe,
    k: int,
    elements: np.ndarray,
    x: np.ndarray,
    h: np.ndarray,
    f0: float,
    precision: Precision,
) -> tuple[np.ndarray, np.ndarray]:
    """The Richardson estimate and error bar of each element at its step h; NaN where the
    stencil is not smooth (a kink or step has come inside it), not finite, or lost to rounding
    (and then not evaluated)."""
    points = probe.rounded(k, np.stack([x + h, x - h, x + h / 2, x - h / 2], axis=1))
    usable = np.all(points != x[:, None], axis=1)
    values = probe.many(k, elements, points, np.repeat(usable[:, None], 4, axis=1))
    stencil = _engine.Stencil(x, *points.T, *values.T)
    with np.errstate(invalid="ignore"):
        u = precision.unit(np.maximum(abs(f0), np.max(np.abs(values), axis=1)))
        derivative, bar, _ = _engine.central(stencil, u)
        left, right, left_err, right_err = one_sided(stencil, f0, u)
        rough = disagree(left, right, bar + left_err + right_err)
        rough |= steep(stencil.f_plus - f0, stencil.f_plus_half - f0, u)
        rough |= steep(f0 - stencil.f_minus, f0 - stencil.f_minus_half, u)
    smooth = np.all(np.isfinite(values), axis=1) & ~rough
    return np.where(smooth, derivative, np.nan), np.where(smooth, bar, np.nan)


def bar_decides(
    numeric: np.ndarray,
    error: np.ndarray,
    analytic: np.ndarray,
    limit: np.ndarray,
    rtol: float,
    scale: float,
) -> np.ndarray:
    """How much the error bar decides each element's verdict (0: not at all), by the verdict
    rule: the bar alone makes it inconclusive (wider than 1% of the gradient), or it is looser
    than RESTEP_BAR rtol and turns a fail without it into a pass with it."""
    magnitude = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), scale)
    with_bar, why = rule(analytic, numeric, error, limit, magnitude)
    without, _ = rule(analytic, numeric, 0.0, limit, magnitude)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(magnitude > 0, error / magnitude, 0.0)
    hides = (without == Verdict.FAIL.value) & (with_bar == Verdict.PASS.value)
    hides &= relative > RESTEP_BAR * rtol
    return np.where((why == "wide") | hides, relative, 0.0)
