"""Reference: the analytic side. Every gradient source answers one question the same way.

A source takes (f, inputs, cotangent) and returns one float64 NumPy array per input, shaped like
that input. ``cotangent`` is None when f returns a scalar; otherwise the source returns the
vector-Jacobian product ``cotangent . J`` (what ``y.backward(gradient=cotangent)`` computes).

A source sees the engine's view of the call (``gradcheck._sources.call``): the differentiated inputs
only, real (a complex input as its (real, imag) pairs), and f with its constants bound.

Torch's contract for what a gradient may be: None for an input means zero (a backward returns
None for an input that does not need a gradient; for a differentiated input, None is judged as
zero, so a wrong ``ctx.needs_input_grad`` index fails). A hand formula given to ``check``
returns one entry per input of f, None where an input is not differentiated (see
``gradcheck._sources.call.bound_formula``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gradcheck._numerics import arrays as _arrays


class CallError(RuntimeError):
    """f, a formula or a backward raised: the message says which call (at x, or at which
    perturbed point) and the original exception is the ``__cause__``."""


class GradientSource(Protocol):
    """Anything that produces analytic gradients: ``name`` plus ``gradients(...)``."""

    @property
    def name(self) -> str: ...

    def gradients(
        self, f: Callable[..., Any], inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]: ...


@dataclass(frozen=True)
class Autograd:
    """PyTorch autograd of f; covers custom ``torch.autograd.Function`` backward code.

    The inputs are cloned and marked ``requires_grad`` here: callers pass plain tensors.
    """

    name: str = "autograd"

    def gradients(
        self, f: Callable[..., Any], inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        if not all(_arrays.is_torch(x) for x in inputs):
            raise TypeError(
                "grad=None asks for torch autograd, but the inputs are not all torch tensors; "
                "pass torch tensors, or pass a hand-derived formula as grad=."
            )
        import torch

        leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
        with torch.enable_grad():
            out = f(*leaves)
        return self.from_graph(leaves, out, inputs, cotangent)

    def from_graph(
        self,
        leaves: tuple[Any, ...],
        out: Any,
        inputs: tuple[Any, ...],
        cotangent: Any,
        raw: list[Any] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """The gradients from f's output ``out``, computed with grad enabled from ``leaves``
        (clones of ``inputs`` that require grad): a forward already made (``check``'s first
        call) is not made again. ``raw`` receives the tensors backward gave (None where
        none), for the backward's contract."""
        import torch

        with torch.enable_grad():
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"f returned a {type(out).__name__}, not a tensor, so autograd cannot "
                    "differentiate it; return the tensor itself (no .item() or float())."
                )
            if cotangent is not None:
                out = (out * torch.as_tensor(cotangent, dtype=out.dtype, device=out.device)).sum()
            elif out.numel() != 1:
                raise ValueError(f"f returned shape {tuple(out.shape)}; expected a scalar")
            if not out.requires_grad:
                return tuple(np.zeros(_arrays.output_shape(x)) for x in inputs)
            try:
                # Retained: the backward's contract may run on the same graph.
                grads = torch.autograd.grad(
                    out.reshape(()), leaves, allow_unused=True, retain_graph=True
                )
            except Exception as exc:
                raise CallError(
                    f"the backward of f (autograd) raised {type(exc).__name__} at x: {exc}"
                ) from exc
        if raw is not None:
            raw.extend(grads)
        return tuple(
            np.zeros(_arrays.output_shape(x)) if g is None else _arrays.to_numpy64(g)
            for x, g in zip(inputs, grads, strict=True)
        )


@dataclass(frozen=True)
class Formula:
    """A hand-derived gradient: ``fn(*inputs)`` returns one gradient per input.

    For a non-scalar f, ``fn`` receives the cotangent as the keyword ``cotangent`` when its
    signature accepts one; otherwise it must already be the vector-Jacobian product for the
    cotangent the caller gave explicitly.
    """

    fn: Callable[..., Any]
    name: str = "formula"

    def gradients(
        self, f: Callable[..., Any], inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        del f  # a formula does not need the function, only its inputs
        copies = tuple(_arrays.working_copy(x, _arrays.dtype_name(x)) for x in inputs)
        if cotangent is not None and accepts_keyword(self.fn, "cotangent"):
            first = copies[0]
            v = _arrays.like(first, cotangent) if _arrays.is_torch(first) else cotangent
            out = self.fn(*copies, cotangent=v)
        else:
            out = self.fn(*copies)
        return normalise_gradients(out, inputs, self.name)


def accepts_keyword(fn: Callable[..., Any], keyword: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def normalise_gradients(out: Any, inputs: tuple[Any, ...], source: str) -> tuple[np.ndarray, ...]:
    """Check a source's output against the inputs (count, shape) and make float64 arrays; None
    means a zero gradient (torch's contract)."""
    grads = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if len(grads) != len(inputs):
        raise ValueError(
            f"the {source} gradient returned {len(grads)} gradient(s) for {len(inputs)} input(s); "
            "return one gradient per input, as a tuple when there are several."
        )
    arrays = []
    for position, (g, x) in enumerate(zip(grads, inputs, strict=True)):
        if g is None:
            arrays.append(np.zeros(_arrays.output_shape(x)))
            continue
        if not (
            isinstance(g, (int, float, np.ndarray, np.generic))
            or _arrays.is_torch(g)
            or _arrays.is_jax(g)
        ):
            fix = "np.asarray(...) of it" if isinstance(g, (list, tuple)) else "an array or tensor"
            raise TypeError(
                f"the {source} gradient for input {position} is a {type(g).__name__}; "
                f"return {fix}, shaped like the input (None for a zero gradient)."
            )
        value = _arrays.to_numpy64(g)
        expected = _arrays.output_shape(x)
        if value.shape != expected:
            hint = " (a transposed gradient?)" if value.shape == expected[::-1] else ""
            raise ValueError(
                f"the {source} gradient for input {position} has shape {value.shape}, but the "
                f"input has shape {expected}{hint}; return a gradient shaped like its input."
            )
        arrays.append(value)
    return tuple(arrays)


def resolve_source(grad: Any) -> GradientSource:
    """grad=None -> autograd; a callable -> a hand formula; a source object -> itself."""
    if grad is None:
        return Autograd()
    if hasattr(grad, "gradients") and hasattr(grad, "name"):
        return grad  # type: ignore[no-any-return]
    if callable(grad):
        name = getattr(grad, "__name__", "formula")
        return Formula(grad, name="formula" if name == "<lambda>" else name)
    raise TypeError(
        f"grad must be None (torch autograd), a callable formula or a gradient source, "
        f"got {type(grad).__name__}"
    )
