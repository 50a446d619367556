"""Declare: ``case(...)`` and ``descent(...)`` build frozen case specs; inputs may be sampled.

A *case* says: this function, at these inputs, has this gradient. The runner checks it for each
analytic source (torch autograd, named hand formulas) and each dtype against the numerical engine.
A *descent case* says: gradient descent with this loss, run once with the analytic gradient and
once with the numerical one, takes the same path (and, optionally, reaches a stated target).

Both factories fill defaults, validate eagerly (a mistake is reported at the line that made the
case, not half way through a run) and record the file and line they were called from, so that
reports and CI annotations can point at the definition.

Inputs are concrete values (NumPy arrays, Python floats, torch tensors; copied, never modified)
or seeded generators: :func:`normal` and :func:`uniform` of a shape, or any object with a
``sample(rng) -> np.ndarray`` method. Generators draw from ``numpy.random.default_rng`` seeded
with the run seed and the case name (:func:`case_seed`), so a run is replayed by its seed alone
and a case draws the same values whichever other cases run beside it.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from gradcheck._numerics import arrays as _arrays
from gradcheck._sources import jaxcall as _jaxcall

Expectation = Literal["pass", "fail", "inconclusive"]
ArrayKind = Literal["auto", "numpy", "torch", "jax"]
Batching = Literal["full", "sample"]

DEFAULT_DTYPES: tuple[str, ...] = ("float64", "float32")
AUTOGRAD = "autograd"
_EXPECTATIONS = ("pass", "fail", "inconclusive")


@runtime_checkable
class InputGenerator(Protocol):
    """Anything that draws an input: ``sample(rng)`` returns a float64 NumPy array."""

    def sample(self, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class Normal:
    """Normal(mean, std) values of a shape; make one with :func:`normal`."""

    shape: tuple[int, ...]
    mean: float = 0.0
    std: float = 1.0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(rng.normal(self.mean, self.std, size=self.shape), dtype=np.float64)


@dataclass(frozen=True)
class Uniform:
    """Uniform[low, high) values of a shape; make one with :func:`uniform`."""

    shape: tuple[int, ...]
    low: float = 0.0
    high: float = 1.0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(rng.uniform(self.low, self.high, size=self.shape), dtype=np.float64)


def normal(*shape: int, mean: float = 0.0, std: float = 1.0) -> Normal:
    """Seeded normal values: ``normal(4, 3)`` is a 4x3 array, ``normal()`` a 0-d one."""
    if std <= 0 or not np.isfinite(std):
        raise ValueError(f"normal(std={std}) needs a positive, finite std")
    return Normal(_shape(shape, "normal"), float(mean), float(std))


def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Uniform:
    """Seeded uniform values in [low, high): ``uniform(3, low=-1, high=1)``."""
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"uniform(low={low}, high={high}) needs finite bounds with low < high")
    return Uniform(_shape(shape, "uniform"), float(low), float(high))


def _shape(shape: tuple[Any, ...], what: str) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(
            f"{what}{shape}: the shape must be non-negative integers, e.g. {what}(4, 3)"
        )
    return tuple(int(n) for n in shape)


def case_seed(seed: int, name: str) -> int:
    """The seed a case draws its inputs (and cotangent) from: the run seed mixed with the name.

    crc32 rather than ``hash()``, which Python salts per process.
    """
    named = zlib.crc32(name.encode("utf-8", "surrogatepass"))  # a lone surrogate too
    return int(np.random.SeedSequence([seed, named]).generate_state(1)[0])


@dataclass(frozen=True)
class Source:
    """One analytic gradient source of a case.

    Fields:
        name: 'autograd', or the formula's name (the mapping key, else the function's name).
        fn: the hand formula, called with the case's inputs as keyword arguments; it returns
            the gradient of each differentiated input (one array, a tuple in ``wrt`` order, or a
            mapping by name). None for torch autograd.
    """

    name: str
    fn: Callable[..., Any] | None = None

    @property
    def is_autograd(self) -> bool:
        return self.fn is None


@dataclass(frozen=True, eq=False)
class Case:
    """A gradient check, frozen; make one with :func:`case`.

    Fields:
        name: unique across the loaded cases; it names the rows of every report.
        f: the function, called with the inputs as keyword arguments; returns a scalar, or any
            shape (then vector-Jacobian products along ``cotangent`` are compared).
        inputs: name -> concrete value (a private copy) or :class:`InputGenerator`.
        wrt: the names of the differentiated inputs, in order; the others are constants.
        sources: the analytic sources, one report row each (per dtype).
        dtypes: the dtypes the differentiated inputs (and floating constants) are cast to.
        expect: 'pass', or 'fail' for a known-bad example (then a pass is reported as a failure).
        tags: free-form labels, for ``--tag`` selection.
        atol, rtol: tolerance overrides, one number or a mapping dtype -> number (see the
            tolerance rule in ``gradcheck._judge.verdict``); None keeps the default.
        cotangent: the cotangent for a non-scalar f (None: a seeded random one).
        step, dtype_policy: passed to the numerical engine.
        batched: a batched form of f (``check``'s ``batch=``): called like f, but with every
            differentiated input carrying a leading batch axis of the same length B (the
            constants as they are), it returns B values (B outputs for a non-scalar f). None:
            ``torch.func.vmap(f)`` where it works, else one call per point.
        arrays: 'auto' (torch tensors for the autograd source, NumPy for formulas; 'jax' when
            f is a JAX transform or an input is a JAX array), 'numpy', 'torch' (always) or
            'jax' (f is JAX code: autograd means ``jax.vjp``, and no torch is imported).
        description: one line for reports and ``gradcheck list``.
        file, line: where ``case(...)`` was called.
        modes, order: ``check``'s ``modes`` (('rev',), or ('rev', 'fwd') for forward mode too)
            and ``order`` (2: the double backward too), for the autograd rows; formula rows
            check ('rev',) and order 1.
    """

    name: str
    f: Callable[..., Any]
    inputs: Mapping[str, Any]
    wrt: tuple[str, ...]
    sources: tuple[Source, ...]
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    expect: Expectation = "pass"
    tags: tuple[str, ...] = ()
    atol: float | Mapping[str, float] | None = None
    rtol: float | Mapping[str, float] | None = None
    cotangent: np.ndarray | None = field(default=None, repr=False)
    step: float | None = None
    dtype_policy: str = "auto"
    arrays: ArrayKind = "auto"
    description: str = ""
    file: str = ""
    line: int = 0
    batched: Callable[..., Any] | None = field(default=None, repr=False)
    modes: tuple[str, ...] = ("rev",)
    order: int = 1

    kind = "check"


@dataclass(frozen=True, eq=False)
class Descent:
    """Gradient descent run twice, analytic and numerical gradients; make one with :func:`descent`.

    Fields:
        name, sources, dtypes, expect, tags, description, file, line: as for :class:`Case`.
        loss: called with the parameters and the data (a batch of it) as keyword arguments;
            returns a scalar.
        params: name -> initial value; all of them are trained.
        data: name -> values of the constants, one row per sample (may be empty).
        batch: 'full' (every step sees all the data: gradient descent) or 'sample' (one step per
            sample, in order: the seeds' stochastic gradient descent; an epoch is a pass).
        lr: the learning rate; each step is ``p = p - lr * grad`` in the row's dtype.
        epochs: passes over the data (steps, when batch is 'full').
        readout: called with the final parameters as keyword arguments (NumPy arrays in the
            row's dtype); returns name -> number
            (e.g. the prediction at x = 4 that a seed prints). Its values are reported.
        target: name (a parameter or a readout) -> the value both runs must reach, within
            ``target_atol``.
        rtol: how closely the analytic and numerical runs must agree (final parameters and every
            loss value), relative to their size; None: 1e-6 in float64, 1e-3 in float32.
        arrays: as for :class:`Case`.
    """

    name: str
    loss: Callable[..., Any]
    params: Mapping[str, Any]
    sources: tuple[Source, ...]
    data: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    batch: Batching = "full"
    lr: float = 0.01
    epochs: int = 100
    readout: Callable[..., Mapping[str, float]] | None = None
    target: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    target_atol: float = 1e-3
    rtol: float | None = None
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    expect: Expectation = "pass"
    tags: tuple[str, ...] = ()
    arrays: ArrayKind = "auto"
    description: str = ""
    file: str = ""
    line: int = 0

    kind = "descent"

    @property
    def wrt(self) -> tuple[str, ...]:
        return tuple(self.params)


AnyCase = Case | Descent


def case(
    *,
    name: str,
    f: Callable[..., Any],
    inputs: Mapping[str, Any],
    grad: Callable[..., Any] | Mapping[str, Callable[..., Any]] | None = None,
    autograd: bool | None = None,
    wrt: Sequence[str] | str | None = None,
    dtypes: Sequence[str] = DEFAULT_DTYPES,
    expect: Expectation = "pass",
    tags: Sequence[str] = (),
    atol: float | Mapping[str, float] | None = None,
    rtol: float | Mapping[str, float] | None = None,
    cotangent: Any = None,
    step: float | None = None,
    dtype_policy: str = "auto",
    arrays: ArrayKind = "auto",
    description: str = "",
    batched: Callable[..., Any] | None = None,
    modes: Sequence[str] = ("rev",),
    order: int = 1,
) -> Case:
    """Declare a gradient check.

    ``grad`` is a hand formula (or a mapping name -> formula for several); each is called with
    the inputs as keyword arguments and returns the gradient of every input in ``wrt``. Omit
    ``grad`` to check torch autograd; pass ``autograd=True`` to check autograd as well as the
    formulas. ``wrt`` (default: every input) names the differentiated inputs; the others are
    constants such as data and targets. See :class:`Case` for every field.
    """
    file, line = _caller()
    _check_name(name)
    _check_callable(f, "f", name)
    if batched is not None and not callable(batched):
        raise TypeError(
            f"case {name!r}: batched must be a batched form of f (a callable taking the inputs "
            f"with a leading batch axis), got {type(batched).__name__}; or leave it out"
        )
    frozen_inputs = _freeze_inputs(inputs, name)
    chosen = _choose_wrt(wrt, frozen_inputs, name)
    sources = _sources(grad, autograd, name)
    return Case(
        name=name,
        f=f,
        inputs=frozen_inputs,
        wrt=chosen,
        sources=sources,
        dtypes=_dtypes(dtypes, name),
        expect=_expect(expect, name),
        tags=_tags(tags, name),
        atol=_tolerance(atol, "atol", name),
        rtol=_tolerance(rtol, "rtol", name),
        cotangent=None if cotangent is None else _arrays.to_numpy64(cotangent),
        step=step,
        dtype_policy=_policy(dtype_policy, name),
        arrays=_array_kind(arrays, sources, name, f, inputs),
        description=description,
        file=file,
        line=line,
        batched=batched,
        modes=_modes(modes, name),
        order=_order(order, name),
    )


def _modes(modes: Sequence[str], name: str) -> tuple[str, ...]:
    chosen = (modes,) if isinstance(modes, str) else tuple(modes)
    if "rev" not in chosen or any(m not in ("rev", "fwd") for m in chosen):
        raise ValueError(f"case {name!r}: modes={chosen!r}; give ('rev',) or ('rev', 'fwd')")
    return chosen


def _order(order: int, name: str) -> int:
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"case {name!r}: order={order!r}; give 1 or 2")
    return order


def descent(
    *,
    name: str,
    loss: Callable[..., Any],
    params: Mapping[str, Any],
    grad: Callable[..., Any] | Mapping[str, Callable[..., Any]] | None = None,
    autograd: bool | None = None,
    data: Mapping[str, Any] | None = None,
    batch: Batching = "full",
    lr: float = 0.01,
    epochs: int = 100,
    readout: Callable[..., Mapping[str, float]] | None = None,
    target: Mapping[str, float] | None = None,
    target_atol: float = 1e-3,
    rtol: float | None = None,
    dtypes: Sequence[str] = DEFAULT_DTYPES,
    expect: Expectation = "pass",
    tags: Sequence[str] = (),
    arrays: ArrayKind = "auto",
    description: str = "",
) -> Descent:
    """Declare a descent case: ``epochs`` of ``p -= lr * grad`` with each analytic source and
    with the numerical gradient; the runs must agree (and reach ``target`` when given).

    ``grad``/``autograd`` work as for :func:`case`; a formula gets the parameters and the batch
    as keyword arguments and returns one gradient per parameter. See :class:`Descent`.
    """
    file, line = _caller()
    _check_name(name)
    _check_callable(loss, "loss", name)
    frozen_params = _freeze_inputs(params, name, what="params")
    if any(isinstance(v, InputGenerator) for v in frozen_params.values()):
        raise TypeError(f"descent {name!r}: params must be concrete start values, not generators")
    frozen_data = _freeze_data(data or {}, name)
    clash = sorted(set(frozen_params) & set(frozen_data))
    if clash:
        raise ValueError(f"descent {name!r}: {clash} is both a parameter and data; rename one")
    if batch not in ("full", "sample"):
        raise ValueError(f"descent {name!r}: batch={batch!r}; use 'full' or 'sample'")
    if batch == "sample" and not frozen_data:
        raise ValueError(f"descent {name!r}: batch='sample' needs data= to draw samples from")
    if not (isinstance(epochs, int) and epochs > 0):
        raise ValueError(f"descent {name!r}: epochs={epochs!r}; give a positive integer")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"descent {name!r}: lr={lr!r}; give a positive, finite learning rate")
    if readout is not None:
        _check_callable(readout, "readout", name)
    sources = _sources(grad, autograd, name)
    return Descent(
        name=name,
        loss=loss,
        params=frozen_params,
        sources=sources,
        data=frozen_data,
        batch=batch,
        lr=float(lr),
        epochs=epochs,
        readout=readout,
        target=MappingProxyType({str(k): float(v) for k, v in (target or {}).items()}),
        target_atol=float(target_atol),
        rtol=None if rtol is None else float(rtol),
        dtypes=_dtypes(dtypes, name),
        expect=_expect(expect, name),
        tags=_tags(tags, name),
        arrays=_array_kind(arrays, sources, name),
        description=description,
        file=file,
        line=line,
    )


def _caller() -> tuple[str, int]:
    """The file and line of the code that called case()/descent()."""
    frame = inspect.currentframe()
    try:
        outer = frame.f_back.f_back if frame and frame.f_back else None
        if outer is None:
            return "<unknown>", 0
        return outer.f_code.co_filename, outer.f_lineno
    finally:
        del frame


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"case name must be a non-empty string, got {name!r}")
    if name != name.strip() or any(c in name for c in "\n\r\t"):
        raise ValueError(f"case name {name!r} has surrounding or control whitespace; remove it")


def _check_callable(f: Any, what: str, name: str) -> None:
    if not callable(f):
        raise TypeError(f"case {name!r}: {what} must be callable, got {type(f).__name__}")


def _freeze_inputs(inputs: Any, name: str, what: str = "inputs") -> Mapping[str, Any]:
    """A read-only mapping of private copies (generators kept as they are)."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError(
            f"case {name!r}: {what} must be a non-empty dict of name -> value, e.g. "
            f"{what}={{'x': np.array([3.0, 4.0])}}; got {type(inputs).__name__}"
        )
    frozen: dict[str, Any] = {}
    for key, value in inputs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"case {name!r}: {what} key {key!r} must be a Python identifier")
        frozen[key] = _freeze_value(value, key, name)
    return MappingProxyType(frozen)


def _freeze_value(value: Any, key: str, name: str) -> Any:
    if isinstance(value, InputGenerator) and not isinstance(value, np.ndarray):
        return value
    if _arrays.is_torch(value):
        return value.detach().clone()
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(
            f"case {name!r}: input {key!r} is a {type(value).__name__}; give an array, a number "
            "or a generator such as normal(3)"
        )
    if isinstance(value, (int, float)):
        return float(value)
    try:
        copy = np.array(value, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"case {name!r}: input {key!r} cannot be made an array: {exc}") from None
    if copy.dtype.kind not in "fiu":  # integer constants (labels, indices) stay integers
        raise TypeError(f"case {name!r}: input {key!r} has dtype {copy.dtype}; give numbers")
    copy.setflags(write=False)
    return copy


def _freeze_data(data: Mapping[str, Any], name: str) -> Mapping[str, np.ndarray]:
    if not data:
        return MappingProxyType({})
    frozen = _freeze_inputs(data, name, what="data")
    lengths = {k: len(np.atleast_1d(np.asarray(v))) for k, v in frozen.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"descent {name!r}: data columns differ in length: {lengths}")
    return MappingProxyType({k: np.atleast_1d(np.asarray(v)) for k, v in frozen.items()})


def _choose_wrt(wrt: Any, inputs: Mapping[str, Any], name: str) -> tuple[str, ...]:
    chosen = tuple(inputs) if wrt is None else ((wrt,) if isinstance(wrt, str) else tuple(wrt))
    unknown = [w for w in chosen if w not in inputs]
    if unknown or not chosen:
        raise ValueError(
            f"case {name!r}: wrt={list(chosen)} must name at least one input; "
            f"the inputs are {list(inputs)}"
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"case {name!r}: wrt={list(chosen)} names an input twice")
    for w in chosen:
        value = inputs[w]
        if isinstance(value, np.ndarray) and value.dtype.kind != "f":
            raise TypeError(
                f"case {name!r}: input {w!r} is differentiated but has dtype {value.dtype}; "
                "give it as floats, or leave it out of wrt= to keep it a constant"
            )
    return chosen


def _sources(grad: Any, autograd: bool | None, name: str) -> tuple[Source, ...]:
    formulas: list[Source] = []
    if isinstance(grad, Mapping):
        for key, fn in grad.items():
            _check_callable(fn, f"grad[{key!r}]", name)
            formulas.append(Source(str(key), fn))
    elif grad is not None:
        _check_callable(grad, "grad", name)
        fn_name = getattr(grad, "__name__", "formula")
        formulas.append(Source("formula" if fn_name == "<lambda>" else fn_name, grad))
    use_autograd = not formulas if autograd is None else autograd
    sources = ([Source(AUTOGRAD)] if use_autograd else []) + formulas
    if not sources:
        raise ValueError(f"case {name!r}: no gradient source; give grad= or leave autograd on")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"case {name!r}: gradient sources share a name: {names}")
    return tuple(sources)


