"""Differentiate (support): every element at once, for torch f that is elementwise, then summed.

Why this exists
---------------
A black-box central difference costs ``2n`` evaluations of f per stencil width, and once f's own
work dominates nothing makes one evaluation cheaper. But many functions people check have a
*diagonal* structure: a custom activation, an elementwise loss or regulariser,
``sum(tanh(x)**2)``. There ``f(x) = s * sum_i T_i`` with term ``T_i`` depending on input k only
through its own element ``x_k[i]`` (``s`` is 1 for a sum, ``1/n`` for a mean; a non-scalar f
contracted with a cotangent is the same shape). Perturbing *every* element at once then
measures every element's difference in one evaluation (the Curtis-Powell-Reid idea, with one
colour)::

    f(x + h e_i) - f(x) = s * (T_i(x + h) - T_i(x))          for every i, from one pass

so the four stencil columns of a full check cost four passes, not ``4n`` (``'separable'`` path).

How the structure is established, twice
---------------------------------------
1. **Trace.** f runs once at x under a ``TorchDispatchMode`` that records every aten call. Input
   k is elementwise when every call that consumes a tensor derived from it is tagged
   ``pointwise`` (or is a dtype cast, clone or same-shape view), returns that input's shape, and
   takes every derived operand at that shape (no broadcasting of x itself); when nothing derived
   from it is mutated in place; when no call is random; and when f returns the output of its
   last call, a full ``sum`` or ``mean`` of a tensor T of the input's shape. A data-dependent
   branch (``.item()``, ``if x.sum() > 0``) shows up as a non-pointwise call and rules the
   structure out.
2. **Measure.** Each perturbed pass re-runs f under a mode that must see the same calls in the
   same order, and takes T at the reduction. Before the result is used, f itself (not its
   trace) is evaluated with a seeded random half of the elements perturbed, twice; it must
   equal ``f0 + s * sum over that half of (T_i(x + h) - T_i(x))`` to within the rounding of the
   sum, ``STRUCTURE_SAFETY * eps * (|f0| + |f| + s * sum |T|)``. Coupling between elements that
   the trace could not see (a NumPy round trip inside f) fails this, and the input goes back to
   the batched or looped path.

The values handed on are ``f0 + s * (T_i(p) - T_i(x))``: what f would return at the point,
computed without the rounding of the other ``n - 1`` terms, so the engine's error bar (which
assumes that rounding) stays an upper bound. Each pass counts as one evaluation of f.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gradcheck._numerics import arrays as _arrays

# The rounding allowance of the structure measurement, in units of eps * (the sizes summed).
STRUCTURE_SAFETY = 8.0
# How many random halves of the elements f is evaluated at to confirm the structure.
STRUCTURE_TRIALS = 2

_REDUCTIONS = {
    torch.ops.aten.sum.default: 1,
    torch.ops.aten.sum.dim_IntList: 1,
    torch.ops.aten.mean.default: 0,
    torch.ops.aten.mean.dim: 0,
}
# Calls that are elementwise without the pointwise tag: casts, copies, same-shape views.
_ELEMENTWISE = {
    torch.ops.aten._to_copy.default,
    torch.ops.aten.clone.default,
    torch.ops.aten.alias.default,
    torch.ops.aten.detach.default,
    torch.ops.aten.view.default,
    torch.ops.aten._unsafe_view.default,
    torch.ops.aten.reshape.default,
    torch.ops.aten.expand.default,
    torch.ops.aten.contiguous.default,
}


# Calls that change nothing about the values and that torch makes or skips by its own state
# (a factory's first call may detach its result); not compared between the trace and a pass.
_TRANSPARENT = {
    torch.ops.aten.detach.default,
    torch.ops.aten.alias.default,
    torch.ops.aten.lift_fresh.default,
}


class Diverged(Exception):
    """A perturbed pass made different calls from the trace (f took another branch)."""


@dataclass(frozen=True)
class Call:
    """One recorded aten call: the op, the tensors it read (args and kwargs) and returned."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outputs: tuple[torch.Tensor, ...]


