"""The custom-Function corpus (tests/corpus_functions.py) under gradcheck and torch's checker.

Every correct Function and every mutant is called with the same inputs tuple by
``gradcheck.check(Fn.apply, inputs)`` and by ``torch.autograd.gradcheck(Fn.apply, inputs)``
(its defaults); float64 and float32 inputs. With ``--fast-mode`` both are called as a torch
user calls them with ``fast_mode=True``: ``gradcheck.torch.gradcheck`` (mode 'fast') against
torch's fast mode. Prints, per checker and dtype: calls refused (an exception other than a
failed check), correct Functions not passed, mutants caught.

    .venv/bin/python benchmarks/bench_torch_corpus.py [--fast-mode]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from corpus_functions import CORPUS

import gradcheck.torch
from gradcheck import check

FAST = False


def ours(fn, inputs) -> str:
    try:
        if FAST:
            ok = gradcheck.torch.gradcheck(fn, inputs, fast_mode=True, raise_exception=False)
            return "pass" if ok else "fail"
        return str(check(fn, inputs).verdict)
    except Exception as exc:  # a refused call
        return f"refused: {type(exc).__name__}: {exc}"


def torchs(fn, inputs) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = torch.autograd.gradcheck(fn, inputs, raise_exception=False, fast_mode=FAST)
        return "pass" if ok else "fail"
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def main() -> None:
    global FAST
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast-mode", action="store_true")
    FAST = parser.parse_args().fast_mode
    torch.set_num_threads(1)
    for dtype in (torch.float64, torch.float32):
        for name, run in (("gradcheck", ours), ("torch.autograd.gradcheck", torchs)):
            refused = false_alarms = caught = mutants = 0
            notes = []
            for entry in CORPUS:
                verdict = run(entry.make(None).apply, entry.inputs(dtype))
                refused += verdict.startswith("refused")
                if verdict != "pass":
                    false_alarms += not verdict.startswith("refused")
                    notes.append(f"  correct {entry.name}: {verdict[:150]}")
                for bug in entry.bugs:
                    mutants += 1
                    verdict = run(entry.make(bug).apply, entry.inputs(dtype))
                    refused += verdict.startswith("refused")
                    caught += verdict == "fail"
                    if verdict != "fail":
                        notes.append(f"  missed {entry.name} / {bug}: {verdict[:150]}")
            print(
                f"{name} {str(dtype).removeprefix('torch.')}: {len(CORPUS)} correct Functions, "
                f"{refused} calls refused, {false_alarms} correct ones not passed, "
                f"{caught}/{mutants} mutants caught"
            )
            for note in notes:
                print(note)


if __name__ == "__main__":
    main()
