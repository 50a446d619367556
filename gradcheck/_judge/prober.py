"""Differentiate (screen probes): one directional derivative of f, measured and judged.

A probe moves the elements of one input along ``w = signs * h / t0`` (Rademacher signs, the
engine's step), evaluates f at the realised points ``fl(x + tau w)``, ``tau = +-T, +-T/2``, and
compares the Richardson value with the analytic gradient's inner product with the *realised*
direction ``w_eff``. ``gradcheck._judge.screen`` states the maths, the tolerance and what a
screen guarantees; ``gradcheck._judge.localise`` bisects a failing probe down to elements.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import Verdict, rule_verdict
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import noise as _noise

# (4 D(T/2) - D(T)) / 3 weighs the four values of f by 8/3, 8/3, 1/3, 1/3 over 2 T: an error of
# u in each moves it by at most 3 u / T.
RICHARDSON_WEIGHT = 3.0


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
class Direction:
    """What a probe's realised direction ``w_eff`` contributes to its judgement."""

    analytic: float  # a . w_eff
    typical: float  # ||a * w_eff||_2
    norm: float  # ||w_eff||_2
    own: float  # |r . w_eff|, the analytic side's own rounding (0.0: not measured)


@dataclass(frozen=True)
class Measure:
    """A probe with what localisation needs: its signs and which elements it moved.

    ``w_eff`` is kept only where localisation reads it, so that a screen of a large input holds
    one byte per element per probe (the signs), not sixteen: on the block for a block probe,
    for every element for a failing whole-input probe, None otherwise."""

    probe: Probe
    signs: np.ndarray  # int8
    block: np.ndarray | None  # None: every element
    direction: Direction
    w_eff: np.ndarray | None
    spread: float  # |D(T) - D(T/2)|, the two central differences' disagreement
    values: np.ndarray  # f at x + tau w, tau = T, -T, T/2, -T/2

    @property
    def mismatch(self) -> float:
        return self.probe.analytic - self.probe.numeric


class Prober:
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
        dtype = setup.dtypes[k]
        xv, xp, xm = _engine._step_points(x, dtype, setup.steps[k], halves=False)
        t0 = _arrays.eps(dtype) ** _engine.STEP_EXPONENT
        shape = _arrays.output_shape(x) if not isinstance(x, float) else ()
        # s_i = h_i / t0, max(1, |x_i|) by default
        self._begin(setup, k, (_arrays.dtype_name(x), shape), xv, (xp - xm) / (2 * t0), analytic)
        self.rtol = _tolerance.rtol_for(rtol, _arrays.dtype_name(x))
        self.atol = atol

    def _begin(
        self,
        setup: _engine.Setup,
        k: int,
        named: tuple[str, tuple[int, ...]],
        base: np.ndarray,
        scale: np.ndarray,
        analytic: np.ndarray,
    ) -> None:
        """Every attribute but the tolerances: ``named`` is the input's (dtype, shape)."""
        self.setup = setup
        self.k = k
        self.dtype = setup.dtypes[max(k, 0)]
        self.input_dtype, self.shape = named
        self.base = base
        self.t0 = _arrays.eps(self.dtype) ** _engine.STEP_EXPONENT
        self.scale = scale
        self.analytic = analytic.reshape(-1)
        # NaN/Inf analytic elements are wrong where f is finite and need no search: they are
        # differentiated one by one and the probes see the rest (as 0).
        finite = np.isfinite(self.analytic)
        self.nonfinite = np.flatnonzero(~finite)
        self.probed = np.where(finite, self.analytic, 0.0)
        self.kappa = 1.0
        self.sigma = 0.0  # the noise of f at x (gradcheck._numerics.noise), 0.0 when repeatable
        self.rounding = 0.0  # f's rounding per evaluation as measured by the pilot; 0.0: eps |f|
        self.own: np.ndarray | None = None  # the analytic side's own rounding, per element
        self.localise_log: list[Measure] = []
        self.max_kappa = math.inf  # set by the screen: 1.0 where the caller gave the step
        self.notes: list[str] = []  # second looks at probes that disagreed (screen_kinks)
        self.spread = 0  # bisection splits where both halves carried mismatch (localise)
        self.cleaner: dict[int, Measure] = {}  # confirmed fails re-measured at a smaller step
        # Probes passed by a second look (screen_kinks), by id: the single-element bound that
        # the look which decided honours (its re-measurement's, or a kink's bracket).
        self.decided: dict[int, float] = {}
        # A second look found f not smooth along a probe (its mismatch moved with the step, or
        # its stencil's two differences disagreed): a spread that grows at a smaller step is
        # then not taken for f's rounding unless f at tiny steps shows it (screen).
        self.kinked = False

    @property
    def n(self) -> int:
        return int(self.base.size)

    def measure(self, kind: str, signs: np.ndarray, block: np.ndarray | None = None) -> Measure:
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
        f_values = self.evaluate(rows)
        numeric, error, spread = directional(
            f_values, T, self.setup.f0, self.setup.eps_f, self.sigma, self.rounding
        )
        direction = self._direction(w_eff)
        probe = self._judge(kind, block, numeric, error, direction)
        if block is not None:
            kept: np.ndarray | None = w_eff[block]
        else:
            kept = w_eff if probe.verdict is Verdict.FAIL else None
        return Measure(probe, signs, block, direction, kept, spread, f_values)

    def evaluate(self, rows: np.ndarray) -> np.ndarray:
        """f with this input replaced by each row of ``rows`` (flat, in its dtype)."""
        return self.setup.evaluator.at_rows(self.k, rows)

    def bound(self, measured: Measure) -> float:
        """The single-element error this probe fails with certainty (``screen``'s docstring):
        ``(rtol max(|D|, ||a * w||) + 2 e [+ atol ||w||] [+ |r . w|]) / (1 - rtol)``; a probe
        passed by a second look gives that look's (``decided``); NaN where not finite."""
        if id(measured) in self.decided:
            return self.decided[id(measured)]
        p, d = measured.probe, measured.direction
        if not (math.isfinite(p.numeric) and math.isfinite(p.error_estimate)):
            return math.nan
        bound = self.rtol * max(abs(p.numeric), d.typical) + 2 * p.error_estimate + d.own
        if self.atol is not None:
            bound += self.atol * d.norm
        if not math.isfinite(bound):
            return math.nan
        return bound / (1 - self.rtol) if self.rtol < 1 else math.inf

    def rejudged(self, measured: Measure, rounding: float) -> Measure:
        """A pilot measurement judged again with ``rounding`` per evaluation added to its bar
        (wider: a fail may become a pass, never the reverse, so ``w_eff`` is still kept)."""
        p = measured.probe
        T = p.step_scale * self.t0
        error = p.error_estimate + RICHARDSON_WEIGHT * max(rounding / T, measured.spread)
        probe = self._judge("pilot", measured.block, p.numeric, error, measured.direction)
        return dataclasses.replace(
            measured, probe=dataclasses.replace(probe, step_scale=p.step_scale)
        )

    def _direction(self, w_eff: np.ndarray) -> Direction:
        with np.errstate(invalid="ignore", over="ignore"):
            analytic = float(np.dot(self.probed, w_eff))
            typical = float(np.linalg.norm(self.probed * w_eff))
        own = 0.0 if self.own is None else abs(float(np.dot(self.own, w_eff)))
        return Direction(analytic, typical, float(np.linalg.norm(w_eff)), own)

    def _judge(
        self,
        kind: str,
        block: np.ndarray | None,
        numeric: float,
        error: float,
        direction: Direction,
    ) -> Probe:
        analytic, typical = direction.analytic, direction.typical
        tolerance = _tolerance.probe_tolerance(
            self.rtol, self.atol, numeric, error, typical, direction.norm, direction.own
        )
        verdict = probe_verdict(numeric, error, analytic, tolerance, typical)
        size = self.n if block is None else int(block.size)
        return Probe(self.k, kind, size, self.kappa, numeric, analytic, error, tolerance, verdict)


