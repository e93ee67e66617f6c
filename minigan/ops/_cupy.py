"""Fused CUDA kernels for the CuPy backend (issue #14), the GPU's counterpart of ``_numba.py``.

The plain CuPy path runs each op's NumPy code on cupy arrays, one kernel launch per array
expression: measured on an H200 (benchmarks/README.md), a dcgan32 GAN step at batch 64 issues 1,135
launches and takes 42.8 ms against torch's 7.6 ms, ~38 us a launch, nearly all of it overhead.  These
kernels do in one launch what the plain path does in many:

  im2col (``gather_windows``)      padding + window copy, any input strides      (plain: ~3 launches)
  col2im (``scatter_windows``)     every tap summed per output element, gather form  (KH*KW + 2)
  BatchNorm train fwd / bwd        per-channel statistics, the whole map and the running statistics,
                                   one block per channel                         (plain: ~20 each)
  LeakyReLU / ReLU fwd and bwd     (plain: 2-3 launches each)
  Adam                             one step of every tensor of a net (plain: 12 launches a tensor)

Each twin takes its reference op's arguments (see ``ops.fast_twin``) and returns None where it does
not apply (not switched on, not all cupy arrays, a memory layout it does not handle, data-parallel
BatchNorm), so that the plain CuPy code runs: that code stays the oracle (tests/test_cupy.py, the
fused kernels on and off).  Results are bit-identical to the plain path where both do the same
float operations in the same order (compiled with ``--fmad=false``, so no multiply-add is contracted):
im2col, col2im (each element's taps added in (i, j) order, as the strided adds do), the activations
and Adam; BatchNorm accumulates in float64 (as the numba twin does): float64 <= 1e-12, float32
<= 1e-5 against the plain path.  Every kernel is deterministic: no atomics; a block's reduction
runs in a fixed tree order.

On by default since the device run of 2026-12-05 (an H100: every cupy test passed with them on,
each twin against the plain path; benchmarks/README.md); ``MINIGAN_CUPY_FUSED=0`` (or
``set_enabled(False)``) switches them off, which leaves the plain path, their oracle.  Without a GPU,
CI proves what it can: every source compiles with NVRTC for sm_90 in float and double
(tools/nvrtc_check.py, which compiles ``kernel_source(dtype)``, the exact text run here), and the same
text compiled by the host C++ compiler runs through these twins on numpy arrays, one thread a block,
against the plain path (tests/cuda_emulator.py, tests/test_cupy_fused.py's "emulated" cases).
"""
import os

import numpy as np

from ._numba import flat  # noqa: F401  (x's memory as 1-D when contiguous: the same helper for cupy arrays)

_state = {"enabled": None, "modules": {}, "functions": {}}

# NVRTC options: IEEE division and square root (NVRTC's defaults, said out loud), and no contraction of
# a*b + c into one fused multiply-add, so that each kernel does the plain path's float operations.
OPTIONS = ("--std=c++14", "--fmad=false", "--prec-div=true", "--prec-sqrt=true")
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_THREADS = 256              # threads per block; BatchNorm's block reduction assumes a power of two
_MAX_BLOCKS = 65535 * 4     # grid-stride loops cover any size with at most this many blocks

