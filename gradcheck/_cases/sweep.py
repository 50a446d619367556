"""Differentiate (diagnosis): how the error of a central difference depends on the step h.

Why the error against h is a V
------------------------------
For a step ``h`` the central difference ``(f(x + h) - f(x - h)) / (2 h)`` has two errors:

* truncation, ``h**2 |f'''| / 6``: it shrinks as h shrinks (slope +2 on log-log axes);
* rounding, ``~ eps |f| / h``: f is only known to ``eps |f|``, and the difference of two nearly
  equal values divided by a small step magnifies that (slope -1).

Their sum is smallest near ``h ~ eps ** (1/3)`` — the step the engine chooses
(``gradcheck._numerics.engine.STEP_EXPONENT``). Below about ``eps * |x|`` the step is lost entirely:
``x + h`` rounds back to ``x`` and no difference can be formed. A step ``h = 1e-50`` is such
a step (in float32 it is not even representable: it rounds to 0.0).

What is swept
-------------
As in the engine, element ``i`` is stepped by ``h_i = h * max(1, |x_i|)``, so ``h`` is a relative
step and the engine's own choice sits at ``h = eps ** (1/3)`` for every element. The difference is
divided by the realised step ``fl(x_i + h_i) - fl(x_i - h_i)``, exactly as the engine does. f is
evaluated in each dtype natively (no promotion), which is the point: float32 rounding shows.

The error at each step is ``max_i |D_i - g_i| / max_i |g_i|`` over every element of every input,
where ``g`` is the reference gradient the caller passes (a correct, analytic one; the sweep trusts
it). The denominator is the gradient's size, as in the comparison's ``atol`` rule, so elements that
are zero do not blow the error up.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tabulate import tabulate

from gradcheck._cases import descent as _descent
from gradcheck._cases import inputs as _inputs
from gradcheck._cases.case import AUTOGRAD, AnyCase, Descent, Source, case_seed
from gradcheck._check import first as _first
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine

DEFAULT_DTYPES = ("float64", "float32")
# Half-decade steps from 1e-20 (lost to rounding in both dtypes) to 1 (truncation dominates).
DEFAULT_STEPS = tuple(float(10.0**k) for k in np.arange(-20.0, 0.25, 0.5))


def engine_step(dtype: str) -> float:
    """The relative step the engine chooses in ``dtype``: ``eps ** STEP_EXPONENT``."""
    return float(_arrays.eps(dtype) ** _engine.STEP_EXPONENT)


@dataclass(frozen=True)
class SweepCurve:
    """The error of the central difference against h, in one dtype.

    Fields:
        dtype: the dtype f was evaluated in.
        errors: per step of :attr:`Sweep.steps`, the error relative to the gradient's size
            (module docstring); NaN where the step was lost or f was not finite.
        lost: per step, True where ``x + h`` rounded back so that no difference could be formed.
        chosen_step: the engine's relative step in this dtype, ``eps ** (1/3)``.
        engine_error: the actual relative error of the engine's own estimate (Richardson
            extrapolation at its chosen step, evaluated natively in this dtype).
        engine_estimate: the engine's error bar for that estimate, on the same scale; it
            should not be below ``engine_error``.
        failure: why f could not be swept in this dtype ('' when it could); the errors are
            then all NaN.
    """

    dtype: str
    errors: np.ndarray = field(repr=False)
    lost: np.ndarray = field(repr=False)
    chosen_step: float
    engine_error: float
    engine_estimate: float
    failure: str = ""

    def error_at(self, steps: np.ndarray, step: float) -> float:
        """The error at the grid step nearest (in log) to ``step``."""
        index = int(np.argmin(np.abs(np.log10(steps) - np.log10(step))))
        return float(self.errors[index])

    def best(self, steps: np.ndarray) -> tuple[float, float]:
        """(step, error) at the bottom of the V; (nan, nan) when every step failed."""
        if np.all(np.isnan(self.errors)):
            return float("nan"), float("nan")
        index = int(np.nanargmin(self.errors))
        return float(steps[index]), float(self.errors[index])


@dataclass(frozen=True)
class Sweep:
    """A step-size sweep: one :class:`SweepCurve` per dtype over a shared grid of steps.

    Fields:
        name: what was swept (a case name, or what the caller gave).
        reference: where the reference gradient came from, in words.
        steps: the relative steps h, ascending; the grid plus each dtype's chosen step.
        curves: one per dtype, in the order asked.
        elements: how many gradient elements each error is the worst of.
    """

    name: str
    reference: str
    steps: np.ndarray = field(repr=False)
    curves: tuple[SweepCurve, ...]
    elements: int

    def table(self) -> str:
        """The sweep as a text table: h, then each dtype's error ('lost' where x + h == x)."""
        headers = ["h", *(f"{c.dtype} error" for c in self.curves), "note"]
        rows = []
        for j, h in enumerate(self.steps):
            cells: list[object] = [f"{h:.3g}"]
            cells += ["lost" if c.lost[j] else _format_error(c.errors[j]) for c in self.curves]
            chosen = [c.dtype for c in self.curves if np.isclose(c.chosen_step, h, rtol=1e-12)]
            cells.append(f"<- engine's step in {', '.join(chosen)}" if chosen else "")
            rows.append(cells)
        return tabulate(rows, headers=headers, disable_numparse=True, colalign=("right",))

    def summary(self) -> str:
        """One line per dtype: the engine's step and error next to the best step on the grid."""
        lines = []
        for c in self.curves:
            if c.failure:
                lines.append(f"{c.dtype}: not swept: {c.failure}")
                continue
            best_step, best_error = c.best(self.steps)
            lines.append(
                f"{c.dtype}: engine step h = {c.chosen_step:.3g} gives central-difference error "
                f"{_format_error(c.error_at(self.steps, c.chosen_step))}, the engine's "
                f"extrapolated estimate {_format_error(c.engine_error)} (its error bar "
                f"{_format_error(c.engine_estimate)}); best on the grid: "
                f"{_format_error(best_error)} at h = {best_step:.3g}"
            )
        return "\n".join(lines)


