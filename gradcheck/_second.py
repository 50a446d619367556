"""Compare (second order): the gradient's own derivative, double backward against differences.

``check(..., order=2)`` checks that the gradient is itself differentiated right, as
``torch.autograd.gradgradcheck`` does. With seeded directions ``u_k`` (one per input, standard
normal) and the cotangent ``v`` of a non-scalar f (the check's own), the scalar function::

    h(x, v) = sum_k < u_k, d/dx_k <v, f(x)> >        (one backward, create_graph=True)

has the gradient, by double backward::

    dh/dx_j = sum_k d^2 <v, f> / dx_j dx_k  u_k      (a Hessian-vector product)
    dh/dv   = J u                                    (non-scalar f only)

and ``check(h, (x..., v))`` compares it with central differences of h, element by element, with
the same tolerance rule and error bars as any check (``gradcheck._loop``): the reasons name the
input (or ``grad_output``) and the element. A backward that is right once but not twice
differentiable (computed in NumPy, detached, or using an intermediate kept on ``ctx`` instead of
``save_for_backward``, pytorch#58509) gives the wrong double backward (often zero) and fails.
A custom Function whose backward is marked ``@once_differentiable`` says it cannot be
differentiated again: order 2 is then inconclusive, saying so, and not run.

Cost: that of a full check of h (2 evaluations of h, each one forward and one backward of f,
per element of the inputs and of v).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck import _contract
from gradcheck._compare import Verdict

if TYPE_CHECKING:
    from gradcheck._check import CheckResult


@dataclass(frozen=True)
class SecondOrderResult:
    """Order 2, checked.

    Fields:
        verdict: the check of h's verdict; 'inconclusive' when not run (``@once_differentiable``).
        check: the :class:`CheckResult` of ``h`` (inputs: f's inputs, then ``grad_output`` for a
            non-scalar f); None when not run.
        directions: the seeded ``u_k``, one float64 array per input.
        reasons: why the verdict is not a plain pass, naming the input, element and order.
    """

    verdict: Verdict
    check: CheckResult | None
    directions: tuple[np.ndarray, ...]
    reasons: tuple[str, ...]


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


def check_second(
    f: Callable[..., Any],
    items: tuple[Any, ...],
    v: np.ndarray | None,
    *,
    seed: int,
    rtols: Sequence[float | None],
    atols: Sequence[float | None],
    **options: Any,
) -> SecondOrderResult:
    """Order 2 of a torch f (module docstring); ``options`` go to the check of h."""
    import torch

    from gradcheck._check import check

    directions = directions_for(items, seed)
    marked = once_differentiable(f, items)
    if marked:
        why = (
            f"not checked: the backward of {', '.join(marked)} is marked @once_differentiable, "
            "which says it cannot be differentiated again; remove the marker if it can, or "
            "check order 1 only"
        )
        return SecondOrderResult(Verdict.INCONCLUSIVE, None, directions, (why,))
    h = gradient_along(f, len(items), directions, None if v is None else [0])
    extra = () if v is None else (torch.as_tensor(v, dtype=items[0].dtype),)
    rtol: Any = [*rtols, *(None for _ in extra)]  # grad_output: the default tolerances
    atol: Any = [*atols, *(None for _ in extra)]
    result = check(
        h,
        (*items, *extra),
        rtol=rtol,
        atol=atol,
        seed=seed,
        batch="loop",  # h runs a backward inside: vmap over it would only fail and fall back
        contract=False,
        **options,
    )
    return SecondOrderResult(result.verdict, result, directions, named_failures(result, len(items)))


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


TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-6, 1e-5, 1e-3


def gradgradcheck(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    *,
    eps: float = TORCH_EPS,
    atol: float = TORCH_ATOL,
    rtol: float = TORCH_RTOL,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_fwd_over_rev: bool = False,
    check_rev_over_rev: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
) -> bool:
    """``torch.autograd.gradgradcheck``'s call, checked by gradcheck's engine (module docstring).

    The differentiated inputs follow torch's rule (the tensors requiring grad; the others and
    every non-tensor argument reach ``func`` unchanged); every floating output that requires
    grad gets a grad_output (``grad_outputs``, or seeded normal ones), which is differentiated
    too. Each keyword keeps torch's meaning where gradcheck has one:

    * ``eps``, ``atol``, ``rtol``: torch's defaults (1e-6, 1e-5, 1e-3) mean gradcheck's own step
      rule and tolerances (``gradcheck._compare``); other values are used as ``step``, ``atol``,
      ``rtol``.
    * ``nondet_tol``, ``check_undefined_grad``, ``check_grad_dtypes``, ``check_batched_grad``:
      the double backward's contract (``gradcheck._contract``); reentrancy and linearity always.
    * ``fast_mode``: the screen (``mode='screen'``) instead of every element.
    * ``gen_non_contig_grad_outputs``: the backward sees non-contiguous grad_outputs.
    * ``check_fwd_over_rev``: forward mode over the backward (``modes=('rev', 'fwd')`` on h).
    * ``check_rev_over_rev=False`` with ``check_fwd_over_rev=False`` checks nothing: refused.
    * ``masked``: sparse/masked semantics, which gradcheck does not have: refused when True.

    Returns True, or raises ``torch.autograd.gradcheck.GradcheckError`` (a RuntimeError) whose
    message is the check's summary and worst-element table; False with
    ``raise_exception=False``.
    """
    result = second_order_of(
        func,
        inputs,
        grad_outputs,
        eps=eps,
        atol=atol,
        rtol=rtol,
        gen_non_contig_grad_outputs=gen_non_contig_grad_outputs,
        nondet_tol=nondet_tol,
        check_undefined_grad=check_undefined_grad,
        check_grad_dtypes=check_grad_dtypes,
        check_batched_grad=check_batched_grad,
        check_fwd_over_rev=check_fwd_over_rev,
        check_rev_over_rev=check_rev_over_rev,
        fast_mode=fast_mode,
        masked=masked,
    )
    if result.passed:
        return True
    if not raise_exception:
        return False
    from gradcheck.torch import GradcheckError  # torch's error class, with the result

    raise GradcheckError(f"gradgradcheck {result.summary()}\n{result.table()}", result)


def second_order_of(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    **torch_options: Any,
) -> CheckResult:
    """:func:`gradgradcheck`'s check, returning the :class:`CheckResult` of h."""

    from gradcheck._check import check
    from gradcheck._contract import BackwardContract

    o = torch_options
    if o.get("masked"):
        raise ValueError("masked=True is for sparse/masked tensors, which gradcheck does not check")
    if not (o.get("check_rev_over_rev", True) or o.get("check_fwd_over_rev", False)):
        raise ValueError(
            "check_rev_over_rev=False and check_fwd_over_rev=False leave nothing to check; "
            "set one of them"
        )
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    positions = _contract.differentiated_positions(args)
    if not positions:
        raise ValueError("no floating-point tensor among the inputs: nothing to differentiate")
    diff = tuple(args[k].detach() for k in positions)

    def bound(*xs: Any) -> Any:
        call = list(args)
        for k, x in zip(positions, xs, strict=True):
            call[k] = x
        return func(*call)

    outputs, vs = _grad_outputs(bound, diff, grad_outputs, int(o.get("seed", 0)))
    view = _non_contiguous if o.get("gen_non_contig_grad_outputs") else None
    h = gradient_along(bound, len(diff), directions_for(diff, 0), outputs, view)
    fwd, rev = o.get("check_fwd_over_rev", False), o.get("check_rev_over_rev", True)
    contract = BackwardContract(
        undefined_grad=bool(o.get("check_undefined_grad", True)),
        grad_dtypes=bool(o.get("check_grad_dtypes", False)),
        batched_grad=bool(o.get("check_batched_grad", False)),
        nondet_tol=float(o.get("nondet_tol", 0.0)),
    )
    eps, atol, rtol = o.get("eps", TORCH_EPS), o.get("atol", TORCH_ATOL), o.get("rtol", TORCH_RTOL)
    result = check(
        h,
        (*diff, *vs),
        step=None if eps == TORCH_EPS else eps,
        atol=None if atol == TORCH_ATOL else atol,
        rtol=None if rtol == TORCH_RTOL else rtol,
        mode="screen" if o.get("fast_mode") else "auto",
        batch="loop",
        modes=("rev", "fwd") if fwd else ("rev",),
        contract=contract if rev else False,
    )
    if rev:
        return result
    # forward over reverse only: the reverse-mode numbers of h are not asked for
    assert result.beyond is not None and result.beyond.forward is not None
    forward = result.beyond.forward
    return dataclasses.replace(result, verdict=forward.verdict, reasons=forward.reasons)


def _grad_outputs(
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


def _non_contiguous(v: Any) -> Any:
    """v's values in a non-contiguous tensor (every other element of a wider one), still
    differentiable with respect to v."""
    import torch

    if v.numel() < 2:
        return v
    return torch.stack([v, v], dim=-1).select(-1, 0)
