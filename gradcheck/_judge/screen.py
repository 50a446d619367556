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
from gradcheck._judge.localise import comparison, localise, nonfinite_leaves
from gradcheck._judge.options import DEFAULT_PROBES as DEFAULT_PROBES
from gradcheck._judge.options import Options
from gradcheck._judge.prober import (
    RICHARDSON_WEIGHT,
    JointProber,
    Measure,
    Probe,
    Prober,
    directional,
    random_signs,
)
from gradcheck._judge.verdict import InputComparison, Verdict
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import noise as _noise
from gradcheck._numerics import probe as _probe

STEP_SCALE_LIMIT = 16.0
STEP_IMBALANCE = 8.0
# A spread at the balancing step this many times what truncation (~ t**2) plus the modelled
# rounding predict is f's own rounding, which eps |f| missed.
ROUNDING_SURPRISE = 4.0
# A fit's residual scatter times this bounds f's rounding per evaluation (as LADDER_SAFETY).
ROUNDING_FIT_SIGMAS = 4.0


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


def screen(
    f: Any,
    items: tuple[Any, ...],
    analytic: Sequence[np.ndarray],
    options: Options,
    analytic_rounding: Callable[[str], Sequence[np.ndarray | None] | None] | None = None,
    inputs: frozenset[int] | None = None,
    native_f0: tuple[float, str] | None = None,
) -> ScreenOutcome:
    """Screen every input's analytic gradient with ``options.probes`` probes and localise
    failures.

    f is evaluated once more at x first (``gradcheck._numerics.noise.probe_noise``): a
    nondeterministic
    f widens every probe's error bar by its noise ('widen'), or makes the screen inconclusive
    ('inconclusive'), or is ignored ('ignore'). ``analytic_rounding``, given the dtype policy,
    returns per input the analytic side's own rounding ``r`` (signed, shaped like the input;
    None where not measured): a probe's tolerance adds ``|r . w_eff|``, an element's ``|r_j|``.
    ``inputs``: the positions to screen (None: all); the others get no comparison here (the
    judging loop checks them element by element) and empty entries in the record.
    ``native_f0``: f at x and its dtype where the caller has them (``engine.prepare``).
    """
    probes, nondeterministic = options.probes, options.nondeterministic
    if not (isinstance(probes, int) and not isinstance(probes, bool) and probes >= 1):
        raise ValueError(f"probes must be a positive integer, got {probes!r}; the default is 5")
    setup = _engine.prepare(f, items, options.evaluation(elementwise=False), native_f0)
    fast = options.mode == "fast"
    noise = _Noise(setup, items, nondeterministic)
    # Mode 'fast' asks f at x again only for an input that escalates (where the policy is
    # 'widen' or 'ignore': a probe that passes needs no noise bar to pass).
    sigma = 0.0 if fast and nondeterministic != "inconclusive" else noise.sigma()
    own = analytic_rounding(setup.policy) if analytic_rounding is not None else None
    probers = {
        k: _prober(setup, k, x, analytic[k], options, sigma, own)
        for k, x in enumerate(items)
        if inputs is None or k in inputs
    }
    done = _joint_glance(probers, options.seed) if fast and sigma == 0 else {}
    for k, prober in probers.items():
        if k not in done:
            rng = np.random.default_rng([options.seed, k])
            done[k] = _screen_one(prober, rng, probes, noise if fast else None)
    sigma = max(sigma, noise.measured or 0.0)
    records: list[Probe] = []
    bounds: list[float] = []
    located: list[tuple[int, ...]] = []
    unresolved: list[int] = []
    comparisons: list[InputComparison] = []
    for k in range(len(items)):
        one = done.get(k)
        bounds.append(math.nan if one is None else one.bound)
        located.append(() if one is None else one.located)
        unresolved.append(0 if one is None else one.unresolved)
        if one is not None:
            records.extend(one.records)
            comparisons.append(one.comparison)
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


@dataclass(frozen=True)
class _Screened:
    """One input's screen: its records, bound, located elements and comparison."""

    records: tuple[Probe, ...]
    bound: float
    located: tuple[int, ...]
    unresolved: int
    comparison: InputComparison


