"""Differentiate (screen): verify a whole gradient with a few random directional derivatives,
then find the wrong elements by bisection.

A full numerical gradient costs four evaluations of f per element, and nothing cheaper can
*estimate* a gradient. But a check is handed the analytic gradient ``a`` and only has to
*verify* it: along a direction w, ``d/dt f(x + t w)`` at ``t = 0`` is ``g . w`` for the true
gradient g, and a directional derivative costs four evaluations whatever n is.

A probe, once
-------------
For input k with n elements, a probe draws Rademacher signs ``u_i = +-1`` from the seed and moves
every element along ``w_i = u_i h_i / t0``, where ``h_i`` is the engine's own step
(``eps**(1/3) max(1, |x_i|)``, or the caller's) and ``t0 = eps**(1/3)``: so ``|w_i| = s_i =
max(1, |x_i|)`` with the automatic step. f is evaluated at the realised points
``fl(x + tau w)`` for ``tau = +-T, +-T/2`` with ``T = kappa t0`` and the engine's Richardson
extrapolation and error estimate (``gradcheck._numerics.engine._richardson``, applied to the
parameter
``tau``) give the directional derivative ``D`` and its error bar ``e``. The analytic side is the
inner product with the *realised* direction,
``a . w_eff`` with ``w_eff = (4 (d_{+T/2} - d_{-T/2}) / T - (d_{+T} - d_{-T}) / (2 T)) / 3``
(``d_tau = fl(x + tau w) - x``), which is exactly what the Richardson combination measures to
first order: rounding of the perturbed points costs nothing.

The tolerance (not scaled by the size)::

    tolerance = rtol max(|D|, ||a * w_eff||_2) + e  (+ atol ||w_eff||_2 when atol is given)
    fail          if |a . w_eff - D| > tolerance, or a . w_eff is NaN/Inf where D is finite
    inconclusive  otherwise, if D is NaN/Inf or e > 1% of max(|D|, |a . w_eff|, ||a * w_eff||_2)

``rtol`` is the input's (sqrt(eps) of its dtype by default). ``||a * w_eff||_2`` is the typical
size of ``|D|`` over random signs; it keeps a probe whose signs happen to cancel from demanding
more than the gradient's own precision.

The step. The engine's step balances truncation against rounding for one element. Along a
direction the rounding of f can dominate (a sum of n terms: ``|f| ~ n`` while ``|D| ~ sqrt(n)``),
so the first probe is a pilot at ``kappa = 1``: its error bar splits into truncation
``|D1 - D2| ~ kappa**2`` and rounding ``~ 1/kappa``, and when they are out of balance by more
than 8x the remaining probes use the balancing ``kappa = (rounding / (2 truncation))**(1/3)``,
clipped to ``[1/16, 16]``. The pilot then stays in the record (it can still fail the check) and
``probes`` more are taken; otherwise the pilot is the first of ``probes``.

The split is a model: rounding is taken as ``ROUNDING_SAFETY eps |f|`` per evaluation. A long
sequential reduction (``cumsum``) rounds far coarser, and the pilot can read that as truncation
and shrink the step, which makes it worse. So unless the step grows, the pilot's direction is
measured again at a smaller step (the balancing one, or a quarter of the engine's), which is
then the first screen probe (a 'pilot' record when the pilot itself is one). Rounding shows
either way: the spread grows where truncation (~ t**2) says it shrinks (``s t`` per
evaluation for a spread s at step t: an error odd in the step does exactly that), or the nine
values of f along the line scatter about a quartic in tau by more than the model allows
(``ROUNDING_FIT_SIGMAS`` times the residual scatter; four spare degrees of freedom see
rounding that makes the two central differences agree by chance). When either exceeds the
model, that rounding u is f's: every probe's bar adds ``3 max(u / T, |D1 - D2|)`` (the spread
counted as rounding too, since rounding can grow with the step), both pilot records are judged
again with it, the step is balanced again against it, and ``probes`` screen probes follow.
The reasons say so ("f rounds at up to ... per evaluation along the pilot's direction").

What a screen of k probes guarantees
------------------------------------
Let g be the true gradient and suppose the analytic one is wrong in a single element j, by
``delta``. Every probe's analytic value moves by exactly ``delta w_eff_j`` (``|w_eff_j| = s_j``
up to rounding), whatever the signs: the screen fails *with certainty* as soon as, for one
probe p::

    |delta| s_j > bound_p = (rtol max(|D_p|, ||g * s||_2) + 2 e_p [+ atol ||s||_2] [+ |r . w_p|])
                            / (1 - rtol)

(the factor 2: the numerical value may itself be off by ``e_p`` in the unhelpful direction;
``r`` is a float32 gradient's own rounding where measured, see ``screen``).
The result reports ``bound = min_p bound_p`` per input. In terms of n, the dtype and the
gradient's norm: ``|D_p| <= lambda ||g * s||_2`` with probability ``>= 1 - 2 exp(-lambda**2/2)``
(Hoeffding), so the first term is about ``sqrt(eps) ||g * s||_2`` — ``1.5e-8 sqrt(n) rms(g)`` in
float64, ``3.5e-4 sqrt(n) rms(g)`` in float32, for ``|x| <= 1`` — and ``e_p`` is the rounding of f
across the probe, ``~ 3 ROUNDING_SAFETY eps_f |f| / (kappa t0)``, plus a truncation term that
the step balances against it. A single element is therefore checked to about
``sqrt(eps) ||g||_2`` absolute, against ``sqrt(eps) max|g|`` for the full check: the screen trades
a factor of up to sqrt(n) in resolution for a cost independent of n.

Errors in several elements: each probe fails with probability ``>= 1/2`` once the largest
error ``|delta_j| s_j`` exceeds ``bound_p`` (a Rademacher sum is at least its largest term with
probability ``>= 1/2``: flip the sign of that term), so k probes miss it with probability
``<= 2**-k``. They cannot cancel for a single element, which is why the signs are Rademacher.

Localisation
------------
When a probe fails, its mismatch ``m = a . w_eff - D`` is split by bisection: a probe moving only
the elements of block B measures ``m_B``; the other half's mismatch is ``m - m_B`` with the two
tolerances added. Halves whose mismatch exceeds their tolerance are searched further (the larger
one when neither does); a block of one element is a probe along that element alone, which is
the engine's central difference for it: its numeric value ``D / w_eff_j`` and error bar
``e / |w_eff_j|`` go into the same per-element comparison (``gradcheck._judge.verdict``) as a full
check,
with ``atol = rtol max|a|`` by default (the numerical gradient's maximum is not known).

Before bisecting, the failing probes' signs narrow the search when one element is wrong: its
mismatch has sign ``sign(delta) u_pj`` in every failing probe p, so only elements whose signs
agree with all of them (or disagree with all) are suspects: ``~ 2 n / 2**K`` of them for K
failing probes. One wrong element is then found in ``ceil(log2(2 n / 2**K)) + 1`` probes of two
pairs of evaluations each. The search goes on (over every element not yet differentiated)
until the located elements explain the lead probe's mismatch to within the tolerances. Each
input may spend ``4 ceil(log2 n) + 8`` probes on localisation; when they run out first, the
elements never differentiated are counted as ``unresolved`` and the reasons say so. An error
spread over many elements (both halves of a block carry mismatch ``SPREAD_BRANCHES`` times)
cannot be found element by element at that price: the search then stops after
``SPREAD_PROBES`` more probes, and the reasons say the error is spread out.

Kinks: a probe that fails, or is inconclusive because its two central differences disagree,
is measured again at smaller steps before it counts (``gradcheck._judge.screen_kinks``); a
step the caller gave is never exceeded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge import screen_kinks as _kinks
from gradcheck._judge.verdict import (
    InputComparison,
    Verdict,
    combine,
    compare,
    default_rtol,
    rule,
)
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import noise as _noise
from gradcheck._numerics import probe as _probe

DEFAULT_PROBES = 5
STEP_SCALE_LIMIT = 16.0
STEP_IMBALANCE = 8.0
# A spread at the balancing step this many times what truncation (~ t**2) plus the modelled
# rounding predict is f's own rounding, which eps |f| missed.
ROUNDING_SURPRISE = 4.0
# A fit's residual scatter times this bounds f's rounding per evaluation (as LADDER_SAFETY).
ROUNDING_FIT_SIGMAS = 4.0
# (4 D(T/2) - D(T)) / 3 weighs the four values of f by 8/3, 8/3, 1/3, 1/3 over 2 T: an error of
# u in each moves it by at most 3 u / T.
RICHARDSON_WEIGHT = 3.0
NONFINITE_SHOWN = 16
# Bisection splits with mismatch in both halves after which the error counts as spread out,
# and the bisection probes left to it then.
SPREAD_BRANCHES = 8
SPREAD_PROBES = 8


@dataclass(frozen=True)
class Probe:
    """One directional-derivative comparison.

    Fields:
        input: which input (0-based).
        kind: 'pilot' (chose the step), 'screen', 'localise' (a block of the bisection), or
            'restep' (a failing probe measured again at a smaller step: screen_kinks).
        size: how many elements the direction moves.
        step_scale: kappa, the probe's step in units of the engine's step.
        numeric: the numerical directional derivative D.
        analytic: the analytic gradient's inner product with the realised direction.
        error_estimate: e, the error bar of D.
        tolerance: see the module docstring.
        verdict: 'pass', 'fail' or 'inconclusive'.
    """

    input: int
    kind: str
    size: int
    step_scale: float
    numeric: float
    analytic: float
    error_estimate: float
    tolerance: float
    verdict: Verdict

    @property
    def rel_error(self) -> float:
        err = abs(self.analytic - self.numeric)
        denom = max(abs(self.numeric), abs(self.analytic))
        return 0.0 if err == 0 else (err / denom if denom > 0 else float("inf"))


@dataclass(frozen=True)
class Screen:
    """What a screen did (``CheckResult.screen`` when the mode is 'screen').

    Fields:
        probes: every probe, in order (pilot, screen, then localisation probes).
        bounds: per input, the smallest single-element error caught with certainty: an error
            ``delta`` in element j fails the screen when ``|delta| max(1, |x_j|) > bound``
            (automatic step; see the module docstring). NaN when no probe was conclusive.
        located: per input, the flat indices of the elements differentiated one by one.
        unresolved: per input, how many elements were never differentiated when the located
            ones do not explain a failing probe (the localisation budget ran out); 0 otherwise.
    """

    probes: tuple[Probe, ...]
    bounds: tuple[float, ...]
    located: tuple[tuple[int, ...], ...]
    unresolved: tuple[int, ...]

    def summary(self) -> str:
        """'screen of N probes, worst probe rel err X, single-element bound B' in a few words."""
        screening = [p for p in self.probes if p.kind not in ("localise", "restep")]
        worst = max((p.rel_error for p in screening), default=0.0)
        bound = min(self.bounds, default=math.nan)
        text = f"screen of {len(screening)} probes, worst probe rel err {worst:.3g}, "
        text += f"single-element bound {bound:.3g}"
        resteps = sum(p.kind == "restep" for p in self.probes)
        localising = len(self.probes) - len(screening) - resteps
        located = sum(len(found) for found in self.located)
        if resteps:
            text += f", {resteps} re-measured at smaller steps"
        if localising:
            text += f", {localising} bisection probes located {located} element(s)"
        return text


@dataclass(frozen=True)
class ScreenOutcome:
    """The screen's comparisons per input plus what the check result reports about it."""

    screen: Screen
    comparisons: tuple[InputComparison, ...]
    setup: _engine.Setup
    noise_floor: float = 0.0
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Direction:
    """What a probe's realised direction ``w_eff`` contributes to its judgement."""

    analytic: float  # a . w_eff
    typical: float  # ||a * w_eff||_2
    norm: float  # ||w_eff||_2
    own: float  # |r . w_eff|, the analytic side's own rounding (0.0: not measured)


