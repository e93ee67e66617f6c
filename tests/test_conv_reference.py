"""The GEMM convolutions against their index-form references (the formulas written as loops), on
geometries drawn by hypothesis; the reference takes the hyperparameters from the strategy's own
draw, not from the layer's parsed attributes, so a parsing bug in the layer cannot hide here."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan.ops import conv


@st.composite
def conv_geometry(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 6))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 6))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w,
            (kh, kw), (sh, sw), (dh, dw), (ph, pw), draw(st.booleans()))


@given(g=conv_geometry())
def test_conv2d_matches_its_loops(g, cpu_kernels):
    n, c, o, h, w, k, s, d, p, bias = g
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c) + k)
    b = rng.standard_normal(o) if bias else None
    layer = minigan.Sequential(minigan.Conv2d(c, o, k, stride=s, padding=p, dilation=d, bias=bias), dtype=np.float64)
    layer.load_state_dict({"0.weight": weight, **({"0.bias": b} if bias else {})})
    pads = ((p[0], p[0]), (p[1], p[1]))
    np.testing.assert_allclose(layer(x), conv.conv2d_reference(x, weight, b, s, pads, d), rtol=1e-12, atol=1e-12)


@given(g=conv_geometry(), data=st.data())
def test_conv_transpose2d_matches_its_loops(g, data, cpu_kernels):
    n, c, o, h, w, k, s, d, p, bias = g
    op = tuple(data.draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
    oh, ow = (conv.conv_transpose_out_size(size, kk, st_, pp, dd, o_)
              for size, kk, st_, pp, dd, o_ in zip((h, w), k, s, p, d, op))
    if oh < 1 or ow < 1:
        p = (0, 0)
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, o) + k)
    b = rng.standard_normal(o) if bias else None
    layer = minigan.Sequential(minigan.ConvTranspose2d(c, o, k, stride=s, padding=p, output_padding=op, bias=bias,
                                                       dilation=d), dtype=np.float64)
    layer.load_state_dict({"0.weight": weight, **({"0.bias": b} if bias else {})})
    np.testing.assert_allclose(layer(x), conv.conv_transpose2d_reference(x, weight, b, s, p, d, op),
                               rtol=1e-12, atol=1e-12)


def test_reference_is_the_formula_on_a_hand_case():
    """A 1-channel 3x3 input, a 2x2 kernel, stride 1, no padding: four hand-computed sums."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = np.array([[[[0 + 2 + 9 + 16, 1 + 4 + 12 + 20], [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]]]])
    np.testing.assert_array_equal(conv.conv2d_reference(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1)), want)
    # the transposed convolution is the adjoint: <conv(x), y> = <x, convT(y)>
    y = np.random.default_rng(0).standard_normal((1, 1, 2, 2))
    lhs = (conv.conv2d_reference(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1)) * y).sum()
    rhs = (x * conv.conv_transpose2d_reference(y, w, None, (1, 1), (0, 0), (1, 1), (0, 0))).sum()
    assert abs(lhs - rhs) < 1e-12


@given(data=st.data())
def test_output_side_conv_is_taken_and_matches_the_input_side(data, cpu_kernels, monkeypatch):
    """conv_output_side draws (tests/strategies.py) run as a transposed convolution of the flipped
    kernel (conv._output_side); the layer tests check them against finite differences and torch.
    Here: every draw does take that path (else those tests would prove the GEMM path twice), its
    output equals the index-form loops, and its backward and both tangents equal the input-side
    path's (the one conv_case proves), to rounding."""
    from strategies import conv_output_side_case
    case = data.draw(conv_output_side_case())
    layer = case.layers
    rng = np.random.default_rng(4)
    net = minigan.Sequential(layer, dtype=np.float64, seed=0)
    x = rng.standard_normal(case.shape)
    params = net.parameters()
    weight, b = params["0.weight"], params.get("0.bias")
    y_ref = conv.conv2d_reference(x, weight, b, layer.stride, layer.pads, layer.dilation)
    assert conv._output_side(x.shape, weight.shape, layer.stride, layer.pads, layer.dilation, y_ref.shape[2:])
    dy, x_dot, dy_dot = (rng.standard_normal(s) for s in (y_ref.shape, x.shape, y_ref.shape))
    p_dot = {k: rng.standard_normal(p.shape) for k, p in params.items()}

    def run():
        y, tape = net.forward(x, train=True)
        dx, grads = net.backward(dy, tape)
        y_dot, ttape = net.jvp(tape, x_dot, p_dot)
        dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
        return [y, dx, y_dot, dx_dot] + [grads[k] for k in params] + [grads_dot[k] for k in params]

    output_side = run()
    np.testing.assert_allclose(output_side[0], y_ref, rtol=1e-12, atol=1e-12)
    with monkeypatch.context() as m:          # (undone before hypothesis's next draw)
        m.setattr(conv, "_output_side", lambda *a: False)
        input_side = run()
    for name, a, b_ in zip(["y", "dx", "y_dot", "dx_dot"] + [f"d{k}" for k in params] + [f"d{k}_dot" for k in params],
                           output_side, input_side):
        np.testing.assert_allclose(a, b_, rtol=1e-11, atol=1e-11, err_msg=name)


def test_output_side_is_chosen_only_where_it_applies():
    """stride 1, symmetric padding within the kernel's reach, no more multiply-adds, 2 O <= C."""
    s1, same, d1 = (1, 1), ((1, 1), (1, 1)), (1, 1)
    assert conv._output_side((8, 64, 28, 28), (1, 64, 3, 3), s1, same, d1, (28, 28))     # dcgan-mnist's image conv
    assert not conv._output_side((8, 64, 28, 28), (64, 64, 3, 3), s1, same, d1, (28, 28))   # as many out as in
    assert not conv._output_side((8, 64, 28, 28), (1, 64, 3, 3), (2, 2), same, d1, (14, 14))  # strided
    assert not conv._output_side((8, 64, 28, 28), (1, 64, 4, 4), s1, ((1, 2), (1, 2)), d1, (28, 28))  # asymmetric
    assert not conv._output_side((8, 64, 28, 28), (1, 64, 3, 3), s1, ((3, 3), (3, 3)), d1, (32, 32))  # pad > reach
    assert not conv._output_side((8, 256, 4, 4), (1, 256, 4, 4), s1, ((0, 0), (0, 0)), d1, (1, 1))  # 16x the MACs
    assert not conv._output_side((8, 64, 28, 28), (40, 64, 3, 3), s1, same, d1, (28, 28))   # 2 O > C
