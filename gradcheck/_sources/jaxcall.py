"""Reference (JAX): a call of JAX code as the engine sees it, and JAX's own derivatives of it.

The engine perturbs NumPy arrays in place; JAX arrays are immutable and JAX code takes pytrees.
So a JAX call is handed to the engine flat (:func:`adapt`):

* **Inputs.** The call's arguments (a tuple: ``f(*args)``; a dict: ``f(**kwargs)``; anything
  else: one argument) are flattened with ``jax.tree_util``: dicts, tuples, lists, nested. The
  differentiated leaves are, with ``wrt=`` (top-level positions or names), every floating leaf
  under those arguments; else, when a JAX array is among the leaves, the floating JAX arrays
  (as torch's rule takes the tensors); else every floating leaf. Each becomes one engine input,
  named by its path (``params['w1']``), as a NumPy copy in its own dtype. Everything else
  (integers, static config, labels, the arguments a ``custom_vjp`` names in
  ``nondiff_argnums``) is put back where it was and reaches f unchanged.
* **f.** :attr:`Problem.f` takes the named leaves, rebuilds the arguments (JAX arrays), calls
  f (through ``jax.jit`` when f traces; plainly when it does not) and returns NumPy: one array,
  a tuple, or for a nested output a dict by path. Integer outputs are skipped as usual.
* **The analytic side** (:class:`JaxVjp`): ``jax.vjp`` at the engine's inputs, pulled back
  along the engine's cotangent (1 for a scalar f, the seeded ``v`` split over the floating
  outputs, ``float0`` zeros for the integer ones), so a ``custom_vjp`` backward and a
  ``custom_jvp`` rule are what is judged. Forward mode: ``jax.jvp`` (:meth:`Problem.jvp`).
  A hand formula (``grad=``) for a JAX f is :class:`JaxFormula`: called as f is, returning one
  gradient per argument, each a pytree like it (None where nothing is differentiated).
* **Precision.** The whole check runs under JAX's 64-bit mode (:func:`x64`, restored after): a
  float32 input stays float32 where f computes in float32, and the engine's float64 copies are
  really float64, so the numerical side and the re-run of the analytic side measure float32 by
  float64 as they do for torch.

Nothing here imports jax until a JAX value or JAX code is checked (:func:`involved`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck._numerics import arrays as _arrays
from gradcheck._sources.reference import Autograd, CallError, accepts_keyword


def involved(f: Any, inputs: Any, grad: Any = None, probe: bool = True) -> bool:
    """Whether a check is JAX's: a JAX array among the inputs' leaves, f a JAX transform
    (``jax.jit``, ``custom_vjp``, ...), or (grad None or autograd, no torch tensor) f returning
    JAX arrays for the inputs (one call of f; ``probe=False``: never called). False at once,
    importing nothing, when jax was never imported."""
    if "jax" not in sys.modules:
        return False
    if any(_arrays.is_jax(leaf) for leaf in _leaves(inputs)):
        return True
    if _jax_code(f):
        return True
    if not probe or not (grad is None or isinstance(grad, Autograd)):
        return False
    if any(_arrays.is_torch(leaf) for leaf in _leaves(inputs)):
        return False
    try:  # without JAX values, JAX code shows itself by what it returns
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        out = f(**inputs) if isinstance(inputs, Mapping) else f(*args)
    except Exception:  # the usual path raises it again, with its usual message
        return False
    return any(_arrays.is_jax(leaf) for leaf in _leaves(out))


def _jax_code(f: Any) -> bool:
    module = type(f).__module__.split(".")[0]
    return module in ("jax", "jaxlib") or bool(getattr(f, "__gradcheck_jax__", False))


def _leaves(tree: Any) -> Iterator[Any]:
    """The leaves of nested tuples, lists and dicts (no jax needed)."""
    if isinstance(tree, Mapping):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


# The caller's own 64-bit setting, read when the outermost JAX check starts (order 2 checks
# again inside it): a float32 computation runs as the caller runs it.
_CALLER_X64: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "caller_x64", default=None
)


@contextlib.contextmanager
def x64(on: bool = True) -> Iterator[None]:
    """JAX's 64-bit mode on (or off) for a scope, restored after (also when it raises): the
    ``jax.enable_x64`` context where jax has it, else the config flag set and put back."""
    import jax

    outermost = _CALLER_X64.get() is None
    token = _CALLER_X64.set(bool(jax.config.read("jax_enable_x64"))) if outermost else None
    try:
        scoped = getattr(jax, "enable_x64", None)
        if callable(scoped):
            with scoped(on):
                yield
            return
        before = bool(jax.config.read("jax_enable_x64"))
        jax.config.update("jax_enable_x64", on)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", before)
    finally:
        if token is not None:
            _CALLER_X64.reset(token)


def as_caller_runs(values: Any) -> contextlib.AbstractContextManager[None]:
    """The mode to run f in at ``values``: 64-bit where one is float64, else the caller's own
    (so float32 code runs as written: a NumPy float64 constant stays float32 under it)."""
    wide = any(str(getattr(v, "dtype", "float64")) == "float64" for v in values)
    caller = _CALLER_X64.get()
    if wide or caller is None:
        return contextlib.nullcontext()
    return x64(caller)


def floating(x: Any, jax_only: bool) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, float):
        return not jax_only
    if not hasattr(x, "dtype") or (jax_only and not _arrays.is_jax(x)):
        return False
    if not (_arrays.is_jax(x) or isinstance(x, (np.ndarray, np.generic))):
        return False
    import jax.numpy as jnp

    return bool(jnp.issubdtype(x.dtype, jnp.inexact))


@dataclass
class Problem:
    """A JAX call flattened for the engine (module docstring).

    Attributes:
        f: the engine's f: called with the named differentiated leaves, returns NumPy outputs.
        inputs: the differentiated leaves as NumPy copies, by name (``f(**inputs)``).
        names: their names, in order.
        user_f: the user's f; ``kwargs``: whether it takes keyword arguments.
        leaves, treedef: every leaf of the arguments, and their structure.
        chosen: the positions of the differentiated leaves among ``leaves``.
    """

    user_f: Callable[..., Any]
    kwargs: bool
    leaves: list[Any]
    treedef: Any
    chosen: tuple[int, ...]
    names: tuple[str, ...]
    inputs: dict[str, np.ndarray] = field(init=False)
    _out: Any = None  # the output's structure and leaves' dtypes, from the first call
    _compiled: Any = None  # jax.jit(jax_fn) once it traced, False when it cannot

    def __post_init__(self) -> None:
        self.inputs = {
            n: np.array(self.leaves[p], copy=True)
            for n, p in zip(self.names, self.chosen, strict=True)
        }

    def arguments(self, values: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The user's (args, kwargs), with the differentiated leaves replaced by ``values``."""
        import jax

        leaves = list(self.leaves)
        for p, value in zip(self.chosen, values, strict=True):
            leaves[p] = value
        rebuilt = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return ((), dict(rebuilt)) if self.kwargs else (tuple(rebuilt), {})

    def jax_fn(self, *values: Any) -> Any:
        """f of the differentiated leaves (JAX arrays), the constants bound: what JAX
        differentiates and what the batched path maps over."""
        args, kwargs = self.arguments(values)
        return self.user_f(*args, **kwargs)

    def f(self, **named: Any) -> Any:
        import jax.numpy as jnp

        with as_caller_runs(named.values()):
            values = [jnp.asarray(named[n]) for n in self.names]
            out = self._run(values)
            return self._finish(out)

    def _finish(self, out: Any) -> Any:
        self._remember(out)
        return self.numpy_outputs(out)

    def _run(self, values: list[Any]) -> Any:
        """f at ``values``, jitted when f traces (f's Python runs once per compiled shape);
        where jit refuses f, plainly, and f's own error is raised from the plain call."""
        import jax

        if self._compiled is None:
            try:
                compiled = jax.jit(self.jax_fn)
                out = compiled(*values)
                self._compiled = compiled
                return out
            except Exception:
                self._compiled = False
        if self._compiled is False:
            return self.jax_fn(*values)
        return self._compiled(*values)

    def _remember(self, out: Any) -> None:
        import jax

        if self._out is None:
            paths, treedef = jax.tree_util.tree_flatten_with_path(out)
            self._out = (treedef, [(jax.tree_util.keystr(p), _out_kind(x)) for p, x in paths])

    def numpy_outputs(self, out: Any) -> Any:
        """f's output as the engine takes it: one array, a tuple of arrays, or a dict by path."""
        import jax

        if _arrays.is_jax(out) or not isinstance(out, (tuple, list, dict)):
            return np.asarray(out)
        paths, _ = jax.tree_util.tree_flatten_with_path(out)
        values = [np.asarray(x) for _, x in paths]
        if isinstance(out, (tuple, list)) and len(values) == len(out):
            return tuple(values)
        return {
            jax.tree_util.keystr(p) or "output": v for (p, _), v in zip(paths, values, strict=True)
        }

    def flat_outputs(self, out: Any) -> Any:
        """A JAX output (or tangent) as the engine's flat view: one array, or its floating
        leaves flattened and concatenated."""
        import jax
        import jax.numpy as jnp

        leaves = jax.tree_util.tree_leaves(out)
        if len(leaves) == 1 and (_arrays.is_jax(out) or not isinstance(out, (tuple, list, dict))):
            return leaves[0]
        kinds = [kind for _, kind in self._out[1]]
        parts = [jnp.ravel(x) for x, kind in zip(leaves, kinds, strict=True) if kind == "float"]
        return jnp.concatenate(parts)

    def cotangent_tree(self, out: Any, v: np.ndarray | None) -> Any:
        """The engine's cotangent as a pytree like f's output: 1 for a scalar f, ``v`` split over
        the floating outputs, ``float0`` zeros for the others (what ``jax.vjp`` takes)."""
        import jax
        import jax.numpy as jnp

        leaves, treedef = jax.tree_util.tree_flatten(out)
        if v is None:
            return jax.tree_util.tree_map(jnp.ones_like, out)
        if len(leaves) == 1:
            return jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(np.reshape(v, leaves[0].shape), dtype=leaves[0].dtype)]
            )
        parts: list[Any] = []
        offset = 0
        for x in leaves:
            if not jnp.issubdtype(x.dtype, jnp.inexact):
                parts.append(np.zeros(x.shape, dtype=jax.dtypes.float0))
                continue
            size = int(np.prod(x.shape, dtype=np.int64))
            parts.append(jnp.asarray(v[offset : offset + size].reshape(x.shape), dtype=x.dtype))
            offset += size
        return jax.tree_util.tree_unflatten(treedef, parts)

    def scalar_of(self, v: np.ndarray | None) -> Callable[..., Any]:
        """The JAX function ``<v, f(x)>`` of the differentiated leaves (f itself when scalar):
        what the batched path evaluates, in f's own dtype."""
        import jax
        import jax.numpy as jnp

        def scalar(*values: Any) -> Any:
            out = self.jax_fn(*values)
            if v is None:
                return jnp.reshape(jax.tree_util.tree_leaves(out)[0], ())
            flat = self.flat_outputs(out)
            return jnp.sum(flat * jnp.asarray(np.reshape(v, flat.shape), dtype=flat.dtype))

        return scalar

    def jvp(self, *items: Any, tangents: tuple[Any, ...]) -> Any:
        """``jax.jvp`` of f at ``items`` along ``tangents``: the output's tangent, flat as the
        engine sees f's output."""
        import jax
        import jax.numpy as jnp

        with as_caller_runs(items):
            primals = tuple(jnp.asarray(x) for x in items)
        tangents = tuple(
            jnp.asarray(t, dtype=p.dtype) for t, p in zip(tangents, primals, strict=True)
        )

        def pushed(*values: Any) -> Any:
            half = len(values) // 2
            _, tangent = jax.jvp(self.jax_fn, values[:half], values[half:])
            return self.flat_outputs(tangent)

        with as_caller_runs(items):
            return np.asarray(_compiled_or_eager(pushed, (*primals, *tangents)))

    def cotangent_in(self, given: Any) -> Any:
        """A user's cotangent (a pytree like f's output) as the engine takes it."""
        if given is None:
            return None
        import jax

        leaves = jax.tree_util.tree_leaves(given)
        if len(leaves) == 1 and not isinstance(given, (tuple, list, dict)):
            return np.asarray(leaves[0])
        if isinstance(given, (tuple, list)) and len(leaves) == len(given):
            return tuple(np.asarray(x) for x in leaves)
        paths, _ = jax.tree_util.tree_flatten_with_path(given)
        return {jax.tree_util.keystr(p): np.asarray(x) for p, x in paths}

    def output_tree(self, v: np.ndarray) -> Any:
        """The engine's flat cotangent as a pytree like f's output (what a formula receives)."""
        import jax
        import jax.numpy as jnp

        treedef, kinds = self._out
        if len(kinds) == 1:
            return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v)])
        outs = self.jax_fn(*(jnp.asarray(x) for x in self.inputs.values()))
        parts: list[Any] = []
        offset = 0
        for x in jax.tree_util.tree_leaves(outs):
            size = int(np.prod(x.shape, dtype=np.int64))
            if jnp.issubdtype(x.dtype, jnp.inexact):
                parts.append(jnp.asarray(v[offset : offset + size].reshape(x.shape)))
                offset += size
            else:
                parts.append(None)
        return jax.tree_util.tree_unflatten(treedef, parts)