def _prober(
    setup: _engine.Setup,
    k: int,
    x: Any,
    analytic: np.ndarray,
    options: Options,
    sigma: float,
    own: Sequence[np.ndarray | None] | None,
) -> Prober:
    a = np.asarray(analytic, dtype=np.float64)
    prober = Prober(setup, k, x, a, options.rtols[k], options.atols[k])
    prober.sigma = sigma
    prober.max_kappa = STEP_SCALE_LIMIT if options.step is None else 1.0  # given: at most
    if own is not None and own[k] is not None:
        prober.own = np.nan_to_num(np.asarray(own[k], dtype=np.float64).reshape(-1))
    return prober


def _screen_one(
    prober: Prober, rng: np.random.Generator, probes: int, noise: _Noise | None
) -> _Screened:
    """One input: the glance first in mode 'fast' (``noise`` given), the screen where it does
    not settle it, then second looks at disagreeing probes and the bisection of failures."""
    first, settled = _glance(prober, rng) if noise is not None else (None, None)
    if settled is None:
        if noise is not None and noise.sigma() > 0:  # the glance's bar had no noise in it
            prober.sigma = noise.sigma()
            first = prober.measure("screen", first.signs) if first is not None else None
        settled = _screen_input(prober, rng, probes, first)
    screened = _kinks.second_looks(prober, settled)
    leaves, left = localise(prober, screened) if _failed(screened) else ([], 0)
    leaves = [*nonfinite_leaves(prober, screened[0]), *leaves]
    measures = [*screened, *prober.localise_log]
    return _Screened(
        tuple(m.probe for m in measures),
        _bound(prober, [m for m in screened if m.probe.kind == "screen"]),
        tuple(int(leaf.index) for leaf in leaves),
        left,
        comparison(prober, screened, leaves, left),
    )


# The random stream of mode 'fast''s joint probe (each input's own is [seed, k]).
JOINT_STREAM = 1 << 16


def _joint_glance(probers: dict[int, Prober], seed: int) -> dict[int, _Screened]:
    """Mode 'fast' with several inputs of one dtype and one rtol and atol: one probe moves
    them all at once (4 evaluations, whatever their number), re-measured at smaller steps
    where it disagrees. Where it passes, every input's record is that probe and its bound
    the joint one: an error of ``delta`` in element j of any input moves the probe's analytic
    value by exactly ``delta w_j``. Empty where it does not pass (or the inputs differ, or an
    analytic element is NaN/Inf): each input then takes its own glance."""
    group = list(probers.values())
    if len(group) < 2:
        return {}
    first = group[0]
    same = all(
        (p.dtype, p.rtol, p.atol, p.max_kappa)
        == (first.dtype, first.rtol, first.atol, first.max_kappa)
        for p in group
    )
    if not same or any(p.nonfinite.size for p in group):
        return {}
    joint = JointProber(group)
    _, settled = _glance(joint, np.random.default_rng([seed, JOINT_STREAM]))
    if settled is None:
        return {}
    bound = _bound(joint, settled)
    notes = [f"one probe moved every input at once: {note}" for note in joint.notes]
    done = {}
    for k, prober in probers.items():
        mine = [_relabelled_input(m, k) for m in settled]
        prober.notes.extend(notes)
        records = tuple(
            m.probe for m in (*mine, *(_relabelled_input(m, k) for m in joint.localise_log))
        )
        done[k] = _Screened(records, bound, (), 0, comparison(prober, mine, [], 0))
    return done


def _relabelled_input(measured: Measure, k: int) -> Measure:
    return dataclasses.replace(measured, probe=dataclasses.replace(measured.probe, input=k))


class _Noise:
    """f's noise at x (``gradcheck._numerics.noise.probe_noise``), measured on first use."""

    def __init__(self, setup: _engine.Setup, items: tuple[Any, ...], policy: Any) -> None:
        self.setup, self.items, self.policy = setup, items, policy
        self.measured: float | None = None

    def sigma(self) -> float:
        if self.measured is None:
            setup = self.setup
            probe = _probe.Probe(setup.f, self.items, setup.dtypes)
            found = _noise.probe_noise(probe, setup.f0, self.policy).sigma
            self.measured = 0.0 if self.policy == "ignore" else found
        return self.measured


