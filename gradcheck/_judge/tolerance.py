"""Compare (support): how precisely a gradient below float64 can be judged, from what was measured.

The default tolerance ``rtol = sqrt(eps)`` of the analytic dtype is a rule of thumb: 3.5e-4 in
float32, 0.088 in bfloat16. It lets a 1e-4 scale error in float32 and a 5% error in bfloat16
pass. Where the check can measure how far the analytic side's own arithmetic rounds, that
measurement sets the tolerance instead. Per input, in this order:

1. **Measured rounding** (``basis = 'measured'``). When f is differentiated in float64 and the
   gradient source also runs on float64 copies of the (same, already quantised) inputs, the
   difference ``a - a64`` is the analytic side's own rounding, element by element: not a model,
   the exact error of the low-precision arithmetic relative to the same code in float64. The
   tolerance is then::

       tolerance_i = MEASURED_RTOL (|n_i| + scale) + ANALYTIC_ROUNDING_SAFETY |a_i - a64_i| + e_i

   ``MEASURED_RTOL = 1e-7`` is a floor for the float64 side (the float64 gradient and the
   numerical value agree to about 1e-11 relative on well-conditioned code), far below the
   1e-4 errors it must catch. A formula wrong in both dtypes moves ``a`` and ``a64`` alike and
   is caught; a float32 result that differs from the same code in float64 by more than the
   error it is checked for cannot be called wrong. This needs the float64 run to have really
   computed in float64: when ``a64`` equals ``a`` in every element and holds only values the
   input's dtype can hold (a kernel that casts its inputs down, a hand formula with float32
   constants), the difference measures nothing, and the next rule (or the default) applies.
2. **The measuring stick** (``basis = 'stick'``, bfloat16/float16 inputs with a torch f, or a
   ``reference=`` forward). The question is "is this low-precision gradient as right as its
   precision allows?". The stick answers it: the same maths (f, or the reference forward)
   differentiated by autograd *in that precision*, against autograd in float64, on the same
   quantised inputs. Its error ``s_i = |stick_i - a64_i|`` is what that precision costs; the
   tolerance is::

       tolerance_i = STICK_SAFETY max(s_i, rms(s)) + MEASURED_RTOL (|n_i| + scale) + e_i

   The RMS term keeps a correct kernel whose rounding falls elsewhere than the stick's from a
   false alarm (on ``silu(x @ w)``: stick 0.24% RMS in bfloat16, a correct kernel 0.31%);
   ``STICK_SAFETY = 16`` leaves room for the largest of a few hundred such errors (a correct
   kernel's worst element there is 7 times the larger of its stick error and the RMS), and a 2%
   bfloat16 error (1% in float16) is still several times outside.
3. Otherwise the default rule of ``gradcheck._judge.verdict`` (``basis = 'default'``); ``'given'``
   when the caller set ``rtol`` or ``atol``.

Every comparison states its basis (``InputComparison.tolerance_basis``) and its *resolution*
(``InputComparison.resolution``): the smallest error, relative to the gradient's size, that
it would have called a fail in any element.

Huge inputs: where ``|x_i|`` is at least ``1 / eps`` of its dtype, the spacing of the floats
there is at least 1 and every float is an integer (``floor``, ``round``, ``frac`` are the
identity or zero on every point a difference can reach). A mismatch there is
``inconclusive`` with reason ``huge`` (:func:`huge_elements`), never a fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck._numerics import arrays as _arrays

if TYPE_CHECKING:
    from gradcheck._sources.reference import GradientSource

MEASURED_RTOL = 1e-7
STICK_SAFETY = 16.0
HALF_DTYPES = ("bfloat16", "float16")

Widening = tuple["OwnRounding", ...] | None


@dataclass(frozen=True)
class OwnRounding:
    """What one input's tolerance rests on beyond the numerical error bar.

    Fields:
        widen: added to every element's tolerance (absolute, shaped like the input), or None.
        basis: 'measured', 'stick' or 'default' (module docstring).
        detail: one sentence on the measurement ('' for 'default').
    """

    widen: np.ndarray | None
    basis: str = "default"
    detail: str = ""

    @property
    def rtol(self) -> float | None:
        """The relative floor that replaces ``sqrt(eps)`` (None: the default rule)."""
        return None if self.basis == "default" else MEASURED_RTOL


DEFAULT = OwnRounding(None)


def computed_in_float64(low: np.ndarray, wide: np.ndarray, dtype: str) -> bool:
    """Whether the source's run on float64 copies shows that it computes in float64: it
    differs from the run on the inputs themselves somewhere, or holds a value their dtype
    cannot. If neither, it computed at (or below) that dtype — a kernel that casts its inputs
    down, a formula with float32 constants — and ``a - a64`` measures nothing. (An exact
    gradient, ``sum``'s ones, looks the same and keeps the default rule: right either way.)"""
    low_, wide_ = np.asarray(low, dtype=np.float64), np.asarray(wide, dtype=np.float64)
    if not np.array_equal(low_, wide_, equal_nan=True):
        return True
    finite = wide_[np.isfinite(wide_)]
    return bool(np.any(_arrays.rounded(dtype, finite) != finite))


def measured(own: np.ndarray, dtype: str) -> OwnRounding:
    """Rule 1 of the module docstring, from ``ANALYTIC_ROUNDING_SAFETY |a - a64|``."""
    w = np.abs(own)
    top = float(np.max(w[np.isfinite(w)], initial=0.0))
    detail = (
        f"tolerance from the analytic side's own {dtype} rounding (the same source run in "
        f"float64; up to {top:.3g}) plus {MEASURED_RTOL:g} relative"
    )
    return OwnRounding(w, "measured", detail)


def measuring_stick(
    f: Callable[..., Any], items: tuple[Any, ...], v: np.ndarray | None
) -> tuple[OwnRounding, ...] | None:
    """Rule 2 for the half-precision inputs: autograd of ``f`` in the inputs' own dtypes against
    autograd in float64. None when f is not a torch function autograd can differentiate."""
    from gradcheck._sources.reference import Autograd

    if not all(_arrays.is_torch(x) for x in items):
        return None
    try:
        low = Autograd().gradients(f, items, v)
        high = Autograd().gradients(f, tuple(_arrays.working_copy(x, "float64") for x in items), v)
    except Exception:  # f is not differentiable by autograd: no stick
        return None
    out: list[OwnRounding] = []
    for x, a, a64 in zip(items, low, high, strict=True):
        dtype = _arrays.dtype_name(x)
        if dtype not in HALF_DTYPES:
            out.append(DEFAULT)
            continue
        s = np.abs(a - a64)
        rms = float(np.sqrt(np.mean(s**2))) if s.size else 0.0
        size = float(np.sqrt(np.mean(a64**2))) if a64.size else 0.0
        detail = (
            f"tolerance from the measuring stick: autograd of the same maths in {dtype} is off "
            f"by {rms / size if size else 0.0:.3g} RMS relative against float64, "
            f"x{STICK_SAFETY:g}"
        )
        out.append(OwnRounding(STICK_SAFETY * np.maximum(s, rms), "stick", detail))
    return tuple(out)


def huge_elements(x: Any, dtype: str) -> np.ndarray:
    """Flat mask of the elements where the float spacing of ``dtype`` is at least 1:
    ``|x_i| >= 1 / eps`` (module docstring)."""
    values = _arrays.to_numpy64(x).reshape(-1)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(values) >= 1.0 / _arrays.eps(dtype))


