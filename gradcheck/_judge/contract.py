"""Reference (the backward's contract): what a torch backward owes besides the right numbers.

The numbers check compares one vector-Jacobian product with central differences. A backward can
pass it and still be wrong in ways torch's own checker tests; each item below costs O(1)
backward calls on one forward graph (``retain_graph``), whatever the size of the inputs:

* ``linearity``: backward is linear in grad_output, ``g(c u) = c g(u)`` with
  ``c = LINEARITY_SCALE`` (-2: exact in binary floating point, negative so that a backward that
  reads the sign or size of grad_output shows too). ``u`` is a seeded random cotangent, never
  1: a scalar loss's cotangent of 1 hides a backward that forgot to multiply by grad_output
  (focal, cross-entropy, Huber losses; the in-place ``ctx.grad *= grad_output`` of a Swish
  kernel).
* ``undefined_grad``: every output's grad_output undefined at once (what autograd passes for
  an output no loss used): backward must not raise and every gradient must be None or zero.
  With several outputs, each in turn is undefined and the others get their cotangents: the
  gradients must equal those of the same call with that cotangent zero.
* ``reentrant``: backward twice at the same point, same cotangent, agrees within
  ``nondet_tol`` (absolute, 0 by default as in torch), or else within the gradient's own
  rounding (``NONDET_ULPS`` units of eps times its largest element), which passes with a
  note saying how large the difference was (an atomicAdd-style reduction sums in another
  order each call): a backward that mutates what it saved gives another answer the second
  time, off by the gradient's size.
* ``grad_dtypes``: every gradient has its input's dtype, shape and device. Checked on what each
  custom Function's backward returns, before the autograd engine silently casts a float32
  gradient to its float64 input (keeping float32's 7 digits), and on what autograd.grad gives.
  A shape the engine sums to the input's (the input broadcasts to it: (4, 1) for a 0-d
  input) is accepted, as torch's engine accepts it; the summed gradient is what is compared.
* ``batched_grad`` (opt-in, torch's ``check_batched_grad``): ``torch.autograd.grad(...,
  is_grads_batched=True)`` (vmap over the backward) agrees with one backward per cotangent.

"Agrees" means ``max |x - y| <= sqrt(eps) max |y| + nondet_tol`` in the gradients' dtype: a
correct backward agrees to rounding, a wrong one is off by the size of the gradient. Among the
subnormals rounding is absolute (their spacing, 1.4e-45 in float32), so the allowance never
drops below a few such spacings (``gradcheck._judge.tolerance.agreement``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck._judge import tolerance as _tolerance
from gradcheck._judge.verdict import Verdict, combine, rule_verdict
from gradcheck._sources.call import Kept

LINEARITY_SCALE = -2.0
# How many autograd graph nodes the search for custom Functions visits at most.
MAX_GRAPH_NODES = 100_000
ITEMS = ("linearity", "undefined_grad", "reentrant", "grad_dtypes", "batched_grad")


@dataclass(frozen=True)
class BackwardContract:
    """Which items of the backward's contract to check (``check(..., contract=...)``).

    Fields:
        linearity, undefined_grad, reentrant, grad_dtypes: on by default (module docstring).
        batched_grad: off by default: vmap over the backward (``is_grads_batched``), which many
            custom Functions do not support and need not.
        nondet_tol: how far two backward calls at the same point may differ (absolute).
    """

    linearity: bool = True
    undefined_grad: bool = True
    reentrant: bool = True
    grad_dtypes: bool = True
    batched_grad: bool = False
    nondet_tol: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.nondet_tol < math.inf):
            raise ValueError(f"nondet_tol must be finite and >= 0, got {self.nondet_tol!r}")


@dataclass(frozen=True)
class ContractItem:
    """One item of the contract: ``name`` (see ``ITEMS``), its verdict ('pass' or 'fail') and,
    for a fail, the reason (what went wrong and what to do); a pass may carry a note."""

    name: str
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class ContractResult:
    """The backward's contract, checked.

    Fields:
        verdict: 'fail' if any item failed, else 'pass'.
        items: one :class:`ContractItem` per item checked, in ``ITEMS`` order.
        backward_calls: backward passes it ran (``torch.autograd.grad`` calls).
        forward_calls: calls of f it made (one graph serves every item).
        notes: sentences that are not failures (e.g. nothing to check).
    """

    verdict: Verdict
    items: tuple[ContractItem, ...]
    backward_calls: int
    forward_calls: int
    notes: tuple[str, ...] = field(default=())

    @property
    def reasons(self) -> tuple[str, ...]:
        """The failed items' reasons, and the notes of passed ones (a rounding-level
        nondeterminism), each prefixed with its item's name."""
        return tuple(f"{i.name}: {i.reason}" for i in self.items if i.reason)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items if i.verdict is Verdict.FAIL)


