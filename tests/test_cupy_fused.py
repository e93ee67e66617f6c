"""The fused CuPy kernels (ops/_cupy.py, on unless MINIGAN_CUPY_FUSED=0) against the plain CuPy path, which
is the oracle: bit-exact where both do the same float operations in the same order (im2col, col2im,
the activations, Adam), else float64 <= 1e-12 and float32 <= 1e-5 (BatchNorm sums in float64 in one
block per channel).  The first group runs everywhere (the switch, the dispatch on numpy arrays, the
sources and their NVRTC compile); each test of the second runs twice, on a GPU (skipped without one)
and "emulated": the same CUDA source run on the CPU (tests/cuda_emulator.py)."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import rel_error
from minigan.ops import _cupy, _numba, activations, conv, fast_twin, norm

import cuda_emulator
from conftest import twin_and_plain
from test_numba import assert_batch_norm_twin, channels_last, window_geometry


# ---------------------------------------------------------------- everywhere

def test_the_switch_is_on_by_default_and_read_from_the_environment():
    code = "from minigan.ops import _cupy; print(_cupy.enabled())"
    for value, expected in ((None, "True"), ("0", "False"), ("1", "True"), (" 0 ", "False")):
        env = {k: v for k, v in os.environ.items() if k != "MINIGAN_CUPY_FUSED"}
        if value is not None:
            env["MINIGAN_CUPY_FUSED"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, value
    for value in ("yes", "off", "2", ""):
        env = {**os.environ, "MINIGAN_CUPY_FUSED": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode != 0 and "MINIGAN_CUPY_FUSED must be 0" in out.stderr and repr(value) in out.stderr
    previous = _cupy.set_enabled(True)
    try:
        assert _cupy.enabled()
    finally:
        _cupy.set_enabled(previous)
    assert _cupy.enabled() == previous


def test_switched_on_the_twins_leave_numpy_arrays_to_the_numpy_code():
    """On the CPU nothing changes with the switch on: every twin declines numpy arrays."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 5))
    cols = rng.standard_normal((2, 3, 3, 2, 2, 3))
    previous = _cupy.set_enabled(True)
    try:
        assert _cupy.leaky_relu(x, 0.2) is None and _cupy.gate(x, x, 0.2) is None
        assert _cupy.gather_windows(x, (2, 2), (1, 1), (1, 1), ((0, 0), (0, 0)), (4, 4)) is None
        assert _cupy.scatter_windows(cols, (4, 4), (1, 1), (1, 1), ((0, 0), (0, 0))) is None
        assert _cupy.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5) is None
        p = x.copy()
        assert _cupy.adam(p, x, x.copy(), x.copy(), 0.1, 0.999, 1.0, 1e-8, 1e-3) is None
        np.testing.assert_array_equal(p, x)
        y, cache = norm.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
        assert _cupy.batch_norm_backward(x, cache) is None
    finally:
        _cupy.set_enabled(previous)


def test_fast_twin_takes_the_first_twin_that_applies():
    seen = []

    def declines(*a):
        seen.append("declines")

    def answers(*a):
        seen.append("answers")
        return "twin"

    def never(*a):
        raise AssertionError("a later twin ran after one had answered")

    op = fast_twin(declines, answers, never)(lambda a: "reference")
    assert op(1) == "twin" and seen == ["declines", "answers"]
    assert fast_twin(declines)(lambda a: "reference")(1) == "reference"
    assert op.reference(1) == "reference"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_source_defines_every_kernel_for_both_dtypes(dtype):
    src = _cupy.kernel_source(dtype)
    assert src.startswith(f"typedef {'float' if dtype == np.float32 else 'double'} T;\n")
    for name in _cupy.KERNELS:
        assert f'extern "C" __global__ void {name}(' in src, name
    assert "--fmad=false" in _cupy.OPTIONS
    with pytest.raises(KeyError):
        _cupy.kernel_source(np.float16)


def test_every_kernel_compiles_with_nvrtc_for_sm90():
    """tools/nvrtc_check.py, where NVRTC can be loaded (cupy installed; no GPU needed)."""
    nvrtc_check = _tool("nvrtc_check")
    nvrtc = nvrtc_check.load_nvrtc()
    if nvrtc is None:
        pytest.skip("NVRTC cannot be loaded here (pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12)")
    results = nvrtc_check.check(nvrtc)
    assert len(results) == 2 * len(_cupy.KERNELS)
    assert all(ok for *_, ok, _ in results), [r for r in results if not r[-2]]
    ok, log, _ = nvrtc_check.compile_source(nvrtc, _cupy.kernel_source(np.float32).replace("T acc", "T acc +"),
                                            "sm_90")
    assert not ok and "error" in log                       # the check can fail


