"""Every layer: finite differences (float64) and PyTorch parity (float64 and float32), shapes drawn
by hypothesis.  Parity covers the output, the input gradient, every parameter gradient and the
state (running statistics) after each of two steps, in train and eval mode."""
import numpy as np
import pytest
import torch  # the oracle: without torch this module must fail, not skip
from hypothesis import assume, given
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import check_net

from conftest import compare_with_torch, shift_running_stats, torch_net_like
from strategies import ALL_CASES

FD_TOL = 1e-7
# float32 is judged against a float64 reference, side by side with torch's own float32 error:
# sums with cancellation (dbias = sum dy, dgamma = sum dy xhat) keep fewer digits than eps32
# suggests, so no fixed bound against torch float32 is principled (see compare_with_torch)
TORCH_TOL = {np.float64: 1e-10, np.float32: 1e-5}


def _net(case, dtype, seed):
    layers = case.layers if isinstance(case.layers, list) else [case.layers]
    return minigan.Sequential(*layers, dtype=dtype, seed=seed), case.shape


def _input(rng, shape, dtype):
    """Standard normal, but kept 0.05 away from 0 so no activation kink is straddled."""
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, np.sign(x + 1e-12) * 0.05, x)
    return x.astype(dtype)


@pytest.mark.parametrize("kind", sorted(ALL_CASES))
@given(data=st.data())
def test_finite_differences(kind, data, cpu_kernels):
    case = data.draw(ALL_CASES[kind])
    train = data.draw(st.booleans())
    net, shape = _net(case, np.float64, 0)
    rng = np.random.default_rng(1)
    x = _input(rng, shape, np.float64)
    errors = check_net(net, x, train=train)
    assert max(errors.values()) <= FD_TOL, f"{net} train={train}: {errors}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", sorted(ALL_CASES))
@given(data=st.data())
def test_torch_parity(kind, dtype, data, cpu_kernels):
    case = data.draw(ALL_CASES[kind])
    train = data.draw(st.booleans())
    net, shape = _net(case, dtype, data.draw(st.integers(0, 2**16)))
    shift_running_stats(net)                   # so that eval mode is a real test
    tnet = case.torch_net(net)                 # built from the drawn arguments, not the layer's attributes
    reference = case.torch_net(net).double() if dtype == np.float32 else None
    rng = np.random.default_rng(2)
    xs = [_input(rng, shape, dtype) for _ in range(2)]
    compare_with_torch(net, tnet, xs, train, TORCH_TOL[dtype], rng, reference)


# the kinds whose nets can have parameters (the others have nothing to compare)
WITH_PARAMS = sorted(set(ALL_CASES) - {"activation", "avg_pool", "upsample"})
# the kinds drawn with (N, C, H, W) input
FOUR_D = ["avg_pool", "batch_norm", "conv", "conv_output_side", "conv_transpose", "residual", "shape", "upsample"]


@pytest.mark.parametrize("kind", WITH_PARAMS)
@given(data=st.data())
def test_input_grad_false_gives_same_param_grads(kind, data, cpu_kernels):
    """Skipping the input gradient (first layer) changes no parameter gradient, in any CPU path."""
    net, shape = _net(data.draw(ALL_CASES[kind]), np.float64, 0)
    assume(net.parameters())                   # BatchNorm/LayerNorm without affine: nothing to compare
    x = _input(np.random.default_rng(1), shape, np.float64)
    y, tape = net.forward(x, train=True)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    _, grads = net.backward(dy, tape)
    dx, grads2 = net.backward(dy, tape, input_grad=False)
    assert dx is None and list(grads2) == list(grads)
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k], err_msg=k)


def test_param_grads_false_gives_same_dx_and_no_grads():
    net = minigan.Sequential(minigan.Conv2d(2, 3, 3, padding=1), minigan.BatchNorm2d(3), minigan.ReLU(),
                             minigan.Flatten(), minigan.Linear(3 * 16, 1), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 4, 4))
    y, tape = net.forward(x, train=True)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx_full, grads = net.backward(dy, tape)
    dx_only, none = net.backward(dy, tape, param_grads=False)
    assert none == {}
    np.testing.assert_array_equal(dx_full, dx_only)
    assert list(grads) == list(net.parameters())


