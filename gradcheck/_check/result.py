"""Check (results): what a check found, as records with documented fields.

:class:`CheckResult` is what ``gradcheck.check`` returns; :class:`Beyond` holds forward mode,
order 2 and the backward's contract; :class:`SecondOrderResult` is order 2's record. They hold
results only: the checks that fill them live in ``gradcheck._check.check`` and the judges below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate

from gradcheck._check.trace import OutputReport
from gradcheck._judge.contract import ContractResult
from gradcheck._judge.forward import ForwardResult
from gradcheck._judge.loop import Numerics
from gradcheck._judge.screen import Screen
from gradcheck._judge.taylor import TaylorResult
from gradcheck._judge.verdict import WORST_ELEMENT_COLUMNS, InputComparison, Verdict, combine


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
        blocks = []
        if self.forward is not None and self.forward.verdict is not Verdict.PASS:
            blocks.append((FORWARD_HEADER, self.forward.inputs))
        second = self.second.check if self.second is not None else None
        if second is not None and second.verdict is not Verdict.PASS:
            blocks.append(
                ("order 2 (the last input is grad_output when f is not scalar)", second.inputs)
            )
        return "\n".join(f"{title}:\n{_table(inputs, count)}" for title, inputs in blocks)


# What a forward-mode row is: its index is (direction, *output element), not an input element.
FORWARD_HEADER = (
    "forward mode (Jacobian-vector products): each row is one seeded direction k along which "
    "the input moved, and one element of f's output; index = (k, output element); analytic = "
    "the JVP's entry there, numeric = the directional difference of f"
)


def _table(inputs: Sequence[InputComparison], count: int) -> str:
    rows = [
        [c.position, *(row[key] for _, key in WORST_ELEMENT_COLUMNS)]
        for c in inputs
        if c.verdict is not Verdict.PASS
        for row in c.worst_elements(count)
    ]
    headers = ["input", *(header for header, _ in WORST_ELEMENT_COLUMNS)]
    return tabulate(rows, headers=headers, floatfmt=".6g")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one gradient check.

    Fields:
        verdict: 'pass', 'fail' or 'inconclusive' (a str-valued :class:`Verdict`).
        inputs: one :class:`InputComparison` per input: per-element numeric and analytic values,
            error bars, tolerances, verdicts and reasons; the worst element and the maxima are
            properties computed from them.
        source: the analytic side's name ('autograd', the formula's name, ...).
        seed: the seed of the random cotangent (and anything else random); replay with it.
        evaluations: points at which this check evaluated f (numerical side and the autograd
            forward; a batched call of B points counts B; with ``beyond``, forward mode's
            points, order 2's evaluations of h and the contract's one forward too).
        numerics: how the numerical side ran (:class:`Numerics`: dtype policy, evaluation
            dtype, method, evaluation path, and per input how many elements the first level
            left for the second), each with the reason for it.
        mode: 'full' (every element differentiated, ``gradcheck._judge.loop``), 'screen' (random
            directional probes, then bisection to the wrong elements; see ``screen``) or
            'mixed' (mode 'auto': the inputs above ``AUTO_FULL_MAX_ELEMENTS`` screened, the
            others in full; a screened input's comparison holds only its located elements).
        cotangent: the cotangent used for a non-scalar f, else None.
        reasons: why the verdict is not a plain pass, one sentence each.
        noise_floor: the standard deviation of f over repeated evaluations at x (0.0 when
            repeatable); see ``nondeterministic``.
        taylor: the Taylor-remainder tests that decided elements the difference check left
            inconclusive (:class:`TaylorResult`, one per run); () in mode 'screen'.
        screen: in mode 'screen', the probes, the single-element bound per input and the
            located elements (:class:`Screen`); None in mode 'full'.
        outputs: for an f that is not scalar, its judged and skipped outputs and the failing
            elements traced to the outputs responsible (:class:`OutputReport`); else None.
        beyond: forward mode, order 2 and the backward's contract (``gradcheck._check.beyond``:
            ``beyond.forward``, ``beyond.second``, ``beyond.contract``, ``beyond.failed``);
            their verdicts are part of ``verdict`` and their reasons of ``reasons`` (prefixed
            'fwd:', 'order 2:', 'contract (item):'). None when none was checked.
    """

    verdict: Verdict
    inputs: tuple[InputComparison, ...]
    source: str
    seed: int
    evaluations: int
    numerics: Numerics
    mode: str = "full"
    cotangent: np.ndarray | None = None
    reasons: tuple[str, ...] = ()
    noise_floor: float = 0.0
    taylor: tuple[TaylorResult, ...] = ()
    screen: Screen | None = None
    outputs: OutputReport | None = None
    beyond: Beyond | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def max_abs_error(self) -> float:
        return max(c.max_abs_error for c in self.inputs)

    @property
    def max_rel_error(self) -> float:
        return max(c.max_rel_error for c in self.inputs)

    def table(self, count: int = 5) -> str:
        """The worst elements of every input that is not a plain pass, as a small text table
        (``reason``: see ``gradcheck._judge.verdict.REASONS`` and docs/verdicts.md). Inputs are
        named when the name is known (a dict key, f's parameter name); for an f with several
        outputs, or a small non-scalar one, the first column names the output (elements)
        a failing element was traced to."""
        rows = []
        traced = self.outputs is not None and bool(self.outputs.traced)
        for c in self.inputs:
            if c.verdict is Verdict.PASS and self.verdict is not Verdict.PASS:
                continue
            for row in c.worst_elements(count):
                cells = [
                    input_label(c).removeprefix("input "),
                    *(row[key] for _, key in WORST_ELEMENT_COLUMNS),
                ]
                if traced:
                    assert self.outputs is not None
                    found = self.outputs.find(c.position, row["index"])  # type: ignore[arg-type]
                    cells.insert(0, "" if found is None else found.describe())
                rows.append(cells)
        headers = ["input", *(header for header, _ in WORST_ELEMENT_COLUMNS)]
        table = tabulate(
            rows, headers=(["output", *headers] if traced else headers), floatfmt=".6g"
        )
        more = self.beyond.table(count) if self.beyond is not None else ""
        if not more:
            return table
        return f"{table}\n{more}" if rows else more

    def summary(self) -> str:
        """One line: verdict, source, worst errors, policy, seed, evaluations (and the mode)."""
        errors = f"max abs err {self.max_abs_error:.3g}, max rel err {self.max_rel_error:.3g}"
        if self.screen is not None:
            errors = self.screen.summary()
        numerics = self.numerics
        line = (
            f"{self.verdict}: {self.source} vs numerical "
            f"({numerics.policy} {numerics.evaluation_dtype}), "
            f"{errors}, seed {self.seed}, {self.evaluations} evaluations"
        )
        return line + "".join(f"; {r}" for r in self.reasons)


def input_label(c: InputComparison) -> str:
    return f"input {c.position}" + (f" ({c.name})" if c.name else "")
