"""What a screen holds in memory at scale, in copies of the input.

A screen's cost in evaluations does not grow with n, but its arrays do: the four perturbed
rows of a probe, the direction, the analytic gradient. This screens
``sum(tanh(x)**2) + 1e-3 * cumsum(x)[-1]`` (not elementwise, so ``mode="auto"`` would screen
it too) at float64 inputs of n elements, once with the autograd gradient and once with an
error planted in one element (so that bisection runs), each in a fresh process, and prints
the peak of the NumPy arrays alive at once (``tracemalloc``; torch's own buffers are not
counted), the process's peak resident memory, and both in units of the input's size (8 n
bytes). The peer, ``torch.autograd.gradcheck(fast_mode=True)`` on the same f (4 evaluations,
one projection), runs in its own process too; the last column is each resident peak over its
one. (Slow mode is out of reach here: 2n evaluations.)

    .venv/bin/python benchmarks/bench_screen_memory.py [--sizes 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tabulate import tabulate

CHILD = r"""
import json, resource, sys, time, tracemalloc
import torch
import gradcheck

torch.set_num_threads(1)
n, variant = int(sys.argv[1]), sys.argv[2]
x = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def f(v):
    return (torch.tanh(v) ** 2).sum() + torch.cumsum(v, 0)[-1] * 1e-3


def wrong(v):
    t = torch.tanh(v)
    g = 2 * t * (1 - t * t) + 1e-3
    g[n // 3] += 1e-2
    return g


tracemalloc.start()
start = time.perf_counter()
if variant == "torch fast":
    passed = torch.autograd.gradcheck(f, (x.clone().requires_grad_(True),), fast_mode=True)
    verdict, evaluations = ("pass" if passed else "fail"), 4
else:
    result = gradcheck.check(f, x, wrong if variant == "planted" else None, mode="screen")
    verdict, evaluations = str(result.verdict), result.evaluations
seconds = time.perf_counter() - start
print(json.dumps({
    "verdict": verdict,
    "evaluations": evaluations,
    "seconds": seconds,
    "numpy_peak": tracemalloc.get_traced_memory()[1],
    "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def measure(n: int, variant: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), variant],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        measured = {v: measure(n, v) for v in ("torch fast", "correct", "planted")}
        peer = float(measured["torch fast"]["rss_peak"])  # type: ignore[arg-type]
        for variant, m in measured.items():
            size = 8 * n
            numpy_peak, rss_peak = float(m["numpy_peak"]), float(m["rss_peak"])  # type: ignore[arg-type]
            rows.append(
                [
                    n,
                    "torch fast_mode" if variant == "torch fast" else f"screen, {variant}",
                    m["verdict"],
                    m["evaluations"],
                    f"{float(m['seconds']):.3g}",  # type: ignore[arg-type]
                    f"{numpy_peak / 2**20:.0f} MB ({numpy_peak / size:.1f}x)",
                    f"{rss_peak / 2**20:.0f} MB ({rss_peak / size:.1f}x)",
                    f"{rss_peak / peer:.2f}x",
                ]
            )
    headers = [
        "n",
        "checker, gradient",
        "verdict",
        "evaluations",
        "s",
        "NumPy peak (x input)",
        "resident peak (x input)",
        "vs torch fast_mode",
    ]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