@dataclass(frozen=True)
class _Measure:
    """A probe with what localisation needs: its signs and which elements it moved.

    ``w_eff`` is kept only where localisation reads it, so that a screen of a large input holds
    one byte per element per probe (the signs), not sixteen: on the block for a block probe,
    for every element for a failing whole-input probe, None otherwise."""

    probe: Probe
    signs: np.ndarray  # int8
    block: np.ndarray | None  # None: every element
    direction: _Direction
    w_eff: np.ndarray | None
    spread: float  # |D(T) - D(T/2)|, the two central differences' disagreement
    values: np.ndarray  # f at x + tau w, tau = T, -T, T/2, -T/2

    @property
    def mismatch(self) -> float:
        return self.probe.analytic - self.probe.numeric


def screen(
    f: Any,
    items: tuple[Any, ...],
    analytic: Sequence[np.ndarray],
    rtols: Sequence[float | None],
    atols: Sequence[float | None],
    *,
    seed: int = 0,
    probes: int = DEFAULT_PROBES,
    step: Any = None,
    dtype_policy: _engine.DtypePolicy = "auto",
    batch: Any = "auto",
    memory_budget: int = 4 * 2**20,
    nondeterministic: _noise.NondeterminismPolicy = "widen",
    analytic_rounding: Callable[[str], Sequence[np.ndarray | None] | None] | None = None,
    inputs: frozenset[int] | None = None,
) -> ScreenOutcome:
    """Screen every input's analytic gradient with ``probes`` probes and localise failures.

    f is evaluated once more at x first (``gradcheck._numerics.noise.probe_noise``): a
    nondeterministic
    f widens every probe's error bar by its noise ('widen'), or makes the screen inconclusive
    ('inconclusive'), or is ignored ('ignore'). ``analytic_rounding``, given the dtype policy,
    returns per input the analytic side's own rounding ``r`` (signed, shaped like the input;
    None where not measured): a probe's tolerance adds ``|r . w_eff|``, an element's ``|r_j|``.
    ``inputs``: the positions to screen (None: all); the others get no comparison here (the
    judging loop checks them element by element) and empty entries in the record.
    """
    if not (isinstance(probes, int) and not isinstance(probes, bool) and probes >= 1):
        raise ValueError(f"probes must be a positive integer, got {probes!r}; the default is 5")
    setup = _engine.prepare(f, items, step, dtype_policy, batch, memory_budget)
    noise = _noise.probe_noise(
        _probe.Probe(setup.f, items, setup.dtypes), setup.f0, nondeterministic
    )
    sigma = 0.0 if nondeterministic == "ignore" else noise.sigma
    own = analytic_rounding(setup.policy) if analytic_rounding is not None else None
    records: list[Probe] = []
    bounds: list[float] = []
    located: list[tuple[int, ...]] = []
    unresolved: list[int] = []
    comparisons: list[InputComparison] = []
    for k, x in enumerate(items):
        if inputs is not None and k not in inputs:
            bounds.append(math.nan)
            located.append(())
            unresolved.append(0)
            continue
        prober = _Prober(setup, k, x, np.asarray(analytic[k], dtype=np.float64), rtols[k], atols[k])
        prober.sigma = sigma
        prober.max_kappa = STEP_SCALE_LIMIT if step is None else 1.0  # a given step: at most
        if own is not None and own[k] is not None:
            prober.own = np.nan_to_num(np.asarray(own[k], dtype=np.float64).reshape(-1))
        rng = np.random.default_rng([seed, k])
        screened = _kinks.second_looks(prober, _screen_input(prober, rng, probes))
        leaves, left = _localise(prober, screened) if _failed(screened) else ([], 0)
        leaves = [*_nonfinite_leaves(prober, screened[0]), *leaves]
        measures = [*screened, *prober.localise_log]
        records.extend(m.probe for m in measures)
        bounds.append(_bound(prober, [m for m in screened if m.probe.kind == "screen"]))
        located.append(tuple(int(leaf.index) for leaf in leaves))
        unresolved.append(left)
        comparisons.append(_comparison(prober, screened, leaves, left))
    result = Screen(tuple(records), tuple(bounds), tuple(located), tuple(unresolved))
    reasons: tuple[str, ...] = ()
    if sigma > 0:
        reasons = (f"f is nondeterministic: its values at x scatter by {sigma:.3g}",)
        if nondeterministic == "inconclusive":
            comparisons = [
                dataclasses.replace(c, verdict=Verdict.INCONCLUSIVE) for c in comparisons
            ]
        else:
            reasons = (f"{reasons[0]}; that noise widens every probe's error bar",)
    return ScreenOutcome(result, tuple(comparisons), setup, sigma, reasons)


