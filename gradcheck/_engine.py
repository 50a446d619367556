"""Differentiate: central differences of a scalar function, with a per-element error estimate.

The maths, once, next to the numbers
------------------------------------
For element i of input x, with every other element held fixed:

* Step. ``h_i = eps ** (1/3) * max(1, |x_i|)`` where ``eps`` is the unit roundoff of the dtype
  f is evaluated in. A central difference has truncation error ``h**2 |f'''| / 6`` and rounding
  error ``~ eps |f| / h``; their sum is smallest near ``h ~ eps**(1/3)`` (scaled by ``|x_i|`` so the
  step is not lost next to a large value).
* Realised step. ``x_i + h`` is rounded to the evaluation dtype, so the step f really sees is
  ``x_plus - x_minus`` with ``x_plus = fl(x_i + h)`` and ``x_minus = fl(x_i - h)``. We divide by
  that, not by ``2 h``. A step that rounding swallows entirely (``x_plus == x_i``; seed 003's
  ``h = 1e-50`` in float32) is an error, never a zero gradient.
* Two central differences, at ``h`` and at ``h/2``::

      D1 = (f_plus - f_minus) / (x_plus - x_minus)
      D2 = (f_plus_half - f_minus_half) / (x_plus_half - x_minus_half)

  Both err by ``c h**2 + O(h**4)``, so Richardson extrapolation with the realised ratio
  ``r = (x_plus_half - x_minus_half) / (x_plus - x_minus)`` (1/2 up to rounding) cancels the
  ``h**2`` term::

      derivative = (D2 - r**2 D1) / (1 - r**2)

* Error estimate, per element::

      error = |D1 - D2| + ROUNDING_SAFETY * eps_f * F * (2/dh + 2 r**2/dH) / (1 - r**2)
      F = max(|f| over the stencil, |x_i * D2|)

  The first term is about 4/3 of D2's truncation error, itself larger than the extrapolated
  value's, and it also picks up the noise actually observed between the two differences. The
  second bounds the rounding of the four f values (each off by ``eps_f |f|``) as it propagates
  through the formula above; ``eps_f`` is the roundoff of the dtype f returns, and
  ``ROUNDING_SAFETY`` allows for the cancellation inside f that ``|f|`` alone cannot see; so does
  ``|x_i * D2|``, the size of the part of f that moves with x_i (a sum of large terms that nearly
  cancel rounds at the size of its terms, not of the sum).

Cost: one evaluation at x plus four per element.

The float32 caveat: when the inputs are float32 (or lower) and f accepts float64 inputs and
returns float64, we differentiate in float64 ("promoted") and the float32 gradient is judged
against that. When f cannot (it casts internally, a float32-only kernel) we differentiate in the
native dtype ("native") and the error estimate, which is then much larger, widens the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gradcheck import _arrays, _batch

STEP_EXPONENT = 1.0 / 3.0
ROUNDING_SAFETY = 8.0

DtypePolicy = Literal["auto", "native", "promote"]


@dataclass(frozen=True)
class Stencil:
    """The samples behind one input's estimate, flat, one entry per element.

    ``x`` is the element's value in the evaluation dtype; ``x_plus`` etc. are the realised
    perturbed values and ``f_plus`` etc. the values of f there (NaN where f failed to be finite).
    """

    x: np.ndarray
    x_plus: np.ndarray
    x_minus: np.ndarray
    x_plus_half: np.ndarray
    x_minus_half: np.ndarray
    f_plus: np.ndarray
    f_minus: np.ndarray
    f_plus_half: np.ndarray
    f_minus_half: np.ndarray


@dataclass(frozen=True)
class GradientEstimate:
    """A numerical gradient with its error bars.

    Fields:
        values: per input, the derivative estimate as a float64 array shaped like the input.
        errors: per input, the estimated absolute error of each element (same shape).
        steps: per input, the realised half-width of the stencil, ``(x_plus - x_minus) / 2``.
        f0: f at the unperturbed inputs.
        evaluation_dtype: the dtype f was evaluated in ('float64' when promoted).
        policy: 'promoted' (float32 inputs differentiated in float64) or 'native'.
        policy_reason: one sentence on why that policy was used.
        evaluations: points at which f was evaluated for this estimate (a batched call of B
            points counts B).
        stencils: per input, the raw samples (for kink and noise analysis).
        path: 'batched' (perturbations stacked and evaluated in chunks, see
            ``gradcheck._batch``) or 'loop' (one call of f per point).
        path_reason: why that path.
        step_scales: per input, the factor the step rule's ``h`` was scaled by (1.0 unless a
            pilot chose a larger step, see :func:`pilot_scale`).
        evaluator: the evaluation path that sampled the stencils, for later samples of the
            same f (the kink analysis's ladders); None where there is none to reuse.
    """

    values: tuple[np.ndarray, ...]
    errors: tuple[np.ndarray, ...]
    steps: tuple[np.ndarray, ...]
    f0: float
    evaluation_dtype: str
    policy: str
    policy_reason: str
    evaluations: int
    stencils: tuple[Stencil, ...] = field(repr=False)
    path: str = "loop"
    path_reason: str = ""
    step_scales: tuple[float, ...] = ()
    evaluator: _batch.Evaluator | None = field(default=None, repr=False, compare=False)


class CountingFunction:
    """Wraps f so that every call is counted; the count is what results report.

    ``parent`` (another CountingFunction) is credited with every count too: a derived function
    (f contracted with a cotangent) counts towards the evaluations of f itself, also when a
    batched path evaluates many points in one call and credits them with :meth:`add`.
    """

    def __init__(self, f: Callable[..., Any], parent: CountingFunction | None = None) -> None:
        self.f = f
        self.calls = 0
        self.parent = parent

    def __call__(self, *args: Any) -> Any:
        self.add(1)
        return self.f(*args)

    def add(self, count: int) -> None:
        self.calls += count
        if self.parent is not None:
            self.parent.add(count)


def as_input_tuple(inputs: Any) -> tuple[tuple[Any, ...], bool]:
    """(inputs as a tuple, whether the caller passed a single input rather than a tuple)."""
    if isinstance(inputs, list):
        raise TypeError(
            "inputs is a list; pass one array (np.asarray(x, dtype=np.float64)) or a tuple of "
            "arrays/tensors, one per argument of f"
        )
    if isinstance(inputs, tuple):
        if not inputs:
            raise ValueError("inputs is empty; pass at least one array or tensor to differentiate")
        items = tuple(inputs)
        single = False
    else:
        items = (inputs,)
        single = True
    for position, x in enumerate(items):
        _arrays.validate_input(x, position)
    return items, single


def numerical_gradient(
    f: Callable[..., Any],
    x: Any,
    *,
    step: float | Sequence[Any] | np.ndarray | None = None,
    dtype_policy: DtypePolicy = "auto",
) -> Any:
    """Central-difference gradient of a scalar function, shaped and typed like ``x``.

    ``x`` is a NumPy array, a torch tensor or a float, and ``f(x)`` returns a scalar; or ``x`` is
    a tuple of them, ``f(*x)`` is called and a tuple of gradients comes back. ``step`` overrides
    the automatic step (a number, an array per element, or a sequence per input). The caller's
    arrays are never modified. For the error estimate use :func:`estimate_gradient`.
    """
    items, single = as_input_tuple(x)
    estimate = estimate_gradient(f, items, step=step, dtype_policy=dtype_policy)
    grads = tuple(_arrays.like(xi, gi) for xi, gi in zip(items, estimate.values, strict=True))
    return grads[0] if single else grads


def estimate_gradient(
    f: Callable[..., Any],
    inputs: Any,
    *,
    step: float | Sequence[Any] | np.ndarray | None = None,
    dtype_policy: DtypePolicy = "auto",
    batch: _batch.BatchOption = "auto",
    memory_budget: int = _batch.DEFAULT_MEMORY_BUDGET,
) -> GradientEstimate:
    """The numerical gradient of scalar ``f(*inputs)`` with per-element error estimates.

    See the module docstring for the step, the stencil, the error estimate and the dtype policy;
    ``batch`` and ``memory_budget`` choose how the perturbed points are evaluated
    (``gradcheck._batch``: 'auto', 'loop', or a batched form of f).
    """
    return _estimate(f, inputs, step, dtype_policy, batch, memory_budget, pilot=False)


def _estimate(
    f: Callable[..., Any],
    inputs: Any,
    step: Any,
    dtype_policy: DtypePolicy,
    batch: _batch.BatchOption,
    memory_budget: int,
    pilot: bool,
    elementwise_only: bool = False,
) -> GradientEstimate:
    """:func:`estimate_gradient`; with ``pilot`` (and no ``step`` given) each input's step is
    scaled by the power of two a pilot picks (:func:`pilot_scale`). ``elementwise_only``: see
    ``gradcheck._batch.make_evaluator``."""
    setup = prepare(f, inputs, step, dtype_policy, batch, memory_budget, True, elementwise_only)
    items, eval_dtypes, counted, buffers = setup.items, setup.dtypes, setup.f, setup.buffers
    f0, eps_f, steps, start = setup.f0, setup.eps_f, setup.steps, setup.start

    values, errors, halfwidths, stencils, scales = [], [], [], [], []
    for k, (x, dtype) in enumerate(zip(items, eval_dtypes, strict=True)):
        shape = _arrays.output_shape(x) if not isinstance(x, float) else ()
        scale = pilot_scale(setup, k) if pilot and steps[k] is None else 1.0
        k_step = steps[k] if scale == 1.0 else scale * _default_step(x, dtype).reshape(shape)
        scales.append(scale)
        stencil = _sample_stencil(counted, buffers, k, dtype, k_step, x, setup.evaluator)
        value, error = _richardson(stencil, f0, eps_f)
        values.append(value.reshape(shape))
        errors.append(error.reshape(shape))
        halfwidths.append(((stencil.x_plus - stencil.x_minus) / 2).reshape(shape))
        stencils.append(stencil)
    return GradientEstimate(
        values=tuple(values),
        errors=tuple(errors),
        steps=tuple(halfwidths),
        f0=f0,
        evaluation_dtype=eval_dtypes[0] if len(set(eval_dtypes)) == 1 else "mixed",
        policy=setup.policy,
        policy_reason=setup.policy_reason,
        evaluations=counted.calls - start,
        stencils=tuple(stencils),
        path=setup.evaluator.path,
        path_reason=setup.evaluator.reason,
        step_scales=tuple(scales),
        evaluator=setup.evaluator,
    )


@dataclass(frozen=True)
class Setup:
    """What every numerical method needs before it perturbs anything (see :func:`prepare`)."""

    items: tuple[Any, ...]
    f: CountingFunction
    start: int
    dtypes: list[str]
    policy: str
    policy_reason: str
    f0: float
    eps_f: float
    buffers: list[Any]
    steps: list[Any]
    evaluator: _batch.Evaluator


def prepare(
    f: Callable[..., Any],
    inputs: Any,
    step: Any = None,
    dtype_policy: DtypePolicy = "auto",
    batch: _batch.BatchOption = "auto",
    memory_budget: int = _batch.DEFAULT_MEMORY_BUDGET,
    elementwise: bool = False,
    elementwise_only: bool = False,
) -> Setup:
    """Validate, pick the dtype policy (evaluating f at x), make private working copies in the
    evaluation dtypes and choose the evaluation path. Shared by the full check and the screen;
    ``elementwise`` lets the full check's stencil use ``gradcheck._separable``."""
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}: pass the function itself")
    items, _ = as_input_tuple(inputs)
    counted = f if isinstance(f, CountingFunction) else CountingFunction(f)
    start = counted.calls
    eval_dtypes, policy, reason, f0, out_dtype = _choose_policy(counted, items, dtype_policy)
    buffers = [_arrays.working_copy(x, d) for x, d in zip(items, eval_dtypes, strict=True)]
    steps = _steps_per_input(step, len(items))
    eps_f = max(_arrays.eps(out_dtype), *(_arrays.eps(d) for d in eval_dtypes))
    evaluator = _batch.make_evaluator(
        counted, buffers, batch, f0, memory_budget, elementwise, elementwise_only
    )
    return Setup(
        items, counted, start, eval_dtypes, policy, reason, f0, eps_f, buffers, steps, evaluator
    )


