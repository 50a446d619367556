"""Surface: ``jax.test_util.check_grads``'s call, answered by :func:`gradcheck.check`.

The one-line migration of a JAX test suite::

    from gradcheck.jax import check_grads   # was: from jax.test_util import check_grads

:func:`check_grads` returns None when every gradient it checks is right, and raises
``AssertionError`` otherwise, as jax's does; the message names the mode and order that failed
and is gradcheck's worst-element table (element, analytic, numeric, errors, tolerance). An
inconclusive check is not a pass: it raises too, saying why.

What each argument means here (``docs/jax.md`` has the long form):

* ``f``, ``args``: as in jax: ``f(*args)``, the arguments pytrees of arrays. Every floating
  leaf of every argument is differentiated, element by element (not along one random
  direction); integer leaves and other constants reach f unchanged.
* ``order``: 1, or 2 (the gradient differentiated again: JAX's vjp of f, checked against
  differences of the gradient). Higher orders are refused, saying how to check them.
* ``modes``: 'rev' is always checked (reverse mode: ``jax.vjp`` against central differences);
  'fwd' adds forward mode (``jax.jvp`` against directional differences). A ``custom_vjp``
  function has no forward mode in JAX: check it with ``modes=("rev",)``, as with jax's.
* ``atol``, ``rtol``: per element, not scaled by the array's size as jax's are; a number, or a
  dict by dtype as jax takes them. None (the default): gradcheck's own tolerance, from the
  measured precision of each input (float32 and lower: the analytic side re-run in float64).
* ``eps``: None (the default): gradcheck chooses a step per element
  (``h = eps**(1/3) max(1, |x|)``, with Richardson extrapolation and an error bar); given, it
  is the step (``check(..., step=eps)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradcheck._check.check import check
from gradcheck._check.result import CheckResult
from gradcheck._judge.verdict import Verdict
from gradcheck._sources import jaxcall as _jaxcall

__all__ = ["check_grads"]


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: Any = None,
    rtol: Any = None,
    eps: float | None = None,
) -> None:
    """Check f's gradients at ``f(*args)`` to ``order``; raise AssertionError unless right.

    See the module docstring for what each argument means here.
    """
    __tracebackhide__ = True
    result = _checked(f, args, order, modes, atol, rtol, eps)
    if result.verdict is not Verdict.PASS:
        raise AssertionError(failure_message(result))


def _checked(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str],
    atol: Any,
    rtol: Any,
    eps: float | None,
) -> CheckResult:
    import jax

    if isinstance(modes, str) or not set(modes) <= {"fwd", "rev"} or not modes:
        raise ValueError(f"modes={modes!r}: give a sequence of 'fwd' and/or 'rev'")
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"order={order!r}: gradcheck checks order 1 or 2; for order 3, check order 2 of "
            "the gradient as a function: check_grads(jax.grad(f), args, 2)"
        )
    args = tuple(args)

    @functools.wraps(f)
    def marked(*a: Any) -> Any:  # f as JAX code, also for NumPy arguments
        return f(*a)

    marked.__gradcheck_jax__ = True  # type: ignore[attr-defined]
    leaves = jax.tree_util.tree_leaves(args)
    return check(
        marked,
        args,
        wrt=tuple(range(len(args))),
        order=order,
        modes=("rev", "fwd") if "fwd" in modes else ("rev",),
        atol=_per_leaf(atol, leaves),
        rtol=_per_leaf(rtol, leaves),
        step=eps,
    )


def _per_leaf(tol: Any, leaves: list[Any]) -> Any:
    """jax's tolerance dict by dtype as one tolerance per differentiated leaf."""
    if not isinstance(tol, Mapping):
        return tol
    import numpy as np

    chosen = [x for x in leaves if _jaxcall.floating(x, False)]
    by_name = {str(np.dtype(k)): v for k, v in tol.items()}
    return [by_name.get(str(np.asarray(x).dtype)) for x in chosen]


def failure_message(result: CheckResult) -> str:
    """The AssertionError's message: which mode and order failed, the summary, the table."""
    parts = []
    first = [c.verdict for c in result.inputs]
    if Verdict.FAIL in first or Verdict.INCONCLUSIVE in first:
        parts.append(("rev (VJP), order 1", _worst(first)))
    beyond = result.beyond
    if beyond is not None and beyond.forward is not None and beyond.forward.verdict != "pass":
        parts.append(("fwd (JVP), order 1", beyond.forward.verdict))
    if beyond is not None and beyond.second is not None and beyond.second.verdict != "pass":
        parts.append(("rev (VJP of the VJP), order 2", beyond.second.verdict))
    if not parts:
        parts.append(("the check", result.verdict))
    said = "; ".join(f"{what} {verdict}" for what, verdict in parts)
    return f"gradient check: {said}\n{result.summary()}\n{result.table()}"


def _worst(verdicts: list[Verdict]) -> Verdict:
    return Verdict.FAIL if Verdict.FAIL in verdicts else Verdict.INCONCLUSIVE
