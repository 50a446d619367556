"""Compare (forward mode): Jacobian-vector products against directional differences.

``check(..., modes=("rev", "fwd"))`` checks forward-mode AD as well as the gradient. For each
differentiated input k and each of ``FORWARD_DIRECTIONS`` seeded directions, the input moves
along ``w_i = u_i max(1, |x_i|)`` (Rademacher signs ``u_i``: the screen's directions,
``gradcheck._judge.screen``), every other input held fixed:

* numerical side: f at the realised points ``fl(x + tau w)``, ``tau = +-T, +-T/2`` with the
  engine's step ``T = eps**(1/3)``, and per output element the engine's Richardson
  extrapolation and error bar (``gradcheck._numerics.engine.richardson_parts`` on the parameter
  tau);
* analytic side: the Jacobian-vector product along the *realised* direction
  ``w_eff = (4 (d_{+T/2} - d_{-T/2}) / T - (d_{+T} - d_{-T}) / (2 T)) / 3`` (``d_tau = fl(x +
  tau w) - x``), which is exactly what that combination measures to first order, so rounding
  of the perturbed points costs nothing. It comes from ``torch.func.jvp``, from
  ``torch.autograd.forward_ad`` dual numbers (classic custom Functions, whose ``jvp`` static
  method torch.func cannot call without ``setup_context``), or from a hand formula
  ``jvp(*inputs, tangents=(t_1, ..., t_n))`` returning the output's tangent;
* verdict: the tolerance rule of ``gradcheck._judge.verdict`` per output element
  (``compare``, the same ``rule``), the comparison shaped ``(directions, *output shape)``.

Cost: 4 evaluations of f (the four points) and one Jacobian-vector product per input and
direction, and one evaluation at x for the whole check (the rounding scale). f is evaluated
in float64 when its inputs are float32 and it accepts float64 (the engine's policy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._judge.compare import compare
from gradcheck._judge.verdict import InputComparison, Verdict, combine
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine

FORWARD_DIRECTIONS = 2


@dataclass(frozen=True)
class ForwardResult:
    """Forward mode, checked.

    Fields:
        verdict: 'pass', 'fail', or 'inconclusive' (also when forward mode is unavailable).
        inputs: per input, an :class:`InputComparison` over ``(direction, *output element)``:
            numeric the directional difference, analytic the Jacobian-vector product.
        path: 'torch.func.jvp', 'forward_ad' (dual numbers), 'formula', or '' when unavailable.
        reasons: why the verdict is not a plain pass, one sentence each.
        evaluations: calls of f for the numerical side.
        jvp_calls: Jacobian-vector products computed.
    """

    verdict: Verdict
    inputs: tuple[InputComparison, ...]
    path: str
    reasons: tuple[str, ...]
    evaluations: int
    jvp_calls: int


class ForwardUnavailable(Exception):
    """Forward mode cannot be computed for f; the message says why and what to do."""


def check_forward(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    *,
    jvp: Callable[..., Any] | None = None,
    rtols: Sequence[float | None],
    atols: Sequence[float | None],
    seed: int = 0,
) -> ForwardResult:
    """Check f's Jacobian-vector products (module docstring) for every input of ``items``."""
    analytic = _Analytic(f, items, jvp)
    rng = np.random.default_rng([seed, 17])
    evaluate, dtypes = _evaluation(f, items)
    at_x = [_arrays.working_copy(x, d) for x, d in zip(items, dtypes, strict=True)]
    f0 = float(np.max(np.abs(evaluate(*at_x)), initial=0.0))  # one scale for every direction
    comparisons: list[InputComparison] = []
    reasons: list[str] = []
    evaluations = 1
    for k, x in enumerate(items):
        rows = []
        for _ in range(FORWARD_DIRECTIONS):
            signs = rng.integers(0, 2, size=int(np.prod(_arrays.output_shape(x)))) * 2 - 1
            w_eff, values, T, eps_f = _measure(evaluate, items, k, dtypes, signs)
            evaluations += 4
            try:
                tangent = analytic.at(k, w_eff)
            except ForwardUnavailable as why:
                return ForwardResult(Verdict.INCONCLUSIVE, (), "", (str(why),), evaluations, 0)
            rows.append((*_richardson(values, T, f0, eps_f), tangent))
        numeric, error, tangents = (np.stack(parts) for parts in zip(*rows, strict=True))
        out_dtype = analytic.dtype
        c = compare(k, numeric, error, tangents, dtype=out_dtype, rtol=rtols[k], atol=atols[k])
        comparisons.append(c)
        reasons.extend(f"input {k}: {r}" for r in c.reasons)
        if c.verdict is Verdict.FAIL:
            reasons.append(_failure(c))
    verdict = combine([c.verdict for c in comparisons])
    return ForwardResult(
        verdict, tuple(comparisons), analytic.path, tuple(reasons), evaluations, analytic.calls
    )


