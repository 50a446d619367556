"""Compare: (numeric, error estimate, analytic, tolerance) -> per-element errors and a verdict.

The tolerance rule, stated once
-------------------------------
For every element i of an input, with ``n`` the numerical value, ``e`` its error estimate and
``a`` the analytic value::

    tolerance_i = atol + rtol * |n_i| + e_i
    fail          if |a_i - n_i| > tolerance_i
    inconclusive  otherwise, if e_i > WIDE_ERROR_BAR * max(|n_i|, |a_i|, scale)
                  or n_i is not finite (f returned NaN/Inf inside the stencil)
    pass          otherwise, and only where a, n, e and the tolerance are all finite

* ``rtol`` defaults to ``sqrt(eps)`` of the analytic gradient's dtype (1.5e-8 for float64,
  3.5e-4 for float32): a correct gradient is good to a few eps times the problem's condition,
  and sqrt(eps) leaves room for that while catching a 1e-4 relative error in float64.
* ``atol`` defaults to ``rtol * scale``, where ``scale = max_i |n_i|``: elements far smaller than
  the largest are judged against the gradient's size, since the rounding in a gradient scales
  with the terms that made it, not with its own value. It is never below the smallest normal
  number of the analytic dtype (1.2e-38 in float32): a subnormal gradient has lost the bits a
  relative tolerance would judge.
* ``e`` widens the tolerance: a fail is only called when even the most favourable value within
  the numerical error bar is beyond tolerance. The judging loop (``gradcheck._judge.loop``) first
  applies the rule with ``e = 0`` to a plain central difference: an element that passes there
  needs no bar (its ``error_estimate`` is NaN); only the others get one. When the error bar
  is wider than WIDE_ERROR_BAR (1%) of the gradient's size, a pass would vouch for nothing, so
  the element is inconclusive.
* An analytic value that is NaN/Inf where the numerical one is finite is a fail.
* A float32 (or lower) analytic gradient also carries its own rounding: when f and the gradient
  source run in float64 too, ``w_i = ANALYTIC_ROUNDING_SAFETY |a_i - a64_i|`` (the same code in
  float64) is added to the tolerance. float32 backprop through a saturated tanh (``1 - y**2``
  from a y rounded next to 1) is then judged as right as float32 can be; a formula that is
  wrong in both dtypes moves a and a64 alike and is still caught.

At the edges (``gradcheck._judge.kinks`` finds them; docs/verdicts.md lists them all),
each element also gets a reason:

* ``noise``: f is nondeterministic. Its noise bar ``z_i`` joins the tolerance
  (``tolerance_i = atol + rtol |n_i| + e_i + z_i``) and the wide-bar test (``e_i + z_i``);
  a wide bar from noise is inconclusive with reason ``noise``, otherwise ``wide``.
* ``kink``/``subgradient``: left and right derivatives ``L_i``, ``R_i`` differ at x by more
  than ``atol + rtol max(|L_i|, |R_i|) + z_i`` (a smaller kink is judged by the rule above, as
  ``refined``: it cannot move a right value outside the tolerance). The
  element is a pass ("subgradient") when ``min(L_i, R_i) - s_i <= a_i <= max(L_i, R_i) + s_i``
  with ``s_i = their error bars + atol + rtol max(|L_i|, |R_i|) + z_i``; otherwise inconclusive
  ("kink"). Kinks are never a fail.
* ``jump``: f jumps at x: inconclusive, never a fail.
* ``refined``: f is smooth at x but not across the whole stencil; ``n_i``/``e_i`` come from
  a smaller stencil and the rule above applies unchanged.
* ``nonfinite`` and ``wide``: the two inconclusive cases of the rule above.
* ``taylor``: an element the rule left inconclusive (``wide``/``nonfinite``) decided by the
  Taylor-remainder test (``gradcheck._judge.compare.decide``).

The rule is written once, in :func:`rule` (:func:`rule_verdict` over a set); every verdict
goes through it: the elements (``gradcheck._judge.compare``), the level-1 test, the kinks, the
screen's probes, the re-stepping test, the Taylor test, the backward's contract, the complex
step's analyticity test, the traced outputs and the descent comparison. Every default
tolerance they judge with is built in ``gradcheck._judge.tolerance``.

``relative error`` in reports is ``|a_i - n_i| / max(|n_i|, |a_i|, atol)``; kink and jump
elements are left out of the maxima and of the worst element.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

WIDE_ERROR_BAR = 0.01

# Why an element's verdict is what it is, beyond the plain rule; '' for a plain pass or fail.
REASONS: dict[str, str] = {
    "subgradient": "f has a kink here and the analytic value lies between the left and right "
    "derivatives: accepted as a subgradient",
    "kink": "f has a kink here (left and right derivatives differ) and the analytic value lies "
    "outside them",
    "jump": "f jumps here: there is no derivative to compare with",
    "noise": "f is nondeterministic and its noise makes the error bar wider than 1% of the "
    "gradient",
    "wide": "the error bar is wider than 1% of the gradient",
    "nonfinite": "f returned NaN/Inf inside the stencil",
    "refined": "judged with another step than the automatic one: f is not smooth across the "
    "full stencil, or rounding or truncation made its error bar the larger part of the "
    "tolerance",
    "taylor": "decided by the Taylor-remainder test",
    "huge": "|x| is at least 1/eps of its dtype: the floats there are spaced 1 or more apart, "
    "so no difference can resolve f between them (floor, round, frac are the identity or zero "
    "on every float there)",
}


class Verdict(str, enum.Enum):
    """The answer for an element, an input, a check: compare with plain strings freely."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


