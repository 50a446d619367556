"""Compare (second order): the gradient's own derivative, double backward against differences.

``check(..., order=2)`` checks that the gradient is itself differentiated right, as
``torch.autograd.gradgradcheck`` does. With seeded directions ``u_k`` (one per input, standard
normal) and the cotangent ``v`` of a non-scalar f (the check's own), the scalar function::

    h(x, v) = sum_k < u_k, d/dx_k <v, f(x)> >        (one backward, create_graph=True)

has the gradient, by double backward::

    dh/dx_j = sum_k d^2 <v, f> / dx_j dx_k  u_k      (a Hessian-vector product)
    dh/dv   = J u                                    (non-scalar f only)

and ``check(h, (x..., v))`` compares it with central differences of h, element by element, with
the same tolerance rule and error bars as any check (``gradcheck._judge.loop``): the reasons name
the
input (or ``grad_output``) and the element. A backward that is right once but not twice
differentiable (computed in NumPy, detached, or using an intermediate kept on ``ctx`` instead of
``save_for_backward``, pytorch#58509) gives the wrong double backward (often zero) and fails.
A custom Function whose backward is marked ``@once_differentiable`` says it cannot be
differentiated again: order 2 is then inconclusive, saying so, and not run.

A backward whose output does not depend through autograd on the inputs or on ``grad_output``
(computed in NumPy, under ``torch.no_grad``, or on detached tensors) cannot be differentiated
again, whatever the differences of h say: where f is linear in its inputs and returns a
scalar, h's true gradient is zero, the detached backward's is zero too, and the check of h alone
would pass. :func:`detached_gradients` finds it first, with one backward of f along a
``grad_output`` that requires grad (as torch's gradgradcheck feeds one): a gradient that is not
zero is linear in ``grad_output``, so it must carry a ``grad_fn``; one that does not is a fail
that says so.

Cost: that of a full check of h (2 evaluations of h, each one forward and one backward of f,
per element of the inputs and of v).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck._judge import contract as _contract
from gradcheck._judge.verdict import Verdict

if TYPE_CHECKING:
    from gradcheck._check.result import CheckResult


def gradient_along(
    f: Callable[..., Any],
    count: int,
    directions: Sequence[Any],
    outputs: Sequence[int] | None,
    grad_output_view: Callable[[Any], Any] | None = None,
) -> Callable[..., Any]:
    """``h(x_1..x_count, v_1..v_m) = sum_k <u_k, d/dx_k sum_j <v_j, out_j>>`` as a torch
    function; ``outputs``: the positions of f's outputs the v_j go with (None: f is scalar and
    takes no v). ``grad_output_view`` may present each v_j to the backward differently (e.g.
    non-contiguous)."""

    def h(*args: Any) -> Any:
        import torch

        xs, vs = args[:count], args[count:]
        with torch.enable_grad():
            # clone, not detach: a forward-mode tangent (fwd over rev) must survive
            leaves = tuple(x if x.requires_grad else x.clone().requires_grad_(True) for x in xs)
            out = f(*leaves)
            if outputs is None:
                total = out.reshape(())
            else:
                values = tuple(out) if isinstance(out, (tuple, list)) else (out,)
                views = vs if grad_output_view is None else tuple(map(grad_output_view, vs))
                total = sum((values[j] * v).sum() for j, v in zip(outputs, views, strict=True))
            zero = torch.zeros((), dtype=xs[0].dtype, device=xs[0].device)
            if not isinstance(total, torch.Tensor) or not total.requires_grad:
                return zero
            grads = torch.autograd.grad(total, leaves, create_graph=True, allow_unused=True)
        terms = [
            (g * torch.as_tensor(u, dtype=g.dtype, device=g.device)).sum()
            for g, u in zip(grads, directions, strict=True)
            if g is not None
        ]
        return sum(terms, zero)

    return h


def detached_gradients(
    f: Callable[..., Any],
    items: Sequence[Any],
    seed: int,
    outputs: Sequence[int] | None = None,
) -> tuple[str, ...]:
    """Why order 2 fails without running h (module docstring): one reason per input whose
    gradient is not zero and has no ``grad_fn`` after a backward of f with ``create_graph=True``
    along a seeded ``grad_output`` that requires grad. ``outputs``: the positions of f's
    outputs to differentiate (None: every floating output that requires grad). Empty where
    every gradient is connected, or where the backward raises (the check of h reports that)."""
    import torch

    leaves = tuple(x.detach().clone().requires_grad_(True) for x in items)
    rng = np.random.default_rng([seed, 5])
    try:
        with torch.enable_grad():
            out = f(*leaves)
            values = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            chosen = [
                o
                for j, o in enumerate(values)
                if (outputs is None or j in outputs)
                and isinstance(o, torch.Tensor)
                and o.requires_grad
                and o.is_floating_point()
            ]
            if not chosen:
                return ()
            grad_outputs = [
                torch.as_tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype)
                .to(o.device)
                .requires_grad_(True)
                for o in chosen
            ]
            grads = torch.autograd.grad(
                chosen, leaves, grad_outputs, create_graph=True, allow_unused=True
            )
    except Exception:  # the check of h runs the same backward and reports its error
        return ()
    names = sorted(
        {n._forward_cls.__name__ for n in _contract.custom_nodes(chosen) if n is not None}
    )
    where = f" (the backward of {', '.join(names)})" if names else ""
    return tuple(
        f"input {k}: its gradient{where} does not depend on the inputs or on grad_output "
        "through autograd: it was computed under torch.no_grad, on detached tensors or "
        "outside torch (NumPy), so it cannot be differentiated again; compute the backward "
        "with differentiable torch operations, or check order 1 only"
        for k, g in enumerate(grads)
        if g is not None and not g.requires_grad and bool((g != 0).any())
    )


def directions_for(items: Sequence[Any], seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([seed, 2])
    return tuple(rng.standard_normal(tuple(x.shape)) for x in items)


def once_differentiable(f: Callable[..., Any], args: Sequence[Any]) -> list[str]:
    """The names of the custom Functions behind f whose backward is ``@once_differentiable``
    (one forward of f on requires-grad copies)."""
    import torch
    from torch.autograd.function import once_differentiable as marker

    marked = marker(lambda ctx: None).__code__
    call = [
        a.detach().clone().requires_grad_(True)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for a in args
    ]
    with torch.enable_grad():
        out = f(*call)
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    names = []
    for node in _contract.custom_nodes([o for o in outs if isinstance(o, torch.Tensor)]):
        backward = getattr(node._forward_cls, "backward", None)
        if getattr(backward, "__code__", None) is marked:
            names.append(node._forward_cls.__name__)
    return sorted(set(names))


def named_failures(result: CheckResult, count: int) -> tuple[str, ...]:
    """The reasons of a check of h, with the input or grad_output and the worst element named."""
    reasons = []
    for c in result.inputs:
        what = f"input {c.position}" if c.position < count else "grad_output"
        if c.verdict is Verdict.FAIL:
            reasons.append(
                f"{what} fails at element {c.worst_index}: the double backward gives "
                f"{c.worst_analytic:.6g} where differences of the gradient give "
                f"{c.worst_numeric:.6g} (tolerance {c.worst_tolerance:.3g})"
            )
        reasons.extend(f"{what}: {r}" for r in c.reasons)
    first = [r for r in result.reasons if not r.startswith("input ")]
    return (*reasons, *first)


def grad_outputs(
    f: Callable[..., Any], diff: tuple[Any, ...], given: Any, seed: int
) -> tuple[list[int], tuple[Any, ...]]:
    """The positions of f's floating outputs that require grad, and a grad_output for each."""
    import torch

    leaves = tuple(x.clone().requires_grad_(True) for x in diff)
    with torch.enable_grad():
        out = f(*leaves)
    values = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    outputs = [
        j
        for j, o in enumerate(values)
        if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point()
    ]
    if given is not None:
        vs = tuple(given) if isinstance(given, (tuple, list)) else (given,)
        if len(vs) != len(outputs):
            raise ValueError(
                f"grad_outputs has {len(vs)} entries for {len(outputs)} differentiable outputs; "
                "give one per output that requires grad"
            )
        return outputs, tuple(torch.as_tensor(v).detach() for v in vs)
    rng = np.random.default_rng([seed, 3])
    return outputs, tuple(
        torch.as_tensor(rng.standard_normal(tuple(values[j].shape)), dtype=values[j].dtype)
        for j in outputs
    )


def non_contiguous(v: Any) -> Any:
    """v's values in a non-contiguous tensor (every other element of a wider one), still
    differentiable with respect to v."""
    import torch

    if v.numel() < 2:
        return v
    return torch.stack([v, v], dim=-1).select(-1, 0)