class _Prober:
    """Measures directional derivatives of f for one input (the maths in the module docstring)."""

    def __init__(
        self,
        setup: _engine.Setup,
        k: int,
        x: Any,
        analytic: np.ndarray,
        rtol: float | None,
        atol: float | None,
    ) -> None:
        self.setup = setup
        self.k = k
        self.dtype = setup.dtypes[k]
        self.input_dtype = _arrays.dtype_name(x)
        self.shape = _arrays.output_shape(x) if not isinstance(x, float) else ()
        xv, xp, xm, _, _ = _engine._step_points(x, self.dtype, setup.steps[k])
        self.base = xv
        self.t0 = _arrays.eps(self.dtype) ** _engine.STEP_EXPONENT
        self.scale = (xp - xm) / (2 * self.t0)  # s_i = h_i / t0, max(1, |x_i|) by default
        self.analytic = analytic.reshape(-1)
        # NaN/Inf analytic elements are wrong where f is finite and need no search: they are
        # differentiated one by one and the probes see the rest (as 0).
        finite = np.isfinite(self.analytic)
        self.nonfinite = np.flatnonzero(~finite)
        self.probed = np.where(finite, self.analytic, 0.0)
        self.rtol = _default_rtol(rtol, x)
        self.atol = atol
        self.kappa = 1.0
        self.sigma = 0.0  # the noise of f at x (gradcheck._numerics.noise), 0.0 when repeatable
        self.rounding = 0.0  # f's rounding per evaluation as measured by the pilot; 0.0: eps |f|
        self.own: np.ndarray | None = None  # the analytic side's own rounding, per element
        self.localise_log: list[_Measure] = []
        self.max_kappa = STEP_SCALE_LIMIT  # 1.0 where the caller gave the step: an upper bound
        self.notes: list[str] = []  # second looks at probes that disagreed (screen_kinks)
        self.spread = 0  # bisection splits where both halves carried mismatch
        self.cleaner: dict[int, _Measure] = {}  # confirmed fails re-measured at a smaller step

    @property
    def n(self) -> int:
        return int(self.base.size)

    def measure(self, kind: str, signs: np.ndarray, block: np.ndarray | None = None) -> _Measure:
        """One probe along ``signs * scale`` restricted to ``block`` (None: every element)."""
        w = signs * self.scale
        if block is not None:
            masked = np.zeros_like(w)
            masked[block] = w[block]
            w = masked
        T = self.kappa * self.t0
        taus = (T, -T, T / 2, -T / 2)
        rows = np.empty((len(taus), self.n))
        for row, tau in zip(rows, taus, strict=True):
            row[:] = _arrays.rounded(self.dtype, self.base + tau * w)
        # The realised displacements d_tau = rows - x enter only as differences: x cancels.
        w_eff = (4 * (rows[2] - rows[3]) / T - (rows[0] - rows[1]) / (2 * T)) / 3
        f_values = self.setup.evaluator.at_rows(self.k, rows)
        numeric, error, spread = _directional(
            f_values, T, self.setup.f0, self.setup.eps_f, self.sigma, self.rounding
        )
        direction = self._direction(w_eff)
        probe = self._judge(kind, block, numeric, error, direction)
        if block is not None:
            kept: np.ndarray | None = w_eff[block]
        else:
            kept = w_eff if probe.verdict is Verdict.FAIL else None
        return _Measure(probe, signs, block, direction, kept, spread, f_values)

    def rejudged(self, measured: _Measure, rounding: float) -> _Measure:
        """A pilot measurement judged again with ``rounding`` per evaluation added to its bar
        (wider: a fail may become a pass, never the reverse, so ``w_eff`` is still kept)."""
        p = measured.probe
        T = p.step_scale * self.t0
        error = p.error_estimate + RICHARDSON_WEIGHT * max(rounding / T, measured.spread)
        probe = self._judge("pilot", measured.block, p.numeric, error, measured.direction)
        return dataclasses.replace(
            measured, probe=dataclasses.replace(probe, step_scale=p.step_scale)
        )

    def _direction(self, w_eff: np.ndarray) -> _Direction:
        with np.errstate(invalid="ignore", over="ignore"):
            analytic = float(np.dot(self.probed, w_eff))
            typical = float(np.linalg.norm(self.probed * w_eff))
        own = 0.0 if self.own is None else abs(float(np.dot(self.own, w_eff)))
        return _Direction(analytic, typical, float(np.linalg.norm(w_eff)), own)

    def _judge(
        self,
        kind: str,
        block: np.ndarray | None,
        numeric: float,
        error: float,
        direction: _Direction,
    ) -> Probe:
        analytic, typical = direction.analytic, direction.typical
        tolerance = self.rtol * max(abs(numeric), typical) + error + direction.own
        if self.atol is not None:
            tolerance += self.atol * direction.norm
        verdict = _probe_verdict(numeric, error, analytic, tolerance, typical)
        size = self.n if block is None else int(block.size)
        return Probe(self.k, kind, size, self.kappa, numeric, analytic, error, tolerance, verdict)


