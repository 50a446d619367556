"""Collect: cases -> results, one row per case x source x dtype; exceptions become rows; no I/O.

A gradient case is judged by :func:`gradcheck.check` (nothing is re-implemented here): the
runner samples the inputs, casts them to the row's dtype and array library, binds the constants
so that ``check`` sees only the differentiated inputs, and records the :class:`CheckResult`.

A descent case runs ``p = p - lr * grad`` (in the row's dtype) once with the analytic source and
once with the numerical engine's gradient, and compares the two runs
(``gradcheck._cases.descent``).

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

import contextlib
import os
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from gradcheck._cases import timeout as _timeout
from gradcheck._cases.case import AnyCase, Case, Descent, Source, case_seed
from gradcheck._cases.case import tolerance_for as _tolerance_for
from gradcheck._cases.descent import DescentResult, DescentRun, run_descent
from gradcheck._cases.inputs import (
    Constants,
    bind,
    differentiated,
    gradient_source,
    sample_inputs,
    uses_torch,
)
from gradcheck._cases.registry import LoadError, configured_timeout, load, select
from gradcheck._check.check import check
from gradcheck._check.result import CheckResult

OUTCOMES = ("passed", "xfailed", "failed", "xpassed", "error")
OK_OUTCOMES = ("passed", "xfailed")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C

Progress = Callable[[int, int, "CaseResult"], None]
Started = Callable[[str], None]


@dataclass(frozen=True)
class RowError:
    """Why a row has no result: the case's code (or its module) raised, or ran past its timeout.

    Fields:
        message: 'ExceptionType: message'.
        traceback: the formatted traceback of that exception ('' when there is none).
    """

    message: str
    traceback: str = ""


Detail = CheckResult | DescentResult | RowError


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
        detail: the evidence, one of three: the :class:`CheckResult` of a gradient case, the
            :class:`DescentResult` of a descent case, or the :class:`RowError` of a row that
            raised. ``check``, ``descent``, ``error`` and ``traceback`` read it.
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
    detail: Detail
    file: str = ""
    line: int = 0
    tags: tuple[str, ...] = ()
    seed: int = 0
    parameters: int = 0
    description: str = ""
    wrt: tuple[str, ...] = ()

    @property
    def check(self) -> CheckResult | None:
        """The gradient check's result; None for a descent case or an error row."""
        return self.detail if isinstance(self.detail, CheckResult) else None

    @property
    def descent(self) -> DescentResult | None:
        """The descent's result; None for a gradient case or an error row."""
        return self.detail if isinstance(self.detail, DescentResult) else None

    @property
    def error(self) -> str | None:
        """'ExceptionType: message' when the row raised; None otherwise."""
        return self.detail.message if isinstance(self.detail, RowError) else None

    @property
    def traceback(self) -> str:
        """The formatted traceback of the row's exception ('' otherwise)."""
        return self.detail.traceback if isinstance(self.detail, RowError) else ""

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
        unreported: the ids of rows that were to run but never reported: not run after an
            interruption, or lost with the process that ran them (a crashed pytest-xdist
            worker, a hard exit). Any makes the run not ok.
    """

    seed: int
    rows: tuple[CaseResult, ...]
    load_errors: tuple[LoadError, ...] = ()
    paths: tuple[str, ...] = ()
    interrupted: bool = False
    unreported: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Rows per outcome, every outcome present, in the order of ``OUTCOMES``."""
        return {o: sum(r.outcome == o for r in self.rows) for o in OUTCOMES}

    @property
    def ok(self) -> bool:
        """True when every row is as expected, every module loaded, and the run finished with
        every row reported."""
        finished = not self.interrupted and not self.unreported
        return finished and not self.load_errors and all(r.ok for r in self.rows)

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


