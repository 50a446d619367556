"""Differentiate (Taylor test): a second opinion that needs no step and no tolerance.

Taylor remainder (dolfin-adjoint's ``taylor_test``)
---------------------------------------------------
Along a direction d, ``r(h) = |f(x + h d) - f(x) - h g.d|`` is ``O(h**2)`` when g is the gradient
and ``|h (g - grad f).d| + O(h**2)`` when it is not. h starts at ``TAYLOR_FIRST_STEP`` (d is scaled
by ``max(1, |x_i|)``) and halves until r has sunk into the rounding floor
``2 u + eps |h g.d|`` (below it rounding can fake any order, so the run stops there);
remainders above ``TAYLOR_VALID`` times that floor are *valid*, and the observed order between
consecutive valid halvings is ``log2(r(h) / r(h/2))``. The verdict reads the last
``TAYLOR_TAIL`` valid orders (the smallest steps: the asymptotic regime): fail when all lie
within 0.25 of 1 and f itself moves smoothly there (``|f(x + h d) - f(x)|`` shrinks at an
order within ``TAYLOR_FIRST_ORDER_RANGE``, or stays at 0: a first-order remainder that
bounces or stays put, however small, is a jump, rounding or an f saturated within every step
(tanh near 1), and the "order 1" is the analytic term alone), pass when all are at least 1.75,
inconclusive otherwise. A remainder that
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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.compare import decide
from gradcheck._judge.verdict import InputComparison, Verdict, rule, rule_verdict
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.noise import seeded
from gradcheck._numerics.probe import Precision, Probe, sensitivity
from gradcheck._sources import reference as _reference

TAYLOR_FIRST_STEP = 0.25
TAYLOR_VALID = 32.0
TAYLOR_TAIL = 3
TAYLOR_PASS_ORDER = 1.75
TAYLOR_FAIL_ORDER = 1.25
TAYLOR_MAX_ELEMENTS = 16
TAYLOR_FIRST_ORDER_RANGE = (0.5, 2.5)


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
        if f0 == 0 and f_h == 0:  # exactly 0 twice: often a cancellation (loop._cancelled_to_zero)
            floor = max(floor, 2 * precision.eps_f)
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
    if verdict is Verdict.FAIL and not _moves_smoothly(rem1, floors, valid):
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"the remainder shrinks at order {order:.2f}, but f itself does not move smoothly "
            "along d at these steps (|f(x+hd) - f(x)| does not shrink with h): f jumps, "
            "saturates or rounds there, and the remainder says nothing about the gradient"
        )
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


def _moves_smoothly(rem1: list[float], floors: list[float], valid: list[bool]) -> bool:
    """Whether ``|f(x + h d) - f(x)|`` behaves as a smooth f's over the valid steps the verdict
    reads: where it stands clear of the rounding floor, it must shrink at order 1 (or 2 where
    the true slope along d is 0), each halving within ``TAYLOR_FIRST_ORDER_RANGE``. One that
    stays put or bounces (frac at 5e6, where every step crosses integers) cannot show a wrong
    gradient: its "order 1" is the analytic term alone. Below that, f that does not move at
    all (exactly 0, or shrinking into the floor) makes a claimed slope it does not show rightly
    a fail; but f that moves by the same nonzero amount at every step has saturated (tanh at
    15, sigmoid at 34: within 1e-13 of 1, each step reaches the asymptote), and its steps lie
    beyond the reach of its Taylor expansion, however small that amount is."""
    steps = [k for k, ok in enumerate(valid) if ok][-(TAYLOR_TAIL + 1) :]
    low, high = TAYLOR_FIRST_ORDER_RANGE
    for a, b in itertools.pairwise(steps):
        moved = (_clear(rem1[a], floors[a]), _clear(rem1[b], floors[b]))
        if moved == (False, False):
            if rem1[b] > 0 and not rem1[a] >= 2**low * rem1[b]:  # stays put: saturated
                return False
            continue
        if moved != (True, True) or not low <= math.log2(rem1[a] / rem1[b]) / (b - a) <= high:
            return False
    return True


def _read_orders(
    orders: list[float], valid: list[bool], resolution: float, reference: float
) -> tuple[Verdict, float, str]:
    """The verdict from the asymptotic (smallest-step) observed orders."""
    seen = [o for o in orders if math.isfinite(o)]
    blind = _vouches(resolution, reference) is not Verdict.PASS
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


def _vouches(resolution: float, reference: float) -> Verdict:
    """Whether the run can see an error of ``WIDE_ERROR_BAR`` of g.d's size: the verdict rule
    with the run's resolution as its error bar and ``reference`` as the magnitude (pass, or
    inconclusive when the bar is wide or not finite). A zero reference with a nonzero
    resolution vouches for nothing."""
    bar = resolution if reference > 0 or resolution == 0 else math.inf
    return rule_verdict(0.0, 0.0, bar, 0.0, reference)


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
    ``taylor_test``); order 1 means the gradient is wrong along d. See ``gradcheck._judge.taylor``.

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


def decisions(
    probe: Probe, comparisons: list[InputComparison], f0: float, precision: Precision
) -> tuple[list[InputComparison], list[TaylorResult], int]:
    """Decide elements left 'wide' or 'nonfinite' by Taylor tests along their coordinate."""
    results: list[TaylorResult] = []
    skipped = tested = 0
    out = []
    for c in comparisons:
        k = c.position
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
        allowance = _tolerance.allowance(
            c.tolerance, c.error_estimate, c.analytic, (c.rtol, c.atol)
        ).reshape(-1)
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
    its step error (atol + rtol |n|, noise, the analytic side's own rounding) is a pass by the
    verdict rule: the gradient is as right as asked, e.g. float32 backprop through an
    ill-conditioned f."""
    if verdict is not Verdict.FAIL:
        return verdict
    size = max(1.0, abs(float(x)))
    implied = max(_implied_error(run) / size for run in runs if run.verdict is Verdict.FAIL)
    verdicts, _ = rule(np.array([implied]), np.zeros(1), 0.0, allowance, math.inf)
    return Verdict(verdicts[0])


def _implied_error(run: TaylorResult) -> float:
    """|g.d - true g.d| from the order-1 remainder at the smallest step clear of rounding."""
    valid = [(h, r) for h, r, ok in zip(run.steps, run.remainders, run.valid, strict=True) if ok]
    if not valid:
        return math.inf
    h, remainder = valid[-1]
    return remainder / h