def combine(verdicts: list[Verdict]) -> Verdict:
    """Any fail fails; otherwise any inconclusive is inconclusive; otherwise pass."""
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


@dataclass(frozen=True)
class Nonsmooth:
    """Per element, what ``gradcheck._judge.kinks`` found (flat arrays, one entry per element).

    Fields:
        kind: '' (smooth across the stencil), 'refined', 'kink' or 'jump'.
        left, right: the one-sided derivatives (NaN where not computed).
        side_error: their combined error bar.
    """

    kind: np.ndarray
    left: np.ndarray
    right: np.ndarray
    side_error: np.ndarray


# How every worst-elements table is sorted, in words, for the line above it.
TABLE_ORDER = (
    "sign flips first, then by |analytic - numeric| / tolerance, largest first; the elements "
    "of the max abs and rel errors always shown"
)

# The columns of a worst-elements table, (header, key of a worst_elements() row), in the order
# every front door shows them: CheckResult.table(), the HTML report, the pytest failure message.
WORST_ELEMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("index", "index"),
    ("analytic", "analytic"),
    ("numeric", "numeric"),
    ("abs err", "abs_error"),
    ("rel err", "rel_error"),
    ("tolerance", "tolerance"),
    ("reason", "reason"),
    ("verdict", "verdict"),
)