def _default_rtol(rtol: float | None, x: Any) -> float:
    return default_rtol(_arrays.dtype_name(x)) if rtol is None else float(rtol)


def _directional(
    f_values: np.ndarray,
    T: float,
    f0: float,
    eps_f: float,
    sigma: float = 0.0,
    rounding: float = 0.0,
) -> tuple[float, float, float]:
    """Richardson on the parameter tau of f(x + tau w): the engine's formula, one 'element',
    plus the noise bar of a nondeterministic f (``gradcheck._numerics.noise.noise_bar``) and the
    bar of
    a measured per-evaluation rounding; returns (value, error bar, spread |D1 - D2|)."""
    stencil = _engine.Stencil(
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
    value, spread, modelled = _engine.richardson_parts(stencil, f0, eps_f)
    error = spread + modelled
    if rounding > 0:
        # f's rounding was measured larger than eps |f|, and it may grow with the step: the
        # spread at this step is taken as rounding too (see _rounding_seen).
        error = error + RICHARDSON_WEIGHT * np.maximum(rounding / T, spread)
    if sigma > 0:
        error = error + _noise.noise_bar(stencil, sigma)
    return float(value[0]), float(error[0]), float(spread[0])


def _probe_verdict(
    numeric: float, error: float, analytic: float, tolerance: float, typical: float
) -> Verdict:
    """The verdict rule (``gradcheck._judge.verdict.rule``) for one probe: ``tolerance`` holds its
    error bar, the rest is the limit; a pass must vouch for ``typical`` too."""
    magnitude = max(abs(numeric), abs(analytic), typical) if math.isfinite(numeric) else typical
    verdicts, _ = rule(
        np.array([analytic]), np.array([numeric]), error, tolerance - error, magnitude
    )
    return Verdict(verdicts[0])


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.integers(0, 2, size=n) * 2 - 1).astype(np.int8)