def directional(
    f_values: np.ndarray,
    T: float,
    f0: float,
    eps_f: float,
    sigma: float = 0.0,
    rounding: float = 0.0,
) -> tuple[float, float, float]:
    """Richardson on the parameter tau of f(x + tau w): the engine's formula, one 'element',
    plus the noise bar of a nondeterministic f (``gradcheck._numerics.noise.noise_bar``) and the
    bar of a measured per-evaluation rounding; returns (value, error bar, spread |D1 - D2|)."""
    stencil = _engine.Stencil.along(T, f_values)
    value, spread, modelled = _engine.richardson_parts(stencil, f0, eps_f)
    error = spread + modelled
    if rounding > 0:
        # f's rounding was measured larger than eps |f|, and it may grow with the step: the
        # spread at this step is taken as rounding too (see _rounding_seen).
        error = error + RICHARDSON_WEIGHT * np.maximum(rounding / T, spread)
    if sigma > 0:
        error = error + _noise.noise_bar(stencil, sigma)
    return float(value[0]), float(error[0]), float(spread[0])


def probe_verdict(
    numeric: float, error: float, analytic: float, tolerance: float, typical: float
) -> Verdict:
    """The verdict rule (``gradcheck._judge.verdict.rule``) for one probe: ``tolerance`` holds its
    error bar, the rest is the limit; a pass must vouch for ``typical`` too."""
    magnitude = max(abs(numeric), abs(analytic), typical) if math.isfinite(numeric) else typical
    return rule_verdict(analytic, numeric, error, tolerance - error, magnitude)


def random_signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.integers(0, 2, size=n) * 2 - 1).astype(np.int8)


class JointProber(Prober):
    """One prober over several inputs at once (mode 'fast'): its elements are theirs, one after
    another, and a probe moves every one of them. ``k`` is -1; the inputs share one
    evaluation dtype and one rtol and atol (the caller sees to it)."""

    def __init__(self, probers: list[Prober]) -> None:
        first = probers[0]
        self.cuts = np.cumsum([p.n for p in probers])[:-1]
        analytic = np.concatenate([p.analytic for p in probers])
        base = np.concatenate([p.base for p in probers])
        scale = np.concatenate([p.scale for p in probers])
        named = (first.input_dtype, (int(base.size),))
        self._begin(first.setup, -1, named, base, scale, analytic)
        self.rtol, self.atol = first.rtol, first.atol
        self.sigma, self.max_kappa = first.sigma, first.max_kappa
        owns = [p.own if p.own is not None else np.zeros(p.n) for p in probers]
        self.own = None if all(p.own is None for p in probers) else np.concatenate(owns)

    def evaluate(self, rows: np.ndarray) -> np.ndarray:
        return self.setup.evaluator.at_joint_rows(np.split(rows, self.cuts, axis=1))