def _format_error(value: float) -> str:
    return "n/a (f not finite)" if np.isnan(value) else f"{value:.2e}"


def sweep(
    f: Callable[..., Any],
    inputs: Any,
    reference: Any,
    *,
    dtypes: Sequence[str] = DEFAULT_DTYPES,
    steps: Sequence[float] | np.ndarray | None = None,
    name: str = "",
    reference_name: str = "the given reference gradient",
) -> Sweep:
    """Error of the central difference of scalar ``f(*inputs)`` against the relative step h.

    Args:
        f: the function; it returns a scalar.
        inputs: one array/tensor/float, or a tuple of them (as for :func:`gradcheck.check`).
            They are copied into each dtype; the caller's arrays are never modified.
        reference: the correct gradient, one array per input (a tuple for a tuple).
        dtypes: the dtypes to evaluate f in, natively; one curve each.
        steps: relative steps h (positive); default: half-decades from 1e-20 to 1. Each
            dtype's chosen step ``eps ** (1/3)`` is always added.
        name, reference_name: labels carried into the result.
    """
    items, single = _engine.as_input_tuple(inputs)
    refs = _reference_arrays(reference, items, single)
    grid = _grid(steps, dtypes)
    scale = max(float(np.max(np.abs(np.concatenate(refs)), initial=0.0)), 0.0) or 1.0
    curves = tuple(_curve(f, items, refs, dtype, grid, scale) for dtype in dtypes)
    return Sweep(
        name=name,
        reference=reference_name,
        steps=grid,
        curves=curves,
        elements=sum(r.size for r in refs),
    )


