"""Check (results): what a check found, as records with documented fields.

:class:`CheckResult` is what ``gradcheck.check`` returns; :class:`Beyond` holds forward mode,
order 2 and the backward's contract; :class:`SecondOrderResult` is order 2's record. They hold
results only: the checks that fill them live in ``gradcheck._check.check`` and the judges below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._check import show as _show
from gradcheck._check.show import FORWARD_HEADER as FORWARD_HEADER
from gradcheck._check.show import input_label as input_label
from gradcheck._check.trace import OutputReport
from gradcheck._judge.contract import ContractResult
from gradcheck._judge.forward import ForwardResult
from gradcheck._judge.loop import Numerics
from gradcheck._judge.screen import Screen
from gradcheck._judge.taylor import TaylorResult
from gradcheck._judge.verdict import InputComparison, Verdict, combine


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


@dataclass(frozen=True)
class Beyond:
    """What ``check`` found beyond the first-order reverse-mode check.

    Fields:
        modes: the modes checked ('rev', and 'fwd' when asked).
        order: 1, or 2 when the double backward was checked.
        forward: forward mode (:class:`ForwardResult`); None unless 'fwd' is in ``modes``.
        second: order 2 (:class:`SecondOrderResult`); None unless ``order=2``.
        contract: the backward's contract (:class:`ContractResult`); None when not checked
            (``contract=False``, or the gradient source is not torch autograd).

    ``verdict``, ``reasons`` and ``failed`` (the parts that failed: 'fwd', 'order 2',
    'contract (linearity)', ...) are derived from them.
    """

    modes: tuple[str, ...]
    order: int
    forward: ForwardResult | None = None
    second: SecondOrderResult | None = None
    contract: ContractResult | None = None

    @property
    def verdict(self) -> Verdict:
        parts = [p.verdict for p in (self.forward, self.second, self.contract) if p is not None]
        return combine(parts) if parts else Verdict.PASS

    @property
    def reasons(self) -> tuple[str, ...]:
        out = []
        if self.forward is not None:
            out += [f"fwd: {r.removeprefix('fwd: ')}" for r in self.forward.reasons]
        if self.second is not None:
            out += [f"order 2: {r}" for r in self.second.reasons]
        if self.contract is not None:
            out += [f"contract ({r.replace(': ', '): ', 1)}" for r in self.contract.reasons]
        return tuple(out)

    @property
    def failed(self) -> tuple[str, ...]:
        out = []
        if self.forward is not None and self.forward.verdict is Verdict.FAIL:
            out.append("fwd")
        if self.second is not None and self.second.verdict is Verdict.FAIL:
            out.append("order 2")
        if self.contract is not None:
            out += [f"contract ({name})" for name in self.contract.failed]
        return tuple(out)

    def table(self, count: int = 5) -> str:
        """The worst elements of forward mode and order 2 where they are not a plain pass."""
        return _show.beyond_table(self, count)


@dataclass(frozen=True)
class Part:
    """One record of a check, with its own verdict and reasons.

    Fields:
        name: 'gradient' (the first-order reverse-mode comparison of ``inputs``: always there),
            'taylor' (the Taylor tests that decided elements; record: a tuple of
            :class:`TaylorResult`), 'screen' (record: :class:`Screen`), 'outputs' (record:
            :class:`OutputReport`) or 'beyond' (forward mode, order 2 and the backward's
            contract; record: :class:`Beyond`).
        verdict: the part's verdict; the check's is derived from the parts' by ``combine``.
        reasons: why the part's verdict is not a plain pass, as the check's reasons say it.
        record: the part's own record (None for 'gradient', whose record is ``inputs``).
    """

    name: str
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    record: Any = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one gradient check.

    Fields:
        inputs: one :class:`InputComparison` per input: per-element numeric and analytic values,
            error bars, tolerances, verdicts and reasons; the worst element and the maxima are
            properties computed from them.
        seed: the seed of the random cotangent (and anything else random); replay with it.
        evaluations: points at which this check evaluated f (numerical side and the autograd
            forward; a batched call of B points counts B; with ``beyond``, forward mode's
            points, order 2's evaluations of h and the contract's one forward too).
        numerics: how the check ran (:class:`Numerics`: the source, the mode, the cotangent,
            f's noise floor, dtype policy, evaluation dtype, method, evaluation path, and per
            input how many elements the first level left for the second), with the reasons.
        reasons: why the verdict is not a plain pass, one sentence each (the parts' reasons,
            in order).
        parts: the check's records (:class:`Part`): 'gradient' always, and 'taylor', 'screen',
            'outputs', 'beyond' where they ran. Each has its own verdict and reasons.

    Derived (properties): ``verdict`` ('pass', 'fail' or 'inconclusive', a str-valued
    :class:`Verdict`: the parts' verdicts combined, any fail fails), ``passed``,
    ``max_abs_error``, ``max_rel_error``; how it ran, from ``numerics``: ``source`` (the
    analytic side's name), ``mode`` ('full': every element differentiated,
    ``gradcheck._judge.loop``; 'screen': random directional probes, then bisection to the
    wrong elements; 'mixed': mode 'auto' screened the inputs above
    ``AUTO_FULL_MAX_ELEMENTS`` and checked the others in full; a screened input's comparison
    holds only its located elements), ``cotangent`` (for a non-scalar f, else None),
    ``noise_floor`` (the standard deviation of f over repeated evaluations at x; 0.0 when
    repeatable); and the parts' records: ``taylor`` (the Taylor-remainder tests that decided
    elements the difference check left inconclusive, :class:`TaylorResult`, one per run; ()
    when none), ``screen`` (the probes, the single-element bound per input and the located
    elements, :class:`Screen`; None when no input was screened), ``outputs`` (for an f that is
    not scalar, its judged and skipped outputs and the failing elements traced to the outputs
    responsible, :class:`OutputReport`; else None), ``beyond`` (forward mode, order 2 and the
    backward's contract, ``gradcheck._check.beyond``: ``beyond.forward``, ``beyond.second``,
    ``beyond.contract``, ``beyond.failed``; their reasons are prefixed 'fwd:', 'order 2:',
    'contract (item):'; None when none was checked).
    """

    inputs: tuple[InputComparison, ...]
    seed: int
    evaluations: int
    numerics: Numerics
    reasons: tuple[str, ...] = ()
    parts: tuple[Part, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return combine([p.verdict for p in self.parts])

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def max_abs_error(self) -> float:
        return max(c.max_abs_error for c in self.inputs)

    @property
    def max_rel_error(self) -> float:
        return max(c.max_rel_error for c in self.inputs)

    def part(self, name: str) -> Part | None:
        """The part of that name, or None when it did not run."""
        return next((p for p in self.parts if p.name == name), None)

    def _record(self, name: str) -> Any:
        found = self.part(name)
        return None if found is None else found.record

    @property
    def source(self) -> str:
        return self.numerics.source

    @property
    def mode(self) -> str:
        return self.numerics.mode

    @property
    def cotangent(self) -> np.ndarray | None:
        return self.numerics.cotangent

    @property
    def noise_floor(self) -> float:
        return self.numerics.noise_floor

    @property
    def taylor(self) -> tuple[TaylorResult, ...]:
        runs: tuple[TaylorResult, ...] = self._record("taylor") or ()
        return runs

    @property
    def screen(self) -> Screen | None:
        found: Screen | None = self._record("screen")
        return found

    @property
    def outputs(self) -> OutputReport | None:
        found: OutputReport | None = self._record("outputs")
        return found

    @property
    def beyond(self) -> Beyond | None:
        found: Beyond | None = self._record("beyond")
        return found

    def table(self, count: int = 5) -> str:
        """The worst elements of every input that is not a plain pass, as a small text table
        (``reason``: see ``gradcheck._judge.verdict.REASONS`` and docs/verdicts.md). Inputs are
        named when the name is known (a dict key, f's parameter name); for an f with several
        outputs, or a small non-scalar one, the first column names the output (elements)
        a failing element was traced to."""
        return _show.table(self, count)

    def summary(self) -> str:
        """One line: verdict, source, worst errors, policy, seed, evaluations (and the mode)."""
        return _show.summary(self)


def with_part(
    result: CheckResult, part: Part, reasons: tuple[str, ...] | None = None
) -> CheckResult:
    """The result with ``part`` added (or in place of the part of its name), and ``reasons``
    (by default the part's) after the result's own."""
    others = [p for p in result.parts if p.name != part.name]
    at = next((i for i, p in enumerate(result.parts) if p.name == part.name), len(others))
    parts = (*others[:at], part, *others[at:])
    more = part.reasons if reasons is None else reasons
    return dataclasses.replace(result, parts=parts, reasons=(*result.reasons, *more))
