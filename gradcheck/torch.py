"""Surface: ``torch.autograd.gradcheck``'s call, answered by :func:`gradcheck.check`.

The one-line migration of a torch test suite::

    from gradcheck.torch import gradcheck   # was: from torch.autograd import gradcheck

:func:`gradcheck` takes torch's arguments, gives each its meaning here (or refuses it, saying
why), runs :func:`gradcheck.check` and answers as torch does: True, or a
:class:`GradcheckError` (a subclass of torch's own, so ``pytest.raises`` clauses keep working)
whose message is the check's summary and worst-element table; with ``raise_exception=False``,
False. An inconclusive check is not a pass: it raises (or returns False) too, saying why.

torch's keyword arguments, and what they mean here (``TORCH_KEYWORDS``):

* ``eps``: torch's finite-difference step. Left at torch's default (1e-6), the step rule of
  :mod:`gradcheck._numerics.engine` chooses a step per element; given, it is the step
  (``step=eps``).
* ``atol``, ``rtol``: left at torch's defaults (1e-5, 1e-3), gradcheck's own dtype-based
  tolerances apply (``gradcheck._judge.verdict``; much tighter, with an error bar); given, they are
  the tolerances of ``check``.
* ``raise_exception``: as in torch.
* ``nondet_tol``: the reentrancy tolerance of the contract (below). f's own noise needs none:
  it is measured at x and widens the tolerance by its bar (``nondeterministic='widen'``).
* ``fast_mode``: True runs the screen (``mode='screen'``: random directional probes, then
  bisection to the wrong elements), gradcheck's counterpart of torch's random projections.
* ``check_forward_ad``: True also checks forward mode (``modes=('rev', 'fwd')``).
* ``check_undefined_grad``, ``check_grad_dtypes``, ``check_batched_grad``, ``nondet_tol``:
  the backward's contract (``gradcheck._judge.contract``: linearity in grad_output, undefined
  grad_outputs, reentrancy within ``nondet_tol``, gradient dtype/shape/device, and batched
  gradients when ``check_batched_grad``), checked for every autograd source. Gradient dtypes
  are always checked: torch casts a float32 gradient silently to a float64 input, and that is
  a bug worth seeing.
* ``check_backward_ad=False`` (forward mode alone) and ``check_batched_forward_grad`` are
  refused, saying why.
* ``masked``: None or False; True (sparse masked semantics) is refused.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from gradcheck._check import explain as _explain
from gradcheck._check import second as _second
from gradcheck._check.check import check
from gradcheck._check.result import CheckResult, Part, with_part
from gradcheck._judge.contract import BackwardContract, differentiated_positions
from gradcheck._judge.verdict import Verdict

# torch.autograd.gradcheck is both a function and the module that holds torch's error class.
_TorchGradcheckError: type[Exception] = importlib.import_module(
    "torch.autograd.gradcheck"
).GradcheckError

__all__ = ["TORCH_KEYWORDS", "GradcheckError", "gradcheck", "gradgradcheck"]

# torch.autograd.gradcheck's defaults: a value left at its default takes gradcheck's meaning.
TORCH_DEFAULTS: dict[str, Any] = {
    "eps": 1e-6,
    "atol": 1e-5,
    "rtol": 1e-3,
    "raise_exception": True,
    "nondet_tol": 0.0,
    "check_undefined_grad": True,
    "check_grad_dtypes": False,
    "check_batched_grad": False,
    "check_batched_forward_grad": False,
    "check_forward_ad": False,
    "check_backward_ad": True,
    "fast_mode": False,
    "masked": None,
}
TORCH_KEYWORDS = tuple(TORCH_DEFAULTS)

# Refused when True: what each does in torch, and what it will map to here.
_NOT_YET = {
    "check_batched_forward_grad": "batched forward-mode gradients (vmap over jvp) are not "
    "checked; check_forward_ad=True checks forward mode itself, leave this one out",
}


class GradcheckError(_TorchGradcheckError):  # type: ignore[misc, valid-type]
    """The check did not pass; the message is its summary and worst-element table. ``result``
    holds the :class:`gradcheck.CheckResult`."""

    def __init__(self, message: str, result: CheckResult) -> None:
        super().__init__(message)
        self.result = result


def gradcheck(func: Callable[..., Any], inputs: Any, **torch_options: Any) -> bool:
    """``torch.autograd.gradcheck(func, inputs, ...)`` answered by :func:`gradcheck.check`.

    ``inputs``: a tensor, or a tuple/list of f's arguments (tensors, numbers, None, ...);
    differentiated are the tensors that require grad (or, when none does, every floating one).
    Returns True when the check passes; otherwise raises :class:`GradcheckError` (its message
    is the worst-element table), or returns False with ``raise_exception=False``. Extra
    gradcheck options may be given with the ``gradcheck_`` prefix (``gradcheck_seed=3``).
    """
    __tracebackhide__ = True
    raise_exception, options = torch_check_options(torch_options)
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else inputs
    result = check(func, args, **options)
    return verdict_of(result, "gradcheck", raise_exception)


def gradgradcheck(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    *,
    eps: float = TORCH_DEFAULTS["eps"],
    atol: float = TORCH_DEFAULTS["atol"],
    rtol: float = TORCH_DEFAULTS["rtol"],
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
      rule and tolerances (``gradcheck._judge.verdict``); other values are used as ``step``,
      ``atol``,
      ``rtol``.
    * ``nondet_tol``, ``check_undefined_grad``, ``check_grad_dtypes``, ``check_batched_grad``:
      the double backward's contract (``gradcheck._judge.contract``); reentrancy and linearity
      always.
    * ``fast_mode``: the screen (``mode='screen'``) instead of every element.
    * ``gen_non_contig_grad_outputs``: the backward sees non-contiguous grad_outputs.
    * ``check_fwd_over_rev``: forward mode over the backward (``modes=('rev', 'fwd')`` on h).
    * ``check_rev_over_rev=False`` with ``check_fwd_over_rev=False`` checks nothing: refused.
    * ``masked``: sparse/masked semantics, which gradcheck does not have: refused when True.

    Returns True, or raises ``torch.autograd.gradcheck.GradcheckError`` (a RuntimeError) whose
    message is the check's summary and worst-element table; False with
    ``raise_exception=False``.
    """
    __tracebackhide__ = True
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
    message = _explain.failure_message(result, f"gradgradcheck: {SECOND_ORDER} ")
    raise GradcheckError(_second_order_hint(result, message), result)