def _tool(name):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_the_api_check_finds_every_xp_reference(tmp_path):
    api = _tool("cupy_api_check")
    f = tmp_path / "m.py"
    f.write_text("def f(x, a, b, c):\n"
                 "    xp = get_xp(x)\n"
                 "    xp.matmul(a, b, out=c)\n"
                 "    get_xp(x).maximum(a, b, out=c)\n"
                 "    cupy.cuda.Device().synchronize()\n"
                 "    y = xp.lib.stride_tricks.as_strided(a, shape=(1,), strides=(8,))\n"
                 "    a.sum(axis=0)\n"
                 "    np.empty(3)\n")
    found = sorted((line, ".".join(names), tuple(kw) if kw is not None else None)
                   for _, line, names, kw in api.uses([f]))
    assert found == [(3, "matmul", ("out",)), (4, "maximum", ("out",)), (5, "cuda.Device", ()),
                     (6, "lib.stride_tricks.as_strided", ("shape", "strides"))], found


def test_the_api_check_fails_on_a_name_cupy_lacks(tmp_path):
    pytest.importorskip("cupy")
    api = _tool("cupy_api_check")
    f = tmp_path / "m.py"
    f.write_text("cupy.cuda.get_current_device().synchronize()\nxp.add(1, 2, out=3, bogus=4)\n")
    assert api.main([str(f)]) == 1
    f.write_text("cupy.cuda.Device().synchronize()\nxp.add(1, 2, out=3)\n")
    assert api.main([str(f)]) == 0


# ---------------------------------------------------------------- on the GPU, and emulated on the CPU
# Each test below runs twice: on a GPU (the kernels as cupy runs them; skipped without one) and
# "emulated": the same CUDA source compiled by the host C++ compiler, one thread per block, launched
# through the same twins on numpy arrays (tests/cuda_emulator.py says what that does and does not prove).

class Where:
    def __init__(self, backend):
        self.backend = backend

    def dev(self, a):
        return minigan.to_backend(a, self.backend)


@pytest.fixture(params=["emulated", "gpu"])
def where(request, monkeypatch):
    if request.param == "gpu":
        if not minigan.has_cupy():
            pytest.skip("needs cupy and a CUDA GPU")
        yield Where("cupy")
        return
    if cuda_emulator.compiler() is None:
        pytest.skip("no C++ compiler (g++ or clang++) to emulate the kernels with")
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(empty=np.empty, ones=np.ones, asarray=np.asarray))
    monkeypatch.setattr(_cupy, "_launch", cuda_emulator.launch)
    monkeypatch.setattr(_cupy, "use", lambda *arrays: _cupy.enabled() and all(type(a) is np.ndarray for a in arrays)
                        and arrays[0].dtype in _cupy._CTYPES and all(a.dtype == arrays[0].dtype for a in arrays))
    numba_was = _numba.set_enabled(False)            # (on numpy arrays the numba twins would answer first)
    try:
        yield Where("numpy")
    finally:
        _numba.set_enabled(numba_was)


def both(fn, *args):
    """fn(*args) with the fused kernels, then with the plain path; each result as numpy."""
    fast, plain = twin_and_plain(_cupy, fn, *args)
    return _host(fast), _host(plain)


def _host(obj):
    """Arrays (in lists and tuples) as numpy arrays; None stays None."""
    if isinstance(obj, (list, tuple)):
        return [_host(a) for a in obj]
    return None if obj is None else minigan.asnumpy(obj)