def _failure(c: InputComparison) -> str:
    worst = c.worst_elements(1)[0]
    index = worst["index"]
    assert isinstance(index, tuple)
    return (
        f"input {c.position}: the Jacobian-vector product along direction {index[0]} is wrong at "
        f"output element {index[1:]}: jvp {worst['analytic']:.6g}, directional difference "
        f"{worst['numeric']:.6g} (tolerance {worst['tolerance']:.3g})"
    )


def _evaluation(
    f: Callable[..., Any], items: tuple[Any, ...]
) -> tuple[Callable[..., Any], list[str]]:
    """f returning float64 NumPy outputs, and the dtypes to evaluate each input in: float64
    where f accepts it (the engine's 'auto' policy), else the input's own."""
    native = [_arrays.dtype_name(x) for x in items]

    def evaluate(*xs: Any) -> np.ndarray:
        return _arrays.to_numpy64(_single(f(*xs)))

    if all(d == "float64" for d in native):
        return evaluate, native
    try:
        out = _single(f(*(_arrays.working_copy(x, "float64") for x in items)))
        if _arrays.output_dtype(out) == "float64":
            return evaluate, ["float64"] * len(items)
    except Exception:  # f cannot run in float64: differentiate in its own dtype
        pass
    return evaluate, native


def _measure(
    evaluate: Callable[..., np.ndarray],
    items: tuple[Any, ...],
    k: int,
    dtypes: list[str],
    signs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """f at the four realised points along ``signs * max(1, |x|)``; (w_eff, f values (4, m),
    T, the evaluation's unit roundoff)."""
    buffers = [_arrays.working_copy(x, d) for x, d in zip(items, dtypes, strict=True)]
    dtype = dtypes[k]
    base = _arrays.values_in(dtype, items[k]).astype(np.float64)
    w = signs * np.maximum(1.0, np.abs(base))
    T = _arrays.eps(dtype) ** _engine.STEP_EXPONENT
    points = [_arrays.rounded(dtype, base + tau * w) for tau in (T, -T, T / 2, -T / 2)]
    w_eff = (4 * (points[2] - points[3]) / T - (points[0] - points[1]) / (2 * T)) / 3
    values = []
    for p in points:
        moved = list(buffers)
        moved[k] = _arrays.like(buffers[k], p)
        values.append(evaluate(*moved).reshape(-1))
    return w_eff, np.stack(values), T, _arrays.eps(dtype)


def _richardson(
    values: np.ndarray, T: float, f0: float, eps_f: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per output element, the derivative along the parameter tau of ``f(x + tau w)`` and its
    error bar: the engine's formulas, on a stencil in tau shared by every element."""
    m = values.shape[1]
    stencil = _engine.Stencil(
        x=np.zeros(m),
        x_plus=np.full(m, T),
        x_minus=np.full(m, -T),
        x_plus_half=np.full(m, T / 2),
        x_minus_half=np.full(m, -T / 2),
        f_plus=values[0],
        f_minus=values[1],
        f_plus_half=values[2],
        f_minus_half=values[3],
    )
    value, spread, rounding = _engine.richardson_parts(stencil, f0, eps_f)
    return value, spread + rounding


def _single(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        raise TypeError(
            f"f returned a {type(out).__name__}; modes=('rev', 'fwd') checks one output here "
            "(a tensor or an array)"
        )
    return out


class _Analytic:
    """The Jacobian-vector products: a formula, torch.func.jvp, or forward_ad dual numbers,
    whichever works first (then kept)."""

    def __init__(self, f: Callable[..., Any], items: tuple[Any, ...], jvp: Any) -> None:
        self.f, self.items, self.jvp = f, items, jvp
        self.path = "formula" if jvp is not None else ""
        self.calls = 0
        self.dtype = "float64"

    def at(self, k: int, direction: np.ndarray) -> np.ndarray:
        """J_k direction (direction flat, float64): the output's tangent, flat float64."""
        self.calls += 1
        tangents = tuple(
            _arrays.like(x, direction if j == k else np.zeros(_arrays.output_shape(x)))
            for j, x in enumerate(self.items)
        )
        primals = tuple(_arrays.working_copy(x, _arrays.dtype_name(x)) for x in self.items)
        out = self._tangent(primals, tangents)
        self.dtype = _arrays.dtype_name(out) if hasattr(out, "dtype") else "float64"
        if self.dtype not in _arrays.FLOAT_EPS:
            self.dtype = "float64"
        return _arrays.to_numpy64(out).reshape(-1)

    def _tangent(self, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
        if self.jvp is not None:
            return self.jvp(*primals, tangents=tangents)
        if not all(_arrays.is_torch(p) for p in primals):
            raise ForwardUnavailable(
                "fwd: forward mode needs torch tensors (torch.func.jvp) or a hand formula "
                "jvp=(lambda *x, tangents: ...); the inputs are not torch tensors"
            )
        if self.path in ("", "torch.func.jvp"):
            try:
                out = _func_jvp(self.f, primals, tangents)
                self.path = "torch.func.jvp"
                return out
            except ForwardUnavailable:
                raise
            except Exception as exc:  # a classic custom Function: try dual numbers
                if self.path:
                    raise
                first = exc
        try:
            out = _dual_jvp(self.f, primals, tangents)
        except ForwardUnavailable:
            raise
        except Exception as exc:
            raise ForwardUnavailable(
                f"fwd: forward mode failed: torch.func.jvp raised {_line(first)}, and "
                f"forward_ad dual numbers raised {type(exc).__name__}: {_line(exc)}"
            ) from exc
        self.path = "forward_ad"
        return out


def _func_jvp(f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    import torch

    try:
        _, tangent = torch.func.jvp(f, primals, tangents)
    except Exception as exc:
        if _not_implemented(exc):
            raise _no_jvp(exc) from exc
        raise
    return tangent


def _dual_jvp(f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    import torch
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        duals = tuple(fwAD.make_dual(p, t) for p, t in zip(primals, tangents, strict=True))
        try:
            out = f(*duals)
        except Exception as exc:
            if _not_implemented(exc):
                raise _no_jvp(exc) from exc
            raise
        tangent = fwAD.unpack_dual(_single(out)).tangent
        return torch.zeros_like(out) if tangent is None else tangent.clone()


def _not_implemented(exc: BaseException | None) -> bool:
    """Whether f (or the check's wrapper of f, which keeps f's error as its cause) raised
    NotImplementedError: a custom Function without ``jvp``."""
    while exc is not None:
        if isinstance(exc, NotImplementedError):
            return True
        exc = exc.__cause__
    return False


def _no_jvp(exc: BaseException) -> ForwardUnavailable:
    return ForwardUnavailable(
        f"fwd: forward mode is not implemented for f ({_line(exc)}): a custom "
        "torch.autograd.Function needs a jvp staticmethod (and setup_context for "
        "torch.func.jvp); define one, or check modes=('rev',) only"
    )


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
