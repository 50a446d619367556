"""Sample (property-based): hypothesis strategies for well-scaled float arrays and tensors.

A gradient check at a single point vouches for that point only. A gradient that is wrong on
part of the domain (a branch for small x, a special case at a boundary) passes at most random
points; hypothesis tries many points, finds one where the check fails and shrinks it to a
simple one. These strategies draw the inputs such a test needs.

Why "well-scaled": a central difference at x evaluates f on [x - h, x + h] with
h = eps^(1/3) max(1, |x|). NaN, infinities, subnormals and values near the top of the float
range test the float format, not the gradient, so the values drawn here are finite, normal
(no subnormals), at most ``max_magnitude`` in size (default 10) and, when asked, at least
``min_magnitude`` in size (or zero) and at least ``margin`` away from the points in ``avoid``
(the kinks of a function that is not differentiable everywhere, such as 0 for ``abs``).

The pattern for a property-based gradient check::

    import numpy as np
    from hypothesis import given, settings

    from gradcheck import assert_gradients_close
    from gradcheck.strategies import arrays


    def softplus(x):
        return np.sum(np.logaddexp(0.0, x))


    def softplus_grad(x):
        return 1.0 / (1.0 + np.exp(-x))


    @settings(deadline=None)  # a check evaluates f 4 times per element: no per-example deadline
    @given(x=arrays((3, 2)))
    def test_softplus_gradient(x):
        assert_gradients_close(softplus, x, softplus_grad)

For torch code use ``tensors((3, 2), dtype="float32")`` and leave ``grad`` out (autograd). When
the test fails, hypothesis prints the shrunk input as the falsifying example and the assertion
shows the worst elements. Keep shapes small: every element costs four evaluations of f.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck._numerics import arrays as _arrays

__all__ = ["arrays", "floats", "tensors"]

Shape = int | tuple[int, ...] | st.SearchStrategy[int] | st.SearchStrategy[tuple[int, ...]]

# The float width hypothesis draws in for each dtype; bfloat16 is drawn as float32 and rounded.
_WIDTH = {"float16": 16, "float32": 32, "float64": 64, "bfloat16": 32}


def floats(
    dtype: Any = "float64",
    *,
    max_magnitude: float = 10.0,
    min_magnitude: float = 0.0,
    avoid: Iterable[float] = (),
    margin: float = 1e-3,
) -> st.SearchStrategy[float]:
    """Well-scaled floats exactly representable in ``dtype`` (see the module docstring).

    Args:
        dtype: 'float64', 'float32' or 'float16' (a name, a NumPy or a torch dtype).
        max_magnitude: the largest ``|x|`` drawn (default 10).
        min_magnitude: the smallest non-zero ``|x|`` drawn; above zero, zero is not drawn.
        avoid: points to keep away from, such as the kinks of a piecewise function.
        margin: how far from each point in ``avoid`` every value stays.
    """
    name = _float_dtype(dtype, allow_bfloat16=True)
    _check_bounds(name, max_magnitude, min_magnitude, margin)
    options: dict[str, Any] = {
        "allow_nan": False,
        "allow_infinity": False,
        "allow_subnormal": False,
        "width": _WIDTH[name],
    }
    if min_magnitude == 0.0:
        values = st.floats(-max_magnitude, max_magnitude, **options)
    else:
        values = st.floats(min_magnitude, max_magnitude, **options) | st.floats(
            -max_magnitude, -min_magnitude, **options
        )
    kinks = tuple(float(p) for p in avoid)
    if kinks:
        values = values.filter(lambda x: all(abs(x - p) >= margin for p in kinks))
    return values


def arrays(
    shape: Shape,
    dtype: Any = "float64",
    *,
    max_magnitude: float = 10.0,
    min_magnitude: float = 0.0,
    avoid: Iterable[float] = (),
    margin: float = 1e-3,
) -> st.SearchStrategy[np.ndarray]:
    """NumPy arrays of ``shape`` and ``dtype`` whose elements are :func:`floats`.

    ``shape`` is an int, a tuple, or a strategy for shapes such as
    ``hypothesis.extra.numpy.array_shapes(max_side=3)``. The element options are those of
    :func:`floats`. NumPy has no bfloat16: use :func:`tensors` for it.
    """
    name = _float_dtype(dtype, allow_bfloat16=False)
    elements = floats(
        name, max_magnitude=max_magnitude, min_magnitude=min_magnitude, avoid=avoid, margin=margin
    )
    return hnp.arrays(np.dtype(name), shape, elements=elements)


def tensors(shape: Shape, dtype: Any = "float64", **options: Any) -> st.SearchStrategy[Any]:
    """CPU torch tensors of ``shape`` and ``dtype``, drawn as :func:`arrays` and copied.

    ``options`` are the element options of :func:`floats` (``max_magnitude``,
    ``min_magnitude``, ``avoid``, ``margin``). ``dtype`` may also be 'bfloat16': the values are
    drawn as float32 and rounded, so they may land up to half a bfloat16 unit outside the
    bounds. torch is imported when the first example is drawn, not when this module is.
    """
    name = _float_dtype(dtype, allow_bfloat16=True)
    drawn = "float32" if name == "bfloat16" else name
    return arrays(shape, drawn, **options).map(lambda a: _to_tensor(a, name))


def _to_tensor(values: np.ndarray, dtype: str) -> Any:
    import torch

    return torch.tensor(values).to(getattr(torch, dtype))


def _float_dtype(dtype: Any, *, allow_bfloat16: bool) -> str:
    """The dtype's plain name, or a ValueError that lists what is accepted."""
    if isinstance(dtype, str) or _arrays.is_torch(dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
    accepted = [d for d in _WIDTH if allow_bfloat16 or d != "bfloat16"]
    if name not in accepted:
        hint = " (NumPy has no bfloat16: draw tensors(...) instead)" if name == "bfloat16" else ""
        raise ValueError(
            f"dtype {dtype!r} is not a floating dtype gradcheck can draw{hint}; "
            f"use one of {', '.join(accepted)}"
        )
    return name


def _check_bounds(dtype: str, max_magnitude: float, min_magnitude: float, margin: float) -> None:
    largest = float(np.finfo(np.dtype("float32" if dtype == "bfloat16" else dtype)).max)
    if not 0.0 < max_magnitude <= largest:
        raise ValueError(
            f"max_magnitude={max_magnitude!r} must be positive and at most {largest:.6g}, the "
            f"largest {dtype}; well-scaled inputs are of order 1 (the default is 10)"
        )
    if not 0.0 <= min_magnitude < max_magnitude:
        raise ValueError(
            f"min_magnitude={min_magnitude!r} must be at least 0 and below "
            f"max_magnitude={max_magnitude!r}"
        )
    if margin < 0.0:
        raise ValueError(f"margin={margin!r} must be non-negative: it is a distance")