def _out_kind(x: Any) -> str:
    import jax.numpy as jnp

    dtype = getattr(x, "dtype", np.asarray(x).dtype)
    return "float" if jnp.issubdtype(dtype, jnp.inexact) else "other"


def adapt(f: Callable[..., Any], inputs: Any, wrt: Any = None) -> Problem:
    """The flat :class:`Problem` of ``f`` at ``inputs`` (module docstring)."""
    import jax

    if isinstance(inputs, list):
        raise TypeError(
            "inputs is a list; pass a tuple of arguments (f(*inputs)), a dict of keyword "
            "arguments, or one argument. A list meant as one pytree argument: pass (inputs,)"
        )
    kwargs = isinstance(inputs, Mapping)
    args: Any = dict(inputs) if kwargs else inputs if isinstance(inputs, tuple) else (inputs,)
    if not args:
        raise ValueError("inputs is empty; pass at least one array to differentiate")
    paths, treedef = jax.tree_util.tree_flatten_with_path(args)
    leaves = [x for _, x in paths]
    tops = [_top(p[0]) for p, _ in paths]
    top_names = _top_names(f, args, kwargs)
    if wrt is not None:
        asked = _asked(wrt, args, kwargs)
        chosen = tuple(i for i, x in enumerate(leaves) if tops[i] in asked and floating(x, False))
    else:
        jax_only = any(_arrays.is_jax(x) for x in leaves)
        chosen = tuple(i for i, x in enumerate(leaves) if floating(x, jax_only))
    if not chosen:
        kinds = ", ".join(sorted({type(x).__name__ for x in leaves}))
        raise TypeError(
            f"no input to differentiate: the leaves of the inputs are {kinds}. gradcheck "
            "differentiates floating JAX arrays (and floating NumPy arrays without JAX ones); "
            "pass one, or name the arguments with wrt="
        )
    for i in chosen:
        _check_leaf(leaves[i], top_names[tops[i]] + jax.tree_util.keystr(paths[i][0][1:]))
    names = tuple(top_names[tops[i]] + jax.tree_util.keystr(paths[i][0][1:]) for i in chosen)
    return Problem(f, kwargs, leaves, treedef, chosen, names)