@settings(max_examples=40)
@given(geometry=window_geometry(), layout=st.sampled_from(["nchw", "channels_last"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_im2col_is_bit_exact(where, geometry, layout, dtype):
    n, c, h, w, kernel, stride, dilation, pads, out_hw = geometry
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype)
    x = where.dev(channels_last(x) if layout == "channels_last" else x)
    fast, plain = both(conv.gather_windows, x, kernel, stride, dilation, pads, out_hw)
    assert fast.dtype == plain.dtype == dtype and fast.shape == plain.shape
    np.testing.assert_array_equal(fast, plain)


@settings(max_examples=40)
@given(geometry=window_geometry(), dtype=st.sampled_from([np.float32, np.float64]))
def test_col2im_is_bit_exact(where, geometry, dtype):
    n, c, h, w, kernel, stride, dilation, pads, out_hw = geometry
    cols = where.dev(np.random.default_rng(0).standard_normal((n,) + out_hw + kernel + (c,)).astype(dtype))
    fast, plain = both(conv.scatter_windows, cols, (h, w), stride, dilation, pads)
    assert fast.dtype == plain.dtype == dtype and fast.shape == plain.shape == (n, h, w, c)
    np.testing.assert_array_equal(fast, plain)


@settings(max_examples=30)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
       slope=st.sampled_from([0.2, 0.01, 0.0, 1.0, -0.5, 2.0]), layout=st.sampled_from(["nchw", "channels_last"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_leaky_relu_is_bit_exact(where, shape, slope, layout, dtype):
    rng = np.random.default_rng(1)
    x, dy = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    x.flat[0] = 0.0
    if x.size > 1:
        x.flat[-1] = -0.0                                     # (both ties of max(x, s x) at zero)
    if layout == "channels_last":
        x, dy = channels_last(x), channels_last(dy)
    x, dy = where.dev(x), where.dev(dy)

    def run():
        y, cache = activations.leaky_relu_forward(x, slope)
        yr, cache_r = activations.relu_forward(x)
        return y, activations.leaky_relu_backward(dy, cache), yr, activations.relu_backward(dy, cache_r)
    fast, plain = both(run)
    for a, b in zip(fast, plain):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))     # even the signs of zeros
        assert a.dtype == dtype


@settings(max_examples=40)
@given(n=st.integers(2, 6), c=st.integers(1, 6), hw=st.sampled_from([None, (1, 1), (3, 2), (4, 4), (17, 19)]),
       affine=st.booleans(), shift=st.sampled_from([0.0, 3.0, -100.0]), dtype=st.sampled_from([np.float32, np.float64]),
       param_grads=st.booleans(), layout=st.sampled_from(["nchw", "channels_last", "cropped"]))
def test_batch_norm_matches_the_plain_path(where, n, c, hw, affine, shift, dtype, param_grads, layout):
    """(N, C) and (N, C, H, W) input in NCHW or channels-last memory, or a cropped view; the
    float32 tolerance widens to twice the plain float32 path's own error against float64."""
    rng = np.random.default_rng(2)
    shape = (n, c) if hw is None else (n, c) + hw

    def draw(scale, offset):
        a = (rng.standard_normal(shape) * scale + offset).astype(dtype)
        if len(shape) == 2 or layout == "nchw":
            return a
        if layout == "channels_last":
            return channels_last(a)
        big = np.zeros(shape[:2] + (hw[0] + 2, hw[1] + 2), dtype)
        big[:, :, 1:-1, 1:-1] = a
        return channels_last(big)[:, :, 1:-1, 1:-1]
    x, dy = draw(2, shift), draw(1, 0)
    w = (1 + 0.1 * rng.standard_normal(c)).astype(dtype) if affine else None
    b = (0.1 * rng.standard_normal(c)).astype(dtype) if affine else None
    dev = lambda a: None if a is None else where.dev(a)

    def runner(x, dy, w, b, dt):
        def run():
            rm, rv = dev(np.full(c, 0.5, dt)), dev(np.full(c, 2.0, dt))
            y, cache = norm.batch_norm_forward(dev(x), dev(w), dev(b), rm, rv, True, 0.1, 1e-5)
            dx, dw, db = norm.batch_norm_backward(dev(dy), cache, param_grads)
            return [None if a is None else minigan.asnumpy(a) for a in (y, dx, dw, db, rm, rv)]
        return run
    fast, plain = both(runner(x, dy, w, b, dtype))
    exact = None
    if dtype == np.float32:
        up = lambda a: None if a is None else a.astype(np.float64)
        exact, _ = both(runner(up(x), up(dy), up(w), up(b), np.float64))
    assert_batch_norm_twin(fast, plain, exact, dtype, "fused")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", [(minigan.Adam, {}), (minigan.Adam, {"betas": (0.5, 0.999), "weight_decay": 0.1}),
                                    (minigan.Adam, {"betas": (0.2, 0.9)}), (minigan.AdamW, {"lr": 0.01})])
