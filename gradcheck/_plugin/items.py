"""Surface: registered cases as pytest items, and the tolerance report (``pytest --gradcheck``).

Imported only when a session runs with ``--gradcheck`` (or ``--gradcheck-report``); the plugin
module registers :class:`CasePlugin`, whose hooks do the work:

* **Collect.** A ``.py`` file under a case path (the paths given to pytest, else
  ``[tool.gradcheck] paths``, default ``cases/``) is a case module unless pytest collects it as
  tests (``python_files``, ``conftest.py``) or the registry skips it (a ``_`` or ``.`` name).
  It is loaded with the registry's :func:`~gradcheck._cases.registry.load`; each case becomes one
  :class:`CaseItem` per source x dtype, with the id ``name[source-dtype]``, in definition order.
  A module that fails to import becomes one failing item (``<import>``), so the other cases
  still run; two cases with one name are a collection error naming both definitions.
* **Run.** An item asks the runner for its row (the runner's rows for one case and dtype are
  made together and cached, so sources alike share the work, as in ``gradcheck run``), under
  ``[tool.gradcheck] timeout`` (the runner's deadline, here per case and dtype). Passed:
  the item passes. A known-bad case failing as declared: xfail. Otherwise the item fails and
  pytest shows the renderer's detail lines (the worst elements), not a traceback.
* **Report.** Each row travels back on its test report (so pytest-xdist carries it from the
  workers); at the end the controller sorts the rows as ``gradcheck run`` does and writes
  ``--gradcheck-report`` with the renderers of ``gradcheck._report.text`` (any format of
  ``gradcheck._report.formats``; HTML without step-size sweeps): the same bytes with or without
  ``-n``. The terminal summary prints the renderer's summary line (the table with -v).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import io
import os
import pickle
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from gradcheck._cases.case import AnyCase, Source
from gradcheck._cases.registry import (
    DuplicateCaseError,
    LoadError,
    RegistryError,
    configured_timeout,
    default_paths,
    load,
    unique_sorted,
)
from gradcheck._cases.runner import CaseResult, RunResult, load_error_row, run_cases
from gradcheck._report import formats as _formats
from gradcheck._report import render
from gradcheck._report import text as _render
from gradcheck._report.output import output_problem

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from gradcheck._plugin.settings import Settings

LOAD_ERROR_ITEM = "<import>"
REPORT = "--gradcheck-report"


@dataclass(frozen=True)
class Record:
    """One report row with where it sorts: ``gradcheck run`` orders rows by case name, then
    source and dtype as declared, then the modules that failed to import."""

    key: tuple[Any, ...]
    row: CaseResult
    load_error: LoadError | None = None


class CasePlugin:
    """The hooks of ``pytest --gradcheck``; one instance per session (and per xdist worker)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.roots = case_roots(config)
        self.defined: dict[str, AnyCase] = {}  # every case collected so far, by name
        self.cache: dict[tuple[str, str], dict[str, CaseResult]] = {}
        self.records: dict[str, Record] = {}
        self.expected: dict[str, str] = {}  # node id -> row id of every row item to run
        self.worker = hasattr(config, "workerinput")
        try:  # seconds per case and dtype, as `gradcheck run` bounds a case; None: none
            self.timeout = configured_timeout(config.rootpath)
        except RegistryError as error:
            raise pytest.UsageError(str(error)) from None
        report = settings.report
        problem = None if report is None or self.worker else output_problem(str(report), REPORT)
        if problem is not None:  # before any case runs, as the CLI checks --output
            raise pytest.UsageError(problem)

    # -- collect ------------------------------------------------------------------------------

    def is_case_file(self, path: Path) -> bool:
        if path.suffix != ".py" or path.name == "conftest.py":
            return False
        if _matches_python_files(path, self.config):
            return False
        resolved = path.resolve()
        for root in self.roots:
            if resolved == root:
                return True
            if resolved.is_relative_to(root):
                parts = resolved.relative_to(root).parts
                return not any(p.startswith(("_", ".")) for p in parts)
        return False

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> CaseModule | None:
        # A file given on the command line goes through pytest_pycollect_makemodule instead.
        if parent.session.isinitpath(file_path) or not self.is_case_file(file_path):
            return None
        return CaseModule.from_parent(parent, path=file_path, plugin=self)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makemodule(
        self, module_path: Path, parent: pytest.Collector
    ) -> CaseModule | None:
        if not self.is_case_file(module_path):
            return None
        return CaseModule.from_parent(parent, path=module_path, plugin=self)

    def claim(self, cases: Sequence[AnyCase]) -> None:
        """Remember these cases' names; a name already taken by another case is an error."""
        for item in cases:
            seen = self.defined.setdefault(item.name, item)
            if seen is not item:
                unique_sorted([seen, item])  # raises DuplicateCaseError naming both

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            if isinstance(item, _RowItem):
                self.expected[item.nodeid] = _row_id(item.nodeid)
        self.write_unfinished()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        """pytest-xdist's controller collects nothing itself: the rows are the workers'."""
        first = not self.expected
        for nodeid in ids:
            path = nodeid.split("::")[0]
            if "::" in nodeid and self.is_case_file(self.config.rootpath / path):
                self.expected.setdefault(nodeid, _row_id(nodeid))
        if first:
            self.write_unfinished()

    def write_unfinished(self) -> None:
        """Before the first case runs, the report says the session has not finished, every row
        never reported: if f ends the process, that stays, not an earlier session's report."""
        if self.settings.report is None or self.worker:
            return
        unfinished = RunResult(
            seed=self.settings.seed, rows=(), unreported=tuple(self.expected.values())
        )
        path = self.settings.report
        text = render.render_report(unfinished, _formats.format_for_path(path), plots=False)
        with contextlib.suppress(OSError):  # a full disk: the final write will say so
            render.write_atomic(path, text)

    # -- run ----------------------------------------------------------------------------------

    def row_for(self, case: AnyCase, source: Source, dtype: str) -> CaseResult:
        """The runner's row for one source and dtype of a case."""
        key = (case.name, dtype)
        if key not in self.cache:
            result = run_cases(
                [case], seed=self.settings.seed, dtypes=[dtype], timeout=self.timeout
            )
            self.cache[key] = {row.source: row for row in result.rows}
        return self.cache[key].pop(source.name)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        record = getattr(item, "record", None)
        if call.when == "call" and isinstance(record, Record):
            if hasattr(self.config, "workerinput"):  # an xdist worker: the row travels as text
                report.gradcheck_record = encode(record)  # type: ignore[attr-defined]
            else:  # one process: keep it as it is (pickling 2000 rows costs half a second)
                self.records[report.nodeid] = record
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        encoded = getattr(report, "gradcheck_record", None)
        if isinstance(encoded, str):
            self.records[report.nodeid] = decode(encoded)

    # -- report -------------------------------------------------------------------------------

    def run_result(self, interrupted: bool = False) -> RunResult:
        """The rows this session ran, as one RunResult in ``gradcheck run`` order; the rows
        collected that never reported (a crashed worker, an interrupt, ``-x``) named."""
        records = sorted(self.records.values(), key=lambda r: r.key)
        return RunResult(
            seed=self.settings.seed,
            rows=tuple(r.row for r in records),
            load_errors=tuple(r.load_error for r in records if r.load_error is not None),
            paths=tuple(str(root) for root in self.roots),
            interrupted=interrupted,
            unreported=tuple(
                row_id for nodeid, row_id in self.expected.items() if nodeid not in self.records
            ),
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records and not self.expected:
            return
        result = self.run_result(self.interrupted)
        terminalreporter.section("gradcheck")
        verbose = self.config.get_verbosity() > 0
        lines = _render.text_lines(result) if verbose else [_render.summary_line(result)]
        for line in lines:
            terminalreporter.write_line(line)
        if self.settings.report is not None:
            terminalreporter.write_line(f"gradcheck: report written to {self.settings.report}")

    interrupted = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if self.settings.report is None or self.worker:
            return  # an xdist worker: the controller writes the report
        path = self.settings.report
        # No step-size sweeps in an HTML report here: under xdist the controller holds rows,
        # not cases, and the file must be the same with -n as without.
        result = self.run_result(self.interrupted)
        text = render.render_report(result, _formats.format_for_path(path))
        render.write_atomic(path, text)


class CaseModule(pytest.File):
    """A case module: loaded by the registry, one item per case x source x dtype."""

    def __init__(self, *, plugin: CasePlugin, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self) -> Iterator[pytest.Item]:
        loaded = load([str(self.path)])
        for error in loaded.errors:
            yield LoadErrorItem.from_parent(self, name=LOAD_ERROR_ITEM, error=error)
        cases = sorted(loaded.cases, key=lambda c: c.line)
        self.plugin.claim(cases)
        for case in cases:
            for position, source in enumerate(case.sources):
                for dtype in case.dtypes:
                    yield CaseItem.from_parent(
                        self,
                        plugin=self.plugin,
                        name=f"{case.name}[{source.name}-{dtype}]",
                        case=case,
                        source=source,
                        key=(0, case.name, position, case.dtypes.index(dtype)),
                        dtype=dtype,
                    )

    def repr_failure(  # type: ignore[override]  # pytest's Collector narrows it alike
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, (DuplicateCaseError, RegistryError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class NotAsExpected(Exception):
    """A row that is not as its case declares; pytest shows its detail lines."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class _RowItem(pytest.Item):
    """An item that makes one report row; a row not as expected shows its detail lines."""

    record: Record | None = None

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, NotAsExpected):
            return str(excinfo.value)
        if isinstance(excinfo.value, pytest.xfail.Exception):
            # pytest formats a traceback for an xfail it never shows: about 0.2 s an item
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


class CaseItem(_RowItem):
    """One case x source x dtype; fails with the worst-element table of its row."""

    def __init__(
        self,
        *,
        plugin: CasePlugin,
        case: AnyCase,
        source: Source,
        dtype: str,
        key: tuple[Any, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin
        self.case = case
        self.source = source
        self.dtype = dtype
        self.key = key
        self.extra_keyword_matches.update(case.tags)  # -k matches tags, as gradcheck run -k

    def runtest(self) -> None:
        row = self.plugin.row_for(self.case, self.source, self.dtype)
        self.record = Record(key=self.key, row=row)
        if row.outcome == "passed":
            return
        if row.outcome == "xfailed":
            pytest.xfail(f"{_render.verdict_label(row)}: a known-bad case, as declared")
        lines = _render.detail_lines(row)
        if row.outcome == "error" and row.traceback:
            lines += ["", *user_traceback(row.traceback)]
        raise NotAsExpected(lines)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, max(self.case.line - 1, 0), f"gradcheck case {self.name}"


class LoadErrorItem(_RowItem):
    """A case module that failed to import: one failing item; the other modules still run."""

    def __init__(self, *, error: LoadError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        row = load_error_row(self.error)
        self.record = Record(key=(1, row.file), row=row, load_error=self.error)
        lines = _render.detail_lines(row)
        raise NotAsExpected([*lines, "", *user_traceback(self.error.traceback)])

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, max(self.error.line - 1, 0), "gradcheck case module import"


def _row_id(nodeid: str) -> str:
    """A row's id from its item's node id: ``name[source-dtype]``; a module's path for the
    item of a module that failed to import."""
    path, _, name = nodeid.partition("::")
    return path if name == LOAD_ERROR_ITEM or not name else name


_FRAME = re.compile(r'^  File "(?P<path>.+)", line \d+, in ')
_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


def user_traceback(text: str) -> list[str]:
    """A formatted traceback without gradcheck's own frames (nor the import machinery's): the
    user's code raised, and that is where to look. Kept whole when no frame is the user's."""
    kept: list[str] = []
    skipping = False
    for line in text.rstrip().splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            path = frame["path"]
            skipping = path.startswith("<frozen ") or str(Path(path).resolve()).startswith(_PACKAGE)
        elif not line.startswith("    "):  # "Traceback ...", the exception, a chain's link
            skipping = False
        if not skipping:
            kept.append(line)
    has_user_frames = any(_FRAME.match(line) for line in kept)
    return kept if has_user_frames else text.rstrip().splitlines()


# -- where the cases are ----------------------------------------------------------------------


def case_roots(config: pytest.Config) -> list[Path]:
    """The case paths: those given to pytest, else ``[tool.gradcheck] paths``.

    With no paths given, the configured ones are added to what pytest collects, beside
    ``testpaths``. A configured path that does not exist is a usage error.
    """
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return [Path(arg.split("::")[0]).resolve() for arg in config.args]
    try:
        roots = [Path(p).resolve() for p in default_paths(config.rootpath)]
    except RegistryError as error:
        raise pytest.UsageError(str(error)) from None
    for root in roots:
        if not root.exists():
            raise pytest.UsageError(
                f"gradcheck: the case path {root} does not exist; create it, set "
                "[tool.gradcheck] paths in pyproject.toml, or give case paths: "
                "pytest --gradcheck PATH..."
            )
    walked = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    extra = [r for r in roots if not any(r == w or r.is_relative_to(w) for w in walked)]
    config.args = [*config.args, *(str(r) for r in extra)]
    return roots


def _matches_python_files(path: Path, config: pytest.Config) -> bool:
    """Whether pytest collects this file as tests (a ``python_files`` pattern matches it)."""
    for pattern in config.getini("python_files"):
        target = path.as_posix() if "/" in pattern else path.name
        if fnmatch.fnmatch(target, pattern if "/" not in pattern else f"*{pattern}"):
            return True
    return False


# -- rows across processes --------------------------------------------------------------------


def _mappingproxy(mapping: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(mapping)


class _Pickler(pickle.Pickler):
    """Descent results hold read-only mappings, which pickle cannot store by itself."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MappingProxyType):
            return _mappingproxy, (dict(obj),)
        return NotImplemented


def encode(record: Record) -> str:
    """A record as text, for a test report (pytest-xdist sends reports to the controller)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(record)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(text: str) -> Record:
    record = pickle.loads(base64.b64decode(text))
    assert isinstance(record, Record)
    return record
