"""The backend switch: numpy is the only hard dependency; cupy errors say what to do."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigan
from minigan import backend

needs_no_gpu = pytest.mark.skipif(minigan.has_cupy(), reason="this machine has a usable cupy")


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_import_needs_only_numpy():
    r = run_python("import sys, minigan\n"
                   "bad = [m for m in ('cupy', 'numba', 'torch', 'scipy') if m in sys.modules]\n"
                   "assert not bad, bad\nprint(minigan.get_backend())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_unknown_backend_is_rejected():
    with pytest.raises(minigan.BackendError, match="unknown backend 'tpu'; expected one of"):
        minigan.set_backend("tpu")
    r = run_python("import minigan; minigan.Sequential(minigan.ReLU())", MINIGAN_BACKEND="tpu")
    assert r.returncode != 0 and "unknown backend 'tpu'" in r.stderr


@needs_no_gpu
def test_cupy_request_without_gpu_says_what_to_do():
    with pytest.raises(minigan.BackendError, match="'cupy' backend is not available.*(pip install|GPU)"):
        minigan.set_backend("cupy")
    assert minigan.get_backend() == "numpy"
    r = run_python("import minigan; minigan.Sequential(minigan.Linear(2, 2))", MINIGAN_BACKEND="cupy")
    assert r.returncode != 0 and "BackendError" in r.stderr and "set_backend('numpy')" in r.stderr
    net = minigan.Sequential(minigan.Linear(2, 2))
    with pytest.raises(minigan.BackendError, match="not available"):
        net.to("cupy")


class _FakeCupyArray:
    """Stands in for a cupy array (only its module name matters to get_xp)."""
    __module__ = "cupy._core.core"
    dtype = np.dtype(np.float32)
    shape = (2,)


def test_mixing_backends_is_one_clear_error():
    with pytest.raises(minigan.BackendError, match="numpy and cupy arrays were mixed.*net.to"):
        minigan.get_xp(np.zeros(2), _FakeCupyArray())
    net = minigan.Sequential(minigan.Linear(2, 2))
    with pytest.raises(minigan.BackendError, match="mixed"):
        net.forward(_FakeCupyArray())
    with pytest.raises(minigan.BackendError, match="mixed"):
        minigan.gan_objective("hinge").d_loss(np.zeros((2, 1)), _FakeCupyArray())


def test_numpy_helpers():
    assert minigan.get_xp(np.zeros(1)) is np
    tree = {"a": np.ones(2), "b": [np.zeros(1), 3]}
    moved = minigan.to_backend(tree, "numpy")
    assert isinstance(moved["b"], list) and moved["b"][1] == 3
    assert isinstance(backend.asnumpy(np.float64(2.0)), np.ndarray)
    net = minigan.Sequential(minigan.Linear(2, 2)).to("numpy")
    assert net.backend == "numpy"