def sweep_case(
    item: AnyCase,
    *,
    seed: int = 0,
    dtypes: Sequence[str] | None = None,
    steps: Sequence[float] | np.ndarray | None = None,
) -> Sweep:
    """The sweep of a case's function at the inputs a run with ``seed`` draws.

    The reference gradient is the case's autograd source, else its first formula when the
    case expects to pass, else torch autograd tried on the function anyway (a known-bad formula
    is no reference); it is computed in float64. A non-scalar f is contracted with the
    cotangent :func:`gradcheck.check` would use. For a descent case the function is the loss at
    the start parameters, on the data of the first step. ``dtypes`` default to the case's.
    """
    row_seed = case_seed(seed, item.name)
    values = _inputs.sample_inputs(item, row_seed)
    failures = []
    for source in _reference_candidates(item):
        try:
            with warnings.catch_warnings():
                if source not in item.sources:  # autograd tried on a function not declared for it
                    warnings.simplefilter("ignore")
                f, inputs, reference = _bound_reference(item, source, values, row_seed)
        except Exception as exc:  # this source cannot serve; say why if none can
            failures.append(f"{source.name}: {type(exc).__name__}: {exc}")
            continue
        return sweep(
            f,
            inputs,
            reference,
            dtypes=item.dtypes if dtypes is None else dtypes,
            steps=steps,
            name=item.name,
            reference_name=f"{source.name} in float64",
        )
    raise ValueError(
        f"case {item.name!r} has no gradient to sweep against ({'; '.join(failures)}); "
        "a sweep needs a correct reference: give the case autograd=True or a right formula"
    )


def _reference_candidates(item: AnyCase) -> list[Source]:
    autograd = [s for s in item.sources if s.is_autograd]
    trusted = [s for s in item.sources if not s.is_autograd] if item.expect == "pass" else []
    return autograd + trusted + ([] if autograd else [Source(AUTOGRAD)])


def _bound_reference(
    item: AnyCase, source: Source, values: dict[str, Any], row_seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...], tuple[np.ndarray, ...]]:
    """(scalar f of the differentiated inputs, those inputs in float64, the reference)."""
    torch_arrays = _inputs.uses_torch(item, source)
    if isinstance(item, Descent):
        fn, constants = item.loss, _descent.batches_of(item, torch_arrays)[0]
    else:
        fn = item.f
        data = {k: v for k, v in values.items() if k not in item.wrt}
        constants = _inputs.Constants(data, torch_arrays)
    f = _inputs.bind(fn, item.wrt, constants)
    inputs = tuple(_inputs.differentiated(values[k], "float64", torch_arrays) for k in item.wrt)
    cotangent = getattr(item, "cotangent", None)
    v = _first.first_call(_engine.CountingFunction(f), inputs, cotangent, row_seed, False)[0]
    reference = _inputs.gradient_source(source, item.wrt, constants).gradients(f, inputs, v)
    return (f if v is None else _first.contracting(f, v)), inputs, reference


def _reference_arrays(reference: Any, items: tuple[Any, ...], single: bool) -> list[np.ndarray]:
    given = (reference,) if single else tuple(reference)
    if len(given) != len(items):
        raise ValueError(
            f"reference has {len(given)} gradients for {len(items)} inputs; give one per input"
        )
    refs = []
    for k, (x, g) in enumerate(zip(items, given, strict=True)):
        array = _arrays.to_numpy64(g).reshape(-1)
        if array.size != _size(x):
            raise ValueError(
                f"reference gradient {k} has {array.size} elements but input {k} has {_size(x)}; "
                "pass the gradient shaped like its input"
            )
        refs.append(array)
    return refs


def _size(x: Any) -> int:
    return int(np.prod(_arrays.output_shape(x))) if not isinstance(x, float) else 1


def _grid(steps: Sequence[float] | np.ndarray | None, dtypes: Sequence[str]) -> np.ndarray:
    if not dtypes:
        raise ValueError("dtypes is empty; name at least one, e.g. ('float64', 'float32')")
    for dtype in dtypes:
        if dtype not in _arrays.FLOAT_EPS:
            raise ValueError(
                f"dtype {dtype!r} cannot be swept; use one of {', '.join(_arrays.FLOAT_EPS)}"
            )
    values = np.asarray(DEFAULT_STEPS if steps is None else steps, dtype=np.float64).reshape(-1)
    if values.size == 0 or np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"steps must be positive and finite numbers, got {steps!r}")
    chosen = [engine_step(d) for d in dtypes]
    return np.unique(np.concatenate([values, chosen]))


