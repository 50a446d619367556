"""Surface: the command line. ``gradcheck run``, ``list`` and ``sweep``; ``python -m gradcheck``.

Exit status: 0 when every case is as expected, 1 when any is not (a failure, an unexpected pass,
an exception in a case), 2 for usage errors and for case modules that cannot be loaded (a
missing path, duplicate names, a module that fails to import: the other cases still run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gradcheck import __version__
from gradcheck._cases.case import AnyCase
from gradcheck._cases.registry import (
    Loaded,
    RegistryError,
    check_settings,
    configured_timeout,
    load,
    select,
)
from gradcheck._cases.runner import (
    EXIT_INTERRUPTED,
    CaseResult,
    RunResult,
    display_path,
    load_error_row,
    row_count,
    row_ids,
    run_cases,
)
from gradcheck._cases.timeout import check_timeout, deadline
from gradcheck._report import formats as _formats
from gradcheck._report import render
from gradcheck._report import text as _render
from gradcheck._report.escape import printable
from gradcheck._report.output import case_prints_to, output_problem

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DTYPES = ("float64", "float32")
PROGRESS_AFTER_S = 1.0


class UsageError(Exception):
    """A mistake in the command line or the case paths; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck",
        description="Check analytic gradients against numerical ones, case by case.",
        epilog="Exit status: 0 all as expected, 1 any not as expected, 2 usage/loading error.",
    )
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="run the cases and print (and write) the report", description=RUN_HELP
    )
    _selection_options(run)
    run.add_argument(
        "--dtype",
        action="append",
        choices=DTYPES,
        help="only these dtypes (repeatable; default: each case's own, float64 and float32)",
    )
    run.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seed of sampled inputs and cotangents, 0 to 2**32-1 (default 0)",
    )
    run.add_argument(
        "--timeout",
        type=timeout_argument,
        default=None,
        metavar="SECONDS",
        help="stop a case that runs longer (an error row; the run goes on); default: "
        "[tool.gradcheck] timeout in pyproject.toml, else none; 0 for none",
    )
    run.add_argument(
        "--format",
        choices=_formats.FORMATS,
        default=None,
        help="the report printed on stdout (default text); also the format of an --output "
        "whose extension says none",
    )
    run.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="also write the report to PATH, in the format its extension names: "
        + _formats.described()
        + " (repeatable; written atomically)",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only each case not as expected (file:line: verdict: id) and the summary line",
    )
    run.add_argument(
        "--timestamp", action="store_true", help="record the time of the run in the JSON report"
    )
    run.add_argument(
        "--github",
        action="store_true",
        help="also print GitHub Actions annotations pointing at each case not as expected, "
        "and append the Markdown report to $GITHUB_STEP_SUMMARY when it is set",
    )
    listing = commands.add_parser("list", help="list the cases without running them")
    _selection_options(listing)
    _sweep_parser(commands)
    return parser


def _sweep_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="error of the numerical derivative against the step size h, for one case",
        description="Print the error of the central difference of CASE against the relative "
        "step h, per dtype, with the step the engine chooses, and write the plot.",
    )
    sweep.add_argument("case", metavar="CASE", help="the case's name (see gradcheck list)")
    sweep.add_argument("paths", nargs="*", metavar="PATH", help="case modules or directories")
    sweep.add_argument(
        "--dtype", action="append", choices=DTYPES, help="(repeatable; default: the case's dtypes)"
    )
    sweep.add_argument(
        "--seed", type=seed_argument, default=0, help="seed of sampled inputs (default 0)"
    )
    sweep.add_argument(
        "--step",
        action="append",
        type=float,
        default=[],
        metavar="H",
        help="also try this relative step (repeatable), e.g. --step 1e-50, which rounding loses",
    )
    sweep.add_argument(
        "--output", metavar="PNG", help="where to write the plot (default reports/sweep-CASE.png)"
    )
    sweep.add_argument("--no-plot", action="store_true", help="print the table only")