def _glance(prober: Prober, rng: np.random.Generator) -> tuple[Measure, list[Measure] | None]:
    """Mode 'fast': one probe at the engine's step (the screen's pilot), measured again at
    smaller steps when it disagrees (``screen_kinks.second_looks``: a kink crossed by the
    stencil). Returns the probe, and the record when it passes, else None: the input is then
    screened as mode 'screen' does, from this same pilot (the glance's re-measurements and
    notes leave the record; its evaluations count)."""
    probe = prober.measure("screen", random_signs(rng, prober.n))
    looked = _kinks.second_looks(prober, [probe])
    if looked[0].probe.verdict is Verdict.PASS:
        return probe, looked
    prober.localise_log.clear()
    prober.notes.clear()
    prober.cleaner.clear()
    return probe, None


def _screen_input(
    prober: Prober, rng: np.random.Generator, probes: int, pilot: Measure | None = None
) -> list[Measure]:
    """The pilot (at the engine's step) and the screen probes, at the balancing step.

    When the balancing step is smaller, the pilot's direction is measured there first (it is
    the first screen probe): truncation shrinks like t**2, so a spread that grows instead is f's
    own rounding, which ``eps |f|`` missed. That rounding is then measured, every probe's bar
    includes it (the pilot's too), and the step is balanced again against it."""
    if pilot is None:  # else mode "fast" measured it (its glance)
        pilot = prober.measure("screen", random_signs(rng, prober.n))
    kappa = min(_balancing_scale(pilot, prober), prober.max_kappa)
    if kappa > 1.0:  # rounding dominates as modelled: a larger step only narrows the bars
        prober.kappa = kappa
        return [_relabelled(pilot, "pilot"), *_fresh(prober, rng, probes)]
    # Check the split at a smaller step: the balancing one, or a quarter of the step.
    prober.kappa = kappa if kappa < 1.0 else 1 / 4
    second = prober.measure("screen", pilot.signs)
    rounding = _rounding_seen(prober, pilot, second)
    # Rounding shown by a spread that grew needs no check (odd-in-step rounding, a running
    # sum's, cannot be seen at tiny steps), unless a second look found kinks along the pilot
    # (mode 'fast''s glance), which can make the spread grow just as well.
    grown = _grown(prober, pilot, second) > 0.0 and not prober.kinked
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


def _relabelled(measured: Measure, kind: str) -> Measure:
    return dataclasses.replace(measured, probe=dataclasses.replace(measured.probe, kind=kind))


def _fresh(prober: Prober, rng: np.random.Generator, count: int) -> list[Measure]:
    """``count`` screen probes along new random signs, at the prober's step."""
    return [prober.measure("screen", random_signs(rng, prober.n)) for _ in range(count)]


def _rounding_seen(prober: Prober, pilot: Measure, smaller: Measure) -> float:
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
    seen = _grown(prober, pilot, smaller)
    values = np.concatenate([[prober.setup.f0], pilot.values, smaller.values])
    modelled = float(_probe.Precision(prober.setup.eps_f).unit(np.max(np.abs(values))))
    scattered = _scatter(values - prober.setup.f0, kappa)
    return max(seen, scattered if scattered > modelled else 0.0)


def _grown(prober: Prober, pilot: Measure, smaller: Measure) -> float:
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


def _balancing_scale(pilot: Measure, prober: Prober) -> float:
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


def _rounding_bar(prober: Prober, T: float) -> float:
    """The rounding part of the engine's error bar for a probe at T, with |f| ~ |f(x)|."""
    setup = prober.setup
    f_values = np.full(4, setup.f0)
    _, with_f, _ = directional(f_values, T, setup.f0, setup.eps_f, prober.sigma, prober.rounding)
    return with_f


def _failed(measures: list[Measure]) -> bool:
    return any(m.probe.verdict is Verdict.FAIL for m in measures)


def _bound(prober: Prober, measures: list[Measure]) -> float:
    """min over the screen probes of the certain single-element detection bound."""
    bounds = [b for b in (prober.bound(m) for m in measures) if not math.isnan(b)]
    return min(bounds) if bounds else math.nan
