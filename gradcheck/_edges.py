"""Differentiate (edges): kinks, jumps, noise, a Taylor-remainder test and complex-step derivatives.

The central difference of ``_engine`` assumes f is smooth across its stencil and the same every
time it is called. This module checks both assumptions from samples, and offers two second
opinions that need no finite-difference step.

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
evaluation path (``gradcheck._batch``): an elementwise f samples all of them in one pass per
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
Such elements are reported as ``refined``. A bar tighter than ``RESTEP_BAR rtol``
already fails a 1e-5 error by itself, so well-scaled checks never pay for this; at most
``RESTEP_MAX_ELEMENTS`` per input (the widest bars first) bounds the cost of the rest.

Nondeterminism
--------------
f is evaluated once more at x. A repeat that differs from the engine's ``f(x)`` means f is not
a function of its inputs alone (dropout, sampling, non-deterministic reductions); f is then
evaluated ``NOISE_SAMPLES`` times in all and ``sigma`` is their standard deviation. Each of the
four stencil values then carries ``NOISE_SIGMAS sigma`` on top of rounding, which bounds the
central estimate's noise by ``NOISE_SIGMAS sigma (2/d_small + 2 r**2/d_big) / (1 - r**2)`` (the
engine's rounding formula with the noise in place of ``eps |f|``). That bound widens the
tolerance; where it exceeds 1% of the gradient the element is inconclusive ("noise"). For
dropout-like functions pass ``rng_seed``: the global RNGs (torch, NumPy, ``random``) are
re-seeded before every evaluation of f, so every evaluation draws the same mask, and their
states are restored afterwards.

Taylor remainder (dolfin-adjoint's ``taylor_test``)
---------------------------------------------------
Along a direction d, ``r(h) = |f(x + h d) - f(x) - h g.d|`` is ``O(h**2)`` when g is the gradient
and ``|h (g - grad f).d| + O(h**2)`` when it is not. h starts at ``TAYLOR_FIRST_STEP`` (d is scaled
by ``max(1, |x_i|)``) and halves until r has sunk into the rounding floor
``2 u + eps |h g.d|`` (below it rounding can fake any order, so the run stops there);
remainders above ``TAYLOR_VALID`` times that floor are *valid*, and the observed order between
consecutive valid halvings is ``log2(r(h) / r(h/2))``. The verdict reads the last
``TAYLOR_TAIL`` valid orders (the smallest steps: the asymptotic regime): fail when all lie
within 0.25 of 1, pass when all are at least 1.75, inconclusive otherwise. A remainder that
stays in the floor while f itself moves clear of it means f is linear along d.

A pass must also vouch for something: the run's *resolution* — the last valid remainder over
its step (a linear term ``|delta.d| h`` that large would have bent the order towards 1), or,
for linear f, the floor over the largest step — must be below 1% of the size of g.d (the
caller's gradient scale; ``|g| |d|`` by default), as for the central difference's error bar.
No step size and no tolerance are chosen by the user.

``check`` runs it on elements the difference check left ``wide`` or ``nonfinite`` (at most
``TAYLOR_MAX_ELEMENTS``), along the element's coordinate both ways: the two runs must agree, or
one must be silent (f NaN on that side, the edge of its domain); opposite verdicts mean f is
not smooth at x, and the element stays inconclusive.

Complex step
------------
For f analytic in each input, ``f(x + i h e_k) = f(x) + i h f'_k - h**2 f''/2 + ...``, so
``Im f(x + i h e_k) / h`` is the derivative with truncation error ``h**2 |f'''| / 6`` and no
subtraction: with ``h = COMPLEX_STEP * max(1, |x_k|)`` the error is rounding only, bounded here
by ``COMPLEX_SAFETY eps max(|d_k|, max_j |d_j|)``. f is *not* complex-safe when it raises on
complex inputs, returns a real dtype (abs, ``.real``, casts), changes its real part under the
tiny imaginary step, or when the complex-step directional derivative along a random direction
disagrees with a real central difference along it (comparisons and abs inside f). Then the
check falls back to central differences and says why.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gradcheck import _arrays, _batch, _engine, _reference
from gradcheck._compare import (
    WIDE_ERROR_BAR,
    InputComparison,
    Nonsmooth,
    Verdict,
    compare,
    decide,
    tolerances,
)

KINK_BAR = 0.5
JUMP_RATIO = 0.25
STEEP_RATIO = 0.75
JUMP_SIGNIFICANCE = 4.0
REFINE_LEVELS = 7
LADDER_PAIRS = 3
LADDER_SAFETY = 4.0
# Fewest ladders that must find f smooth at x before their rounding widens every bar.
ROUNDING_LADDERS = 3
NOISE_SAMPLES = 8
NOISE_SIGMAS = 4.0
TAYLOR_FIRST_STEP = 0.25
TAYLOR_VALID = 32.0
TAYLOR_TAIL = 3
TAYLOR_PASS_ORDER = 1.75
TAYLOR_FAIL_ORDER = 1.25
TAYLOR_MAX_ELEMENTS = 16
RESTEP_FACTOR = 8.0
RESTEP_TRIALS = 4
RESTEP_BAR = 300.0
RESTEP_MAX_ELEMENTS = 64
COMPLEX_STEP = 1e-20
COMPLEX_SAFETY = 64.0

NondeterminismPolicy = Literal["widen", "inconclusive", "ignore"]
Method = Literal["central", "complex"]


# --------------------------------------------------------------------------------------------
# The check's use of all of the below


@dataclass(frozen=True)
class Judgement:
    """What :func:`judge` hands back to ``check``.

    Fields:
        comparisons: one InputComparison per input, edges and second opinions applied.
        noise: what repeating f at x showed.
        taylor: the Taylor tests that decided inconclusive elements.
        reasons: check-level sentences (noise, Taylor budget).
    """

    comparisons: tuple[InputComparison, ...]
    noise: Noise
    taylor: tuple[TaylorResult, ...]
    reasons: tuple[str, ...]


def numerical(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    method: Method,
    central: Callable[[], _engine.GradientEstimate],
    dtype_policy: _engine.DtypePolicy,
    seed: int,
) -> tuple[_engine.GradientEstimate, str, str]:
    """(estimate, method used, why): complex step when asked and safe, else ``central()``."""
    if method not in ("central", "complex"):
        raise ValueError(f"method={method!r} is not one of 'central', 'complex'")
    if method == "complex":
        estimate, why = complex_step_estimate(f, items, dtype_policy, seed)
        if estimate is not None:
            return estimate, "complex", why
        return central(), "central", f"complex step not used: {why}; central differences instead"
    return central(), "central", "central differences (method='central')"


def judge(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    estimate: _engine.GradientEstimate,
    analytic: tuple[np.ndarray, ...],
    rtols: list[float | None],
    atols: list[float | None],
    *,
    nondeterministic: NondeterminismPolicy = "widen",
    taylor: bool = True,
    widen: tuple[np.ndarray | None, ...] | None = None,
) -> Judgement:
    """Noise probe, kink/jump analysis, comparison, then Taylor tests for what is left open.
    ``widen``: per input, the analytic side's own rounding, added to the tolerance."""
    probe = Probe(f, items, evaluation_dtypes(items, estimate), estimate.evaluator)
    noise = probe_noise(probe, estimate.f0, nondeterministic)
    out_eps = _arrays.FLOAT_EPS.get(noise.output_dtype, _arrays.eps("float64"))
    eps_f = max(out_eps, *(_arrays.eps(d) for d in probe.dtypes))
    sigma = noise.sigma if nondeterministic == "widen" or noise.sigma == 0 else math.inf
    # min(|n|, |a|): neither a jump's huge difference quotient nor a wild analytic value
    # should pass for f's sensitivity to its inputs.
    least = [
        np.minimum(np.abs(n), np.abs(a)).reshape(-1)
        for n, a in zip(estimate.values, analytic, strict=True)
    ]
    precision = Precision(eps_f, sigma, sensitivity(least, probe.base))
    comparisons = [
        _compare_input(
            probe,
            k,
            x,
            estimate,
            analytic[k],
            rtols[k],
            atols[k],
            precision,
            None if widen is None else widen[k],
        )
        for k, x in enumerate(items)
    ]
    reasons = _noise_sentences(noise, nondeterministic)
    results: list[TaylorResult] = []
    if taylor and math.isfinite(estimate.f0):
        comparisons, results, skipped = _taylor_decisions(
            probe, comparisons, estimate.f0, precision
        )
        if skipped:
            reasons.append(
                f"{skipped} inconclusive element(s) not Taylor-tested: at most "
                f"{TAYLOR_MAX_ELEMENTS} per check"
            )
    return Judgement(tuple(comparisons), noise, tuple(results), tuple(reasons))


