"""JAX code and JAX values: the same verdicts as for NumPy and torch, and jax's own call.

The corpus (``tests/jax_corpus.py``) holds JAX functions with custom rules of each class, each
correct and with mutants; ``benchmarks/bench_jax.py`` measures it against
``jax.test_util.check_grads``. Expected verdicts come from the mutants' construction (a rule
times 1 + 1e-6 is wrong), never from the code under test.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip(
    "jax", reason="jax is not installed (pip install 'gradcheck[jax]'; CI installs it)"
)
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads as jax_check_grads  # noqa: E402
from jax_corpus import FAMILIES, pytree_mlp, softmax_xent  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck.jax import check_grads  # noqa: E402


def built(family: str, mutant: str | None, dtype: str):  # type: ignore[no-untyped-def]
    """The family's f and arguments, made in ``dtype`` (float64 needs JAX's 64-bit mode)."""
    build = FAMILIES[family][0]
    with jax.enable_x64(dtype == "float64"):
        return build(mutant, dtype)


def first_line(exc: pytest.ExceptionInfo[AssertionError]) -> str:
    return str(exc.value).splitlines()[0]


# -- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_correct_rule_passes_at_its_order_and_modes(family, dtype):
    _, _, order, modes = FAMILIES[family]
    f, args = built(family, None, dtype)
    assert check_grads(f, args, order, modes=modes) is None


MUTANTS = [
    (family, mutant, dtype)
    for family, (_, mutants, _, _) in sorted(FAMILIES.items())
    for dtype in ("float64", "float32")
    for mutant in mutants
    # float32: every mutant of 1e-3 relative or more is caught; the cheapest of them suffice
    # here (the larger scale, sign and missing-term mutants are in the benchmark)
    if dtype == "float64" or mutant in ("scale:1e-3", "labels", "second")
]


@pytest.mark.parametrize(("family", "mutant", "dtype"), MUTANTS)
def test_a_mutant_is_caught(family, mutant, dtype):
    _, _, order, modes = FAMILIES[family]
    order = order if mutant == "second" else 1  # a first-order bug fails at order 1
    f, args = built(family, mutant, dtype)
    with pytest.raises(AssertionError) as caught:
        check_grads(f, args, order, modes=modes)
    assert "fail" in first_line(caught)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_second_order_only_bug_passes_order_1_and_fails_order_2_saying_so(family):
    _, _, _, modes = FAMILIES[family]
    f, args = built(family, "second", "float64")
    check_grads(f, args, 1, modes=modes)
    with pytest.raises(AssertionError) as caught:
        check_grads(f, args, 2, modes=modes)
    assert "order 2 fail" in first_line(caught)
    assert "order 1 fail" not in first_line(caught)


def test_jax_check_grads_misses_a_1e6_scale_error_that_gradcheck_catches():
    f, args = built("softmax_xent", "scale:1e-6", "float64")
    with jax.enable_x64(True):
        jax_check_grads(f, args, 1, modes=("rev",))  # one direction, eps 1e-4: it passes
    with pytest.raises(AssertionError) as caught:
        check_grads(f, args, 1, modes=("rev",))
    assert "rev (VJP), order 1 fail" in first_line(caught)
    assert "logits" in str(caught.value)  # the table names the input and its elements


def test_a_wrong_derivative_in_the_labels_is_caught_and_the_labels_are_named():
    f, args = built("softmax_xent", "labels", "float64")
    result = gradcheck.check(f, args)
    assert result.verdict == "fail"
    failing = {c.name for c in result.inputs if c.verdict == "fail"}
    assert failing == {"labels"}


# -- inputs: pytrees, constants, nondiff_argnums ---------------------------------------------


def test_pytree_leaves_are_inputs_named_by_path_and_constants_reach_f_unchanged():
    seen = []
    f, (params, batch, config) = built("pytree_mlp", None, "float64")

    def loss(params, batch, config):  # type: ignore[no-untyped-def]
        seen.append((type(config["scale"]), config["name"], batch["y"].dtype))
        return f(params, batch, config)

    result = gradcheck.check(loss, (params, batch, config))
    assert result.verdict == "pass", result.summary()
    names = [c.name for c in result.inputs]
    assert names == [
        "params['first'][0]",
        "params['first'][1]",
        "params['rest'][0][0]",
        "params['rest'][0][1]",
        "batch['x']",
    ]
    assert all(s[0] is int and s[1] == "static" for s in seen)
    assert all(jnp.issubdtype(s[2], jnp.integer) for s in seen)


def test_nondiff_argnums_get_their_int_and_wrt_picks_arguments():
    f, args = built("power_nondiff", None, "float64")
    assert gradcheck.check(f, args).verdict == "pass"  # power asserts n is an int
    with jax.enable_x64(True):
        x = jnp.linspace(0.5, 1.5, 4)
    result = gradcheck.check(lambda x, y: jnp.sum(x * jnp.sin(y)), (x, x + 1), wrt=1)
    assert [c.name for c in result.inputs] == ["y"]


def test_the_inputs_are_not_modified_and_64_bit_mode_is_restored():
    x = jnp.linspace(-1.0, 1.0, 5)  # float32: 64-bit mode is off here
    before = np.array(x)
    assert not jax.config.jax_enable_x64
    assert gradcheck.check(lambda x: jnp.sum(jnp.tanh(x)), (x,)).verdict == "pass"
    assert not jax.config.jax_enable_x64
    with pytest.raises(Exception, match="boom"):
        gradcheck.check(lambda x: (_ for _ in ()).throw(ValueError("boom")), (x,))
    assert not jax.config.jax_enable_x64
    np.testing.assert_array_equal(np.array(x), before)
    assert x.dtype == jnp.float32


def test_float32_is_judged_by_measured_precision_in_float64():
    x = jnp.linspace(-2.0, 2.0, 6)
    result = gradcheck.check(lambda x: jnp.sum(jnp.sin(x) * x), (x,))
    assert result.verdict == "pass"
    assert result.numerics.policy == "promoted"
    assert result.inputs[0].dtype == "float32"
    assert result.inputs[0].tolerance_basis == "measured"


# -- outputs and the analytic side -----------------------------------------------------------


def test_a_non_scalar_output_is_judged_along_a_seeded_cotangent():
    with jax.enable_x64(True):
        x = jnp.linspace(-1.0, 1.0, 4)
    first = gradcheck.check(lambda x: jnp.sin(x) * x, (x,), seed=3)
    again = gradcheck.check(lambda x: jnp.sin(x) * x, (x,), seed=3)
    assert first.verdict == "pass"
    assert first.cotangent is not None
    np.testing.assert_array_equal(first.cotangent, again.cotangent)
    assert first.summary() == again.summary()


def test_several_outputs_are_judged_and_an_integer_output_is_skipped():
    @jax.custom_vjp
    def pair(x):  # type: ignore[no-untyped-def]
        return jnp.sin(x), jnp.cos(x)

    pair.defvjp(lambda x: (pair(x), x), lambda x, g: (g[0] * jnp.cos(x) + g[1] * jnp.sin(x),))
    with jax.enable_x64(True):
        x = jnp.linspace(0.1, 1.0, 3)

    def f(x):  # type: ignore[no-untyped-def]
        s, c = pair(x)
        return {"s": s, "c": c, "n": jnp.argmax(x)}

    result = gradcheck.check(f, (x,))
    assert result.verdict == "fail"  # the cos term's sign is wrong: d cos = -sin
    assert result.outputs is not None
    assert any("n" in s for s in result.outputs.skipped)


def test_a_hand_formula_for_a_jax_f_works_as_for_numpy():
    with jax.enable_x64(True):
        w = {"a": jnp.array([0.3, -0.7]), "b": jnp.array(1.5)}

    def f(w, scale):  # type: ignore[no-untyped-def]
        return scale * jnp.sum(jnp.sin(w["a"]) * w["b"])

    def right(w, scale):  # type: ignore[no-untyped-def]
        return {"a": scale * jnp.cos(w["a"]) * w["b"], "b": scale * jnp.sum(jnp.sin(w["a"]))}, None

    def wrong(w, scale):  # type: ignore[no-untyped-def]
        return {"a": scale * jnp.cos(w["a"]), "b": scale * jnp.sum(jnp.sin(w["a"]))}, None

    assert gradcheck.check(f, (w, 2), right).verdict == "pass"
    assert gradcheck.check(f, (w, 2), wrong).verdict == "fail"

    def vjp(x, cotangent):  # type: ignore[no-untyped-def]
        return cotangent * jnp.cos(x)

    x = jnp.linspace(0.0, 1.0, 3)
    assert gradcheck.check(jnp.sin, (x,), vjp).verdict == "pass"


def test_forward_mode_of_a_custom_vjp_function_is_inconclusive_saying_to_check_rev_only():
    f, args = built("newton_sqrt", None, "float64")
    result = gradcheck.check(f, args, modes=("rev", "fwd"))
    assert result.verdict == "inconclusive"
    assert any("modes=('rev',)" in r for r in result.reasons)


# -- the numerical side ----------------------------------------------------------------------


def test_a_large_input_is_evaluated_by_jit_vmap_and_the_same_seed_gives_the_same_report():
    with jax.enable_x64(True):
        w = jnp.asarray(np.random.default_rng(0).normal(size=(40, 30)))
    X = jnp.asarray(np.random.default_rng(1).normal(size=(6, 40)))

    def loss(w, X):  # type: ignore[no-untyped-def]
        return jnp.mean(jnp.tanh(X @ w) ** 2)

    first = gradcheck.check(loss, (w, X), wrt=0, mode="full")
    assert first.verdict == "pass"
    assert first.numerics.path == "batched"
    assert "jax.jit(jax.vmap(f))" in first.numerics.path_reason
    again = gradcheck.check(loss, (w, X), wrt=0, mode="full")
    assert again.summary() == first.summary()
    looped = gradcheck.check(loss, (w, X), wrt=0, mode="full", batch="loop")
    assert looped.numerics.path == "loop"
    assert looped.verdict == "pass"


def test_an_f_that_jit_and_vmap_refuse_falls_back_to_the_loop_and_says_why():
    with jax.enable_x64(True):
        x = jnp.linspace(0.1, 1.0, 1100)

    def f(x):  # type: ignore[no-untyped-def]
        if x[0] > 0:  # Python control flow on a value: JAX differentiates it, jit cannot
            return jnp.sum(x**3)
        return jnp.sum(x)

    result = gradcheck.check(f, (x,), mode="full")
    assert result.verdict == "pass"
    assert result.numerics.path == "loop"
    assert "jax.jit(jax.vmap(f)) failed" in result.numerics.path_reason


def test_the_screen_locates_a_wrong_element_of_a_large_jax_input():
    @jax.custom_vjp
    def g(x):  # type: ignore[no-untyped-def]
        return jnp.sin(x)

    def bwd(x, ct):  # type: ignore[no-untyped-def]
        return (ct * jnp.cos(x) * jnp.where(jnp.arange(x.size) == 4321, 1.01, 1.0),)

    g.defvjp(lambda x: (jnp.sin(x), x), bwd)
    with jax.enable_x64(True):
        x = jnp.linspace(-2.0, 2.0, 6000)
    result = gradcheck.check(lambda x: jnp.sum(g(x) ** 2), (x,), mode="screen")
    assert result.verdict == "fail"
    assert result.screen is not None
    assert result.inputs[0].worst_index == (4321,)


# -- check_grads: jax's call -----------------------------------------------------------------


def test_check_grads_takes_jaxs_arguments_and_refuses_what_it_cannot_do():
    x = jnp.linspace(0.1, 1.0, 4)
    assert check_grads(jnp.sin, (x,), 1) is None
    assert check_grads(jnp.sin, (x,), 2, modes=["rev"], atol={np.float32: 1e-5}, eps=1e-3) is None
    with pytest.raises(ValueError, match="order 1 or 2"):
        check_grads(jnp.sin, (x,), 3)
    with pytest.raises(ValueError, match="modes"):
        check_grads(jnp.sin, (x,), 1, modes=("lin",))


def test_check_grads_takes_numpy_arguments_of_jax_code():
    x = np.linspace(0.1, 1.0, 4)
    assert check_grads(lambda x: jnp.sum(jnp.exp(x)), (x,), 1) is None


def test_a_jax_case_runs_through_the_registry_and_the_command_line(tmp_path, capsys):
    from gradcheck.cli import main

    (tmp_path / "jax_cases.py").write_text(
        textwrap.dedent(
            """
            import jax
            import jax.numpy as jnp
            from gradcheck import case, normal

            @jax.custom_vjp
            def square(x):
                return x * x

            square.defvjp(lambda x: (x * x, x), lambda x, g: (g * 2.001 * x,))

            good = case(name="jax_good", f=lambda x: jnp.sum(jnp.tanh(x)),
                        inputs={"x": normal(5)}, arrays="jax", order=2)
            bad = case(name="jax_bad", f=lambda x: jnp.sum(square(x)),
                       inputs={"x": normal(3)}, arrays="jax", expect="fail")
            jitted = case(name="jax_jitted", f=jax.jit(lambda x: jnp.sum(jnp.sin(x))),
                          inputs={"x": jnp.ones(3)})
            """
        )
    )
    json_path = tmp_path / "report.json"
    assert main(["run", str(tmp_path), "--output", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "jax_bad" in out and "fail (expected)" in out
    assert "jax_jitted" in json_path.read_text()


def test_a_numpy_check_imports_no_jax(fresh_python):
    fresh_python(
        "import sys, numpy as np, gradcheck\n"
        "r = gradcheck.check(lambda x: float(np.sum(x**2)), np.ones(3), lambda x: 2 * x)\n"
        "assert r.verdict == 'pass'\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
        "print('ok')\n"
    )


def test_importing_gradcheck_jax_and_checking_restores_the_callers_64_bit_mode():
    assert "jax" in sys.modules
    with jax.enable_x64(True):
        x = jnp.linspace(0.1, 1.0, 3)
        check_grads(jnp.sin, (x,), 1)
        assert jax.config.jax_enable_x64
    assert not jax.config.jax_enable_x64
    # the corpus function the benchmark's MLP resembles, in float32, passes too
    f, args = pytree_mlp(None, "float32")
    assert gradcheck.check(f, args).verdict == "pass"
    f, args = softmax_xent(None, "float32")
    assert gradcheck.check(f, args).verdict == "pass"


def test_a_given_cotangent_is_used_as_given():
    with jax.enable_x64(True):
        x = jnp.linspace(0.2, 1.0, 3)
    v = jnp.array([1.0, 0.0, -2.0])
    result = gradcheck.check(lambda x: jnp.exp(x), (x,), cotangent=v)
    assert result.verdict == "pass"
    np.testing.assert_array_equal(result.cotangent, [1.0, 0.0, -2.0])
    # the vector-Jacobian product along v: v * exp(x), from the chain rule
    expected = np.array([1.0, 0.0, -2.0]) * np.exp(np.asarray(x))
    np.testing.assert_allclose(result.inputs[0].analytic, expected, rtol=1e-12)


def test_check_grads_per_dtype_tolerances_apply_to_each_leaf():
    with jax.enable_x64(True):
        x64 = jnp.linspace(0.1, 1.0, 3)
    x32 = jnp.linspace(0.1, 1.0, 3, dtype=jnp.float32)

    @jax.custom_vjp
    def off(x, y):  # type: ignore[no-untyped-def]
        return jnp.sum(jnp.sin(x)) + jnp.sum(y * y)

    off.defvjp(
        lambda x, y: (off(x, y), (x, y)), lambda r, g: (g * jnp.cos(r[0]) * 1.01, 2 * g * r[1])
    )
    with pytest.raises(AssertionError):
        check_grads(off, (x64, x32), 1, modes=("rev",))
    check_grads(off, (x64, x32), 1, modes=("rev",), rtol={np.float64: 0.05})  # float32: default


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_jax_inputs_are_judged_by_measured_precision(dtype):
    @jax.custom_vjp
    def g(x):  # type: ignore[no-untyped-def]
        return jnp.tanh(x)

    def bwd(factor):  # type: ignore[no-untyped-def]
        return lambda x, ct: (ct * (1 - jnp.tanh(x) ** 2) * factor,)

    x = jnp.linspace(-1.0, 1.0, 6, dtype=dtype)
    g.defvjp(lambda x: (jnp.tanh(x), x), bwd(1.0))
    right = gradcheck.check(lambda x: jnp.sum(g(x) * x), (x,))
    assert right.verdict == "pass", right.summary()
    assert right.inputs[0].dtype == dtype
    g.defvjp(lambda x: (jnp.tanh(x), x), bwd(1.1))
    assert gradcheck.check(lambda x: jnp.sum(g(x) * x), (x,)).verdict == "fail"
