"""Differentiate (support): NumPy arrays and torch tensors behind one small adapter.

torch is imported only when the caller hands us a tensor, so NumPy-only users never pay for it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# The dtypes gradcheck can differentiate in, by name, with their unit roundoff.
FLOAT_EPS: dict[str, float] = {
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
    "float32": float(np.finfo(np.float32).eps),
    "float64": float(np.finfo(np.float64).eps),
}


# The smallest normal number of each dtype: below it a value keeps fewer significant bits, so a
# gradient that small cannot be judged to rtol in that dtype.
FLOAT_TINY: dict[str, float] = {
    "float16": float(np.finfo(np.float16).tiny),
    "bfloat16": float(np.finfo(np.float32).tiny),
    "float32": float(np.finfo(np.float32).tiny),
    "float64": float(np.finfo(np.float64).tiny),
}


def is_torch(x: object) -> bool:
    """True for a torch tensor, decided without importing torch."""
    return type(x).__module__.split(".")[0] == "torch"


def is_jax(x: object) -> bool:
    """True for a JAX array (or tracer), decided without importing jax: a program that never
    imported jax holds none."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, getattr(jax, "Array", ()))


def dtype_name(x: Any) -> str:
    """The dtype of an array or tensor as a plain name: 'float32', 'int64', ..."""
    if is_torch(x):
        return str(x.dtype).removeprefix("torch.")
    if is_jax(x):  # also a tracer, which np.asarray cannot read
        return str(x.dtype)
    if isinstance(x, float):
        return "float64"
    return str(np.asarray(x).dtype)


def eps(dtype: str) -> float:
    return FLOAT_EPS[dtype]


def validate_input(x: Any, position: int) -> None:
    """Raise a TypeError that says what to pass instead, for anything we cannot differentiate."""
    if isinstance(x, bool) or not (
        isinstance(x, (np.ndarray, np.floating, float)) or (is_torch(x) and hasattr(x, "dtype"))
    ):
        raise TypeError(
            f"input {position} is a {type(x).__name__}; gradcheck differentiates NumPy arrays, "
            "torch tensors and Python floats. Convert it, e.g. np.asarray(x, dtype=np.float64)."
        )
    name = dtype_name(x)
    if name not in FLOAT_EPS:
        raise TypeError(
            f"input {position} has dtype {name}; gradients need a real floating dtype. "
            "Pass it as float64 (x.astype(np.float64) or x.double()), or keep it out of the "
            "differentiated inputs by closing over it in f."
        )


def to_numpy64(x: Any) -> np.ndarray:
    """A float64 NumPy copy of an array, tensor or float."""
    if is_torch(x):
        import torch

        return np.array(x.detach().to(device="cpu", dtype=torch.float64).numpy(), copy=True)
    return np.array(x, dtype=np.float64, copy=True)


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The NumPy dtype of a name; bfloat16 is ml_dtypes' (it comes with jax), imported only
    for a bfloat16 NumPy array, which only exists where ml_dtypes was imported already."""
    if dtype == "bfloat16":
        import ml_dtypes

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype)


def working_copy(x: Any, dtype: str) -> Any:
    """A private, contiguous copy of x in `dtype`, of x's own kind, that we may perturb."""
    if is_torch(x):
        import torch

        return x.detach().to(dtype=getattr(torch, dtype)).clone().contiguous()
    return np.array(x, dtype=numpy_dtype(dtype), copy=True, order="C", ndmin=0)


def values_in(dtype: str, x: Any) -> np.ndarray:
    """x's values rounded to `dtype`, as a flat NumPy array (step arithmetic happens here)."""
    if dtype == "bfloat16" and "ml_dtypes" in sys.modules:  # a JAX check: no torch needed
        return to_numpy64(x).astype(numpy_dtype(dtype)).astype(np.float64).reshape(-1)
    if dtype == "bfloat16":
        # NumPy has no bfloat16; the realised-step arithmetic goes through torch instead.
        import torch

        return to_numpy64(torch.as_tensor(to_numpy64(x)).to(torch.bfloat16)).reshape(-1)
    return to_numpy64(x).astype(np.dtype(dtype)).reshape(-1)


def rounded(dtype: str, values: np.ndarray) -> np.ndarray:
    """float64 values rounded to `dtype` and back: what a perturbed element really holds."""
    if dtype == "bfloat16" and "ml_dtypes" in sys.modules:
        return np.asarray(values, dtype=np.float64).astype(numpy_dtype(dtype)).astype(np.float64)
    if dtype == "bfloat16":
        import torch

        return np.asarray(torch.as_tensor(values).to(torch.bfloat16).to(torch.float64).numpy())
    if dtype == "float64":  # nothing to round: no copies (the screen's rows are n wide)
        return np.asarray(values, dtype=np.float64)
    return values.astype(np.dtype(dtype)).astype(np.float64)


def set_flat(buffer: Any, index: int, value: float) -> None:
    """Write one element of a working copy, by flat index."""
    if is_torch(buffer):
        buffer.view(-1)[index] = value
    else:
        buffer.reshape(-1)[index] = value


def scalar_value(out: Any) -> float:
    """The float value of f's output, which must be a single number."""
    if is_torch(out) or isinstance(out, (np.ndarray, np.generic)):
        size = out.numel() if is_torch(out) else out.size
        if size != 1:
            raise ValueError(
                f"f returned an output of shape {output_shape(out)}; a gradient needs a scalar. "
                "Reduce it (e.g. .sum()), or use check(..., cotangent=v) to compare "
                "vector-Jacobian products."
            )
    elif not isinstance(out, (int, float)):
        raise TypeError(
            f"f returned a {type(out).__name__}; it must return a number, a 0-d array or tensor."
        )
    return float(out.item() if hasattr(out, "item") else out)


def output_dtype(out: Any) -> str:
    """The dtype f computed its output in; Python floats count as float64.

    An integer or boolean output (``return 3``, a count) has no gradient to compare: a
    TypeError says so, and what to return instead.
    """
    if isinstance(out, float):
        return "float64"
    name = dtype_name(out)
    if name.startswith(("int", "uint", "bool")):
        shown = "a Python int" if isinstance(out, int) else f"an output of dtype {name}"
        raise TypeError(
            f"f returned {shown} ({printable_value(out)}); a gradient needs a floating-point "
            "output: compute f in floating point, e.g. return float(...) or x.sum() of a float "
            "array"
        )
    return name


def printable_value(out: Any) -> str:
    text = repr(out)
    return text if len(text) <= 40 else text[:37] + "..."


def output_shape(out: Any) -> tuple[int, ...]:
    if is_torch(out):
        return tuple(out.shape)
    return tuple(np.shape(out))


def like(x: Any, values: np.ndarray) -> Any:
    """float64 values given the kind, dtype, device and shape of x."""
    if is_torch(x):
        import torch

        return torch.as_tensor(values.reshape(tuple(x.shape)), dtype=x.dtype, device=x.device)
    if isinstance(x, float):
        return float(values.reshape(()))
    return values.reshape(np.shape(x)).astype(np.asarray(x).dtype)


def filled(buffer: Any, values: np.ndarray) -> Any:
    """A copy of a working buffer holding the given flat values."""
    if is_torch(buffer):
        import torch

        out = buffer.clone()
        out.view(-1).copy_(torch.as_tensor(values, dtype=out.dtype))
        return out
    out_np = np.array(buffer, copy=True)
    out_np.reshape(-1)[:] = values
    return out_np