def test_dropout_statistics_and_eval_identity():
    net = minigan.Sequential(minigan.Dropout(0.3), dtype=np.float64, seed=0)
    x = np.ones((200, 50))
    y, tape = net.forward(x, train=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    dx, _ = net.backward(np.full_like(y, 2.0), tape)
    np.testing.assert_allclose(dx, 2.0 * y)
    np.testing.assert_array_equal(net.forward(x, train=False)[0], x)
    assert np.all(minigan.Sequential(minigan.Dropout(1.0), dtype=np.float64).forward(x)[0] == 0)


def test_dropout_scales_like_torch_and_is_the_identity_in_eval():
    """Dropout's mask cannot match torch's RNG; what can: in train mode both keep x / (1 - p) or
    zero (the same two values, at about the same rate), and in eval mode both are the identity."""
    p = 0.4
    net = minigan.Sequential(minigan.Linear(4, 3), minigan.Dropout(p), dtype=np.float64, seed=0)
    tnet = torch_net_like(net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4))
    h = x @ net.parameters()["0.weight"].T + net.parameters()["0.bias"]
    ours = net.forward(x, train=True)[0] / h
    theirs = tnet.train()(torch.from_numpy(x)).detach().numpy() / h
    for ratio in (ours, theirs):
        np.testing.assert_allclose(np.unique(np.round(ratio, 9)), [0.0, 1 / (1 - p)])
        assert abs((ratio == 0).mean() - p) < 0.05
    compare_with_torch(net, tnet, [rng.standard_normal((5, 4))], False, 1e-10, rng)


def test_dcgan_init_statistics():
    net = minigan.Sequential(minigan.Conv2d(3, 64, 4), minigan.BatchNorm2d(64), minigan.Linear(10, 500),
                             dtype=np.float64, seed=0, init="dcgan")
    p = net.parameters()
    for k in ("0.weight", "2.weight"):
        assert abs(p[k].std() - 0.02) < 0.002 and abs(p[k].mean()) < 0.002
    assert abs(p["1.weight"].mean() - 1) < 0.01 and np.all(p["0.bias"] == 0)


def test_torch_default_init_bounds():
    net = minigan.Sequential(minigan.Linear(50, 20), minigan.ConvTranspose2d(8, 4, 3), dtype=np.float64, seed=0)
    p = net.parameters()
    assert np.abs(p["0.weight"]).max() <= 1 / np.sqrt(50) and np.abs(p["0.weight"]).max() > 0.9 / np.sqrt(50)
    bound = 1 / np.sqrt(4 * 9)     # torch's fan_in for ConvTranspose2d weights (Ci, Co, KH, KW) is Co*KH*KW
    assert np.abs(p["1.weight"]).max() <= bound and np.abs(p["1.weight"]).max() > 0.9 * bound
    same = minigan.Sequential(minigan.Linear(50, 20), minigan.ConvTranspose2d(8, 4, 3), dtype=np.float64, seed=0)
    np.testing.assert_array_equal(same.parameters()["1.weight"], p["1.weight"])


def _layouts(x):
    """The same values in three memory orders: C-contiguous NCHW, channels-last, and a strided slice."""
    yield "nchw", np.ascontiguousarray(x)
    yield "channels_last", np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    wide[..., ::2] = x
    yield "strided", wide[..., ::2]