def _compare_input(
    probe: Probe,
    k: int,
    x: Any,
    estimate: _engine.GradientEstimate,
    analytic: np.ndarray,
    rtol: float | None,
    atol: float | None,
    precision: Precision,
    widen: np.ndarray | None = None,
) -> InputComparison:
    numeric, error = estimate.values[k], estimate.errors[k]
    sigma = precision.sigma
    shape = numeric.shape
    stencil = estimate.stencils[k] if estimate.stencils else None
    nonsmooth = None
    rounding_note = None
    if stencil is None:
        z = NOISE_SIGMAS * sigma / np.abs(estimate.steps[k]) if sigma else None
    else:
        z = noise_bar(stencil, sigma).reshape(shape) if sigma else None
        if math.isfinite(sigma):
            edges = analyse_edges(probe, k, stencil, numeric, error, estimate.f0, precision)
            numeric, error = edges.numeric.reshape(shape), edges.error.reshape(shape)
            nonsmooth = edges.nonsmooth
            if edges.widened:  # the other steps below take the measured rounding too
                precision = dataclasses.replace(precision, measured=edges.rounding)
                ratio = edges.rounding / (precision.eps_f * max(abs(estimate.f0), 1e-300))
                refined = int(np.sum(nonsmooth.kind == "refined"))
                rounding_note = (
                    f"f rounds at up to {edges.rounding:.3g} per evaluation ({ratio:.3g}x eps "
                    f"|f|, measured on {refined} refined element(s)): {edges.widened} "
                    "other error bar(s) widened to it"
                )
        if sigma == 0 and nonsmooth is not None:
            dtype = _arrays.dtype_name(x)
            counted = nonsmooth.kind.reshape(shape) != "jump"
            rtol_, atol_, scale = tolerances(numeric, dtype, rtol, atol, counted)
            limit = atol_ + rtol_ * np.abs(numeric)
            decides = _bar_decides(numeric, error, analytic, limit, rtol_, scale)
            numeric, error, kind = restep(
                probe,
                k,
                stencil,
                estimate.f0,
                numeric,
                error,
                nonsmooth.kind,
                decides,
                limit,
                precision,
            )
            nonsmooth = dataclasses.replace(nonsmooth, kind=kind)
    notes: tuple[str, ...] = () if rounding_note is None else (rounding_note,)
    if z is not None and math.isfinite(sigma):
        widest = float(np.max(z, initial=0.0))
        notes += (f"tolerance widened by up to {widest:.3g} for noise in f",)
    return compare(
        k,
        numeric,
        error,
        analytic,
        dtype=_arrays.dtype_name(x),
        rtol=rtol,
        atol=atol,
        noise=z,
        nonsmooth=nonsmooth,
        notes=notes,
        widen=widen,
    )


