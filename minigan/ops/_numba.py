"""Optional CPU kernels compiled with numba (``pip install "minigan[fast]"``).

Kernels: im2col / col2im on channels-last memory (ops/conv.py), BatchNorm's training forward and
backward (ops/norm.py), LeakyReLU / ReLU (ops/activations.py) and Adam (optim.py).  Each fuses passes
that the plain-numpy code makes separately; that plain code stays in place as the twin and the
oracle (tests/test_numba.py: bit-exact where both do the same float operations in the same order,
which is every kernel but BatchNorm; BatchNorm float64 <= 1e-12, float32 <= 1e-5 or twice the
float32 twin's own error against float64, where that is larger).  The ops call a
kernel only for numpy arrays in a memory layout it handles (and im2col only from 16 channels up,
col2im from 2: below that numpy measured faster), and only when numba is importable and not
switched off with ``MINIGAN_NUMBA=0`` or ``set_enabled(False)``.  Measured gains are in
benchmarks/README.md (the dcgan32 GAN step: ~265 -> ~215 ms on the 2-core CPU).

Every kernel is serial (no ``parallel=True``).  Measured on the 2-core CPU here, a parallel col2im
made the dcgan32 GAN step 1.4x *slower* (248 -> 350 ms): after each GEMM OpenBLAS's worker threads
keep spinning and numba's threads fight them for the two cores.  A serial kernel runs on the main
thread's core and loses nothing.  fastmath stays off: results follow IEEE arithmetic in the order
written here.
"""
import os

import numpy as np

_state = {"enabled": None, "kernels": None}


def available():
    """True when numba can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def enabled():
    """Whether the ops use these kernels: numba importable and not switched off
    (``MINIGAN_NUMBA=0`` in the environment, or ``set_enabled(False)``)."""
    if _state["enabled"] is None:
        _state["enabled"] = os.environ.get("MINIGAN_NUMBA", "1") != "0" and available()
    return _state["enabled"]


def set_enabled(flag):
    """Switch the numba kernels on or off for this process; returns the previous setting.
    Switching on without numba installed raises ImportError naming the extra to install."""
    previous = enabled()
    if flag and not available():
        raise ImportError("the numba kernels need numba: pip install numba (from a source checkout: "
                          "pip install '.[fast]')")
    _state["enabled"] = bool(flag)
    return previous


def kernels():
    """The compiled kernels (compiled on first use; cached on disk by numba)."""
    if _state["kernels"] is None:
        try:
            _state["kernels"] = _compile(cache=True)
        except RuntimeError:        # numba found no writable cache directory: compile per process
            _state["kernels"] = _compile(cache=False)
    return _state["kernels"]


def use(*arrays):
    """True when the kernels should handle these arrays: enabled, and every array is a numpy array."""
    return enabled() and all(type(a) is np.ndarray for a in arrays)


def nhwc_view(x):
    """x with channels on axis 1, (N, C), (N, C, L) or (N, C, H, W), as a 4-D (N, A, B, C) view of
    the same memory, when the channels are its innermost axis (channels-last memory, any other
    strides, e.g. a cropped view); None otherwise (the numpy twin is then the faster choice)."""
    if x.ndim not in (2, 3, 4) or (x.shape[1] > 1 and x.strides[1] != x.itemsize):
        return None
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x.transpose(0, 2, 1)[:, :, None, :]
    return x.transpose(0, 2, 3, 1)


def flat(x):
    """x's memory as a 1-D array when it is contiguous (C order or channels-last), else None."""
    if x.flags.c_contiguous:
        return x.reshape(-1)
    if x.ndim >= 3:
        cl = x.transpose((0,) + tuple(range(2, x.ndim)) + (1,))
        if cl.flags.c_contiguous:
            return cl.reshape(-1)
    return None


# ---------------------------------------------------------------- the twins
# Each takes its reference op's arguments (see ``ops.fast_twin``) and returns None where it does
# not apply, so that the reference (numpy) math runs instead.

