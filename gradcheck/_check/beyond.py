"""Compare (beyond first order): forward mode, order 2 and the backward's contract, for ``check``.

``check`` runs the first-order reverse-mode check, then what ``modes``, ``order`` and
``contract`` ask for here; the result holds them in ``CheckResult.beyond`` (a :class:`Beyond`)
and its verdict and reasons include theirs, each reason prefixed with the part it is about:
``fwd:``, ``order 2:`` or ``contract (item):``.

* ``modes=("rev", "fwd")``: Jacobian-vector products (``gradcheck._judge.forward``);
* ``order=2``: the double backward (``gradcheck._check.second``), autograd sources only;
* ``contract`` (default on for torch autograd): ``gradcheck._judge.contract``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gradcheck._check.result import Beyond, SecondOrderResult
from gradcheck._judge.contract import BackwardContract, check_contract
from gradcheck._judge.forward import check_forward
from gradcheck._numerics import arrays as _arrays
from gradcheck._sources.call import Kept

MODES = ("rev", "fwd")
ContractOption = bool | BackwardContract


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


class ContractCall(NamedTuple):
    """The f and arguments the backward's contract calls, and a graph it may use instead."""

    f: Callable[..., Any]
    args: tuple[Any, ...]
    graph: Kept | None = None


def run(
    p: Plan,
    f: Callable[..., Any],
    items: tuple[Any, ...],
    second: SecondOrderResult | None,
    *,
    seed: int,
    rtols: Sequence[float | None],
    atols: Sequence[float | None],
    contract_call: ContractCall | None = None,
) -> tuple[Beyond, int]:
    """Run the plan beside order 2's record (``second``, checked by ``check`` itself, which
    recurses); returns the :class:`Beyond` and the calls of f it made (forward mode's points,
    order 2's evaluations of h, the contract's forward). ``contract_call``: the f and
    arguments the contract calls (the user's own, with its constants and several outputs);
    by default ``f`` and ``items``; its ``graph``, the arguments and outputs of a call of
    that f already made with the inputs requiring grad, whose graph the contract then uses
    instead of calling f (``check_contract``)."""
    forward = contract = None
    evaluations = 0 if second is None or second.check is None else second.check.evaluations
    if "fwd" in p.modes:
        forward = check_forward(f, items, jvp=p.jvp, rtols=rtols, atols=atols, seed=seed)
        evaluations += forward.evaluations
    if p.contract is not None:
        given = contract_call or ContractCall(f, items)
        contract = check_contract(given.f, given.args, p.contract, seed=seed, graph=given.graph)
        evaluations += contract.forward_calls  # the one graph its backward calls share
    return Beyond(p.modes, p.order, forward, second, contract), evaluations
