"""The cost of order 2: ``check(f, x, order=2)`` and gradcheck's ``gradgradcheck`` against
``torch.autograd.gradgradcheck``, one run, same functions, same inputs, one thread:

    .venv/bin/python benchmarks/bench_second_order.py            # n = 10, 100, 1000
    .venv/bin/python benchmarks/bench_second_order.py --quick    # n = 10

Functions (float64): ``sum(sin(x) * x**2)``; a custom ``autograd.Function`` ``sum(x**3)``
whose backward is twice differentiable; a one-hidden-layer tanh MLP's loss as a function of its
flat weights. Per row: median seconds of each checker, its ratio to torch's gradgradcheck, and
the extra cost of order 2 inside ``check`` (``check(order=2)`` over ``check()``). Both sides
cost O(n) evaluations of the backward: torch builds the numerical Jacobian of the backward
(2n of them), gradcheck a central difference per element of h (2n, plus error bars only where
an element needs one) and a double backward.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from tabulate import tabulate

from gradcheck import check
from gradcheck.torch import gradgradcheck

torch.set_num_threads(1)


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return (x**3).sum()

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g


def sin_poly(x: Any) -> Any:
    return (torch.sin(x) * x**2).sum()


def mlp(n: int) -> Callable[[Any], Any]:
    """The MSE loss of a tanh MLP 4 -> hidden -> 1 with about n weights, of its flat weights."""
    hidden = max(1, n // 6)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(8, 4, generator=g, dtype=torch.float64)
    target = torch.randn(8, 1, generator=g, dtype=torch.float64)

    def loss(w: Any) -> Any:
        w1 = w[: 4 * hidden].reshape(4, hidden)
        w2 = w[4 * hidden : 5 * hidden].reshape(hidden, 1)
        return ((torch.tanh(data @ w1) @ w2 - target) ** 2).mean()

    loss.size = 5 * hidden  # type: ignore[attr-defined]
    return loss


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(name: str, f: Callable[[Any], Any], n: int, repeats: int) -> list[object]:
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaf = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_s = timed(lambda: torch.autograd.gradgradcheck(f, (leaf,)), repeats)
    ours = timed(lambda: gradgradcheck(f, (leaf,)), repeats)
    first = timed(lambda: check(f, x), repeats)
    second = timed(lambda: check(f, x, order=2), repeats)
    assert check(f, x, order=2).passed
    return [
        name,
        n,
        f"{torch_s:.4f}",
        f"{ours:.4f}",
        f"{ours / torch_s:.2f}",
        f"{second:.4f}",
        f"{second / torch_s:.2f}",
        f"{second / first:.1f}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 10 only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = (10,) if args.quick else (10, 100, 1000)
    rows = []
    for n in sizes:
        rows.append(row("sum(sin(x) x^2)", sin_poly, n, args.repeats))
        rows.append(row("Cube (custom Function)", Cube.apply, n, args.repeats))
        net = mlp(n)
        rows.append(row("tanh MLP loss", net, net.size, args.repeats))  # type: ignore[attr-defined]
    headers = [
        "function",
        "n",
        "torch gradgradcheck s",
        "gradgradcheck s",
        "ratio",
        "check(order=2) s",
        "ratio",
        "order 2 / order 1",
    ]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
