"""Surface: ``torch.autograd.gradcheck``'s call, answered by :func:`gradcheck.check`.

The one-line migration of a torch test suite::

    from gradcheck.torch import gradcheck   # was: from torch.autograd import gradcheck

:func:`gradcheck` takes torch's arguments, gives each its meaning here (or refuses it, saying
why), runs :func:`gradcheck.check` and answers as torch does: True, or a
:class:`GradcheckError` (a subclass of torch's own, so ``pytest.raises`` clauses keep working)
whose message is the check's summary and worst-element table; with ``raise_exception=False``,
False. An inconclusive check is not a pass: it raises (or returns False) too, saying why. An
exception f raises is f's own: it propagates with its type and a note on where f was
evaluated; where f raises only at perturbed points, smaller steps are tried first.

torch's keyword arguments, and what they mean here (``TORCH_KEYWORDS``):

* ``eps``: torch's finite-difference step. Left at torch's default (1e-6), the step rule of
  :mod:`gradcheck._numerics.engine` chooses a step per element; given, it is the step
  (``step=eps``) and an upper bound: the screen never grows it, and a probe that crosses a
  kink is measured again at smaller steps (``gradcheck._judge.screen_kinks``).
* ``atol``, ``rtol``: left at torch's defaults (1e-5, 1e-3), gradcheck's own dtype-based
  tolerances apply (``gradcheck._judge.verdict``; much tighter, with an error bar), except that
  what is zero to within 1e-5 and to within what the step resolves passes as in torch
  (``gradcheck._judge.zero``; the reasons say that rule decided); given, they are the
  tolerances of ``check``.
* ``raise_exception``: as in torch.
* ``nondet_tol``: the reentrancy tolerance of the contract (below); beyond it, a difference
  within the gradient's own rounding passes with a note. f's own noise needs none: it is
  measured at x and widens the tolerance by its bar (``nondeterministic='widen'``).
* ``fast_mode``: True checks every input in full when none has more than
  ``FAST_FULL_MAX_ELEMENTS`` elements, else runs ``mode='fast'``, gradcheck's counterpart of
  torch's random projections: one probe (a directional derivative with its error bar, 4
  evaluations of f) along random signs moves every input at once, re-measured at smaller
  steps where it crosses a kink; where it does not pass, each input is probed alone and then
  screened (``mode='screen'``, ``FAST_PROBES`` probes, bisection to the wrong elements).
  f is evaluated once per point (``FAST_SCREEN_BATCH``) unless ``gradcheck_batch`` says
  otherwise.
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
from typing import Any, NoReturn

from gradcheck._check import explain as _explain
from gradcheck._check import second as _second
from gradcheck._check.check import check
from gradcheck._check.result import CheckResult, Part, with_part
from gradcheck._judge import pattern as _pattern
from gradcheck._judge import zero as _zero
from gradcheck._judge.contract import BackwardContract, differentiated_positions
from gradcheck._judge.verdict import Verdict, combine
from gradcheck._sources.reference import CallError

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
    if options.pop("fast_mode", False):
        options.setdefault("mode", _fast_mode(args))
        options.setdefault("probes", FAST_PROBES)
        if options["mode"] == "fast":
            options.setdefault("batch", FAST_SCREEN_BATCH)
    result = _stepped_down(func, args, options)
    if "atol" not in options and result.verdict is not Verdict.PASS:
        result = _zero_within_torch_atol(result)
    if result.verdict is Verdict.FAIL:
        hints = [
            f"input {c.position}: {h}" for c in result.inputs if (h := _pattern.constant_offset(c))
        ]
        result = dataclasses.replace(result, reasons=(*result.reasons, *hints))
    return verdict_of(result, "gradcheck", raise_exception)


# Under fast_mode=True: inputs of up to this many elements (all of them) are checked in full,
# which costs 2n evaluations against mode 'fast''s 4 and leaves nothing to chance; larger ones
# take mode 'fast'. In float64 a probe resolves a relative error of about 1e-8 of the
# gradient's norm, and a full check costs more evaluations above 2 elements (it measured
# slower than mode 'fast' at every size from 1 element on: its Taylor and kink analysis).
FAST_FULL_MAX_ELEMENTS = 2
# Below float64 a probe's tolerance is sqrt(eps) of float32 times the gradient's norm (3.5e-4):
# in the custom-Function corpus (benchmarks/bench_torch_corpus.py --fast-mode) one probe let
# 3 of 38 float32 mutants through (a constant 0.1% off, an eps added twice) that the full check
# of their 4 to 16 elements catches. Small inputs below float64 are checked in full up to this.
FAST_FULL_MAX_ELEMENTS_LOW = 16
# Screen probes where mode 'fast''s probe does not pass and an input is screened (the default
# is 5). A single wrong element above the screen's bound fails any probe with certainty; errors
# in several elements are missed by one probe with probability at most 1/2, so by the pilot
# and this many probes with at most 2**-FAST_PROBES. torch's fast mode itself compares one
# random projection.
FAST_PROBES = 2
# How mode 'fast' evaluates f: one call per perturbed point, as torch's fast mode does. A probe
# evaluates four points; vmap over four points of a small f costs more than four calls (its
# first trial call, the batching fallbacks of ops without a rule: 4.5 ms against 3.4 ms per
# check of a 2 x 3 x 12 x 12 affine warp); f is evaluated at the same points either way.
FAST_SCREEN_BATCH = "loop"


def _fast_mode(args: Any) -> str:
    """'full' when every differentiated input is small enough: in float64, that a full check
    costs no more evaluations than mode 'fast'; below, up to 16 elements. Else 'fast'."""
    import torch

    values = args if isinstance(args, tuple) else (args,)
    tensors = [a for a in values if isinstance(a, torch.Tensor)]
    chosen = differentiated_positions(tensors)
    wide = all(tensors[k].dtype in (torch.float64, torch.complex128) for k in chosen)
    most = FAST_FULL_MAX_ELEMENTS if wide else FAST_FULL_MAX_ELEMENTS_LOW
    small = all(tensors[k].numel() <= most for k in chosen)
    return "full" if small else "fast"


def _stepped_down(func: Callable[..., Any], args: Any, options: dict[str, Any]) -> CheckResult:
    """``check(func, args, **options)``; where f raises at a perturbed point, the check again at
    smaller steps (torch's eps, then a tenth and a hundredth of it: a given eps is an upper
    bound), saying so in the reasons. An error f still raises, or raises at x, is f's own:
    it propagates with its type and a note on where f was evaluated."""
    try:
        return check(func, args, **options)
    except CallError as exc:
        if not _at_perturbed_point(exc):
            _raise_own(exc)
        last = exc
    base = options.get("step") or TORCH_DEFAULTS["eps"]
    if not isinstance(base, (int, float)):  # a step per element or per input: as given
        _raise_own(last)
    steps = [base / 10, base / 100] if "step" in options else [base, base / 10, base / 100]
    for step in steps:
        try:
            result = check(func, args, **{**options, "step": step})
        except CallError as exc:
            if not _at_perturbed_point(exc):
                _raise_own(exc)
            last = exc
            continue
        cause = last.__cause__
        note = (
            f"f raised {type(cause).__name__} at a perturbed point ({_first_line(last)}); "
            f"checked again at step {step:g}, where it does not"
        )
        return dataclasses.replace(result, reasons=(*result.reasons, note))
    _raise_own(last)


def _at_perturbed_point(exc: CallError) -> bool:
    text = str(exc)
    return text.startswith("f raised") and "perturbed point" in text.split(":")[0]


def _raise_own(exc: CallError) -> NoReturn:
    """Raise f's own exception (the CallError's cause) with a note (PEP 678) saying where f
    was evaluated; its own cause, if any, stays."""
    cause = exc.__cause__
    if cause is None:
        raise exc
    cause.add_note(f"gradcheck: {_first_line(exc)}")
    raise cause from cause.__cause__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _zero_within_torch_atol(result: CheckResult) -> CheckResult:
    """With atol left at torch's default: elements zero to within it and to within what the
    step resolves pass, as torch passes them (``gradcheck._judge.zero``), saying so."""
    if any("NaN/Inf at the inputs" in r for r in result.reasons):
        return result
    atol = TORCH_DEFAULTS["atol"]
    probes = result.screen.probes if result.screen is not None else ()
    inputs = tuple(
        _zero.zero_along_probes(c, [p for p in probes if p.input == k], atol)
        if not c.element_verdicts.size
        else _zero.zero_within(c, atol)
        for k, c in enumerate(result.inputs)
    )
    if all(new is old for new, old in zip(inputs, result.inputs, strict=True)):
        return result
    gradient = combine([c.verdict for c in inputs])
    parts = tuple(_rejudged(p, gradient) for p in result.parts)
    notes = [f"input {c.position}: {n}" for c in inputs for n in c.notes if "torch's" in n]
    return dataclasses.replace(
        result, inputs=inputs, parts=parts, reasons=(*result.reasons, *notes)
    )


def _rejudged(part: Part, gradient: Verdict) -> Part:
    """A part of the result after torch's atol passed elements: the gradient comparison (and
    the screen) take the inputs' new verdict; the Taylor tests and the traced outputs, records
    of elements that did not pass, pass once every input does; the rest stands."""
    if part.name in ("gradient", "screen"):
        return dataclasses.replace(part, verdict=gradient)
    if part.name in ("taylor", "outputs") and gradient is Verdict.PASS:
        return dataclasses.replace(part, verdict=Verdict.PASS)
    return part


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
    * ``fast_mode``: ``mode='fast'`` (one probe, screened where it does not pass) instead of
      every element.
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
        mode="fast" if o.get("fast_mode") else "auto",
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
        options["fast_mode"] = True  # gradcheck() picks the mode; others screen
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