def _screen_input(prober: _Prober, rng: np.random.Generator, probes: int) -> list[_Measure]:
    """The pilot (at the engine's step) and the screen probes, at the balancing step.

    When the balancing step is smaller, the pilot's direction is measured there first (it is
    the first screen probe): truncation shrinks like t**2, so a spread that grows instead is f's
    own rounding, which ``eps |f|`` missed. That rounding is then measured, every probe's bar
    includes it (the pilot's too), and the step is balanced again against it."""
    pilot = prober.measure("screen", _signs(rng, prober.n))
    kappa = min(_balancing_scale(pilot, prober), prober.max_kappa)
    if kappa > 1.0:  # rounding dominates as modelled: a larger step only narrows the bars
        prober.kappa = kappa
        return [_relabelled(pilot, "pilot"), *_fresh(prober, rng, probes)]
    # Check the split at a smaller step: the balancing one, or a quarter of the step.
    prober.kappa = kappa if kappa < 1.0 else 1 / 4
    second = prober.measure("screen", pilot.signs)
    rounding = _rounding_seen(prober, pilot, second)
    grown = _grown(prober, pilot, second) > 0.0  # rounding shown this way needs no check
    if rounding > 0.0 and not grown and not _kinks.rounding_real(prober, pilot, rounding):
        prober.notes.append(
            f"the pilot's two steps disagreed as rounding of {rounding:.3g} per evaluation "
            "would, but f at tiny steps along it shows no such rounding: f is not smooth along "
            "the pilot (a kink), not rounding"
        )
        rounding = 0.0
    if rounding == 0.0:
        if kappa == 1.0:  # the pilot is the first screen probe; the second shares its signs
            prober.kappa = 1.0
            return [pilot, _relabelled(second, "pilot"), *_fresh(prober, rng, probes - 1)]
        return [_relabelled(pilot, "pilot"), second, *_fresh(prober, rng, probes - 1)]
    prober.rounding = rounding
    record = [prober.rejudged(m, rounding) for m in (pilot, second)]
    T = prober.t0
    truncation = max(pilot.spread - RICHARDSON_WEIGHT * rounding / T, 0.0)
    prober.kappa = min(_balance(truncation, _rounding_bar(prober, T)), prober.max_kappa)
    return [*record, *_fresh(prober, rng, probes)]


def _relabelled(measured: _Measure, kind: str) -> _Measure:
    return dataclasses.replace(measured, probe=dataclasses.replace(measured.probe, kind=kind))


def _fresh(prober: _Prober, rng: np.random.Generator, count: int) -> list[_Measure]:
    """``count`` screen probes along new random signs, at the prober's step."""
    return [prober.measure("screen", _signs(rng, prober.n)) for _ in range(count)]


