"""Gradient cases for mylib's custom autograd Functions; torch autograd runs their backward."""

from mylib.functions import Cube, Tanh

from gradcheck import case, normal

cube = case(name="cube", f=lambda x: Cube.apply(x).sum(), inputs={"x": normal(3)})

tanh = case(name="tanh", f=lambda x: Tanh.apply(x).sum(), inputs={"x": normal(3)})
