"""A minimal counting wrapper for the evaluator tests (tests/test_batch*.py): it has the shape
of ``gradcheck._numerics.evaluate.Counted``, so those tests call ``make_evaluator`` without the
engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Counted:
    def __init__(self, f: Callable[..., Any]) -> None:
        self.f, self.calls = f, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.f(*args)

    def add(self, count: int) -> None:
        self.calls += count