def _dtypes(dtypes: Sequence[str], name: str) -> tuple[str, ...]:
    chosen = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    bad = [d for d in chosen if d not in ("float64", "float32")]
    if bad or not chosen:
        raise ValueError(f"case {name!r}: dtypes={list(chosen)}; use 'float64' and/or 'float32'")
    return chosen


def _expect(expect: str, name: str) -> Expectation:
    if expect not in _EXPECTATIONS:
        raise ValueError(f"case {name!r}: expect={expect!r}; use one of {list(_EXPECTATIONS)}")
    return expect  # type: ignore[return-value]


def _tags(tags: Sequence[str], name: str) -> tuple[str, ...]:
    chosen = (tags,) if isinstance(tags, str) else tuple(tags)
    if not all(isinstance(t, str) and t and " " not in t for t in chosen):
        raise ValueError(f"case {name!r}: tags={list(chosen)} must be words without spaces")
    return chosen


def _tolerance(value: Any, what: str, name: str) -> float | Mapping[str, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): float(v) for k, v in value.items()})
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"case {name!r}: {what}={value!r}; give a non-negative number")
    return float(value)


def _policy(policy: str, name: str) -> str:
    if policy not in ("auto", "native", "promote"):
        raise ValueError(f"case {name!r}: dtype_policy={policy!r}; use auto, native or promote")
    return policy


def _array_kind(
    arrays: str, sources: tuple[Source, ...], name: str, f: Any = None, inputs: Any = None
) -> ArrayKind:
    if arrays not in ("auto", "numpy", "torch", "jax"):
        raise ValueError(f"case {name!r}: arrays={arrays!r}; use 'auto', 'numpy', 'torch' or 'jax'")
    if arrays == "auto" and f is not None and _jaxcall.involved(f, inputs or {}, probe=False):
        return "jax"  # JAX code or JAX arrays: autograd means jax.vjp, no torch
    if arrays == "numpy" and any(s.is_autograd for s in sources):
        raise ValueError(
            f"case {name!r}: arrays='numpy' cannot go with torch autograd; "
            "use arrays='auto' or give only hand formulas (grad=)"
        )
    return arrays  # type: ignore[return-value]


def tolerance_for(value: float | Mapping[str, float] | None, dtype: str) -> float | None:
    """A case's atol/rtol override for one dtype (None: the default rule)."""
    if isinstance(value, Mapping):
        return value.get(dtype)
    return value