@pytest.mark.parametrize("shapes", [[(7, 5), (3,)], [(6, 4)], [(3,), (0,), (1,), (7,), (2, 1), (0, 3)]],
                         ids=["two tensors", "one tensor", "six with empty ones"])
def test_adam_is_bit_exact(where, cls, kw, dtype, shapes):
    """Ten steps on gradients spanning 1e-6..10: one tensor takes the ``adam`` kernel, several take
    ``adam_all`` (one launch for all, empty tensors among them), both in optim.Adam's float order."""
    rng = np.random.default_rng(4)
    p0 = {f"p{i}": rng.standard_normal(shape).astype(dtype) for i, shape in enumerate(shapes)}
    grads = [{k: where.dev((rng.standard_normal(v.shape) * 10.0 ** rng.uniform(-6, 1, v.shape)).astype(dtype))
              for k, v in p0.items()} for _ in range(10)]
    calls, launch = {}, _cupy._launch

    def run():
        params, opt = {k: where.dev(v.copy()) for k, v in p0.items()}, cls(**kw)
        for g in grads:
            opt.step(params, g)
        return [params[k] for k in sorted(p0)] + [opt.state[k][m] for k in sorted(p0)
                                                  for m in ("exp_avg", "exp_avg_sq")]

    def counting(name, *a, **k):
        calls[name] = calls.get(name, 0) + 1
        return launch(name, *a, **k)
    _cupy._launch = counting
    try:
        fast, plain = both(run)
    finally:
        _cupy._launch = launch
    assert calls == ({"adam": 10} if len(shapes) == 1 else {"adam_all": 10}), calls
    for f, p in zip(fast, plain):
        np.testing.assert_array_equal(f, p)


def test_kernels_really_run_in_a_gan_step(where):
    """With the switch on, the dcgan-style layers take the fused paths (a wrong dispatch would leave
    the plain code running and this suite comparing it with itself)."""
    calls = {}
    launch = _cupy._launch

    def counting(name, *a, **kw):
        calls[name] = calls.get(name, 0) + 1
        return launch(name, *a, **kw)
    _cupy._launch = counting
    previous = _cupy.set_enabled(True)
    try:
        net = minigan.Sequential(minigan.ConvTranspose2d(4, 16, 4, 2, 1, bias=False), minigan.BatchNorm2d(16),
                                 minigan.LeakyReLU(0.2), minigan.Conv2d(16, 2, 4, 2, 1), dtype=np.float32,
                                 seed=0).to(where.backend)
        x = where.dev(np.random.default_rng(0).standard_normal((3, 4, 4, 4)).astype(np.float32))
        y, tape = net.forward(x, train=True)
        _, grads = net.backward(y * 0 + 1, tape)
        minigan.Adam().step(net.parameters(), grads)
    finally:
        _cupy.set_enabled(previous)
        _cupy._launch = launch
    assert calls == {"im2col": 3, "col2im": 2, "bn_forward": 1, "bn_backward": 1, "leaky_relu": 1,
                     "gate": 1, "adam_all": 1}, calls


@pytest.mark.parametrize("preset", ["dcgan-mnist", "resnet-mnist"])
def test_training_steps_match_the_plain_path_and_repeat_bit_for_bit(where, preset):
    """Two float64 training steps with the fused kernels: within 1e-10 of the plain path (BatchNorm's
    sums differ in order), and bit-identical when run again (deterministic kernels)."""
    from conftest import shared_data
    from minigan.gan import Trainer

    def train():
        t = Trainer(preset, seed=3, dtype="float64", data_dir=shared_data("mnist"), batch_size=4,
                    backend=where.backend)
        for _ in range(2):
            t.train_step()
        return {**{"G." + k: minigan.asnumpy(v) for k, v in t.G.state_dict().items()},
                **{"D." + k: minigan.asnumpy(v) for k, v in t.D.state_dict().items()}}
    previous = _cupy.set_enabled(True)
    try:
        fast, again = train(), train()
        _cupy.set_enabled(False)
        plain = train()
    finally:
        _cupy.set_enabled(previous)
    assert set(fast) == set(plain)
    for k in plain:
        np.testing.assert_array_equal(fast[k], again[k], err_msg=k)
        assert rel_error(fast[k], plain[k], 1.0) <= 1e-10, k