@pytest.mark.parametrize("kind", FOUR_D)
@given(data=st.data())
def test_results_do_not_depend_on_memory_layout(kind, data, cpu_kernels):
    """Convolutions compute in channels-last memory and hand NCHW views on; every layer must give
    the same output and gradients whatever the memory order of its input and upstream gradient."""
    case = data.draw(ALL_CASES[kind])
    train = data.draw(st.booleans())
    net, shape = _net(case, np.float64, 0)
    assume(len(shape) == 4)                    # (BatchNorm1d and the Linear-first shape case: 2-d/3-d)
    rng = np.random.default_rng(3)
    x = _input(rng, shape, np.float64)
    state = net.state_dict()
    y_ref, _ = net.forward(x, train=train)
    dy = rng.standard_normal(y_ref.shape)
    dys = dict(_layouts(dy)) if dy.ndim == 4 else {}
    results = {}
    for name, xl in _layouts(x):
        net.load_state_dict(state)
        y, tape = net.forward(xl, train=train)
        dx, grads = net.backward(dys.get(name, dy), tape)
        results[name] = (y, dx, grads)
    y0, dx0, g0 = results["nchw"]
    for name, (y, dx, grads) in results.items():
        np.testing.assert_allclose(y, y0, rtol=1e-12, atol=1e-12, err_msg=f"{name} output")
        np.testing.assert_allclose(dx, dx0, rtol=1e-12, atol=1e-12, err_msg=f"{name} input gradient")
        for k in g0:
            np.testing.assert_allclose(grads[k], g0[k], rtol=1e-12, atol=1e-12, err_msg=f"{name} {k}")


def test_conv_chain_stays_channels_last():
    """conv -> BN -> LeakyReLU -> conv: outputs and input gradients are NCHW views of channels-last memory."""
    net = minigan.Sequential(minigan.Conv2d(3, 8, 4, 2, 1, bias=False), minigan.BatchNorm2d(8), minigan.LeakyReLU(0.2),
                             minigan.ConvTranspose2d(8, 4, 4, 2, 1), minigan.Tanh(), dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    y, tape = net.forward(x, train=True)
    assert y.shape == (5, 4, 8, 8)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous
    dx, _ = net.backward(np.ones_like(y), tape)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert dx.transpose(0, 2, 3, 1).strides[-1] == 4      # channels innermost in memory


@pytest.mark.parametrize("slope", [0.2, 0.01, 0.0, 1.0, -0.3, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_is_exact(slope, dtype):
    """y and dx are single multiplies: bit-exact, never a rounded 1 - slope + slope; even the signs of
    zeros are the definition's (s * (+0) = -0 for a negative slope: max(x, s x) would leave that tie to
    the backend, and CuPy breaks it the other way)."""
    x = np.random.default_rng(0).standard_normal((6, 5, 4, 3)).astype(dtype)
    x.flat[:2] = 0.0, -0.0
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    s = dtype(slope)
    expected = np.where(x > 0, x, x * s)
    for forward in (minigan.ops.activations.leaky_relu_forward,
                    lambda x, slope: (minigan.ops.activations.leaky_relu.reference(x, dtype(slope)), None)):
        y = forward(x, slope)[0]
        np.testing.assert_array_equal(y, expected)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(expected))
    y, scale = minigan.ops.activations.leaky_relu_forward(x, slope)
    dx = minigan.ops.activations.leaky_relu_backward(dy, scale)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, dy * s))
    assert y.dtype == dx.dtype == dtype


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_gate_are_their_definitions(slope, dtype):
    """ReLU's forward is max(x, 0) (+0 for every x <= 0, NaN kept) and gate(dy, y, s) is dy where y > 0,
    s dy elsewhere, bit for bit with the signs of zeros, for the op and its ``.reference``, in C and in
    channels-last memory (the forms numpy computes them in differ from the definitions: an array of
    zeros or of s instead of a scalar, dy times the 0/1 mask for s = 0)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.flat[:4] = 0.0, -0.0, np.nan, -np.inf
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy.flat[4:8] = 0.0, -0.0, np.nan, np.inf
    s = dtype(slope)
    ops = minigan.ops.activations
    with np.errstate(invalid="ignore"):                       # inf * 0 = NaN, here on purpose
        _check_relu_and_gate(ops, x, dy, s, dtype)


def _check_relu_and_gate(ops, x, dy, s, dtype):
    for a, b in ((x, dy), (x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2),
                           dy.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2))):
        y, cache = ops.relu_forward(a)
        expected = np.where(a > 0, a, dtype(0))
        expected[np.isnan(a)] = np.nan
        np.testing.assert_array_equal(y, expected)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(expected))
        assert cache is y and y.strides == a.strides
        want = np.where(y > 0, b, b * s)
        for gate in (ops.gate, ops.gate.reference):
            got = gate(b, y, s)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
            assert got.dtype == dtype
        np.testing.assert_array_equal(ops.relu_backward(b, y), np.where(y > 0, b, b * dtype(0)))


@given(m=st.integers(1, 300), n=st.integers(1, 300), order=st.sampled_from("CF"),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_matmul_is_the_gemm_where_k_is_1(m, n, order, dtype, seed):
    """ops.matmul computes a K = 1 product as a * b (+ 0): the same bits as BLAS's GEMM, signed zeros
    (+0 where a * b is -0), inf, NaN and overflow included; other K go to the GEMM itself."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, 1)).astype(dtype)
    b = rng.standard_normal((1, n)).astype(dtype)
    a[rng.random(m) < 0.3] = 0.0                       # +0 times a negative b: a -0 product
    b[:, rng.random(n) < 0.3] = -0.0
    specials = np.array([np.inf, -np.inf, np.nan, 1e300, -1e-300], dtype=np.float64)  # (1e300: overflow)
    with np.errstate(all="ignore"):
        a.flat[rng.integers(0, m, 2)] = rng.choice(specials, 2)
        b.flat[rng.integers(0, n, 2)] = rng.choice(specials, 2)
        a, b = np.asarray(a, order=order), np.asarray(b, order=order)
        got, want = minigan.ops.matmul(a, b), a @ b
        # (compared as one bool: pytest's assertion diff of two ~360 kB byte strings runs for minutes)
        same_bits = got.tobytes() == want.tobytes()
        assert same_bits and got.shape == want.shape and got.dtype == want.dtype
        assert not np.any((got == 0) & np.signbit(got))                    # +0, never -0
        x, y = rng.standard_normal((m, 2)).astype(dtype), rng.standard_normal((2, n)).astype(dtype)
        same_bits = minigan.ops.matmul(x, y).tobytes() == (x @ y).tobytes()
        assert same_bits                                                   # K = 2: the GEMM


