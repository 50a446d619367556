"""Surface: where the CLI's output goes: report paths checked before a run, case prints off stdout.

* :func:`output_problem` says, before any case runs, why a report could not be written to a
  path (a directory, a device, a read-only or missing place), so that a bad ``--output`` is a
  usage error at once, not a traceback after the whole run.
* :func:`case_prints_to` sends what the cases print (``print`` in a case module or in f, and
  C code writing to file descriptor 1) to stderr while they load and run: stdout carries the
  report alone, so ``--format json`` on stdout stays JSON.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def output_problem(path: str, option: str = "--output") -> str | None:
    """Why a report cannot be written to ``path`` (one sentence), or None when it can.

    Creates the missing parent directories (the report would create them anyway) and a
    temporary file beside the target, removed at once: the only sure test of writability.
    """
    target = Path(path)
    if target.is_dir():
        return f"{option} {path} is a directory; give a file in it, e.g. {target / 'report.json'}"
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        return f"{option} {path} is not a regular file (a device or a pipe); give a file path"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot write {option} {path}: {reason}; give a path in a writable directory"
    return None


@contextlib.contextmanager
def case_prints_to(stream: TextIO) -> Iterator[None]:
    """Send stdout (Python's and, when it is a real file, descriptor 1) to ``stream``."""
    sys.stdout.flush()
    saved = _redirect_descriptor(stream)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        sys.stdout.flush()
        stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _redirect_descriptor(stream: TextIO) -> int | None:
    """Point descriptor 1 at ``stream``'s; return a copy of the old one (None: left alone)."""
    try:
        if sys.stdout.fileno() != 1:
            return None
        target = stream.fileno()
    except (AttributeError, OSError, ValueError):  # captured streams have no descriptor
        return None
    saved = os.dup(1)
    os.dup2(target, 1)
    return saved
