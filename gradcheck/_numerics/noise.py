"""Differentiate (noise): is f a function of its inputs alone?

Nondeterminism
--------------
f is evaluated once more at x. A repeat that differs from the engine's ``f(x)`` means f is not
a function of its inputs alone (dropout, sampling, non-deterministic reductions); f is then
evaluated ``NOISE_SAMPLES`` times in all and ``sigma`` is their standard deviation. Each of the
four stencil values then carries ``NOISE_SIGMAS sigma`` on top of rounding, which bounds the
central estimate's noise by ``NOISE_SIGMAS sigma (2/d_small + 2 r**2/d_big) / (1 - r**2)`` (the
engine's rounding formula with the noise in place of ``eps |f|``). That bound widens the
tolerance; where it exceeds 1% of the gradient the element is inconclusive ("noise"). For
dropout-like functions pass ``rng_seed``: the global RNGs (torch, NumPy, ``random``) are
re-seeded before every evaluation of f, so every evaluation draws the same mask, and their
states are restored afterwards.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import NOISE_SIGMAS, Probe

NOISE_SAMPLES = 8

NondeterminismPolicy = Literal["widen", "inconclusive", "ignore"]


@dataclass(frozen=True)
class Noise:
    """What repeating f at x showed.

    Fields:
        sigma: standard deviation of f at x over ``samples`` evaluations (0.0: repeatable).
        samples: evaluations of f at x that went into sigma.
        output_dtype: the dtype f returned.
    """

    sigma: float
    samples: int
    output_dtype: str


def probe_noise(probe: Probe, f0: float, policy: NondeterminismPolicy) -> Noise:
    """Evaluate f at x again; if it differs from f0, estimate sigma from NOISE_SAMPLES values."""
    if policy not in ("widen", "inconclusive", "ignore"):
        raise ValueError(
            f"nondeterministic={policy!r} is not one of 'widen', 'inconclusive', 'ignore'"
        )
    again, out_dtype = probe.at_base()
    if policy == "ignore" or again == f0 or not (math.isfinite(again) or math.isfinite(f0)):
        return Noise(0.0, 2, out_dtype)
    values = [f0, again] + [probe.at_base()[0] for _ in range(NOISE_SAMPLES - 2)]
    finite = np.array([v for v in values if math.isfinite(v)])
    sigma = float(np.std(finite, ddof=1)) if finite.size > 1 else math.inf
    return Noise(sigma if sigma > 0 else math.inf, len(values), out_dtype)


def noise_bar(stencil: _engine.Stencil, sigma: float) -> np.ndarray:
    """NOISE_SIGMAS sigma propagated through the engine's Richardson formula, per element."""
    if sigma == 0:
        return np.zeros_like(stencil.x)
    return np.asarray(NOISE_SIGMAS * sigma * _engine.kappa(stencil)[2])


def reseed(seed: int) -> None:
    """Seed the global RNGs a dropout-like f may draw from: random, NumPy, torch (if loaded)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def seeded(f: Callable[..., Any], seed: int) -> Callable[..., Any]:
    """f with the global RNGs re-seeded before every call, so every call draws the same; the
    caller's RNG states are restored after each call."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"rng_seed must be a non-negative integer, got {seed!r}; pass e.g. rng_seed=0"
        )

    def reseeded(*args: Any) -> Any:
        with preserved_rng_state():
            reseed(seed)
            return f(*args)

    return reseeded


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Restore the global RNG states on exit: seeding inside a check must not leak out."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    # The CUDA generators are seeded by torch.manual_seed too; restore them with the CPU one
    # (only when CUDA is already initialised: asking would initialise it).
    cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    cuda_states = torch.cuda.get_rng_state_all() if torch is not None and cuda else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)
        if torch is not None and cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def sentences(noise: Noise, policy: NondeterminismPolicy) -> list[str]:
    """Check-level sentences on f's noise (none when f is repeatable)."""
    if noise.sigma == 0:
        return []
    what = (
        "the tolerance is widened by its noise bar"
        if policy == "widen"
        else "nondeterministic='inconclusive' was asked"
    )
    return [
        f"f is nondeterministic: {noise.samples} evaluations at x scatter with standard "
        f"deviation {noise.sigma:.3g}; {what}. If f draws random numbers (dropout), pass "
        "rng_seed= to re-seed the RNGs before every evaluation"
    ]
