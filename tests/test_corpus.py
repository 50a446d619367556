"""The custom-Function corpus (tests/corpus_functions.py), called as torch users call
torch.autograd.gradcheck: no call refused, no correct Function fails or is inconclusive
(float64 and float32 inputs), and the mutants are caught."""

from __future__ import annotations

import pytest
import torch
from corpus_functions import CORPUS

from gradcheck import check

torch.set_num_threads(1)

# Mutants whose error is below what float32 arithmetic can resolve: the same backward in
# float32 differs from the exact one by about as much as the bug (sqrt(2/pi) written 0.7979 is
# a 1e-5 relative error; float32's rtol is 3e-4), so in float32 they are not bugs to catch.
BELOW_FLOAT32 = {"truncated_sqrt_2_over_pi", "eps_added_twice", "modulating_slope_off_by_0.1%"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_the_correct_function_passes_and_its_mutants_fail(entry, dtype):
    right = check(entry.make(None).apply, entry.inputs(dtype))
    assert right.verdict == "pass", right.summary() + "\n" + right.table()
    for bug in entry.bugs:
        if dtype == torch.float32 and bug in BELOW_FLOAT32:
            continue
        wrong = check(entry.make(bug).apply, entry.inputs(dtype))
        assert wrong.verdict == "fail", (bug, wrong.summary())


def test_a_tuple_output_mutant_names_the_output_whose_grad_it_drops():
    lltm = next(e for e in CORPUS if e.name.startswith("LLTM"))
    wrong = check(lltm.make("ignores_grad_cell").apply, lltm.inputs(torch.float64))
    assert wrong.outputs is not None
    assert {n for t in wrong.outputs.traced for n in t.outputs} == {"output 1"}