_SOURCE = r"""
// T is typedef'd to float or double before this text (kernel_source).  Sizes and strides are
// 64-bit; strides count elements, not bytes.

extern "C" __global__ void im2col(const T* x, T* cols, const long long total,
        const long long C, const long long H, const long long W, const long long OH, const long long OW,
        const long long KH, const long long KW, const long long sn, const long long sc, const long long sh,
        const long long sw, const long long st_h, const long long st_w, const long long dl_h,
        const long long dl_w, const long long pt, const long long pl)
{
    // cols (N, OH, OW, KH, KW, C) C-contiguous: cols[n,oh,ow,i,j,c] = x[n, c, oh*st_h + i*dl_h - pt,
    // ow*st_w + j*dl_w - pl] (x in any strides), 0 in the padding.
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        long long r = k;
        const long long c = r % C; r /= C;
        const long long j = r % KW; r /= KW;
        const long long i = r % KH; r /= KH;
        const long long ow = r % OW; r /= OW;
        const long long oh = r % OH;
        const long long n = r / OH;
        const long long h = oh * st_h + i * dl_h - pt;
        const long long w = ow * st_w + j * dl_w - pl;
        cols[k] = (h >= 0 && h < H && w >= 0 && w < W) ? x[n * sn + c * sc + h * sh + w * sw] : (T)0;
    }
}

extern "C" __global__ void col2im(const T* cols, T* out, const long long total,
        const long long C, const long long H, const long long W, const long long OH, const long long OW,
        const long long KH, const long long KW, const long long st_h, const long long st_w,
        const long long dl_h, const long long dl_w, const long long pt, const long long pl)
{
    // out (N, H, W, C) C-contiguous: out[n,h,w,c] = sum over the taps (i, j), in that order, of
    // cols[n, oh, ow, i, j, c] with oh*st_h + i*dl_h - pt = h and ow*st_w + j*dl_w - pl = w.
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        long long r = k;
        const long long c = r % C; r /= C;
        const long long w = r % W; r /= W;
        const long long h = r % H;
        const long long n = r / H;
        T acc = (T)0;
        for (long long i = 0; i < KH; ++i) {
            const long long th = h + pt - i * dl_h;
            if (th < 0) break;                       // th only falls as i grows
            if (th % st_h != 0) continue;
            const long long oh = th / st_h;
            if (oh >= OH) continue;
            for (long long j = 0; j < KW; ++j) {
                const long long tw = w + pl - j * dl_w;
                if (tw < 0) break;
                if (tw % st_w != 0) continue;
                const long long ow = tw / st_w;
                if (ow >= OW) continue;
                acc += cols[((((n * OH + oh) * OW + ow) * KH + i) * KW + j) * C + c];
            }
        }
        out[k] = acc;
    }
}

__device__ double block_sum(double v, double* buf)
{
    // The sum of v over the block, in a fixed tree order (deterministic); every thread gets it.
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    const double total = buf[0];
    __syncthreads();                                 // buf is reused by the next call
    return total;
}

extern "C" __global__ void bn_forward(const T* x, T* xhat, T* y, const T* gamma, const T* beta,
        T* invstd_out, T* running_mean, T* running_var, const int affine, const int running,
        const double eps, const T one_minus_m, const T m, const T unbias, const long long N, const long long C,
        const long long H, const long long W, const long long sn, const long long sc, const long long sh,
        const long long sw, const long long on, const long long oc, const long long oh, const long long ow)
{
    // One block per channel c, x (N, C, H, W) in strides (sn, sc, sh, sw), xhat and y in (on, oc, oh, ow):
    // mean, biased var (two passes, float64 sums), invstd = 1 / sqrt(var + eps);
    // xhat = (x - mean) invstd, y = gamma xhat + beta (affine); invstd_out[c] = invstd.
    // running: r_mean <- r_mean (1 - m) + m mean, r_var <- r_var (1 - m) + (m var) unbias, in T and in
    // the order of norm._update_running's passes (mean and var rounded to T first, as its inputs are).
    __shared__ double buf[256];
    const long long c = blockIdx.x;
    const long long HW = H * W, M = N * HW;
    double s = 0.0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long n = k / HW, r = k % HW;
        s += (double)x[n * sn + c * sc + (r / W) * sh + (r % W) * sw];
    }
    const double mean = block_sum(s, buf) / (double)M;
    double ss = 0.0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long n = k / HW, r = k % HW;
        const double d = (double)x[n * sn + c * sc + (r / W) * sh + (r % W) * sw] - mean;
        ss += d * d;
    }
    const double var = block_sum(ss, buf) / (double)M;
    const double invstd = 1.0 / sqrt(var + eps);
    const double g = affine ? (double)gamma[c] : 1.0, b = affine ? (double)beta[c] : 0.0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long n = k / HW, r = k % HW, h = r / W, w = r % W;
        const double v = ((double)x[n * sn + c * sc + h * sh + w * sw] - mean) * invstd;
        const long long o = n * on + c * oc + h * oh + w * ow;
        xhat[o] = (T)v;
        if (affine) y[o] = (T)(v * g + b);
    }
    if (threadIdx.x == 0) {
        invstd_out[c] = (T)invstd;
        if (running) {
            const T mean_t = (T)mean, var_t = (T)var;
            running_mean[c] = running_mean[c] * one_minus_m;
            running_mean[c] = running_mean[c] + m * mean_t;
            running_var[c] = running_var[c] * one_minus_m;
            running_var[c] = running_var[c] + (m * var_t) * unbias;
        }
    }
}

extern "C" __global__ void bn_backward(const T* dy, const T* xhat, const T* gamma, const T* invstd,
        T* dx, double* sums, const long long N, const long long C, const long long H, const long long W,
        const long long sn, const long long sc, const long long sh, const long long sw,
        const long long xn, const long long xc, const long long xh, const long long xw,
        const long long on, const long long oc, const long long oh, const long long ow)
{
    // One block per channel c, with M = N H W: S1 = sum dy, S2 = sum dy xhat (float64);
    // dx = gamma invstd (dy - S1/M - xhat S2/M) (normalize_backward, expanded); sums (2, C) <- S1, S2.
    // dy in strides (sn, sc, sh, sw), xhat in (xn, ...), dx in (on, ...).
    __shared__ double buf[256];
    const long long c = blockIdx.x;
    const long long HW = H * W, M = N * HW;
    double s1 = 0.0, s2 = 0.0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long n = k / HW, r = k % HW, h = r / W, w = r % W;
        const double g = (double)dy[n * sn + c * sc + h * sh + w * sw];
        s1 += g;
        s2 += g * (double)xhat[n * xn + c * xc + h * xh + w * xw];
    }
    s1 = block_sum(s1, buf);
    s2 = block_sum(s2, buf);
    const double scale = (double)invstd[c] * (double)gamma[c];
    const double k2 = -scale * s2 / (double)M, k1 = -scale * s1 / (double)M;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long n = k / HW, r = k % HW, h = r / W, w = r % W;
        const double g = (double)dy[n * sn + c * sc + h * sh + w * sw];
        const double xh_ = (double)xhat[n * xn + c * xc + h * xh + w * xw];
        dx[n * on + c * oc + h * oh + w * ow] = (T)(scale * g + k2 * xh_ + k1);
    }
    if (threadIdx.x == 0) {
        sums[c] = s1;
        sums[C + c] = s2;
    }
}

extern "C" __global__ void leaky_relu(const T* x, T* y, const T slope, const long long n)
{
    // y = x where x > 0, slope x elsewhere (flat arrays).
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T v = x[i];
        y[i] = v > (T)0 ? v : v * slope;
    }
}

extern "C" __global__ void gate(const T* dy, const T* y, T* dx, const T slope, const long long n)
{
    // dx = dy where y > 0, slope dy elsewhere (flat arrays in the same memory order).
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T g = dy[i];
        dx[i] = y[i] > (T)0 ? g : g * slope;
    }
}

__device__ void adam_element(T* p, const T* g, T* m, T* v, const long long j, const T w, const T one_minus_w,
        const int small_w, const T b2, const T one_minus_b2, const T bc2_sqrt, const T eps, const T step_size)
{
    // One Adam step of element j, in the order of optim.Adam's passes: m <- lerp(m, g, w) (torch's
    // two branches), v <- v b2 + g^2 (1 - b2), p <- p - (m / (sqrt(v) / bc2_sqrt + eps)) step_size.
    const T gi = g[j];
    T mi = m[j];
    mi = small_w ? mi + (gi - mi) * w : gi - (gi - mi) * one_minus_w;
    m[j] = mi;
    const T vi = v[j] * b2 + (gi * gi) * one_minus_b2;
    v[j] = vi;
    const T denom = sqrt(vi) / bc2_sqrt + eps;
    p[j] = p[j] - (mi / denom) * step_size;
}

extern "C" __global__ void adam(T* p, const T* g, T* m, T* v, const long long n, const T w,
        const T one_minus_w, const int small_w, const T b2, const T one_minus_b2, const T bc2_sqrt,
        const T eps, const T step_size)
{
    // One Adam step of one tensor (flat arrays).
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x)
        adam_element(p, g, m, v, i, w, one_minus_w, small_w, b2, one_minus_b2, bc2_sqrt, eps, step_size);
}

extern "C" __global__ void adam_all(const long long* table, const long long n, const long long total,
        const T w, const T one_minus_w, const int small_w, const T b2, const T one_minus_b2, const T bc2_sqrt,
        const T eps, const T step_size)
{
    // The step of ``adam`` for n tensors at once.  table (int64): offsets[0..n] (the tensors' first
    // elements in one flat numbering, offsets[n] = total), then the addresses of p, g, m and v, n
    // each.  Element k belongs to the last tensor i with offsets[i] <= k (a binary search; an empty
    // tensor shares its offset with the next one and is passed over).
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        long long lo = 0, hi = n - 1;
        while (lo < hi) {
            const long long mid = (lo + hi + 1) / 2;
            if (table[mid] <= k) lo = mid; else hi = mid - 1;
        }
        adam_element((T*)table[n + 1 + lo], (const T*)table[2 * n + 1 + lo], (T*)table[3 * n + 1 + lo],
                     (T*)table[4 * n + 1 + lo], k - table[lo], w, one_minus_w, small_w, b2, one_minus_b2,
                     bc2_sqrt, eps, step_size);
    }
}
"""

