"""Differentiate (support): f at many perturbed points, batched where a rule says it pays.

A numerical gradient needs f at thousands of points that differ from x in one element (the full
check) or along one direction (a screen probe). Two ways to get those values:

* ``'batched'``: stack the perturbed copies of one input along a new leading axis, each of the
  input's own shape (a row of an 8x8 input is 8x8, never flattened: f computes what the caller
  wrote), and call f once per chunk, through ``torch.func.vmap(f)`` (tried automatically for
  torch inputs) or a batched form the caller declares (``batch=fb``: ``fb(*xs)`` takes every
  input with a leading batch axis of the same length B and returns B values; for a non-scalar
  f, B outputs). A chunk holds as many rows as fit in ``memory_budget`` bytes of perturbed
  input (4 MiB by default: large enough to amortise the call, small enough for the
  intermediates to stay in cache). Every row counts as one evaluation of f.
* ``'loop'``: one call of f per point. The only work besides calling f is writing one element
  through a NumPy view of the private working copy and reading the float back.

``'auto'`` batches input k through vmap when every input is a torch tensor, the largest has at
least ``AUTO_BATCH_MIN_ELEMENTS`` elements (below that a loop is as fast and keeps f's Python
side effects one per point) and a chunk of input k holds at least ``MIN_CHUNK_ROWS`` rows; the
other inputs loop. Two trial rows per batched input come first: vmap must run and agree with f
at x. When vmap refuses f (``.item()``, data-dependent control flow, in-place writes to
captured state), disagrees, or fails on a later chunk, the loop runs and the reason (with the
exception's type and first line) is kept. An exception in the trial is vmap's only if f runs
plainly at x: the trial then calls f once more, and an error there is f's own and propagates.
A declared form that disagrees with f, or raises, is an error, not a fallback: it would be the
caller's bug.

**The rule, not a race.** A batched row is a copy of the whole input, where the loop writes one
element in place; vmap's gain is one Python call and one dispatch per op for many rows. So a
chunk that holds few rows (a large input) has little to amortise and a cache-sized copy per
row, and the loop wins. The rule looks only at the inputs' sizes and dtypes, the budget and
the trial, never at a clock: the same seed gives the same path, the same numbers and the same
report whatever the machine's load (timing the two paths against each other, as this module
once did, made verdicts change between runs). Measured with ``benchmarks/bench_batch_rule.py``
(the MLP loss of ``bench_speed.py``, float64, one thread, loop time over vmap time per point,
interleaved, median of 5-7 rounds, two or three runs on a loaded 2-core machine; above 1 vmap
is faster), with the rows the 4 MiB budget gives::

    n        946    9730   14706   19900    29646     99235
    rows     554      53      35      26       17         5
    ratio   6-10   1.8-3.0   1.6     1.1   0.9-1.2   0.75-0.85

vmap wins clearly from about 32 rows up and breaks even near 20 (17 rows: 0.9x to 1.2x from one
run to the next); at n ~ 1e5 (5 rows) the loop is faster. ``MIN_CHUNK_ROWS = 32``: float64
inputs of up to 16384 elements batch under the default budget. Between that and the break-even
size the loop costs up to about 20% more than vmap would; past it, it costs less.

NumPy inputs never import torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from gradcheck._numerics import arrays as _arrays

DEFAULT_MEMORY_BUDGET = 4 * 2**20
AUTO_BATCH_MIN_ELEMENTS = 32
# 'auto' batches an input through vmap only when a chunk of the memory budget holds at least
# this many of its rows: vmap wins clearly from ~32 rows (1.6x at 35, 1.8-3x at 53), breaks even
# near 20 (0.9-1.2x at 17) and loses at 5 (0.75-0.85x, n ~ 1e5). The module docstring has the
# table and the command (benchmarks/bench_batch_rule.py).
MIN_CHUNK_ROWS = 32
# How far a batched f may drift from f at x before we call it a different function: a reduction
# in another order moves the last bits, a wrong batched form moves the leading ones.
TRIAL_RTOL = 1e-6

BatchOption = Literal["auto", "loop"] | Callable[..., Any]


class Counted(Protocol):
    """The engine's counting wrapper: ``f`` is the wrapped function, ``calls`` the count,
    ``add(n)`` credits n evaluations (and the wrapper's parents)."""

    f: Callable[..., Any]
    calls: int

    def __call__(self, *args: Any) -> Any: ...

    def add(self, count: int) -> None: ...


def _unwrap(f: Callable[..., Any]) -> tuple[list[Counted], Callable[..., Any]]:
    """The chain of counting wrappers around f, and the function inside them all."""
    chain: list[Counted] = []
    inner: Any = f
    while hasattr(inner, "add") and hasattr(inner, "f"):
        chain.append(inner)
        inner = inner.f
    return chain, inner


def _credit(f: Callable[..., Any], count: int) -> None:
    """Count ``count`` evaluations on every wrapper a batched call bypassed."""
    for wrapper in _unwrap(f)[0]:
        wrapper.add(count)


# A batched call: (input position k, rows of input k stacked on axis 0) -> one float per row.
RowsCall = Callable[[int, Any], np.ndarray]


def flat_view(buffer: Any) -> Any:
    """A writable flat view of a working copy, NumPy where possible (element writes are cheap)."""
    if _arrays.is_torch(buffer):
        flat = buffer.view(-1)
        if flat.device.type == "cpu" and _arrays.dtype_name(buffer) != "bfloat16":
            return flat.numpy()
        return flat
    return buffer.reshape(-1)


class Evaluator:
    """Evaluates a counted scalar f at perturbations of the working copies ``buffers``.

    Attributes:
        path: 'separable' (``gradcheck._numerics.separable``: the full-check stencil of an
        elementwise
            input in one pass per column), 'batched' or 'loop'.
        reason: one sentence on why that path.
    """

    def __init__(
        self,
        f: Callable[..., Any],  # usually Counted: batched calls credit its counting wrappers
        buffers: list[Any],
        path: str,
        reason: str,
        rows_call: RowsCall | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        falls_back: bool = False,
        batched_inputs: frozenset[int] | None = None,
    ) -> None:
        self.f = f
        self.buffers = buffers
        self._path, self._reason = path, reason  # the batched or looped path, whatever else
        self._rows_call = rows_call
        # The inputs the rule batches (all of them for a declared form).
        every = frozenset(range(len(buffers)))
        self._batched_inputs = frozenset() if rows_call is None else (batched_inputs or every)
        self.memory_budget = memory_budget
        self.falls_back = falls_back  # vmap: a failing chunk hands over to the loop
        self.elementwise: Any = (
            None  # a gradcheck._numerics.separable.ElementwisePath, see make_evaluator
        )
        self.elementwise_only = False  # losing that path raises ElementwiseLost, no fallback
        self._dropped = ""  # why the elementwise path stopped, for the inputs it no longer takes

    def batches(self, k: int) -> bool:
        """Whether points of input k are evaluated in batched chunks."""
        return self._rows_call is not None and k in self._batched_inputs

    @property
    def path(self) -> str:
        return "separable" if self._elementwise_inputs() else self._path

    @property
    def reason(self) -> str:
        taken = sorted(self._elementwise_inputs())
        if not taken:
            return f"{self._dropped}; {self._reason}" if self._dropped else self._reason
        inputs = ", ".join(str(k) for k in taken)
        lead = f"f is elementwise in input {inputs}, then summed: every element moved at once"
        if len(taken) == len(self.buffers):
            return lead
        others = f"{self._dropped}; {self._reason}" if self._dropped else self._reason
        return f"{lead}; other inputs: {others}"

    def _elementwise_inputs(self) -> frozenset[int]:
        return self.elementwise.structure.inputs if self.elementwise is not None else frozenset()

    def _separable_elements(
        self, k: int, base: np.ndarray, elements: np.ndarray, points: np.ndarray
    ) -> np.ndarray | None:
        """The elementwise path's values, or None (and that path dropped for input k) when the
        structure did not hold or f failed off the trace."""
        try:
            values: np.ndarray = self.elementwise.at_some(k, base, elements, points)
            return values
        except Exception as exc:
            self._dropped = f"the elementwise structure did not hold: {_first_line(exc)}"
            if self.elementwise_only:
                raise ElementwiseLost(self._dropped) from exc
            self.elementwise.drop(k, self._dropped)
            return None

    def at_elements(self, k: int, base: np.ndarray, points: np.ndarray) -> np.ndarray:
        """f with element i of input k set to ``points[i, j]``; one value per point.

        Batched chunks where the rule batches input k (:func:`make_evaluator`), else the loop.
        A chunk that vmap cannot evaluate (a batching rule that breaks only for larger
        batches) hands the rest to the loop.
        """
        if k in self._elementwise_inputs():
            values = self._separable_elements(k, base, np.arange(points.shape[0]), points)
            if values is not None:
                return values
        m, c = points.shape
        out = np.empty((m, c))
        start = 0
        if self.batches(k):
            per_chunk = max(1, self._rows_per_chunk(k) // c)
            try:
                while start < m and self.batches(k):
                    start = self._batched_elements(k, points, out, start, start + per_chunk)
            except _VmapFailed as failure:
                self._give_up(f"vmap(f) failed on a chunk: {failure}")
        if start < m:
            out[start:] = loop_elements(self.f, self.buffers, k, base, points, start, m)
        return out

    def at_some(
        self,
        k: int,
        base: np.ndarray,
        elements: np.ndarray,
        points: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """f with flat element ``elements[r]`` of input k set to ``points[r, j]``, for a few
        elements (the ladders of the kink analysis); NaN where ``valid[r, j]`` is False, which
        is never evaluated. The elementwise path takes every column in one pass; otherwise
        batched chunks, or the loop in row order (element by element, as a caller would).
        """
        points = np.asarray(points, dtype=np.float64)
        mask = np.ones(points.shape, dtype=bool) if valid is None else np.asarray(valid, bool)
        out = np.full(points.shape, np.nan)
        if not mask.any():
            return out
        if k in self._elementwise_inputs():
            at_x = np.where(mask, points, base[elements][:, None])  # unasked points: at x
            values = self._separable_elements(k, base, elements, at_x)
            if values is not None:
                return np.where(mask, values, np.nan)
        rows, cols = np.nonzero(mask)
        chosen, wanted = elements[rows], points[rows, cols]
        found = np.empty(rows.size)
        start = 0
        if self.batches(k):
            per_chunk = self._rows_per_chunk(k)
            try:
                while start < rows.size and self.batches(k):
                    stop = min(rows.size, start + per_chunk)
                    found[start:stop] = self._at_points(k, chosen[start:stop], wanted[start:stop])
                    start = stop
            except _VmapFailed as failure:
                self._give_up(f"vmap(f) failed on a chunk: {failure}")
        if start < rows.size:
            found[start:] = loop_at(
                self.f, self.buffers, k, base, chosen[start:], wanted[start:, None]
            )[:, 0]
        out[rows, cols] = found
        return out

    def _give_up(self, reason: str) -> None:
        self._rows_call, self._batched_inputs = None, frozenset()
        self._path, self._reason = "loop", reason

    def _batched_elements(
        self, k: int, points: np.ndarray, out: np.ndarray, start: int, stop: int
    ) -> int:
        """Fill ``out[start:stop]`` with one batched call; returns the new start."""
        c = points.shape[1]
        stop = min(points.shape[0], stop)
        elements = np.repeat(np.arange(start, stop), c)
        values = self._at_points(k, elements, points[start:stop].reshape(-1))
        out[start:stop] = values.reshape(stop - start, c)
        return stop

    def _at_points(self, k: int, elements: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One batched call: row r is input k, of its own shape, with flat element
        ``elements[r]`` at ``values[r]``."""
        return self._call(k, _rows_with_elements(self.buffers[k], elements, values))

    def at_rows(self, k: int, rows: np.ndarray) -> np.ndarray:
        """f with input k replaced by each row of ``rows`` (float64 values already rounded to the
        evaluation dtype, one flat input per row, reshaped to the input's shape); one value per
        row. The working copy is restored even when f raises."""
        out = np.empty(rows.shape[0])
        start, step = 0, self._rows_per_chunk(k)
        try:
            while start < rows.shape[0] and self.batches(k):
                chunk = _like_buffer(self.buffers[k], rows[start : start + step])
                out[start : start + step] = self._call(k, chunk)
                start += step
        except _VmapFailed as failure:
            self._give_up(f"vmap(f) failed on a chunk: {failure}")
        if start < rows.shape[0]:
            out[start:] = self._loop_rows(k, rows[start:])
        return out

    def _loop_rows(self, k: int, rows: np.ndarray) -> np.ndarray:
        flat = flat_view(self.buffers[k])
        base = np.array(flat.tolist() if _arrays.is_torch(flat) else flat, dtype=np.float64)
        out = np.empty(rows.shape[0])
        try:
            for r in range(rows.shape[0]):
                _write_all(flat, rows[r])
                out[r] = finite_or_nan(self.f(*self.buffers))
        finally:
            _write_all(flat, base)
        return out

    def at_joint_rows(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """f with every input k replaced by row r of ``rows[k]`` at once, for each r (one call
        a point: a joint probe has four); the working copies are restored even when f
        raises."""
        flats = [flat_view(b) for b in self.buffers]
        bases = [
            np.array(flat.tolist() if _arrays.is_torch(flat) else flat, dtype=np.float64)
            for flat in flats
        ]
        out = np.empty(rows[0].shape[0])
        try:
            for r in range(out.size):
                for flat, moved in zip(flats, rows, strict=True):
                    _write_all(flat, moved[r])
                out[r] = finite_or_nan(self.f(*self.buffers))
        finally:
            for flat, base in zip(flats, bases, strict=True):
                _write_all(flat, base)
        return out

    def _rows_per_chunk(self, k: int) -> int:
        return chunk_rows(self.buffers[k], self.memory_budget)

    def _call(self, k: int, rows: Any) -> np.ndarray:
        """One batched call. Under vmap a failure is vmap's, handed to the loop; a declared
        batched form's failure is the caller's and propagates."""
        assert self._rows_call is not None
        try:
            values = self._rows_call(k, rows)
        except Exception as exc:
            _credit(self.f, 1)
            if not self.falls_back:
                raise
            raise _VmapFailed(_first_line(exc)) from exc
        _credit(self.f, int(rows.shape[0]))
        return values


class ElementwiseLost(Exception):
    """The elementwise path was required (``make_evaluator(elementwise_only=True)``, for a
    full check ``mode='auto'`` chose because it is cheap) and does not hold."""


class _VmapFailed(Exception):
    """vmap(f) raised on a chunk although it passed the trial."""


def _first_line(exc: Exception) -> str:
    """The exception's type and the first line of its message, whole (a reason is one line)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def loop_elements(
    f: Callable[..., Any],
    buffers: list[Any],
    k: int,
    base: np.ndarray,
    points: np.ndarray,
    start: int,
    stop: int,
) -> np.ndarray:
    """The loop path for elements ``start:stop`` (row i of ``points`` is element i): see
    :func:`loop_at`."""
    stop = min(stop, points.shape[0])
    return loop_at(f, buffers, k, base, np.arange(start, stop), points[start:stop])


def loop_at(
    f: Callable[..., Any],
    buffers: list[Any],
    k: int,
    base: np.ndarray,
    elements: np.ndarray,
    points: np.ndarray,
) -> np.ndarray:
    """f with flat element ``elements[r]`` of input k set to ``points[r, j]``, one call per
    point. The working copy is restored after every element, even when f raises; the only work
    besides calling f is a write through a NumPy view (~100 ns)."""
    out = np.empty(points.shape)
    flat = flat_view(buffers[k])
    for r, i in enumerate(elements):
        try:
            for j in range(points.shape[1]):
                flat[i] = points[r, j]
                out[r, j] = finite_or_nan(f(*buffers))
        finally:
            flat[i] = base[i]
    return out


def finite_or_nan(out: Any) -> float:
    """f's scalar output as a float, NaN when it is not finite."""
    value = _arrays.scalar_value(out)
    return value if np.isfinite(value) else float("nan")


def make_evaluator(
    f: Counted,
    buffers: list[Any],
    option: BatchOption,
    f0: float,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    elementwise: bool = False,
    elementwise_only: bool = False,
) -> Evaluator:
    """Pick the path for f (see the module docstring); may spend one evaluation on a trial row.

    ``elementwise``: with 'auto', also trace f for the elementwise structure
    (``gradcheck._numerics.separable``) that the full-check stencil can use. ``elementwise_only``:
    that
    structure must hold in every input, now and on every later pass; where it does not,
    :class:`ElementwiseLost` is raised instead of falling back to ``n`` calls per column.
    """
    if not (isinstance(memory_budget, int) and memory_budget > 0):
        raise ValueError(
            f"memory_budget must be a positive number of bytes, got {memory_budget!r}; "
            f"the default is {DEFAULT_MEMORY_BUDGET}"
        )
    if hasattr(option, "evaluator"):  # a framework's own batched path (_numerics.jaxbatch)
        return option.evaluator(f, buffers, f0, memory_budget)  # type: ignore[union-attr,no-any-return]
    if option == "loop":
        return Evaluator(f, buffers, "loop", "batch='loop' was asked")
    if callable(option):
        rows_call = _declared_rows_call(option, buffers)
        for k in range(len(buffers)):
            disagreement = _trial(f, buffers, rows_call, f0, k, "the batch= form")
            if disagreement:
                raise ValueError(disagreement)
        return Evaluator(
            f, buffers, "batched", "the caller's batched form", rows_call, memory_budget
        )
    if option != "auto":
        raise ValueError(
            f"batch={option!r} is not 'auto', 'loop' or a batched form of f (a callable)"
        )
    evaluator = _auto_evaluator(f, buffers, f0, memory_budget)
    if (elementwise or elementwise_only) and not _why_not_vmap(buffers):
        _attach_elementwise(evaluator, f, buffers, f0)
    if elementwise_only:
        if evaluator.path != "separable" or len(evaluator._elementwise_inputs()) < len(buffers):
            raise ElementwiseLost(f"f is not elementwise in every input: {evaluator.reason}")
        evaluator.elementwise_only = True
    return evaluator


def _auto_evaluator(f: Counted, buffers: list[Any], f0: float, memory_budget: int) -> Evaluator:
    """vmap for the inputs the rule batches, after its trial; the loop for the rest."""
    why_not = _why_not_vmap(buffers)
    if why_not:
        return Evaluator(f, buffers, "loop", why_not)
    too_few = {k: chunk_rows(b, memory_budget) for k, b in enumerate(buffers)}
    too_few = {k: rows for k, rows in too_few.items() if rows < MIN_CHUNK_ROWS}
    looped = "; ".join(
        _too_few_rows(k, buffers[k], rows, memory_budget) for k, rows in too_few.items()
    )
    batched = frozenset(range(len(buffers))) - too_few.keys()
    if not batched:
        return Evaluator(f, buffers, "loop", f"vmap(f) is not tried: {looped}")
    rows_call = _vmap_rows_call(_unwrap(f)[1], buffers)
    refused = _vmap_refusal(f, buffers, rows_call, f0, batched)
    if refused:
        return Evaluator(f, buffers, "loop", refused)
    reason = "torch.func.vmap(f)"
    if too_few:
        taken = ", ".join(str(k) for k in sorted(batched))
        reason = f"{reason} for input {taken}; the loop for the others: {looped}"
    return Evaluator(f, buffers, "batched", reason, rows_call, memory_budget, True, batched)


def _too_few_rows(k: int, buffer: Any, rows: int, memory_budget: int) -> str:
    size = int(np.prod(_arrays.output_shape(buffer)))
    return (
        f"a chunk of input {k} holds {rows} batched rows (each a copy of its {size} elements, "
        f"memory_budget={memory_budget} bytes), fewer than the {MIN_CHUNK_ROWS} that batching "
        "needs to beat the loop"
    )


def _vmap_refusal(
    f: Counted, buffers: list[Any], rows_call: RowsCall, f0: float, inputs: frozenset[int]
) -> str:
    """Why vmap(f) cannot stand in for f ('' when it can), from two trial rows per batched
    input. When vmap(f) raises, f is called plainly at x: an error there too is f's own and
    propagates (the trial must not pass it off as vmap's); else vmap refused f."""
    try:
        for k in sorted(inputs):
            disagreement = _trial(f, buffers, rows_call, f0, k, "vmap(f)")
            if disagreement:
                return disagreement
        return ""
    except Exception as exc:  # vmap refuses many things f may do; the loop still works
        failure = exc
    f(*buffers)  # outside the except block: f's own error is not chained to vmap's
    return f"vmap(f) failed: {_first_line(failure)}"


def _attach_elementwise(evaluator: Evaluator, f: Counted, buffers: list[Any], f0: float) -> None:
    """Trace f (one evaluation); where it is elementwise in some input, use that path there."""
    from gradcheck._numerics import separable as _separable

    fn = _unwrap(f)[1]
    _credit(f, 1)
    structure = _separable.trace(fn, buffers)
    if isinstance(structure, str) or not structure.inputs:
        return
    total = structure.scale * float(np.sum(structure.terms0))
    size = structure.scale * float(np.sum(np.abs(structure.terms0)))
    if not abs(total - f0) <= TRIAL_RTOL * max(abs(f0), size, 1e-300):
        return
    evaluator.elementwise = _separable.ElementwisePath(f, fn, buffers, structure, f0)


def _why_not_vmap(buffers: Sequence[Any]) -> str:
    if not all(_arrays.is_torch(b) for b in buffers):
        return "f takes NumPy arrays; pass batch= a batched form of f to batch it"
    largest = max(int(np.prod(_arrays.output_shape(b))) for b in buffers)
    if largest < AUTO_BATCH_MIN_ELEMENTS:
        return (
            f"inputs are small ({largest} < {AUTO_BATCH_MIN_ELEMENTS} elements): a loop is as fast"
        )
    return ""


def _trial(
    f: Counted, buffers: list[Any], rows_call: RowsCall, f0: float, k: int, what: str
) -> str:
    """Two batched rows of input k at x itself must reproduce f(x): else the batched form is
    not f, and the message says so ('' when they do). (Two, not one: a batching rule can
    broadcast a batch of one where it breaks for more.)"""
    rows = _repeat(buffers[k], 2)
    _credit(f, 2)
    values = rows_call(k, rows)
    value = float(values[np.argmax(np.abs(values - f0))]) if np.all(np.isfinite(values)) else np.nan
    if np.isnan(value) and not np.isfinite(f0):
        return ""
    if abs(value - f0) <= TRIAL_RTOL * max(abs(f0), abs(value), 1e-300):
        return ""
    return (
        f"{what} gives {value!r} at the inputs where f gives {f0!r}; "
        "a batched form must return f(*row) for every row"
    )


def _vmap_rows_call(fn: Callable[..., Any], buffers: list[Any]) -> RowsCall:
    import torch

    vmapped = {
        k: torch.func.vmap(fn, in_dims=tuple(0 if j == k else None for j in range(len(buffers))))
        for k in range(len(buffers))
    }

    def call(k: int, rows: Any) -> np.ndarray:
        args = [rows if j == k else b for j, b in enumerate(buffers)]
        return _row_values(vmapped[k](*args), int(rows.shape[0]))

    return call


def _declared_rows_call(fb: Callable[..., Any], buffers: list[Any]) -> RowsCall:
    def call(k: int, rows: Any) -> np.ndarray:
        count = int(rows.shape[0])
        args = [rows if j == k else _repeat(b, count) for j, b in enumerate(buffers)]
        return _row_values(fb(*args), count)

    return call


def _repeat(buffer: Any, count: int) -> Any:
    """``count`` copies of an unperturbed input along a new axis, without copying memory."""
    if _arrays.is_torch(buffer):
        return buffer.expand(count, *buffer.shape)
    return np.broadcast_to(buffer, (count, *buffer.shape))


def _row_values(out: Any, count: int) -> np.ndarray:
    values = _arrays.to_numpy64(out).reshape(-1)
    if values.size != count:
        raise ValueError(
            f"the batched f returned {values.size} values for {count} rows; it must return one "
            "value per row (shape (B,)), or B outputs of f's shape for a non-scalar f"
        )
    return np.where(np.isfinite(values), values, np.nan)


def chunk_rows(buffer: Any, memory_budget: int) -> int:
    """How many batched rows of this input (each a whole copy of it) fit in the budget."""
    itemsize = int(buffer.element_size() if _arrays.is_torch(buffer) else buffer.itemsize)
    row_bytes = max(1, int(np.prod(_arrays.output_shape(buffer))) * itemsize)
    return max(1, memory_budget // row_bytes)


def _rows_with_elements(buffer: Any, elements: np.ndarray, values: np.ndarray) -> Any:
    """Copies of the input ``buffer`` stacked on a new axis 0, each of the buffer's own shape
    (f must get inputs of the caller's shapes), row r with flat element ``elements[r]`` set
    to ``values[r]``."""
    count = elements.size
    shape = (count, *_arrays.output_shape(buffer))
    if _arrays.is_torch(buffer):
        import torch

        rows = buffer.reshape(1, -1).expand(count, -1).clone()
        fill = torch.as_tensor(values, dtype=torch.float64).to(buffer.device, buffer.dtype)
        rows[torch.arange(count), torch.as_tensor(elements)] = fill
        return rows.reshape(shape)
    rows = np.repeat(buffer.reshape(1, -1), count, axis=0)
    rows[np.arange(count), elements] = values
    return rows.reshape(shape)


def _like_buffer(buffer: Any, rows: np.ndarray) -> Any:
    """Flat float64 rows as a batch of inputs of the buffer's kind, dtype and shape."""
    shape = (rows.shape[0], *_arrays.output_shape(buffer))
    if _arrays.is_torch(buffer):
        import torch

        return torch.as_tensor(rows).to(dtype=buffer.dtype, device=buffer.device).reshape(shape)
    return rows.astype(buffer.dtype).reshape(shape)


def _write_all(flat: Any, values: np.ndarray) -> None:
    if _arrays.is_torch(flat):
        import torch

        flat.copy_(torch.as_tensor(values))
    else:
        flat[...] = values


def contracted(fb: Callable[..., Any], v: np.ndarray) -> Callable[..., Any]:
    """The batched form of ``sum(v * f(*x))`` from a batched form of a non-scalar f."""
    if hasattr(fb, "contracted"):  # a framework's own batched path contracts in its own code
        return fb.contracted(v)  # type: ignore[no-any-return]

    def scalar_rows(*xs: Any) -> Any:
        out = fb(*xs)
        if _arrays.is_torch(out):
            import torch

            weights = torch.as_tensor(v, dtype=out.dtype, device=out.device)
            return (out * weights).reshape(out.shape[0], -1).sum(dim=1)
        out = np.asarray(out)
        return np.sum((out * v.astype(out.dtype)).reshape(out.shape[0], -1), axis=1)

    return scalar_rows
