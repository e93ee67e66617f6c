"""The numba kernels (the ``fast`` extra) against their plain-numpy twins, which are the oracle:
bit-exact where both sum in the same order (col2im, LeakyReLU), else float64 <= 1e-12 and
float32 <= 1e-5 (BatchNorm sums in float64 in one kernel pass, the twin in separate reductions)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import rel_error
from minigan.ops import _numba, activations, conv, norm

from conftest import assert_rel, kernels_enabled, twin_and_plain

pytestmark = pytest.mark.skipif(not _numba.available(), reason="numba is not installed (pip install 'minigan[fast]')")
TOL = {np.float64: 1e-12, np.float32: 1e-5}


def both(fn, *args):
    """fn(*args) with the numba kernels, then with the plain-numpy twin."""
    return twin_and_plain(_numba, fn, *args)


def channels_last(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@st.composite
def window_geometry(draw):
    """(n, c, h, w, kernel, stride, dilation, pads, out_hw) with at least one output position."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - sum(pads[0])), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - sum(pads[1])), 7))
    out_hw = (conv.conv_out_size(h, kh, sh, *pads[0], dh), conv.conv_out_size(w, kw, sw, *pads[1], dw))
    c = draw(st.sampled_from([1, 2, 3, 5, 16, 17]))     # both sides of the numba/numpy dispatch
    return draw(st.integers(1, 3)), c, h, w, (kh, kw), (sh, sw), (dh, dw), pads, out_hw


