"""Surface: ``check`` and ``assert_gradients_close``, the front door to differentiate + compare."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._check import beyond as _beyond
from gradcheck._check import explain as _explain
from gradcheck._check import first as _first
from gradcheck._check import misuse as _misuse
from gradcheck._check import second as _second
from gradcheck._check.result import CheckResult, Part, SecondOrderResult, input_label, with_part
from gradcheck._check.trace import OutputReport
from gradcheck._judge import complex as _complex
from gradcheck._judge import loop as _loop
from gradcheck._judge import screen as _screen
from gradcheck._judge import tolerance as _precision
from gradcheck._judge.contract import BackwardContract
from gradcheck._judge.loop import Numerics
from gradcheck._judge.options import Options
from gradcheck._judge.taylor import TaylorResult
from gradcheck._judge.verdict import InputComparison, Verdict, combine
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._numerics import evaluate as _batch
from gradcheck._numerics import noise as _noise
from gradcheck._sources import call as _front
from gradcheck._sources import jaxcall as _jaxcall
from gradcheck._sources import reference as _reference


def check(
    f: Callable[..., Any],
    inputs: Any,
    grad: Any = None,
    *,
    wrt: Any = None,
    atol: float | Sequence[float] | None = None,
    rtol: float | Sequence[float] | None = None,
    seed: int = 0,
    cotangent: Any = None,
    step: Any = None,
    dtype_policy: _engine.DtypePolicy = "auto",
    method: _complex.Method = "central",
    taylor: bool = True,
    nondeterministic: _noise.NondeterminismPolicy = "widen",
    rng_seed: int | None = None,
    mode: str = "auto",
    probes: int = 5,  # the screen's DEFAULT_PROBES: a literal, so the reference shows the value
    batch: _batch.BatchOption = "auto",
    memory_budget: int = 4 * 2**20,  # the evaluation's DEFAULT_MEMORY_BUDGET, as a value
    modes: Sequence[str] = ("rev",),
    order: int = 1,
    jvp: Callable[..., Any] | None = None,
    contract: bool | BackwardContract = True,
    reference: Callable[..., Any] | None = None,
) -> CheckResult:
    """Compare an analytic gradient of ``f(*inputs)`` with a numerical one; never raises on a bad
    gradient, only on bad arguments.

    Args:
        f: the function. It returns a scalar; or any shape, in which case vector-Jacobian
            products along ``cotangent`` are compared; or a tuple/list/dict of outputs, each
            floating one judged with its own part of the seeded cotangent (integer and
            non-differentiable outputs skipped; ``result.outputs`` names them, and a failure
            is traced to the outputs responsible: docs/torch.md).
        inputs: one input, a tuple of them (f is called as ``f(*inputs)``) or a dict
            (``f(**inputs)``). Inputs may be tensors, arrays, Python numbers, bools, None,
            strings, tuples, integer or bool tensors: what is not differentiated reaches f
            unchanged. Differentiated (docs/torch.md): with torch tensors, those that
            require grad, or else every floating/complex tensor; without torch, every
            floating/complex array and Python float. Complex inputs and outputs follow
            torch's convention (the conjugate Wirtinger derivative). JAX arrays and pytrees
            of them, and JAX code: ``gradcheck._check.jaxcheck`` (docs/jax.md).
        grad: None for PyTorch autograd (plain tensors in; the harness sets requires_grad on
            clones), a callable hand formula called with the same inputs and returning one
            gradient per input (a tuple for a tuple; None where an input is not
            differentiated, and None means zero), or a gradient source object.
        wrt: which inputs to differentiate, overriding the rule above: positions, or names
            for dict inputs.
        atol: the absolute tolerance, one for all inputs or one per differentiated input (or
            one per input, in f's order); None: ``rtol`` times the gradient's largest element.
        rtol: the relative tolerance, given as ``atol`` is; None: sqrt(eps) of the gradient's
            dtype, or below float64 the analytic side's measured rounding. How the engine's
            error estimate widens them: the tolerance rule in docs/verdicts.md. Verdict per
            element: fail when ``|a - n| > atol + rtol |n| + e``; inconclusive when the error
            bar e is wider than 1% of the gradient or f returned NaN/Inf; pass otherwise.
        seed: seeds the random cotangent for non-scalar f. Printed in every summary.
        cotangent: the cotangent for a non-scalar f (as ``y.backward(gradient=...)``); for
            several outputs a tuple/list/dict like f's return value.
        step: override the automatic finite-difference step ``h = eps**(1/3) max(1, |x_i|)``
            (a number, an array per element, or a sequence per input).
        dtype_policy: 'auto' (float32 inputs differentiated in float64 when f allows it),
            'native' or 'promote'.
        method: 'central' differences, or 'complex' step derivatives for f that stay analytic
            on complex inputs (falls back to central, saying why, when f is not complex-safe).
        taylor: decide elements the difference check leaves inconclusive (error bar too wide,
            NaN in the stencil) with a Taylor-remainder test along their coordinate.
        nondeterministic: f is evaluated twice at x; if the values differ, 'widen' the
            tolerance by the noise bar (inconclusive where it is wider than 1%), call every
            element 'inconclusive', or 'ignore' it.
        rng_seed: re-seed the global RNGs (torch, NumPy, random) to this seed before every
            evaluation of f, for dropout-like functions; the caller's RNG states are restored.
        mode: 'full' differentiates every element (2 evaluations each for a right gradient,
            more only where a verdict needs an error bar: docs/numbers.md); 'screen'
            compares
            ``probes`` random directional derivatives (4 evaluations each, whatever the size)
            and bisects a failure down to the wrong elements (docs/speed.md states
            what it guarantees); 'fast' (torch's ``fast_mode``) takes one such probe, moving
            every input at once where they share a dtype and tolerances (4 evaluations in
            all), measured again at smaller steps where it crosses a kink, and screens only
            the inputs it does not pass; 'auto' (default) decides per input: 'full' for an
            input of up to ``AUTO_FULL_MAX_ELEMENTS`` elements (4096), 'screen' above
            (``result.mode`` is then 'screen', or 'mixed' when some inputs were checked in
            full), except for a
            torch f elementwise in every input, then summed (docs/speed.md;
            found by
            tracing f's first call), whose full check costs a few passes whatever n: 'full'
            there, and per input after all, saying why in ``reasons``, if that structure stops
            holding.
            The screen runs central differences and the noise check (``nondeterministic``
            applies); no kink or Taylor analysis.
        probes: how many screen probes (seeded by ``seed``).
        batch: how perturbed points are evaluated: 'auto' (``torch.func.vmap(f)`` when it
            works, else a loop), 'loop', or a batched form of f taking every input with a
            leading batch axis (docs/speed.md).
        memory_budget: bytes of perturbed inputs per batched chunk.
        modes: ('rev',) checks the gradient (vector-Jacobian products); ('rev', 'fwd') also
            forward mode: Jacobian-vector products (``torch.func.jvp``, forward_ad dual numbers
            for a classic custom Function's ``jvp``, or ``jvp=``) against directional
            differences (docs/beyond-first-order.md).
        order: 2 also checks the gradient's own derivative by double backward against
            differences of the gradient (docs/beyond-first-order.md; torch autograd only).
        jvp: a hand formula for forward mode, ``jvp(*inputs, tangents=(t_1, ...))`` returning
            the output's tangent.
        contract: the backward's contract (docs/beyond-first-order.md): linearity in grad_output,
            undefined grad_outputs, reentrancy, gradient dtype/shape/device. True (default)
            checks it for torch autograd; False skips it; a :class:`BackwardContract` picks
            items (``batched_grad``, off by default) and ``nondet_tol``.
        reference: a forward of the same maths as f that runs in float64, for an f whose
            forward casts to low precision (a bfloat16/float16 kernel): f's autograd (or
            ``grad``) is then the analytic side, and the reference gives the numerical side and
            the measuring stick that sets a half-precision tolerance
            (docs/verdicts.md).

    Tolerance defaults: where the analytic side can be re-run on float64 copies, its own
    measured rounding sets the tolerance of a float32 (or lower) input, not ``sqrt(eps)``;
    half-precision inputs are judged against the measuring stick. Each input's
    ``tolerance_basis`` and ``resolution`` say what a pass vouches for.

    The judging loop (docs/numbers.md) passes elements whose plain central difference
    agrees; the rest get an error bar, kink and jump analysis (docs/verdicts.md: a value
    between the left and right derivatives passes as a subgradient; otherwise, and at jumps,
    the element is inconclusive with its reason) and Taylor tests. docs/verdicts.md lists
    every reason.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}: pass the function itself")
    if _jaxcall.involved(f, inputs, grad):  # JAX values or code: gradcheck._check.jaxcheck
        keywords = {k: v for k, v in locals().items() if k not in ("f", "inputs", "grad")}
        from gradcheck._check.jaxcheck import check_jax

        return check_jax(check, f, inputs, grad, keywords)
    options = Options(
        wrt=wrt,
        atol=atol,
        rtol=rtol,
        seed=seed,
        cotangent=cotangent,
        step=step,
        dtype_policy=dtype_policy,
        method=method,
        taylor=taylor,
        nondeterministic=nondeterministic,
        rng_seed=rng_seed,
        mode=mode,
        probes=probes,
        batch=batch,
        memory_budget=memory_budget,
        modes=modes,
        order=order,
        jvp=jvp,
        contract=contract,
        reference=reference,
    )
    with _front.autograd_usable():  # outside inference mode: its tensors are cloned out
        call = _front.prepare(f, inputs, wrt)  # validates the inputs before any work
    options = dataclasses.replace(
        options, rtols=_per_input(rtol, call, "rtol"), atols=_per_input(atol, call, "atol")
    )
    autograd = grad is None or isinstance(grad, _reference.Autograd)
    plan = _beyond.plan(
        call.items, autograd, options.modes, options.order, options.jvp, options.contract
    )
    result = _first_order(call, inputs, grad, options)
    if not plan.anything:
        return result
    return _beyond_first(f, call, plan, result, options)


def _beyond_first(
    f: Callable[..., Any],
    call: _front.Call,
    plan: _beyond.Plan,
    result: CheckResult,
    options: Options,
) -> CheckResult:
    """Forward mode, order 2 and the contract, after the first-order check (``plan``)."""
    # Forward mode and order 2 see what the first-order check saw: f with its constants bound,
    # of the differentiated inputs, its outputs flat. The contract calls the user's f as given
    # (tuple outputs, non-tensor arguments): its items are how torch would call it.
    rng_seed = options.rng_seed
    bound = call if rng_seed is None else _noise.seeded(call, rng_seed)

    def user_f(*args: Any) -> Any:
        return call.invoke(f, args)

    with _front.autograd_usable():
        second = None
        if plan.order == 2:
            second = _check_second(bound, call.items, result.cotangent, options)
        beyond, evaluations = _beyond.run(
            plan,
            bound,
            call.items,
            second,
            seed=options.seed,
            rtols=options.rtols,
            atols=options.atols,
            contract_call=_beyond.ContractCall(
                user_f if rng_seed is None else _noise.seeded(user_f, rng_seed),
                call.arguments(call.items),
                # The first call's graph (its inputs required grad), where f's own inputs
                # are the differentiated ones as they are (no complex views rebuilt).
                call.kept if not any(call.complex) else None,
            ),
        )
        call.kept = None  # the graph is not held past the check
    result = with_part(result, Part("beyond", beyond.verdict, beyond.reasons, beyond))
    return dataclasses.replace(result, evaluations=result.evaluations + evaluations)


def _first_order(call: _front.Call, inputs: Any, grad: Any, options: Options) -> CheckResult:
    """The first-order reverse-mode check: what :func:`check` did before ``modes``, ``order``
    and ``contract``. With a ``reference``, it gives the numerical side and f the analytic
    one (both bound to the same inputs by the front door: ``call`` is f's)."""
    reference, rng_seed = options.reference, options.rng_seed
    if reference is not None and not callable(reference):
        raise TypeError(
            f"reference must be callable, got {type(reference).__name__}: pass a forward of the "
            "same maths as f that runs in float64"
        )

    def seeded(g: Callable[..., Any]) -> Callable[..., Any]:
        return g if rng_seed is None else _noise.seeded(g, rng_seed)

    with _front.autograd_usable():
        explicit = options.cotangent is not None
        source, traceable = _source(grad, call, explicit_cotangent=explicit)
        numerical_call = (
            call if reference is None else _front.prepare(reference, inputs, options.wrt)
        )
        counted = _engine.CountingFunction(seeded(numerical_call))
        # The analytic side's f: f itself, counted towards the check's evaluations.
        analytic_f = (
            counted if reference is None else _engine.CountingFunction(seeded(call), parent=counted)
        )
        items = call.items
        screened = screened_inputs(options.mode, items, options.method)
        # Above the size where 'auto' screens, a full check is still cheap when f is
        # elementwise (a few passes, not 2n calls): a traced call of f finds out.
        trace = options.mode == "auto" and bool(screened) and options.batch == "auto"
        grad_first = isinstance(source, _reference.Autograd) and not trace
        first = _first.first_call(
            counted, items, options.cotangent, options.seed, trace, grad_first, numerical_call
        )
        v, elementwise, native_f0 = first.cotangent, first.elementwise, first.f0
        analytic = None
        if (
            first.graph is not None
            and reference is None
            and isinstance(source, _reference.Autograd)
        ):
            raw: list[Any] = []
            analytic = source.from_graph(*first.graph, items, v, raw)  # one backward of it
            if call.kept is not None:  # the contract may take this backward as its first
                call.kept.leaves, call.kept.cotangent = first.graph[0], v
                call.kept.grads = tuple(raw)
        scalar_f = (
            counted
            if v is None
            else _engine.CountingFunction(_first.contracting(counted.f, v), parent=counted)
        )
        batch = options.batch
        batched = _batch.contracted(batch, v) if callable(batch) and v is not None else batch
        task = _Task(
            scalar_f,
            items,
            source,
            analytic_f,
            v,
            call,
            None if reference is None else counted,
            analytic,
        )
        options = dataclasses.replace(options, batch=batched, elementwise_only=elementwise)
        result = _checked(task, options, native_f0, screened, elementwise)
        checked = _with_outputs(_promotion_noted(result, call), task, traceable)
        return _misuse.nonfinite_inputs_named(checked, call)


def _promotion_noted(result: CheckResult, call: _front.Call) -> CheckResult:
    """Where f ran in float64 only with its own float32 tensors computed in float64 too
    (``gradcheck._sources.promote``), the policy's reason says so."""
    if not call.promotion.needed or result.numerics.policy != "promoted":
        return result
    reason = (
        "f computes in float64 once the float32/half tensors it meets (captured tensors, "
        "module parameters, dtype arguments) are computed in float64 too"
    )
    return dataclasses.replace(
        result, numerics=dataclasses.replace(result.numerics, policy_reason=reason)
    )


def _checked(
    task: _Task,
    options: Options,
    native_f0: tuple[float, str] | None,
    screened: frozenset[int],
    elementwise: bool,
) -> CheckResult:
    """The modes per input: the screen, the judging loop, or both."""
    if screened and not elementwise:
        return _per_input_modes(task, options, native_f0, screened)
    try:
        return _judged(task, options, native_f0)
    except _batch.ElementwiseLost as lost:  # only where 'auto' chose full for that structure
        plain = dataclasses.replace(options, elementwise_only=False)
        checked = _per_input_modes(task, plain, native_f0, screened)
        note = f"mode 'auto' screened after all: {lost}"
        first = checked.parts[0]
        amended = dataclasses.replace(first, reasons=(*first.reasons, note))
        return with_part(checked, amended, (note,))


def _source(
    grad: Any, call: _front.Call, explicit_cotangent: bool
) -> tuple[_reference.GradientSource, bool]:
    """The gradient source on the engine's view of the call, and whether it can be asked for
    products along other cotangents (to trace a failure to outputs). A callable ``grad`` is a
    hand formula under torch's contract (``gradcheck._sources.call.bound_formula``); a source object
    sees the engine's view as it is."""
    if grad is not None and callable(grad) and not hasattr(grad, "gradients"):
        name = getattr(grad, "__name__", "formula")
        formula = _front.bound_formula(call, grad, explicit_cotangent)
        source = _reference.Formula(formula, name="formula" if name == "<lambda>" else name)
        return source, _reference.accepts_keyword(grad, "cotangent")
    resolved = _reference.resolve_source(grad)
    if isinstance(resolved, _reference.Formula):
        return resolved, _reference.accepts_keyword(resolved.fn, "cotangent")
    return resolved, isinstance(resolved, _reference.Autograd)


def _with_outputs(result: CheckResult, task: _Task, traceable: bool) -> CheckResult:
    """For an f that is not scalar: name its outputs and trace failing elements to them."""
    layout = task.call.layout
    if task.v is None and not layout.several:
        return result
    report = OutputReport(tuple(e.name for e in layout.entries), layout.skipped)
    if result.verdict is Verdict.FAIL and traceable and task.v is not None:
        from gradcheck._check import trace as _trace

        dtypes = [
            "float64" if result.numerics.policy == "promoted" else _arrays.dtype_name(x)
            for x in task.items
        ]
        traced = _trace.trace(task.call, task.source, task.counted, task.v, result.inputs, dtypes)
        report = dataclasses.replace(report, traced=traced)
    reasons: tuple[str, ...] = ()
    named = [t for t in report.traced if t.outputs and layout.several]
    if named:
        outputs = ", ".join(dict.fromkeys(n for t in named for n in t.outputs))
        reasons = (f"the vector-Jacobian product of {outputs} disagrees",)
    verdict = Verdict.FAIL if report.traced else Verdict.PASS  # traced: failing elements only
    result = with_part(result, Part("outputs", verdict, reasons, report))
    return dataclasses.replace(result, evaluations=task.evaluations)


def _per_input_modes(
    task: _Task,
    options: Options,
    native_f0: tuple[float, str] | None,
    screened: frozenset[int],
) -> CheckResult:
    """The screen for the inputs in ``screened``, the judging loop for the others (mode
    'mixed'), so a 10-element bias beside a 10**4-element weight is still checked element by
    element."""
    if len(screened) == len(task.items):
        return _screened(task, options, native_f0)
    screen = _screened(task, options, native_f0, inputs=screened)
    full = _judged(task, options, native_f0, inputs=frozenset(range(len(task.items))) - screened)
    comparisons = sorted((*screen.inputs, *full.inputs), key=lambda c: c.position)
    verdict = combine([c.verdict for c in comparisons])
    if Verdict.INCONCLUSIVE in (screen.verdict, full.verdict) and verdict is Verdict.PASS:
        verdict = Verdict.INCONCLUSIVE  # f NaN at x: both say so
    reasons = tuple(dict.fromkeys((*screen.reasons, *full.reasons)))
    numerics = dataclasses.replace(
        full.numerics, mode="mixed", noise_floor=max(screen.noise_floor, full.noise_floor)
    )
    records = [p for p in (full.part("taylor"), screen.part("screen")) if p is not None]
    return CheckResult(
        inputs=tuple(comparisons),
        seed=full.seed,
        evaluations=task.evaluations,
        numerics=numerics,
        reasons=reasons,
        parts=(Part("gradient", verdict, reasons), *records),
    )


@dataclass(frozen=True)
class _Task:
    """What both modes work from: the numerical side's f as a scalar function (contracted with
    the cotangent ``v`` when f is not scalar), the inputs, the analytic side (the source and
    the f it differentiates: f itself, also when a ``reference`` gives the numerical side) and
    f's prepared call. ``numerical`` is the numerical side's f before contraction (None:
    ``counted``); every evaluation is counted on it. The options travel beside it."""

    scalar_f: _engine.CountingFunction
    items: tuple[Any, ...]
    source: _reference.GradientSource
    counted: _engine.CountingFunction
    v: np.ndarray | None
    call: _front.Call
    numerical: _engine.CountingFunction | None = None
    analytic: tuple[np.ndarray, ...] | None = None  # from the first call's graph, when kept

    @property
    def evaluations(self) -> int:
        return (self.numerical or self.counted).calls

    def gradients(self) -> tuple[np.ndarray, ...]:
        """The analytic gradients at the inputs (``source`` asked only when not known)."""
        if self.analytic is not None:
            return self.analytic
        return tuple(self.source.gradients(self.counted, self.items, self.v))


def _judged(
    task: _Task,
    options: Options,
    native_f0: tuple[float, str] | None,
    inputs: frozenset[int] | None = None,
) -> CheckResult:
    """Mode 'full': the analytic side, then the judging loop (``gradcheck._judge.loop``) over
    ``inputs`` (None: all)."""
    analytic = task.gradients()

    def widening(policy: str) -> _precision.Widening:
        own = _precision.analytic_rounding(
            task.source, task.counted, task.items, task.v, analytic, policy, task.call.float64_scope
        )
        stick_f = task.numerical or task.counted
        return _precision.own_precision(task.items, own, stick_f, task.v)

    judged = _loop.judge(task.scalar_f, task.items, analytic, widening, options, native_f0, inputs)
    comparisons = _named(task.call, judged.comparisons)
    verdict, reasons = _overall(comparisons, judged.reasons, judged.f0)
    numerics = dataclasses.replace(
        judged.numerics, source=task.source.name, cotangent=task.v, noise_floor=judged.noise.sigma
    )
    parts = [Part("gradient", verdict, tuple(reasons))]
    if judged.taylor:
        parts.append(_taylor_part(comparisons, judged.taylor))
    return CheckResult(
        inputs=comparisons,
        seed=options.seed,
        evaluations=task.evaluations,
        numerics=numerics,
        reasons=tuple(reasons),
        parts=tuple(parts),
    )


def _taylor_part(comparisons: Sequence[InputComparison], runs: tuple[TaylorResult, ...]) -> Part:
    """The Taylor tests as a part: its verdict is that of the elements they decided."""
    decided = [
        Verdict(v)
        for c in comparisons
        for v, why in zip(
            c.element_verdicts.reshape(-1), c.element_reasons.reshape(-1), strict=True
        )
        if why == "taylor"
    ]
    return Part("taylor", combine(decided), (), runs)


def _overall(
    comparisons: Sequence[InputComparison], first: Sequence[str], f0: float
) -> tuple[Verdict, list[str]]:
    """The check's verdict from its inputs', and every reason, each input's prefixed."""
    reasons = [*first, *(f"{input_label(c)}: {r}" for c in comparisons for r in c.reasons)]
    reasons += [_nonfinite(c) for c in comparisons if not np.isfinite(c.analytic).all()]
    verdict = combine([c.verdict for c in comparisons])
    if not np.isfinite(f0):
        verdict, reasons = Verdict.INCONCLUSIVE, ["f is NaN/Inf at the inputs", *reasons]
    return verdict, reasons


AUTO_FULL_MAX_ELEMENTS = 4096


def screened_inputs(mode: str, items: tuple[Any, ...], method: str = "central") -> frozenset[int]:
    """The positions of the inputs a screen takes: all for mode 'screen', none for 'full'; for
    'auto', each input above ``AUTO_FULL_MAX_ELEMENTS`` elements (central differences only),
    the others being checked element by element."""
    if mode not in ("auto", "full", "screen", "fast"):
        raise ValueError(f"mode={mode!r} is not one of 'auto', 'full', 'screen', 'fast'")
    if mode in ("screen", "fast") and method != "central":
        raise ValueError(f"mode={mode!r} runs central differences; method={method!r} needs 'full'")
    if mode == "full" or (mode == "auto" and method != "central"):
        return frozenset()
    sizes = [int(np.prod(_arrays.output_shape(x))) for x in items]
    if mode in ("screen", "fast"):
        return frozenset(range(len(items)))
    return frozenset(k for k, size in enumerate(sizes) if size > AUTO_FULL_MAX_ELEMENTS)


def _screened(
    task: _Task,
    options: Options,
    native_f0: tuple[float, str] | None,
    inputs: frozenset[int] | None = None,
) -> CheckResult:
    """Modes 'screen' and 'fast': probes and localisation (``gradcheck._judge.screen``)
    instead of every element, for ``inputs`` (None: all). ``native_f0``: f at x from its
    first call, which the screen then need not evaluate again."""
    analytic = task.gradients()
    own = functools.partial(
        _precision.analytic_rounding,
        task.source,
        task.counted,
        task.items,
        task.v,
        analytic,
        scope=task.call.float64_scope,
    )
    outcome = _screen.screen(
        task.scalar_f,
        task.items,
        analytic,
        options,
        analytic_rounding=own,
        inputs=inputs,
        native_f0=native_f0,
    )
    comparisons, setup = _named(task.call, outcome.comparisons), outcome.setup
    verdict, reasons = _overall(comparisons, outcome.reasons, setup.f0)
    dtypes = setup.dtypes
    numerics = Numerics(
        policy=setup.policy,
        policy_reason=setup.policy_reason,
        evaluation_dtype=dtypes[0] if len(set(dtypes)) == 1 else "mixed",
        path=setup.evaluator.path,
        path_reason=setup.evaluator.reason,
        source=task.source.name,
        mode="fast" if options.mode == "fast" else "screen",
        cotangent=task.v,
        noise_floor=outcome.noise_floor,
    )
    return CheckResult(
        inputs=comparisons,
        seed=options.seed,
        evaluations=task.evaluations,
        numerics=numerics,
        reasons=tuple(reasons),
        parts=(
            Part("gradient", verdict, tuple(reasons)),
            Part("screen", verdict, (), outcome.screen),
        ),
    )


def _per_input(value: Any, call: _front.Call, name: str) -> list[float | None]:
    """One tolerance per differentiated input, from one for all, one per differentiated input,
    or one per input of f."""
    count = len(call.chosen)
    if value is None or isinstance(value, (int, float)):
        return [value] * count
    values = list(value)
    if len(values) == len(call.values) != count:
        return [values[p] for p in call.chosen]
    if len(values) != count:
        raise ValueError(
            f"{name} has {len(values)} entries for {count} inputs (the differentiated ones); "
            "give one per input"
        )
    return values


def _named(
    call: _front.Call, comparisons: Sequence[InputComparison]
) -> tuple[InputComparison, ...]:
    """The engine's comparisons as the user's call names them: position in f's call, name,
    and the input's own dtype (a complex input's arrays hold (real, imag) on the last axis)."""
    named = []
    for c in comparisons:
        k = c.position
        dtype = _arrays.dtype_name(call.values[call.chosen[k]]) if call.complex[k] else c.dtype
        named.append(
            dataclasses.replace(c, position=call.chosen[k], name=call.names[k], dtype=dtype)
        )
    return tuple(sorted(named, key=lambda c: c.position))


def _nonfinite(c: InputComparison) -> str:
    """The sentence for an analytic gradient holding NaN/Inf (the maxima leave those out)."""
    bad = np.flatnonzero(~np.isfinite(c.analytic.reshape(-1)))
    first = bad[0] if c.elements is None else c.elements[bad[0]]
    index = tuple(int(i) for i in np.unravel_index(int(first), c.shape)) if c.shape else ()
    value = c.analytic.reshape(-1)[bad[0]]
    return (
        f"{input_label(c)}: the analytic gradient is {value} at {bad.size} element(s), the first "
        f"at {index}"
    )


def _check_second(
    f: Callable[..., Any], items: tuple[Any, ...], v: np.ndarray | None, options: Options
) -> SecondOrderResult:
    """Order 2 of a torch f (``gradcheck._check.second``): the check of h recurses here, as
    jax's ``_check_grads`` does, with the step, dtype policy and mode of the first."""
    seed = options.seed
    import torch

    directions = _second.directions_for(items, seed)
    marked = _second.once_differentiable(f, items)
    if marked:
        why = (
            f"not checked: the backward of {', '.join(marked)} is marked @once_differentiable, "
            "which says it cannot be differentiated again; remove the marker if it can, or "
            "check order 1 only"
        )
        return SecondOrderResult(Verdict.INCONCLUSIVE, None, directions, (why,))
    detached = _second.detached_gradients(f, items, seed)
    if detached:  # not differentiable again: a fail, whatever differences of h would say
        return SecondOrderResult(Verdict.FAIL, None, directions, detached)
    h = _second.gradient_along(f, len(items), directions, None if v is None else [0])
    extra = () if v is None else (torch.as_tensor(v, dtype=items[0].dtype),)
    rtol: Any = [*options.rtols, *(None for _ in extra)]  # grad_output: the default ones
    atol: Any = [*options.atols, *(None for _ in extra)]
    result = check(
        h,
        (*items, *extra),
        rtol=rtol,
        atol=atol,
        seed=seed,
        batch="loop",  # h runs a backward inside: vmap over it would only fail and fall back
        contract=False,
        step=options.step,
        dtype_policy=options.dtype_policy,
        mode=options.mode,
    )
    return SecondOrderResult(
        result.verdict, result, directions, _second.named_failures(result, len(items))
    )


def assert_gradients_close(
    f: Callable[..., Any],
    inputs: Any,
    grad: Any = None,
    *,
    allow_inconclusive: bool = False,
    **options: Any,
) -> CheckResult:
    """Run :func:`check` and raise AssertionError unless it passes; returns the result.

    The message starts with one line per input: its verdict and, where it is not a pass, at how
    many elements it fails (``gradcheck._check.explain``); then the summary and a small table of
    the worst elements (index, analytic, numeric, abs err, rel err, tolerance), sign flips
    first. An inconclusive check also raises unless ``allow_inconclusive``.
    """
    __tracebackhide__ = True
    result = check(f, inputs, grad, **options)
    if result.verdict is Verdict.FAIL or (
        result.verdict is Verdict.INCONCLUSIVE and not allow_inconclusive
    ):
        raise AssertionError(_explain.failure_message(result, "gradient check "))
    return result
