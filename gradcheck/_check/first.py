"""Check (the first call): f once at the inputs, which fixes the cotangent and f's outputs.

``check`` calls f once before any difference: its output's shape decides whether a cotangent
is needed (a seeded normal one unless given), the call records f's outputs (several, skipped
ones), a traced second call may show f elementwise (``gradcheck._numerics.separable``), and f
contracted with the cotangent at the inputs is the engine's f0, which it then need not
evaluate again. Where the inputs require grad in that call, its graph is kept
(``First.graph``): autograd's gradient is then one backward of it, not a second forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from gradcheck._check import misuse as _misuse
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._sources import call as _front


class First(NamedTuple):
    """What f's first call found (``first_call``)."""

    cotangent: np.ndarray | None
    elementwise: bool
    f0: tuple[float, str]
    graph: tuple[tuple[Any, ...], Any] | None  # (leaves, f's output) with grad; None: none kept


def first_call(
    f: _engine.CountingFunction,
    items: tuple[Any, ...],
    cotangent: Any,
    seed: int,
    trace: bool,
    grad_first: bool = False,
    call: _front.Call | None = None,
) -> First:
    """(cotangent, elementwise, (f0, its dtype), graph): the cotangent is None for a scalar f, else
    the given one or a seeded normal one; with ``trace`` (torch inputs), whether a second,
    traced call shows f elementwise in every input
    (``gradcheck._numerics.separable.elementwise_call``);
    f0 is the scalar f (contracted with the cotangent) at the inputs, which the engine then
    need not evaluate again. The call also records f's outputs (``call.outputs``); with
    ``grad_first`` the inputs require grad in it, so that an output that does not is seen as
    not differentiable (torch's rule) and skipped; that call's leaves and output are the
    graph returned (None without ``grad_first``)."""
    buffers = [_arrays.working_copy(x, _arrays.dtype_name(x)) for x in items]
    # The plain call comes first and its error is the check's: an f that raises once and then
    # works must not pass because a second call was made after the first one failed.
    graph = None
    if grad_first and all(_arrays.is_torch(b) for b in buffers):
        import torch

        leaves = tuple(b.detach().requires_grad_(True) for b in buffers)
        if call is not None:
            call.keep = True  # the user's arguments and outputs too (``Call.kept``)
        try:
            with torch.enable_grad():
                out = f(*leaves)
        finally:
            if call is not None:
                call.keep = False
        graph = (leaves, out)
        out = out.detach() if _arrays.is_torch(out) else out
    else:
        out = f(*buffers)
    _misuse.refuse_in_place(buffers, items, call)
    elementwise = False
    if trace and all(_arrays.is_torch(b) for b in buffers):
        from gradcheck._numerics import separable as _separable

        elementwise, _ = _separable.elementwise_call(f, buffers)  # a raise here: not traced
    shape = _arrays.output_shape(out)
    if cotangent is None:
        v = None if int(np.prod(shape)) == 1 else np.random.default_rng(seed).standard_normal(shape)
    else:
        v = _arrays.to_numpy64(cotangent) if call is None else call.layout.cotangent_in(cotangent)
        if v.shape != shape:
            raise ValueError(
                f"cotangent has shape {v.shape} but f returns shape {shape}; match them"
            )
    if (
        v is None and call is not None and call.layout.several
    ):  # one scalar among several outputs: flat (1,)
        out = out.reshape(()) if _arrays.is_torch(out) else np.reshape(out, ())
    scalar = out if v is None else contracted_value(out, v)
    return First(v, elementwise, (_arrays.scalar_value(scalar), _arrays.output_dtype(out)), graph)


def contracting(f: Callable[..., Any], v: np.ndarray) -> Callable[..., Any]:
    """The scalar function ``sum(v * f(*x))``, computed in f's own array library and dtype."""

    def contracted(*xs: Any) -> Any:
        return contracted_value(f(*xs), v)

    return contracted


def contracted_value(out: Any, v: np.ndarray) -> Any:
    """``sum(v * out)`` in out's own array library and dtype."""
    if _arrays.is_torch(out):
        import torch

        return (out * torch.as_tensor(v, dtype=out.dtype, device=out.device)).sum()
    out = np.asarray(out)
    return np.sum(out * v.astype(out.dtype))