# What gradgradcheck checks, said in its failures: the inputs there are h's (f's inputs, then
# the grad_outputs), and the analytic side is the double backward.
SECOND_ORDER = (
    "second order (the gradient's own derivative: the double backward against differences of "
    "the gradient; the inputs after f's are its grad_outputs),"
)


def _second_order_hint(result: CheckResult, message: str) -> str:
    """The message, plus why when the double backward is zero wherever it fails: a backward
    computed outside autograd (detached) has a derivative of zero for autograd."""
    failing = [c for c in result.inputs if c.verdict is Verdict.FAIL]
    if failing and all(not c.analytic.any() and c.numeric.any() for c in failing):
        names = ", ".join(_explain.input_name(c) for c in failing)
        message += (
            f"\nhint: the double backward is zero for {names} while the gradient does change: "
            "the backward is probably detached from autograd (computed under torch.no_grad(), "
            "with .detach(), .item() or NumPy), so a second derivative through it is zero; "
            "write it with differentiable torch operations, or mark it @once_differentiable "
            "if it is not meant to be differentiated again"
        )
    return message


def second_order_of(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    **torch_options: Any,
) -> CheckResult:
    """:func:`gradgradcheck`'s check, returning the :class:`CheckResult` of h."""
    __tracebackhide__ = True
    o = torch_options
    if o.get("masked"):
        raise ValueError("masked=True is for sparse/masked tensors, which gradcheck does not check")
    if not (o.get("check_rev_over_rev", True) or o.get("check_fwd_over_rev", False)):
        raise ValueError(
            "check_rev_over_rev=False and check_fwd_over_rev=False leave nothing to check; "
            "set one of them"
        )
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    positions = differentiated_positions(args)
    if not positions:
        raise ValueError("no floating-point tensor among the inputs: nothing to differentiate")
    diff = tuple(args[k].detach() for k in positions)

    def bound(*xs: Any) -> Any:
        call = list(args)
        for k, x in zip(positions, xs, strict=True):
            call[k] = x
        return func(*call)

    outputs, vs = _second.grad_outputs(bound, diff, grad_outputs, int(o.get("seed", 0)))
    view = _second.non_contiguous if o.get("gen_non_contig_grad_outputs") else None
    h = _second.gradient_along(bound, len(diff), _second.directions_for(diff, 0), outputs, view)
    fwd, rev = o.get("check_fwd_over_rev", False), o.get("check_rev_over_rev", True)
    contract = BackwardContract(
        undefined_grad=bool(o.get("check_undefined_grad", True)),
        grad_dtypes=bool(o.get("check_grad_dtypes", False)),
        batched_grad=bool(o.get("check_batched_grad", False)),
        nondet_tol=float(o.get("nondet_tol", 0.0)),
    )
    eps, atol, rtol = (o.get(k, TORCH_DEFAULTS[k]) for k in ("eps", "atol", "rtol"))
    result = check(
        h,
        (*diff, *vs),
        step=None if eps == TORCH_DEFAULTS["eps"] else eps,
        atol=None if atol == TORCH_DEFAULTS["atol"] else atol,
        rtol=None if rtol == TORCH_DEFAULTS["rtol"] else rtol,
        mode="screen" if o.get("fast_mode") else "auto",
        batch="loop",
        modes=("rev", "fwd") if fwd else ("rev",),
        contract=contract if rev else False,
    )
    detached = _second.detached_gradients(bound, diff, int(o.get("seed", 0)), outputs)
    if detached:  # the backward cannot be differentiated again: a fail that says why
        gradient = next(p for p in result.parts if p.name == "gradient")
        failed = Part("gradient", Verdict.FAIL, (*detached, *gradient.reasons), gradient.record)
        result = dataclasses.replace(
            with_part(result, failed, ()), reasons=(*detached, *result.reasons)
        )
    if rev or detached:
        return result
    # forward over reverse only: the reverse-mode numbers of h are not asked for
    assert result.beyond is not None and result.beyond.forward is not None
    forward = result.beyond.forward
    kept = tuple(p for p in result.parts if p.name == "beyond")  # its verdict is forward's
    return dataclasses.replace(result, parts=kept, reasons=forward.reasons)