def _rounding_seen(prober: _Prober, pilot: _Measure, smaller: _Measure) -> float:
    """f's rounding per evaluation along the pilot's direction where it exceeds what
    ``eps |f|`` models; 0.0 where it does not. Two signs of it:

    * the spread at the smaller step outgrew truncation's prediction (~ t**2). A spread s at
      step t shows rounding of up to ``s t``: an error of u in each value moves D(t) by u / t
      and D(t/2) by 2 u / t, and an error odd in the step does exactly that;
    * the nine values of f along the line (x, and both stencils) scatter about a quartic in
      tau by more than the model allows. Random rounding can make the two central differences
      agree by chance; the fit's four spare degrees of freedom see it.
    """
    kappa = smaller.probe.step_scale
    predicted = kappa**2 * pilot.spread + _rounding_bar(prober, prober.t0) / kappa
    if not (math.isfinite(predicted) and math.isfinite(smaller.spread)):
        return 0.0
    seen = _grown(prober, pilot, smaller)
    values = np.concatenate([[prober.setup.f0], pilot.values, smaller.values])
    modelled = float(_probe.Precision(prober.setup.eps_f).unit(np.max(np.abs(values))))
    scattered = _scatter(values - prober.setup.f0, kappa)
    return max(seen, scattered if scattered > modelled else 0.0)


def _grown(prober: _Prober, pilot: _Measure, smaller: _Measure) -> float:
    """The rounding a spread that grew at the smaller step shows (``_rounding_seen``'s first
    sign), 0.0 where it did not grow. A kink crossed by the stencil makes the spread shrink
    with the step, not grow: this sign needs no confirmation at tiny steps."""
    kappa = smaller.probe.step_scale
    predicted = kappa**2 * pilot.spread + _rounding_bar(prober, prober.t0) / kappa
    if not (math.isfinite(predicted) and math.isfinite(smaller.spread)):
        return 0.0
    grown = smaller.spread * kappa * prober.t0
    return grown if smaller.spread > ROUNDING_SURPRISE * predicted else 0.0


def _scatter(increments: np.ndarray, kappa: float) -> float:
    """ROUNDING_FIT_SIGMAS times the residual scatter of f(x + tau w) - f(x) about a quartic
    in tau, at tau = 0, +-T, +-T/2, +-kappa T, +-kappa T/2 (in that order)."""
    taus = np.array([0.0, 1.0, -1.0, 0.5, -0.5, kappa, -kappa, kappa / 2, -kappa / 2])
    if not np.all(np.isfinite(increments)):
        return 0.0
    basis = np.vander(taus, 5, increasing=True)
    coefficients = np.linalg.lstsq(basis, increments, rcond=None)[0]
    residual = increments - basis @ coefficients
    return ROUNDING_FIT_SIGMAS * float(np.sqrt(np.sum(residual**2) / (taus.size - 5)))


def _balancing_scale(pilot: _Measure, prober: _Prober) -> float:
    """kappa that balances the pilot's truncation (~kappa**2) and rounding (~1/kappa) bars."""
    error = pilot.probe.error_estimate
    if not (math.isfinite(pilot.probe.numeric) and math.isfinite(error) and error > 0):
        return 1.0
    rounding = _rounding_bar(prober, prober.t0)
    return _balance(max(error - rounding, 0.0), rounding)


def _balance(truncation: float, rounding: float) -> float:
    """The power of two kappa that balances truncation (~kappa**2) against rounding
    (~1/kappa), both measured at kappa = 1; 1.0 when within STEP_IMBALANCE."""
    if rounding <= 0:
        return 1.0
    if truncation > 0:
        ratio = rounding / (2 * truncation)
        if 1 / STEP_IMBALANCE <= ratio <= STEP_IMBALANCE:
            return 1.0
        kappa = ratio ** (1 / 3)
    else:
        kappa = STEP_SCALE_LIMIT
    # Powers of two keep T and T/2 exact and the record readable.
    kappa = 2.0 ** round(math.log2(kappa))
    return float(min(STEP_SCALE_LIMIT, max(1 / STEP_SCALE_LIMIT, kappa)))


def _rounding_bar(prober: _Prober, T: float) -> float:
    """The rounding part of the engine's error bar for a probe at T, with |f| ~ |f(x)|."""
    setup = prober.setup
    f_values = np.full(4, setup.f0)
    _, with_f, _ = _directional(f_values, T, setup.f0, setup.eps_f, prober.sigma, prober.rounding)
    return with_f


def _failed(measures: list[_Measure]) -> bool:
    return any(m.probe.verdict is Verdict.FAIL for m in measures)


def _bound(prober: _Prober, measures: list[_Measure]) -> float:
    """min over the screen probes of the certain single-element detection bound."""
    bounds = []
    for m in measures:
        p = m.probe
        if not (math.isfinite(p.numeric) and math.isfinite(p.error_estimate)):
            continue
        d = m.direction
        bound = prober.rtol * max(abs(p.numeric), d.typical) + 2 * p.error_estimate + d.own
        if prober.atol is not None:
            bound += prober.atol * d.norm
        if math.isfinite(bound):
            bounds.append(bound / (1 - prober.rtol) if prober.rtol < 1 else math.inf)
    return min(bounds) if bounds else math.nan


# -- localisation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    """One element, differentiated alone: its numerical value and error bar."""

    index: int
    numeric: float
    error: float


