"""Render: the one dispatch from a report format to its renderer, and the atomic write.

The CLI and the pytest plugin both call :func:`render_report`; the formats are those of
``gradcheck._report.formats``. Renderers are pure functions of a finished
:class:`~gradcheck._cases.runner.RunResult`: numerics that a page shows (the HTML report's
step-size sweeps) are computed by the caller and handed in.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gradcheck._cases.runner import RunResult
from gradcheck._report import text

RENDERERS: dict[str, Callable[[RunResult], str]] = {
    "text": text.render_text,
    "markdown": text.render_markdown,
    "json": text.render_json,
    "junit": text.render_junit,
}


def render_report(
    result: RunResult,
    fmt: str,
    *,
    timestamp: str | None = None,
    sweeps: Mapping[str, Any] | None = None,
    plots: bool | None = None,
) -> str:
    """The report in ``fmt``: one of ``gradcheck._report.formats.FORMATS``. JSON may carry a
    timestamp; HTML shows the step-size ``sweeps`` (case name -> Sweep, or a sentence saying why
    there is none) that the caller computed, and its pictures unless ``plots`` is False."""
    if fmt == "json":
        return text.render_json(result, timestamp=timestamp)
    if fmt == "html":
        from gradcheck._report import html

        return html.render_html(result, sweeps=dict(sweeps or {}), plots=plots)
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        known = sorted([*RENDERERS, "html"])
        raise ValueError(f"unknown format {fmt!r}; use one of {known}") from None
    return renderer(result)


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); a report keeps the target's mode, else 0644.
        os.chmod(temporary, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
