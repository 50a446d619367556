"""Differentiate (support): f at chosen points in the evaluation dtypes, and how far one
evaluation of f may be off (``Precision``). Shared by the judging loop and its refinements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import evaluate as _batch

NOISE_SIGMAS = 4.0


def evaluation_dtypes(items: tuple[Any, ...], estimate: _engine.GradientEstimate) -> list[str]:
    """The dtype each input was differentiated in: float64 when promoted, else its own."""
    if estimate.policy == "promoted":
        return ["float64"] * len(items)
    return [_arrays.dtype_name(x) for x in items]


class Probe:
    """f at the check's point, in fixed evaluation dtypes, with chosen elements moved.

    Private working copies are perturbed and restored; the caller's inputs are never touched.
    """

    def __init__(
        self,
        f: Callable[..., Any],
        items: tuple[Any, ...],
        dtypes: list[str],
        evaluator: _batch.Evaluator | None = None,
    ) -> None:
        self.f = f
        self.dtypes = dtypes
        self.buffers = [_arrays.working_copy(x, d) for x, d in zip(items, dtypes, strict=True)]
        self.base = [
            _arrays.values_in(d, x).astype(np.float64) for x, d in zip(items, dtypes, strict=True)
        ]
        self.calls = 0
        # Many points at once go through the engine's path (same f and dtypes), so an
        # elementwise or vmap-able f is not called one point at a time; without one, the loop.
        self.evaluator = evaluator or _batch.Evaluator(f, self.buffers, "loop", "one call a point")

    def at_base(self) -> tuple[float, str]:
        """f at the unperturbed point and the dtype f returned."""
        self.calls += 1
        out = self.f(*self.buffers)
        return _engine._finite_or_nan(out), _arrays.output_dtype(out)

    def moved(self, k: int, i: int, value: float) -> float:
        """f with flat element i of input k set to value (NaN where f is not finite)."""
        self.calls += 1
        try:
            _arrays.set_flat(self.buffers[k], i, value)
            return _engine._finite_or_nan(self.f(*self.buffers))
        finally:
            _arrays.set_flat(self.buffers[k], i, float(self.base[k][i]))

    def many(
        self, k: int, elements: np.ndarray, points: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """f with flat element ``elements[r]`` of input k set to ``points[r, j]`` where
        ``valid[r, j]`` (NaN elsewhere, not evaluated); through the engine's path when there
        is one, else one call per point, element by element."""
        self.calls += int(np.count_nonzero(valid))
        return self.evaluator.at_some(k, self.base[k], elements, points, valid)

    def shifted(self, values: list[np.ndarray]) -> float:
        """f with every input replaced by the given flat values (already in their dtypes)."""
        self.calls += 1
        moved = [_arrays.filled(b, v) for b, v in zip(self.buffers, values, strict=True)]
        return _engine._finite_or_nan(self.f(*moved))

    def rounded(self, k: int, values: np.ndarray) -> np.ndarray:
        return _arrays.rounded(self.dtypes[k], values)

    def stepped(self, direction: list[np.ndarray], h: float) -> list[np.ndarray]:
        """The realised points ``fl(x + h d)`` per input, flat, in the evaluation dtypes."""
        return [
            self.rounded(k, b + h * d)
            for k, (b, d) in enumerate(zip(self.base, direction, strict=True))
        ]


@dataclass(frozen=True)
class Precision:
    """How far one evaluation of f may be off.

    Fields:
        eps_f: unit roundoff of the dtypes f is evaluated and returns in.
        sigma: the noise f showed over repeated evaluations at x (0.0: repeatable).
        sensitivity: ``sum_i |g_i x_i|``. A backward-stable f computes f(x) exactly for inputs
            off by ``eps |x_i|``, so its rounding is about ``eps sum_i |g_i x_i|``, which can
            dwarf ``eps |f|`` when f cancels (``sin(1e5 x)`` at 0.1, a sum of large terms).
    """

    eps_f: float
    sigma: float = 0.0
    sensitivity: float = 0.0
    measured: float = 0.0  # the rounding the ladders measured (module doc); 0.0: none

    def unit(self, f_mag: np.ndarray | float) -> np.ndarray:
        """u = max(ROUNDING_SAFETY eps_f (|f| + sensitivity), measured) + NOISE_SIGMAS sigma."""
        rounding = _engine.ROUNDING_SAFETY * self.eps_f * (np.abs(f_mag) + self.sensitivity)
        return np.asarray(np.maximum(rounding, self.measured) + NOISE_SIGMAS * self.sigma)


def sensitivity(gradients: list[np.ndarray], bases: list[np.ndarray]) -> float:
    """``sum_i |g_i x_i|`` over the finite entries (see :class:`Precision`)."""
    total = 0.0
    for g, x in zip(gradients, bases, strict=True):
        terms = np.abs(g.reshape(-1) * x.reshape(-1))
        total += float(np.sum(terms[np.isfinite(terms)]))
    return total
