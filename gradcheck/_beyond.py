"""Compare (beyond first order): forward mode, order 2 and the backward's contract, for ``check``.

``check`` runs the first-order reverse-mode check, then what ``modes``, ``order`` and
``contract`` ask for here; the result holds them in ``CheckResult.beyond`` (a :class:`Beyond`)
and its verdict and reasons include theirs, each reason prefixed with the part it is about:
``fwd:``, ``order 2:`` or ``contract (item):``.

* ``modes=("rev", "fwd")``: Jacobian-vector products (``gradcheck._forward``);
* ``order=2``: the double backward (``gradcheck._second``), autograd sources only;
* ``contract`` (default on for torch autograd): ``gradcheck._contract``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tabulate import tabulate

from gradcheck import _arrays
from gradcheck._compare import WORST_ELEMENT_COLUMNS, InputComparison, Verdict, combine
from gradcheck._contract import BackwardContract, ContractResult, check_contract
from gradcheck._forward import ForwardResult, check_forward
from gradcheck._second import SecondOrderResult, check_second

MODES = ("rev", "fwd")
ContractOption = bool | BackwardContract


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
            blocks.append(("fwd (index: direction, output element)", self.forward.inputs))
        second = self.second.check if self.second is not None else None
        if second is not None and second.verdict is not Verdict.PASS:
            blocks.append(
                ("order 2 (the last input is grad_output when f is not scalar)", second.inputs)
            )
        return "\n".join(f"{title}:\n{_table(inputs, count)}" for title, inputs in blocks)


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
class Plan:
    """The validated options: what to check beyond first order."""

    modes: tuple[str, ...]
    order: int
    jvp: Callable[..., Any] | None
    contract: BackwardContract | None

    @property
    def anything(self) -> bool:
        return "fwd" in self.modes or self.order == 2 or self.contract is not None


def plan(
    items: tuple[Any, ...],
    autograd: bool,
    modes: Sequence[str],
    order: int,
    jvp: Callable[..., Any] | None,
    contract: ContractOption,
) -> Plan:
    """Validate ``modes``, ``order``, ``jvp`` and ``contract`` against the inputs and whether
    the gradient source is torch autograd."""
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or "rev" not in modes:
        raise ValueError(
            f"modes={modes!r}: give 'rev' (the gradient, always checked) and optionally 'fwd' "
            "(forward mode), e.g. modes=('rev', 'fwd')"
        )
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"order={order!r}: give 1 or 2; for a higher order, check order 2 of the gradient "
            "as a function (see the docs' 'Beyond first order')"
        )
    torch_autograd = autograd and all(_arrays.is_torch(x) for x in items)
    if "fwd" in modes and jvp is None and not all(_arrays.is_torch(x) for x in items):
        raise ValueError(
            "modes=('rev', 'fwd') needs torch tensors (torch.func.jvp) or a hand formula: pass "
            "jvp=lambda *x, tangents: ... returning the output's tangent"
        )
    if order == 2 and not torch_autograd:
        raise ValueError(
            "order=2 differentiates the gradient with torch autograd (grad=None, torch "
            "inputs); for a hand-written gradient, check it as a function instead: "
            "check(gradient_fn, x, hessian_vector_product) (see 'Beyond first order')"
        )
    if jvp is not None and not callable(jvp):
        raise TypeError(f"jvp must be callable, got {type(jvp).__name__}")
    if contract is True:
        options: BackwardContract | None = BackwardContract() if torch_autograd else None
    elif contract is False:
        options = None
    elif isinstance(contract, BackwardContract):
        options = contract if torch_autograd else None
    else:
        raise TypeError(
            f"contract must be True, False or a BackwardContract, got {type(contract).__name__}"
        )
    return Plan(modes, order, jvp, options)


def run(
    p: Plan,
    f: Callable[..., Any],
    items: tuple[Any, ...],
    v: np.ndarray | None,
    *,
    seed: int,
    rtols: Sequence[float | None],
    atols: Sequence[float | None],
    second_options: dict[str, Any],
    contract_call: tuple[Callable[..., Any], tuple[Any, ...]] | None = None,
) -> tuple[Beyond, int]:
    """Run the plan; returns the :class:`Beyond` and the calls of f it made (forward mode's
    points, order 2's evaluations of h, the contract's forward). ``contract_call``: the f and
    arguments the contract calls (the user's own, with its constants and several outputs);
    by default ``f`` and ``items``."""
    forward = second = contract = None
    evaluations = 0
    if "fwd" in p.modes:
        forward = check_forward(f, items, jvp=p.jvp, rtols=rtols, atols=atols, seed=seed)
        evaluations += forward.evaluations
    if p.order == 2:
        second = check_second(f, items, v, seed=seed, rtols=rtols, atols=atols, **second_options)
        evaluations += 0 if second.check is None else second.check.evaluations
    if p.contract is not None:
        contract_f, contract_items = contract_call or (f, items)
        contract = check_contract(contract_f, contract_items, p.contract, seed=seed)
        evaluations += contract.forward_calls  # the one graph its backward calls share
    return Beyond(p.modes, p.order, forward, second, contract), evaluations