def torch_check_options(given: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(raise_exception, keyword arguments of :func:`gradcheck.check`) for torch's keywords;
    shared by the functions of this module."""
    __tracebackhide__ = True
    unknown = [k for k in given if k not in TORCH_DEFAULTS and not k.startswith("gradcheck_")]
    if unknown:
        raise TypeError(
            f"gradcheck() got unexpected keyword argument(s) {unknown}; torch's are "
            f"{list(TORCH_KEYWORDS)}, and gradcheck's own take the prefix gradcheck_"
        )
    value = {**TORCH_DEFAULTS, **given}
    for name, why in _NOT_YET.items():
        if value[name]:
            raise NotImplementedError(f"{name}=True: {why}")
    if not value["check_backward_ad"]:
        raise NotImplementedError(
            "check_backward_ad=False leaves only forward mode; gradcheck always checks the "
            "backward: pass check_forward_ad=True to check forward mode beside it"
        )
    if value["masked"]:
        raise NotImplementedError(
            "masked=True (sparse masked semantics): gradcheck differentiates dense tensors; "
            "pass dense inputs and leave masked out"
        )
    options: dict[str, Any] = {
        k.removeprefix("gradcheck_"): v for k, v in given.items() if k.startswith("gradcheck_")
    }
    for name, ours in (("eps", "step"), ("atol", "atol"), ("rtol", "rtol")):
        if name in given and given[name] != TORCH_DEFAULTS[name]:
            options.setdefault(ours, given[name])
    if value["fast_mode"]:
        options.setdefault("mode", "screen")
    if value["check_forward_ad"]:
        options.setdefault("modes", ("rev", "fwd"))
    options.setdefault(
        "contract",
        BackwardContract(
            undefined_grad=bool(value["check_undefined_grad"]),
            batched_grad=bool(value["check_batched_grad"]),
            nondet_tol=float(value["nondet_tol"]),
        ),
    )
    return bool(value["raise_exception"]), options


def verdict_of(result: CheckResult, what: str, raise_exception: bool) -> bool:
    """torch's answer: True for a pass; else a :class:`GradcheckError` or False."""
    __tracebackhide__ = True
    if result.verdict is Verdict.PASS:
        return True
    if not raise_exception:
        return False
    raise GradcheckError(_explain.failure_message(result, f"{what} "), result)