def _curve(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    refs: list[np.ndarray],
    dtype: str,
    grid: np.ndarray,
    scale: float,
) -> SweepCurve:
    """One dtype's curve; f failing in that dtype (a float64-only kernel) is recorded."""
    try:
        errors, lost = _errors_on_grid(f, items, refs, dtype, grid, scale)
        buffers = tuple(_arrays.working_copy(x, dtype) for x in items)
        estimate = _engine.estimate_gradient(f, buffers, dtype_policy="native")
    except Exception as exc:  # user code may fail in any way in a dtype it was not written for
        nan = np.full(grid.size, np.nan)
        failure = f"f raised {type(exc).__name__} in {dtype}: {exc}"
        return SweepCurve(
            dtype,
            nan,
            np.zeros(grid.size, dtype=bool),
            engine_step(dtype),
            float("nan"),
            float("nan"),
            failure,
        )
    actual = max(
        float(np.max(np.abs(v.reshape(-1) - g), initial=0.0))
        for v, g in zip(estimate.values, refs, strict=True)
    )
    bar = max(float(np.max(e, initial=0.0)) for e in estimate.errors)
    return SweepCurve(dtype, errors, lost, engine_step(dtype), actual / scale, bar / scale)


def _errors_on_grid(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    refs: list[np.ndarray],
    dtype: str,
    grid: np.ndarray,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(worst relative error per step, NaN where lost; lost per step) over every input."""
    buffers = [_arrays.working_copy(x, dtype) for x in items]
    worst = np.zeros(grid.size)
    lost = np.zeros(grid.size, dtype=bool)
    for k, x in enumerate(items):
        derivative, lost_k = _central_differences(f, buffers, k, _arrays.values_in(dtype, x), grid)
        with np.errstate(invalid="ignore"):
            error = np.max(np.abs(derivative - refs[k][:, None]), axis=0) / scale
        worst = np.maximum(worst, error) if k else error
        lost |= lost_k
    return np.where(lost, np.nan, worst), lost


def _central_differences(
    f: Callable[..., Any], buffers: list[Any], k: int, x: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """D[i, j]: central difference of element i of input k at relative step grid[j].

    Returns (D, lost) where lost[j] says some element's realised step was zero at grid[j].
    D is NaN where the step was lost or f was not finite.
    """
    dtype = _arrays.dtype_name(buffers[k])
    h = grid[None, :] * np.maximum(1.0, np.abs(x))[:, None]
    x_plus = _arrays.rounded(dtype, x[:, None] + h)
    x_minus = _arrays.rounded(dtype, x[:, None] - h)
    realised = x_plus - x_minus
    derivative = np.full(h.shape, np.nan)
    buffer = buffers[k]
    for i in range(x.size):
        try:
            for j in np.flatnonzero(realised[i] > 0):
                f_plus = _evaluate(f, buffers, buffer, i, x_plus[i, j])
                f_minus = _evaluate(f, buffers, buffer, i, x_minus[i, j])
                derivative[i, j] = (f_plus - f_minus) / realised[i, j]
        finally:
            _arrays.set_flat(buffer, i, float(x[i]))
    return derivative, np.any(realised <= 0, axis=0)


def _evaluate(
    f: Callable[..., Any], buffers: list[Any], buffer: Any, i: int, value: float
) -> float:
    _arrays.set_flat(buffer, i, float(value))
    result = _arrays.scalar_value(f(*buffers))
    return result if np.isfinite(result) else float("nan")


def sweep_cases(
    cases: Sequence[AnyCase], *, seed: int = 0, dtypes: Sequence[str] | None = None
) -> dict[str, Sweep | str]:
    """case name -> its sweep, or one sentence saying why it has none (for the HTML report)."""
    sweeps: dict[str, Sweep | str] = {}
    for item in cases:
        chosen = item.dtypes if not dtypes else tuple(d for d in item.dtypes if d in dtypes)
        try:
            sweeps[item.name] = sweep_case(item, seed=seed, dtypes=chosen or item.dtypes)
        except Exception as exc:  # a case that cannot be swept still gets its report
            sweeps[item.name] = f"{type(exc).__name__}: {exc}"
    return sweeps