@dataclass(frozen=True)
class InputComparison:
    """The comparison of one input's gradient, element by element.

    Fields:
        position: which input (0-based).
        shape, dtype: the input's shape and dtype.
        verdict: the input's verdict (see the module docstring for the rule).
        rtol, atol: the tolerances in force.
        reasons: why the verdict is not a plain pass, one sentence each.
        numeric, analytic, error_estimate, tolerance, element_verdicts: the arrays, shaped
            like the input (element_verdicts holds 'pass'/'fail'/'inconclusive' strings).
            ``error_estimate`` is NaN where the judging loop passed an element at its first
            level, without an error bar (``gradcheck._judge.loop``).
        element_reasons: per element, a key of ``REASONS`` or '' (same shape).
        notes: sentences that are not about single elements (e.g. the noise widening).
        elements: None when the arrays cover every element (shaped like the input); otherwise
            the flat indices of the elements they hold, in order (a screen differentiates only
            the elements it located, ``gradcheck._judge.screen``); the maxima and the worst element
            are then over those elements only.
        name: the input's name when known (a dict key, f's parameter name), else ''.
        tolerance_basis: what the tolerance rests on (``gradcheck._judge.tolerance``): 'default'
            (``sqrt(eps)`` of the dtype), 'measured' (the analytic side's own rounding, from
            the same source run in float64), 'stick' (the measuring stick: autograd of the
            same maths in that precision against float64) or 'given' (the caller's rtol/atol).
        tolerance_note: one sentence on that measurement ('' for 'default' and 'given').

    Derived from the arrays (properties): ``max_abs_error``, ``max_rel_error`` (over elements
    with a finite numerical value, kinks and jumps left out), ``max_error_estimate``, the
    worst element (largest ``|a - n| / tolerance``): ``worst_index``, ``worst_numeric``,
    ``worst_analytic``, ``worst_error_estimate``, ``worst_tolerance``; and what a pass vouches
    for: ``absolute_resolution`` (the largest tolerance of a judged element: an error larger
    than that in any element is a fail) and ``resolution`` (that over the gradient's size
    ``max |n|``: the smallest relative error this check would have caught; 1 or more means the
    gradient is zero within what f's rounding resolves, read ``absolute_resolution``).
    """

    position: int
    shape: tuple[int, ...]
    dtype: str
    verdict: Verdict
    rtol: float
    atol: float
    reasons: tuple[str, ...] = ()
    numeric: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    analytic: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    error_estimate: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    tolerance: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    element_verdicts: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    element_reasons: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    notes: tuple[str, ...] = ()
    elements: np.ndarray | None = field(default=None, repr=False, compare=False)
    name: str = ""
    tolerance_basis: str = "default"
    tolerance_note: str = ""

    def _flat(self, name: str) -> np.ndarray:
        values: np.ndarray = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
        return values

    def _judged(self) -> np.ndarray:
        """Elements counted in the maxima: finite errors, not at a kink or jump."""
        why = np.asarray(self.element_reasons, dtype=object).reshape(-1)
        at_edge = np.isin(why, ["kink", "jump", "subgradient"]) if why.size else False
        return np.asarray(np.isfinite(self._abs_errors()) & ~at_edge)

    def _abs_errors(self) -> np.ndarray:
        return np.asarray(np.abs(self._flat("analytic") - self._flat("numeric")))

    @property
    def max_abs_error(self) -> float:
        return float(np.max(self._abs_errors()[self._judged()], initial=0.0))

    @property
    def max_rel_error(self) -> float:
        n, a, err = self._flat("numeric"), self._flat("analytic"), self._abs_errors()
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = np.maximum(np.maximum(np.abs(n), np.abs(a)), self.atol)
            rel = np.where(err == 0, 0.0, err / denom)
        return float(np.max(rel[self._judged()], initial=0.0))

    @property
    def absolute_resolution(self) -> float:
        tolerance = self._flat("tolerance")
        usable = self._judged() & np.isfinite(tolerance)
        return float(np.max(tolerance[usable], initial=0.0)) if np.any(usable) else math.nan

    @property
    def resolution(self) -> float:
        n = self._flat("numeric")
        usable = self._judged() & np.isfinite(n)
        scale = float(np.max(np.abs(n[usable]), initial=0.0))
        absolute = self.absolute_resolution
        if math.isnan(absolute):
            return math.nan
        return absolute / scale if scale > 0 else math.inf

    def _maxima(self) -> list[int]:
        """Flat positions of the elements behind ``max_abs_error`` and ``max_rel_error``."""
        judged = self._judged()
        if not np.any(judged):
            return []
        n, a, err = self._flat("numeric"), self._flat("analytic"), self._abs_errors()
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = np.maximum(np.maximum(np.abs(n), np.abs(a)), self.atol)
            rel = np.where(err == 0, 0.0, err / denom)
        out = []
        for values in (err, rel):
            masked = np.where(judged, values, -np.inf)
            if masked.max() > 0:
                out.append(int(np.argmax(masked)))
        return out

    @property
    def max_error_estimate(self) -> float:
        e = self._flat("error_estimate")
        return float(np.max(e[np.isfinite(e)], initial=0.0))

    def _worst(self) -> int:
        """The position in the arrays of the worst element; -1 when they are empty."""
        n = self._flat("numeric")
        if n.size == 0:
            return -1
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = _ratio(self._abs_errors(), self._flat("tolerance"))
        ratio = np.where(np.isfinite(n), np.nan_to_num(ratio, nan=np.inf), -1.0)
        why = np.asarray(self.element_reasons, dtype=object).reshape(-1)
        if why.size:
            ratio = np.where(np.isin(why, ["kink", "jump", "subgradient"]), -2.0, ratio)
        return int(np.argmax(ratio))

    @property
    def worst_index(self) -> tuple[int, ...]:
        flat = self._worst()
        if flat < 0:
            return ()
        where = flat if self.elements is None else int(self.elements[flat])
        return tuple(int(i) for i in np.unravel_index(where, self.shape)) if self.shape else ()

    def _at_worst(self, name: str) -> float:
        flat = self._worst()
        return float(self._flat(name)[flat]) if flat >= 0 else float("nan")

    @property
    def worst_numeric(self) -> float:
        return self._at_worst("numeric")

    @property
    def worst_analytic(self) -> float:
        return self._at_worst("analytic")

    @property
    def worst_error_estimate(self) -> float:
        return self._at_worst("error_estimate")

    @property
    def worst_tolerance(self) -> float:
        return self._at_worst("tolerance")

    def sign_flips(self) -> np.ndarray:
        """Flat positions (in the arrays) of failing elements whose analytic and numerical
        values have opposite signs: the most telling kind of wrong gradient."""
        a, n = self._flat("analytic"), self._flat("numeric")
        failing = np.asarray(self.element_verdicts, dtype=object).reshape(-1) == "fail"
        if failing.size != a.size:
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(failing & (np.sign(a) * np.sign(n) < 0))

    def worst_elements(self, count: int = 5) -> list[dict[str, object]]:
        """The elements a table shows, in this order (``TABLE_ORDER``): failing sign flips,
        then by ``|a - n| / tolerance``, largest first; the first ``count`` of them, plus the
        elements of ``max_abs_error`` and ``max_rel_error`` when they are not among them."""
        abs_err = np.abs(self.analytic - self.numeric).reshape(-1)
        ratio = _ratio(abs_err, self.tolerance.reshape(-1))
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        order = _table_order(ratio, self.sign_flips(), self._maxima(), count)
        rows = []
        for flat in order:
            where = int(flat) if self.elements is None else int(self.elements[flat])
            index = tuple(int(i) for i in np.unravel_index(where, self.shape)) if self.shape else ()
            n = float(self.numeric.reshape(-1)[flat])
            a = float(self.analytic.reshape(-1)[flat])
            rows.append(
                {
                    "index": index,
                    "analytic": a,
                    "numeric": n,
                    "abs_error": abs(a - n),
                    "rel_error": _rel(abs(a - n), n, a, self.atol),
                    "error_estimate": float(self.error_estimate.reshape(-1)[flat]),
                    "tolerance": float(self.tolerance.reshape(-1)[flat]),
                    "verdict": str(self.element_verdicts.reshape(-1)[flat]),
                    "reason": _element_reason(self.element_reasons, int(flat)),
                }
            )
        return rows


