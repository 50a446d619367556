"""Reference (support): the float64 side computes in float64, whatever tensors f meets.

A float32 check is judged against f differentiated in float64 (``gradcheck._numerics.engine``)
and, for its tolerance, against the analytic side re-run on float64 copies
(``gradcheck._judge.tolerance``). Copying the *inputs* to float64 is not enough for the code
people write: ``lambda W: torch.tanh(W @ x).sum()`` with a float32 ``x`` from the enclosing
scope, a module's float32 parameters and buffers, ``torch.zeros(n, dtype=torch.float32)`` or
``y.float()`` inside f either raise on float64 inputs (``mm`` will not mix dtypes) or compute in
float32 again. Either way the float64 side is lost and the check falls back to ``sqrt(eps)``.

:class:`Float64Mode` is a ``TorchFunctionMode``: every torch function and tensor method f calls
(``F.linear`` inside ``nn.Linear`` included) gets its floating tensor arguments below float64
cast to float64 (complex64 to complex128) and its dtype arguments raised the same way;
``.float()``, ``.half()`` and ``.bfloat16()`` become ``.double()``, and the default dtype is
float64 while it is on, so ``torch.tensor(0.1)`` is float64 too. The casts are ordinary,
differentiable ``Tensor.to`` calls, so autograd of f (and a custom Function's backward, which
runs on the calling thread under the same mode) stays intact. A torch-function mode and not a
dispatch mode: it runs above autograd, so the casts are recorded like any other op, and a
captured tensor is cast where f uses it.

In-place operations keep their target: ``y.add_(x)``, ``y[i] = v`` and ``out=`` write into the
tensor f holds, not into a float64 copy of it (the other arguments are raised).

:class:`Promotion` decides once per function whether its float64 run needs the mode: it calls
the function plainly first, so code that already runs in float64 is untouched; where that
raises, or returns a floating tensor below float64, it runs again under the mode, and from then
on always under it (a hand formula only where its plain run raises: :class:`Promotion`).
Where the mode cannot help either, the first error stands and the check
says why (``Numerics.policy_reason``), as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_WIDE_NAMES = {"float32": "float64", "float16": "float64", "bfloat16": "float64"}
_WIDE_COMPLEX = {"complex64": "complex128", "complex32": "complex128"}
LOW = (*_WIDE_NAMES, *_WIDE_COMPLEX)
_INPLACE_DUNDERS = frozenset(
    {
        "__setitem__",
        "__iadd__",
        "__isub__",
        "__imul__",
        "__itruediv__",
        "__ifloordiv__",
        "__ipow__",
        "__imod__",
        "__iand__",
        "__ior__",
        "__ixor__",
        "__ilshift__",
        "__irshift__",
        "__imatmul__",
    }
)


def _wide_dtype(dtype: Any) -> Any:
    """float64 for a floating dtype below it, complex128 for complex64; else the dtype."""
    import torch

    name = str(dtype).removeprefix("torch.")
    wide = _WIDE_NAMES.get(name) or _WIDE_COMPLEX.get(name)
    return getattr(torch, wide) if wide else dtype


def _raise(value: Any, dtypes: bool = True) -> Any:
    """One argument of a torch call, its floating precision raised to float64 (a dtype
    argument too, with ``dtypes``)."""
    import torch

    if isinstance(value, torch.Tensor):
        wide = _wide_dtype(value.dtype)
        return value if wide is value.dtype else value.to(wide)
    if dtypes and isinstance(value, torch.dtype):
        return _wide_dtype(value)
    if isinstance(value, (list, tuple)) and any(
        isinstance(v, (torch.Tensor, torch.dtype, list, tuple)) for v in value
    ):
        raised = [_raise(v, dtypes) for v in value]
        return tuple(raised) if isinstance(value, tuple) else raised
    return value


def _writes_first(func: Any) -> bool:
    """Whether ``func`` writes into its first argument (``add_``, ``__setitem__``, ...)."""
    name = getattr(func, "__name__", "")
    return name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__"))


def float64_mode() -> Any:
    """A new :class:`Float64Mode` (torch imported here, not at module import)."""
    import torch
    from torch.overrides import TorchFunctionMode

    narrowing = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}
    backwards = {torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward}

    class Float64Mode(TorchFunctionMode):  # type: ignore[misc]
        """Every torch call computes in float64 (module docstring)."""

        def __torch_function__(
            self,
            func: Any,
            types: Any,
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            kwargs = dict(kwargs or {})
            if func in backwards:
                # The backward runs while this mode is set aside (torch sets a mode aside
                # while it handles a call): a custom Function's backward that mixes a
                # captured float32 tensor into float64 gradients is widened per kernel.
                with _widen_kernels():
                    return func(*args, **kwargs)
            if func in narrowing:
                func = torch.Tensor.double
            keep = args[:1] if args and _writes_first(func) else ()
            args = (*keep, *(_raise(a) for a in args[len(keep) :]))
            out = kwargs.pop("out", None)
            kwargs = {k: _raise(v) for k, v in kwargs.items()}
            if out is not None:
                kwargs["out"] = out
            return func(*args, **kwargs)

    return Float64Mode()


def _widen_kernels() -> Any:
    """A ``TorchDispatchMode`` for a backward run from inside :func:`float64_mode`: a kernel
    that mixes float64 tensors with floating ones below float64 gets the latter in float64.
    Only mixed calls change; writes into a tensor (in-place, ``out=``) keep their target."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class WidenKernels(TorchDispatchMode):  # type: ignore[misc]
        def __torch_dispatch__(
            self,
            func: Any,
            types: Any,
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            kwargs = kwargs or {}
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            wide = any(t.dtype in (torch.float64, torch.complex128) for t in tensors)
            writes = func._schema.is_mutable or "out" in kwargs
            if wide and not writes:
                # dtype arguments stay: the engine casts gradients to their inputs' dtypes
                args = tuple(_raise(a, dtypes=False) for a in args)
                kwargs = {k: _raise(v, dtypes=False) for k, v in kwargs.items()}
            return func(*args, **kwargs)

    return WidenKernels()


@contextlib.contextmanager
def computing_in_float64() -> Iterator[None]:
    """Run the block with every torch call in float64 (:func:`float64_mode`, and the default
    dtype float64); re-entering it is a no-op."""
    import torch

    if getattr(_STATE, "active", False):
        yield
        return
    previous = torch.get_default_dtype()
    _STATE.active = True
    try:
        torch.set_default_dtype(torch.float64)
        with float64_mode():
            yield
    finally:
        torch.set_default_dtype(previous)
        _STATE.active = False


_STATE = threading.local()


def below_float64(out: Any) -> bool:
    """Whether a value holds a floating torch tensor below float64 (in a tuple/list/dict too)."""
    if isinstance(out, dict):
        return any(below_float64(v) for v in out.values())
    if isinstance(out, (tuple, list)):
        return any(below_float64(v) for v in out)
    dtype = getattr(out, "dtype", None)
    if type(out).__module__.split(".")[0] != "torch" or dtype is None:
        return False
    return str(dtype).removeprefix("torch.") in (*_WIDE_NAMES, *_WIDE_COMPLEX)


class Promotion:
    """Whether one function's float64 run needs :func:`computing_in_float64` (module
    docstring): undecided until its first float64 run, then fixed.

    Attributes:
        needed: None until decided; then whether the function runs under the mode.
        narrow: whether a plain run that returns a tensor below float64 is run again under the
            mode (f: yes). For a hand formula no: its result may be built from float32 values
            it captured that were themselves computed from x (``s = sigmoid(x)`` outside,
            ``lambda x: s * (1 - s)``); their rounding happened outside the formula, so its
            float64 run would not measure it, and the formula keeps the default rule. Only
            a formula whose plain float64 run raises (``w @ x`` with a float32 ``x``) is run
            under the mode.
    """

    def __init__(self, narrow: bool = True) -> None:
        self.needed: bool | None = None
        self.narrow = narrow

    def run(self, thunk: Callable[[], Any]) -> Any:
        """``thunk()`` for a float64 run of the function, under the mode where needed."""
        if self.needed:
            with computing_in_float64():
                return thunk()
        if self.needed is False:
            return thunk()
        plain: Exception | None = None
        try:
            out = thunk()
        except Exception as exc:
            plain, out = exc, None
        if plain is None and not (self.narrow and below_float64(out)):
            self.needed = False
            return out
        # The plain run raised or computed below float64: the mode's run, where it works.
        try:
            with computing_in_float64():
                wide = thunk()
        except Exception:
            wide, self.needed = None, False
        else:
            self.needed = True
        if self.needed:
            return wide
        if plain is not None:
            raise plain
        return out