def leaky_relu(x, s):
    """ops.activations.leaky_relu in one pass; x's memory order (C or channels-last contiguous)."""
    if not (use(x) and flat(x) is not None):
        return None
    y = np.empty_like(x)                                  # x's memory order, so flat too
    kernels().leaky_relu(flat(x), s, flat(y))
    return y


def gate(dy, y, s):
    """ops.activations.gate in one pass, for dy and y in one contiguous memory order."""
    if not (use(dy, y) and dy.strides == y.strides and flat(dy) is not None):
        return None
    dx = np.empty_like(dy)
    kernels().leaky_relu_backward(flat(dy), flat(y), s, flat(dx))
    return dx


def gather_windows(x, kernel, stride, dilation, pads, out_hw, out=None):
    """ops.conv.gather_windows in one pass with no padded copy, from 16 channels up (numpy's
    strided copy wins for few channels: measured C=1 0.36 vs 0.64 ms)."""
    if not (x.shape[1] >= 16 and use(x)):
        return None
    (kh, kw), (oh, ow) = kernel, out_hw
    n, c = x.shape[:2]
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype) if out is None else out.reshape(n, oh, ow, kh, kw, c)
    kernels().im2col_nhwc(x.transpose(0, 2, 3, 1), cols, *stride, *dilation, pads[0][0], pads[1][0])
    return cols.reshape(n * oh * ow, kh * kw * c)


def scatter_windows(cols, hw, stride, dilation, pads, out=None):
    """ops.conv.scatter_windows in one pass straight into a C-contiguous output, from 2 channels up
    (numpy's KH*KW adds win only for C=1: 0.47 vs 0.66 ms; C=2..8: 4 vs 0.8 ms)."""
    if not (cols.shape[-1] > 1 and use(cols)):
        return None
    n, c = cols.shape[0], cols.shape[-1]
    if out is None:
        out = np.empty((n,) + tuple(hw) + (c,), dtype=cols.dtype)
    kernels().col2im_nhwc(cols, out, *stride, *dilation, pads[0][0], pads[1][0])
    return out


def _channels_last_copy(x):
    """x (N, C, ...) with the same values, its memory reordered so that channels are innermost."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)


def batch_norm_forward(x, weight, bias, running_mean, running_var, train, momentum, eps):
    """ops.norm.batch_norm_forward in train mode, in fused passes over x viewed as (N, A, B, C).
    NCHW (or other) memory is copied into channels-last once (measured (128, 256, 7, 7) fwd+bwd:
    26 ms numpy, 8 ms this way)."""
    from .. import parallel
    if not (train and use(x)) or parallel.synced():        # (data-parallel BatchNorm: the reference's sums)
        return None
    from .norm import _channel_shape, _update_running
    if nhwc_view(x) is None:
        x = _channels_last_copy(x)
    v = nhwc_view
    xhat = np.empty_like(x)                                           # x's memory order
    y = np.empty_like(x) if weight is not None else xhat
    none = np.empty(0, x.dtype)
    stats = np.empty((3, x.shape[1]))                                 # mean, var, invstd (float64)
    kernels().bn_forward(v(x), eps, none if weight is None else weight, none if weight is None else bias,
                         v(xhat), v(y), stats)
    mean, var, invstd = stats.astype(x.dtype)
    if running_mean is not None:
        _update_running(running_mean, running_var, mean, var, momentum, x.size // x.shape[1])
    return y, (xhat, invstd.reshape(_channel_shape(x)), weight, True, (0,) + tuple(range(2, x.ndim)))


def batch_norm_backward(dy, cache, param_grads=True):
    """ops.norm.batch_norm_backward in train mode, in two fused passes over (N, A, B, C) views."""
    from .. import parallel
    xhat, invstd, weight, train, axes = cache
    if not (train and use(dy) and nhwc_view(xhat) is not None and dy.shape == xhat.shape) or parallel.synced():
        return None                                                   # (a wrong dy: the reference raises)
    if nhwc_view(dy) is None:
        dy = _channels_last_copy(dy)
    c = dy.shape[1]
    gamma = np.ones(c, dy.dtype) if weight is None else weight
    dx = np.empty_like(xhat)
    sums = np.empty((2, c))                                           # sum dy, sum dy xhat (float64)
    kernels().bn_backward(nhwc_view(dy), nhwc_view(xhat), gamma, invstd.reshape(-1), nhwc_view(dx), sums)
    if not param_grads or weight is None:
        return dx, None, None
    dbeta, dgamma = sums.astype(dy.dtype)
    return dx, dgamma, dbeta


def adam(p, g, m, v, w, b2, bc2_sqrt, eps, step_size):
    """optim.Adam's step (without amsgrad) in one pass over C-contiguous arrays of one dtype;
    -> True when done, None where it does not apply (optim's numpy passes run instead)."""
    if not (use(p, g) and g.dtype == p.dtype and all(a.flags.c_contiguous for a in (p, g, m, v))):
        return None
    d = p.dtype.type                 # the same float32/float64 operations as optim's passes
    kernels().adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), d(w), d(1 - w),
                   abs(w) < 0.5, d(b2), d(1 - b2), d(bc2_sqrt), d(eps), d(step_size))
    return True


