"""Run the fused CuPy kernels' CUDA source on the CPU: the exact text of ``_cupy.kernel_source(dtype)``,
compiled by the host C++ compiler under a prelude that maps CUDA's few names onto plain C++, and
launched block by block through ctypes with one thread per block.

What this proves without a GPU: the kernels' index arithmetic, strides, bounds, argument order and
float operations (``-ffp-contract=off``, as ``--fmad=false`` on the device), end to end through the
twins in ``_cupy.py`` (``launch`` stands in for ``_cupy._launch``).  What it does not: more than one
thread per block (the shared-memory reduction tree of BatchNorm runs with one thread, so its
``__syncthreads`` steps are empty), CUDA's own math library, and CuPy's argument passing.  Those
need the device run (tests/test_cupy_fused.py's GPU half).
"""
import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from minigan.ops import _cupy

PRELUDE = r"""
#include <cmath>
using std::sqrt;
struct minigan_dim3 { unsigned int x, y, z; };
static minigan_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __shared__ static
static inline void __syncthreads() {}
extern "C" void minigan_set_block(unsigned int block, unsigned int grid) { blockIdx.x = block; gridDim.x = grid; }
"""

_libs = {}
_CTYPES = {np.int64: ctypes.c_longlong, np.int32: ctypes.c_int, np.float32: ctypes.c_float,
           np.float64: ctypes.c_double}


def compiler():
    """The host C++ compiler, or None."""
    return shutil.which("g++") or shutil.which("clang++")


def library(dtype):
    """The kernels for ``dtype`` compiled for the CPU (cached per source text for the session)."""
    src = PRELUDE + _cupy.kernel_source(dtype)
    key = hashlib.sha256(src.encode()).hexdigest()[:16]
    if key not in _libs:
        d = Path(tempfile.mkdtemp(prefix="minigan_cuda_emu_"))
        try:
            (d / "k.cpp").write_text(src)
            subprocess.run([compiler(), "-O1", "-std=c++14", "-ffp-contract=off", "-fPIC", "-shared",
                            "-o", str(d / "k.so"), str(d / "k.cpp")], check=True, capture_output=True, text=True)
            _libs[key] = ctypes.CDLL(str(d / "k.so"))
        finally:         # a loaded library stays mapped: its folder goes at once (each test process left one)
            shutil.rmtree(d, ignore_errors=True)
    return _libs[key]


def _arg(a):
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    for t, c in _CTYPES.items():
        if type(a) is t:
            return c(a)
    raise TypeError(f"cuda_emulator: an argument of type {type(a).__name__}; the kernels take arrays and "
                    f"numpy int64/int32/float32/float64 scalars (as _cupy passes them)")


def launch(name, dtype, total, args, blocks=None):
    """``_cupy._launch`` on the CPU: every block of the grid in turn, one thread each.  Grid-stride
    kernels get a grid of 3 blocks (so the stride loops really stride); BatchNorm one per channel."""
    lib = library(dtype)
    if blocks is None:
        if total == 0:
            return
        blocks = min(3, total)
    fn = getattr(lib, name)
    cargs = [_arg(a) for a in args]
    for b in range(blocks):
        lib.minigan_set_block(b, blocks)
        fn(*cargs)