def differentiated_positions(args: Sequence[Any]) -> tuple[int, ...]:
    """torch's rule: the floating tensors that require grad, if any does; else every floating
    tensor."""
    import torch

    floating = [
        k
        for k, a in enumerate(args)
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex())
    ]
    wanted = [k for k in floating if args[k].requires_grad]
    return tuple(wanted or floating)


def check_contract(
    f: Callable[..., Any],
    inputs: Any,
    options: BackwardContract | None = None,
    *,
    seed: int = 0,
    graph: Kept | None = None,
) -> ContractResult:
    """Check the contract of the backward of ``f(*inputs)`` (a tensor, or a tuple/list of them).

    ``inputs`` may hold non-tensor arguments; they reach f unchanged. The differentiated inputs
    follow torch's rule (:func:`differentiated_positions`). Raises what f or a plain backward
    raises; everything else is reported as an item's fail. ``graph``: a call of f already
    made whose differentiated arguments are tensors that require grad (``check``'s first
    call): its graph serves every item, and f is not called again; where it holds a backward
    of f's one output (``Kept.grads``) and no custom Function's raw output is to be recorded,
    that backward is the contract's first, along the same cotangent.
    """
    import torch

    options = BackwardContract() if options is None else options
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    positions = differentiated_positions(args)
    if not positions:
        raise ValueError(
            "no floating-point tensor among the inputs, so there is no backward to check; "
            "pass the differentiated inputs as floating tensors"
        )
    reused = graph is not None and _reusable(graph.args, positions)
    if graph is not None and reused:
        leaves = tuple(graph.args[k] for k in positions)
        outs, names = _differentiable_outputs(graph.out)
    else:
        leaves = tuple(args[k].detach().clone().requires_grad_(True) for k in positions)
        call = list(args)
        for k, leaf in zip(positions, leaves, strict=True):
            call[k] = leaf
        with torch.enable_grad():
            outs, names = _differentiable_outputs(f(*call))
    forward_calls = 0 if reused else 1
    if not outs:
        return ContractResult(
            Verdict.PASS, (), 0, forward_calls, ("no output depends on a differentiated input",)
        )
    given = _first_backward(graph, outs, leaves) if graph is not None and reused else None
    if given is not None and custom_nodes(outs):
        given = None  # a custom Function's raw output is recorded by a backward of our own
    first = given[0] if given is not None else None
    run = _Backward(outs, leaves, positions, names, seed, options.nondet_tol, first)
    items = []
    with torch.enable_grad():
        raw: list[str] = []  # problems with what a custom Function's backward returned
        if given is not None:
            base = given[1]
        else:  # the gradients g(u), and what backward returned
            base, raw = run.recorded(run.cotangents)
        if options.linearity:
            items.append(run.linearity(base))
        if options.undefined_grad:
            items.append(run.undefined())
        if options.reentrant:
            items.append(run.reentrant(base))
        if options.grad_dtypes:
            items.append(run.dtypes(base, raw))
        if options.batched_grad:
            items.append(run.batched(base))
    verdict = combine([i.verdict for i in items]) if items else Verdict.PASS
    return ContractResult(verdict, tuple(items), run.calls, forward_calls)


def _first_backward(
    graph: Kept, outs: tuple[Any, ...], leaves: tuple[Any, ...]
) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """(cotangents, gradients) of the backward ``check`` made of the kept call, as the contract
    would have made it first: f's one tensor output along the engine's cotangent (1 for a
    scalar f), each leaf's gradient copied. None where that backward cannot serve (several
    outputs, no backward made, a leaf it did not differentiate)."""
    import torch

    if not graph.grads or len(outs) != 1 or outs[0] is not graph.out:
        return None
    out = outs[0]
    if graph.cotangent is None:
        if out.numel() != 1:
            return None
        cotangent = torch.ones_like(out)
    else:
        v = np.asarray(graph.cotangent)
        if v.size != out.numel():
            return None
        cotangent = torch.as_tensor(v, dtype=out.dtype, device=out.device).reshape(out.shape)
    grads = []
    for leaf in leaves:
        found = [i for i, kept in enumerate(graph.leaves) if kept is leaf]
        if not found:
            return None
        g = graph.grads[found[0]]
        grads.append(None if g is None else g.detach().clone())
    return (cotangent,), tuple(grads)


