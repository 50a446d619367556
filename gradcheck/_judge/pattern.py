"""Compare (patterns in a failure): what the shape of an error says about the bug behind it.

A wrong backward is rarely wrong at random. One pattern is common enough to name: the failing
elements of each slice along the first axis (each sample of a batch) are all off by about the
same amount. The true gradient of ``y = h((x - mean(x)) / std(x))`` holds a term from the mean,
``-mean(dy/dx)``, the same for every element of the sample; a backward that takes the mean
(or the whole normalisation) as a constant (``.detach()``, a statistic computed under
``no_grad``) leaves exactly that term out, and the error is a constant per sample.
"""

from __future__ import annotations

import numpy as np

from gradcheck._judge.verdict import InputComparison, Verdict

# The failing elements of a slice agree to this fraction of their mean error.
SAME_AMOUNT = 0.1
FEWEST_ELEMENTS = 4


def constant_offset(c: InputComparison) -> str:
    """A sentence when the failing elements of every slice along the first axis are off by
    about the same amount (module docstring); '' otherwise."""
    if len(c.shape) < 2 or c.element_verdicts.size == 0:
        return ""
    failing = c.element_verdicts.reshape(-1) == Verdict.FAIL.value
    if int(np.sum(failing)) < FEWEST_ELEMENTS:
        return ""
    flat = np.arange(failing.size) if c.elements is None else np.asarray(c.elements)
    error = (c.analytic.reshape(-1) - c.numeric.reshape(-1))[failing]
    sample = np.unravel_index(flat[failing], c.shape)[0]
    offsets = []
    for s in np.unique(sample):
        e = error[sample == s]
        mean = float(np.mean(e))
        if e.size < 2 or not mean or float(np.ptp(e)) > SAME_AMOUNT * abs(mean):
            return ""
        offsets.append(f"{int(s)}: {mean:.3g}")
    return (
        f"the failing elements of each slice along the first axis are off by about the same "
        f"amount (slice: a - n = {', '.join(offsets[:4])}): a constant offset per sample is "
        "what a backward misses when it takes a statistic over the sample as a constant (a "
        "detached mean or std, an input normalisation or standardisation)"
    )