def _table_order(ratio: np.ndarray, flips: np.ndarray, maxima: list[int], count: int) -> list[int]:
    """Sign flips first, then the rest by ratio (largest first): ``count`` of them, with the
    elements behind the quoted maxima added at the end when the cut left them out."""
    by_ratio = [int(i) for i in np.argsort(-ratio, kind="stable")]
    flipped = set(flips.tolist())
    order = [i for i in by_ratio if i in flipped] + [i for i in by_ratio if i not in flipped]
    shown = order[:count]
    return shown + [i for i in dict.fromkeys(maxima) if i not in shown]


def _element_reason(reasons: np.ndarray, flat: int) -> str:
    return str(reasons.reshape(-1)[flat]) if reasons.size else ""


def _ratio(err: np.ndarray, tol: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err == 0, 0.0, err / tol)


def _rel(err: float, n: float, a: float, atol: float) -> float:
    denom = max(abs(n), abs(a), atol)
    return 0.0 if err == 0 else (err / denom if denom > 0 else float("inf"))


def rule(
    analytic: np.ndarray,
    numeric: np.ndarray,
    bar: np.ndarray | float,
    limit: np.ndarray | float,
    magnitude: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """The verdict rule, per element: the one place it is written (module docstring).

    ``limit`` is what the gradient may be off by without the numerical error bar
    (``atol + rtol |n|``, plus noise and the analytic side's own rounding where measured), ``bar``
    the numerical side's error bar (0 where none was needed), ``magnitude`` the size a pass
    vouches for (``max(|n|, |a|, scale)``). Returns (verdicts, reasons), string arrays:

    * fail ('') where ``a`` is NaN/Inf and ``n`` finite, or where every number is finite and
      ``|a - n| > limit + bar``;
    * inconclusive ('nonfinite') where ``n`` is not finite, or where ``limit`` is not finite or
      ``bar`` is NaN: the comparison cannot be made, so it shows nothing;
    * inconclusive ('wide') where ``bar > WIDE_ERROR_BAR * magnitude`` (an infinite bar
      included), or ``magnitude`` is NaN: a pass would vouch for nothing (a zero magnitude
      vouches for nothing only under an infinite bar; an infinite magnitude asks for no
      width at all);
    * pass ('') only where the comparison shows it: every number finite, ``|a - n| <= limit +
      bar``, and the bar narrow. Pass is never what is left when no test fired.

    Every verdict of a check goes through it: the elements of the full check and the level-1
    test, the screen's probes, the re-stepping test, the Taylor test, the backward's
    contract, the complex step's analyticity test, the traced outputs and the descent runs.
    """
    failed, passed, unknown, wide = _rule_masks(analytic, numeric, bar, limit, magnitude)
    shape = failed.shape
    verdicts = np.full(shape, Verdict.INCONCLUSIVE.value, dtype=object)
    why = np.full(shape, "", dtype=object)
    why[unknown] = "nonfinite"
    why[wide] = "wide"
    verdicts[passed] = Verdict.PASS.value
    verdicts[failed] = Verdict.FAIL.value
    return verdicts, why


def _rule_masks(
    analytic: np.ndarray | float,
    numeric: np.ndarray | float,
    bar: np.ndarray | float,
    limit: np.ndarray | float,
    magnitude: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rule` as boolean masks, broadcast to one shape: (fail, pass, inconclusive
    'nonfinite', inconclusive 'wide')."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    bar_, magnitude_ = np.asarray(bar, dtype=np.float64), np.asarray(magnitude, dtype=np.float64)
    limit_ = np.asarray(limit, dtype=np.float64)
    finite_n, limit_ok, bar_inf = np.isfinite(n), np.isfinite(limit_), np.isinf(bar_)
    with np.errstate(invalid="ignore"):
        off = np.abs(a - n) > limit_ + bar_  # False wherever a number is NaN or the sum is inf
        failed = finite_n & ((off & limit_ok) | ~np.isfinite(a))
        blind = finite_n & ~failed & (~limit_ok | np.isnan(bar_))
        open_ = finite_n & ~failed & ~blind
        narrow = ~((bar_ > WIDE_ERROR_BAR * magnitude_) & (magnitude_ > 0))
        wide = open_ & (~narrow | bar_inf | np.isnan(magnitude_))
        passed = open_ & ~wide
    shape = np.broadcast_shapes(a.shape, n.shape, bar_.shape, magnitude_.shape, limit_.shape)
    masks = (failed, passed, ~finite_n | blind, wide)
    return tuple(np.broadcast_to(m, shape) for m in masks)  # type: ignore[return-value]


def rule_verdict(
    analytic: np.ndarray | float,
    numeric: np.ndarray | float,
    bar: np.ndarray | float,
    limit: np.ndarray | float,
    magnitude: np.ndarray | float,
) -> Verdict:
    """One verdict for a set of comparisons (a probe, a contract item, a Taylor run, a descent
    run): :func:`rule` element by element, then :func:`combine`. Nothing to compare is a pass
    only because there is nothing that could be wrong."""
    numbers = (analytic, numeric, bar, limit, magnitude)
    if all(isinstance(v, (int, float)) for v in numbers):  # one comparison: no arrays
        return _one_verdict(*(float(v) for v in numbers))
    failed, passed, _, _ = _rule_masks(analytic, numeric, bar, limit, magnitude)
    if np.any(failed):
        return Verdict.FAIL
    return Verdict.PASS if np.all(passed) else Verdict.INCONCLUSIVE


def _one_verdict(a: float, n: float, bar: float, limit: float, magnitude: float) -> Verdict:
    """:func:`_rule_masks` for one comparison of plain floats, in the same order (a probe or
    a contract item is judged many times a check; arrays of one element cost more than the
    comparison). ``tests/test_compare.py`` holds the two to the same verdicts."""
    finite_n, limit_ok = math.isfinite(n), math.isfinite(limit)
    if finite_n and ((abs(a - n) > limit + bar and limit_ok) or not math.isfinite(a)):
        return Verdict.FAIL
    if not finite_n or not limit_ok or math.isnan(bar):
        return Verdict.INCONCLUSIVE
    wide = bar > WIDE_ERROR_BAR * magnitude and magnitude > 0
    if wide or math.isinf(bar) or math.isnan(magnitude):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
