"""Collect: cases -> results, one row per case x source x dtype; exceptions become rows; no I/O.

A gradient case is judged by :func:`gradcheck.check` (nothing is re-implemented here): the
runner samples the inputs, casts them to the row's dtype and array library, binds the constants
so that ``check`` sees only the differentiated inputs, and records the :class:`CheckResult`.

A descent case runs ``p = p - lr * grad`` (in the row's dtype) once with the analytic source and
once with the numerical engine's gradient, and compares the two runs (see :func:`run_descent`).

The row's *verdict* is what the comparison found ('pass', 'fail', 'inconclusive', or 'error'
when the case raised); its *outcome* weighs that against what the case expects:

=========  ==========================================================
passed     expected pass, got pass
xfailed    expected fail (or inconclusive) and got it: a known-bad example doing its job
failed     expected pass, got fail or inconclusive; or expected fail, got inconclusive
xpassed    expected fail, got pass: the known-bad example no longer fails (a failure)
error      the case (or its module) raised
=========  ==========================================================
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcheck._cases import timeout as _timeout
from gradcheck._cases.case import AnyCase, Case, Descent, InputGenerator, Source, case_seed
from gradcheck._cases.case import tolerance_for as _tolerance_for
from gradcheck._cases.registry import LoadError, configured_timeout, load, select
from gradcheck._check.check import check
from gradcheck._check.result import CheckResult
from gradcheck._judge.verdict import Verdict, rule
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine
from gradcheck._sources.reference import Autograd, Formula, GradientSource

OUTCOMES = ("passed", "xfailed", "failed", "xpassed", "error")
OK_OUTCOMES = ("passed", "xfailed")
NUMERICAL = "numerical"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C

Progress = Callable[[int, int, "CaseResult"], None]
Started = Callable[[str], None]


@dataclass(frozen=True)
class DescentRun:
    """One run of gradient descent.

    Fields:
        gradient: which gradient drove it: a source name, or 'numerical'.
        losses: the loss per epoch (the mean of the losses seen before each step of the epoch;
            with batch='full' simply the loss before each step). For plotting.
        params: name -> final value, as a flat tuple of floats.
        readout: the case's readout of the final parameters (name -> number), computed from
            NumPy arrays in the row's dtype.
        max_error_estimate: for the numerical run, the engine's largest error estimate along the
            way; 0 for an analytic run.
    """

    gradient: str
    losses: tuple[float, ...]
    params: Mapping[str, tuple[float, ...]]
    readout: Mapping[str, float]
    max_error_estimate: float = 0.0


@dataclass(frozen=True)
class DescentResult:
    """An analytic descent against a numerical one.

    Fields:
        verdict: 'pass' when the runs agree within tolerance and both reach the target;
            'fail' otherwise; 'inconclusive' when a run produced NaN/Inf.
        analytic, numerical: the two :class:`DescentRun` s.
        max_abs_error, max_rel_error: the largest difference between the runs, over the final
            parameters and the loss curve; relative to ``max(|a|, |n|, rtol * scale)`` as in the
            reports' relative error of a gradient.
        tolerance: the absolute tolerance at the worst value: ``rtol * scale``, with scale the
            largest magnitude in its group (the final parameters, or the loss curve).
        rtol: the relative agreement tolerance used.
        target: name -> the value each run had to reach; ``target_atol`` its tolerance.
        reasons: why the verdict is not a plain pass, one sentence each.
    """

    verdict: Verdict
    analytic: DescentRun
    numerical: DescentRun
    max_abs_error: float
    max_rel_error: float
    tolerance: float
    rtol: float
    target: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    target_atol: float = 0.0
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseResult:
    """One row of a report: one case, one gradient source, one dtype.

    Fields:
        case: the case's name (for a module that failed to import: its path).
        source: 'autograd' or a formula's name ('-' for a load error).
        dtype: 'float64' or 'float32' ('-' for a load error).
        expected: what the case declares: 'pass', 'fail' or 'inconclusive'.
        verdict: what was found: 'pass', 'fail', 'inconclusive', or 'error'.
        outcome: verdict weighed against expected: 'passed', 'xfailed', 'failed', 'xpassed',
            'error' (see the module docstring); ``ok`` is True for passed and xfailed.
        kind: 'check' (a gradient case), 'descent', or 'load' (a module that failed to import).
        check: the :class:`CheckResult` of a gradient case; None otherwise or on error.
        descent: the :class:`DescentResult` of a descent case; None otherwise or on error.
        error: 'ExceptionType: message' when the row raised; None otherwise.
        traceback: the formatted traceback of that exception ('' otherwise).
        file, line: where the case was defined (``case(...)`` was called), relative to the
            working directory when under it; for a load error the module and failing line.
        tags: the case's tags.
        seed: the seed the case drew its inputs and cotangent from (derived from the run seed).
        parameters: the number of differentiated elements (0 when unknown).
        description: the case's one-line description.
        wrt: the names of the differentiated inputs (descent: the parameters), in the order of
            ``check.inputs``.
    """

    case: str
    source: str
    dtype: str
    expected: str
    verdict: str
    outcome: str
    kind: str
    check: CheckResult | None = None
    descent: DescentResult | None = None
    error: str | None = None
    traceback: str = ""
    file: str = ""
    line: int = 0
    tags: tuple[str, ...] = ()
    seed: int = 0
    parameters: int = 0
    description: str = ""
    wrt: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in OK_OUTCOMES

    @property
    def id(self) -> str:
        """A readable id: ``name[source-dtype]`` (just the name for a load error)."""
        return self.case if self.kind == "load" else f"{self.case}[{self.source}-{self.dtype}]"

    @property
    def max_abs_error(self) -> float | None:
        if self.check is not None:
            return self.check.max_abs_error
        return None if self.descent is None else self.descent.max_abs_error

    @property
    def max_rel_error(self) -> float | None:
        if self.check is not None:
            return self.check.max_rel_error
        return None if self.descent is None else self.descent.max_rel_error

    @property
    def error_estimate(self) -> float | None:
        """The largest error estimate of the numerical side."""
        if self.check is not None:
            return max(c.max_error_estimate for c in self.check.inputs)
        return None if self.descent is None else self.descent.numerical.max_error_estimate

    @property
    def tolerance(self) -> float | None:
        """The absolute tolerance at the worst element (the one furthest outside, or nearest)."""
        if self.check is not None:
            worst = max(self.check.inputs, key=_worst_ratio)
            return worst.worst_tolerance
        return None if self.descent is None else self.descent.tolerance

    @property
    def reasons(self) -> tuple[str, ...]:
        if self.check is not None:
            return self.check.reasons
        return () if self.descent is None else self.descent.reasons


def _worst_ratio(c: Any) -> float:
    err = abs(c.worst_analytic - c.worst_numeric)
    return float("inf") if not np.isfinite(err) else err / c.worst_tolerance if err else 0.0


@dataclass(frozen=True)
class RunResult:
    """The result of a run.

    Fields:
        seed: the run seed; ``gradcheck run --seed N`` replays it.
        rows: one :class:`CaseResult` per case x source x dtype, in case-name order, then the
            load-error rows.
        load_errors: the modules that failed to import (also present as rows of kind 'load').
        paths: the paths the cases were loaded from (empty when cases were given directly).
        interrupted: True when the run was stopped (Ctrl-C) before every case ran: the rows
            are those of the cases that finished.
    """

    seed: int
    rows: tuple[CaseResult, ...]
    load_errors: tuple[LoadError, ...] = ()
    paths: tuple[str, ...] = ()
    interrupted: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Rows per outcome, every outcome present, in the order of ``OUTCOMES``."""
        return {o: sum(r.outcome == o for r in self.rows) for o in OUTCOMES}

    @property
    def ok(self) -> bool:
        """True when every row is as expected, every module loaded and the run finished."""
        return not self.load_errors and not self.interrupted and all(r.ok for r in self.rows)

    @property
    def exit_code(self) -> int:
        """0 when every case is as expected, 1 when any is not, 2 when a module failed to load,
        130 (as a shell reports Ctrl-C) when the run was interrupted."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.load_errors:
            return 2
        return 0 if self.ok else 1


def outcome_of(expected: str, verdict: str) -> str:
    """The outcome of a row (see the module docstring)."""
    if verdict == "error":
        return "error"
    if verdict == expected:
        return "passed" if expected == "pass" else "xfailed"
    return "xpassed" if verdict == "pass" else "failed"


def row_count(cases: Sequence[AnyCase], dtypes: Sequence[str] | None = None) -> int:
    """How many rows :func:`run_cases` will produce for these cases."""
    return sum(len(c.sources) * len(_row_dtypes(c, dtypes)) for c in cases)


def _row_dtypes(item: AnyCase, dtypes: Sequence[str] | None) -> tuple[str, ...]:
    return item.dtypes if not dtypes else tuple(d for d in item.dtypes if d in dtypes)


def run_cases(
    cases: Sequence[AnyCase],
    *,
    seed: int = 0,
    dtypes: Sequence[str] | None = None,
    progress: Progress | None = None,
    load_errors: Sequence[LoadError] = (),
    paths: Sequence[str] = (),
    timeout: float | None = None,
    started: Started | None = None,
) -> RunResult:
    """Run every case for each of its sources and dtypes (restricted to ``dtypes`` if given).

    Never raises for a bad case: its exception (``SystemExit`` too) becomes an error row; only
    ``KeyboardInterrupt`` stops the run. ``timeout`` (seconds; None: none) bounds each case, all
    its rows together: the row running at the deadline is an error row saying where its code
    was, the case's later rows are error rows too, and the run goes on with the next case (see
    ``gradcheck._cases.timeout`` for what can be interrupted). ``started(row_id)`` is called before
    each row runs, ``progress(done, total, row)`` after it.
    """
    total = row_count(cases, dtypes)
    rows: list[CaseResult] = []
    for item in cases:
        for row in _case_rows(item, seed, dtypes, timeout, started):
            rows.append(row)
            if progress is not None:
                progress(len(rows), total, row)
    rows.extend(load_error_row(e) for e in load_errors)
    return RunResult(
        seed=seed, rows=tuple(rows), load_errors=tuple(load_errors), paths=tuple(paths)
    )


def run(
    paths: Sequence[str] | None = None,
    *,
    keyword: str | None = None,
    tags: Sequence[str] = (),
    dtypes: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Load the cases under ``paths`` (default: pyproject's ``[tool.gradcheck] paths``, else
    ``cases/``), select them by ``keyword`` (a ``-k`` expression) and ``tags``, and run them.

    ``timeout``: seconds per case (default: ``[tool.gradcheck] timeout``, else none; 0: none).
    Raises ``RegistryError`` (a missing path, duplicate names, a bad setting); a module that
    fails to import becomes an error row and makes ``exit_code`` 2.
    """
    loaded = load(paths)
    chosen = select(loaded.cases, keyword, tags)
    return run_cases(
        chosen,
        seed=seed,
        dtypes=dtypes,
        progress=progress,
        load_errors=loaded.errors,
        paths=loaded.paths,
        timeout=configured_timeout() if timeout is None else timeout or None,
    )


