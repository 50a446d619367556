"""Declare: case() and descent() make frozen, checked specs that remember where they were made."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import gradcheck
from gradcheck import case, descent, normal, uniform
from gradcheck._cases.case import case_seed


def square(x):
    return (x**2).sum()


def test_the_smallest_case_fills_defaults_float64_and_float32_and_expect_pass():
    c = case(name="square", f=square, inputs={"x": np.array([3.0, 4.0])}, grad=lambda x: 2 * x)
    assert c.dtypes == ("float64", "float32")
    assert c.expect == "pass"
    assert c.wrt == ("x",)
    assert [s.name for s in c.sources] == ["formula"]


def test_a_case_without_grad_checks_torch_autograd():
    c = case(name="auto", f=square, inputs={"x": np.ones(2)})
    assert [s.name for s in c.sources] == ["autograd"]
    assert c.sources[0].is_autograd


def test_named_formulas_and_autograd_together_give_one_source_each_in_order():
    c = case(
        name="both",
        f=square,
        inputs={"x": np.ones(2)},
        grad={"by_hand": lambda x: 2 * x, "also": lambda x: x + x},
        autograd=True,
    )
    assert [s.name for s in c.sources] == ["autograd", "by_hand", "also"]


def test_a_named_function_gives_its_name_to_the_source():
    def square_grad(x):
        return 2 * x

    c = case(name="named", f=square, inputs={"x": np.ones(2)}, grad=square_grad)
    assert c.sources[0].name == "square_grad"


def test_a_case_records_the_file_and_line_where_case_was_called():
    line = inspect.currentframe().f_lineno + 1
    c = case(name="here", f=square, inputs={"x": np.ones(2)})
    assert c.file == __file__
    assert c.line == line


def test_a_case_is_frozen():
    c = case(name="frozen", f=square, inputs={"x": np.ones(2)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.inputs["x"] = np.zeros(2)  # type: ignore[index]


def test_the_case_keeps_a_private_copy_of_the_users_array():
    x = np.array([3.0, 4.0])
    c = case(name="copy", f=square, inputs={"x": x})
    x[0] = 100.0
    assert c.inputs["x"].tolist() == [3.0, 4.0]
    assert not c.inputs["x"].flags.writeable


def test_constants_are_the_inputs_left_out_of_wrt():
    c = case(
        name="model",
        f=lambda w, x, y: ((x * w - y) ** 2).mean(),
        inputs={"w": 1.0, "x": np.array([1.0, 2.0]), "y": np.array([2.0, 4.0])},
        wrt="w",
    )
    assert c.wrt == ("w",)
    assert set(c.inputs) == {"w", "x", "y"}


def test_normal_and_uniform_describe_shapes_and_draw_from_the_rng_they_are_given():
    n = normal(4, 3, mean=1.0, std=2.0)
    u = uniform(5, low=-1.0, high=1.0)
    assert n.shape == (4, 3) and u.shape == (5,)
    drawn = n.sample(np.random.default_rng(7))
    assert drawn.shape == (4, 3)
    assert np.array_equal(drawn, np.random.default_rng(7).normal(1.0, 2.0, size=(4, 3)))
    values = u.sample(np.random.default_rng(1))
    assert np.all((values >= -1.0) & (values < 1.0))


def test_the_case_seed_mixes_the_run_seed_and_the_name():
    assert case_seed(0, "a") == case_seed(0, "a")
    assert case_seed(0, "a") != case_seed(1, "a")
    assert case_seed(0, "a") != case_seed(0, "b")


def test_the_case_seed_is_the_same_in_another_process_with_another_hash_seed():
    code = "from gradcheck._cases.case import case_seed; print(case_seed(3, 'square'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == str(case_seed(3, "square"))


def test_the_public_names_are_the_ones_in_the_module():
    assert gradcheck.case is case and gradcheck.normal is normal and gradcheck.descent is descent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": [1.0]}, "must be a non-empty dict"),
        ({"inputs": {}}, "must be a non-empty dict"),
        ({"inputs": {"x": "abc"}}, "input 'x' is a str"),
        ({"inputs": {"x": np.ones(2)}, "wrt": "y"}, "must name at least one input"),
        ({"inputs": {"x": np.array([1, 2])}}, "differentiated but has dtype int64"),
        ({"inputs": {"x": np.ones(2)}, "expect": "xfail"}, "expect='xfail'"),
        ({"inputs": {"x": np.ones(2)}, "dtypes": ["float16"]}, "use 'float64' and/or 'float32'"),
        ({"inputs": {"x": np.ones(2)}, "arrays": "numpy"}, "cannot go with torch autograd"),
        ({"inputs": {"x": np.ones(2)}, "autograd": False}, "no gradient source"),
        ({"inputs": {"x": np.ones(2)}, "rtol": -1.0}, "non-negative"),
        ({"inputs": {"x": np.ones(2)}, "tags": ["two words"]}, "without spaces"),
        ({"inputs": {"x": np.ones(2)}, "name": ""}, "non-empty string"),
        ({"inputs": {"x": np.ones(2)}, "batched": 3}, "batched must be a batched form of f"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_problem(kwargs, message):
    arguments = {"name": "bad", "f": square, **kwargs}
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(")):
        case(**arguments)


def test_f_must_be_callable():
    with pytest.raises(TypeError, match="f must be callable"):
        case(name="bad", f=3, inputs={"x": np.ones(2)})


def test_bad_generator_arguments_are_refused():
    with pytest.raises(ValueError, match="positive, finite std"):
        normal(3, std=0.0)
    with pytest.raises(ValueError, match="low < high"):
        uniform(3, low=1.0, high=1.0)
    with pytest.raises(ValueError, match="non-negative integers"):
        normal(2.5)


def test_a_descent_case_fills_defaults_and_records_its_line():
    line = inspect.currentframe().f_lineno + 1
    d = descent(name="sgd", loss=lambda x: x**2, params={"x": 0.0})
    assert (d.lr, d.epochs, d.batch, d.line, d.file) == (0.01, 100, "full", line, __file__)
    assert d.wrt == ("x",) and d.kind == "descent"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": "minibatch"}, "use 'full' or 'sample'"),
        ({"batch": "sample"}, "needs data="),
        ({"epochs": 0}, "positive integer"),
        ({"lr": -0.1}, "positive, finite learning rate"),
        ({"params": {"x": normal(2)}}, "concrete start values"),
        ({"data": {"a": [1.0, 2.0], "b": [1.0]}}, "differ in length"),
        ({"data": {"x": [1.0, 2.0]}}, "both a parameter and data"),
    ],
)
def test_a_bad_descent_declaration_is_refused_naming_the_problem(kwargs, message):
    arguments = {"name": "bad", "loss": lambda x: x**2, "params": {"x": 0.0}, **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        descent(**arguments)
