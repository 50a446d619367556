"""Compare (the judging loop): differentiate at one level, judge, refine only what is undecided.

A pass needs no error bar; a fail or an inconclusive does. So the loop spends evaluations only
where a verdict needs them:

1. **f at x**, in the evaluation dtypes (``_engine.prepare``; ``check``'s first call, which finds
   f's output shape, is that evaluation for float64 inputs), and **once more** to see whether f
   is a function of its inputs alone (``_noise``).
2. **Level 1, every element**: one central difference at the step rule's h,
   ``D1 = (f(x + h) - f(x - h)) / (x_plus - x_minus)`` (2 evaluations an element). An element
   whose analytic value lies within ``atol + rtol |D1|`` of it (plus the analytic side's own
   rounding where measured) **passes** by the verdict rule (``_compare.rule``) with no bar: a
   wrong analytic value could pass only by equalling the truncated numerical value, and the
   truncation ``h**2 |f'''| / 6`` at ``h ~ eps**(1/3)`` is of the order of ``eps**(2/3)``
   relative, far inside the default ``rtol = sqrt(eps)``.
3. **Level 2, the rest** (every element when f is nondeterministic: the noise bar needs the full
   stencil): f at ``x +- h/2`` (2 more evaluations each), the Richardson value and its error bar
   (``_engine``), then kinks and jumps (``_kinks``) and another step where the bar decides the
   verdict (``_restep``); judged by the same rule, now with the bar.
4. **Taylor tests** for the elements left with a bar wider than 1% or NaN in the stencil
   (``_taylor``).

Cost, per input of n elements: a right gradient 2n, plus f at x, its repeat, and the gradient
source's own calls; a wrong one 2n plus 2 per element level 1 did not pass, ``ROUNDING_POINTS``
(16) once to measure f's rounding near x (``_engine.rounding_near``: the bars, the kink and
jump tests and the Taylor floor then use the measured rounding where it is larger than the one
modelled from ``|f|``), plus the refinements of those: up to ``2 * REFINE_LEVELS`` for a ladder
where the stencil is not smooth, 4 per re-stepping trial (at most ``RESTEP_TRIALS`` for
``RESTEP_MAX_ELEMENTS`` elements), and about a dozen per Taylor run (two runs an element, at
most ``TAYLOR_MAX_ELEMENTS`` elements a check).
With ``method='complex'`` the complex-step values (``_complex``) are judged with their bars
directly: there is no stencil to refine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck._judge import complex as _complex
from gradcheck._judge import kinks as _kinks
from gradcheck._judge import restep as _restep
from gradcheck._judge import taylor as _taylor
from gradcheck._judge import tolerance as _precision
from gradcheck._judge.compare import compare, never_fail
from gradcheck._judge.options import Options
from gradcheck._judge.tolerance import OwnRounding, Widening, limit_of, tolerances, widened
from gradcheck._judge.verdict import InputComparison, Nonsmooth, Verdict, rule
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import noise as _noise
from gradcheck._numerics.probe import NOISE_SIGMAS, Precision, Probe, evaluation_dtypes, sensitivity


@dataclass(frozen=True)
class Judgement:
    """What the loop hands back to ``check``.

    Fields:
        comparisons: one InputComparison per input.
        numerics: how the numerical side ran (dtypes, path, method, cost per level).
        noise: what repeating f at x showed.
        taylor: the Taylor tests that decided elements the stencil left open.
        reasons: check-level sentences (noise, Taylor budget).
        f0: f at the inputs.
    """

    comparisons: tuple[InputComparison, ...]
    numerics: Numerics
    noise: _noise.Noise
    taylor: tuple[_taylor.TaylorResult, ...]
    reasons: tuple[str, ...]
    f0: float


@dataclass(frozen=True)
class Numerics:
    """How the numerical side of a check ran.

    Fields:
        policy: 'promoted' (float32 differentiated in float64) or 'native'.
        policy_reason: why that policy.
        evaluation_dtype: the dtype f was evaluated in ('mixed' when inputs differ).
        method: 'central' or 'complex', the one that ran.
        method_reason: why (a complex step falls back to central when f is not complex-safe).
        path: how perturbed points were evaluated: 'separable', 'batched' or 'loop'
            (``gradcheck._numerics.evaluate``).
        path_reason: why that path.
        refined: per input, how many elements the first level left undecided (each got the
            second level's error bar and whatever refinement it needed); 0 for an input the
            loop did not judge (screened, or checked by complex step).
        source: the analytic side's name ('autograd', the formula's name, ...).
        mode: 'full', 'screen' or 'mixed' (``CheckResult.mode``).
        cotangent: the cotangent used for a non-scalar f, else None.
        noise_floor: the standard deviation of f over repeated evaluations at x (0.0 when
            repeatable).
    """

    policy: str
    policy_reason: str
    evaluation_dtype: str
    method: str = "central"
    method_reason: str = ""
    path: str = "loop"
    path_reason: str = ""
    refined: tuple[int, ...] = ()
    source: str = ""
    mode: str = "full"
    cotangent: np.ndarray | None = field(default=None, repr=False, compare=False)
    noise_floor: float = 0.0


def judge(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    analytic: tuple[np.ndarray, ...],
    widening: Callable[[str], Widening],
    options: Options,
    native_f0: tuple[float, str] | None = None,
    inputs: frozenset[int] | None = None,
) -> Judgement:
    """The loop of the module docstring. ``widening(policy)``: per input, the analytic side's
    own rounding (added to the tolerance), once the dtype policy is known. ``inputs``: the
    positions to judge (None: all; the screen takes the others, ``check``'s mode per input);
    the comparisons are theirs, in order."""
    by_complex_step, why_not_complex = _complex_step(f, items, analytic, widening, options)
    if by_complex_step is not None:
        return by_complex_step
    setup = _prepare(f, items, options, native_f0)
    widen = widening(setup.policy)
    probe = Probe(f, items, setup.dtypes, setup.evaluator)
    noise = _noise.probe_noise(probe, setup.f0, options.nondeterministic)
    # Level 1, every element: one central difference at the step rule's h.
    first = [_first_level(setup, k) for k in range(len(items)) if inputs is None or k in inputs]
    # f's rounding near x, measured only if some element needs an error bar.
    rounding = _Rounding(probe, _precision_of(setup, noise, options, first, analytic, probe))
    # Level 2 for the elements level 1 left open: the error bar, kinks, another step.
    judged = [
        _judge_input(
            probe,
            level,
            analytic[level.k],
            options.rtols[level.k],
            options.atols[level.k],
            rounding,
            _precision.DEFAULT if widen is None else widen[level.k],
        )
        for level in first
    ]
    # Taylor tests for what is still open; where float spacing is 1 or more, never a fail.
    comparisons, taylor, reasons = _taylor_tests(
        probe, [c for c, _ in judged], setup.f0, rounding.precision, options, noise
    )
    comparisons = [
        never_fail(c, _precision.huge_elements(items[c.position], setup.dtypes[c.position]), "huge")
        for c in comparisons
    ]
    refined = {c.position: count for c, count in judged}
    numerics = _numerics(setup, why_not_complex, refined, len(items))
    return Judgement(tuple(comparisons), numerics, noise, taylor, reasons, setup.f0)


def _complex_step(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    analytic: tuple[np.ndarray, ...],
    widening: Callable[[str], Widening],
    options: Options,
) -> tuple[Judgement | None, str]:
    """``method='complex'``: the judgement by complex step, or None and why it fell back."""
    if options.method not in ("central", "complex"):
        raise ValueError(f"method={options.method!r} is not one of 'central', 'complex'")
    if options.method == "central":
        return None, ""
    estimate, why = _complex.complex_step_estimate(f, items, options.dtype_policy, options.seed)
    if estimate is not None:
        return _judge_complex(f, items, analytic, widening, options, estimate, why), ""
    return None, f"complex step not used: {why}; central differences instead"


def _prepare(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    options: Options,
    native_f0: tuple[float, str] | None,
) -> _engine.Setup:
    return _engine.prepare(f, items, options.evaluation(elementwise=True), native_f0)


def _precision_of(
    setup: _engine.Setup,
    noise: _noise.Noise,
    options: Options,
    first: list[FirstLevel],
    analytic: tuple[np.ndarray, ...],
    probe: Probe,
) -> Precision:
    """How far one evaluation of f may be off: its dtypes' roundoff, its noise, and its
    sensitivity to its inputs (``_probe.Precision``)."""
    sigma = noise.sigma if options.nondeterministic == "widen" or noise.sigma == 0 else math.inf
    eps_f = max(setup.eps_f, _arrays.FLOAT_EPS.get(noise.output_dtype, setup.eps_f))
    bases = [probe.base[level.k] for level in first]
    grads = [analytic[level.k] for level in first]
    return Precision(eps_f, sigma, _sensitivity(first, grads, bases))


def _taylor_tests(
    probe: Probe,
    comparisons: list[InputComparison],
    f0: float,
    precision: Precision,
    options: Options,
    noise: _noise.Noise,
) -> tuple[list[InputComparison], tuple[_taylor.TaylorResult, ...], tuple[str, ...]]:
    """Taylor tests for the elements left wide or NaN; the check-level reasons."""
    reasons = _noise.sentences(noise, options.nondeterministic)
    if not (options.taylor and math.isfinite(f0)):
        return comparisons, (), tuple(reasons)
    comparisons, results, skipped = _taylor.decisions(probe, comparisons, f0, precision)
    if skipped:
        reasons.append(
            f"{skipped} inconclusive element(s) not Taylor-tested: at most "
            f"{_taylor.TAYLOR_MAX_ELEMENTS} per check"
        )
    return comparisons, tuple(results), tuple(reasons)


def _numerics(
    setup: _engine.Setup, why_not_complex: str, refined: dict[int, int], count: int
) -> Numerics:
    return Numerics(
        policy=setup.policy,
        policy_reason=setup.policy_reason,
        evaluation_dtype=_evaluation_dtype(setup.dtypes),
        method="central",
        method_reason=why_not_complex or "central differences (method='central')",
        path=setup.evaluator.path,
        path_reason=setup.evaluator.reason,
        refined=tuple(refined.get(k, 0) for k in range(count)),
    )


class _Rounding:
    """f's rounding near x, measured once (``_engine.rounding_near``: 16 evaluations) the first
    time an element needs an error bar, i.e. only when level 1 left something undecided; it
    then joins the modelled rounding of ``Precision`` (the larger counts) for every bar, kink
    and jump test and Taylor floor after it. Not measured when f is nondeterministic (the
    noise bar covers it)."""

    def __init__(self, probe: Probe, precision: Precision) -> None:
        self.probe, self.precision, self.done = probe, precision, False

    def measured(self) -> Precision:
        if not self.done and self.precision.sigma == 0:
            u = _engine.rounding_near(self.probe.f, self.probe.buffers, self.probe.dtypes)
            measured = max(self.precision.measured, u)
            self.precision = dataclasses.replace(self.precision, measured=measured)
        self.done = True
        return self.precision


@dataclass(frozen=True)
class FirstLevel:
    """One input after level 1: the realised stencil points of every element (level 2 reuses
    them), f at ``x +- h`` and the central difference D1 there, flat."""

    k: int
    x: Any
    dtype: str
    points: tuple[np.ndarray, ...]  # x, x + h, x - h, x + h/2, x - h/2 (realised)
    f_plus: np.ndarray
    f_minus: np.ndarray
    f0: float
    eps_f: float
    d1: np.ndarray


def _first_level(setup: _engine.Setup, k: int) -> FirstLevel:
    """f at ``x +- h`` for every element of input k: 2 evaluations an element."""
    x, dtype = setup.items[k], setup.dtypes[k]
    points = _engine._step_points(x, dtype, setup.steps[k])
    f_values = setup.evaluator.at_elements(k, points[0], np.stack(points[1:3], axis=1))
    f_plus, f_minus = f_values[:, 0], f_values[:, 1]
    d1 = (f_plus - f_minus) / (points[1] - points[2])
    return FirstLevel(k, x, dtype, points, f_plus, f_minus, setup.f0, setup.eps_f, d1)


def _sensitivity(
    first: list[FirstLevel], analytic: list[np.ndarray], bases: list[np.ndarray]
) -> float:
    """``sum_i |g_i x_i|`` with g = min(|D1|, |a|): neither a jump's huge difference quotient nor
    a wild analytic value should pass for f's sensitivity to its inputs."""
    least = [
        np.minimum(np.abs(level.d1), np.abs(a.reshape(-1)))
        for level, a in zip(first, analytic, strict=True)
    ]
    return sensitivity(least, bases)


def _judge_input(
    probe: Probe,
    first: FirstLevel,
    analytic: np.ndarray,
    rtol: float | None,
    atol: float | None,
    rounding: _Rounding,
    own: OwnRounding,
) -> tuple[InputComparison, int]:
    """Levels 1 and 2 for one input; (its comparison, how many elements level 2 took)."""
    rtol, basis = _precision.basis(rtol, atol, own)
    widen = own.widen
    precision = rounding.precision
    shape, n = analytic.shape, first.f_plus.size
    a = analytic.reshape(-1)
    numeric, error = first.d1.copy(), np.full(n, np.nan)
    kind = np.full(n, "", dtype=object)
    left, right, side_error = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    noise = None
    todo = np.flatnonzero(~_passes(first, a, rtol, atol, widen, precision.sigma))
    notes: tuple[str, ...] = ()
    zero_scale = None
    if todo.size:
        precision = rounding.measured()
        level = _second_level(probe, first, todo, a[todo], rtol, atol, precision, numeric)
        numeric[todo], error[todo] = level.numeric, level.error
        edges = level.nonsmooth
        kind[todo], left[todo], right[todo], side_error[todo] = (
            edges.kind,
            edges.left,
            edges.right,
            edges.side_error,
        )
        notes = level.notes
        if precision.sigma:
            noise = np.zeros(n)
            noise[todo] = level.noise
        zero_scale = _zero_scale(precision, probe.base[first.k])
    comparison = compare(
        first.k,
        numeric.reshape(shape),
        error.reshape(shape),
        analytic,
        dtype=_arrays.dtype_name(first.x),
        rtol=rtol,
        atol=atol,
        noise=None if noise is None else noise.reshape(shape),
        nonsmooth=Nonsmooth(kind=kind, left=left, right=right, side_error=side_error),
        notes=notes,
        widen=widen,
        basis=basis,
        zero_scale=None if zero_scale is None else zero_scale.reshape(shape),
    )
    return comparison, int(todo.size)


def _zero_scale(precision: Precision, x: np.ndarray) -> np.ndarray | None:
    """The gradient scale f's measured rounding sets, per element: the size of the terms that
    round at ``u`` (``u / eps_f``) over ``max(1, |x_i|)``. An input whose numerical gradient is
    zero within its error bars is judged on it (``gradcheck._judge.compare``): a bar far below it is
    f's rounding, not a lack of information. None when no rounding was measured."""
    if precision.measured <= 0:
        return None
    return np.asarray(precision.measured / precision.eps_f / np.maximum(1.0, np.abs(x)))


def _passes(
    first: FirstLevel,
    analytic: np.ndarray,
    rtol: float | None,
    atol: float | None,
    widen: np.ndarray | None,
    sigma: float,
) -> np.ndarray:
    """Which elements level 1 passes: the verdict rule with no error bar. None when f is
    nondeterministic (its noise bar needs the full stencil)."""
    d1 = first.d1
    if sigma:
        return np.zeros(d1.shape, dtype=bool)
    rtol_, atol_, scale = tolerances(d1, _arrays.dtype_name(first.x), rtol, atol)
    limit = limit_of(atol_, rtol_, d1)
    w = widened(widen, d1.shape)
    if w is not None:
        limit = limit + w
    magnitude = np.maximum(np.maximum(np.abs(d1), np.abs(analytic)), scale)
    verdicts, _ = rule(analytic, d1, 0.0, limit, magnitude)
    return np.asarray(verdicts == Verdict.PASS.value)


@dataclass(frozen=True)
class SecondLevel:
    """The elements level 1 left open, after level 2 (flat, in their order)."""

    numeric: np.ndarray
    error: np.ndarray
    nonsmooth: Nonsmooth
    noise: np.ndarray
    notes: tuple[str, ...]


def _cancelled_to_zero(s: _engine.Stencil, f0: float, eps_f: float) -> np.ndarray:
    """The least bar of each element (0 for most): ``eps_f kappa`` where f is exactly 0 at x
    and at every point of the stencil, as if f rounded by eps of terms of size 1. Such an f
    often computed 0 by cancellation (torch's ``ndtr(-8.5)`` is ``(1 + erf(x / sqrt 2)) / 2``,
    exactly 0 in float64 where the true value is 1e-17), so ``eps |f| = 0`` says nothing of
    its rounding, and no smaller step or ladder can show more: autograd's 1e-16 there is not a
    fail. A gradient wrong by more than ``eps_f kappa`` (about 1e-11 in float64 at unit x)
    still fails; below that, the element is inconclusive."""
    flat = np.full(s.x.shape, f0 == 0)
    for values in (s.f_plus, s.f_minus, s.f_plus_half, s.f_minus_half):
        flat &= values == 0
    if not np.any(flat):
        return np.zeros(s.x.shape)
    _, _, weights = _engine.kappa(s)
    return np.where(flat, eps_f * weights, 0.0)


def _second_level(
    probe: Probe,
    first: FirstLevel,
    todo: np.ndarray,
    analytic: np.ndarray,
    rtol: float | None,
    atol: float | None,
    precision: Precision,
    numeric_all: np.ndarray,
) -> SecondLevel:
    """f at ``x +- h/2`` of the open elements, the Richardson value and error bar, kinks and
    jumps, and another step where the bar decides the verdict."""
    k, f0 = first.k, first.f0
    xv, xp, xm, xph, xmh = (p[todo] for p in first.points)
    halves = probe.evaluator.at_some(k, first.points[0], todo, np.stack([xph, xmh], axis=1))
    stencil = _engine.Stencil(
        xv,
        xp,
        xm,
        xph,
        xmh,
        first.f_plus[todo],
        first.f_minus[todo],
        halves[:, 0],
        halves[:, 1],
        elements=todo,
    )
    numeric, error = _engine._richardson(stencil, f0, first.eps_f, precision.measured)
    floor = _cancelled_to_zero(stencil, f0, first.eps_f)
    error = np.fmax(error, floor)
    sigma = precision.sigma
    noise = _noise.noise_bar(stencil, sigma) if sigma else np.zeros(todo.size)
    if not math.isfinite(sigma):  # nondeterministic='inconclusive': nothing to refine
        nan = np.full(todo.size, np.nan)
        smooth = Nonsmooth(
            kind=np.full(todo.size, "", dtype=object), left=nan, right=nan, side_error=nan
        )
        return SecondLevel(numeric, error, smooth, noise, ())
    edges = _kinks.analyse_edges(probe, k, stencil, numeric, error, f0, precision)
    numeric, error, nonsmooth = edges.numeric, edges.error, edges.nonsmooth
    notes: tuple[str, ...] = ()
    if edges.widened:  # the other steps below take the measured rounding too
        precision = dataclasses.replace(precision, measured=max(precision.measured, edges.rounding))
        ratio = edges.rounding / (precision.eps_f * max(abs(f0), 1e-300))
        refined = int(np.sum(nonsmooth.kind == "refined"))
        notes = (
            f"f rounds at up to {edges.rounding:.3g} per evaluation ({ratio:.3g}x eps "
            f"|f|, measured on {refined} refined element(s)): {edges.widened} "
            "other error bar(s) widened to it",
        )
    if sigma == 0:
        full = numeric_all.copy()
        full[todo] = numeric
        counted = np.ones(full.shape, dtype=bool)
        counted[todo] = nonsmooth.kind != "jump"
        rtol_, atol_, scale = tolerances(full, _arrays.dtype_name(first.x), rtol, atol, counted)
        limit = limit_of(atol_, rtol_, numeric)
        decides = _restep.bar_decides(numeric, error, analytic, limit, rtol_, scale)
        numeric, error, kind = _restep.restep(
            probe, k, stencil, f0, (numeric, error, nonsmooth.kind), decides, limit, precision
        )
        nonsmooth = dataclasses.replace(nonsmooth, kind=kind)
        error = np.where(floor > 0, np.fmax(error, floor), error)  # no step shows more
    else:
        notes += (
            f"tolerance widened by up to {float(np.max(noise, initial=0.0)):.3g} for noise in f",
        )
    return SecondLevel(numeric, error, nonsmooth, noise, notes)


def _judge_complex(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    analytic: tuple[np.ndarray, ...],
    widening: Callable[[str], Widening],
    options: Options,
    estimate: _engine.GradientEstimate,
    why: str,
) -> Judgement:
    """``method='complex'``: every element judged with its complex-step bar (no stencil)."""
    widen = widening(estimate.policy)
    dtypes = [estimate.evaluation_dtype] * len(items)
    probe = Probe(f, items, evaluation_dtypes(items, estimate))
    noise = _noise.probe_noise(probe, estimate.f0, options.nondeterministic)
    comparisons = []
    for k, x in enumerate(items):
        sigma = noise.sigma if options.nondeterministic == "widen" else math.inf
        z = NOISE_SIGMAS * sigma / np.abs(estimate.steps[k]) if noise.sigma else None
        own = _precision.DEFAULT if widen is None else widen[k]
        rtol, basis = _precision.basis(options.rtols[k], options.atols[k], own)
        comparisons.append(
            compare(
                k,
                estimate.values[k],
                estimate.errors[k],
                analytic[k],
                dtype=_arrays.dtype_name(x),
                rtol=rtol,
                atol=options.atols[k],
                noise=z,
                widen=own.widen,
                basis=basis,
            )
        )
    numerics = Numerics(
        policy=estimate.policy,
        policy_reason=estimate.policy_reason,
        evaluation_dtype=_evaluation_dtype(dtypes),
        method="complex",
        method_reason=why,
        path="loop",
        path_reason="complex step: one call a point",
        refined=tuple(0 for _ in items),
    )
    reasons = tuple(_noise.sentences(noise, options.nondeterministic))
    return Judgement(tuple(comparisons), numerics, noise, (), reasons, estimate.f0)


def _evaluation_dtype(dtypes: Sequence[str]) -> str:
    return dtypes[0] if len(set(dtypes)) == 1 else "mixed"
