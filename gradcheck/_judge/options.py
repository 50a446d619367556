"""Compare (options): ``check``'s keywords as one frozen object, built once and passed down.

``check`` keeps its public keywords (torch users rely on them); inside, the first-order check,
the judging loop, the screen, order 2 and the checks beyond first order all read this one
object. Per-input tolerances (``rtols``, ``atols``), the batched form contracted with the
cotangent and whether the full check must stay elementwise are known only once f's call is
prepared: they are filled in then, with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradcheck._judge.complex import Method
from gradcheck._judge.contract import BackwardContract
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import evaluate as _batch
from gradcheck._numerics import noise as _noise

DEFAULT_PROBES = 5


@dataclass(frozen=True)
class Options:
    """The keywords of ``gradcheck.check`` (documented there), and what is derived from them.

    Derived fields:
        rtols, atols: one tolerance per differentiated input (None: the default rule).
        elementwise_only: the full check runs only while f stays elementwise (mode 'auto'
            chose it for that structure, ``gradcheck._numerics.separable``).
    """

    wrt: Any = None
    atol: float | Sequence[float] | None = None
    rtol: float | Sequence[float] | None = None
    seed: int = 0
    cotangent: Any = None
    step: Any = None
    dtype_policy: _engine.DtypePolicy = "auto"
    method: Method = "central"
    taylor: bool = True
    nondeterministic: _noise.NondeterminismPolicy = "widen"
    rng_seed: int | None = None
    mode: str = "auto"
    probes: int = DEFAULT_PROBES
    batch: _batch.BatchOption = "auto"
    memory_budget: int = _batch.DEFAULT_MEMORY_BUDGET
    modes: Sequence[str] = ("rev",)
    order: int = 1
    jvp: Callable[..., Any] | None = None
    contract: bool | BackwardContract = True
    reference: Callable[..., Any] | None = None
    rtols: Sequence[float | None] = ()
    atols: Sequence[float | None] = ()
    elementwise_only: bool = False

    def evaluation(self, elementwise: bool) -> _engine.Evaluation:
        """How f is evaluated: ``elementwise`` for the full check's stencil (the screen's
        directions are not elementwise)."""
        return _engine.Evaluation(
            self.step,
            self.dtype_policy,
            self.batch,
            self.memory_budget,
            elementwise,
            elementwise and self.elementwise_only,
        )
