"""Differentiate (support): JAX code at many perturbed points, through ``jax.jit(jax.vmap(f))``.

The engine asks for f at points that differ from x in one element (the full check, the kink
ladders) or in a whole row (a screen probe). For a JAX f (``gradcheck._sources.jaxcall``), a
:class:`JaxBatch` given as ``batch=`` evaluates them in compiled chunks:

* **Points** (one element moved): one program per input k, ``jit(vmap(g))`` with
  ``g(i, value, *x) = <v, f(x with element i of x_k set to value)>``, so the perturbed copies
  are built inside XLA from the index and the value; only those cross from NumPy.
* **Rows** (the screen): ``jit(vmap(<v, f>, in_axes=k))`` over the rows of input k.
* **Chunks.** A chunk holds ``R_k`` points: the memory budget's rows (``memory_budget //
  bytes of input k``) rounded down to a power of two between ``MIN_CHUNK_ROWS`` (32) and
  ``MAX_CHUNK_ROWS`` (64: XLA on a CPU keeps that many copies in cache), and no more than the
  first level's 2n points need. A call with fewer points is padded with x itself up to
  ``R_k``, so each program compiles once per check; only the real points count.
* **The rule, not a race.** Input k is batched when it has at least
  ``AUTO_BATCH_MIN_ELEMENTS`` (1024) elements (below that the loop, through ``jax.jit(f)``,
  costs less than compiling one more program), after the trial: two points at x, through the
  program the check then uses, must give f(x) to ``TRIAL_RTOL``. Sizes and the trial decide,
  never a clock: one seed, one report. Where ``jit(vmap(f))`` refuses f (Python control flow
  on values, ``.item()``) or a chunk fails, the loop runs on and the reason is kept.

The rows are evaluated in the evaluation dtype of the buffers (float64 when the engine
promotes a float32 input), under the 64-bit mode the JAX check holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck._numerics import evaluate as _evaluate

MIN_CHUNK_ROWS = _evaluate.MIN_CHUNK_ROWS
# Input k is batched from this many elements up. Compiling a program costs about 0.1-0.5 s, a
# looped point through jax.jit(f) about 50-100 us (benchmarks/bench_jax.py's corpus and MLP, a
# loaded 2-core machine): the 2n points of the first level pay for a compile from n ~ 1e3.
AUTO_BATCH_MIN_ELEMENTS = 1024
# XLA on a CPU runs a chunk of 64 perturbed copies faster per point than one of 256 or more (the
# copies and their intermediates stay in cache; bench_jax.py's MLP: 4 MiB chunks cost 1.4x).
MAX_CHUNK_ROWS = 64


class JaxBatch:
    """The ``batch=`` option of a JAX check: ``scalar_of(v)`` gives the JAX function
    ``<v, f(x)>`` of the differentiated inputs (f itself for ``v=None``)."""

    def __init__(
        self, scalar_of: Callable[[np.ndarray | None], Callable[..., Any]], v: Any = None
    ) -> None:
        self.scalar_of = scalar_of
        self.v = v

    def contracted(self, v: np.ndarray) -> JaxBatch:
        """The same option for the scalar ``<v, f>`` of a non-scalar f."""
        return JaxBatch(self.scalar_of, v)

    def __call__(self, *xs: Any) -> Any:
        """The declared batched form: every input with a leading batch axis."""
        import jax

        return np.asarray(jax.jit(jax.vmap(self.scalar_of(self.v)))(*xs))

    def evaluator(
        self, f: _evaluate.Counted, buffers: list[Any], f0: float, memory_budget: int
    ) -> _evaluate.Evaluator:
        """The evaluator for these buffers: batched inputs by the rule, the loop for the rest."""
        small = [k for k, b in enumerate(buffers) if np.size(b) < AUTO_BATCH_MIN_ELEMENTS]
        batched = frozenset(range(len(buffers))) - set(small)
        if not batched:
            why = f"inputs are small (< {AUTO_BATCH_MIN_ELEMENTS} elements): a compile costs more"
            return _evaluate.Evaluator(f, buffers, "loop", f"{why}; jax.jit(f) per point")
        programs = _Programs(self.scalar_of(self.v), buffers, memory_budget)
        refused = _refusal(f, buffers, programs, f0, batched)
        if refused:
            return _evaluate.Evaluator(f, buffers, "loop", refused)
        reason = "jax.jit(jax.vmap(f)) in chunks"
        if small:
            reason += f"; the loop for input {', '.join(map(str, small))} (small)"
        return JaxEvaluator(f, buffers, reason, programs, memory_budget, batched)


class _Programs:
    """The compiled programs of one check (one per input and kind), built on first use."""

    def __init__(self, scalar: Callable[..., Any], buffers: list[Any], memory_budget: int) -> None:
        self.scalar = scalar
        self.buffers = buffers
        self.chunks = [chunk_size(b, memory_budget) for b in buffers]
        self._points: dict[int, Any] = {}
        self._rows: dict[int, Any] = {}

    def base(self) -> list[Any]:
        import jax.numpy as jnp

        return [jnp.asarray(b) for b in self.buffers]

    def points(self, k: int, elements: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``<v, f>`` with flat element ``elements[r]`` of input k at ``values[r]``."""
        import jax
        import jax.numpy as jnp

        if k not in self._points:
            scalar, shape = self.scalar, np.shape(self.buffers[k])

            def moved(i: Any, value: Any, *xs: Any) -> Any:
                flat = jnp.ravel(xs[k]).at[i].set(value.astype(xs[k].dtype))
                return scalar(*xs[:k], flat.reshape(shape), *xs[k + 1 :])

            axes = (0, 0, *([None] * len(self.buffers)))
            self._points[k] = jax.jit(jax.vmap(moved, in_axes=axes))
        count = elements.size
        size = max(count, self.chunks[k])
        index = np.zeros(size, dtype=np.int32)
        index[:count] = elements
        base = np.ravel(np.asarray(self.buffers[k], dtype=np.float64))
        at = base[index].copy()
        at[:count] = values
        out = self._points[k](jnp.asarray(index), jnp.asarray(at), *self.base())
        return np.asarray(out, dtype=np.float64)[:count]

    def rows(self, k: int, rows: Any) -> np.ndarray:
        """``<v, f>`` with input k replaced by each row of ``rows`` (stacked on axis 0)."""
        import jax
        import jax.numpy as jnp

        if k not in self._rows:
            axes = tuple(0 if j == k else None for j in range(len(self.buffers)))
            self._rows[k] = jax.jit(jax.vmap(self.scalar, in_axes=axes))
        count = int(rows.shape[0])
        size = max(count, self.chunks[k])
        batch = np.empty((size, *np.shape(self.buffers[k])), dtype=np.asarray(rows).dtype)
        batch[:count] = rows
        batch[count:] = self.buffers[k]
        args = self.base()
        args[k] = jnp.asarray(batch)
        out = np.asarray(self._rows[k](*args), dtype=np.float64)[:count]
        return np.where(np.isfinite(out), out, np.nan)