def _bar_decides(
    numeric: np.ndarray,
    error: np.ndarray,
    analytic: np.ndarray,
    limit: np.ndarray,
    rtol: float,
    scale: float,
) -> np.ndarray:
    """How much the error bar decides each element's verdict (0: not at all), see ``restep``:
    the bar is wider than 1% of the gradient, or it is looser than RESTEP_BAR rtol and the
    analytic value is out of tolerance without it but inside with it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(analytic - numeric)
        magnitude = np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), scale)
        relative = np.where(magnitude > 0, error / magnitude, 0.0)
        wide = relative > WIDE_ERROR_BAR
        hides = (gap > limit) & (gap <= limit + error) & (relative > RESTEP_BAR * rtol)
    return np.where(wide | hides, relative, 0.0)


def _noise_sentences(noise: Noise, policy: NondeterminismPolicy) -> list[str]:
    if noise.sigma == 0:
        return []
    what = (
        "the tolerance is widened by its noise bar"
        if policy == "widen"
        else "nondeterministic='inconclusive' was asked"
    )
    return [
        f"f is nondeterministic: {noise.samples} evaluations at x scatter with standard "
        f"deviation {noise.sigma:.3g}; {what}. If f draws random numbers (dropout), pass "
        "rng_seed= to re-seed the RNGs before every evaluation"
    ]


def _taylor_decisions(
    probe: Probe, comparisons: list[InputComparison], f0: float, precision: Precision
) -> tuple[list[InputComparison], list[TaylorResult], int]:
    """Decide elements left 'wide' or 'nonfinite' by Taylor tests along their coordinate."""
    results: list[TaylorResult] = []
    skipped = tested = 0
    out = []
    for k, c in enumerate(comparisons):
        open_ = np.flatnonzero(np.isin(c.element_reasons.reshape(-1), ["wide", "nonfinite"]))
        chosen = [int(i) for i in open_[: max(0, TAYLOR_MAX_ELEMENTS - tested)]]
        skipped += len(open_) - len(chosen)
        tested += len(chosen)
        numeric, analytic = c.numeric.reshape(-1), c.analytic.reshape(-1)
        judged = np.isfinite(numeric) & (c.element_reasons.reshape(-1) != "jump")
        scale = float(np.max(np.abs(numeric[judged]), initial=0.0))
        mine = [
            taylor_element(
                probe,
                k,
                i,
                float(analytic[i]),
                max(abs(float(numeric[i])) if judged[i] else 0.0, abs(float(analytic[i])), scale),
                f0,
                precision,
            )
            for i in chosen
        ]
        results.extend(run for pair in mine for run in pair)
        allowance = (c.tolerance - c.error_estimate).reshape(-1)
        verdicts = [
            _within_allowance(both_sides(*pair), pair, probe.base[k][i], allowance[i])
            for i, pair in zip(chosen, mine, strict=True)
        ]
        out.append(decide(c, chosen, verdicts, "taylor") if chosen else c)
    return out, results, skipped


def _within_allowance(
    verdict: Verdict, runs: tuple[TaylorResult, TaylorResult], x: float, allowance: float
) -> Verdict:
    """A Taylor fail measures the gradient's error: the order-1 remainder is ``|delta| size h``
    along ``d = size e_i``. An error within the tolerance the difference check allows without
    its step error (atol + rtol |n|, noise, the analytic side's own rounding) is a pass: the
    gradient is as right as asked, e.g. float32 backprop through an ill-conditioned f."""
    if verdict is not Verdict.FAIL:
        return verdict
    size = max(1.0, abs(float(x)))
    implied = max(_implied_error(run) / size for run in runs if run.verdict is Verdict.FAIL)
    return Verdict.PASS if implied <= allowance else verdict


def _implied_error(run: TaylorResult) -> float:
    """|g.d - true g.d| from the order-1 remainder at the smallest step clear of rounding."""
    valid = [(h, r) for h, r, ok in zip(run.steps, run.remainders, run.valid, strict=True) if ok]
    if not valid:
        return math.inf
    h, remainder = valid[-1]
    return remainder / h


# --------------------------------------------------------------------------------------------
# Evaluating f at chosen points, in the dtypes the engine used


def evaluation_dtypes(items: tuple[Any, ...], estimate: _engine.GradientEstimate) -> list[str]:
    """The dtype each input was differentiated in: float64 when promoted, else its own."""
    if estimate.policy == "promoted":
        return ["float64"] * len(items)
    return [_arrays.dtype_name(x) for x in items]


class Probe:
    """f at the check's point, in fixed evaluation dtypes, with chosen elements moved.

    Private working copies are perturbed and restored; the caller's inputs are never touched.
    """

    def __init__(
        self,
        f: Callable[..., Any],
        items: tuple[Any, ...],
        dtypes: list[str],
        evaluator: _batch.Evaluator | None = None,
    ) -> None:
        self.f = f
        self.dtypes = dtypes
        self.buffers = [_arrays.working_copy(x, d) for x, d in zip(items, dtypes, strict=True)]
        self.base = [
            _arrays.values_in(d, x).astype(np.float64) for x, d in zip(items, dtypes, strict=True)
        ]
        self.calls = 0
        # Many points at once go through the engine's path (same f and dtypes), so an
        # elementwise or vmap-able f is not called one point at a time; without one, the loop.
        self.evaluator = evaluator or _batch.Evaluator(f, self.buffers, "loop", "one call a point")

    def at_base(self) -> tuple[float, str]:
        """f at the unperturbed point and the dtype f returned."""
        self.calls += 1
        out = self.f(*self.buffers)
        return _engine._finite_or_nan(out), _arrays.output_dtype(out)

    def moved(self, k: int, i: int, value: float) -> float:
        """f with flat element i of input k set to value (NaN where f is not finite)."""
        self.calls += 1
        try:
            _arrays.set_flat(self.buffers[k], i, value)
            return _engine._finite_or_nan(self.f(*self.buffers))
        finally:
            _arrays.set_flat(self.buffers[k], i, float(self.base[k][i]))

    def many(
        self, k: int, elements: np.ndarray, points: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """f with flat element ``elements[r]`` of input k set to ``points[r, j]`` where
        ``valid[r, j]`` (NaN elsewhere, not evaluated); through the engine's path when there
        is one, else one call per point, element by element."""
        self.calls += int(np.count_nonzero(valid))
        return self.evaluator.at_some(k, self.base[k], elements, points, valid)

    def shifted(self, values: list[np.ndarray]) -> float:
        """f with every input replaced by the given flat values (already in their dtypes)."""
        self.calls += 1
        moved = [_filled(b, v) for b, v in zip(self.buffers, values, strict=True)]
        return _engine._finite_or_nan(self.f(*moved))

    def rounded(self, k: int, values: np.ndarray) -> np.ndarray:
        return _arrays.rounded(self.dtypes[k], values)

    def stepped(self, direction: list[np.ndarray], h: float) -> list[np.ndarray]:
        """The realised points ``fl(x + h d)`` per input, flat, in the evaluation dtypes."""
        return [
            self.rounded(k, b + h * d)
            for k, (b, d) in enumerate(zip(self.base, direction, strict=True))
        ]


def _filled(buffer: Any, values: np.ndarray) -> Any:
    """A copy of a working buffer holding the given flat values."""
    if _arrays.is_torch(buffer):
        import torch

        out = buffer.clone()
        out.view(-1).copy_(torch.as_tensor(values, dtype=out.dtype))
        return out
    out_np = np.array(buffer, copy=True)
    out_np.reshape(-1)[:] = values
    return out_np


@dataclass(frozen=True)
class Precision:
    """How far one evaluation of f may be off.

    Fields:
        eps_f: unit roundoff of the dtypes f is evaluated and returns in.
        sigma: the noise f showed over repeated evaluations at x (0.0: repeatable).
        sensitivity: ``sum_i |g_i x_i|``. A backward-stable f computes f(x) exactly for inputs
            off by ``eps |x_i|``, so its rounding is about ``eps sum_i |g_i x_i|``, which can
            dwarf ``eps |f|`` when f cancels (``sin(1e5 x)`` at 0.1, a sum of large terms).
    """

    eps_f: float
    sigma: float = 0.0
    sensitivity: float = 0.0
    measured: float = 0.0  # the rounding the ladders measured (module doc); 0.0: none

    def unit(self, f_mag: np.ndarray | float) -> np.ndarray:
        """u = max(ROUNDING_SAFETY eps_f (|f| + sensitivity), measured) + NOISE_SIGMAS sigma."""
        rounding = _engine.ROUNDING_SAFETY * self.eps_f * (np.abs(f_mag) + self.sensitivity)
        return np.asarray(np.maximum(rounding, self.measured) + NOISE_SIGMAS * self.sigma)


def sensitivity(gradients: list[np.ndarray], bases: list[np.ndarray]) -> float:
    """``sum_i |g_i x_i|`` over the finite entries (see :class:`Precision`)."""
    total = 0.0
    for g, x in zip(gradients, bases, strict=True):
        terms = np.abs(g.reshape(-1) * x.reshape(-1))
        total += float(np.sum(terms[np.isfinite(terms)]))
    return total


# --------------------------------------------------------------------------------------------
# Nondeterminism


@dataclass(frozen=True)
class Noise:
    """What repeating f at x showed.

    Fields:
        sigma: standard deviation of f at x over ``samples`` evaluations (0.0: repeatable).
        samples: evaluations of f at x that went into sigma.
        output_dtype: the dtype f returned.
    """

    sigma: float
    samples: int
    output_dtype: str


def probe_noise(probe: Probe, f0: float, policy: NondeterminismPolicy) -> Noise:
    """Evaluate f at x again; if it differs from f0, estimate sigma from NOISE_SAMPLES values."""
    if policy not in ("widen", "inconclusive", "ignore"):
        raise ValueError(
            f"nondeterministic={policy!r} is not one of 'widen', 'inconclusive', 'ignore'"
        )
    again, out_dtype = probe.at_base()
    if policy == "ignore" or again == f0 or not (math.isfinite(again) or math.isfinite(f0)):
        return Noise(0.0, 2, out_dtype)
    values = [f0, again] + [probe.at_base()[0] for _ in range(NOISE_SAMPLES - 2)]
    finite = np.array([v for v in values if math.isfinite(v)])
    sigma = float(np.std(finite, ddof=1)) if finite.size > 1 else math.inf
    return Noise(sigma if sigma > 0 else math.inf, len(values), out_dtype)


def noise_bar(stencil: _engine.Stencil, sigma: float) -> np.ndarray:
    """NOISE_SIGMAS sigma propagated through the engine's Richardson formula, per element."""
    if sigma == 0:
        return np.zeros_like(stencil.x)
    return np.asarray(NOISE_SIGMAS * sigma * _kappa(stencil)[2])


def reseed(seed: int) -> None:
    """Seed the global RNGs a dropout-like f may draw from: random, NumPy, torch (if loaded)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def seeded(f: Callable[..., Any], seed: int) -> Callable[..., Any]:
    """f with the global RNGs re-seeded before every call, so every call draws the same; the
    caller's RNG states are restored after each call."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"rng_seed must be a non-negative integer, got {seed!r}; pass e.g. rng_seed=0"
        )

    def reseeded(*args: Any) -> Any:
        with preserved_rng_state():
            reseed(seed)
            return f(*args)

    return reseeded


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Restore the global RNG states on exit: seeding inside a check must not leak out."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)


