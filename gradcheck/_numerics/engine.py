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
  that, not by ``2 h``. A step that rounding swallows entirely (``x_plus == x_i``; a step
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

Cost: one evaluation at x, four per element, and ``ROUNDING_POINTS`` (16) to measure f's
rounding near x (:func:`rounding_near`), which widens a bar whose modelled rounding is smaller.

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

from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import evaluate as _batch

STEP_EXPONENT = 1.0 / 3.0
ROUNDING_SAFETY = 8.0
ROUNDING_POINTS = 16
ROUNDING_ULPS = 256.0
MEASURED_SAFETY = 4.0

DtypePolicy = Literal["auto", "native", "promote"]


@dataclass(frozen=True)
class Stencil:
    """The samples behind one input's estimate, flat, one entry per element.

    ``x`` is the element's value in the evaluation dtype; ``x_plus`` etc. are the realised
    perturbed values and ``f_plus`` etc. the values of f there (NaN where f failed to be finite).
    ``elements``: the flat indices in the input of the entries, in order; None when the stencil
    covers every element (entry i is element i). The judging loop samples the second level only
    for the elements the first did not decide.
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
    elements: np.ndarray | None = None

    def flat_index(self, entries: np.ndarray) -> np.ndarray:
        """The flat indices in the input of the given entries of this stencil."""
        return entries if self.elements is None else self.elements[entries]

    @classmethod
    def along(cls, T: float, f_values: np.ndarray) -> Stencil:
        """The one-entry stencil of a directional probe: f(x + tau w) on the parameter tau at
        ``tau = +T, -T, +T/2, -T/2`` (``f_values`` in that order), tau = 0 at x."""
        return cls(
            x=np.zeros(1),
            x_plus=np.array([T]),
            x_minus=np.array([-T]),
            x_plus_half=np.array([T / 2]),
            x_minus_half=np.array([-T / 2]),
            f_plus=f_values[0:1],
            f_minus=f_values[1:2],
            f_plus_half=f_values[2:3],
            f_minus_half=f_values[3:4],
        )


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
            ``gradcheck._numerics.evaluate``) or 'loop' (one call of f per point).
        path_reason: why that path.
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
    memory_budget: int = 4 * 2**20,  # DEFAULT_MEMORY_BUDGET, as a value for the reference
) -> GradientEstimate:
    """The numerical gradient of scalar ``f(*inputs)`` with per-element error estimates.

    See the module docstring for the step, the stencil, the error estimate and the dtype policy;
    ``batch`` and ``memory_budget`` choose how the perturbed points are evaluated
    (``gradcheck._numerics.evaluate``: 'auto', 'loop', or a batched form of f).
    """
    how = Evaluation(step, dtype_policy, batch, memory_budget, elementwise=True)
    setup = prepare(f, inputs, how)
    items, eval_dtypes, counted, buffers = setup.items, setup.dtypes, setup.f, setup.buffers
    f0, eps_f, steps, start = setup.f0, setup.eps_f, setup.steps, setup.start

    values, errors, halfwidths, stencils = [], [], [], []
    measured = rounding_near(counted, buffers, eval_dtypes)
    for k, (x, dtype) in enumerate(zip(items, eval_dtypes, strict=True)):
        shape = _arrays.output_shape(x) if not isinstance(x, float) else ()
        stencil = _sample_stencil(counted, buffers, k, dtype, steps[k], x, setup.evaluator)
        value, error = _richardson(stencil, f0, eps_f, measured)
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


@dataclass(frozen=True)
class Evaluation:
    """How f is evaluated at perturbed points: the step, the dtype policy, the evaluation path
    (``batch``, ``memory_budget``), and whether the full check's stencil may use
    ``gradcheck._numerics.separable`` (``elementwise``; ``elementwise_only``: it must)."""

    step: Any = None
    dtype_policy: DtypePolicy = "auto"
    batch: _batch.BatchOption = "auto"
    memory_budget: int = _batch.DEFAULT_MEMORY_BUDGET
    elementwise: bool = False
    elementwise_only: bool = False


def prepare(
    f: Callable[..., Any],
    inputs: Any,
    how: Evaluation = Evaluation(),
    native_f0: tuple[float, str] | None = None,
) -> Setup:
    """Validate, pick the dtype policy (evaluating f at x), make private working copies in the
    evaluation dtypes and choose the evaluation path (``how``). Shared by the full check and
    the screen. ``native_f0``:
    (f, its output dtype) at the inputs in their own dtypes, when the caller has it already
    (``check``'s first call, which finds f's output shape): where the policy evaluates f
    there, it is not called again."""
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}: pass the function itself")
    items, _ = as_input_tuple(inputs)
    counted = f if isinstance(f, CountingFunction) else CountingFunction(f)
    start = counted.calls
    eval_dtypes, policy, reason, f0, out_dtype = _choose_policy(
        counted, items, how.dtype_policy, native_f0
    )
    buffers = [_arrays.working_copy(x, d) for x, d in zip(items, eval_dtypes, strict=True)]
    steps = _steps_per_input(how.step, len(items))
    eps_f = max(_arrays.eps(out_dtype), *(_arrays.eps(d) for d in eval_dtypes))
    evaluator = _batch.make_evaluator(
        counted, buffers, how.batch, f0, how.memory_budget, how.elementwise, how.elementwise_only
    )
    return Setup(
        items, counted, start, eval_dtypes, policy, reason, f0, eps_f, buffers, steps, evaluator
    )


def _choose_policy(
    f: CountingFunction,
    items: tuple[Any, ...],
    dtype_policy: str,
    native_f0: tuple[float, str] | None = None,
) -> tuple[list[str], str, str, float, str]:
    """Pick the evaluation dtypes; returns (dtypes, policy, reason, f0, f's output dtype).
    ``native_f0``: f at the inputs in their own dtypes, if known (see :func:`prepare`)."""
    native = [_arrays.dtype_name(x) for x in items]
    if dtype_policy not in ("auto", "native", "promote"):
        raise ValueError(f"dtype_policy={dtype_policy!r} is not one of 'auto', 'native', 'promote'")
    if all(d == "float64" for d in native) or dtype_policy == "native":
        why = "inputs are float64" if dtype_policy == "auto" else "dtype_policy='native' was asked"
        if native_f0 is not None:
            return native, "native", why, *native_f0
        out = f(*(_arrays.working_copy(x, d) for x, d in zip(items, native, strict=True)))
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


def _step_points(x: Any, dtype: str, step: Any, halves: bool = True) -> tuple[np.ndarray, ...]:
    """Realised stencil points (float64 views of dtype values): x, x+-h, x+-h/2 (without
    ``halves``, x and x+-h only: a screen's probe needs no more)."""
    xv = _arrays.values_in(dtype, x).astype(np.float64)
    if step is None:
        h = _default_step(x, dtype)
    else:
        h = np.broadcast_to(np.asarray(step, dtype=np.float64), np.shape(x)).reshape(-1)
        if np.any(~np.isfinite(h)) or np.any(h <= 0):
            raise ValueError(f"step must be positive and finite, got {step!r}")
    steps = (h, -h, h / 2, -h / 2) if halves else (h, -h)
    points = tuple(_arrays.rounded(dtype, xv + s) for s in steps)
    lost = np.zeros(xv.shape, dtype=bool)
    for point in points:
        lost |= point == xv
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
    otherwise the loop (``gradcheck._numerics.evaluate.loop_elements``): one element at a time, the
    working
    copy restored after every element, even when f raises.
    """
    if evaluator is not None:
        return evaluator.at_elements(k, base, points)
    return _batch.loop_elements(f, buffers, k, base, points, 0, points.shape[0])


def _finite_or_nan(out: Any) -> float:
    value = _arrays.scalar_value(out)
    return value if np.isfinite(value) else float("nan")


def _richardson(
    s: Stencil, f0: float, eps_f: float, measured: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolated derivative and its error bound, per element (see the module docstring);
    ``measured``: the rounding of one evaluation measured near x (:func:`rounding_near`),
    which replaces the modelled one where larger."""
    derivative, spread, rounding = richardson_parts(s, f0, eps_f)
    if measured > 0:
        rounding = np.maximum(rounding, measured * kappa(s)[2])
    return derivative, spread + rounding


def rounding_near(f: Callable[..., Any], buffers: Sequence[Any], dtypes: Sequence[str]) -> float:
    """How far one evaluation of f near x is off, measured rather than modelled from ``|f|``.

    f is evaluated at ``x + j tau s`` for ``j = 1 .. ROUNDING_POINTS`` with every element
    moved (``tau_i = ROUNDING_ULPS eps max(1, |x_i|)``, a few hundred units in the last place:
    enough to change the rounding of everything f computes, far too little for f to curve;
    ``s_i = +-1`` seeded), on one side only, so that a kink or jump at x itself is not crossed.
    Along that line f is a polynomial of degree 2 up to ``O(tau**3)``, which third differences
    ``f_(j+3) - 3 f_(j+2) + 3 f_(j+1) - f_j`` cancel: what is left is rounding (cancellation
    inside f included: a sum of terms of either sign whose value is 0 rounds at the size of
    its terms, not of the sum). Independent errors of size sigma give third differences of
    variance ``20 sigma**2``; the result is ``MEASURED_SAFETY`` sigma. Points where f is not
    finite measure nothing (0.0). Costs ``ROUNDING_POINTS`` evaluations."""
    rng = np.random.default_rng(0)
    bases = [
        _arrays.values_in(d, b).astype(np.float64) for b, d in zip(buffers, dtypes, strict=True)
    ]
    moves = [
        ROUNDING_ULPS
        * _arrays.eps(d)
        * np.maximum(1.0, np.abs(b))
        * rng.choice([-1.0, 1.0], b.size)
        for b, d in zip(bases, dtypes, strict=True)
    ]
    values = np.array(
        [
            _finite_or_nan(
                f(
                    *(
                        _arrays.filled(buffer, _arrays.rounded(d, b + j * m))
                        for buffer, b, m, d in zip(buffers, bases, moves, dtypes, strict=True)
                    )
                )
            )
            for j in range(1, ROUNDING_POINTS + 1)
        ]
    )
    if not np.all(np.isfinite(values)):
        return 0.0
    third = values[3:] - 3 * values[2:-1] + 3 * values[1:-2] - values[:-3]
    return MEASURED_SAFETY * float(np.sqrt(np.mean(third**2) / 20))


def richardson_parts(
    s: Stencil, f0: float, eps_f: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(derivative, |D1 - D2|, rounding bound): the error bound's two parts kept apart."""
    d1, d2, weights = kappa(s)
    derivative = richardson(s, d1, d2)
    f_mag = np.maximum.reduce(
        [np.abs(s.f_plus), np.abs(s.f_minus), np.abs(s.f_plus_half), np.abs(s.f_minus_half)]
    )
    # |f| misses cancellation between the terms of f: the term that moves with x_i is of the order
    # of x_i * df/dx_i (exactly so for a power of x_i), and it rounds at its own size.
    f_mag = np.maximum(np.maximum(f_mag, abs(f0)), np.nan_to_num(np.abs(s.x * d2)))
    rounding = ROUNDING_SAFETY * eps_f * f_mag * weights
    return derivative, np.abs(d1 - d2), rounding


def kappa(s: Stencil) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D1, D2, kappa): the two central differences and the sum of the absolute weights of
    the four f values in the Richardson estimate, ``(2/dh + 2 r**2/dH) / (1 - r**2)``: how one
    evaluation's error propagates into the estimate."""
    d_big = s.x_plus - s.x_minus
    d_small = s.x_plus_half - s.x_minus_half
    r2 = (d_small / d_big) ** 2
    weights = (2 / d_small + 2 * r2 / d_big) / (1 - r2)
    return (s.f_plus - s.f_minus) / d_big, (s.f_plus_half - s.f_minus_half) / d_small, weights


def richardson(s: Stencil, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """``(D2 - r**2 D1) / (1 - r**2)`` with the realised ratio r of the two half-widths."""
    r2 = ((s.x_plus_half - s.x_minus_half) / (s.x_plus - s.x_minus)) ** 2
    return np.asarray((d2 - r2 * d1) / (1 - r2))


def central(s: Stencil, u: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Richardson estimate, its error bar with a per-evaluation uncertainty u (in place of
    ``ROUNDING_SAFETY eps |f|``), and kappa."""
    d1, d2, weights = kappa(s)
    return richardson(s, d1, d2), np.abs(d1 - d2) + u * weights, weights