def _check_leaf(x: Any, name: str) -> None:
    import jax.numpy as jnp

    if jnp.issubdtype(x.dtype, jnp.complexfloating) if hasattr(x, "dtype") else False:
        raise TypeError(
            f"input {name} is complex; gradcheck checks JAX code on real inputs. Pass its real "
            "and imaginary parts as two real arrays, or keep it out with wrt="
        )
    if _arrays.dtype_name(x) not in _arrays.FLOAT_EPS:
        raise TypeError(
            f"input {name} has dtype {_arrays.dtype_name(x)}, which gradcheck "
            "cannot differentiate; cast it to float32 or float64"
        )
    if int(np.prod(np.shape(x), dtype=np.int64)) == 0:
        raise ValueError(f"input {name} is empty: nothing to differentiate; leave it out with wrt=")


def _top(key: Any) -> Any:
    return key.key if hasattr(key, "key") else key.idx


def _top_names(f: Callable[..., Any], args: Any, kwargs: bool) -> dict[Any, str]:
    """How each top-level argument is named: its key, f's parameter name, or ``args[i]``."""
    if kwargs:
        return {k: str(k) for k in args}
    names = {i: f"args[{i}]" for i in range(len(args))}
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return names
    for i, param in enumerate(params[: len(args)]):
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        names[i] = param.name
    return names