# --------------------------------------------------------------------------------------------
# Kinks and jumps


@dataclass(frozen=True)
class EdgeAnalysis:
    """One input's elements after the kink/jump analysis, flat.

    Fields:
        numeric, error: the estimate to judge by (the fine stencil's where refined).
        nonsmooth: kind per element ('', 'refined', 'kink', 'jump') with the one-sided
            derivatives and their error bars (see :class:`gradcheck._compare.Nonsmooth`).
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


def _steep(rise_full: np.ndarray, rise_half: np.ndarray, u: np.ndarray) -> np.ndarray:
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
    flagged |= _steep(s.f_plus - f0, s.f_plus_half - f0, u)
    flagged |= _steep(f0 - s.f_minus, f0 - s.f_minus_half, u)
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
    d1, d2, kappa = _kappa(s)
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
    values = probe.many(k, elements, points, valid)
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
    n_fine, e_fine, _ = _central(fine, u_eff)
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


def restep(
    probe: Probe,
    k: int,
    s: _engine.Stencil,
    f0: float,
    numeric: np.ndarray,
    error: np.ndarray,
    kind: np.ndarray,
    decides: np.ndarray,
    limit: np.ndarray,
    precision: Precision,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Another step for smooth elements whose verdict their error bar decides (``decides``:
    how much, 0 for not at all; the RESTEP_MAX_ELEMENTS most decided ones; module doc)."""
    shape = numeric.shape
    numeric, error = numeric.reshape(-1).copy(), error.reshape(-1).copy()
    limit = limit.reshape(-1)
    kind = np.asarray(kind, dtype=object).reshape(-1).copy()
    d1, d2, _ = _kappa(s)
    severity = np.where((kind == "") & np.isfinite(error), decides.reshape(-1), 0.0)
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
            probe, k, idx, s.x[idx], h[active] * factor[active] ** trial, f0, precision
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
        derivative, bar, _ = _central(stencil, u)
        left, right, left_err, right_err = one_sided(stencil, f0, u)
        rough = disagree(left, right, bar + left_err + right_err)
        rough |= _steep(stencil.f_plus - f0, stencil.f_plus_half - f0, u)
        rough |= _steep(f0 - stencil.f_minus, f0 - stencil.f_minus_half, u)
    smooth = np.all(np.isfinite(values), axis=1) & ~rough
    return np.where(smooth, derivative, np.nan), np.where(smooth, bar, np.nan)