def _reusable(args: tuple[Any, ...], positions: tuple[int, ...]) -> bool:
    """Whether a call's arguments can serve as the contract's: the differentiated ones (by
    torch's rule, on the inputs the contract was given) are tensors that require grad."""
    import torch

    return len(args) > max(positions, default=-1) and all(
        isinstance(args[k], torch.Tensor) and args[k].requires_grad for k in positions
    )


def _differentiable_outputs(out: Any) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The floating outputs that require grad, and their names ('output' or 'output k')."""
    import torch

    several = isinstance(out, (tuple, list))
    values = tuple(out) if several else (out,)
    kept, names = [], []
    for k, o in enumerate(values):
        if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point():
            kept.append(o)
            names.append(f"output {k}" if several else "the output")
    return tuple(kept), tuple(names)


class _Backward:
    """Backward calls on one forward graph, and the comparisons between them."""

    def __init__(
        self,
        outs: tuple[Any, ...],
        leaves: tuple[Any, ...],
        positions: tuple[int, ...],
        names: tuple[str, ...],
        seed: int,
        nondet_tol: float,
        cotangents: tuple[Any, ...] | None = None,
    ) -> None:
        import torch

        self.outs, self.leaves, self.positions, self.names = outs, leaves, positions, names
        self.nondet_tol = nondet_tol
        self.calls = 0
        if cotangents is not None:  # those of a backward made already
            self.cotangents = cotangents
            return
        rng = np.random.default_rng([seed, 16])
        self.cotangents = tuple(
            torch.as_tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype, device=o.device)
            for o in outs
        )

    def grad(self, cotangents: Sequence[Any], outs: Sequence[Any] | None = None) -> tuple[Any, ...]:
        import torch

        self.calls += 1
        grads = torch.autograd.grad(
            list(self.outs if outs is None else outs),
            list(self.leaves),
            list(cotangents),
            retain_graph=True,
            allow_unused=True,
        )
        # Copies: a backward may return a tensor it keeps on ctx and later changes in place.
        return tuple(None if g is None else g.detach().clone() for g in grads)

    def dense(self, grads: Sequence[Any]) -> tuple[Any, ...]:
        import torch

        return tuple(
            torch.zeros_like(x) if g is None else g for g, x in zip(grads, self.leaves, strict=True)
        )

    def recorded(self, cotangents: Sequence[Any]) -> tuple[tuple[Any, ...], list[str]]:
        """g(cotangents), with every custom Function's raw backward output checked against
        its inputs' dtype, shape and device (sentences, one per mismatch)."""
        nodes = custom_nodes(self.outs)
        problems: list[str] = []
        for node in nodes:
            node.apply = _recording(node, node.apply, problems)
        try:
            return self.grad(cotangents), problems
        finally:
            for node in nodes:
                del node.apply

    def disagreement(
        self, got: Sequence[Any], want: Sequence[Any], exact: bool = False, scale: float = 1.0
    ) -> tuple[int, float, float]:
        """(input, max |got - want|, allowed) of the input furthest outside the agreement rule
        (``exact``: within nondet_tol alone; ``scale``: want is a gradient scaled by it);
        input -1 when all agree."""
        worst = (-1, 0.0, 0.0)
        for k, (g, w) in enumerate(zip(self.dense(got), self.dense(want), strict=True)):
            diff, allowed, agree = _difference(g, w, self.nondet_tol, exact, scale)
            if not agree and (worst[0] < 0 or diff - allowed > worst[1] - worst[2]):
                worst = (k, diff, allowed)
        return worst

    def linearity(self, base: tuple[Any, ...]) -> ContractItem:
        scaled = self.grad([LINEARITY_SCALE * u for u in self.cotangents])
        want = tuple(None if g is None else LINEARITY_SCALE * g for g in base)
        k, diff, allowed = self.disagreement(scaled, want, scale=LINEARITY_SCALE)
        if k < 0:
            return ContractItem("linearity", Verdict.PASS)
        ratio = _ratio(self.dense(scaled)[k], self.dense(base)[k])
        return ContractItem(
            "linearity",
            Verdict.FAIL,
            f"backward is not linear in grad_output: scaling the cotangent by "
            f"{LINEARITY_SCALE:g} scaled input {self.positions[k]}'s gradient by {ratio} "
            f"(max |g(cu) - c g(u)| = {diff:.3g}, allowed {allowed:.3g}). Does backward multiply "
            "by grad_output? A scalar loss's cotangent of 1 hides a forgotten grad_output, and "
            "an in-place update of a saved tensor (ctx.grad *= grad_output) does too.",
        )

    def reentrant(self, base: tuple[Any, ...]) -> ContractItem:
        again = self.grad(self.cotangents)
        k, diff, _ = self.disagreement(again, base, exact=True)
        if k < 0:
            return ContractItem("reentrant", Verdict.PASS)
        if _rounding_level(diff, self.dense(base)[k]):
            return ContractItem("reentrant", Verdict.PASS, self._rounding_note(k, diff, base))
        return ContractItem(
            "reentrant",
            Verdict.FAIL,
            f"backward is not reentrant: run twice at the same point with the same grad_output, "
            f"input {self.positions[k]}'s gradient differs by {diff:.3g} (nondet_tol "
            f"{self.nondet_tol:g}). Does backward modify what forward saved on ctx? For a "
            "nondeterministic kernel, raise nondet_tol.",
        )

    def _rounding_note(self, k: int, diff: float, base: tuple[Any, ...]) -> str:
        """A backward that differs from itself at the level of rounding (an atomicAdd-style
        reduction in another order): passed, saying by how much."""
        g = self.dense(base)[k]
        unit = _tolerance.rounding_unit(_size(g), _dtype(g))
        ulps = diff / unit if unit > 0 else math.inf
        return (
            f"backward is nondeterministic at rounding level: two calls at the same point "
            f"differ by up to {diff:.3g} in input {self.positions[k]}'s gradient ({ulps:.3g} "
            f"ulps of its largest element; nondet_tol {self.nondet_tol:g}), within the "
            f"gradient's own rounding ({_tolerance.NONDET_ULPS:g} ulps): passed"
        )

    def undefined(self) -> ContractItem:
        """Every grad_output undefined; then, with several outputs, each in turn."""
        import torch

        zeros = [torch.zeros_like(o) for o in self.outs]
        failure = self._undefined_case(range(len(self.outs)), zeros, None)
        for j in range(len(self.outs)) if len(self.outs) > 1 and failure is None else ():
            given = [zeros[i] if i == j else u for i, u in enumerate(self.cotangents)]
            failure = self._undefined_case([j], given, self.grad(given))
            if failure is not None:
                break
        if failure is None:
            return ContractItem("undefined_grad", Verdict.PASS)
        return ContractItem("undefined_grad", Verdict.FAIL, failure)

    def _undefined_case(
        self, undefined: Sequence[int], given: Sequence[Any], want: tuple[Any, ...] | None
    ) -> str | None:
        which = "every grad_output" if want is None else f"{self.names[undefined[0]]}'s grad_output"
        outs = [_undefined(o) if i in undefined else o for i, o in enumerate(self.outs)]
        try:
            got = self.grad(given, outs)
        except Exception as exc:  # the contract's point: backward must cope
            return (
                f"backward raised {type(exc).__name__} ({_first_line(exc)}) when {which} was "
                "undefined (None, as for an output no loss uses): treat a None grad_output as "
                "zero (or keep ctx.set_materialize_grads(True))"
            )
        if want is None:
            want = tuple(None for _ in self.leaves)
        k, diff, allowed = self.disagreement(got, want)
        if k < 0:
            return None
        expected = "zero" if all(w is None for w in want) else "as with a zero grad_output"
        return (
            f"with {which} undefined (None), backward returned a gradient for input "
            f"{self.positions[k]} off by {diff:.3g} from {expected} (allowed {allowed:.3g}): "
            "an undefined grad_output means zero"
        )

    def dtypes(self, base: tuple[Any, ...], raw: list[str]) -> ContractItem:
        problems = list(raw)
        for k, (g, x) in enumerate(zip(base, self.leaves, strict=True)):
            if g is not None:
                problems.extend(_mismatches(g, x, f"the gradient of input {self.positions[k]}"))
        if not problems:
            return ContractItem("grad_dtypes", Verdict.PASS)
        return ContractItem(
            "grad_dtypes",
            Verdict.FAIL,
            "; ".join(dict.fromkeys(problems)) + ": return every gradient in its input's "
            "dtype, shape and device (e.g. grad.to(x.dtype))",
        )

    def batched(self, base: tuple[Any, ...]) -> ContractItem:
        import torch

        stacked = [torch.stack([u, LINEARITY_SCALE * u]) for u in self.cotangents]
        self.calls += 1
        try:
            got = torch.autograd.grad(
                list(self.outs),
                list(self.leaves),
                stacked,
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
        except Exception as exc:  # unsupported under vmap: that is the finding
            return ContractItem(
                "batched_grad",
                Verdict.FAIL,
                f"backward fails under vmap (is_grads_batched=True): {type(exc).__name__}: "
                f"{_first_line(exc)}; make it vmap-compatible (no .item(), NumPy or in-place "
                "writes to grad_output; for a custom Function, setup_context and "
                "generate_vmap_rule=True) or leave batched_grad off",
            )
        first = tuple(None if g is None else g[0] for g in got)
        k, diff, allowed = self.disagreement(first, base)
        if k < 0:
            return ContractItem("batched_grad", Verdict.PASS)
        return ContractItem(
            "batched_grad",
            Verdict.FAIL,
            f"vmap over backward (is_grads_batched=True) gives input {self.positions[k]}'s "
            f"gradient off by {diff:.3g} from one backward call (allowed {allowed:.3g})",
        )


def _difference(
    got: Any, want: Any, nondet_tol: float, exact: bool, scale: float = 1.0
) -> tuple[float, float, bool]:
    """(max |got - want|, what the agreement rule allows, whether they agree by the verdict
    rule; ``exact``: nondet_tol alone; ``scale``: want is a gradient scaled by it). NaN/Inf
    entries must sit in the same places with the same values in both; the finite ones are
    compared."""
    import torch

    same = got.shape == want.shape and got.dtype == want.dtype and got.device == want.device
    if same and torch.equal(got, want):  # bit for bit (so no NaN): they agree
        return 0.0, 0.0, True
    g = got.detach().to("cpu").double().numpy()
    w = want.detach().to("cpu").double().numpy()
    if g.shape != w.shape:
        return float("inf"), 0.0, False
    allowed = _tolerance.agreement(w, _dtype(want), nondet_tol, exact, scale)
    finite_g, finite_w = np.isfinite(g), np.isfinite(w)
    if not (finite_g.all() and finite_w.all()):
        both = finite_g & finite_w
        if not (
            np.array_equal(finite_g, finite_w)
            and np.array_equal(g[~both], w[~both], equal_nan=True)
        ):
            return float("inf"), allowed, False
        g, w = g[both], w[both]
    diff = float(np.max(np.abs(g - w), initial=0.0))
    # The largest difference against the (scalar) allowance: the rule on every element at once.
    agree = rule_verdict(diff, 0.0, 0.0, allowed, math.inf) is Verdict.PASS
    return diff, allowed, agree


def _rounding_level(diff: float, g: Any) -> bool:
    """Whether ``diff`` is within the gradient ``g``'s own rounding
    (``gradcheck._judge.tolerance.nondet_rounding``), by the verdict rule."""
    allowed = _tolerance.nondet_rounding(_size(g), _dtype(g))
    return rule_verdict(diff, 0.0, 0.0, allowed, math.inf) is Verdict.PASS


def _size(g: Any) -> float:
    """The largest |element| of a gradient (0.0 when it is empty or not finite)."""
    size = float(g.detach().abs().max()) if g.numel() else 0.0
    return size if math.isfinite(size) else 0.0


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _ratio(scaled: Any, base: Any) -> str:
    """How much a gradient moved when the cotangent was scaled, as a short phrase."""
    s = scaled.detach().double().reshape(-1)
    b = base.detach().double().reshape(-1)
    i = int(b.abs().argmax()) if b.numel() else 0
    if not b.numel() or float(b[i]) == 0.0:
        return "an unrelated amount (its gradient at the seeded cotangent is zero)"
    return f"{float(s[i] / b[i]):.6g} (at its largest element)"


def _mismatches(g: Any, x: Any, what: str) -> list[str]:
    out = []
    if g.dtype != x.dtype:
        out.append(f"{what} is {_name(g.dtype)} for a {_name(x.dtype)} input")
    if tuple(g.shape) != tuple(x.shape):
        out.append(f"{what} has shape {tuple(g.shape)} for an input of shape {tuple(x.shape)}")
    if g.device != x.device:
        out.append(f"{what} is on {g.device} for an input on {x.device}")
    return out


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def custom_nodes(outs: Sequence[Any]) -> list[Any]:
    """The autograd graph nodes of custom ``torch.autograd.Function`` s behind ``outs``."""
    seen: set[int] = set()
    stack = [o.grad_fn for o in outs if getattr(o, "grad_fn", None) is not None]
    found = []
    while stack and len(seen) < MAX_GRAPH_NODES:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if hasattr(node, "_forward_cls"):
            found.append(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return found


def _recording(node: Any, apply: Callable[..., Any], problems: list[str]) -> Callable[..., Any]:
    """``node.apply`` that also checks what the Function's backward returned, gradient by
    gradient, against the metadata of the input it flows into."""

    def recorded(*grad_outputs: Any) -> Any:
        out = apply(*grad_outputs)
        grads = out if isinstance(out, tuple) else (out,)
        for i, (g, edge) in enumerate(_edges(node, grads)):
            if g is None or edge is None or not hasattr(g, "dtype"):
                continue
            meta = edge[0]._input_metadata[edge[1]]
            name = f"{type(node).__name__.removesuffix('Backward')}.backward's gradient {i}"
            if g.dtype != meta.dtype:
                problems.append(f"{name} is {_name(g.dtype)} for a {_name(meta.dtype)} input")
            if tuple(g.shape) != tuple(meta.shape) and not summable(g.shape, meta.shape):
                problems.append(
                    f"{name} has shape {tuple(g.shape)} for an input of shape {tuple(meta.shape)}"
                )
            if g.device != meta.device:
                problems.append(f"{name} is on {g.device} for an input on {meta.device}")
        return out

    return recorded


def summable(grad_shape: Sequence[int], input_shape: Sequence[int]) -> bool:
    """Whether torch's engine sums a gradient of ``grad_shape`` to ``input_shape`` (the input
    broadcasts to it: ``sum_to_size``), as it does for a backward that returns, say, shape
    (4, 1) for a 0-d input. The summed gradient is what the check compares."""
    grad, want = tuple(grad_shape), tuple(input_shape)
    if len(want) > len(grad):
        return False
    tail = grad[len(grad) - len(want) :]
    return all(w in (1, g) for w, g in zip(want, tail, strict=True))


def _edges(node: Any, grads: tuple[Any, ...]) -> list[tuple[Any, tuple[Any, int] | None]]:
    """Each returned gradient with the graph edge it flows along (None: no edge, or unknown).

    backward returns one value per forward argument, the edges exist for tensor arguments
    only; when the counts differ, the arguments that cannot be tensors (no gradient, no
    ``needs_input_grad``) are matched with the missing edges if that accounts for all of them.
    """
    edges = list(node.next_functions)
    if len(grads) == len(edges):
        return [(g, e if e[0] is not None else None) for g, e in zip(grads, edges, strict=True)]
    needs = tuple(getattr(node, "needs_input_grad", ()))
    maybe_plain = [
        i for i, g in enumerate(grads) if g is None and not (i < len(needs) and needs[i])
    ]
    if len(grads) - len(edges) != len(maybe_plain):
        return [(g, None) for g in grads]
    remaining = iter(edges)
    out: list[tuple[Any, tuple[Any, int] | None]] = []
    for i, g in enumerate(grads):
        edge = None if i in maybe_plain else next(remaining)
        out.append((g, edge if edge is not None and edge[0] is not None else None))
    return out


def _undefined(out: Any) -> Any:
    """``out`` behind a node whose backward passes an undefined (None) gradient on."""
    import torch

    return torch._C._functions.UndefinedGrad()(out)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