RUN_HELP = (
    "Run every case (x gradient source x dtype) under PATH... (default: [tool.gradcheck] paths "
    "in pyproject.toml, else cases/) and report max errors, error estimates, tolerances and "
    "verdicts. The seed is printed; --seed N replays a run."
)


def seed_argument(text: str) -> int:
    """``--seed``: an integer a NumPy seed can be (0 to 2**32 - 1), else a usage error."""
    digits = text.strip()
    if digits.isdigit() and int(digits) < 2**32:
        return int(digits)
    raise argparse.ArgumentTypeError(f"{text!r} is not a seed; give an integer from 0 to 2**32-1")


def timeout_argument(text: str) -> float | None:
    """``--timeout``: seconds per case; 0 for none."""
    try:
        return check_timeout(float(text), "--timeout")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds; give one such as 60 (0 for no timeout)"
        ) from None


def _selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="case modules or directories of them"
    )
    parser.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        help="only cases whose name (or a tag) matches, e.g. -k 'seed003 and not bad'",
    )
    parser.add_argument(
        "--tag", action="append", default=[], help="only cases with this tag (repeatable)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 for --help
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
    try:
        if args.command == "list":
            return list_command(args, sys.stdout)
        if args.command == "sweep":
            return sweep_command(args, sys.stdout, sys.stderr)
        return run_command(args, sys.stdout, sys.stderr)
    except UsageError as exc:
        print(f"gradcheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # while loading or writing; a run itself reports what it has
        print("\ngradcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    outputs = _output_formats(args.output, args.format)  # resolved here, against the user's cwd
    timeout = _timeout_setting(args.timeout)
    _name_crashes()
    # Until the report is out, what anyone prints (case modules, f, threads f started) goes to
    # stderr: stdout carries the report alone.
    with contextlib.redirect_stdout(err):
        with case_prints_to(err):
            _write_unfinished(outputs, args.seed, None)  # a module may end the process too
            loaded = load_or_usage_error(args.paths)
            try:
                chosen = select(loaded.cases, args.keyword, args.tag)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if not chosen and not loaded.errors:
                raise UsageError(_nothing_selected(args, len(loaded.cases)))
            _write_unfinished(outputs, args.seed, row_ids(chosen, args.dtype))
            result = _run_until_interrupted(args, chosen, loaded, timeout, err)
            reports = Reports(result, args, chosen, timeout)
            status = _write_reports(outputs, reports, err)
            stdout_report = reports.stdout(args, err)
        status = _print_report(stdout_report, result, args.github, out, err) or status
    seal_stdout(out)
    if reports.interrupted:
        return EXIT_INTERRUPTED
    return status or result.exit_code


def _name_crashes() -> None:
    """On a segfault in f, print the Python traceback: its frames name the running case."""
    import faulthandler

    if not faulthandler.is_enabled() and sys.__stderr__ is not None:
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no descriptor here
            faulthandler.enable(file=sys.__stderr__)


def _print_report(
    text: str | None, result: RunResult, github: bool, out: TextIO, err: TextIO
) -> int:
    """The report on stdout (with --github, the annotations too); EXIT_USAGE if the step
    summary could not be appended to."""
    status = 0
    if github:
        from gradcheck._report import github as _github

        out.write(_github.guarded_report(text or ""))
        problem = _github.emit(result, out)
        if problem is not None:
            print(f"gradcheck: error: {problem}", file=err)
            status = EXIT_USAGE
    elif text is not None:
        out.write(text)
    out.flush()
    return status


def _write_unfinished(outputs: Sequence[Output], seed: int, planned: Sequence[str] | None) -> None:
    """Before the case modules load, each --output says this run was interrupted; before the
    first case runs, that it has not finished: every row never reported. If a module or f
    ends the process (a segfault, a hard exit from C), that is what stays, not the report of
    an earlier run."""
    if planned is None:
        unfinished = RunResult(seed=seed, rows=(), interrupted=True)
    else:
        unfinished = RunResult(seed=seed, rows=(), unreported=tuple(planned))
    for output in outputs:
        text = render.render_report(unfinished, output.fmt, plots=False)
        with contextlib.suppress(OSError):  # a full disk: the final write will say so
            render.write_atomic(output.target, text)


def _timeout_setting(option: float | None) -> float | None:
    """--timeout, else [tool.gradcheck] timeout; 0 (from either) means none."""
    if option is not None:
        return option or None
    try:
        return configured_timeout()
    except RegistryError as exc:
        raise UsageError(str(exc)) from None


def _run_until_interrupted(
    args: argparse.Namespace,
    chosen: Sequence[AnyCase],
    loaded: Loaded,
    timeout: float | None,
    err: TextIO,
) -> RunResult:
    """The run; on Ctrl-C, the rows of the cases finished so far, marked interrupted."""
    progress = ProgressLine(err, row_count(chosen, args.dtype))
    try:
        return run_cases(
            chosen,
            seed=args.seed,
            dtypes=args.dtype,
            progress=progress,
            started=progress.started,
            load_errors=loaded.errors,
            paths=loaded.paths,
            timeout=timeout,
        )
    except KeyboardInterrupt:
        progress.finish()
        print(f"\ngradcheck: interrupted after {len(progress.rows)} rows", file=err)
        done = {row.id for row in progress.rows}
        return RunResult(
            seed=args.seed,
            rows=(*progress.rows, *(load_error_row(e) for e in loaded.errors)),
            load_errors=loaded.errors,
            paths=loaded.paths,
            interrupted=True,
            unreported=tuple(i for i in row_ids(chosen, args.dtype) if i not in done),
        )
    finally:
        progress.finish()


def _write_reports(outputs: Sequence[Output], reports: Reports, err: TextIO) -> int:
    """Render and write each --output on its own: one that cannot be rendered or written is
    said on stderr, and the others are still written. 0, or EXIT_USAGE if one failed."""
    status = 0
    for output in sorted(outputs, key=lambda o: o.fmt == "html"):  # sweeps last: Ctrl-C there
        try:  # costs no other report
            render.write_atomic(output.target, reports.text(output.fmt))
        except OSError as exc:
            print(f"gradcheck: error: cannot write {output.path}: {exc.strerror or exc}", file=err)
            status = EXIT_USAGE
            continue
        except Exception as exc:  # a renderer's bug must not cost the other reports
            print(f"gradcheck: error: cannot render {output.path}: {_oneline(exc)}", file=err)
            status = EXIT_USAGE
            continue
        print(f"gradcheck: wrote {output.path}", file=err)
    return status


def _oneline(exc: BaseException) -> str:
    return printable(f"{type(exc).__name__}: {exc}")


def seal_stdout(out: TextIO) -> None:
    """Once the report is on the process's stdout, anything printed later (a thread f started,
    C code at exit) goes to stderr, so that stdout stays one valid document."""
    if out is not sys.__stdout__:
        return
    out.flush()
    sys.stdout = sys.stderr
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no descriptors here
        os.dup2(sys.stderr.fileno(), 1)


class Reports:
    """The run's reports by format, each rendered once (an HTML report runs sweeps).

    Ctrl-C while the sweeps run stops them: the page says so, the other reports are written,
    and the command exits 130 (``interrupted``).
    """

    def __init__(
        self,
        result: RunResult,
        args: argparse.Namespace,
        cases: Sequence[AnyCase],
        timeout: float | None,
    ) -> None:
        self.result = result
        self.timestamp = _now() if args.timestamp else None
        self.cases = cases
        self.dtypes = args.dtype
        self.timeout = timeout
        self.rendered: dict[str, str] = {}
        self.interrupted = False

    def stdout(self, args: argparse.Namespace, err: TextIO) -> str | None:
        """The report for stdout: the summary line with -q, else the --format's (text); None
        (said on stderr) when it cannot be rendered."""
        if args.quiet:  # each row not as expected, with its file:line, then the summary
            return "\n".join(_render.quiet_lines(self.result)) + "\n"
        try:
            return self.text(args.format or "text")
        except Exception as exc:
            print(f"gradcheck: error: cannot render the report: {_oneline(exc)}", file=err)
            return None

    def text(self, fmt: str) -> str:
        if fmt not in self.rendered:
            self.rendered[fmt] = self._render(fmt)
        return self.rendered[fmt]

    def _render(self, fmt: str) -> str:
        sweeps = self._sweeps() if fmt == "html" else None  # the page shows each case's sweep
        return render.render_report(self.result, fmt, timestamp=self.timestamp, sweeps=sweeps)

    def _sweeps(self) -> dict[str, Any]:
        """Sweeps of the cases whose rows raised nothing, each under the run's timeout: a case
        that raised, exited or hung is not run again for its plot."""
        from gradcheck._cases import sweep as _sweep

        if self.result.interrupted:
            return {}
        failed = {row.case for row in self.result.rows if row.outcome == "error"}
        sweeps: dict[str, Any] = {}
        for item in self.cases:
            if item.name in failed:
                sweeps[item.name] = "no sweep: the case raised an error in the run"
                continue
            try:
                with deadline(self.timeout):
                    sweeps.update(
                        _sweep.sweep_cases([item], seed=self.result.seed, dtypes=self.dtypes)
                    )
            except KeyboardInterrupt:  # stop sweeping; the page and the other reports go out
                self.interrupted = True
                print("\ngradcheck: sweeps interrupted; writing the reports", file=sys.stderr)
                break
            except BaseException as exc:  # as in the run: the rest is the case's
                sweeps[item.name] = f"no sweep: {type(exc).__name__}: {exc}"
        for item in self.cases:
            sweeps.setdefault(item.name, "no sweep: interrupted (Ctrl-C)")
        return sweeps


def sweep_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``gradcheck sweep CASE``: the sweep as a table on stdout, the plot in a PNG."""
    from gradcheck._cases import sweep as _sweep
    from gradcheck._report import figures as _figures

    loaded = load_or_usage_error(args.paths)
    by_name = {c.name: c for c in loaded.cases}
    if args.case not in by_name:
        near = difflib.get_close_matches(args.case, by_name, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see `gradcheck list`"
        raise UsageError(f"no case named {args.case!r} among {len(by_name)}{hint}")
    if not args.no_plot and not _figures.have_matplotlib():
        raise UsageError(f"the plot needs matplotlib: {_figures.install_hint()}; or pass --no-plot")
    steps = [*_sweep.DEFAULT_STEPS, *args.step] if args.step else None
    try:
        result = _sweep.sweep_case(
            by_name[args.case], seed=args.seed, dtypes=args.dtype, steps=steps
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"{result.name}: relative error against {result.reference}", file=out)
    print(result.table(), "", result.summary(), sep="\n", file=out)
    if not args.no_plot:
        path = args.output or _figures.default_sweep_path(result.name)
        _figures.write_png(path, _figures.sweep_png(result))
        print(f"gradcheck: wrote {path}", file=err)
    return EXIT_OK


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_or_usage_error(paths: Sequence[str]) -> Loaded:
    try:
        check_settings()  # an unknown [tool.gradcheck] key is a usage error, not ignored
        return load(list(paths) or None)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class Output:
    """An --output: as the user wrote it, where it goes (absolute, fixed before any case runs,
    so that an f calling os.chdir cannot move it), and its format."""

    path: str
    target: Path
    fmt: str


def _output_formats(outputs: Sequence[str], fallback: str | None) -> list[Output]:
    """Each --output with its format, checked (format and writability) before anything runs."""
    chosen = []
    for path in outputs:
        problem = output_problem(path)
        if problem is not None:
            raise UsageError(problem)
        try:
            fmt = _formats.format_for_path(path, fallback)
        except ValueError as exc:
            raise UsageError(f"{exc}, or say --format") from None
        chosen.append(Output(path, Path(path).absolute(), fmt))
    return chosen


def _nothing_selected(args: argparse.Namespace, available: int) -> str:
    if not available:
        where = " ".join(args.paths) or "the default paths"
        return f"no cases found in {where}; a case module binds case(...) results at top level"
    asked = []
    if args.keyword:
        asked.append(f"-k {args.keyword!r}")
    if args.tag:
        asked.append("--tag " + " --tag ".join(args.tag))
    return f"no case matches {' and '.join(asked)} among {available}; see `gradcheck list`"


def list_command(args: argparse.Namespace, out: TextIO) -> int:
    from tabulate import tabulate

    loaded = load_or_usage_error(args.paths)
    try:
        chosen = select(loaded.cases, args.keyword, args.tag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    rows = [
        [
            c.name,
            c.kind,
            ", ".join(s.name for s in c.sources),
            ", ".join(c.dtypes),
            c.expect,
            ", ".join(c.tags),
            f"{display_path(c.file)}:{c.line}",
        ]
        for c in chosen
    ]
    headers = ["case", "kind", "sources", "dtypes", "expect", "tags", "defined at"]
    print(tabulate(rows, headers=headers, disable_numparse=True), file=out)
    print(f"\n{len(chosen)} case(s)", file=out)
    for error in loaded.errors:
        print(f"gradcheck: error: {error.path}:{error.line}: {error.error}", file=sys.stderr)
    return EXIT_USAGE if loaded.errors else EXIT_OK


class ProgressLine:
    """A progress line on stderr, once a run has taken longer than a second.

    It names the row being run while it runs (a case that hangs is named), and after each row
    the rows done. On a terminal it rewrites one line, every second; elsewhere (CI logs) it
    prints at most a line a second, and for a row still running after 1, 2, 4, 8... s a line.
    It also keeps the rows done, for a report of an interrupted run. ``clock`` gives the time
    in seconds (``time.monotonic``; a test passes its own).
    """

    def __init__(
        self, stream: TextIO, total: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.total = total
        self.clock = clock
        self.start = clock()
        self.last = 0.0
        self.shown = False
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.rows: list[CaseResult] = []
        self.running: str | None = None
        self.running_since = 0.0
        self.next_note = PROGRESS_AFTER_S
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def started(self, row_id: str) -> None:
        with self.lock:
            self.running = printable(row_id)
            self.running_since = self.clock()
            self.next_note = PROGRESS_AFTER_S
        if self.ticker is None:
            self.ticker = threading.Thread(
                target=self._tick, name="gradcheck-progress", daemon=True
            )
            self.ticker.start()

    def __call__(self, done: int, total: int, row: CaseResult) -> None:
        self.rows.append(row)
        now = self.clock()
        with self.lock:
            self.running = None
            if now - self.start < PROGRESS_AFTER_S or (not self.tty and now - self.last < 1.0):
                return
            self._show(f"{done}/{total} rows, {now - self.start:.0f} s: {printable(row.id)}")

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                if self.running is None:
                    continue
                running_for = self.clock() - self.running_since
                if running_for < self.next_note:
                    continue
                if not self.tty:
                    self.next_note *= 2
                done = len(self.rows)
                self._show(
                    f"{done}/{self.total} rows: running {self.running} ({running_for:.0f} s)"
                )

    def _show(self, text: str) -> None:
        self.last = self.clock()
        text = f"gradcheck: {text}"
        if self.tty:
            self.stream.write("\r" + text[:100].ljust(100))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join()
            self.ticker = None
        with self.lock:
            if self.shown and self.tty:
                self.stream.write("\r" + " " * 100 + "\r")
                self.stream.flush()
                self.shown = False
