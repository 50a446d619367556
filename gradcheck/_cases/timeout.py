"""Collect: a deadline around one case's code, so that a hanging f becomes an error row.

:func:`deadline` raises :class:`CaseTimeout` inside the case's code once ``seconds`` have
passed. It is a ``BaseException`` (as ``KeyboardInterrupt`` is), so that an ``except
Exception`` in f lets it through; it is raised again every second until the deadline is left,
in case f swallows it with a bare ``except``.

How the code is interrupted (Linux and macOS):

* **In the main thread** (the CLI, pytest): a ``SIGALRM`` timer (``setitimer``). The handler
  raises between two bytecodes, so a Python loop stops at once; a blocking call that a signal
  interrupts (``time.sleep``, waiting on a lock or a pipe, most C sleeps) returns early and the
  handler raises when it does.
* **In another thread** (``gradcheck.run()`` called from a worker thread): a watchdog thread
  raises in that thread with ``PyThreadState_SetAsyncExc``. It interrupts Python code only:
  a ``time.sleep`` runs to its end first.
* **The limit:** neither interrupts a C call that computes without returning to Python (a
  huge matmul, a C extension's endless loop). The case stops when that call returns; until
  then the CLI's progress line names the running case, and the CI job's own timeout is the
  backstop. Only running each case in a child process would stop those, at the cost of
  pickling every case and result and of forking a process that holds torch's thread pools.

A previous ``SIGALRM`` handler and timer (pytest-timeout's, say) are restored afterwards, the
timer with what was left of it.

**A deadline that has passed is recorded**, so that f cannot hide it by catching
``BaseException``: every later call of the case's functions through the runner raises
:class:`CaseTimeout` before f runs (:func:`raise_if_expired`, outside f's own ``try``), and a
case that ends after its deadline raises it on leaving :func:`deadline`. A case that outlives
its timeout is an error row, whatever f catches.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPEAT_S = 1.0  # raise again this often while the case is still inside the deadline
_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep
_LIBRARIES = tuple(
    str(Path(p).resolve()) + os.sep
    for p in {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")}
    if p
)


class CaseTimeout(BaseException):
    """A case ran past its timeout.

    Fields:
        seconds: the timeout.
        where: ``file:line in function`` of the user's code that was running ('' if unknown).
    """

    def __init__(self, seconds: float, where: str = "") -> None:
        at = f", at {where}" if where else ""
        super().__init__(f"ran past the {seconds:g} s timeout{at}")
        self.seconds = seconds
        self.where = where


def check_timeout(value: Any, origin: str) -> float | None:
    """A timeout in seconds (None or 0: none); ValueError naming ``origin`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(
            f"{origin}: timeout {value!r} is not a number of seconds; give a positive number "
            "(0 for none)"
        )
    return float(value) or None


def where(frame: FrameType | None) -> str:
    """The innermost frame of the user's code: not gradcheck's, not a library's (else any)."""
    fallback = ""
    while frame is not None:
        filename = frame.f_code.co_filename
        resolved = filename if filename.startswith("<") else str(Path(filename).resolve())
        text = f"{_display(filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
        if not resolved.startswith(_PACKAGE):
            if not resolved.startswith(_LIBRARIES) and not filename.startswith("<"):
                return text
            fallback = fallback or text  # a library's, or generated code's ('<string>')
        frame = frame.f_back
    return fallback


def _display(filename: str) -> str:
    try:
        return Path(filename).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return filename


@dataclass
class _Deadline:
    """A running case's deadline: when it ends, and where the case's code was then."""

    end: float
    seconds: float
    where: str = ""


class _Current(threading.local):
    deadline: _Deadline | None = None


_current = _Current()  # the deadline of the case running in each thread


def raise_if_expired() -> None:
    """Raise :class:`CaseTimeout` when this thread's case is past its deadline (else nothing)."""
    now = _current.deadline
    if now is not None and time.monotonic() >= now.end:
        raise CaseTimeout(now.seconds, now.where)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the code run inside once ``seconds`` have passed; and on
    leaving, if they have passed, whatever the code inside caught."""
    if not seconds:
        yield
        return
    saved = _current.deadline
    state = _current.deadline = _Deadline(time.monotonic() + seconds, seconds)
    try:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            with _alarm(state):
                yield
        else:
            with _watchdog(state):
                yield
        raise_if_expired()
    finally:
        _current.deadline = saved


@contextmanager
def _alarm(state: _Deadline) -> Iterator[None]:
    seconds = state.seconds
    armed = True

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if armed:  # a late signal, after the case finished, is ignored
            state.where = state.where or where(frame)
            raise CaseTimeout(seconds, where(frame))

    previous = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_S)
    start = time.monotonic()
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if old_delay > 0:  # someone else's timer: give it back what is left of it
            left = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def _bound_timeout(seconds: float, at: str) -> type[CaseTimeout]:
    """A CaseTimeout class that needs no arguments (an asynchronous exception gets none)."""

    class Timeout(CaseTimeout):
        def __init__(self) -> None:
            super().__init__(seconds, at)

    Timeout.__name__ = Timeout.__qualname__ = CaseTimeout.__name__
    return Timeout


@contextmanager
def _watchdog(state: _Deadline) -> Iterator[None]:
    seconds = state.seconds
    target = threading.get_ident()
    done = threading.Event()
    set_async = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)

    def watch() -> None:
        if set_async is None or done.wait(seconds):
            return  # not CPython (no timeout), or the case finished in time
        while not done.is_set():
            at = where(sys._current_frames().get(target))
            state.where = state.where or at
            raised = _bound_timeout(seconds, at)
            set_async(ctypes.c_ulong(target), ctypes.py_object(raised))
            done.wait(REPEAT_S)

    thread = threading.Thread(target=watch, name="gradcheck-timeout", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if set_async is not None:  # clear an exception set but not yet raised
            set_async(ctypes.c_ulong(target), None)
