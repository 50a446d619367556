"""Collect: a case's inputs for one row: drawn from its seed, cast to the row's dtype and array
library, constants bound so that the check sees only the differentiated inputs.

The runner (gradient cases), ``gradcheck._cases.descent`` (descent cases) and the step-size
sweeps all prepare a row's function and gradient source here, so that they judge the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck._cases import timeout as _timeout
from gradcheck._cases.case import AnyCase, Descent, InputGenerator, Source
from gradcheck._numerics import arrays as _arrays
from gradcheck._sources.reference import Autograd, Formula, GradientSource


def sample_inputs(item: AnyCase, row_seed: int) -> dict[str, Any]:
    """The case's inputs with generators drawn (in declaration order) from ``row_seed``."""
    rng = np.random.default_rng(row_seed)
    declared = item.params if isinstance(item, Descent) else item.inputs
    values: dict[str, Any] = {}
    for name, value in declared.items():
        if isinstance(value, InputGenerator) and not isinstance(value, np.ndarray):
            drawn = np.asarray(value.sample(rng), dtype=np.float64)
            values[name] = drawn
        else:
            values[name] = value
    return values


def uses_torch(item: AnyCase, source: Source) -> bool:
    return item.arrays == "torch" or (item.arrays == "auto" and source.is_autograd)


def cast(value: Any, dtype: str, torch_arrays: bool) -> Any:
    """A fresh copy of ``value`` in the row's library; floating values cast to ``dtype``.

    Python floats stay Python floats (they are constants like a learning rate); integer arrays
    (labels, indices) keep their integer dtype.
    """
    if isinstance(value, float):
        return value
    array = _arrays.to_numpy64(value) if _arrays.is_torch(value) else np.asarray(value)
    array = array.astype(np.dtype(dtype)) if array.dtype.kind == "f" else array.copy()
    if not torch_arrays:
        return np.array(array, copy=True)
    import torch

    return torch.from_numpy(np.array(array, copy=True))


def differentiated(value: Any, dtype: str, torch_arrays: bool) -> Any:
    """A differentiated input: always an array/tensor of ``dtype`` (a float becomes 0-d)."""
    array = np.asarray(_arrays.to_numpy64(value), dtype=np.dtype(dtype))
    if not torch_arrays:
        return array
    import torch

    return torch.from_numpy(array)


class Constants:
    """A case's constants (data, targets), cast to the precision of the differentiated inputs.

    They follow the inputs' dtype at every call: float32 when autograd or a formula works in
    float32, float64 when the engine promotes a float32 case to float64 (see the float32 caveat
    in ``gradcheck._numerics.engine``): a float32 constant would otherwise pull f back to float32.
    """

    def __init__(self, values: Mapping[str, Any], torch_arrays: bool) -> None:
        self.values = dict(values)
        self.torch_arrays = torch_arrays
        self._cast: dict[str, dict[str, Any]] = {}

    def like(self, diff: Sequence[Any]) -> dict[str, Any]:
        dtype = _arrays.dtype_name(diff[0]) if diff else "float64"
        if dtype not in _arrays.FLOAT_EPS:
            dtype = "float64"
        if dtype not in self._cast:
            self._cast[dtype] = {
                k: cast(v, dtype, self.torch_arrays) for k, v in self.values.items()
            }
        return self._cast[dtype]


def bind(f: Callable[..., Any], wrt: Sequence[str], constants: Constants) -> Callable[..., Any]:
    """f as a function of the differentiated inputs alone, positionally, constants bound."""

    def bound(*diff: Any) -> Any:
        _timeout.raise_if_expired()  # f may have swallowed the deadline: it is not called again
        return f(**constants.like(diff), **dict(zip(wrt, diff, strict=True)))

    return bound


def gradient_source(source: Source, wrt: Sequence[str], constants: Constants) -> GradientSource:
    """The ``_reference`` gradient source for a case's source: Autograd, or a bound Formula."""
    if source.fn is None:
        return Autograd()
    fn = source.fn
    wants_cotangent = _accepts_cotangent(fn)

    def formula(*diff: Any, cotangent: Any = None) -> Any:
        _timeout.raise_if_expired()
        kwargs = {**constants.like(diff), **dict(zip(wrt, diff, strict=True))}
        if cotangent is not None and wants_cotangent:
            kwargs["cotangent"] = cotangent
        out = fn(**kwargs)
        if isinstance(out, Mapping):
            missing = [w for w in wrt if w not in out]
            if missing:
                raise ValueError(
                    f"the {source.name} gradient returned a mapping without {missing}; "
                    f"return one entry per differentiated input {list(wrt)}"
                )
            return tuple(out[w] for w in wrt)
        return out

    return Formula(formula, name=source.name)


def _accepts_cotangent(fn: Callable[..., Any]) -> bool:
    from gradcheck._sources.reference import accepts_keyword

    return accepts_keyword(fn, "cotangent")