def _choose_policy(
    f: CountingFunction, items: tuple[Any, ...], dtype_policy: str
) -> tuple[list[str], str, str, float, str]:
    """Pick the evaluation dtypes; returns (dtypes, policy, reason, f0, f's output dtype)."""
    native = [_arrays.dtype_name(x) for x in items]
    if dtype_policy not in ("auto", "native", "promote"):
        raise ValueError(f"dtype_policy={dtype_policy!r} is not one of 'auto', 'native', 'promote'")
    if all(d == "float64" for d in native) or dtype_policy == "native":
        out = f(*(_arrays.working_copy(x, d) for x, d in zip(items, native, strict=True)))
        why = "inputs are float64" if dtype_policy == "auto" else "dtype_policy='native' was asked"
        return native, "native", why, _arrays.scalar_value(out), _arrays.output_dtype(out)
    promoted = ["float64"] * len(items)
    try:
        out = f(*(_arrays.working_copy(x, "float64") for x in items))
        out_dtype = _arrays.output_dtype(out)
        failure = None if out_dtype == "float64" else f"f returned {out_dtype} for float64 inputs"
    except Exception as exc:  # any failure means f cannot run in float64; fall back
        if dtype_policy == "promote":
            raise
        failure = f"f raised {type(exc).__name__} on float64 inputs"
    if failure is None:
        return (
            promoted,
            "promoted",
            "f accepts float64 inputs",
            _arrays.scalar_value(out),
            "float64",
        )
    if dtype_policy == "promote":
        raise TypeError(f"dtype_policy='promote' but {failure}; use 'auto' or 'native'")
    out = f(*(_arrays.working_copy(x, d) for x, d in zip(items, native, strict=True)))
    return native, "native", failure, _arrays.scalar_value(out), _arrays.output_dtype(out)


