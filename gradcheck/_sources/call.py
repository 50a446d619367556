"""Surface (support): the call as the user writes it, and the part of it the engine sees.

``check(f, inputs, grad)`` takes ``inputs`` as a user passes them to f: tensors, arrays, Python
numbers, bools, None, strings, tuples, integer and bool tensors, or a dict of named inputs
(``f(**inputs)``). The engine differentiates real floating arrays only, so this module splits
the call in two:

* **The differentiated inputs** (:func:`differentiated`): with torch tensors among the inputs,
  torch's rule: if any tensor requires grad, exactly those; otherwise every floating or complex
  tensor. Without torch, every floating or complex NumPy array and Python float. ``wrt=``
  (positions, or names for dict inputs) overrides both.
* **The constants**: everything else. They reach f unchanged, never converted: a Python float
  stays a float, a ``dim`` stays an int, a mask stays a bool tensor. (The one exception: a
  tensor made under ``torch.inference_mode()`` is cloned outside it, since autograd cannot save
  an inference tensor for backward.)

:class:`Call` is f with its constants bound: the engine calls it with the differentiated inputs
only, so the judging loop needs no change.

Complex numbers, torch's convention. A complex input ``z = a + ib`` is differentiated as the
real pair ``(a, b)`` along a new last axis (element ``(..., 0)`` is the real part, ``(..., 1)``
the imaginary part). A complex output ``y`` contributes ``Re(sum(conj(v) * y))`` to the
contracted scalar L, with a complex cotangent ``v``. The gradient torch computes for ``z`` (the
conjugate Wirtinger derivative times two) is ``dL/da + i dL/db``, which is exactly the pair the
engine differentiates; so torch's gradients and a hand formula's complex gradients are compared
as ``(real, imag)`` pairs. A backward that forgets a ``conj()`` is off in the imaginary parts.

Several outputs. f may return a tuple, list or dict of tensors/arrays. The floating and complex
ones (for torch: those that require grad when the differentiated inputs do) are judged, each
with its own part of one seeded random cotangent; integer and non-differentiable outputs are
skipped. :class:`Call` hands the engine their concatenation, flattened (``Outputs``); a single
real output is handed over as it is.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck._numerics import arrays as _arrays
from gradcheck._sources import promote as _promote
from gradcheck._sources.reference import CallError, accepts_keyword

COMPLEX = ("complex64", "complex128")
# The real dtype of each complex dtype's parts.
COMPLEX_PARTS = {"complex64": "float32", "complex128": "float64"}


def is_floating(x: Any) -> bool:
    """A floating or complex tensor/array (or a Python float): what can be differentiated."""
    if isinstance(x, bool):
        return False
    if isinstance(x, float):
        return True
    if _arrays.is_torch(x) and hasattr(x, "dtype"):
        return bool(x.dtype.is_floating_point or x.dtype.is_complex)
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype.kind in "fc" or str(x.dtype) == "bfloat16"  # ml_dtypes' (with jax)
    return False


def _describe(x: Any) -> str:
    if _arrays.is_torch(x) and hasattr(x, "dtype"):
        return f"a {_arrays.dtype_name(x)} tensor"
    if isinstance(x, (np.ndarray, np.generic)):
        return f"a {x.dtype} array"
    return f"a {type(x).__name__}"


@dataclass(frozen=True)
class Output:
    """One judged output of f.

    Fields:
        name: how reports name it ('' for f's only output; 'output 1'; a dict key).
        key: its index or key in f's return value (None for a single output).
        shape: its shape.
        complex: whether it is complex (its real and imaginary parts are both judged).
        offset, size: where its (real) values lie in the flattened concatenation.
    """

    name: str
    key: int | str | None
    shape: tuple[int, ...]
    complex: bool
    offset: int
    size: int

    def element(self, flat: int) -> tuple[int, ...]:
        """The output element (index into the output) of entry ``flat`` of its values."""
        full = self.shape + ((2,) if self.complex else ())
        index = tuple(int(i) for i in np.unravel_index(flat, full)) if full else ()
        return index[:-1] if self.complex else index


@dataclass(frozen=True)
class Outputs:
    """How f's return value maps to the flat values the engine differentiates.

    Fields:
        kind: 'single' (one tensor/array/number), 'tuple', 'list' or 'dict'.
        entries: the judged outputs, in order.
        skipped: the outputs not judged, each with why.
        keys: every index or key of f's return value, judged or not ('single': none).
    """

    kind: str
    entries: tuple[Output, ...]
    skipped: tuple[str, ...] = ()
    keys: tuple[Any, ...] = ()

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def flat_shape(self) -> tuple[int, ...]:
        """The shape of :meth:`flatten`'s value."""
        if self.kind != "single":
            return (self.size,)
        entry = self.entries[0]
        return entry.shape + ((2,) if entry.complex else ())

    @property
    def several(self) -> bool:
        return self.kind != "single"

    def owner(self, flat: int) -> tuple[Output, int]:
        """The output that entry ``flat`` of the concatenation belongs to, and its entry there."""
        for entry in self.entries:
            if entry.offset <= flat < entry.offset + entry.size:
                return entry, flat - entry.offset
        raise IndexError(flat)

    def flatten(self, out: Any) -> Any:
        """The engine's view of f's return value: a single real output as it is, otherwise
        the real views of the judged outputs, flattened and concatenated."""
        if self.kind == "single":
            return _real_view(out) if self.entries[0].complex else out
        parts = [_real_view(_member(out, e.key)) for e in self.entries]
        if _arrays.is_torch(parts[0]):
            import torch

            return torch.cat([p.reshape(-1) for p in parts])
        return np.concatenate([np.asarray(p, dtype=np.result_type(*parts)).ravel() for p in parts])

    def cotangent_in(self, given: Any) -> np.ndarray:
        """A user's cotangent (one array shaped like f's output; for several outputs a
        tuple/list/dict of them, None for a skipped one) as the flat real float64 vector."""
        if self.kind == "single":
            return _real_numpy(given, self.entries[0].complex)
        parts = []
        for e in self.entries:
            try:
                value = given[e.key]
            except (KeyError, IndexError, TypeError) as exc:
                raise ValueError(
                    f"cotangent has no entry for {e.name}; give one cotangent per output of f, "
                    f"in a {self.kind} like f's return value"
                ) from exc
            real = _real_numpy(value, e.complex)
            expected = e.shape + ((2,) if e.complex else ())
            if real.shape != expected:
                raise ValueError(
                    f"the cotangent of {e.name} has shape {real.shape[: len(e.shape)]} but the "
                    f"output has shape {e.shape}; match them"
                )
            parts.append(real.ravel())
        return np.concatenate(parts)

    def cotangent_out(self, v: np.ndarray, like: Any) -> Any:
        """The flat cotangent as f's outputs are shaped (what a hand formula receives): complex
        where the output is complex (torch's grad_output), a tensor where f returns tensors
        (on ``like``'s device), None for a skipped output."""
        if self.kind == "single":
            return _shaped(v, self.entries[0], like)
        per = {e.key: _shaped(v[e.offset : e.offset + e.size], e, like) for e in self.entries}
        if self.kind == "dict":
            return {**{k: None for k in self.keys}, **per}
        values = [per.get(i) for i in range(len(self.keys))]
        return tuple(values) if self.kind == "tuple" else values


def _member(out: Any, key: int | str | None) -> Any:
    return out if key is None else out[key]


def _real_view(x: Any) -> Any:
    """A complex array/tensor as (real, imag) along a new last axis; a real one as it is."""
    if _arrays.is_torch(x):
        if not x.dtype.is_complex:
            return x
        import torch

        return torch.stack([x.real, x.imag], dim=-1)
    x = np.asarray(x)
    return np.stack([x.real, x.imag], axis=-1) if x.dtype.kind == "c" else x


def _real_numpy(value: Any, complex_: bool) -> np.ndarray:
    if _arrays.is_torch(value):
        value = value.detach().cpu().resolve_conj().numpy()
    array = np.asarray(value)
    if complex_:
        array = array.astype(np.complex128)
        return np.stack([array.real, array.imag], axis=-1)
    if array.dtype.kind == "c":
        raise TypeError("a complex cotangent for a real output; give a real one")
    return array.astype(np.float64)


def _shaped(values: np.ndarray, entry: Output, like: Any) -> Any:
    real = np.asarray(values, dtype=np.float64).reshape(entry.shape + ((2,) * entry.complex))
    value: Any = real[..., 0] + 1j * real[..., 1] if entry.complex else real
    if _arrays.is_torch(like):
        import torch

        if entry.complex:
            dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
        else:
            dtype = like.dtype
        return torch.as_tensor(value, dtype=dtype, device=like.device)
    return value


def _layout(out: Any) -> Outputs:
    """The outputs of f's first return value: which are judged, which skipped and why."""
    if isinstance(out, (tuple, list, dict)):
        kind = "dict" if isinstance(out, dict) else type(out).__name__
        if kind not in ("tuple", "list", "dict"):
            kind = "tuple"  # a namedtuple (torch.return_types...) reads as a tuple
        keys: list[Any] = list(out) if isinstance(out, dict) else list(range(len(out)))
        if not keys:
            raise ValueError("f returned an empty sequence; return at least one output")
        entries, skipped, offset = [], [], 0
        any_grad = any(getattr(out[k], "requires_grad", False) for k in keys)
        for key in keys:
            value = out[key]
            name = f"output {key!r}" if kind == "dict" else f"output {key}"
            why = _not_judged(value, any_grad)
            if why:
                skipped.append(f"{name} ({why})")
                continue
            shape = _arrays.output_shape(value)
            complex_ = _arrays.dtype_name(value) in COMPLEX
            size = int(np.prod(shape, dtype=np.int64)) * (2 if complex_ else 1)
            entries.append(Output(name, key, shape, complex_, offset, size))
            offset += size
        if not entries:
            raise ValueError(
                f"f returned no floating output to differentiate: {'; '.join(skipped)}; return "
                "the floating tensors/arrays the gradient flows to"
            )
        return Outputs(kind, tuple(entries), tuple(skipped), tuple(keys))
    complex_ = (_arrays.is_torch(out) or isinstance(out, np.ndarray)) and _arrays.dtype_name(
        out
    ) in COMPLEX
    shape = _arrays.output_shape(out)
    size = int(np.prod(shape, dtype=np.int64)) * (2 if complex_ else 1)
    return Outputs("single", (Output("", None, shape, complex_, 0, size),))


def _not_judged(value: Any, any_grad: bool) -> str:
    """Why one of several outputs is not judged ('' when it is)."""
    if not (_arrays.is_torch(value) or isinstance(value, (np.ndarray, np.generic, float))):
        return f"a {type(value).__name__}"
    if not is_floating(value):
        return f"dtype {_arrays.dtype_name(value)}"
    if any_grad and _arrays.is_torch(value) and not value.requires_grad:
        return "not differentiable: it does not require grad"
    return ""


@dataclass
class Kept:
    """A call of f made with its differentiated inputs requiring grad (``check``'s first call),
    kept so that its graph serves autograd's gradient and the backward's contract.

    Fields:
        args: f's arguments as it was called with them.
        out: what f returned, its graph attached.
        leaves: the differentiated inputs as the engine passed them (tensors in ``args``).
        cotangent: the engine's cotangent of that backward (None: a scalar f, along 1).
        grads: per leaf, what one backward of ``out`` along ``cotangent`` gave (() before).
    """

    args: tuple[Any, ...]
    out: Any
    leaves: tuple[Any, ...] = ()
    cotangent: Any = None
    grads: tuple[Any, ...] = ()


class Call:
    """f with its constants bound: called with the differentiated inputs (real views for the
    complex ones), it calls the user's f with every input and returns the engine's view of the
    outputs (:meth:`Outputs.flatten`). Errors raised by f name the point (:class:`CallError`).

    Attributes:
        f: the user's function.
        values: the user's inputs, in order (constants exactly as given).
        keys: the names of dict inputs (f is called ``f(**inputs)``), else None.
        chosen: the positions of the differentiated inputs.
        names: per differentiated input, its name ('' when unknown).
        items: the differentiated inputs as the engine sees them.
        outputs: the output layout, recorded at the first call (None before).
    """

    def __init__(
        self,
        f: Callable[..., Any],
        values: tuple[Any, ...],
        keys: tuple[str, ...] | None,
        chosen: tuple[int, ...],
    ) -> None:
        self.f = f
        self.values = tuple(_usable(x) for x in values)
        self.keys = keys
        self.chosen = chosen
        self.complex = tuple(_arrays.dtype_name(values[p]) in COMPLEX for p in chosen)
        self.items = tuple(_engine_view(values[p]) for p in chosen)
        self.outputs: Outputs | None = None
        # ``keep``: the next call of f records its arguments and raw output in ``kept`` (the
        # first call, with the inputs requiring grad: its graph serves the contract too).
        self.keep = False
        self.kept: Kept | None = None
        # Whether f's and a formula's float64 runs compute under ``promote``'s mode.
        self.promotion = _promote.Promotion()
        self.formula_promotion = _promote.Promotion(narrow=False)
        names = keys if keys is not None else _parameter_names(f, len(values))
        self.names = tuple(names[p] for p in chosen)

    def label(self, k: int) -> str:
        """Differentiated input k as a message names it: 'input 2 (w)'."""
        name = self.names[k]
        return f"input {self.chosen[k]}" + (f" ({name})" if name else "")

    def arguments(self, items: Sequence[Any]) -> tuple[Any, ...]:
        """The user's inputs with the differentiated ones replaced by ``items`` (complex ones
        rebuilt from their real views)."""
        args = list(self.values)
        for k, (p, item) in enumerate(zip(self.chosen, items, strict=True)):
            args[p] = _complex_of(item) if self.complex[k] else item
        return tuple(args)

    def invoke(self, fn: Callable[..., Any], args: tuple[Any, ...], **extra: Any) -> Any:
        """``fn`` called as f is: positionally, or by name for dict inputs."""
        if self.keys is None:
            return fn(*args, **extra)
        return fn(**dict(zip(self.keys, args, strict=True)), **extra)

    def widened(self, items: Sequence[Any]) -> bool:
        """Whether ``items`` are the float64 side of a check of torch inputs below float64:
        some item is float64 where the user's input is float32 or lower."""
        return any(
            _arrays.is_torch(item)
            and _arrays.is_torch(base)
            and _arrays.dtype_name(item) == "float64"
            and _arrays.dtype_name(base) in _promote.LOW
            for item, base in zip(items, self.items, strict=False)
        )

    def float64_scope(self) -> contextlib.AbstractContextManager[None]:
        """The mode f's float64 runs compute under, for a backward run after f returned (a
        custom Function's backward using a captured float32 tensor); a no-op where none is."""
        if self.promotion.needed:
            return _promote.computing_in_float64()
        return contextlib.nullcontext()

    def run(self, fn: Callable[..., Any], items: Sequence[Any], **extra: Any) -> Any:
        """``fn`` (f or a formula) called at ``items``; on the float64 side of a float32 check
        of torch code, every tensor it meets computed in float64 (``promote``)."""
        args = self.arguments(items)
        if not self.widened(items):
            out = self.invoke(fn, args, **extra)
            if self.keep and fn is self.f:
                self.keep, self.kept = False, Kept(args, out)
            return out
        promotion = self.promotion if fn is self.f else self.formula_promotion
        return promotion.run(lambda: self.invoke(fn, args, **extra))

    def __call__(self, *items: Any) -> Any:
        try:
            out = self.run(self.f, items)
        except Exception as exc:
            raise CallError(
                f"f raised {type(exc).__name__} {self.where(items)}: {exc}".rstrip(": ")
            ) from exc
        if self.outputs is None:
            self.outputs = _layout(out)
        return self.outputs.flatten(out)

    @property
    def layout(self) -> Outputs:
        assert self.outputs is not None, "f has not been called yet"
        return self.outputs

    def where(self, items: Sequence[Any]) -> str:
        """Which point ``items`` is: 'at x', or the perturbed input and element(s)."""
        with warnings.catch_warnings():
            return self._where(items)

    def _where(self, items: Sequence[Any]) -> str:
        try:
            warnings.simplefilter("ignore")  # a complex-step point read as real: only a probe
            moved = []
            for k, (item, base) in enumerate(zip(items, self.items, strict=True)):
                if _arrays.output_shape(item) != _arrays.output_shape(base):
                    return "at a batch of perturbed points (vmap)"
                changed = np.flatnonzero(_arrays.to_numpy64(item) != _arrays.to_numpy64(base))
                if changed.size:
                    moved.append((k, changed))
        except Exception:  # a batched or traced call: its values cannot be read
            return "at a perturbed point"
        if not moved:
            return "at x"
        k, changed = moved[0]
        what = "a perturbed point" if len(moved) == 1 else "a point perturbed in several inputs"
        if changed.size > 1:
            return f"at {what}: {changed.size} elements of {self.label(k)} moved"
        shape = _arrays.output_shape(self.items[k])
        index = tuple(int(i) for i in np.unravel_index(int(changed[0]), shape))
        part = ""
        if self.complex[k]:
            part = " (imaginary part)" if index[-1] else " (real part)"
            index = index[:-1]
        return f"at {what}: {self.label(k)}, element {index}{part}"


def _parameter_names(f: Callable[..., Any], count: int) -> tuple[str, ...]:
    """f's positional parameter names, '' where unknown (``*args``, a builtin, ``Fn.apply``)."""
    names = [""] * count
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return tuple(names)
    for position, param in enumerate(params[:count]):
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        names[position] = param.name
    return tuple(names)


def _usable(x: Any) -> Any:
    """x itself, unless it is a tensor made under inference mode: autograd cannot save one for
    backward, so it is cloned (outside inference mode) into a normal tensor."""
    if _arrays.is_torch(x) and hasattr(x, "is_inference") and x.is_inference():
        return x.clone()
    return x


def _engine_view(x: Any) -> Any:
    """A differentiated input as the engine sees it: real floating, complex as real pairs."""
    if _arrays.dtype_name(x) not in COMPLEX:
        return _usable(x)
    if _arrays.is_torch(x):
        import torch

        return torch.view_as_real(x.detach().resolve_conj()).clone()
    return np.stack([np.real(x), np.imag(x)], axis=-1)


def _complex_of(item: Any) -> Any:
    """The complex value of a (real, imag) pair array/tensor."""
    if _arrays.is_torch(item):
        import torch

        return torch.complex(item[..., 0], item[..., 1])
    item = np.asarray(item)
    return item[..., 0] + 1j * item[..., 1]


def prepare(f: Callable[..., Any], inputs: Any, wrt: Any = None) -> Call:
    """The :class:`Call` for ``f(*inputs)`` (``f(**inputs)`` for a dict), with the
    differentiated inputs chosen by :func:`differentiated`; bad input raises saying what to do."""
    if isinstance(inputs, list):
        raise TypeError(
            "inputs is a list; pass one array (np.asarray(x, dtype=np.float64)) or a tuple of "
            "inputs, one per argument of f"
        )
    keys: tuple[str, ...] | None = None
    if isinstance(inputs, Mapping):
        keys = tuple(str(k) for k in inputs)
        values = tuple(inputs.values())
    else:
        values = tuple(inputs) if isinstance(inputs, tuple) else (inputs,)
    if not values:
        raise ValueError("inputs is empty; pass at least one array or tensor to differentiate")
    chosen = differentiated(values, keys, wrt)
    for p in chosen:
        _check_differentiable(values[p], p if keys is None else keys[p])
    return Call(f, values, keys, chosen)


def differentiated(
    values: tuple[Any, ...], keys: tuple[str, ...] | None = None, wrt: Any = None
) -> tuple[int, ...]:
    """The positions differentiated (see the module docstring for the rule)."""
    if wrt is not None:
        return _positions(wrt, len(values), keys)
    tensors = [p for p, x in enumerate(values) if _arrays.is_torch(x) and hasattr(x, "dtype")]
    _refuse_nested_leaves(values)
    if tensors:
        asked = tuple(p for p in tensors if values[p].requires_grad)
        chosen = asked or tuple(p for p in tensors if is_floating(values[p]))
    else:
        chosen = tuple(p for p, x in enumerate(values) if is_floating(x))
    if not chosen:
        kinds = ", ".join(_describe(x) for x in values)
        raise TypeError(
            f"no input to differentiate: the inputs are {kinds}. gradcheck differentiates "
            "floating or complex tensors/arrays (and Python floats without torch); pass one, or "
            "name the inputs with wrt="
        )
    return chosen


def _positions(wrt: Any, count: int, keys: tuple[str, ...] | None) -> tuple[int, ...]:
    asked = (wrt,) if isinstance(wrt, (int, str)) else tuple(wrt)
    positions = []
    for w in asked:
        if isinstance(w, str):
            if keys is None or w not in keys:
                known = f"the names are {list(keys)}" if keys else "inputs is not a dict"
                raise ValueError(f"wrt names {w!r}, but {known}; give positions or dict keys")
            positions.append(keys.index(w))
        elif isinstance(w, (int, np.integer)) and not isinstance(w, bool) and 0 <= w < count:
            positions.append(int(w))
        else:
            raise ValueError(f"wrt={wrt!r}: {w!r} is not a position of the {count} input(s)")
    if not positions or len(set(positions)) != len(positions):
        raise ValueError(f"wrt={wrt!r} must name at least one input, each once")
    return tuple(positions)


def _refuse_nested_leaves(values: tuple[Any, ...]) -> None:
    """A tensor that requires grad inside a tuple/list argument would silently be a constant."""
    for p, x in enumerate(values):
        if isinstance(x, (tuple, list)) and any(getattr(e, "requires_grad", False) for e in x):
            raise TypeError(
                f"input {p} is a {type(x).__name__} holding a tensor that requires grad; "
                "gradcheck differentiates top-level inputs only: pass that tensor as its own "
                "argument of f"
            )


def _check_differentiable(x: Any, where: int | str) -> None:
    if not is_floating(x):
        raise TypeError(
            f"input {where} is {_describe(x)}; gradients need a floating or complex dtype. "
            "Pass it as float64 (x.astype(np.float64) or x.double()), or leave it out of wrt= "
            "to keep it a constant"
        )
    name = _arrays.dtype_name(x)
    if name not in (*_arrays.FLOAT_EPS, *COMPLEX):
        raise TypeError(f"input {where} has dtype {name}, which gradcheck cannot differentiate")
    if int(np.prod(_arrays.output_shape(x), dtype=np.int64)) == 0:
        raise ValueError(
            f"input {where} is empty (shape {_arrays.output_shape(x)}): there is nothing to "
            "differentiate; give it elements, or leave it out with wrt="
        )


@contextlib.contextmanager
def autograd_usable() -> Iterator[None]:
    """Leave ``torch.inference_mode()`` for the check: there autograd records nothing and a
    correct gradient would read as all zeros. A no-op without torch."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.is_inference_mode_enabled():
        yield
        return
    with torch.inference_mode(False):
        yield


def bound_formula(call: Call, fn: Callable[..., Any], explicit_cotangent: bool) -> Any:
    """A hand formula under the contract of ``gradcheck._sources.reference.Formula`` on the engine's
    view: ``fn`` is called with every input (as f is) and returns one entry per input, None
    where not differentiated (None for a differentiated input means zero); complex gradients
    become their real views."""
    takes_v = accepts_keyword(fn, "cotangent")

    def formula(*items: Any, cotangent: Any = None) -> tuple[Any, ...]:
        extra = {}
        if cotangent is not None:
            if takes_v:
                extra["cotangent"] = call.layout.cotangent_out(
                    _arrays.to_numpy64(cotangent), items[0]
                )
            elif not explicit_cotangent:
                what = "several outputs" if call.layout.several else "a non-scalar output"
                raise ValueError(
                    f"f returns {what} and the formula takes no cotangent, so it cannot give a "
                    "vector-Jacobian product. Either let the formula accept a `cotangent` "
                    "keyword (it gets a seeded random one, shaped like f's output), or pass "
                    "check(..., cotangent=v) and return the product for that v"
                )
        try:
            out = call.run(fn, items, **extra)
        except Exception as exc:
            raise CallError(
                f"the gradient formula raised {type(exc).__name__} {call.where(items)}: {exc}"
            ) from exc
        return pick(out, call)

    formula.__name__ = getattr(fn, "__name__", "formula")
    return formula


def pick(out: Any, call: Call) -> tuple[Any, ...]:
    """A formula's return value (one entry per input, or per differentiated input; a dict by
    name) as one entry per differentiated input, complex ones as real views."""
    count, chosen = len(call.values), call.chosen
    if isinstance(out, Mapping):
        valid = list(call.keys) if call.keys else list(range(count))
        unknown = [k for k in out if k not in valid]
        if unknown:
            by = "" if call.keys else " (by position; pass the inputs as a dict to key by name)"
            raise ValueError(
                f"the formula returned gradient(s) for {', '.join(map(repr, unknown))}, which "
                f"f has no input of; the valid keys are {', '.join(map(repr, valid))}{by}: "
                "fix the key (a key left out means a zero gradient)"
            )
        entries = [out.get(call.keys[p] if call.keys else p) for p in chosen]
    else:
        given = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(given) == count:
            entries = [given[p] for p in chosen]
        elif len(given) == len(chosen):
            entries = given
        else:
            hint = (
                "; a list is read as one gradient per input: return one input's gradient as "
                "an array (np.asarray(...))"
                if isinstance(out, list)
                else ""
            )
            raise ValueError(
                f"the formula returned {len(given)} gradient(s) for {count} input(s) "
                f"({len(chosen)} differentiated); return one entry per input, as a tuple, "
                f"None where an input is not differentiated{hint}"
            )
    picked = []
    for k, g in enumerate(entries):
        if g is not None and call.complex[k]:
            g = _real_view(g if _arrays.is_torch(g) else np.asarray(g, dtype=np.complex128))
        elif g is not None and _arrays.dtype_name(g) in COMPLEX:
            raise TypeError(
                f"the formula's gradient for {call.label(k)} is complex but the input is real; "
                "return a real gradient (torch's convention: the real part)"
            )
        picked.append(g)
    return tuple(picked)