# ---------------------------------------------------------------- the kernels

class _Kernels:
    pass


def _compile(cache):
    import numba

    njit = numba.njit(cache=cache, nogil=True, error_model="numpy")   # no ZeroDivisionError checks: they block SIMD
    k = _Kernels()

    @njit
    def im2col_nhwc(x, cols, sh, sw, dh, dw, pt, pl):
        """cols[n, oh, ow, i, j, c] = x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c], 0 outside x.
        x (N, H, W, C) in any strides (channels-last memory makes the inner copy contiguous)."""
        n_, oh_, ow_, kh_, kw_, c_ = cols.shape
        h_, w_ = x.shape[1], x.shape[2]
        for n in range(n_):
            for oh in range(oh_):
                for ow in range(ow_):
                    for i in range(kh_):
                        h = oh * sh + i * dh - pt
                        for j in range(kw_):
                            w = ow * sw + j * dw - pl
                            if 0 <= h < h_ and 0 <= w < w_:
                                for c in range(c_):
                                    cols[n, oh, ow, i, j, c] = x[n, h, w, c]
                            else:
                                for c in range(c_):
                                    cols[n, oh, ow, i, j, c] = 0
    k.im2col_nhwc = im2col_nhwc

    @njit
    def col2im_nhwc(cols, out, sh, sw, dh, dw, pt, pl):
        """out (N, H, W, C) = 0, then out[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] += cols[n, oh, ow, i, j, c]
        for the positions inside out, cols read once in order.  oh and ow run backwards so each
        element receives its taps in (i, j) order, the order of the numpy twin's strided adds."""
        n_, oh_, ow_, kh_, kw_, c_ = cols.shape
        h_, w_ = out.shape[1], out.shape[2]
        for n in range(n_):
            out[n] = 0
            for oh in range(oh_ - 1, -1, -1):
                for ow in range(ow_ - 1, -1, -1):
                    for i in range(kh_):
                        h = oh * sh + i * dh - pt
                        if h < 0 or h >= h_:
                            continue
                        for j in range(kw_):
                            w = ow * sw + j * dw - pl
                            if w < 0 or w >= w_:
                                continue
                            for c in range(c_):
                                out[n, h, w, c] += cols[n, oh, ow, i, j, c]
    k.col2im_nhwc = col2im_nhwc

    @njit
    def bn_forward(x, eps, gamma, beta, xhat, y, stats):
        """Per channel c of x (N, A, B, C): mean, biased var (two passes, float64 sums), invstd;
        xhat = (x - mean) invstd and y = gamma xhat + beta written in one more pass.
        stats (3, C) float64 receives mean, var, invstd.  gamma/beta of size 0 mean no affine."""
        n_, a_, b_, c_ = x.shape
        count = n_ * a_ * b_
        s = np.zeros(c_)
        for n in range(n_):
            for a in range(a_):
                for b in range(b_):
                    for c in range(c_):
                        s[c] += x[n, a, b, c]
        mean = s / count
        ss = np.zeros(c_)
        for n in range(n_):
            for a in range(a_):
                for b in range(b_):
                    for c in range(c_):
                        d = x[n, a, b, c] - mean[c]
                        ss[c] += d * d
        var = ss / count
        invstd = 1.0 / np.sqrt(var + eps)
        affine = gamma.size > 0
        for n in range(n_):
            for a in range(a_):
                for b in range(b_):
                    for c in range(c_):
                        v = (x[n, a, b, c] - mean[c]) * invstd[c]
                        xhat[n, a, b, c] = v
                        if affine:
                            y[n, a, b, c] = v * gamma[c] + beta[c]
        stats[0, :] = mean
        stats[1, :] = var
        stats[2, :] = invstd
    k.bn_forward = bn_forward

    @njit
    def bn_backward(dy, xhat, gamma, invstd, dx, sums):
        """sums (2, C) float64 <- (sum dy, sum dy xhat) per channel; then, with M = N A B,
        dx = gamma invstd (dy - sum(dy)/M - xhat sum(dy xhat)/M)  (normalize_backward, expanded)."""
        n_, a_, b_, c_ = dy.shape
        count = n_ * a_ * b_
        s1 = np.zeros(c_)
        s2 = np.zeros(c_)
        for n in range(n_):
            for a in range(a_):
                for b in range(b_):
                    for c in range(c_):
                        g = dy[n, a, b, c]
                        s1[c] += g
                        s2[c] += g * xhat[n, a, b, c]
        scale = invstd * gamma
        k2 = -scale * s2 / count
        k1 = -scale * s1 / count
        for n in range(n_):
            for a in range(a_):
                for b in range(b_):
                    for c in range(c_):
                        dx[n, a, b, c] = scale[c] * dy[n, a, b, c] + k2[c] * xhat[n, a, b, c] + k1[c]
        sums[0, :] = s1
        sums[1, :] = s2
    k.bn_backward = bn_backward

    @njit
    def leaky_relu(x, slope, y):
        """y = x where x > 0, slope x elsewhere (flat arrays)."""
        for i in range(x.size):
            v = x[i]
            y[i] = v if v > 0 else v * slope
    k.leaky_relu = leaky_relu

    @njit
    def leaky_relu_backward(dy, y, slope, dx):
        """dx = dy where y > 0, slope dy elsewhere (flat arrays in the same memory order)."""
        for i in range(dy.size):
            g = dy[i]
            dx[i] = g if y[i] > 0 else g * slope
    k.leaky_relu_backward = leaky_relu_backward
    @njit
    def adam(p, g, m, v, w, one_minus_w, small_w, b2, one_minus_b2, bc2_sqrt, eps, step_size):
        """One Adam step on flat arrays, in the exact order of optim.Adam's numpy passes:
        m <- lerp(m, g, w) (torch's two branches), v <- v b2 + g^2 (1 - b2),
        p <- p - (m / (sqrt(v) / bc2_sqrt + eps)) step_size.  Scalars come in p's dtype."""
        for i in range(p.size):
            gi = g[i]
            if small_w:
                m[i] = m[i] + (gi - m[i]) * w
            else:
                m[i] = gi - (gi - m[i]) * one_minus_w
            v[i] = v[i] * b2 + (gi * gi) * one_minus_b2
            denom = np.sqrt(v[i]) / bc2_sqrt + eps
            p[i] = p[i] - (m[i] / denom) * step_size
    k.adam = adam
    return k
