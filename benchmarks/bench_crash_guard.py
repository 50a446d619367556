"""What it costs that an f which ends the process cannot give a green run, against isolating
each row in a child process.

gradcheck keeps the cases in its own process and guards them there:

* before the first case runs, each ``--output`` is written once as an unfinished report (every
  row "never reported"), so that a segfault leaves that, not an earlier run's report;
* around each row: ``os._exit`` raises instead of ending the process, the working directory is
  restored, and the row runs through a frame named after it (a segfault's traceback names it).

The alternative is one child process per row (``os.fork``, the result pickled back), which also
survives a segfault. This prints, in one run on this machine:

* the guards' time per row, and as a fraction of the built-in cases' mean row;
* the unfinished reports' time per format for the built-in cases' rows, against the run;
* a bare ``os.fork`` + pickled result + ``waitpid`` per row, after NumPy and torch are
  imported (a floor for isolation: no case code runs in the child), against the mean row.

    .venv/bin/python benchmarks/bench_crash_guard.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from gradcheck._cases import runner as _runner
from gradcheck._cases.registry import load
from gradcheck._cases.runner import RunResult, row_ids, run_cases
from gradcheck._report import render


def per_call(fn, repeat: int) -> float:
    """Median over 5 rounds of the mean seconds per call."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        rounds.append((time.perf_counter() - start) / repeat)
    return statistics.median(rounds)


def guards() -> None:
    with _runner._no_hard_exit(), _runner._same_directory():
        _runner._named("case[autograd-float64]", int)


def fork_row(payload: bytes) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send the result back and leave at once
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    while os.read(read, 1 << 16):
        pass
    os.close(read)
    os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    cases = load(["cases"]).cases
    start = time.perf_counter()
    result = run_cases(cases, seed=0)
    run_s = time.perf_counter() - start
    row_s = run_s / len(result.rows)
    print(f"built-in cases: {len(result.rows)} rows in {run_s:.2f} s, {row_s * 1e3:.1f} ms a row")

    guard_s = per_call(guards, args.repeat)
    bare_s = per_call(lambda: _runner._call(int), args.repeat)
    cost = guard_s - bare_s
    print(f"guards per row: {cost * 1e6:.1f} us ({cost / row_s:.2%} of a mean row)")

    unfinished = RunResult(seed=0, rows=(), unreported=row_ids(cases))
    with tempfile.TemporaryDirectory() as folder:
        for fmt, ext in (("json", "json"), ("junit", "xml"), ("markdown", "md"), ("html", "html")):
            target = Path(folder) / f"r.{ext}"

            def write(fmt: str = fmt, target: Path = target) -> None:
                text = render.render_report(unfinished, fmt, plots=False)
                render.write_atomic(target, text)

            seconds = per_call(write, 20)
            print(
                f"unfinished {fmt} report, once per run: {seconds * 1e3:.2f} ms "
                f"({seconds / run_s:.3%} of the run)"
            )

    payload = pickle.dumps(result.rows[0].check, protocol=pickle.HIGHEST_PROTOCOL)
    fork_s = per_call(lambda: fork_row(payload), max(args.repeat // 20, 20))
    print(
        f"fork + pickled result ({len(payload)} bytes) + wait per row: {fork_s * 1e3:.2f} ms "
        f"({fork_s / row_s:.1%} of a mean row; {fork_s / max(cost, 1e-9):.0f}x the guards)"
    )
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