Rung = tuple[float, float, float, float]  # (x + t, x - t, f(x + t), f(x - t)), realised


def _pair(x: float, big: Rung, small: Rung) -> _engine.Stencil:
    """Two rungs of the ladder as a one-element stencil (x +- t and x +- t/2)."""
    return _engine.Stencil(
        *(np.array([v]) for v in (x, big[0], big[1], small[0], small[1], *big[2:], *small[2:]))
    )


def _kappa(s: _engine.Stencil) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D1, D2, kappa): the two central differences and the sum of the absolute weights of
    the four f values in the Richardson estimate (how one evaluation's error propagates)."""
    d_big = s.x_plus - s.x_minus
    d_small = s.x_plus_half - s.x_minus_half
    r2 = (d_small / d_big) ** 2
    kappa = (2 / d_small + 2 * r2 / d_big) / (1 - r2)
    return (s.f_plus - s.f_minus) / d_big, (s.f_plus_half - s.f_minus_half) / d_small, kappa


def _central(s: _engine.Stencil, u: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The engine's Richardson estimate, its error bar with per-evaluation uncertainty u, and
    kappa (see ``_engine``: the same formula, with u in place of ROUNDING_SAFETY eps |f|)."""
    d1, d2, kappa = _kappa(s)
    r2 = ((s.x_plus_half - s.x_minus_half) / (s.x_plus - s.x_minus)) ** 2
    derivative = (d2 - r2 * d1) / (1 - r2)
    return derivative, np.abs(d1 - d2) + u * kappa, kappa


def _ladder_noise(pairs: list[_engine.Stencil]) -> float:
    """The per-evaluation error f really shows on the ladder: Richardson estimates of
    neighbouring rungs differ by O(t**4) for smooth f (and by nothing at a kink at x), so
    their scatter is rounding, cancellation inside f included, that ``eps |f|`` misses."""
    estimates = [_central(p, 0.0) for p in pairs[-(LADDER_PAIRS + 1) :]]
    return max(
        (
            float(abs(a[0][0] - b[0][0]) / (a[2][0] + b[2][0]))
            for a, b in itertools.pairwise(estimates)
        ),
        default=0.0,
    )


# --------------------------------------------------------------------------------------------
# Taylor remainder


@dataclass(frozen=True)
class TaylorResult:
    """The Taylor-remainder test along one direction.

    Fields:
        verdict: pass (order ~2 or remainder at roundoff), fail (order ~1), inconclusive.
        order: the median of the last TAYLOR_TAIL valid observed orders (NaN if none).
        steps: the h of each evaluation, halving.
        remainders: ``|f(x + h d) - f(x) - h g.d|`` per step (should shrink at order 2).
        first_order_remainders: ``|f(x + h d) - f(x)|`` per step (shrinks at order 1).
        orders: observed order between each step and the previous one (NaN where either
            remainder is below TAYLOR_VALID times the rounding floor, or not finite).
        valid: per step, whether the remainder stood clear of the rounding floor.
        directional_derivative: ``g.d`` for the analytic gradient g.
        reason: one sentence on how the verdict was reached.
        evaluations: calls of f.
        label: what was tested ('input 0, element 3', 'random direction, seed 0', ...).
        resolution: the smallest error in g.d this run could have seen; a pass needs it
            below 1% of the reference size of g.d.
    """

    verdict: Verdict
    order: float
    steps: tuple[float, ...]
    remainders: tuple[float, ...]
    first_order_remainders: tuple[float, ...]
    orders: tuple[float, ...]
    valid: tuple[bool, ...]
    directional_derivative: float
    reason: str
    evaluations: int
    label: str = ""
    resolution: float = math.nan

    def table(self) -> str:
        """The remainders and orders as a small text table, one row per step."""
        from tabulate import tabulate

        rows = zip(
            self.steps,
            self.first_order_remainders,
            self.remainders,
            self.orders,
            self.valid,
            strict=True,
        )
        headers = ["h", "|f(x+hd)-f(x)|", "|f(x+hd)-f(x)-h g.d|", "order", "valid"]
        return tabulate(list(rows), headers=headers, floatfmt=".4g")


def taylor_remainders(
    probe: Probe,
    f0: float,
    grads: list[np.ndarray],
    direction: list[np.ndarray],
    precision: Precision,
    label: str = "",
    reference: float | None = None,
) -> TaylorResult:
    """Run the halving sequence along ``direction`` (flat, per input) and read the orders.

    ``reference`` is the size of a directional derivative the caller cares about (default
    ``|g| |d|``); a pass needs the test to have been able to see an error of 1% of it.
    """
    start = probe.calls
    steps: list[float] = []
    rem: list[float] = []
    rem1: list[float] = []
    floors: list[float] = []
    slope = sum(float(np.dot(g, d)) for g, d in zip(grads, direction, strict=True))
    h = TAYLOR_FIRST_STEP
    while h >= precision.eps_f:
        moved = probe.stepped(direction, h)
        realised = [m - b for m, b in zip(moved, probe.base, strict=True)]
        if all(not np.any(r) for r in realised):
            break
        linear = sum(float(np.dot(g, r)) for g, r in zip(grads, realised, strict=True))
        f_h = probe.shifted(moved)
        floor = 2 * float(precision.unit(max(abs(f0), abs(f_h))))
        steps.append(h)
        floors.append(floor + _arrays.eps("float64") * abs(linear))
        rem.append(abs(f_h - f0 - linear))
        rem1.append(abs(f_h - f0))
        if _exhausted(rem, rem1, floors):
            break
        h /= 2
    valid = [_clear(r, fl) for r, fl in zip(rem, floors, strict=True)]
    orders = [math.nan] + [
        math.log2(rem[j - 1] / rem[j]) if valid[j - 1] and valid[j] else math.nan
        for j in range(1, len(rem))
    ]
    if reference is None:
        reference = math.sqrt(sum(float(np.dot(g, g)) for g in grads))
        reference *= math.sqrt(sum(float(np.dot(d, d)) for d in direction))
    resolution = _resolution(steps, rem, rem1, floors, valid)
    verdict, order, reason = _read_orders(orders, valid, resolution, reference)
    return TaylorResult(
        verdict=verdict,
        order=order,
        steps=tuple(steps),
        remainders=tuple(rem),
        first_order_remainders=tuple(rem1),
        orders=tuple(orders),
        valid=tuple(valid),
        directional_derivative=slope,
        reason=reason,
        evaluations=probe.calls - start,
        label=label,
        resolution=resolution,
    )


def _clear(remainder: float, floor: float) -> bool:
    """A remainder far enough above the rounding floor for its order to mean something."""
    return math.isfinite(remainder) and remainder > TAYLOR_VALID * floor


def _exhausted(rem: list[float], rem1: list[float], floors: list[float]) -> bool:
    """Smaller steps can teach nothing more: the last TAYLOR_TAIL remainders sank into the
    rounding floor after earlier ones stood clear of it (the asymptotic regime is over), or
    they stayed in it while f itself moved clear (f is linear along d: the resolution only
    worsens as h shrinks). Below the floor, rounding inside f can fake "valid" remainders."""
    if len(rem) <= TAYLOR_TAIL:
        return False
    valid = [_clear(r, fl) for r, fl in zip(rem, floors, strict=True)]
    if any(valid[-TAYLOR_TAIL:]):
        return False
    moved = [_clear(r1, fl) for r1, fl in zip(rem1, floors, strict=True)][-TAYLOR_TAIL:]
    return any(valid) or all(moved)


def _resolution(
    steps: list[float],
    rem: list[float],
    rem1: list[float],
    floors: list[float],
    valid: list[bool],
) -> float:
    """The smallest error in g.d the run could have seen (an upper bound on a missed one).

    With valid remainders: the last one over its step (a linear term ``|delta.d| h`` that large
    would have pulled the observed order towards 1). Without: the floor over the largest step
    at which f itself moved clear of the floor while the remainder stayed in it.
    """
    last = [k for k, ok in enumerate(valid) if ok]
    if last:
        return rem[last[-1]] / steps[last[-1]]
    moved = [
        TAYLOR_VALID * fl / h
        for h, r1, fl in zip(steps, rem1, floors, strict=True)
        if _clear(r1, fl)
    ]
    return min(moved, default=math.inf)


def _read_orders(
    orders: list[float], valid: list[bool], resolution: float, reference: float
) -> tuple[Verdict, float, str]:
    """The verdict from the asymptotic (smallest-step) observed orders."""
    seen = [o for o in orders if math.isfinite(o)]
    blind = not resolution <= WIDE_ERROR_BAR * reference
    sees = f"it can only see errors in g.d above {resolution:.3g} (|g.d| scale {reference:.3g})"
    if not any(valid):
        if blind:
            return Verdict.INCONCLUSIVE, math.nan, f"no remainder clears the rounding floor; {sees}"
        return (
            Verdict.PASS,
            math.nan,
            "the remainder stays at the rounding floor while f moves: f is linear along d and "
            f"g.d agrees with it to {resolution:.3g}",
        )
    if not seen:
        return Verdict.INCONCLUSIVE, math.nan, "too few remainders above the rounding floor"
    tail = seen[-TAYLOR_TAIL:]
    order = float(np.median(tail))
    if len(tail) == TAYLOR_TAIL and all(abs(o - 1) <= TAYLOR_FAIL_ORDER - 1 for o in tail):
        return (
            Verdict.FAIL,
            order,
            f"the remainder shrinks at order {order:.2f}, not 2: the gradient is wrong along d",
        )
    second = len(tail) == TAYLOR_TAIL and all(o >= TAYLOR_PASS_ORDER for o in tail)
    if second and not blind:
        return Verdict.PASS, order, f"the remainder shrinks at order {order:.2f} (2 expected)"
    if second:
        return Verdict.INCONCLUSIVE, order, f"order {order:.2f}, but {sees}"
    return (
        Verdict.INCONCLUSIVE,
        order,
        f"the last {len(tail)} observed orders ({', '.join(f'{o:.2f}' for o in tail)}) "
        "are neither all about 1 nor all about 2 or more",
    )


def taylor_test(
    f: Callable[..., Any],
    inputs: Any,
    grad: Any = None,
    *,
    direction: Any = None,
    seed: int = 0,
    dtype_policy: _engine.DtypePolicy = "auto",
    rng_seed: int | None = None,
) -> TaylorResult:
    """A second opinion that needs no step and no tolerance: the Taylor remainder along d.

    ``|f(x + h d) - f(x) - h grad.d|`` must shrink at order 2 as h halves (dolfin-adjoint's
    ``taylor_test``); order 1 means the gradient is wrong along d. See ``gradcheck._edges``.

    Args:
        f: a function returning a scalar (reduce a non-scalar output first, e.g.
            ``lambda x: (v * f(x)).sum()``).
        inputs: one array/tensor/float, or a tuple of them (f is called as ``f(*inputs)``).
        grad: None for torch autograd, a callable hand formula, or a gradient source.
        direction: d, shaped like the input (a tuple for several inputs). By default a seeded
            normal direction scaled by ``max(1, |x|)`` per element.
        seed: seeds the default direction.
        dtype_policy: as for :func:`gradcheck.check`.
        rng_seed: re-seed the global RNGs before every evaluation (dropout-like f).
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}: pass the function itself")
    items, _ = _engine.as_input_tuple(inputs)
    counted = _engine.CountingFunction(f if rng_seed is None else seeded(f, rng_seed))
    dtypes, _policy, _why, f0, out_dtype = _engine._choose_policy(counted, items, dtype_policy)
    grads = _reference.resolve_source(grad).gradients(counted, items, None)
    probe = Probe(counted, items, dtypes)
    d = _direction(direction, items, probe, seed)
    eps_f = max(_arrays.eps(out_dtype), *(_arrays.eps(t) for t in dtypes))
    flat = [g.reshape(-1) for g in grads]
    precision = Precision(eps_f, 0.0, sensitivity(flat, probe.base))
    label = "given direction" if direction is not None else f"random direction, seed {seed}"
    return taylor_remainders(probe, f0, flat, d, precision, label=label)


def _direction(direction: Any, items: tuple[Any, ...], probe: Probe, seed: int) -> list[np.ndarray]:
    if direction is None:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(b.shape) * np.maximum(1.0, np.abs(b)) for b in probe.base]
    given = direction if isinstance(direction, (tuple, list)) else (direction,)
    if len(given) != len(items):
        raise ValueError(
            f"direction has {len(given)} part(s) for {len(items)} input(s); give one per input"
        )
    out = []
    for position, (d, x) in enumerate(zip(given, items, strict=True)):
        dv = _arrays.to_numpy64(d)
        if dv.shape != _arrays.output_shape(x):
            raise ValueError(
                f"direction {position} has shape {dv.shape} but input {position} has shape "
                f"{_arrays.output_shape(x)}; give a direction shaped like its input"
            )
        out.append(dv.reshape(-1))
    return out