def chunk_size(buffer: Any, memory_budget: int) -> int:
    """The points per compiled call for this input: the memory budget's rows, rounded down to
    a power of two between ``MIN_CHUNK_ROWS`` and ``MAX_CHUNK_ROWS``, and no more than the
    first level's points (two per element) rounded up to one."""
    rows = min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, _evaluate.chunk_rows(buffer, memory_budget)))
    first_level = 1 << int(2 * np.size(buffer) - 1).bit_length()
    return min(1 << (rows.bit_length() - 1), max(MIN_CHUNK_ROWS, first_level))


def _refusal(
    f: _evaluate.Counted,
    buffers: list[Any],
    programs: _Programs,
    f0: float,
    inputs: frozenset[int],
) -> str:
    """Why ``jit(vmap(f))`` cannot stand in for f ('' when it can): two points at x itself per
    batched input (element 0 set to its own value, through the program the check then uses)
    must give f(x). When it raises, f runs plainly at x, so f's own error propagates."""
    try:
        for k in sorted(inputs):
            at_x = np.ravel(np.asarray(buffers[k], dtype=np.float64))[:1]
            _evaluate._credit(f, 2)
            values = programs.points(k, np.zeros(2, dtype=np.int64), np.repeat(at_x, 2))
            worst = float(values[np.argmax(np.abs(values - f0))])
            if not (np.isfinite(worst) or np.isfinite(f0)):
                continue
            if not abs(worst - f0) <= _evaluate.TRIAL_RTOL * max(abs(f0), abs(worst), 1e-300):
                return (
                    f"jax.jit(jax.vmap(f)) gives {worst!r} at the inputs where f gives {f0!r}; "
                    "the loop instead"
                )
        return ""
    except Exception as exc:  # vmap refuses what f does with values; the loop still works
        failure = exc
    f(*buffers)
    return f"jax.jit(jax.vmap(f)) failed: {_evaluate._first_line(failure)}; the loop instead"


class JaxEvaluator(_evaluate.Evaluator):
    """The engine's evaluator with JAX's compiled programs for the batched inputs."""

    def __init__(
        self,
        f: _evaluate.Counted,
        buffers: list[Any],
        reason: str,
        programs: _Programs,
        memory_budget: int,
        batched: frozenset[int],
    ) -> None:
        super().__init__(f, buffers, "batched", reason, programs.rows, memory_budget, True, batched)
        self._programs = programs

    def _rows_per_chunk(self, k: int) -> int:
        return int(self._programs.chunks[k])

    def _at_points(self, k: int, elements: np.ndarray, values: np.ndarray) -> np.ndarray:
        try:
            out = self._programs.points(k, elements, values)
        except Exception as exc:
            _evaluate._credit(self.f, 1)
            raise _evaluate._VmapFailed(_evaluate._first_line(exc)) from exc
        _evaluate._credit(self.f, int(elements.size))
        return np.where(np.isfinite(out), out, np.nan)