class _Recorder(TorchDispatchMode):  # type: ignore[misc]
    """Runs every aten call and keeps it (with references, so tensor ids stay unique)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch's default wraps the handler in a dynamo guard whose first use imports
        # torch._dynamo (about a second); this mode never runs under torch.compile.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = tuple(o for o in _flat(out) if isinstance(o, torch.Tensor))
        self.calls.append(Call(func, tuple(args), dict(kwargs), outputs))
        return out


class _Capture(TorchDispatchMode):  # type: ignore[misc]
    """Runs f again, checking each call against the trace, and keeps T at the reduction."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self, funcs: tuple[Any, ...], index: int) -> None:
        super().__init__()
        self.funcs, self.index, self.position = funcs, index, 0
        self.terms: torch.Tensor | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _TRANSPARENT:
            return func(*args, **(kwargs or {}))
        if self.position >= len(self.funcs) or func is not self.funcs[self.position]:
            raise Diverged(f"call {self.position} is {func}, the trace had another")
        if self.position == self.index:
            self.terms = args[0]
        self.position += 1
        return func(*args, **(kwargs or {}))


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [item for entry in value for item in _flat(entry)]
    return [value]


@dataclass(frozen=True)
class Structure:
    """f = scale * sum(T), traced. ``inputs``: positions of the inputs T is elementwise in."""

    funcs: tuple[Any, ...]
    index: int
    scale: float
    terms0: np.ndarray
    inputs: frozenset[int]
    why_not: dict[int, str]


def trace(fn: Callable[..., Any], buffers: list[Any]) -> Structure | str:
    """The structure of ``fn(*buffers)``, or one sentence on why it has none."""
    recorded = _record(fn, buffers)
    return recorded if isinstance(recorded, str) else _structure(*recorded, buffers)


def _record(fn: Callable[..., Any], buffers: list[Any]) -> tuple[list[Call], Any] | str:
    """(f's aten calls, f's output) from one call, or why f could not be traced."""
    recorder = _Recorder()
    try:
        with recorder:
            out = fn(*buffers)
    except Exception as exc:  # tracing is an optimisation; f's own errors surface elsewhere
        return f"f could not be traced ({type(exc).__name__})"
    return recorder.calls, out


def elementwise_call(fn: Callable[..., Any], buffers: list[Any]) -> tuple[bool, Any]:
    """(whether f is elementwise in every input, f's output; None when f raised), from one
    traced call. Elementwise here: a full sum or mean of elementwise terms (:func:`trace`), or
    such terms themselves, returned, which the check's cotangent then sums."""
    recorded = _record(fn, buffers)
    if isinstance(recorded, str):  # f's own error surfaces when the caller calls it plainly
        return False, None
    calls, out = recorded
    structure = _structure(calls, out, buffers)
    if not isinstance(structure, str):
        return len(structure.inputs) == len(buffers), out
    if _why_not_traced(calls, out):
        return False, out
    return all(not _why_not_elementwise(calls, b, out) for b in buffers), out


def _why_not_traced(calls: list[Call], out: Any) -> str:
    """'' when f returns the result of its last torch call and draws no random numbers."""
    if not calls or not isinstance(out, torch.Tensor) or calls[-1].outputs[:1] != (out,):
        return "f does not return the result of a torch call"
    if any(torch.Tag.nondeterministic_seeded in c.func.tags for c in calls):
        return "f draws random numbers"
    return ""


def _structure(calls: list[Call], out: Any, buffers: list[Any]) -> Structure | str:
    """What the recorded calls say about f's structure (see :func:`trace`)."""
    why = _why_not_traced(calls, out)
    if why:
        return why
    last = calls[-1]
    if last.func not in _REDUCTIONS or not _full_reduction(last):
        return "f does not end in a full sum or mean"
    terms = last.args[0]
    scale = 1.0 if _REDUCTIONS[last.func] else 1.0 / max(1, terms.numel())
    why_not = {k: _why_not_elementwise(calls[:-1], buffers[k], terms) for k in range(len(buffers))}
    funcs = tuple(c.func for c in calls if c.func not in _TRANSPARENT)
    return Structure(
        funcs=funcs,
        index=len(funcs) - 1,
        scale=scale,
        terms0=_numpy(terms),
        inputs=frozenset(k for k, why in why_not.items() if not why),
        why_not={k: why for k, why in why_not.items() if why},
    )


def _full_reduction(call: Call) -> bool:
    """A sum or mean over every dimension, to a 0-d result."""
    if not isinstance(call.args[0], torch.Tensor) or call.outputs[0].dim() != 0:
        return False
    if call.func in (torch.ops.aten.sum.default, torch.ops.aten.mean.default):
        return True
    dims = call.args[1] if len(call.args) > 1 else call.kwargs.get("dim")
    ndim = call.args[0].dim()
    return (
        dims is not None and len(dims) > 0 and {d % max(1, ndim) for d in dims} == set(range(ndim))
    )