def row_ids(cases: Sequence[AnyCase], dtypes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The ids of the rows :func:`run_cases` will produce for these cases, in its order."""
    return tuple(_row_id(c, s, d) for c in cases for s in c.sources for d in _row_dtypes(c, dtypes))


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
        detail=RowError(error.error, error.traceback),
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
        with _timeout.deadline(timeout), _no_hard_exit(), _same_directory():
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
                    with _same_directory():  # restored before the row names its file
                        detail = _named(_row_id(item, source, dtype), judge, source, dtype)
                    _timeout.raise_if_expired()  # a row that ends past the deadline: not a pass
                except BaseException as exc:  # the case's own code raised: an error row, go on
                    reraise_stops(exc)
                    _timeout.raise_if_expired()  # what f raised after swallowing the deadline
                    rows.append(_error_row(item, source, dtype, row_seed, exc))
                    continue
                rows.append(_row(item, source, dtype, row_seed, detail))
    except _timeout.CaseTimeout as exc:
        rows.extend(_timed_out_rows(item, plan[len(rows) :], row_seed, doing, exc))
    return rows


class HardExit(SystemExit):
    """``os._exit`` called by a case's code: the process would have ended, reporting nothing."""


@contextlib.contextmanager
def _no_hard_exit() -> Iterator[None]:
    """While a case runs, ``os._exit(n)`` called in its thread raises :class:`HardExit` (an
    error row) instead of ending the run with status n, 0 included. A forked child, and any
    other thread (pytest-xdist's link to its controller ends a worker so), still exit."""
    real, parent, thread = os._exit, os.getpid(), threading.get_ident()

    def refuse(status: int) -> NoReturn:
        if os.getpid() != parent or threading.get_ident() != thread:
            real(status)
        raise HardExit(status)

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real


@contextlib.contextmanager
def _same_directory() -> Iterator[None]:
    """The working directory as it was before the case, whatever its code did (``os.chdir``):
    later rows' paths and the reports' paths stay the user's."""
    before = os.getcwd()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a directory removed meanwhile: nothing to go back to
            os.chdir(before)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _named(row_id: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` through a frame named after the row: if f crashes the process (a
    segfault), the traceback that ``faulthandler`` prints names the case that was running."""
    code = _call.__code__.replace(co_name=f"<gradcheck case {row_id}>")
    return types.FunctionType(code, _call.__globals__)(fn, *args)


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
) -> Callable[[Source, str], CheckResult | DescentResult]:
    """(source, dtype) -> the row's evidence, whose verdict is the row's."""
    if isinstance(item, Descent):
        numerical_runs: dict[tuple[str, str], DescentRun] = {}  # shared by sources alike in kind

        def judge_descent(source: Source, dtype: str) -> DescentResult:
            return run_descent(item, source, dtype, values, numerical_runs)

        return judge_descent

    def judge_check(source: Source, dtype: str) -> CheckResult:
        return check_row(item, source, dtype, values, row_seed)

    return judge_check


def _row(
    item: AnyCase,
    source: Source,
    dtype: str,
    row_seed: int,
    detail: Detail,
) -> CaseResult:
    verdict = "error" if isinstance(detail, RowError) else str(detail.verdict)
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
        detail=detail,
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
    from gradcheck._cases.install import (  # a missing torch: one sentence, the command
        numpy_without_grad,
        plain_message,
    )
    from gradcheck._sources.reference import CallError

    if isinstance(exc, CallError) and exc.__cause__ is not None:  # the row names f's own error
        exc = exc.__cause__
    if message is None and isinstance(exc, HardExit):
        message = f"os._exit({exc.code!r}) was called by the case's code; the run goes on"
    if message is None and isinstance(exc, SystemExit):  # say what happened: not a pass
        message = f"sys.exit({exc.code!r}) was called by the case's code"
    if message is None and exc is not None:
        message = numpy_without_grad(source.fn is None, exc) or plain_message(exc)
    text = _clean(str(exc).strip() if message is None else message)
    kind = "CaseTimeout" if exc is None else type(exc).__name__
    trace = "" if exc is None else traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _row(
        item,
        source,
        dtype,
        row_seed,
        RowError(f"{kind}: {text}" if text else kind, _clean("".join(trace))),
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


# -- gradient cases ---------------------------------------------------------------------------


def check_row(
    item: Case, source: Source, dtype: str, values: Mapping[str, Any], row_seed: int
) -> CheckResult:
    """Check one source of a case in one dtype (raises what the case's code raises)."""
    torch_arrays = uses_torch(item, source)
    constants = Constants({k: v for k, v in values.items() if k not in item.wrt}, torch_arrays)
    inputs = tuple(differentiated(values[k], dtype, torch_arrays) for k in item.wrt)
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