def _steps_per_input(step: Any, count: int) -> list[Any]:
    if step is None:
        return [None] * count
    if count > 1 and isinstance(step, (tuple, list)):
        if len(step) != count:
            raise ValueError(f"step has {len(step)} entries for {count} inputs; give one per input")
        return list(step)
    return [step] * count


def _default_step(x: Any, dtype: str) -> np.ndarray:
    """The step rule, per flat element: ``eps ** (1/3) * max(1, |x_i|)``."""
    xv = _arrays.values_in(dtype, x).astype(np.float64)
    step: np.ndarray = _arrays.eps(dtype) ** STEP_EXPONENT * np.maximum(1.0, np.abs(xv))
    return step


def _step_points(x: Any, dtype: str, step: Any) -> tuple[np.ndarray, ...]:
    """Realised stencil points (float64 views of dtype values): x, x+-h, x+-h/2."""
    xv = _arrays.values_in(dtype, x).astype(np.float64)
    if step is None:
        h = _default_step(x, dtype)
    else:
        h = np.broadcast_to(np.asarray(step, dtype=np.float64), np.shape(x)).reshape(-1)
        if np.any(~np.isfinite(h)) or np.any(h <= 0):
            raise ValueError(f"step must be positive and finite, got {step!r}")
    points = tuple(_arrays.rounded(dtype, xv + s) for s in (h, -h, h / 2, -h / 2))
    lost = (points[0] == xv) | (points[1] == xv) | (points[2] == xv) | (points[3] == xv)
    if np.any(lost):
        i = int(np.flatnonzero(lost)[0])
        raise ValueError(
            f"step {h[i]:.3g} is lost to rounding in {dtype} at flat element {i} "
            f"(x = {xv[i]:.17g}): x + h == x there, so every difference would be zero. "
            f"Use step=None for the automatic step, or at least {_min_step(xv[i], dtype):.3g}."
        )
    return (xv, *points)