def test_results_do_not_alias_the_column_scratch(cpu_kernels):
    """The convolutions reuse one scratch buffer for their column matrices; nothing they return
    (outputs, input gradients, parameter gradients, tapes) may live in it: a second pass through
    other convolutions must leave the first pass's results untouched."""
    def make(seed):
        return minigan.Sequential(minigan.Conv2d(16, 16, 3, 1, 1), minigan.LeakyReLU(0.2),
                                  minigan.ConvTranspose2d(16, 16, 4, 2, 1), minigan.BatchNorm2d(16),
                                  minigan.Conv2d(16, 4, 4, 2, 1), dtype=np.float64, seed=seed)
    rng = np.random.default_rng(0)
    net, other = make(0), make(1)
    x = rng.standard_normal((2, 16, 6, 6))
    y, tape = net.forward(x, train=True)
    dx, grads = net.backward(np.ones_like(y), tape)
    kept = [a.copy() for a in [y, dx, *grads.values()]]
    y_again, tape_again = net.forward(x, train=True)      # a second tape, before the first is used again
    for _ in range(2):
        yo, to = other.forward(rng.standard_normal((2, 16, 6, 6)), train=True)
        other.backward(rng.standard_normal(yo.shape), to)
    for a, b in zip([y, dx, *grads.values()], kept):
        np.testing.assert_array_equal(a, b)
    dx2, grads2 = net.backward(np.ones_like(y), tape_again)
    np.testing.assert_array_equal(dx2, dx)