KERNELS = ("im2col", "col2im", "bn_forward", "bn_backward", "leaky_relu", "gate", "adam", "adam_all")


def kernel_source(dtype):
    """The CUDA source compiled for ``dtype`` (float32 or float64): the exact text that runs."""
    return f"typedef {_CTYPES[np.dtype(dtype)]} T;\n" + _SOURCE


def enabled():
    """Whether the ops use these kernels: on unless ``MINIGAN_CUPY_FUSED=0`` in the environment (read
    once) or ``set_enabled(False)``.  Any value other than 0 or 1 is an error, not a silent default."""
    if _state["enabled"] is None:
        value = os.environ.get("MINIGAN_CUPY_FUSED", "1").strip()
        if value not in ("0", "1"):
            raise ValueError(f"MINIGAN_CUPY_FUSED must be 0 (the plain CuPy path) or 1 (the fused kernels, "
                             f"the default), got {value!r}")
        _state["enabled"] = value == "1"
    return _state["enabled"]


def set_enabled(flag):
    """Switch the fused CuPy kernels on or off for this process; returns the previous setting."""
    previous = enabled()
    _state["enabled"] = bool(flag)
    return previous


def use(*arrays):
    """True when the kernels should handle these arrays: enabled, every array a cupy array of one
    float dtype the kernels are compiled for."""
    if not enabled() or type(arrays[0]) is np.ndarray:      # (the CPU's common case, answered first)
        return False
    from ..backend import is_cupy_array
    return (all(is_cupy_array(a) for a in arrays) and arrays[0].dtype in _CTYPES
            and all(a.dtype == arrays[0].dtype for a in arrays))