def _min_step(value: float, dtype: str) -> float:
    return 4 * _arrays.eps(dtype) * max(1.0, abs(value))


def _sample_stencil(
    f: CountingFunction,
    buffers: list[Any],
    k: int,
    dtype: str,
    step: Any,
    x: Any,
    evaluator: _batch.Evaluator | None = None,
) -> Stencil:
    """Evaluate f at the four stencil points of every element of input k."""
    xv, xp, xm, xph, xmh = _step_points(x, dtype, step)
    points = np.stack([xp, xm, xph, xmh], axis=1)
    f_values = _evaluate_points(f, buffers, k, xv, points, evaluator)
    return Stencil(xv, xp, xm, xph, xmh, *f_values.T)


def _evaluate_points(
    f: CountingFunction,
    buffers: list[Any],
    k: int,
    base: np.ndarray,
    points: np.ndarray,
    evaluator: _batch.Evaluator | None = None,
) -> np.ndarray:
    """f with element i of input k set to points[i, j]; shape of points.

    Batched in chunks when the evaluator can (the working copies are then never written);
    otherwise the loop (``gradcheck._batch.loop_elements``): one element at a time, the working
    copy restored after every element, even when f raises.
    """
    if evaluator is not None:
        return evaluator.at_elements(k, base, points)
    return _batch.loop_elements(f, buffers, k, base, points, 0, points.shape[0])


def _finite_or_nan(out: Any) -> float:
    value = _arrays.scalar_value(out)
    return value if np.isfinite(value) else float("nan")