@given(geometry=window_geometry(), layout=st.sampled_from(["nchw", "channels_last"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_im2col_is_bit_exact(geometry, layout, dtype):
    n, c, h, w, kernel, stride, dilation, pads, out_hw = geometry
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype)
    x = channels_last(x) if layout == "channels_last" else x
    fast, plain = both(conv.gather_windows, x, kernel, stride, dilation, pads, out_hw)
    assert fast.dtype == plain.dtype == dtype and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, plain)


@given(geometry=window_geometry(), dtype=st.sampled_from([np.float32, np.float64]))
def test_col2im_is_bit_exact(geometry, dtype):
    n, c, h, w, kernel, stride, dilation, pads, out_hw = geometry
    cols = np.random.default_rng(0).standard_normal((n,) + out_hw + kernel + (c,)).astype(dtype)
    fast, plain = both(conv.scatter_windows, cols, (h, w), stride, dilation, pads)
    assert fast.dtype == plain.dtype == dtype and fast.shape == plain.shape == (n, h, w, c)
    np.testing.assert_array_equal(fast, plain)


@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
       slope=st.sampled_from([0.2, 0.01, 0.0, 1.0, -0.5, 2.0]), layout=st.sampled_from(["nchw", "channels_last"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_leaky_relu_is_bit_exact(shape, slope, layout, dtype):
    rng = np.random.default_rng(1)
    x, dy = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    x.flat[0] = 0.0
    if layout == "channels_last":
        x, dy = channels_last(x), channels_last(dy)

    def run():
        y, cache = activations.leaky_relu_forward(x, slope)
        yr, cache_r = activations.relu_forward(x)
        return y, activations.leaky_relu_backward(dy, cache), yr, activations.relu_backward(dy, cache_r)
    (y1, dx1, yr1, dxr1), (y2, dx2, yr2, dxr2) = both(run)
    for a, b in ((y1, y2), (dx1, dx2), (yr1, yr2), (dxr1, dxr2)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))     # even the signs of zeros
    assert y1.dtype == dx1.dtype == dtype
    fx, fy = _numba.flat(x), _numba.flat(y1)     # the output keeps the input's memory order
    np.testing.assert_array_equal(fy, np.where(fx > 0, fx, fx * dtype(slope)))


@given(n=st.integers(2, 6), c=st.integers(1, 6), hw=st.sampled_from([None, (1, 1), (3, 2), (4, 4)]),
       affine=st.booleans(), shift=st.sampled_from([0.0, 3.0, -100.0]), dtype=st.sampled_from([np.float32, np.float64]),
       param_grads=st.booleans(), cropped=st.booleans(), nchw=st.booleans())
def test_batch_norm_matches_twin(n, c, hw, affine, shift, dtype, param_grads, cropped, nchw):
    """(N, C) and channels-last (N, C, H, W) input, contiguous or a cropped view (as a transposed
    convolution's output is), or NCHW memory (copied to channels-last for the kernel)."""
    rng = np.random.default_rng(2)
    shape = (n, c) if hw is None else (n, c) + hw

    def draw(scale, offset):
        if len(shape) == 2:
            return (rng.standard_normal(shape) * scale + offset).astype(dtype)
        if not cropped:
            return channels_last((rng.standard_normal(shape) * scale + offset).astype(dtype))
        big = channels_last((rng.standard_normal(shape[:2] + (hw[0] + 2, hw[1] + 2)) * scale + offset).astype(dtype))
        return big[:, :, 1:-1, 1:-1]
    x, dy = draw(2, shift), draw(1, 0)
    if nchw:
        x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    w = (1 + 0.1 * rng.standard_normal(c)).astype(dtype) if affine else None
    b = (0.1 * rng.standard_normal(c)).astype(dtype) if affine else None

    def run():
        rm, rv = np.full(c, 0.5, dtype), np.full(c, 2.0, dtype)
        y, cache = norm.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
        dx, dw, db = norm.batch_norm_backward(dy, cache, param_grads)
        return y, dx, dw, db, rm, rv

    fast, plain = both(run)
    exact = None
    if dtype == np.float32:       # the float64 twin says how many digits float32 can keep here
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        w64, b64 = (w.astype(np.float64), b.astype(np.float64)) if affine else (None, None)
        x, dy, w, b = x64, dy64, w64, b64
        exact, _ = both(run)
    assert_batch_norm_twin(fast, plain, exact, dtype, "numba")


def assert_batch_norm_twin(fast, plain, exact, dtype, who):
    """BatchNorm's (y, dx, dgamma, dbeta, running_mean, running_var) from a twin against the plain path:
    float64 <= 1e-12, float32 <= 1e-5 or twice the plain float32 path's own error against ``exact`` (the
    same run in float64), where that is larger (e.g. shift -100: the float32 path centres x with ~1e-5
    error itself); the twin is held to ``exact`` too."""
    for i, (name, f, p) in enumerate(zip(["y", "dx", "dgamma", "dbeta", "running_mean", "running_var"], fast, plain)):
        if p is None:
            assert f is None, name
            continue
        assert f.dtype == dtype and f.shape == p.shape, name
        tol = TOL[dtype]
        if exact is not None:
            tol = max(tol, 2 * rel_error(p, exact[i], 1.0))
            assert_rel(f, exact[i], tol, f"{name} ({who} vs float64)", floor=1.0)
        assert_rel(f, p, tol, name, floor=1.0)


def test_kernels_really_run_in_a_gan_step():
    """With numba on, the dcgan-style layers take the kernel paths (a wrong dispatch would leave
    the plain code running and this suite comparing it with itself)."""
    calls = {}
    kernels = _numba.kernels()
    wrapped = {}
    for name in ("im2col_nhwc", "col2im_nhwc", "bn_forward", "bn_backward", "leaky_relu", "leaky_relu_backward", "adam"):
        fn = getattr(kernels, name)
        wrapped[name] = fn

        def counting(*a, _name=name, _fn=fn):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(*a)
        setattr(kernels, name, counting)
    try:
        with kernels_enabled(_numba, True):
            net = minigan.Sequential(minigan.ConvTranspose2d(4, 16, 4, 2, 1, bias=False), minigan.BatchNorm2d(16),
                                     minigan.LeakyReLU(0.2), minigan.Conv2d(16, 2, 4, 2, 1), dtype=np.float32, seed=0)
            x = np.random.default_rng(0).standard_normal((3, 4, 4, 4)).astype(np.float32)
            y, tape = net.forward(x, train=True)
            _, grads = net.backward(np.ones_like(y), tape)
            minigan.Adam().step(net.parameters(), grads)
    finally:
        for name, fn in wrapped.items():
            setattr(kernels, name, fn)
    # convT: forward col2im, backward im2col; conv: forward im2col, backward col2im and im2col again (dW)
    assert calls == {"im2col_nhwc": 3, "col2im_nhwc": 2, "bn_forward": 1, "bn_backward": 1, "leaky_relu": 1,
                     "leaky_relu_backward": 1, "adam": 5}, calls


def test_switches():
    env = dict(os.environ, MINIGAN_NUMBA="0")
    out = subprocess.run([sys.executable, "-c", "from minigan.ops import _numba; print(_numba.enabled())"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    previous = _numba.set_enabled(False)
    assert not _numba.enabled()
    _numba.set_enabled(previous)
    assert _numba.enabled() == previous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", [(minigan.Adam, {}), (minigan.Adam, {"betas": (0.5, 0.999), "weight_decay": 0.1}),
                                    (minigan.Adam, {"betas": (0.2, 0.9)}), (minigan.AdamW, {"lr": 0.01})])
def test_adam_is_bit_exact(cls, kw, dtype):
    """Ten steps on gradients spanning 1e-6..10: the fused kernel does optim.Adam's float operations
    in the same order, so parameters and moments agree bit for bit."""
    rng = np.random.default_rng(4)
    p0 = {"w": rng.standard_normal((7, 5)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: (rng.standard_normal(v.shape) * 10.0 ** rng.uniform(-6, 1, v.shape)).astype(dtype)
              for k, v in p0.items()} for _ in range(10)]

    def run():
        params, opt = {k: v.copy() for k, v in p0.items()}, cls(**kw)
        for g in grads:
            opt.step(params, g)
        return params, opt.state_dict()
    (pf, sf), (pp, sp) = both(run)
    for k in p0:
        np.testing.assert_array_equal(pf[k], pp[k])
    np.testing.assert_equal(sf, sp)
