"""Differentiate (complex step): derivatives without subtraction, for f analytic in its inputs.

Complex step
------------
For f analytic in each input, ``f(x + i h e_k) = f(x) + i h f'_k - h**2 f''/2 + ...``, so
``Im f(x + i h e_k) / h`` is the derivative with truncation error ``h**2 |f'''| / 6`` and no
subtraction: with ``h = COMPLEX_STEP * max(1, |x_k|)`` the error is rounding only, bounded here
by ``COMPLEX_SAFETY eps max(|d_k|, max_j |d_j|)``. f is *not* complex-safe when it raises on
complex inputs, returns a real dtype (abs, ``.real``, casts), changes its real part under the
tiny imaginary step, or when the complex-step directional derivative along a random direction
disagrees with a real central difference along it (comparisons and abs inside f). Then the
check falls back to central differences and says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import Verdict, rule_verdict
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics.probe import Probe

COMPLEX_STEP = 1e-20
COMPLEX_SAFETY = 64.0

Method = Literal["central", "complex"]


def complex_step_estimate(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    dtype_policy: _engine.DtypePolicy,
    seed: int,
) -> tuple[_engine.GradientEstimate | None, str]:
    """The complex-step gradient and why it can be trusted, or None and why it cannot."""
    start = f.calls
    dtypes, policy, policy_reason, f0, _ = _engine._choose_policy(f, items, dtype_policy)
    buffers = [_complex_copy(x) for x in items]
    try:
        out = f(*buffers)
    except Exception as exc:  # any failure on complex inputs means: not complex-safe
        return None, f"f raised {type(exc).__name__} on complex inputs"
    out_dtype = _arrays.dtype_name(out) if hasattr(out, "dtype") else type(out).__name__
    if "complex" not in out_dtype:
        return None, f"f returned {out_dtype} for complex inputs (abs, .real or a cast inside f)"
    eps = _arrays.eps("float32" if out_dtype == "complex64" else "float64")
    values, steps, shifts = [], [], []
    for k, x in enumerate(items):
        base = _arrays.to_numpy64(x).reshape(-1)
        h = COMPLEX_STEP * np.maximum(1.0, np.abs(base))
        derivative, real_part = np.empty_like(base), np.empty_like(base)
        for i in range(base.size):
            try:
                _set_complex(buffers[k], i, complex(base[i], h[i]))
                z = complex(_complex_scalar(f(*buffers)))
            finally:
                _set_complex(buffers[k], i, complex(base[i], 0.0))
            derivative[i], real_part[i] = z.imag / h[i], z.real
        values.append(derivative)
        steps.append(h)
        shifts.append(np.abs(real_part - f0))
    problem = _complex_problem(f, items, dtypes, f0, values, shifts, eps, seed)
    if problem:
        return None, problem
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in values)
    shapes = [_arrays.output_shape(x) if not isinstance(x, float) else () for x in items]
    estimate = _engine.GradientEstimate(
        values=tuple(v.reshape(s) for v, s in zip(values, shapes, strict=True)),
        errors=tuple(
            (COMPLEX_SAFETY * eps * np.maximum(np.abs(v), scale)).reshape(s)
            for v, s in zip(values, shapes, strict=True)
        ),
        steps=tuple(h.reshape(s) for h, s in zip(steps, shapes, strict=True)),
        f0=f0,
        evaluation_dtype=out_dtype,
        policy=policy,
        policy_reason=policy_reason,
        evaluations=f.calls - start,
        stencils=(),
    )
    return estimate, "f is complex-safe: complex-step derivatives, no subtraction"


def _complex_problem(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    dtypes: list[str],
    f0: float,
    values: list[np.ndarray],
    shifts: list[np.ndarray],
    eps: float,
    seed: int,
) -> str:
    """Why the complex-step values cannot be trusted; '' when they pass both checks."""
    allowed = _tolerance.real_part_shift(eps, f0)
    if any(
        rule_verdict(s, np.zeros_like(s), 0.0, allowed, math.inf) is not Verdict.PASS
        for s in shifts
    ):
        return "the real part of f moved under a tiny imaginary step: f is not complex-analytic"
    rng = np.random.default_rng(seed)
    probe = Probe(f, items, dtypes)
    direction = [rng.choice([-1.0, 1.0], b.shape) * np.maximum(1.0, np.abs(b)) for b in probe.base]

    def along(t: float) -> float:
        return probe.shifted(probe.stepped(direction, t))

    real = _engine.estimate_gradient(along, 0.0)
    expected = sum(float(np.dot(v, d)) for v, d in zip(values, direction, strict=True))
    got, error = float(real.values[0]), float(real.errors[0])
    limit = _tolerance.analyticity(got, expected)
    if rule_verdict(expected, got, error, limit, math.inf) is not Verdict.PASS:
        return (
            f"complex step gives {expected:.6g} along a random direction but a real central "
            f"difference gives {got:.6g} +- {error:.2g}: f is not complex-analytic "
            "(abs, max, comparisons inside f?)"
        )
    return ""


def _complex_copy(x: Any) -> Any:
    if _arrays.is_torch(x):
        import torch

        return x.detach().to(dtype=torch.complex128).clone().contiguous()
    return np.array(x, dtype=np.complex128, copy=True, order="C", ndmin=0)


def _set_complex(buffer: Any, index: int, value: complex) -> None:
    if _arrays.is_torch(buffer):
        buffer.view(-1)[index] = value
    else:
        buffer.reshape(-1)[index] = value


def _complex_scalar(out: Any) -> complex:
    if _arrays.is_torch(out) or isinstance(out, (np.ndarray, np.generic)):
        size = out.numel() if _arrays.is_torch(out) else out.size
        if size != 1:
            raise ValueError(f"f returned shape {_arrays.output_shape(out)}; expected a scalar")
        return complex(out.item())
    return complex(out)