def _richardson(s: Stencil, f0: float, eps_f: float) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolated derivative and its error bound, per element (see the module docstring)."""
    derivative, spread, rounding = _richardson_parts(s, f0, eps_f)
    return derivative, spread + rounding


def _richardson_parts(
    s: Stencil, f0: float, eps_f: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(derivative, |D1 - D2|, rounding bound): the error bound's two parts kept apart."""
    d_big = s.x_plus - s.x_minus
    d_small = s.x_plus_half - s.x_minus_half
    D1 = (s.f_plus - s.f_minus) / d_big
    D2 = (s.f_plus_half - s.f_minus_half) / d_small
    r2 = (d_small / d_big) ** 2
    derivative = (D2 - r2 * D1) / (1 - r2)
    f_mag = np.maximum.reduce(
        [np.abs(s.f_plus), np.abs(s.f_minus), np.abs(s.f_plus_half), np.abs(s.f_minus_half)]
    )
    # |f| misses cancellation between the terms of f: the term that moves with x_i is of the order
    # of x_i * df/dx_i (exactly so for a power of x_i), and it rounds at its own size.
    f_mag = np.maximum(np.maximum(f_mag, abs(f0)), np.nan_to_num(np.abs(s.x * D2)))
    rounding = ROUNDING_SAFETY * eps_f * f_mag * (2 / d_small + 2 * r2 / d_big) / (1 - r2)
    return derivative, np.abs(D1 - D2), rounding


# The pilot: how many elements per input it samples; which fraction of the tolerance's size
# (``sqrt(eps) * (|D_i| + max |D|)``) a larger step's predicted error bar may take.
PILOT_ELEMENTS = 8
PILOT_BAR_BUDGET = 1.0


def pilot_candidates(dtype: str) -> tuple[float, ...]:
    """Step scales 1, 2, 4, ... up to ``eps ** (-2/15)``: the step rule's ``eps ** (1/3)`` times
    that is ``eps ** (1/5)``, the step that balances a Richardson value's ``h**4`` truncation
    against its rounding (float64: up to 64; float32: up to 8)."""
    limit = _arrays.eps(dtype) ** (-2.0 / 15.0)
    return tuple(2.0**j for j in range(int(np.log2(limit)) + 1))


def pilot_scale(setup: Setup, k: int) -> float:
    """The largest step scale whose predicted error bar fits the tolerance, for input k.

    The step rule balances truncation against rounding for a *plain* central difference. The
    Richardson value is then limited by the rounding of f (``~ eps |f| / h``): a larger step is
    more accurate, as long as truncation stays small, and the error bar (``|D1 - D2|``, which
    grows like ``h**2``, plus rounding, which shrinks like ``1/h``) stays narrow. The pilot
    evaluates the stencil of up to ``PILOT_ELEMENTS`` evenly spaced elements at the largest
    candidate scale ``C`` (where truncation shows best) and predicts each one's bar at scale
    ``c`` as ``|D1 - D2| (c/C)**2 + rounding (C/c)``. The step is scaled by the largest ``c``
    whose predicted bars all stay within ``PILOT_BAR_BUDGET * sqrt(eps) * (|D_i| + max |D|)``
    (the size of the default tolerance); when none does, by the one whose bars overshoot it
    least (at a kink inside the larger steps: 1); by 1 when the pilot saw NaN. Costs
    ``4 * PILOT_ELEMENTS`` evaluations per input.
    """
    x, dtype = setup.items[k], setup.dtypes[k]
    candidates = pilot_candidates(dtype)
    n = int(np.prod(_arrays.output_shape(x))) if not isinstance(x, float) else 1
    sample = np.unique(np.linspace(0, n - 1, min(n, PILOT_ELEMENTS)).round().astype(int))
    largest = candidates[-1]
    xv = _arrays.values_in(dtype, x).astype(np.float64)
    h = largest * _default_step(x, dtype)[sample]
    points = np.stack([_arrays.rounded(dtype, xv[sample] + d) for d in (h, -h, h / 2, -h / 2)], 1)
    f_values = _batch.loop_at(setup.f, setup.buffers, k, xv, sample, points)
    s = Stencil(xv[sample], *points.T, *f_values.T)
    value, spread, rounding = _richardson_parts(s, setup.f0, setup.eps_f)
    if not (np.all(np.isfinite(spread + rounding)) and np.all(rounding > 0)):
        return 1.0
    budget = PILOT_BAR_BUDGET * _arrays.eps(dtype) ** 0.5 * (np.abs(value) + np.max(np.abs(value)))
    budget = np.maximum(budget, _arrays.FLOAT_TINY[dtype])  # a sample of zero derivatives
    with np.errstate(over="ignore"):  # a bar over a tiny budget is inf: overshoots most
        over = {
            c: float(np.max((spread * (c / largest) ** 2 + rounding * (largest / c)) / budget))
            for c in candidates
        }
    fits = [c for c in candidates if over[c] <= 1]
    # None fits (f rounds at a large |f|, or a kink): the scale whose bars overshoot least.
    return max(fits) if fits else min(candidates, key=lambda c: over[c])
