"""Check (user mistakes): what a check says about inputs and an f it cannot judge as given.

* :func:`refuse_in_place`: f changed the copies it was called with. The differences call f
  again at points next to x, so such an f computes them somewhere else; the check stops with
  an error that says so (the user's own inputs are safe: f only ever gets copies).
* :func:`nonfinite_inputs_named`: NaN or Inf in the inputs is named first among the reasons,
  before the NaN/Inf verdicts that follow from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcheck._check.result import CheckResult
from gradcheck._numerics import arrays as _arrays
from gradcheck._sources import call as _front


def refuse_in_place(
    buffers: Sequence[Any], items: tuple[Any, ...], call: _front.Call | None
) -> None:
    """Raise when f changed ``buffers``, the copies of ``items`` it was called with."""
    for k, (after, before) in enumerate(zip(buffers, items, strict=True)):
        new, old = _arrays.to_numpy64(after).reshape(-1), _arrays.to_numpy64(before).reshape(-1)
        changed = np.flatnonzero((new != old) & ~(np.isnan(new) & np.isnan(old)))
        if changed.size:
            first = int(changed[0])
            shape = _arrays.output_shape(before)
            at = tuple(int(i) for i in np.unravel_index(first, shape)) if shape else ()
            name = call.label(k) if call is not None else f"input {k}"
            raise ValueError(
                f"f modifies its input in place: {name} changed during the call at element "
                f"{at} ({old[first]:.6g} became {new[first]:.6g}). gradcheck calls f again at "
                "points next to x, so f must leave its inputs as they are: compute into a new "
                "array (x = x * 2, not x *= 2; x = x.clone() first in torch)"
            )


def nonfinite_inputs_named(result: CheckResult, call: _front.Call) -> CheckResult:
    """The result with a first reason per input that holds NaN or Inf: the NaN/Inf verdicts
    that follow start there, in the inputs, not in f or its gradient."""
    named = []
    for k, item in enumerate(call.items):
        values = _arrays.to_numpy64(item)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            kinds = "NaN" if np.isnan(values.reshape(-1)[bad]).all() else "NaN/Inf"
            at = tuple(int(i) for i in np.unravel_index(int(bad[0]), values.shape))
            named.append(
                f"{call.label(k)} holds {kinds} at {bad.size} element(s), the first at {at}: "
                "there is no gradient to check there; pass finite inputs"
            )
    if not named:
        return result
    return dataclasses.replace(result, reasons=(*named, *result.reasons))
