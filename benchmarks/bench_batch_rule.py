"""Measures the rule that picks vmap or the loop (``gradcheck._numerics.evaluate.MIN_CHUNK_ROWS``).

    .venv/bin/python benchmarks/bench_batch_rule.py            # n = 1e3 .. 1e5, ~2 minutes
    .venv/bin/python benchmarks/bench_batch_rule.py --quick    # one small size, a smoke test

The MLP loss of ``benchmarks/bench_speed.py`` (float64, one thread), as a full check evaluates
it: points that each move one element of x. Per point, a batched chunk (rows built as the
evaluator builds them, then one call of ``torch.func.vmap(f)``) against the loop (write one
element, call f, restore), timed in interleaved rounds in one process so that a change of
machine load falls on both alike; the cell is the median over rounds of the loop's time over
vmap's (above 1: vmap is faster). Chunk sizes: a few fixed row counts and the one the default
4 MiB budget gives (``budget``), so the table shows whether the rows a chunk holds, rather
than n itself, decide who wins.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_speed import mlp_loss
from tabulate import tabulate

from gradcheck._numerics import evaluate as _batch

torch.set_num_threads(1)


def loop_seconds(f: Callable[..., object], x: torch.Tensor, elements: np.ndarray) -> float:
    flat = _batch.flat_view(x)
    began = time.perf_counter()
    for i in elements:
        old = flat[i]
        flat[i] = old + 1e-6
        f(x)
        flat[i] = old
    return time.perf_counter() - began


def vmap_seconds(call: _batch.RowsCall, x: torch.Tensor, elements: np.ndarray) -> float:
    values = _batch.flat_view(x)[elements] + 1e-6
    began = time.perf_counter()
    call(0, _batch._rows_with_elements(x, elements, values))
    return time.perf_counter() - began


def ratio(f: Callable[..., object], x: torch.Tensor, rows: int, rounds: int) -> float:
    """Median over rounds of (loop seconds / vmap seconds) for ``rows`` points."""
    call = _batch._vmap_rows_call(f, [x])
    rng = np.random.default_rng(0)
    ratios = []
    for r in range(rounds + 1):
        elements = rng.choice(x.numel(), size=rows, replace=rows > x.numel())
        batched = vmap_seconds(call, x, elements)
        looped = loop_seconds(f, x, elements)
        if r:  # the first round warms both up
            ratios.append(looped / batched)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e3 only, two rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", help="MLP sizes (default 1e3 .. 1e5)")
    args = parser.parse_args()
    sizes = args.sizes or ([1000] if args.quick else [1000, 10_000, 30_000, 100_000])
    row_counts = [4, 8, 16, 32, 64, 128]
    rounds = 2 if args.quick else args.rounds
    table = []
    for target in sizes:
        f, x = mlp_loss(target)
        budget_rows = _batch.DEFAULT_MEMORY_BUDGET // (8 * x.numel())
        cells = [f"{ratio(f, x, rows, rounds):.2f}" for rows in row_counts]
        cells.append(f"{ratio(f, x, max(1, budget_rows), rounds):.2f} ({budget_rows} rows)")
        table.append([x.numel(), *cells])
        print(tabulate(table[-1:], tablefmt="plain"), flush=True)
    headers = ["n", *(f"{rows} rows" for rows in row_counts), "budget"]
    print("\nloop time / vmap time per point (above 1: vmap is faster)\n")
    print(tabulate(table, headers=headers))


if __name__ == "__main__":
    main()