def _why_not_elementwise(calls: list[Call], x: torch.Tensor, terms: torch.Tensor) -> str:
    """'' when every term depends on x only through its own element; else why not."""
    if terms.shape != x.shape:
        return f"the summed terms have shape {tuple(terms.shape)}, the input {tuple(x.shape)}"
    derived = {id(x)}
    for call in calls:
        read = _flat([*call.args, *call.kwargs.values()])
        touched = [a for a in read if isinstance(a, torch.Tensor) and id(a) in derived]
        if not touched:
            continue
        name = str(call.func)
        if call.func._schema.is_mutable:
            return f"{name} writes in place to a tensor computed from the input"
        if call.func not in _ELEMENTWISE and torch.Tag.pointwise not in call.func.tags:
            return f"{name} is not elementwise"
        shapes = {a.shape for a in touched} | {o.shape for o in call.outputs}
        if shapes != {x.shape}:
            return f"{name} changes the shape of a tensor computed from the input"
        derived.update(id(o) for o in call.outputs)
    return ""


def _numpy(t: torch.Tensor) -> np.ndarray:
    values: np.ndarray = t.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy().copy()
    return values


@dataclass
class ElementwisePath:
    """Evaluates the full-check stencil of an elementwise input in one pass per column."""

    f: Any  # the counted scalar f (``gradcheck._numerics.evaluate.Counted``)
    fn: Callable[..., Any]
    buffers: list[Any]
    structure: Structure
    f0: float

    def terms(self, k: int, values: np.ndarray) -> np.ndarray:
        """T with input k set to the flat float64 ``values`` (rounded to its dtype already)."""
        args = self._with(k, values)  # outside the mode: building them is not f's work
        capture = _Capture(self.structure.funcs, self.structure.index)
        with capture:
            self.fn(*args)
        self.f.add(1)
        if capture.terms is None:
            raise Diverged("the reduction was not reached")
        return _numpy(capture.terms)

    def at_elements(self, k: int, base: np.ndarray, points: np.ndarray) -> np.ndarray:
        """f with element i of input k at ``points[i, j]``, all i from one pass per column j;
        raises :class:`Diverged` or f's own error when the structure does not hold."""
        return self.at_some(k, base, np.arange(base.size), points)

    def at_some(
        self, k: int, base: np.ndarray, elements: np.ndarray, points: np.ndarray
    ) -> np.ndarray:
        """f with element ``elements[r]`` of input k at ``points[r, j]`` (the others at x),
        every r from one pass per column j; raises like :meth:`at_elements`."""
        s, t0 = self.structure.scale, self.structure.terms0
        out = np.empty(points.shape)
        for j in range(points.shape[1]):
            moved = base.copy()
            moved[elements] = points[:, j]
            terms = self.terms(k, moved)
            if j == 0:
                self._confirm(k, base, moved, terms)
            out[:, j] = self.f0 + s * (terms[elements] - t0[elements])
        return np.where(np.isfinite(out), out, np.nan)

    def _confirm(self, k: int, base: np.ndarray, moved: np.ndarray, terms: np.ndarray) -> None:
        """f at a random half of the elements moved must match the terms (module docstring)."""
        s, t0 = self.structure.scale, self.structure.terms0
        delta = terms - t0
        rng = np.random.default_rng(len(base))
        eps = _arrays.eps(_arrays.dtype_name(self.buffers[k]))
        for _ in range(STRUCTURE_TRIALS):
            half = rng.random(base.size) < 0.5
            point = np.where(half, moved, base)
            value = _arrays.scalar_value(self.f(*self._with(k, point)))
            predicted = self.f0 + s * float(np.sum(delta[half]))
            sizes = abs(self.f0) + abs(value) + s * float(np.sum(np.abs(t0) + np.abs(terms)))
            if not abs(value - predicted) <= STRUCTURE_SAFETY * eps * sizes:
                raise Diverged(
                    f"f at half the elements moved is {value!r}, the terms predict {predicted!r}"
                )

    def drop(self, k: int, why: str) -> None:
        """Stop taking input k (its structure did not hold): it goes to the other paths."""
        self.structure = dataclasses.replace(
            self.structure,
            inputs=self.structure.inputs - {k},
            why_not={**self.structure.why_not, k: why},
        )

    def _with(self, k: int, values: np.ndarray) -> list[Any]:
        args = list(self.buffers)
        args[k] = _tensor_like(self.buffers[k], values)
        return args


def _tensor_like(buffer: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    """A new tensor of the buffer's dtype, device and shape holding flat float64 ``values``."""
    moved = torch.as_tensor(values).to(dtype=buffer.dtype, device=buffer.device)
    return moved.reshape(buffer.shape)