# -- Every default tolerance the judges use, built here -------------------------------------
#
# The verdict rule (``gradcheck._judge.verdict.rule``) takes a limit and an error bar; what
# goes into the limit is decided below, once: the element rule's defaults (``sqrt(eps)``, the
# atol from the gradient's scale), its widenings (noise, the analytic side's own rounding), a
# screen probe's limit, the backward contract's agreement and its rounding-level
# nondeterminism, torch's atol on zero gradients, a re-measured probe's moved mismatch, the
# complex step's analyticity test, the Taylor allowance and the output tracer's threshold.

# How many times the observed float32-vs-float64 difference of the analytic gradient widens its
# tolerance: the difference is one sample of the analytic side's own rounding.
ANALYTIC_ROUNDING_SAFETY = 2.0
# The complex step may move f's real part by this many eps |f| before f counts as not analytic.
COMPLEX_REAL_SHIFT = 1e3
# A disagreement this far below the largest in its column is not called responsible.
RESPONSIBLE_FRACTION = 0.1


def default_rtol(dtype: str) -> float:
    """sqrt(eps) of the analytic gradient's dtype: 1.5e-8 for float64, 3.5e-4 for float32."""
    return float(np.sqrt(_arrays.eps(dtype)))


def rtol_for(rtol: float | None, dtype: str) -> float:
    """The caller's rtol, else the default of ``dtype``."""
    return default_rtol(dtype) if rtol is None else float(rtol)


