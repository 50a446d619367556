"""Surface: GitHub Actions output for ``gradcheck run --github``: annotations and a step summary.

Every row that is not as expected becomes an ``error`` workflow command on stdout, which GitHub
shows on the pull request's diff at the line that defines the case::

    ::error file=cases/ops.py,line=12,title=gradcheck FAIL: my_op[autograd-float32]::<details>

The details are the renderer's detail lines (the worst elements), so the annotation says what
the text report says. When ``$GITHUB_STEP_SUMMARY`` names a file, the Markdown report is
appended to it and shows on the run's summary page.

Escaping follows GitHub's toolkit (``@actions/core``, ``command.ts``): in the message ``%``,
CR and LF become ``%25``, ``%0D``, ``%0A``; in a property (file, title) ``:`` and ``,`` become
``%3A`` and ``%2C`` as well. Paths are made relative to ``$GITHUB_WORKSPACE`` (else the working
directory), as GitHub matches annotations to files of the repository.

The report printed before the annotations holds user text (names, exception messages), and the
runner takes any line that starts with ``::`` (after leading whitespace) as a command. So
:func:`guarded_report` encloses it in ``::stop-commands::TOKEN`` ... ``::TOKEN::`` with a
random token (GitHub's own way to print untrusted text), and encodes the ``::`` of any line
that would start one as ``%3A%3A`` besides, should the enclosing be lost (a log viewer, a
runner that ignores it).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from gradcheck._cases.runner import CaseResult, RunResult
from gradcheck._report import render
from gradcheck._report import text as _render
from gradcheck._report.escape import no_surrogates, printable


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


_COMMAND_START = re.compile(r"^([^\S\n]*)::", re.MULTILINE)


def neutralize(text: str) -> str:
    """``text`` with no line that a runner would read as a workflow command."""
    return _COMMAND_START.sub(r"\1%3A%3A", text.replace("\r", "%0D"))


def guarded_report(text: str, token: str | None = None) -> str:
    """A report to print under ``--github``: no line of it is a workflow command."""
    token = token or secrets.token_hex(16)
    body = neutralize(text)
    if not body.endswith("\n"):
        body += "\n"
    return f"::stop-commands::{token}\n{body}::{token}::\n"


def repository_path(path: str, workspace: str | None) -> str:
    """``path`` relative to the workspace (else the working directory) when it lies inside."""
    base = Path(workspace or os.getcwd()).resolve()
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except ValueError:
        return path  # outside the repository: GitHub shows it without a file link


def annotation(row: CaseResult, workspace: str | None = None) -> str:
    """The ``::error`` workflow command for one row that is not as expected."""
    title = f"gradcheck {_render.verdict_label(row)}: {printable(row.id)}"
    properties = [f"title={escape_property(title)}"]
    if row.file and not row.file.startswith("<"):
        file = no_surrogates(repository_path(row.file, workspace))
        properties = [f"file={escape_property(file)}", f"line={max(row.line, 1)}", *properties]
    message = "\n".join(_render.detail_lines(row))
    return f"::error {','.join(properties)}::{escape_data(message)}"


def annotation_lines(result: RunResult, workspace: str | None = None) -> list[str]:
    """One annotation per row not as expected (failures, unexpected passes, errors)."""
    return [annotation(row, workspace) for row in result.rows if not row.ok]


def emit(result: RunResult, out: TextIO, environ: Mapping[str, str] | None = None) -> str | None:
    """Print the annotations on ``out``; append the Markdown report to the step summary.

    Returns why the step summary could not be appended to (one sentence), else None: an
    unusable ``$GITHUB_STEP_SUMMARY`` costs nothing else.
    """
    env = os.environ if environ is None else environ
    for line in annotation_lines(result, env.get("GITHUB_WORKSPACE")):
        print(line, file=out)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return None
    text = render.render_report(result, "markdown") + "\n"
    try:  # GitHub gives each step its own file to append to; one write keeps it whole.
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        return f"cannot append to $GITHUB_STEP_SUMMARY ({summary}): {exc.strerror or exc}"
    return None