def load_error_row(error: LoadError) -> CaseResult:
    path = display_path(error.path)
    return CaseResult(
        case=path,
        source="-",
        dtype="-",
        expected="pass",
        verdict="error",
        outcome="error",
        kind="load",
        error=error.error,
        traceback=error.traceback,
        file=path,
        line=error.line,
    )


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies under it (stable across clones)."""
    if not path or path.startswith("<"):
        return path
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path


def _case_rows(
    item: AnyCase,
    seed: int,
    dtypes: Sequence[str] | None,
    timeout: float | None = None,
    started: Started | None = None,
) -> list[CaseResult]:
    """The rows of one case; its code runs under one deadline of ``timeout`` seconds."""
    row_seed = case_seed(seed, item.name)
    plan = [(s, d) for s in item.sources for d in _row_dtypes(item, dtypes)]
    rows: list[CaseResult] = []
    doing = "sampling its inputs"
    if timeout and any(uses_torch(item, source) for source, _ in plan):
        import torch  # noqa: F401  # seconds on a busy machine: not the case's time, and an
        # import interrupted half-way would break torch for every later case
    try:
        with _timeout.deadline(timeout):
            try:
                values = sample_inputs(item, row_seed)
            except BaseException as exc:  # a broken generator fails every row of its case
                reraise_stops(exc)
                return [_error_row(item, s, d, row_seed, exc) for s, d in plan]
            judge = _judge(item, values, row_seed)
            for source, dtype in plan:
                if started is not None:
                    started(_row_id(item, source, dtype))
                doing = f"{_activity(item)} with the {source.name} gradient in {dtype}"
                try:
                    verdict, results = judge(source, dtype)
                except BaseException as exc:  # the case's own code raised: an error row, go on
                    reraise_stops(exc)
                    rows.append(_error_row(item, source, dtype, row_seed, exc))
                    continue
                rows.append(_row(item, source, dtype, row_seed, verdict, **results))
    except _timeout.CaseTimeout as exc:
        rows.extend(_timed_out_rows(item, plan[len(rows) :], row_seed, doing, exc))
    return rows


def reraise_stops(exc: BaseException) -> None:
    """Raise again what stops a run or a case: Ctrl-C, and the deadline's timeout.

    Anything else the case's code raises becomes its row's error, ``SystemExit`` included
    (``sys.exit()`` in f is a bug in f, not the end of the run).
    """
    if isinstance(exc, (KeyboardInterrupt, _timeout.CaseTimeout)):
        raise exc


def _activity(item: AnyCase) -> str:
    return "descending" if isinstance(item, Descent) else "checking"


def _row_id(item: AnyCase, source: Source, dtype: str) -> str:
    return f"{item.name}[{source.name}-{dtype}]"


def _timed_out_rows(
    item: AnyCase,
    plan: Sequence[tuple[Source, str]],
    row_seed: int,
    doing: str,
    exc: _timeout.CaseTimeout,
) -> list[CaseResult]:
    """The row that was running when the deadline passed, and the rows never started."""
    rows = []
    for position, (source, dtype) in enumerate(plan):
        if position == 0:
            at = f", at {exc.where}" if exc.where else ""
            message = f"{_row_id(item, source, dtype)} ran past the {exc.seconds:g} s timeout"
            message += f" while {doing}{at}"
            row = _error_row(item, source, dtype, row_seed, exc, message=message)
        else:
            message = f"not run: the case ran past its {exc.seconds:g} s timeout before"
            row = _error_row(item, source, dtype, row_seed, None, message=message)
        rows.append(row)
    return rows


def _judge(
    item: AnyCase, values: dict[str, Any], row_seed: int
) -> Callable[[Source, str], tuple[str, dict[str, Any]]]:
    """(source, dtype) -> (verdict, the CaseResult field holding the evidence)."""
    if isinstance(item, Descent):
        numerical_runs: dict[tuple[str, str], DescentRun] = {}  # shared by sources alike in kind

        def judge_descent(source: Source, dtype: str) -> tuple[str, dict[str, Any]]:
            result = run_descent(item, source, dtype, values, numerical_runs)
            return str(result.verdict), {"descent": result}

        return judge_descent

    def judge_check(source: Source, dtype: str) -> tuple[str, dict[str, Any]]:
        result = check_row(item, source, dtype, values, row_seed)
        return str(result.verdict), {"check": result}

    return judge_check


def _row(
    item: AnyCase,
    source: Source,
    dtype: str,
    row_seed: int,
    verdict: str,
    **results: Any,
) -> CaseResult:
    return CaseResult(
        case=item.name,
        source=source.name,
        dtype=dtype,
        expected=item.expect,
        verdict=verdict,
        outcome=outcome_of(item.expect, verdict),
        kind=item.kind,
        file=display_path(item.file),
        line=item.line,
        tags=item.tags,
        seed=row_seed,
        parameters=_parameter_count(item),
        description=item.description,
        wrt=item.wrt,
        **results,
    )


def _error_row(
    item: AnyCase,
    source: Source,
    dtype: str,
    row_seed: int,
    exc: BaseException | None,
    message: str | None = None,
) -> CaseResult:
    """An error row: 'ExceptionType: message' (``message`` replaces the exception's own)."""
    from gradcheck._cases.install import plain_message  # a missing torch: one sentence, the command
    from gradcheck._sources.reference import CallError

    if isinstance(exc, CallError) and exc.__cause__ is not None:  # the row names f's own error
        exc = exc.__cause__
    if message is None and isinstance(exc, SystemExit):  # say what happened: not a pass
        message = f"sys.exit({exc.code!r}) was called by the case's code"
    if message is None and exc is not None:
        message = plain_message(exc)
    text = _clean(str(exc).strip() if message is None else message)
    kind = "CaseTimeout" if exc is None else type(exc).__name__
    trace = "" if exc is None else traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _row(
        item,
        source,
        dtype,
        row_seed,
        "error",
        error=f"{kind}: {text}" if text else kind,
        traceback=_clean("".join(trace)),
    )


def _clean(text: str) -> str:
    """Text that every report can encode: a lone surrogate becomes a visible escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _parameter_count(item: AnyCase) -> int:
    values = item.params if isinstance(item, Descent) else item.inputs
    total = 0
    for name in item.wrt:
        value = values[name]
        shape = getattr(value, "shape", ())
        total += int(np.prod(shape)) if shape is not None else 1
    return total


# -- inputs -----------------------------------------------------------------------------------


def sample_inputs(item: AnyCase, row_seed: int) -> dict[str, Any]:
    """The case's inputs with generators drawn (in declaration order) from ``row_seed``."""
    rng = np.random.default_rng(row_seed)
    declared = item.params if isinstance(item, Descent) else item.inputs
    values: dict[str, Any] = {}
    for name, value in declared.items():
        if isinstance(value, InputGenerator) and not isinstance(value, np.ndarray):
            drawn = np.asarray(value.sample(rng), dtype=np.float64)
            values[name] = drawn
        else:
            values[name] = value
    return values


def uses_torch(item: AnyCase, source: Source) -> bool:
    return item.arrays == "torch" or (item.arrays == "auto" and source.is_autograd)


def cast(value: Any, dtype: str, torch_arrays: bool) -> Any:
    """A fresh copy of ``value`` in the row's library; floating values cast to ``dtype``.

    Python floats stay Python floats (they are constants like a learning rate); integer arrays
    (labels, indices) keep their integer dtype.
    """
    if isinstance(value, float):
        return value
    array = _arrays.to_numpy64(value) if _arrays.is_torch(value) else np.asarray(value)
    array = array.astype(np.dtype(dtype)) if array.dtype.kind == "f" else array.copy()
    if not torch_arrays:
        return np.array(array, copy=True)
    import torch

    return torch.from_numpy(np.array(array, copy=True))


def _differentiated(value: Any, dtype: str, torch_arrays: bool) -> Any:
    """A differentiated input: always an array/tensor of ``dtype`` (a float becomes 0-d)."""
    array = np.asarray(_arrays.to_numpy64(value), dtype=np.dtype(dtype))
    if not torch_arrays:
        return array
    import torch

    return torch.from_numpy(array)


# -- gradient cases ---------------------------------------------------------------------------


def check_row(
    item: Case, source: Source, dtype: str, values: Mapping[str, Any], row_seed: int
) -> CheckResult:
    """Check one source of a case in one dtype (raises what the case's code raises)."""
    torch_arrays = uses_torch(item, source)
    constants = Constants({k: v for k, v in values.items() if k not in item.wrt}, torch_arrays)
    inputs = tuple(_differentiated(values[k], dtype, torch_arrays) for k in item.wrt)
    f = bind(item.f, item.wrt, constants)
    f.__gradcheck_jax__ = item.arrays == "jax"  # type: ignore[attr-defined]  # JAX code
    return check(
        f,
        inputs,
        gradient_source(source, item.wrt, constants),
        atol=_tolerance_for(item.atol, dtype),
        rtol=_tolerance_for(item.rtol, dtype),
        seed=row_seed,
        cotangent=item.cotangent,
        step=item.step,
        dtype_policy=item.dtype_policy,  # type: ignore[arg-type]
        batch="auto" if item.batched is None else bind(item.batched, item.wrt, constants),
        modes=item.modes if source.is_autograd else ("rev",),
        order=item.order if source.is_autograd else 1,
    )


class Constants:
    """A case's constants (data, targets), cast to the precision of the differentiated inputs.

    They follow the inputs' dtype at every call: float32 when autograd or a formula works in
    float32, float64 when the engine promotes a float32 case to float64 (see the float32 caveat
    in ``gradcheck._numerics.engine``): a float32 constant would otherwise pull f back to float32.
    """

    def __init__(self, values: Mapping[str, Any], torch_arrays: bool) -> None:
        self.values = dict(values)
        self.torch_arrays = torch_arrays
        self._cast: dict[str, dict[str, Any]] = {}

    def like(self, diff: Sequence[Any]) -> dict[str, Any]:
        dtype = _arrays.dtype_name(diff[0]) if diff else "float64"
        if dtype not in _arrays.FLOAT_EPS:
            dtype = "float64"
        if dtype not in self._cast:
            self._cast[dtype] = {
                k: cast(v, dtype, self.torch_arrays) for k, v in self.values.items()
            }
        return self._cast[dtype]


def bind(f: Callable[..., Any], wrt: Sequence[str], constants: Constants) -> Callable[..., Any]:
    """f as a function of the differentiated inputs alone, positionally, constants bound."""

    def bound(*diff: Any) -> Any:
        return f(**constants.like(diff), **dict(zip(wrt, diff, strict=True)))

    return bound


def gradient_source(source: Source, wrt: Sequence[str], constants: Constants) -> GradientSource:
    """The ``_reference`` gradient source for a case's source: Autograd, or a bound Formula."""
    if source.fn is None:
        return Autograd()
    fn = source.fn
    wants_cotangent = _accepts_cotangent(fn)

    def formula(*diff: Any, cotangent: Any = None) -> Any:
        kwargs = {**constants.like(diff), **dict(zip(wrt, diff, strict=True))}
        if cotangent is not None and wants_cotangent:
            kwargs["cotangent"] = cotangent
        out = fn(**kwargs)
        if isinstance(out, Mapping):
            missing = [w for w in wrt if w not in out]
            if missing:
                raise ValueError(
                    f"the {source.name} gradient returned a mapping without {missing}; "
                    f"return one entry per differentiated input {list(wrt)}"
                )
            return tuple(out[w] for w in wrt)
        return out

    return Formula(formula, name=source.name)


def _accepts_cotangent(fn: Callable[..., Any]) -> bool:
    from gradcheck._sources.reference import accepts_keyword

    return accepts_keyword(fn, "cotangent")


# -- descent cases ----------------------------------------------------------------------------


DESCENT_RTOL = {"float64": 1e-6, "float32": 1e-3}


def run_descent(
    item: Descent,
    source: Source,
    dtype: str,
    values: Mapping[str, Any],
    numerical_runs: dict[tuple[str, str], DescentRun] | None = None,
) -> DescentResult:
    """Descend with the analytic source and with the numerical gradient; compare the runs.

    ``numerical_runs`` caches the numerical run per (dtype, array library), which does not
    depend on the analytic source.
    """
    torch_arrays = uses_torch(item, source)
    analytic = descend(item, source, dtype, values, torch_arrays)
    key = (dtype, "torch" if torch_arrays else "numpy")
    cache = {} if numerical_runs is None else numerical_runs
    if key not in cache:
        cache[key] = descend(item, None, dtype, values, torch_arrays)
    return compare_runs(item, dtype, analytic, cache[key])


def descend(
    item: Descent,
    source: Source | None,
    dtype: str,
    values: Mapping[str, Any],
    torch_arrays: bool,
) -> DescentRun:
    """``epochs`` of ``p = p - lr * g`` in ``dtype``; g from ``source`` (None: numerical)."""
    names = tuple(item.params)
    params = [np.asarray(_arrays.to_numpy64(values[n]), dtype=np.dtype(dtype)) for n in names]
    lr = np.dtype(dtype).type(item.lr)
    losses: list[float] = []
    worst_estimate = 0.0
    batches = _batches(item, torch_arrays)
    for _ in range(item.epochs):
        epoch_losses = []
        for batch in batches:
            inputs = tuple(_differentiated(p, dtype, torch_arrays) for p in params)
            bound = bind(item.loss, names, batch)
            if source is None:
                estimate = _engine.estimate_gradient(bound, inputs)
                grads = estimate.values
                loss = estimate.f0
                worst_estimate = max(worst_estimate, *(float(np.max(e)) for e in estimate.errors))
            else:
                loss = _arrays.scalar_value(bound(*inputs))
                grads = gradient_source(source, names, batch).gradients(bound, inputs, None)
            epoch_losses.append(loss)
            params = [
                p - lr * np.asarray(g, dtype=p.dtype) for p, g in zip(params, grads, strict=True)
            ]
        losses.append(float(np.mean(epoch_losses)))
    final = {n: p for n, p in zip(names, params, strict=True)}
    readout = (
        # in the row's dtype, as the seeds compute their predictions (float32 throughout)
        item.readout(**{n: p.copy() for n, p in final.items()}) if item.readout else {}
    )
    return DescentRun(
        gradient=NUMERICAL if source is None else source.name,
        losses=tuple(losses),
        params=MappingProxyType(
            {n: tuple(float(v) for v in p.reshape(-1)) for n, p in final.items()}
        ),
        readout=MappingProxyType({str(k): float(v) for k, v in readout.items()}),
        max_error_estimate=worst_estimate,
    )


def _batches(item: Descent, torch_arrays: bool) -> list[Constants]:
    """The data each step sees: all of it ('full'), or one sample per step ('sample')."""
    if not item.data:
        return [Constants({}, torch_arrays)]
    if item.batch == "full":
        return [Constants(item.data, torch_arrays)]
    count = len(next(iter(item.data.values())))
    return [Constants({k: v[i] for k, v in item.data.items()}, torch_arrays) for i in range(count)]


def compare_runs(
    item: Descent, dtype: str, analytic: DescentRun, numerical: DescentRun
) -> DescentResult:
    """Judge two descent runs: agreement of final parameters and losses, and the target."""
    rtol = item.rtol if item.rtol is not None else DESCENT_RTOL[dtype]
    groups = [
        (
            np.array([v for p in analytic.params.values() for v in p]),
            np.array([v for p in numerical.params.values() for v in p]),
        ),
        (np.array(analytic.losses), np.array(numerical.losses)),
    ]
    reasons: list[str] = []
    worst = (0.0, 0.0, 0.0, -1.0)  # abs err, rel err, tolerance, ratio
    max_abs = max_rel = 0.0
    finite, differ = True, False
    for a, n in groups:
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
            finite = False
            continue
        err = np.abs(a - n)
        bigger = np.maximum(np.abs(a), np.abs(n))
        # rtol times the group's largest magnitude: a loss that falls to 1e-9 is judged
        # against the size of the curve, as _compare judges small gradient elements.
        scale = float(np.max(bigger, initial=0.0))
        tol = np.full(err.shape, max(rtol * scale, np.finfo(np.float64).tiny))
        verdicts, _ = rule(a, n, 0.0, tol, bigger)  # the runs carry no error bar
        differ |= bool(np.any(verdicts == Verdict.FAIL.value))
        ratio = err / tol
        i = int(np.argmax(ratio))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(err == 0, 0.0, err / np.maximum(bigger, rtol * scale))
        max_abs = max(max_abs, float(np.max(err)))
        max_rel = max(max_rel, float(np.max(rel)))
        if ratio[i] > worst[3]:
            worst = (float(err[i]), float(rel[i]), float(tol[i]), float(ratio[i]))
    verdict = Verdict.PASS
    if not finite:
        verdict = Verdict.INCONCLUSIVE
        reasons.append("a run produced NaN/Inf (diverged?)")
    elif differ:
        verdict = Verdict.FAIL
        reasons.append(
            f"analytic and numerical runs differ by {worst[0]:.3g} (tolerance {worst[2]:.3g})"
        )
    for run_ in (analytic, numerical):
        for key, want in item.target.items():
            got = _reached(run_, key)
            if got is None:
                raise ValueError(
                    f"descent {item.name!r}: target {key!r} is neither a parameter of size 1 "
                    f"nor a readout; the names are {[*run_.params, *run_.readout]}"
                )
            if not abs(got - want) <= item.target_atol:
                verdict = Verdict.FAIL
                reasons.append(
                    f"the {run_.gradient} run reached {key} = {got:.6g}, "
                    f"not {want:g} ± {item.target_atol:g}"
                )
    return DescentResult(
        verdict=verdict,
        analytic=analytic,
        numerical=numerical,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        tolerance=worst[2],
        rtol=rtol,
        target=item.target,
        target_atol=item.target_atol,
        reasons=tuple(reasons),
    )


def _reached(run_: DescentRun, key: str) -> float | None:
    if key in run_.readout:
        return run_.readout[key]
    values = run_.params.get(key)
    return values[0] if values is not None and len(values) == 1 else None