def taylor_element(
    probe: Probe,
    k: int,
    i: int,
    analytic: float,
    magnitude: float,
    f0: float,
    precision: Precision,
) -> tuple[TaylorResult, TaylorResult]:
    """The Taylor test along one coordinate, both ways: ``d = +-max(1, |x_i|) e_i`` of input
    k; a pass needs it to see a 1% error of ``magnitude`` (the gradient's size)."""
    grads = [np.zeros_like(b) for b in probe.base]
    grads[k][i] = analytic
    size = max(1.0, abs(float(probe.base[k][i])))
    runs = []
    for sign, way in ((1.0, "+"), (-1.0, "-")):
        direction = [np.zeros_like(b) for b in probe.base]
        direction[k][i] = sign * size
        label = f"input {k}, element {i}, {way}"
        runs.append(
            taylor_remainders(probe, f0, grads, direction, precision, label, magnitude * size)
        )
    return runs[0], runs[1]


def both_sides(plus: TaylorResult, minus: TaylorResult) -> Verdict:
    """One verdict from the two one-sided runs: they must agree, or one must be silent (f is
    NaN on that side: the edge of its domain). Opposite verdicts mean f is not smooth at x."""
    verdicts = {plus.verdict, minus.verdict}
    if verdicts == {Verdict.PASS, Verdict.FAIL}:
        return Verdict.INCONCLUSIVE
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.PASS if Verdict.PASS in verdicts else Verdict.INCONCLUSIVE


