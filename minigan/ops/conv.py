"""2-D convolution and transposed convolution as GEMMs on im2col views (NCHW).

Geometry, per spatial axis, with padding (lo, hi), kernel K, stride s, dilation d:
    conv:            out = (in + lo + hi - d (K - 1) - 1) // s + 1
    transposed conv: out = (in - 1) s - 2 p + d (K - 1) + output_padding + 1
The transposed convolution's forward is the convolution's backward-data and vice versa, so the
two share the window view (``windows_nhwc``, no copy) and its adjoint (``col2im_nhwc``, strided-slice
accumulation).  ``im2col`` / ``col2im`` are the same pair in NCHW, used by the pooling ops.
Reference: torch.nn.Conv2d / torch.nn.ConvTranspose2d docs; Dumoulin & Visin (2016).
"""
import math
import threading
from typing import NamedTuple

import numpy as np

from . import _cupy, _numba, accurate_sum, add, check_dout, fast_twin, with_bias
from ..backend import as_strided, get_xp


def conv_out_size(size, kernel, stride, pad_lo, pad_hi, dilation):
    """Output length of a convolution along one axis (may be < 1 for impossible geometry)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_out_size(size, kernel, stride, padding, dilation, output_padding):
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pad2d(x, pads):
    """Zero-pad the two spatial axes by ((top, bottom), (left, right)); no copy when all are 0."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    return get_xp(x).pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def im2col(xpad, kernel, stride, dilation, out_hw):
    """Windows of a padded input as a view.  (N, C, Hp, Wp) -> (N, C, KH, KW, OH, OW), no copy.

    view[n, c, i, j, oh, ow] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    n, c = xpad.shape[:2]
    s_n, s_c, s_h, s_w = xpad.strides
    return as_strided(xpad, (n, c, kh, kw, oh, ow), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))


def col2im(cols, padded_hw, stride, dilation):
    """Adjoint of ``im2col``: add each window back where it came from.

    cols (A, B, KH, KW, OH, OW) -> (A, B, Hp, Wp) with out[a, b, oh*sh + i*dh, ow*sw + j*dw] += cols[a, b, i, j, oh, ow]
    (A, B are (N, C), or (C, N) for the channel-major layout below).
    One strided-slice add per kernel tap (KH*KW adds), never a scatter.
    """
    xp = get_xp(cols)
    n, c, kh, kw, oh, ow = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = xp.zeros((n, c) + tuple(padded_hw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = out[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            xp.add(tap, cols[:, :, i, j], out=tap)
    return out


# ---------------------------------------------------------------- the formulas as loops
# Index-form references (as CS231n's conv_forward_naive): one loop per index of the formula, for
# study and as the oracle of the GEMM versions below (tests/test_conv_reference.py).  Slow: tiny
# shapes only.

def conv2d_reference(x, weight, bias, stride, pads, dilation):
    """y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] x[n, c, p sh + i dh - pt, q sw + j dw - pl],
    the terms outside x being 0.   x (N, C, H, W), W (O, C, KH, KW) -> y (N, O, OH, OW)."""
    n_, c_, h_, w_ = x.shape
    o_, _, kh, kw = weight.shape
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = stride, dilation, pads
    oh, ow = conv_out_size(h_, kh, sh, pt, pb, dh), conv_out_size(w_, kw, sw, pl, pr, dw)
    y = np.zeros((n_, o_, oh, ow), dtype=x.dtype)
    for n in range(n_):
        for o in range(o_):
            for p in range(oh):
                for q in range(ow):
                    total = 0.0 if bias is None else bias[o]
                    for c in range(c_):
                        for i in range(kh):
                            for j in range(kw):
                                h, w = p * sh + i * dh - pt, q * sw + j * dw - pl
                                if 0 <= h < h_ and 0 <= w < w_:
                                    total += weight[o, c, i, j] * x[n, c, h, w]
                    y[n, o, p, q] = total
    return y


def conv_transpose2d_reference(x, weight, bias, stride, padding, dilation, output_padding):
    """y[n, o, h sh + i dh - ph, w sw + j dw - pw] += sum_c x[n, c, h, w] W[c, o, i, j]  (then + b[o]),
    positions outside y dropped.   x (N, C, H, W), W (C, O, KH, KW) -> y (N, O, OH, OW)."""
    n_, c_, h_, w_ = x.shape
    _, o_, kh, kw = weight.shape
    (sh, sw), (dh, dw), (ph, pw) = stride, dilation, padding
    oh = conv_transpose_out_size(h_, kh, sh, ph, dh, output_padding[0])
    ow = conv_transpose_out_size(w_, kw, sw, pw, dw, output_padding[1])
    y = np.zeros((n_, o_, oh, ow), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    for o in range(o_):
                        for i in range(kh):
                            for j in range(kw):
                                p, q = h * sh + i * dh - ph, w * sw + j * dw - pw
                                if 0 <= p < oh and 0 <= q < ow:
                                    y[n, o, p, q] += x[n, c, h, w] * weight[c, o, i, j]
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


# Layout.  The public layout is NCHW, but the convolutions compute in channels-last memory
# (N, H, W, C), as torch's channels_last format does, and return NCHW *views* of it
# (``y_nhwc.transpose(0, 3, 1, 2)``): elementwise layers and BatchNorm keep that memory order
# (numpy and cupy allocate results in the input's order), so a chain conv -> BN -> activation ->
# conv never transposes.  Channels-last makes the im2col gather copy runs of KW*C contiguous
# elements (vs runs of OW strided ones in NCHW) and turns col2im into KH*KW strided adds whose
# inner loop is a contiguous run of C, which measured 1.5-3x faster for each on the CPU here.
# The column matrix is cols (N*OH*OW, KH*KW*C); weights are re-ordered to (O, KH*KW*C) once per
# call (a small copy).  Every GEMM here is an ``xp.matmul`` call (benchmarks/gemm_rate.py wraps
# that function to count and time the convolutions' GEMMs).

def nhwc(x):
    """x (N, C, H, W) as a C-contiguous (N, H, W, C) array: a free view when x is already
    channels-last in memory, one transposing copy otherwise."""
    return get_xp(x).ascontiguousarray(x.transpose(0, 2, 3, 1))


def pad_nhwc(x, pads):
    """x (N, C, H, W) in any memory order -> zero-padded channels-last (N, Hp, Wp, C), C-contiguous.
    One copy at most (none when there is no padding and x is channels-last already)."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return nhwc(x)
    n, c, h, w = x.shape
    out = get_xp(x).zeros((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
    out[:, pt:pt + h, pl:pl + w, :] = x.transpose(0, 2, 3, 1)
    return out


def windows_nhwc(xpad, kernel, stride, dilation, out_hw):
    """Windows of a padded channels-last input as a view.  (N, Hp, Wp, C) -> (N, OH, OW, KH, KW, C):

    view[n, oh, ow, i, j, c] = xpad[n, oh*sh + i*dh, ow*sw + j*dw, c]   (no copy)
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    n, _, _, c = xpad.shape
    s_n, s_h, s_w, s_c = xpad.strides
    return as_strided(xpad, (n, oh, ow, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))


def col2im_nhwc(cols, padded_hw, stride, dilation):
    """Adjoint of ``windows_nhwc``: cols (N, OH, OW, KH, KW, C) -> (N, Hp, Wp, C) with
    out[n, oh*sh + i*dh, ow*sw + j*dw, c] += cols[n, oh, ow, i, j, c].
    One strided-slice add per kernel tap (KH*KW adds, each with contiguous runs of C), never a scatter.
    """
    xp = get_xp(cols)
    n, oh, ow, kh, kw, c = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = xp.zeros((n,) + tuple(padded_hw) + (c,), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = out[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw, :]
            xp.add(tap, cols[:, :, :, i, j, :], out=tap)    # not `+=`: that would copy the view back
    return out


_scratch = threading.local()


def column_buffer(shape, like):
    """An uninitialised array for a column matrix, which never outlives the op that fills it.

    numpy: one buffer per thread, grown to the largest size asked for and then reused.  A fresh
    multi-MB array each call costs its page faults on first write (glibc hands large blocks back
    to the OS): measured ~12 % of the dcgan32 GAN step.  The price is that the largest column matrix
    stays allocated; ``free_column_buffer()`` releases it.  cupy: a plain allocation (its memory
    pool already reuses blocks).  Never return this array, or a view of it, from an op.
    """
    xp = get_xp(like)
    if xp is not np:
        return xp.empty(shape, dtype=like.dtype)
    nbytes = math.prod(shape) * like.dtype.itemsize
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < nbytes:
        _scratch.buf = None                      # drop the old one before allocating the larger
        buf = _scratch.buf = np.empty(nbytes, np.uint8)
    return buf[:nbytes].view(like.dtype).reshape(shape)


def free_column_buffer():
    """Release this thread's column scratch buffer (it is allocated again when next needed)."""
    _scratch.buf = None


@fast_twin(_numba.gather_windows, _cupy.gather_windows)
def gather_windows(x, kernel, stride, dilation, pads, out_hw, out=None):
    """im2col: x (N, C, H, W), any memory order -> cols (N*OH*OW, KH*KW*C), C-contiguous, with
    cols[(n, oh, ow), (i, j, c)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]  (0 in the padding).
    Pad into channels-last memory, then copy the window view.
    ``out``: an array of that shape and x's dtype to fill (e.g. ``column_buffer``), else a new one."""
    (kh, kw), (oh, ow) = kernel, out_hw
    n, c = x.shape[:2]
    xp = get_xp(x)
    cols = xp.empty((n, oh, ow, kh, kw, c), dtype=x.dtype) if out is None else out.reshape(n, oh, ow, kh, kw, c)
    xp.copyto(cols, windows_nhwc(pad_nhwc(x, pads), kernel, stride, dilation, out_hw))
    return cols.reshape(n * oh * ow, kh * kw * c)


@fast_twin(_numba.scatter_windows, _cupy.scatter_windows)
def scatter_windows(cols, hw, stride, dilation, pads, out=None):
    """col2im, the adjoint of ``gather_windows``: cols (N, OH, OW, KH, KW, C) -> (N, H, W, C) with
    out[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] += cols[n, oh, ow, i, j, c], the padding dropped.
    ``col2im_nhwc`` into a padded buffer, then a cropped view of it (the numba twin adds each
    element's taps in the same order, so the two agree bit for bit).  ``out``: a C-contiguous
    (N, H, W, C) array to write into."""
    (pt, pb), (pl, pr) = pads
    h, w = hw
    padded = col2im_nhwc(cols, (h + pt + pb, w + pl + pr), stride, dilation)
    if out is None:
        return padded[:, pt:pt + h, pl:pl + w, :]
    get_xp(cols).copyto(out, padded[:, pt:pt + h, pl:pl + w, :])
    return out


# The batch is processed in chunks whose column matrix takes at most about COLUMN_BYTES (numpy
# only; one chunk on cupy, where large GEMMs and few launches matter), which bounds the scratch
# buffer: the one piece of memory an im2col convolution needs beyond torch's direct (oneDNN) ones.
# Measured on the 2-core CPU (session 3, alternating in one process, both orders): 8 MiB instead of
# 32 MiB changed the dcgan32 step by -2..+1 % and dcgan64 (batch 128) by +1..+4 %, within the noise
# (the GEMMs run at the same rate for M = 512..4096 rows); the peak memory drops by the scratch
# saved: dcgan32 79.6 -> 68.2 MiB (torch 74), dcgan64 429 -> 402 MiB (torch 524).  (Session 2 had
# measured chunks below 32 MiB as 2-35 % slower: those runs had each chunk's dW product in a fresh
# array and one fixed order of the compared settings, which itself moved the result by ~10 %.)
COLUMN_BYTES = 8 << 20


def batch_chunks(n, bytes_per_sample, like):
    """[(start, stop), ...] covering range(n), each chunk's columns about COLUMN_BYTES."""
    if get_xp(like) is not np:
        return [(0, n)]
    per = max(1, COLUMN_BYTES // max(1, bytes_per_sample))
    return [(s, min(n, s + per)) for s in range(0, n, per)]


def _accumulate_matmul(total, part, a, b):
    """total + a @ b summed over the batch chunks -> (total, part).  The first chunk's product is
    the total; later ones go through ``part``, one reused array (fresh multi-MB products would pay
    their page faults on every chunk), and are added in place."""
    xp = get_xp(a)
    if total is None:
        return xp.matmul(a, b), None
    part = xp.matmul(a, b, out=part)
    xp.add(total, part, out=total)
    return total, part


def _weight_rows(weight):
    """(A, B, KH, KW) torch layout -> (A, KH*KW*B), the row order of the channels-last columns."""
    a = weight.shape[0]
    return get_xp(weight).ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(a, -1)


def _weight_from_rows(w2, shape):
    """Inverse of ``_weight_rows``: (A, KH*KW*B) -> a C-contiguous (A, B, KH, KW) array."""
    a, b, kh, kw = shape
    return get_xp(w2).ascontiguousarray(w2.reshape(a, kh, kw, b).transpose(0, 3, 1, 2))


class ConvCache(NamedTuple):
    """What conv2d_forward keeps for its backward and tangents (the tape holds x and W, not the columns)."""
    x: object           # (N, C, H, W) input
    weight: object      # (O, C, KH, KW)
    has_bias: bool
    kernel: tuple       # (KH, KW)
    stride: tuple
    pads: tuple         # ((top, bottom), (left, right))
    dilation: tuple
    out_hw: tuple       # (OH, OW)


class ConvTransposeCache(NamedTuple):
    """What conv_transpose2d_forward keeps for its backward and tangents."""
    x2: object          # the input channels-last, as (N*H*W, Ci): the GEMM's left operand
    weight: object      # (Ci, Co, KH, KW)
    has_bias: bool
    x_shape: tuple      # (N, Ci, H, W)
    kernel: tuple       # (KH, KW)
    stride: tuple
    pads: tuple         # ((p, p), (q, q)): the padding, as the output's crop on each side
    dilation: tuple
    out_hw: tuple       # (OH, OW)


def conv2d_forward(x, weight, bias, stride, pads, dilation):
    """y[n,o] = b[o] + sum_{c,i,j} W[o,c,i,j] xpad[n, c, oh*sh + i*dh, ow*sw + j*dw].

    x (N, C, H, W), W (O, C, KH, KW), b (O,) or None, pads ((top, bottom), (left, right))
    -> y (N, O, OH, OW) (channels-last memory).  As a GEMM: y2 = cols W2^T with
    cols (N*OH*OW, KH*KW*C) and W2 (O, KH*KW*C).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out_hw = (conv_out_size(h, kh, stride[0], *pads[0], dilation[0]),
              conv_out_size(w, kw, stride[1], *pads[1], dilation[1]))
    if _output_side(x.shape, weight.shape, stride, pads, dilation, out_hw):      # e.g. a 64 -> 1 image conv
        return _conv2d_forward_transposed(x, weight, bias, stride, pads, dilation, out_hw)
    xp, rows, k = get_xp(x), out_hw[0] * out_hw[1], kh * kw * c
    w2 = _weight_rows(weight)                                          # (O, KH*KW*C)
    y2 = xp.empty((n * rows, o), dtype=x.dtype)                        # (N*OH*OW, O)
    for s, e in batch_chunks(n, rows * k * x.itemsize, x):
        cols = gather_windows(x[s:e], (kh, kw), stride, dilation, pads, out_hw,
                              out=column_buffer(((e - s) * rows, k), x))          # (n*OH*OW, KH*KW*C)
        xp.matmul(cols, w2.T, out=y2[s * rows:e * rows])
    if bias is not None:
        y2 += bias
    y = y2.reshape(n, *out_hw, o).transpose(0, 3, 1, 2)               # (N, O, OH, OW) view
    # the tape keeps x, not cols (KH*KW/(sh*sw) times larger): backward gathers cols again for dW;
    # and the weight itself, not its re-ordered copy w2 (re-made for dx: ~0.1 ms, vs a copy of every
    # conv weight held per tape)
    return y, ConvCache(x, weight, bias is not None, (kh, kw), stride, pads, dilation, out_hw)


def conv2d_backward(dy, cache, param_grads=True, input_grad=True):
    """With dy2 = dy as (N*OH*OW, O):
        dcols = dy2 W2         -> dx = crop(col2im(dcols))       (backward-data)
        dW2   = dy2^T cols                                        (backward-filter)
        db    = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False and dx is None when
    ``input_grad`` is False (the work for them is skipped).
    """
    x, weight, has_bias, (kh, kw), stride, pads, dilation, out_hw = cache
    n, c, h, w = x.shape
    o = weight.shape[0]
    check_dout("conv2d_backward", dy, (n, o) + tuple(out_hw))
    if _output_side(x.shape, weight.shape, stride, pads, dilation, out_hw):
        return _conv2d_backward_transposed(dy, cache, param_grads, input_grad)
    xp, rows, k = get_xp(dy), out_hw[0] * out_hw[1], kh * kw * c
    dy2 = nhwc(dy).reshape(-1, o)                                      # (N*OH*OW, O)
    dx = xp.empty((n, h, w, c), dtype=dy.dtype) if input_grad else None  # (N, H, W, C)
    w2 = _weight_rows(weight) if input_grad else None                  # (O, KH*KW*C)
    dw2 = part = None
    for s, e in batch_chunks(n, rows * k * dy.itemsize, dy):
        dy_part = dy2[s * rows:e * rows]
        if input_grad:
            dcols = xp.matmul(dy_part, w2, out=column_buffer(((e - s) * rows, k), dy))
            scatter_windows(dcols.reshape(e - s, *out_hw, kh, kw, c), (h, w), stride, dilation, pads, out=dx[s:e])
        if param_grads:                                                # columns as in forward; dcols is dead
            cols = gather_windows(x[s:e], (kh, kw), stride, dilation, pads, out_hw,
                                  out=column_buffer(((e - s) * rows, k), x))
            dw2, part = _accumulate_matmul(dw2, part, dy_part.T, cols)   # (O, KH*KW*C)
    if input_grad:
        dx = dx.transpose(0, 3, 1, 2)                                  # (N, C, H, W) view
    if not param_grads:
        return dx, None, None
    dbias = accurate_sum(dy2, 0) if has_bias else None
    return dx, _weight_from_rows(dw2, (o, c, kh, kw)), dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_padding):
    """The adjoint of conv2d in its input:  y = crop(col2im(x2 W2)) + b.

    x (N, Ci, H, W), W (Ci, Co, KH, KW) (torch layout), b (Co,) or None -> y (N, Co, OH, OW)
    (channels-last memory):
    y[n, o, h*sh + i*dh - ph, w*sw + j*dw - pw] += sum_c x[n, c, h, w] W[c, o, i, j].
    """
    n, ci, h, w = x.shape
    _, co, kh, kw = weight.shape
    out_hw = tuple(conv_transpose_out_size(s, k, st, p, d, op) for s, k, st, p, d, op
                   in zip((h, w), (kh, kw), stride, padding, dilation, output_padding))
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    xp, rows, k = get_xp(x), h * w, kh * kw * co
    x2 = nhwc(x).reshape(-1, ci)                                       # (N*H*W, Ci)
    w2 = _weight_rows(weight)                                          # (Ci, KH*KW*Co)
    y = xp.empty((n,) + tuple(out_hw) + (co,), dtype=x.dtype)          # (N, OH, OW, Co)
    for s, e in batch_chunks(n, rows * k * x.itemsize, x):
        cols = xp.matmul(x2[s * rows:e * rows], w2, out=column_buffer(((e - s) * rows, k), x))
        scatter_windows(cols.reshape(e - s, h, w, kh, kw, co), out_hw, stride, dilation, pads, out=y[s:e])
    if bias is not None:
        y = y + bias
    # the tape keeps the weight, not w2 (re-made in backward for dx), as conv2d_forward does
    return y.transpose(0, 3, 1, 2), ConvTransposeCache(x2, weight, bias is not None, x.shape, (kh, kw), stride, pads,
                                                       dilation, out_hw)


def conv_transpose2d_backward(dy, cache, param_grads=True, input_grad=True):
    """With dcols = im2col(pad(dy)) as (N*H*W, KH*KW*Co) (a convolution of dy):
        dx2 = dcols W2^T;   dW2 = x2^T dcols;   db = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False and dx is None when
    ``input_grad`` is False (the work for them is skipped).
    """
    x2, weight, has_bias, x_shape, (kh, kw), stride, pads, dilation, out_hw = cache
    n, ci, h, w = x_shape
    co = weight.shape[1]
    check_dout("conv_transpose2d_backward", dy, (n, co) + tuple(out_hw))
    xp, rows, k = get_xp(dy), h * w, kh * kw * co
    dx2 = xp.empty((n * rows, ci), dtype=dy.dtype) if input_grad else None   # (N*H*W, Ci)
    w2 = _weight_rows(weight) if input_grad else None                  # (Ci, KH*KW*Co)
    dw2 = part = None
    for s, e in batch_chunks(n, rows * k * dy.itemsize, dy) if input_grad or param_grads else ():
        dcols = gather_windows(dy[s:e], (kh, kw), stride, dilation, pads, (h, w),
                               out=column_buffer(((e - s) * rows, k), dy))      # (n*H*W, KH*KW*Co)
        if input_grad:
            xp.matmul(dcols, w2.T, out=dx2[s * rows:e * rows])
        if param_grads:
            dw2, part = _accumulate_matmul(dw2, part, x2[s * rows:e * rows].T, dcols)   # (Ci, KH*KW*Co)
    dx = dx2.reshape(n, h, w, ci).transpose(0, 3, 1, 2) if input_grad else None   # (N, Ci, H, W) view
    if not param_grads:
        return dx, None, None
    dbias = accurate_sum(dy, (0, 2, 3)) if has_bias else None
    return dx, _weight_from_rows(dw2, (ci, co, kh, kw)), dbias


# ---------------------------------------------------------------- stride-1 conv, output side
# A stride-1 convolution is the transposed convolution of the flipped, transposed kernel:
#     conv2d(x, W, pad p, dilation d) = conv_transpose2d(x, W', padding d (K - 1) - p, dilation d),
#     W'[c, o, i, j] = W[o, c, K-1-i, K-1-j]
# (substitute i -> K-1-i in conv_transpose2d_forward's sum).  conv2d_forward's GEMM runs on the
# input's windows, (N*OH*OW, KH*KW*C); conv_transpose2d_forward's on the output's, (N*H*W, KH*KW*O)
# after one (N*H*W, C) x (C, KH*KW*O) product.  When O is much smaller than C (an image layer:
# 64 channels -> 1 or 3, 3x3) the first is a GEMV over a column matrix KH*KW times the input
# (dcgan-mnist's last conv: 231 MB for a batch of 128), the second reads the input once.  The same
# holds for the backward: dx and dW then work on the windows of dy (KH*KW*O columns), not of x.
# The results are the same sums in another order (float rounding apart).

def _output_side(x_shape, w_shape, stride, pads, dilation, out_hw):
    """True when conv2d should run as conv_transpose2d (above): stride 1, the same padding on both
    sides of each axis and at most d (K - 1) of it, no more multiply-adds (H W <= OH OW: the
    output-side GEMM has a row per input pixel; a 4x4 -> 1x1 conv would do 16 times the work) and
    at most half as many output channels as input ones (2 O <= C: columns at most half the size)."""
    (pt, pb), (pl, pr) = pads
    o, c, kh, kw = w_shape
    return (tuple(stride) == (1, 1) and pt == pb and pl == pr and pt <= dilation[0] * (kh - 1)
            and pl <= dilation[1] * (kw - 1)
            and x_shape[2] * x_shape[3] <= out_hw[0] * out_hw[1] and 2 * o <= c)


def _flipped(weight):
    """(A, B, KH, KW) -> (B, A, KH, KW) with both kernel axes reversed: W'[b, a, i, j] = W[a, b, K-1-i, K-1-j]."""
    return get_xp(weight).ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def _transposed_geometry(w_shape, pads, dilation):
    """conv_transpose2d's (stride, padding, dilation, output_padding) for the flipped kernel."""
    kh, kw = w_shape[2:]
    return (1, 1), (dilation[0] * (kh - 1) - pads[0][0], dilation[1] * (kw - 1) - pads[1][0]), tuple(dilation), (0, 0)


def _conv2d_forward_transposed(x, weight, bias, stride, pads, dilation, out_hw):
    """conv2d_forward through conv_transpose2d_forward on the flipped kernel; conv2d's cache."""
    y, _ = conv_transpose2d_forward(x, _flipped(weight), bias, *_transposed_geometry(weight.shape, pads, dilation))
    return y, ConvCache(x, weight, bias is not None, tuple(weight.shape[2:]), stride, pads, dilation, out_hw)


def _conv2d_backward_transposed(dy, cache, param_grads, input_grad):
    """conv2d_backward through conv_transpose2d_backward on the flipped kernel: the same dx, and dW
    flipped back (dW[o, c, i, j] = dW'[c, o, K-1-i, K-1-j])."""
    x, weight = cache.x, cache.weight
    stride_t, padding_t, _, _ = _transposed_geometry(weight.shape, cache.pads, cache.dilation)
    cache_t = ConvTransposeCache(nhwc(x).reshape(-1, x.shape[1]), _flipped(weight), cache.has_bias, x.shape,
                                 cache.kernel, stride_t, ((padding_t[0],) * 2, (padding_t[1],) * 2), cache.dilation,
                                 cache.out_hw)
    dx, dw_t, db = conv_transpose2d_backward(dy, cache_t, param_grads, input_grad)
    return dx, None if dw_t is None else _flipped(dw_t), db


# ---------------------------------------------------------------- tangents
# Both convolutions are bilinear in (x, W), so each tangent is the op itself applied to the other
# pairing: y_dot = f(x_dot, W) + f(x, W_dot) + b_dot, and since the backward of a bilinear op is
# bilinear in (dy, (x, W)) too, its tangent is two backwards: bwd(dy_dot; x, W) + bwd(dy; x_dot, W_dot).

def _backward_pair(backward, dy, dy_dot, cache, tangent_cache, x_dot, w_dot, param_grads, input_grad):
    """bwd(dy_dot; x, W) + bwd(dy; x_dot, W_dot), the second term's bias gradient left out and each
    of its two parts computed only when its tangent is non-zero:
        dx_dot = bwd_data(dy_dot, W) + bwd_data(dy, W_dot)
        dW_dot = bwd_filter(x, dy_dot) + bwd_filter(x_dot, dy);   db_dot = sum dy_dot"""
    dx1 = dw1 = db1 = dx2 = dw2 = None
    if dy_dot is not None:
        dx1, dw1, db1 = backward(dy_dot, cache, param_grads, input_grad)
    want_dx, want_dw = input_grad and w_dot is not None, param_grads and x_dot is not None
    if want_dx or want_dw:
        dx2, dw2, _ = backward(dy, tangent_cache, want_dw, want_dx)
    return add(dx1, dx2), add(dw1, dw2), db1


def conv2d_jvp(x_dot, w_dot, b_dot, cache):
    """y_dot = conv(x_dot, W) + conv(x, W_dot) + b_dot   (None tangents are zero)."""
    x, weight, geometry = cache.x, cache.weight, (cache.stride, cache.pads, cache.dilation)
    y_dot = add(None if x_dot is None else conv2d_forward(x_dot, weight, None, *geometry)[0],
                None if w_dot is None else conv2d_forward(x, w_dot, None, *geometry)[0])
    return with_bias(y_dot, b_dot, (x.shape[0], weight.shape[0]) + tuple(cache.out_hw), 1)


def conv2d_backward_jvp(dy, dy_dot, x_dot, w_dot, cache, param_grads=True, input_grad=True):
    """The tangent of conv2d_backward along (x_dot, W_dot, dy_dot), by bilinearity:
        dx_dot = bwd_data(dy_dot, W) + bwd_data(dy, W_dot)
        dW_dot = bwd_filter(x, dy_dot) + bwd_filter(x_dot, dy);   db_dot = sum_{n,oh,ow} dy_dot
    -> (dx_dot, dW_dot, db_dot), None for a zero (or not asked for) result."""
    tangent_cache = cache._replace(x=cache.x if x_dot is None else x_dot,
                                   weight=cache.weight if w_dot is None else w_dot, has_bias=False)
    return _backward_pair(conv2d_backward, dy, dy_dot, cache, tangent_cache, x_dot, w_dot, param_grads, input_grad)


def _transpose_geometry(cache):
    """(stride, padding, dilation, output_padding) of the conv_transpose2d_forward call that made ``cache``."""
    stride, dilation, padding = cache.stride, cache.dilation, (cache.pads[0][0], cache.pads[1][0])
    plain = [conv_transpose_out_size(s, k, st, p, d, 0) for s, k, st, p, d
             in zip(cache.x_shape[2:], cache.kernel, stride, padding, dilation)]
    return stride, padding, dilation, tuple(o - p for o, p in zip(cache.out_hw, plain))


def conv_transpose2d_jvp(x_dot, w_dot, b_dot, cache):
    """y_dot = convT(x_dot, W) + convT(x, W_dot) + b_dot   (None tangents are zero)."""
    x2, weight, x_shape = cache.x2, cache.weight, cache.x_shape
    geometry = _transpose_geometry(cache)
    y_dot = None
    if x_dot is not None:
        y_dot = conv_transpose2d_forward(x_dot, weight, None, *geometry)[0]
    if w_dot is not None:
        x = x2.reshape(x_shape[0], x_shape[2], x_shape[3], x_shape[1]).transpose(0, 3, 1, 2)
        y_dot = add(y_dot, conv_transpose2d_forward(x, w_dot, None, *geometry)[0])
    return with_bias(y_dot, b_dot, (x_shape[0], weight.shape[1]) + tuple(cache.out_hw), 1)


def conv_transpose2d_backward_jvp(dy, dy_dot, x_dot, w_dot, cache, param_grads=True, input_grad=True):
    """The tangent of conv_transpose2d_backward along (x_dot, W_dot, dy_dot), by bilinearity:
        dx_dot = conv(dy_dot, W) + conv(dy, W_dot)       (the backward-data of convT is a convolution)
        dW_dot = bwd_W(x, dy_dot) + bwd_W(x_dot, dy);   db_dot = sum_{n,oh,ow} dy_dot
    -> (dx_dot, dW_dot, db_dot), None for a zero (or not asked for) result."""
    tangent_cache = cache._replace(x2=cache.x2 if x_dot is None else nhwc(x_dot).reshape(cache.x2.shape),
                                   weight=cache.weight if w_dot is None else w_dot, has_bias=False)
    return _backward_pair(conv_transpose2d_backward, dy, dy_dot, cache, tangent_cache, x_dot, w_dot,
                          param_grads, input_grad)