def _asked(wrt: Any, args: Any, kwargs: bool) -> set[Any]:
    asked = (wrt,) if isinstance(wrt, (int, str)) else tuple(wrt)
    known = set(args) if kwargs else set(range(len(args)))
    unknown = [w for w in asked if w not in known or isinstance(w, bool)]
    if unknown or not asked:
        raise ValueError(
            f"wrt={wrt!r}: {unknown or 'nothing'} is not an argument; give positions of the "
            "arguments (or keys of a dict of inputs)"
        )
    return set(asked)


@dataclass(frozen=True)
class JaxVjp:
    """JAX's reverse mode at the engine's inputs: ``jax.vjp`` pulled back along the cotangent
    (custom_vjp and custom_jvp rules included)."""

    problem: Problem
    name: str = "jax.vjp"

    def gradients(
        self, f: Callable[..., Any], inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        del f  # JAX differentiates the JAX function, not the engine's NumPy view of it
        import jax
        import jax.numpy as jnp

        with as_caller_runs(inputs):
            primals = [jnp.asarray(x) for x in inputs]

        def pulled(*values: Any) -> Any:
            out, pullback = jax.vjp(self.problem.jax_fn, *values)
            return pullback(self.problem.cotangent_tree(out, cotangent))

        try:
            with as_caller_runs(inputs):
                grads = _compiled_or_eager(pulled, primals)
        except Exception as exc:
            raise CallError(
                f"the backward of f (jax.vjp) raised {type(exc).__name__} at x: {exc}"
            ) from exc
        return tuple(_float64(g, x) for g, x in zip(grads, inputs, strict=True))


def _compiled_or_eager(fn: Callable[..., Any], values: Any) -> Any:
    """``jax.jit(fn)(*values)``: one compile instead of one per primitive (eager JAX compiles
    each op it meets, which costs seconds for a second derivative); ``fn`` itself where f
    cannot be traced (Python control flow on values), whose error is then f's own."""
    import jax

    try:
        return jax.jit(fn)(*values)
    except Exception:
        return fn(*values)


def _float64(g: Any, x: Any) -> np.ndarray:
    if g is None or str(getattr(g, "dtype", "")) == "float0":
        return np.zeros(np.shape(x))
    return np.asarray(g, dtype=np.float64)


@dataclass(frozen=True)
class JaxFormula:
    """A hand formula for a JAX f: called as f is (the user's arguments, JAX arrays), with
    ``cotangent=`` (a pytree like f's output) for a non-scalar f when it accepts one; returns
    one gradient per argument (a dict by name for dict inputs), each a pytree like its
    argument, None where nothing in it is differentiated."""

    problem: Problem
    fn: Callable[..., Any]
    explicit_cotangent: bool = False
    name: str = "formula"

    def gradients(
        self, f: Callable[..., Any], inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        del f
        with as_caller_runs(inputs):
            return self._gradients(inputs, cotangent)

    def _gradients(
        self, inputs: tuple[Any, ...], cotangent: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        import jax.numpy as jnp

        args, kwargs = self.problem.arguments([jnp.asarray(x) for x in inputs])
        extra = {}
        if cotangent is not None:
            if accepts_keyword(self.fn, "cotangent"):
                extra["cotangent"] = self.problem.output_tree(cotangent)
            elif not self.explicit_cotangent:
                raise ValueError(
                    "f returns a non-scalar output and the formula takes no cotangent, so it "
                    "cannot give a vector-Jacobian product. Let the formula accept a "
                    "`cotangent` keyword (a pytree like f's output), or pass "
                    "check(..., cotangent=v) and return the product for that v"
                )
        try:
            out = self.fn(*args, **kwargs, **extra)
        except Exception as exc:
            raise CallError(
                f"the gradient formula raised {type(exc).__name__} at x: {exc}"
            ) from exc
        return self._leaves(out, inputs)

    def _leaves(self, out: Any, inputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        """The formula's gradients at the differentiated leaves, in order."""
        import jax

        p = self.problem
        if p.kwargs:
            given: Any = out
        else:
            arguments = len(jax.tree_util.tree_unflatten(p.treedef, p.leaves))
            several = isinstance(out, (tuple, list)) and len(out) == arguments
            given = tuple(out) if several and (arguments > 1 or len(out) == 1) else (out,)
        none_leaves = [None] * len(p.leaves)
        template = jax.tree_util.tree_unflatten(p.treedef, list(range(len(p.leaves))))
        try:
            aligned = _align(template, given, none_leaves)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(
                f"the {self.name} gradient does not match the arguments' structure ({exc}); "
                "return one gradient per argument, each shaped like it (a pytree like a "
                "pytree argument), None where nothing is differentiated"
            ) from exc
        grads = []
        for position, (i, x) in enumerate(zip(p.chosen, inputs, strict=True)):
            g = aligned[i]
            if g is not None and np.shape(g) != np.shape(x):
                raise ValueError(
                    f"the {self.name} gradient for {p.names[position]} has shape {np.shape(g)}, "
                    f"but the input has shape {np.shape(x)}; return a gradient shaped like it"
                )
            grads.append(_float64(g, x))
        return tuple(grads)


def _align(template: Any, given: Any, out: list[Any]) -> list[Any]:
    """Walk ``template`` (the arguments with each leaf replaced by its index) beside ``given``;
    ``out[index]`` gets the given leaf (None where a subtree is None)."""
    if given is None:
        return out
    if isinstance(template, int):
        out[template] = given
    elif isinstance(template, Mapping):
        for key, sub in template.items():
            _align(sub, given.get(key) if isinstance(given, Mapping) else given[key], out)
    elif isinstance(template, (tuple, list)):
        if len(given) != len(template):
            raise ValueError(f"{len(given)} entries where {len(template)} are expected")
        for sub, g in zip(template, given, strict=True):
            _align(sub, g, out)
    return out