# --------------------------------------------------------------------------------------------
# Complex step


def complex_step_estimate(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    dtype_policy: _engine.DtypePolicy,
    seed: int,
) -> tuple[_engine.GradientEstimate | None, str]:
    """The complex-step gradient and why it can be trusted, or None and why it cannot."""
    start = f.calls
    dtypes, policy, policy_reason, f0, _ = _engine._choose_policy(f, items, dtype_policy)
    buffers = [_complex_copy(x) for x in items]
    try:
        out = f(*buffers)
    except Exception as exc:  # any failure on complex inputs means: not complex-safe
        return None, f"f raised {type(exc).__name__} on complex inputs"
    out_dtype = _arrays.dtype_name(out) if hasattr(out, "dtype") else type(out).__name__
    if "complex" not in out_dtype:
        return None, f"f returned {out_dtype} for complex inputs (abs, .real or a cast inside f)"
    eps = _arrays.eps("float32" if out_dtype == "complex64" else "float64")
    values, steps, shifts = [], [], []
    for k, x in enumerate(items):
        base = _arrays.to_numpy64(x).reshape(-1)
        h = COMPLEX_STEP * np.maximum(1.0, np.abs(base))
        derivative, real_part = np.empty_like(base), np.empty_like(base)
        for i in range(base.size):
            try:
                _set_complex(buffers[k], i, complex(base[i], h[i]))
                z = complex(_complex_scalar(f(*buffers)))
            finally:
                _set_complex(buffers[k], i, complex(base[i], 0.0))
            derivative[i], real_part[i] = z.imag / h[i], z.real
        values.append(derivative)
        steps.append(h)
        shifts.append(np.abs(real_part - f0))
    problem = _complex_problem(f, items, dtypes, f0, values, shifts, eps, seed)
    if problem:
        return None, problem
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in values)
    shapes = [_arrays.output_shape(x) if not isinstance(x, float) else () for x in items]
    estimate = _engine.GradientEstimate(
        values=tuple(v.reshape(s) for v, s in zip(values, shapes, strict=True)),
        errors=tuple(
            (COMPLEX_SAFETY * eps * np.maximum(np.abs(v), scale)).reshape(s)
            for v, s in zip(values, shapes, strict=True)
        ),
        steps=tuple(h.reshape(s) for h, s in zip(steps, shapes, strict=True)),
        f0=f0,
        evaluation_dtype=out_dtype,
        policy=policy,
        policy_reason=policy_reason,
        evaluations=f.calls - start,
        stencils=(),
    )
    return estimate, "f is complex-safe: complex-step derivatives, no subtraction"


