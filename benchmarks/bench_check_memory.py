"""What one ``gradcheck.check`` of a large input holds in memory, in copies of the input.

``check(f, x, grad)`` with the defaults (``mode="auto"``) on ``sum(tanh(x)**2)`` at a float64
input of n elements, each in a fresh process: once in NumPy with its hand formula, once in
torch with autograd (an elementwise f, which the full check evaluates along the separable
path). Prints the verdict, the time, the peak of the NumPy arrays alive at once
(``tracemalloc``; torch's own buffers are not counted) and the process's peak resident memory,
both also in units of the input's size (8 n bytes). ``benchmarks/bench_screen_memory.py``
measures the screen alone against torch's fast mode.

    .venv/bin/python benchmarks/bench_check_memory.py [--sizes 10000000] [--numpy-only]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import resource, sys, time, tracemalloc
import numpy as np
import gradcheck

n, kind = int(sys.argv[1]), sys.argv[2]
x = np.random.default_rng(0).standard_normal(n)
if kind == "numpy":
    f = lambda v: np.sum(np.tanh(v) ** 2)
    grad = lambda v: 2 * np.tanh(v) / np.cosh(v) ** 2
else:
    import torch
    torch.set_num_threads(1)
    x = torch.from_numpy(x)
    f, grad = (lambda v: (torch.tanh(v) ** 2).sum()), None
tracemalloc.start()
start = time.perf_counter()
result = gradcheck.check(f, x) if grad is None else gradcheck.check(f, x, grad)
seconds = time.perf_counter() - start
_, peak = tracemalloc.get_traced_memory()
resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
size = 8 * n
print(f"| {n} | {kind} | {result.verdict} | {seconds:.1f} | {peak / 2**20:.0f} MB "
      f"({peak / size:.1f}x) | {resident / 2**20:.0f} MB ({resident / size:.1f}x) |")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--numpy-only", action="store_true")
    args = parser.parse_args()
    print("| n | f, gradient | verdict | s | NumPy peak (x input) | resident peak (x input) |")
    print("|---|---|---|---|---|---|")
    kinds = ["numpy"] if args.numpy_only else ["numpy", "torch"]
    for n in args.sizes:
        for kind in kinds:
            subprocess.run([sys.executable, "-c", CHILD, str(n), kind], check=True)


if __name__ == "__main__":
    main()
