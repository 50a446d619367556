"""Speed at scale: gradcheck (full, screen) against torch.autograd.gradcheck (slow, fast_mode).

One run, same functions, same inputs, one thread:

    .venv/bin/python benchmarks/bench_speed.py              # n = 1e2 .. 1e5, ~5 minutes
    .venv/bin/python benchmarks/bench_speed.py --quick      # tiny sizes, a smoke test

Functions: the mean-squared loss of a two-hidden-layer tanh MLP as a function of its flat
parameter vector (n = 91, 946, 9730, 99235 parameters), and ``sum(tanh(x)**2)``
(n = 1e2 .. 1e5), float64. Per row and method: median seconds, the ratio to torch slow mode,
evaluations of f, and the error of the numerical gradient against autograd:

* ``max rel err``: ``max_i |n_i - a_i| / max_i |a_i|`` (for the screen: the worst probe's
  ``|D - a.w| / max(|D|, |a.w|)``; torch fast mode exposes no numerical gradient);
* ``median rel err``: ``median_i |n_i - a_i| / |a_i|``.

``lower bound`` is the time of f at 2n perturbed points, the fewest a black-box
central-difference gradient needs: one batched evaluation through ``torch.func.vmap`` (timed on
one chunk of the default memory budget and scaled to 2n rows), or 2n plain calls where those
are cheaper (for large inputs a batch overflows the cache); the cell says which. It is computed,
not run. ``sum(tanh(x)^2)`` is elementwise, then summed, and the full check takes the
``separable`` path (``gradcheck._numerics.separable``): it moves every element at once and beats the
black-box bound by not evaluating f at 2n points at all.
A cell whose estimated time exceeds ``--budget`` seconds is skipped and shows the estimate.
Then a 1e-4 relative error is planted in the largest element of a 1e5-element
gradient (a custom autograd.Function, so every checker sees the same wrong backward) and each
checker's verdict is printed, with the acceptance checks of issues 5 and 13 last.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

import gradcheck
from gradcheck._numerics import evaluate as _batch
from gradcheck._numerics import separable as _separable

torch.set_num_threads(1)
Fn = Callable[[torch.Tensor], torch.Tensor]


# -- the functions ----------------------------------------------------------------------------


def mlp_loss(target: int, seed: int = 0) -> tuple[Fn, torch.Tensor]:
    """MSE of a d-w-w-1 tanh MLP on 16 fixed samples, d = w, as a function of its parameters."""
    gen = torch.Generator().manual_seed(seed)
    w = max(2, int((-3 + math.sqrt(9 + 8 * target)) / 4))  # 2 w**2 + 3 w + 1 ~ target
    data = torch.randn(16, w, generator=gen, dtype=torch.float64)
    labels = torch.randn(16, generator=gen, dtype=torch.float64)
    shapes = [(w, w), (w,), (w, w), (w,), (1, w), (1,)]
    sizes = [math.prod(s) for s in shapes]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = (
            p.reshape(s) for p, s in zip(torch.split(theta, sizes), shapes, strict=True)
        )
        hidden = torch.tanh(data @ w1.T + b1)
        hidden = torch.tanh(hidden @ w2.T + b2)
        out = (hidden @ w3.T + b3).squeeze(-1)
        return ((out - labels) ** 2).mean()

    theta = torch.randn(sum(sizes), generator=gen, dtype=torch.float64) / math.sqrt(w)
    return loss, theta


def tanh_sq(n: int, seed: int = 0) -> tuple[Fn, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x) ** 2).sum()

    return f, torch.randn(n, generator=gen, dtype=torch.float64)


FUNCTIONS: dict[str, Callable[[int], tuple[Fn, torch.Tensor]]] = {
    "MLP loss": mlp_loss,
    "sum(tanh(x)^2)": tanh_sq,
}


# -- timing -----------------------------------------------------------------------------------


@dataclass
class Cell:
    """One method on one row: median seconds (or the estimate that skipped it) and its numbers."""

    seconds: float | None = None
    estimate: float | None = None
    evaluations: int | None = None
    max_rel: float | None = None
    median_rel: float | None = None
    verdict: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def time_text(self, slow: Cell | None) -> str:
        if self.seconds is None:
            return f"skipped (> budget, est. {self.estimate:.0f} s)"
        text = f"{self.seconds:.4g}"
        if slow is not None and slow.seconds is not None:
            text += f" ({self.seconds / slow.seconds:.3g}x)"
        elif slow is not None and slow.estimate is not None:
            text += f" (~{self.seconds / slow.estimate:.2g}x of est.)"
        return text


class Counter:
    """f with its calls counted (torch's checkers report no count).

    ``trim_every``: hand freed heap memory back to the system every that many calls. torch
    slow mode on a custom ``autograd.Function`` at n = 1e5 grew to 24 GB resident and was killed
    (glibc keeps its 800 kB per-perturbation copies of x on a fragmenting heap; at n = 1e4 it
    grows 0.5 GB, with ``malloc_trim`` every 1000 calls 0.04 GB, at a few percent of the time).
    On the rows of n >= 5e4 every method calls f through one such wrapper (``TRIM_FROM``), so
    each pays the same trimming per call of f; sum(tanh(x)^2) at n = 1e5 was killed there too.
    The planted error's torch runs trim as well."""

    def __init__(self, f: Fn, trim_every: int = 0) -> None:
        self.f = f
        self.calls = 0
        self.trim = _malloc_trim() if trim_every else None
        self.trim_every = trim_every

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.trim is not None and self.calls % self.trim_every == 0:
            self.trim(0)
        return self.f(x)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (not Linux/glibc)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim  # type: ignore[no-any-return]


def median_time(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def repeats_for(estimate: float, repeats: int) -> int:
    """Rounds for a cell: ``repeats``, but 2 for one over 20 s, so that a long cell still runs
    interleaved with its peers (A B A B), not once each minutes apart under other loads."""
    return min(2, repeats) if estimate > 20 else repeats


def per_call(f: Fn, x: torch.Tensor) -> float:
    f(x)
    seconds, _ = median_time(lambda: [f(x) for _ in range(5)], 3)
    return seconds / 5


def per_batched_row(f: Fn, x: torch.Tensor) -> float:
    """Seconds per row of vmap(f) on one chunk of the default memory budget."""
    rows = max(1, min(2 * x.numel(), _batch.DEFAULT_MEMORY_BUDGET // (8 * x.numel())))
    chunk = x.expand(rows, x.numel()).clone()
    chunk += 1e-6 * torch.randn(chunk.shape, dtype=chunk.dtype)
    batched = torch.func.vmap(f)
    batched(chunk)
    seconds, _ = median_time(lambda: batched(chunk), 3)
    return seconds / rows


def rel_errors(numeric: np.ndarray, analytic: np.ndarray) -> tuple[float, float]:
    diff = np.abs(numeric - analytic).reshape(-1)
    a = np.abs(analytic).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        median = float(np.median(np.where(a > 0, diff / a, np.where(diff > 0, np.inf, 0.0))))
    return float(diff.max() / a.max()), median


# -- the methods ------------------------------------------------------------------------------


def run_gradcheck(f: Fn, x: torch.Tensor, mode: str) -> tuple[float, Cell]:
    began = time.perf_counter()
    result = gradcheck.check(f, x, mode=mode)
    seconds = time.perf_counter() - began
    verdict = f"{result.verdict} ({result.numerics.path})"
    cell = Cell(seconds=seconds, evaluations=result.evaluations, verdict=verdict)
    if mode == "full":
        c = result.inputs[0]
        cell.max_rel, cell.median_rel = rel_errors(c.numeric, c.analytic)
    else:
        assert result.screen is not None
        cell.max_rel = max(p.rel_error for p in result.screen.probes)
    cell.extra["result"] = result
    return seconds, cell


def run_torch(f: Fn, x: torch.Tensor, fast: bool, trim_every: int = 0) -> tuple[float, Cell]:
    counted = Counter(f, trim_every)
    leaf = x.detach().clone().requires_grad_(True)
    began = time.perf_counter()
    passed = torch.autograd.gradcheck(counted, (leaf,), fast_mode=fast, raise_exception=False)
    seconds = time.perf_counter() - began
    verdict = "pass" if passed else "fail"
    return seconds, Cell(seconds=seconds, evaluations=counted.calls, verdict=verdict)


def run_method(method: str, f: Fn, x: torch.Tensor) -> tuple[float, Cell]:
    if method.startswith("gradcheck"):
        return run_gradcheck(f, x, method.split()[1])
    return run_torch(f, x, method == "torch fast")


def torch_numerical(f: Fn, x: torch.Tensor) -> np.ndarray:
    """torch slow mode's own numerical gradient (central differences, eps = 1e-6)."""
    from torch.autograd.gradcheck import get_numerical_jacobian  # type: ignore[attr-defined]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        leaf = x.detach().clone().requires_grad_(True)
        jac = get_numerical_jacobian(lambda xs: f(xs[0]), (leaf,), eps=1e-6)
    return np.asarray(jac[0].detach().reshape(-1).numpy(), dtype=np.float64)


def autograd(f: Fn, x: torch.Tensor) -> np.ndarray:
    leaf = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(leaf), leaf)
    return np.asarray(grad.numpy(), dtype=np.float64)


@dataclass
class Row:
    function: str
    n: int
    cells: dict[str, Cell]


TRIM_FROM = 50_000  # rows this large call f through a trimming Counter, for every method


def measure_row(name: str, f: Fn, x: torch.Tensor, args: argparse.Namespace, slow_overhead: float):
    """Every method on one row, run in interleaved rounds so that a change of machine load
    falls on all of them alike; a cell is the median over its rounds. Each cell is printed to
    stderr as it is measured, so a run that dies still leaves its figures."""
    n = x.numel()
    if n >= TRIM_FROM:
        f = Counter(f, trim_every=1000)
    call, batched_row = per_call(f, x), per_batched_row(f, x)
    row_cost = min(call, batched_row)
    how = "vmap" if batched_row <= call else "loop"
    cells = {"lower bound": Cell(seconds=2 * n * row_cost, evaluations=2 * n, verdict=f"({how})")}
    elementwise = not isinstance(structure := _separable.trace(f, [x]), str) and structure.inputs
    estimates = {
        "gradcheck full": 100 * call if elementwise else 2 * n * row_cost + 60 * call,
        "gradcheck screen": 40 * call,
        "torch slow": 2 * n * (call + slow_overhead),
        "torch fast": 10 * call,
    }
    rounds = {m: repeats_for(e, args.repeats) for m, e in estimates.items() if e <= args.budget}
    times: dict[str, list[float]] = {m: [] for m in rounds}
    for r in range(max(rounds.values(), default=0)):
        for method in rounds:
            if r < rounds[method]:
                print(f"[bench] {name} n={n}: {method}", file=sys.stderr, flush=True)
                seconds, cells[method] = run_method(method, f, x)
                times[method].append(seconds)
    for method, estimate in estimates.items():
        if method in times:
            cells[method].seconds = statistics.median(times[method])
            cell = cells[method]
            print(
                f"[bench] {name} n={n}: {method}: {cell.seconds:.4g} s, "
                f"{cell.evaluations} evaluations, {cell.verdict}",
                file=sys.stderr,
                flush=True,
            )
        else:
            cells[method] = Cell(estimate=estimate)
        cells[method] = cells.pop(method)  # keep the table's method order
    slow = cells["torch slow"]
    if slow.seconds is not None and 2 * slow.seconds <= args.budget:
        slow.max_rel, slow.median_rel = rel_errors(torch_numerical(f, x), autograd(f, x))
    return Row(name, n, cells)


def warm_up() -> None:
    """One untimed run of every method, so that no cell pays for first-call set-up (vmap)."""
    for make in FUNCTIONS.values():
        f, x = make(64)
        for mode in ("full", "screen"):
            gradcheck.check(f, x, mode=mode)
        for fast in (False, True):
            run_torch(f, x, fast)


def slow_mode_overhead() -> float:
    """torch slow mode's cost per perturbation beyond calling f, from a small run."""
    f, x = tanh_sq(200)
    call = per_call(f, x)
    seconds = statistics.median(run_torch(f, x, fast=False)[0] for _ in range(3))
    return max(0.0, seconds / (2 * x.numel()) - call)


# -- the planted error ------------------------------------------------------------------------


def planted_function(f: Fn, wrong_grad: Callable[[torch.Tensor], torch.Tensor]) -> Fn:
    """f with a custom backward returning ``wrong_grad``: every checker sees the same bug."""

    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return f(x)

        @staticmethod
        def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return grad_out * wrong_grad(x)

    return Planted.apply  # type: ignore[no-any-return]


def planted_error(args: argparse.Namespace, n: int, rows: list[Row]) -> list[list[Any]]:
    f, x = tanh_sq(n, seed=1)
    exact = autograd(f, x)
    j = int(np.argmax(np.abs(exact)))
    factor = 1 + 1e-4

    def wrong_grad(v: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(v)
        g = 2 * t * (1 - t * t)
        g = g.clone()
        g[j] = g[j] * factor
        return g

    wrong = planted_function(f, wrong_grad)
    print(f"[bench] planted error, n={n}", file=sys.stderr, flush=True)
    out = []
    for mode in ("screen", "full"):
        out.append(planted_gradcheck(f, wrong, x, j, mode, args, rows))
    for fast in (False, True):
        out.append(planted_torch(wrong, x, fast, args, rows))
    return [[n, *line] for line in out]


def planted_gradcheck(
    f: Fn, wrong: Fn, x: torch.Tensor, j: int, mode: str, args: argparse.Namespace, rows: list[Row]
) -> list[Any]:
    label = f"gradcheck {mode}"
    estimate = estimate_for(rows, "sum(tanh(x)^2)", x.numel(), label)
    if estimate is not None and estimate > args.budget:
        return [label, f"skipped (> budget, est. {estimate:.0f} s)", "", "", ""]
    start = time.perf_counter()
    result = gradcheck.check(wrong, x, mode=mode)
    seconds = time.perf_counter() - start
    caught = result.verdict == "fail"
    if mode == "screen":
        assert result.screen is not None
        located = result.screen.located[0]
        localise = sum(p.kind == "localise" for p in result.screen.probes)
        where = f"located {list(located)} (planted at {j})"
        cost = (
            f"{result.evaluations - 4 * localise} screen + {4 * localise} localisation evaluations "
            f"({2 * localise} probe pairs; 2 log2 n = {2 * math.log2(x.numel()):.1f})"
        )
        correct = gradcheck.check(f, x, mode="screen")
        cost += f"; correct gradient: {correct.verdict} in {correct.evaluations} evaluations"
        cost += f"; single-element bound {correct.screen.bounds[0]:.3g}"  # type: ignore[union-attr]
    else:
        worst = result.inputs[0].worst_index
        where, cost = f"worst element {list(worst)} (planted at {j})", f"{result.evaluations} ev."
    return [label, "caught" if caught else "missed", f"{seconds:.3g}", where, cost]


def planted_torch(
    wrong: Fn, x: torch.Tensor, fast: bool, args: argparse.Namespace, rows: list[Row]
) -> list[Any]:
    label = "torch fast" if fast else "torch slow"
    estimate = estimate_for(rows, "sum(tanh(x)^2)", x.numel(), label)
    if estimate is not None and estimate > args.budget:
        return [label, f"skipped (> budget, est. {estimate:.0f} s)", "", "", ""]
    _, cell = run_torch(wrong, x, fast, trim_every=1000)
    caught = cell.verdict == "fail"
    return [
        label,
        "caught" if caught else "missed",
        f"{cell.seconds:.3g}",
        "",
        f"{cell.evaluations} ev.",
    ]


def estimate_for(rows: list[Row], function: str, n: int, method: str) -> float | None:
    for row in rows:
        if row.function == function and row.n == n:
            cell = row.cells[method]
            return cell.seconds if cell.seconds is not None else cell.estimate
    return None


# -- output -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        slow = row.cells["torch slow"]
        for method, cell in row.cells.items():
            lines.append(
                [
                    row.function,
                    row.n,
                    method,
                    cell.time_text(None if method == "torch slow" else slow),
                    "" if cell.evaluations is None else cell.evaluations,
                    "" if cell.max_rel is None else f"{cell.max_rel:.1e}",
                    "" if cell.median_rel is None else f"{cell.median_rel:.1e}",
                    cell.verdict,
                ]
            )
    headers = [
        "function",
        "n",
        "method",
        "median s (vs torch slow)",
        "evaluations",
        "max rel err",
        "median rel err",
        "verdict (path)",
    ]
    return github_table(lines, headers)


def github_table(lines: list[list[Any]], headers: list[str]) -> str:
    """A Markdown table with every cell printed as given (no number reformatting)."""
    return str(tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True))


def acceptance(rows: list[Row], planted: list[list[Any]]) -> list[str]:
    out = []
    slower = []
    for row in rows:
        full, slow = row.cells["gradcheck full"], row.cells["torch slow"]
        ours = full.seconds if full.seconds is not None else full.estimate
        theirs = slow.seconds if slow.seconds is not None else slow.estimate
        if ours is not None and theirs is not None and ours > theirs:
            measured = full.seconds is not None and slow.seconds is not None
            slower.append(f"{row.function} n={row.n} ({'measured' if measured else 'estimated'})")
    out.append(
        "full check never slower than torch slow mode: "
        + ("yes" if not slower else "no: " + ", ".join(slower))
    )
    out.extend(_floor_lines(rows))
    for n in (1000, 10000):
        for row in rows:
            if row.function == "sum(tanh(x)^2)" and row.n == n:
                full, slow = row.cells["gradcheck full"], row.cells["torch slow"]
                if full.seconds and slow.seconds:
                    speedup = slow.seconds / full.seconds
                    met = "yes" if speedup >= 3 else "no"
                    out.append(
                        f"sum(tanh(x)^2) n={n}: full check {speedup:.2f}x faster than torch "
                        f"slow (target >= 3x): {met}"
                    )
    for row in rows:
        full, slow = row.cells["gradcheck full"], row.cells["torch slow"]
        if row.function != "MLP loss":
            continue
        if full.evaluations is not None:
            met = "yes" if full.evaluations <= 2 * row.n + 100 else "no"
            out.append(
                f"MLP n={row.n}: full check {full.evaluations} evaluations "
                f"(target <= 2n + 100 = {2 * row.n + 100}): {met}"
            )
        if 5000 <= row.n <= 20000 and full.seconds and slow.seconds:
            ratio = full.seconds / slow.seconds
            met = "yes" if ratio <= 0.5 else "no"
            out.append(f"MLP n={row.n}: full check {ratio:.2f}x torch slow (target <= 0.5x): {met}")
    for line in planted:
        if line[1] == "gradcheck screen":
            out.append(f"planted 1e-4 error, n={line[0]}, screen: {line[2]}, {line[4]}; {line[5]}")
    return out


def _floor_lines(rows: list[Row]) -> list[str]:
    """Where the full check is slower than torch slow mode: what f's own cost allows. f at the
    2n points of one central difference per element is the black-box floor; a value with its
    own error bar needs 3n at least (a cubic through x - h, x, x + h, x + 2h, with f(x) shared:
    one point fewer cannot cancel both the second- and the third-derivative term), estimated
    as 1.5 times that floor; the judging loop needs one only where a verdict does."""
    out = []
    for row in rows:
        full, slow, bound = (row.cells[k] for k in ("gradcheck full", "torch slow", "lower bound"))
        if not (full.seconds and slow.seconds and bound.seconds) or full.seconds <= slow.seconds:
            continue
        ratio = bound.seconds / slow.seconds
        out.append(
            f"  {row.function} n={row.n}: f at 2n points alone takes {bound.seconds:.3g} s "
            f"({ratio:.2f}x torch slow); 3n, the fewest for a per-element value with its own "
            f"error bar, would take about {1.5 * bound.seconds:.3g} s ({1.5 * ratio:.2f}x)"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per cell")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (median)")
    args = parser.parse_args(argv)
    sizes = [100, 300] if args.quick else [100, 1000, 10000, 100000]
    planted_sizes = [2000] if args.quick else [10000, 100000]
    if args.quick:
        args.budget, args.repeats = min(args.budget, 3.0), 1

    warm_up()
    overhead = slow_mode_overhead()
    rows = []
    for name, make in FUNCTIONS.items():
        for n in sizes:
            f, x = make(n)
            rows.append(measure_row(name, f, x, args, overhead))
    for n in planted_sizes:
        if n not in sizes:
            f, x = tanh_sq(n, seed=1)
            rows.append(measure_row("sum(tanh(x)^2)", f, x, args, overhead))
    planted = [line for n in planted_sizes for line in planted_error(args, n, rows)]

    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} thread, float64, budget {args.budget:g} s per cell"
    )
    print(f"torch slow mode overhead per perturbation beyond f: {overhead * 1e6:.0f} us\n")
    print(table(rows))
    print(
        "\nPlanted: the largest element of the gradient of sum(tanh(x)^2) times (1 + 1e-4), "
        "seen by every checker through the same custom autograd.Function:\n"
    )
    print(github_table(planted, ["n", "checker", "verdict", "s", "where", "cost"]))
    print("\nAcceptance (issues 5 and 13):")
    for line in acceptance(rows, planted):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