def _function(name, dtype):
    """The compiled kernel ``name`` for ``dtype`` (the module is compiled once per dtype, on first use;
    cupy caches the binary on disk)."""
    key = (name, np.dtype(dtype))
    fn = _state["functions"].get(key)
    if fn is None:
        import cupy
        module = _state["modules"].get(key[1])
        if module is None:
            module = _state["modules"][key[1]] = cupy.RawModule(code=kernel_source(key[1]), options=OPTIONS)
        fn = _state["functions"][key] = module.get_function(name)
    return fn


def _launch(name, dtype, total, args, blocks=None):
    """Run kernel ``name`` for ``dtype`` on ``total`` elements (a grid-stride loop), or on ``blocks``
    blocks (BatchNorm: one a channel)."""
    if blocks is None:
        if total == 0:
            return
        blocks = min(_MAX_BLOCKS, -(-total // _THREADS))
    _function(name, dtype)((blocks,), (_THREADS,), args)


def _i(*values):
    return tuple(np.int64(v) for v in values)


def _strides(x):
    """x's strides in elements, as 4 int64 for (N, C, H, W); x (N, C), (N, C, L) or (N, C, H, W)."""
    s = [st // x.itemsize for st in x.strides] + [0] * (4 - x.ndim)
    return _i(*s)


def _hw(x):
    return (x.shape[2] if x.ndim > 2 else 1), (x.shape[3] if x.ndim > 3 else 1)


def _empty_like(x):
    """An uninitialised array of x's shape and dtype: C order where x is C-contiguous (or 2-D), else
    channels-last (x's own order when x is channels-last-contiguous)."""
    import cupy
    if x.flags.c_contiguous or x.ndim < 3:
        return cupy.empty(x.shape, dtype=x.dtype)
    perm = (0,) + tuple(range(2, x.ndim)) + (1,)
    inv = tuple(int(i) for i in np.argsort(perm))
    return cupy.empty(tuple(x.shape[p] for p in perm), dtype=x.dtype).transpose(inv)


# ---------------------------------------------------------------- the twins

def leaky_relu(x, s):
    """ops.activations.leaky_relu in one launch; x C- or channels-last contiguous."""
    if not (use(x) and flat(x) is not None):
        return None
    y = _empty_like(x)
    _launch("leaky_relu", x.dtype, x.size, (flat(x), flat(y), x.dtype.type(s), np.int64(x.size)))
    return y


def gate(dy, y, s):
    """ops.activations.gate in one launch, for dy and y in one contiguous memory order."""
    if not (use(dy, y) and dy.shape == y.shape and dy.strides == y.strides and flat(dy) is not None):
        return None
    dx = _empty_like(dy)
    _launch("gate", dy.dtype, dy.size, (flat(dy), flat(y), flat(dx), dy.dtype.type(s), np.int64(dy.size)))
    return dx


def gather_windows(x, kernel, stride, dilation, pads, out_hw, out=None):
    """ops.conv.gather_windows in one launch: no padded copy, x in any strides."""
    if not (use(x) and x.ndim == 4) or (out is not None and not (use(x, out) and out.flags.c_contiguous)):
        return None
    import cupy
    (kh, kw), (oh, ow) = kernel, out_hw
    n, c, h, w = x.shape
    total = n * oh * ow * kh * kw * c
    cols = cupy.empty(total, dtype=x.dtype) if out is None else out.reshape(-1)
    _launch("im2col", x.dtype, total, (x, cols) + _i(total, c, h, w, oh, ow, kh, kw) + _strides(x)
            + _i(*stride, *dilation, pads[0][0], pads[1][0]))
    return cols.reshape(n * oh * ow, kh * kw * c)


def scatter_windows(cols, hw, stride, dilation, pads, out=None):
    """ops.conv.scatter_windows in one launch, straight into a C-contiguous (N, H, W, C) output."""
    if not (use(cols) and cols.ndim == 6 and cols.flags.c_contiguous):
        return None
    if out is not None and not (use(cols, out) and out.flags.c_contiguous):
        return None
    import cupy
    n, oh, ow, kh, kw, c = cols.shape
    h, w = hw
    if out is None:
        out = cupy.empty((n, h, w, c), dtype=cols.dtype)
    total = n * h * w * c
    _launch("col2im", cols.dtype, total, (cols, out) + _i(total, c, h, w, oh, ow, kh, kw)
            + _i(*stride, *dilation, pads[0][0], pads[1][0]))
    return out


def batch_norm_forward(x, weight, bias, running_mean, running_var, train, momentum, eps):
    """ops.norm.batch_norm_forward in train mode, one launch (a block per channel, the running
    statistics updated in it too), x in any strides; xhat and y come out in x's memory order where x
    is C- or channels-last-contiguous (else channels-last), so that the layers after it see the layout
    they would have seen without it (LeakyReLU's backward takes its fused path only when dy and y
    share one layout)."""
    from .. import parallel
    if not (train and use(x) and 2 <= x.ndim <= 4) or parallel.synced():   # data-parallel: the reference
        return None
    count = x.size // x.shape[1]
    if (weight is not None and not use(x, weight, bias)) or (running_mean is not None and (
            count < 2 or not use(x, running_mean, running_var))):          # (count 1: the reference says why)
        return None
    import cupy
    from .norm import _channel_shape
    c, t = x.shape[1], x.dtype.type
    xhat = _empty_like(x)
    y = _empty_like(x) if weight is not None else xhat
    invstd = cupy.empty(c, dtype=x.dtype)
    none = cupy.empty(0, dtype=x.dtype)
    running = running_mean is not None
    h, w = _hw(x)
    _launch("bn_forward", x.dtype, 0, (x, xhat, y, weight if weight is not None else none,
                                       bias if weight is not None else none, invstd,
                                       running_mean if running else none, running_var if running else none,
                                       np.int32(weight is not None), np.int32(running), np.float64(eps),
                                       t(1 - momentum), t(momentum), t(count / (count - 1) if count > 1 else 1.0))
            + _i(x.shape[0], c, h, w) + _strides(x) + _strides(xhat), blocks=c)
    return y, (xhat, invstd.reshape(_channel_shape(x)), weight, True, (0,) + tuple(range(2, x.ndim)))


def batch_norm_backward(dy, cache, param_grads=True):
    """ops.norm.batch_norm_backward in train mode, one launch (a block per channel)."""
    from .. import parallel
    xhat, invstd, weight, train, axes = cache
    if not (train and use(dy, xhat, invstd) and dy.shape == xhat.shape and 2 <= dy.ndim <= 4) \
            or parallel.synced():                                     # (a wrong dy: the reference raises)
        return None
    if weight is not None and not use(dy, weight):
        return None
    import cupy
    c = dy.shape[1]
    gamma = cupy.ones(c, dtype=dy.dtype) if weight is None else weight
    dx = _empty_like(dy)
    sums = cupy.empty((2, c), dtype=np.float64)                      # sum dy, sum dy xhat
    h, w = _hw(dy)
    _launch("bn_backward", dy.dtype, 0, (dy, xhat, gamma, invstd.reshape(-1), dx, sums)
            + _i(dy.shape[0], c, h, w) + _strides(dy) + _strides(xhat) + _strides(dx), blocks=c)
    if not param_grads or weight is None:
        return dx, None, None
    dbeta, dgamma = sums.astype(dy.dtype)
    return dx, dgamma, dbeta


def adam(p, g, m, v, w, b2, bc2_sqrt, eps, step_size):
    """optim.Adam's step (without amsgrad) in one launch over C-contiguous arrays of one dtype;
    -> True when done, None where it does not apply (optim's passes run instead)."""
    if not (use(p, g, m, v) and all(a.flags.c_contiguous for a in (p, g, m, v))):
        return None
    d = p.dtype.type                 # the same float32/float64 operations as optim's passes
    _launch("adam", p.dtype, p.size, (p, g, m, v, np.int64(p.size), d(w), d(1 - w), np.int32(abs(w) < 0.5),
                                      d(b2), d(1 - b2), d(bc2_sqrt), d(eps), d(step_size)))
    return True


def _address(a):
    """The device (cupy) or host (numpy, the CPU emulation) address of a's first element."""
    data = a.data
    return data.ptr if hasattr(data, "ptr") else a.ctypes.data


def adam_all(tensors, w, b2, bc2_sqrt, eps, step_size):
    """optim.Adam's step for every (p, g, m, v) of ``tensors`` (one step count) in one launch; the
    tensors' addresses travel in one small int64 table (one host-to-device copy).  -> True when
    done, None where it does not apply (the tensors are then stepped one at a time)."""
    arrays = [a for t in tensors for a in t]
    if not (tensors and use(*arrays) and all(a.flags.c_contiguous for a in arrays)):
        return None
    import cupy
    n = len(tensors)
    sizes = np.array([t[0].size for t in tensors], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    table = np.concatenate([offsets] + [np.array([_address(t[q]) for t in tensors], dtype=np.int64)
                                        for q in range(4)])
    table = cupy.asarray(table)
    total = int(offsets[-1])
    d = tensors[0][0].dtype.type
    _launch("adam_all", tensors[0][0].dtype, total, (table, np.int64(n), np.int64(total), d(w), d(1 - w),
                                                     np.int32(abs(w) < 0.5), d(b2), d(1 - b2), d(bc2_sqrt), d(eps),
                                                     d(step_size)))
    return True