def _localise(prober: _Prober, screened: list[_Measure]) -> tuple[list[_Leaf], int]:
    """Bisect the most significant failing probe's mismatch down to single elements, until the
    elements found explain it or the budget runs out; returns the elements and, when the
    mismatch is still unexplained, how many elements were never differentiated."""
    failing = [m for m in screened if m.probe.verdict is Verdict.FAIL]
    lead = max(failing, key=lambda m: abs(m.mismatch) / max(m.probe.tolerance, 1e-300))
    lead = prober.cleaner.get(id(lead), lead)
    kappa = prober.kappa
    prober.kappa = lead.probe.step_scale  # the blocks at the lead's step
    try:
        return _search(prober, lead, _suspects(failing, prober.n))
    finally:
        prober.kappa = kappa


def _search(prober: _Prober, lead: _Measure, region: np.ndarray | None) -> tuple[list[_Leaf], int]:
    """``_localise``'s loop: bisect ``region``, then every element not differentiated yet."""
    budget = [4 * math.ceil(math.log2(max(prober.n, 2))) + 8]
    leaves: list[_Leaf] = []
    while True:
        mismatch, tolerance = _unexplained(prober, lead, leaves)
        if abs(mismatch) <= tolerance:
            return leaves, 0
        if region is None:  # after the suspects: every element not differentiated yet
            region = np.setdiff1d(np.arange(prober.n), [leaf.index for leaf in leaves])
        if budget[0] <= 0 or region.size == 0:
            return leaves, prober.n - len(leaves)
        found = _bisect(prober, lead, region, mismatch, tolerance, budget)
        if not found:
            return leaves, prober.n - len(leaves)
        leaves += found
        region = None


def _unexplained(prober: _Prober, lead: _Measure, leaves: list[_Leaf]) -> tuple[float, float]:
    """The lead probe's mismatch less what the elements found so far account for, and its bar."""
    mismatch, tolerance = lead.mismatch, lead.probe.tolerance
    assert lead.w_eff is not None and lead.block is None  # a failing whole-input probe
    for leaf in leaves:
        w = float(lead.w_eff[leaf.index])
        mismatch -= (float(prober.probed[leaf.index]) - leaf.numeric) * w
        tolerance += leaf.error * abs(w)
    return mismatch, tolerance


def _nonfinite_leaves(prober: _Prober, probe: _Measure) -> list[_Leaf]:
    """Each element whose analytic value is NaN/Inf, differentiated alone (the first 16)."""
    blocks = (np.array([j]) for j in prober.nonfinite[:NONFINITE_SHOWN])
    return [_leaf(prober, _probe_block(prober, probe, block)) for block in blocks]


def _suspects(failing: list[_Measure], n: int) -> np.ndarray:
    """Elements whose signs agree with one wrong element in every failing probe (all if < 2)."""
    if len(failing) < 2:
        return np.arange(n)
    signs = np.stack([m.signs for m in failing])
    expected = np.array([math.copysign(1.0, m.mismatch) for m in failing])[:, None]
    agree = np.all(signs == expected, axis=0) | np.all(signs == -expected, axis=0)
    return np.flatnonzero(agree)