def tolerances(
    numeric: np.ndarray,
    dtype: str,
    rtol: float | None,
    atol: float | None,
    counted: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(rtol, atol, scale) in force: the defaults of the element rule where not given
    (``gradcheck._judge.verdict``). ``counted`` masks the elements whose numerical value may
    set the scale (jumps may not)."""
    rtol = default_rtol(dtype) if rtol is None else float(rtol)
    if rtol < 0 or (atol is not None and atol < 0):
        raise ValueError(f"tolerances must be non-negative, got rtol={rtol}, atol={atol}")
    usable = np.isfinite(numeric) if counted is None else np.isfinite(numeric) & counted
    scale = float(np.max(np.abs(numeric[usable]), initial=0.0))
    default_atol = max(rtol * scale, _arrays.FLOAT_TINY[dtype])
    return rtol, default_atol if atol is None else float(atol), scale


def limit_of(
    atol: float, rtol: float, numeric: np.ndarray, noise: np.ndarray | float = 0.0
) -> np.ndarray:
    """What an element may be off by before its error bar: ``atol + rtol |n| + z``."""
    return np.asarray(atol + rtol * np.abs(numeric) + noise)


def widened(widen: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The analytic side's own rounding as a widening of the limit, shaped like the input; an
    overflowed entry widens nothing (the overflowed analytic value is judged as such)."""
    if widen is None:
        return None
    w = np.asarray(widen, dtype=np.float64).reshape(shape)
    return np.asarray(np.where(np.isfinite(w), w, 0.0))


def leaf_atol(rtol: float, atol: float | None, analytic: np.ndarray) -> float:
    """A screen's located elements: the caller's atol, else ``rtol max |a|`` (the numerical
    gradient's maximum is not known there)."""
    if atol is not None:
        return atol
    finite = analytic[np.isfinite(analytic)]
    return rtol * float(np.max(np.abs(finite), initial=0.0))


def probe_tolerance(
    rtol: float,
    atol: float | None,
    numeric: float,
    error: float,
    typical: float,
    norm: float,
    own: float,
) -> float:
    """A screen probe's tolerance, its error bar included (``gradcheck._judge.screen``):
    ``rtol max(|D|, ||a * w_eff||) + e + |r . w_eff| (+ atol ||w_eff||)``."""
    tolerance = rtol * max(abs(numeric), typical) + error + own
    if atol is not None:
        tolerance += atol * norm
    return tolerance


def allowance(
    tolerance: np.ndarray, error: np.ndarray, analytic: np.ndarray, rtol_atol: tuple[float, float]
) -> np.ndarray:
    """What an element may be off by without its step error (``atol + rtol |n|``, noise, the
    analytic side's own rounding): a Taylor fail must exceed it. Where the numerical value is
    not finite (f NaN/Inf on one side of the stencil) there is no ``|n|``: the size is the
    analytic value's, ``atol + rtol |a|``."""
    rtol, atol = rtol_atol
    with np.errstate(invalid="ignore"):
        measured = tolerance - error
        return np.asarray(np.where(np.isfinite(measured), measured, atol + rtol * np.abs(analytic)))


# A product that lands among the subnormals is rounded to their spacing (eps times the smallest
# normal of its dtype: 1.4e-45 in float32, 4.9e-324 in float64), however small it is; a
# backward's chain of products may round so a few times before its result.
SUBNORMAL_ROUNDINGS = 4.0


def subnormal_spacing(dtype: str) -> float:
    """The spacing of the subnormal numbers of ``dtype`` (float32's for a dtype not known)."""
    known = dtype if dtype in _arrays.FLOAT_TINY else "float32"
    return _arrays.FLOAT_TINY[known] * _arrays.eps(known)


def agreement(
    want: np.ndarray, dtype: str, nondet_tol: float, exact: bool, scale: float = 1.0
) -> float:
    """Two backward results agree within ``sqrt(eps) max |want| + nondet_tol`` in the
    gradients' dtype (float32's eps below float64), and never closer than the rounding of
    their products among the subnormals: ``SUBNORMAL_ROUNDINGS (1 + |scale|)`` spacings of
    them, where ``want`` is a gradient scaled by ``scale`` (its rounding scaled with it).
    ``exact``: nondet_tol alone (the same computation twice rounds the same). A want with a
    NaN/Inf gives no scale."""
    if exact:
        return nondet_tol
    rtol = default_rtol("float64" if dtype == "float64" else "float32")
    size = float(np.max(np.abs(want), initial=0.0)) if np.all(np.isfinite(want)) else 0.0
    floor = SUBNORMAL_ROUNDINGS * (1.0 + abs(scale)) * subnormal_spacing(dtype)
    return max(rtol * size, floor) + nondet_tol


# How many units of rounding (eps of the gradient's dtype times its largest element) two
# backward calls may differ by when a reduction sums in another order each call.
NONDET_ULPS = 256.0


def rounding_unit(size: float, dtype: str) -> float:
    """One unit of a gradient's rounding: eps of its dtype (float32's below float64) times its
    largest element ``size``."""
    return float(_arrays.eps("float64" if dtype == "float64" else "float32")) * size


def nondet_rounding(size: float, dtype: str) -> float:
    """What two backward calls at the same point may differ by when a reduction sums in
    another order each call: ``NONDET_ULPS`` units of the gradient's rounding."""
    return NONDET_ULPS * rounding_unit(size, dtype)


# torch's atol passes a gradient that is zero to within it only where the numerical value
# cannot tell it from zero either: within this many error bars (``gradcheck._judge.zero``).
RESOLVED_BARS = 2.0


def resolved(error: np.ndarray | float) -> np.ndarray:
    """What the step cannot resolve about an element or probe: ``RESOLVED_BARS`` error bars."""
    return np.asarray(RESOLVED_BARS * np.asarray(error, dtype=np.float64))


def per_element(atol: float, size: int) -> float:
    """torch's atol for a probe that moves ``size`` elements: ``atol size``."""
    return atol * size


# How many times a re-measured probe's mismatch must move, in units of the two error bars,
# before the difference counts as moving with the step (``gradcheck._judge.screen_kinks``).
MOVED_BARS = 1.0


def moved_bars(first: float, later: float) -> float:
    """Two measurements of one probe at two steps differ beyond ``MOVED_BARS`` times the sum of
    their error bars."""
    return MOVED_BARS * (first + later)


def real_part_shift(eps: float, f0: float) -> float:
    """How far a complex step may move f's real part: ``COMPLEX_REAL_SHIFT eps max(1, |f0|)``."""
    return COMPLEX_REAL_SHIFT * eps * max(1.0, abs(f0))


def analyticity(got: float, expected: float) -> float:
    """The complex step against a real central difference along one direction agree within
    ``sqrt(eps) max(|got|, |expected|)`` of float64 (plus the central difference's bar)."""
    return default_rtol("float64") * max(abs(got), abs(expected))


def responsible(rtol: float, scale: float, errors: np.ndarray) -> float:
    """An output element is called responsible for a failing input element beyond
    ``max(rtol scale, RESPONSIBLE_FRACTION max error)``."""
    return max(rtol * scale, RESPONSIBLE_FRACTION * float(np.max(errors)))


def own_precision(
    items: tuple[Any, ...],
    own: tuple[np.ndarray | None, ...] | None,
    stick_f: Callable[..., Any],
    v: np.ndarray | None,
) -> Widening:
    """Per input, what its tolerance rests on: the measured rounding of the analytic side
    where there is one (rule 1, ``own`` from :func:`analytic_rounding`), else for a
    half-precision input the measuring stick (rule 2: autograd of ``stick_f``, the numerical
    side's f, in that precision against float64); None when every input keeps the default."""
    dtypes = [_arrays.dtype_name(x) for x in items]
    chosen = [
        DEFAULT if w is None else measured(w, dtype)
        for w, dtype in zip(own or [None] * len(dtypes), dtypes, strict=True)
    ]
    half = [
        dtype in HALF_DTYPES and m.basis == "default"
        for dtype, m in zip(dtypes, chosen, strict=True)
    ]
    if any(half):
        stick = measuring_stick(stick_f, items, v)
        if stick is not None:
            chosen = [s if h else m for s, h, m in zip(stick, half, chosen, strict=True)]
    if all(m.basis == "default" for m in chosen):
        return None
    return tuple(chosen)


def analytic_rounding(
    source: GradientSource,
    f: Callable[..., Any],
    items: tuple[Any, ...],
    v: np.ndarray | None,
    analytic: tuple[np.ndarray, ...],
    policy: str,
    scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[np.ndarray | None, ...] | None:
    """Per input below float64, ``ANALYTIC_ROUNDING_SAFETY (a - a64)``: the analytic gradient
    against the same source run on float64 inputs, i.e. its own rounding
    (float32 backprop through a saturated tanh loses every digit below eps |upstream|). Signed:
    a screen probe takes its inner product with the direction; a full check its size per
    element. None where that cannot be measured: f was not differentiated in float64, the
    source refuses float64 inputs, or (per input) it did not compute in float64
    (:func:`computed_in_float64`). The float64 run happens inside ``scope()``: where f's
    float64 runs compute every tensor in float64 (``gradcheck._sources.promote``), so does
    this run's backward."""
    if policy != "promoted":
        return None
    try:
        with scope():
            wide = source.gradients(f, tuple(_arrays.working_copy(x, "float64") for x in items), v)
    except Exception:  # a float32-only formula: nothing to measure, the plain rule applies
        return None
    with np.errstate(invalid="ignore"):  # inf - inf (sqrt at 0 in both): NaN, widens nothing
        return tuple(
            ANALYTIC_ROUNDING_SAFETY * (a - w)
            if (d := _arrays.dtype_name(x)) != "float64" and computed_in_float64(a, w, d)
            else None
            for x, a, w in zip(items, analytic, wide, strict=True)
        )


def basis(
    rtol: float | None, atol: float | None, own: OwnRounding
) -> tuple[float | None, tuple[str, str]]:
    """The rtol in force and (tolerance_basis, tolerance_note): the caller's ('given'), else
    the one the analytic side's measured precision sets (rule 1 or 2, or the default)."""
    if rtol is not None or atol is not None:
        return rtol, ("given", "")
    return own.rtol, (own.basis, own.detail)