def _complex_problem(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    dtypes: list[str],
    f0: float,
    values: list[np.ndarray],
    shifts: list[np.ndarray],
    eps: float,
    seed: int,
) -> str:
    """Why the complex-step values cannot be trusted; '' when they pass both checks."""
    allowed = 1e3 * eps * max(1.0, abs(f0))
    if any(np.any(~(s <= allowed)) for s in shifts):
        return "the real part of f moved under a tiny imaginary step: f is not complex-analytic"
    rng = np.random.default_rng(seed)
    probe = Probe(f, items, dtypes)
    direction = [rng.choice([-1.0, 1.0], b.shape) * np.maximum(1.0, np.abs(b)) for b in probe.base]

    def along(t: float) -> float:
        return probe.shifted(probe.stepped(direction, t))

    real = _engine.estimate_gradient(along, 0.0)
    expected = sum(float(np.dot(v, d)) for v, d in zip(values, direction, strict=True))
    got, error = float(real.values[0]), float(real.errors[0])
    tolerance = error + math.sqrt(_arrays.eps("float64")) * max(abs(got), abs(expected))
    if not abs(got - expected) <= tolerance:
        return (
            f"complex step gives {expected:.6g} along a random direction but a real central "
            f"difference gives {got:.6g} +- {error:.2g}: f is not complex-analytic "
            "(abs, max, comparisons inside f?)"
        )
    return ""


def _complex_copy(x: Any) -> Any:
    if _arrays.is_torch(x):
        import torch

        return x.detach().to(dtype=torch.complex128).clone().contiguous()
    return np.array(x, dtype=np.complex128, copy=True, order="C", ndmin=0)


def _set_complex(buffer: Any, index: int, value: complex) -> None:
    if _arrays.is_torch(buffer):
        buffer.view(-1)[index] = value
    else:
        buffer.reshape(-1)[index] = value


def _complex_scalar(out: Any) -> complex:
    if _arrays.is_torch(out) or isinstance(out, (np.ndarray, np.generic)):
        size = out.numel() if _arrays.is_torch(out) else out.size
        if size != 1:
            raise ValueError(f"f returned shape {_arrays.output_shape(out)}; expected a scalar")
        return complex(out.item())
    return complex(out)