def _bisect(
    prober: _Prober,
    lead: _Measure,
    block: np.ndarray,
    mismatch: float,
    tolerance: float,
    budget: list[int],
) -> list[_Leaf]:
    """Depth-first bisection of ``block``, whose mismatch along the lead probe's signs is
    ``mismatch`` (+- ``tolerance``), while the budget lasts; returns the single elements."""
    leaves: list[_Leaf] = []
    stack: list[tuple[np.ndarray, float, float, _Measure | None]] = [
        (block, mismatch, tolerance, None)
    ]
    while stack:
        part, mismatch, tolerance, measured = stack.pop()
        if part.size == 1 and measured is not None:
            leaves.append(_leaf(prober, measured))
            continue
        if budget[0] <= 0:
            continue
        budget[0] -= 1
        if part.size == 1:
            leaves.append(_leaf(prober, _probe_block(prober, lead, part)))
            continue
        first, second = part[: part.size // 2], part[part.size // 2 :]
        one = _probe_block(prober, lead, first)
        rest, rest_tol = mismatch - one.mismatch, tolerance + one.probe.tolerance
        go_one = abs(one.mismatch) > one.probe.tolerance
        go_rest = abs(rest) > rest_tol
        if not (go_one or go_rest):  # follow the larger relative mismatch
            go_one = abs(one.mismatch) / one.probe.tolerance >= abs(rest) / rest_tol
            go_rest = not go_one
        if go_one and go_rest:
            _spread_out(prober, budget)
        if go_rest:
            stack.append((second, rest, rest_tol, None))
        if go_one:
            stack.append((first, one.mismatch, one.probe.tolerance, one))
    return leaves


def _spread_out(prober: _Prober, budget: list[int]) -> None:
    """Both halves of a block carry mismatch: once that has happened ``SPREAD_BRANCHES`` times
    the error is spread over more elements than bisection can find one by one (a scaled
    gradient, a term missing for every element): the remaining budget is cut to
    ``SPREAD_PROBES``, enough for a few more elements to show in the table."""
    prober.spread += 1
    if prober.spread == SPREAD_BRANCHES:
        budget[0] = min(budget[0], SPREAD_PROBES)


def _probe_block(prober: _Prober, lead: _Measure, block: np.ndarray) -> _Measure:
    """A bisection probe along the lead's signs on ``block``; where its own stencil is not
    smooth (a kink of one of its elements within the step), measured again at 1/8 and 1/64 of
    the step: a block's mismatch must be the gradient's, not a kink's."""
    measure = prober.measure("localise", lead.signs, block)
    prober.localise_log.append(measure)
    return _kinks.smooth_block(prober, measure) if block.size > 1 else measure


def _leaf(prober: _Prober, measured: _Measure) -> _Leaf:
    assert measured.block is not None and measured.block.size == 1 and measured.w_eff is not None
    j = int(measured.block[0])
    w = float(measured.w_eff[0])
    p = measured.probe
    first = _kinks.look_at(prober, measured)
    if not first.nonsmooth or not math.isfinite(p.numeric):
        return _Leaf(j, p.numeric / w, p.error_estimate / abs(w))
    return _Leaf(*_kinks.kink_leaf(prober, measured, first))


def _leaf_fails(prober: _Prober, leaf: _Leaf) -> bool:
    return _compare_leaves(prober, [leaf]).verdict is Verdict.FAIL


def _compare_leaves(prober: _Prober, leaves: list[_Leaf]) -> InputComparison:
    """The same per-element comparison as a full check, for the elements differentiated alone."""
    index = np.array([leaf.index for leaf in leaves], dtype=np.int64)
    analytic = prober.analytic[index]
    finite = prober.analytic[np.isfinite(prober.analytic)]
    atol = prober.atol
    if atol is None:
        atol = prober.rtol * float(np.max(np.abs(finite), initial=0.0))
    c = compare(
        prober.k,
        np.array([leaf.numeric for leaf in leaves]),
        np.array([leaf.error for leaf in leaves]),
        analytic,
        dtype=prober.input_dtype,
        rtol=prober.rtol,
        atol=atol,
        widen=None if prober.own is None else np.abs(prober.own[index]),
    )
    return dataclasses.replace(c, shape=prober.shape, elements=index)


def _comparison(
    prober: _Prober, screened: list[_Measure], leaves: list[_Leaf], unresolved: int
) -> InputComparison:
    """The input's verdict: the probes decide; located elements fill the per-element table."""
    judged = [m.probe for m in screened if m.probe.kind == "screen" or m.probe.verdict == "fail"]
    verdict = combine([p.verdict for p in judged] + [Verdict.FAIL] * bool(prober.nonfinite.size))
    reasons = _reasons(prober, judged, leaves, unresolved)
    rescued = sum(
        m.probe.verdict is Verdict.PASS
        and m.probe.tolerance - m.direction.own < abs(m.mismatch) <= m.probe.tolerance
        for m in screened
    )
    if rescued:
        reasons.append(
            f"{rescued} probe(s) within tolerance only after widening it by the analytic "
            f"gradient's own {prober.input_dtype} rounding (from the same code run in float64)"
        )
    if prober.nonfinite.size:
        reasons.insert(0, f"the analytic gradient is NaN/Inf at {prober.nonfinite.size} element(s)")
    if leaves:
        c = _compare_leaves(prober, leaves)
        return dataclasses.replace(c, verdict=verdict, reasons=tuple(reasons + list(c.reasons)))
    return InputComparison(
        position=prober.k,
        shape=prober.shape,
        dtype=prober.input_dtype,
        verdict=verdict,
        rtol=prober.rtol,
        atol=0.0 if prober.atol is None else prober.atol,
        reasons=tuple(reasons),
        elements=np.zeros(0, dtype=np.int64),
    )


def _reasons(
    prober: _Prober, judged: list[Probe], leaves: list[_Leaf], unresolved: int
) -> list[str]:
    out = []
    failed = [p for p in judged if p.verdict is Verdict.FAIL]
    if failed:
        worst = max(failed, key=lambda p: abs(p.analytic - p.numeric) / p.tolerance)
        out.append(
            f"{len(failed)} of {len(judged)} probes fail: analytic directional derivative "
            f"{worst.analytic:.6g} vs numerical {worst.numeric:.6g} "
            f"(tolerance {worst.tolerance:.3g})"
        )
        wrong = sum(_leaf_fails(prober, leaf) for leaf in leaves)
        if wrong:
            out.append(f"bisection located {wrong} wrong element(s)")
        else:
            out.append("bisection found no single wrong element: the error is spread out")
        if unresolved:
            spent = "budget is spent"
            if prober.spread >= SPREAD_BRANCHES:
                spent = f"error is spread over more than {SPREAD_BRANCHES} elements"
            out.append(
                f"the located elements do not explain the whole mismatch and the localisation "
                f"{spent}: {unresolved} element(s) not differentiated; "
                "mode='full' checks every element"
            )
    out.extend(prober.notes)
    if prober.rounding > 0:
        model = prober.setup.eps_f * abs(prober.setup.f0)
        times = f" ({prober.rounding / model:.3g}x eps |f|)" if model > 0 else ""
        out.append(
            f"f rounds at up to {prober.rounding:.3g} per evaluation along the pilot's direction"
            f"{times}, measured at two steps: every probe's error bar includes it"
        )
    unsure = [p for p in judged if p.verdict is Verdict.INCONCLUSIVE]
    if unsure and not failed:
        out.append(
            f"{len(unsure)} of {len(judged)} probes inconclusive (f NaN/Inf along the probe, or "
            "an error bar wider than 1% of the directional derivative)"
        )
    return out
