"""Embedding: torch parity (forward, weight gradient, tangents), finite differences, bad indices."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import numerical_vjp, rel_error


@given(n=st.integers(1, 4), length=st.integers(1, 3), k=st.integers(1, 6), d=st.integers(1, 5),
       seed=st.integers(0, 100))
def test_embedding_against_torch_and_finite_differences(n, length, k, d, seed):
    rng = np.random.default_rng(seed)
    net = minigan.Sequential(minigan.Embedding(k, d), minigan.Tanh(), dtype=np.float64, seed=seed)
    idx = rng.integers(0, k, (n, length))
    y, tape = net.forward(idx)
    dy, w_dot, dy_dot = rng.standard_normal(y.shape), rng.standard_normal((k, d)), rng.standard_normal(y.shape)
    dx, grads = net.backward(dy, tape)
    assert dx is None                                            # integer input: no gradient
    t = torch.nn.Embedding(k, d).double()
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(net.parameters()["0.weight"]))
    ty = torch.tanh(t(torch.from_numpy(idx)))
    ty.backward(torch.from_numpy(dy))
    assert rel_error(y, ty.detach().numpy()) <= 1e-12
    assert rel_error(grads["0.weight"], t.weight.grad.numpy()) <= 1e-12
    w = net.parameters()["0.weight"]
    fd = numerical_vjp(lambda _: net.forward(idx)[0], w, dy)
    assert rel_error(grads["0.weight"], fd) <= 1e-7
    # tangents: forward-over-reverse in torch
    import torch.autograd.forward_ad as fwad
    with fwad.dual_level():
        wd = fwad.make_dual(torch.from_numpy(w.copy()), torch.from_numpy(w_dot)).requires_grad_(True)
        out = torch.tanh(torch.nn.functional.embedding(torch.from_numpy(idx), wd))
        g, = torch.autograd.grad(out, wd, fwad.make_dual(torch.from_numpy(dy), torch.from_numpy(dy_dot)),
                                 create_graph=True)
        t_y_dot, t_g_dot = fwad.unpack_dual(out).tangent, fwad.unpack_dual(g).tangent
    y_dot, ttape = net.jvp(tape, params_dot={"0.weight": w_dot})
    _, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
    assert rel_error(y_dot, t_y_dot.detach().numpy()) <= 1e-10
    assert rel_error(grads_dot["0.weight"], t_g_dot.detach().numpy()) <= 1e-10


def test_embedding_refuses_bad_indices_and_float_input():
    net = minigan.Sequential(minigan.Embedding(3, 2), dtype=np.float64)
    with pytest.raises(minigan.LayerInputError, match=r"indices must lie in \[0, 3\), got \[0, 3\]"):
        net.forward(np.array([0, 3]))
    with pytest.raises(minigan.LayerInputError, match="expected integer indices"):
        net.forward(np.array([0.0, 1.0]))
    other = minigan.Sequential(minigan.Linear(2, 2), dtype=np.float64)
    with pytest.raises(minigan.LayerInputError, match="expected input of dtype float64, got int64"):
        other.forward(np.array([[0, 1]]))
