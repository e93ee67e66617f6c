"""2-D convolution and transposed convolution as GEMMs on im2col views (NCHW).

Geometry, per spatial axis, with padding (lo, hi), kernel K, stride s, dilation d:
    conv:            out = (in + lo + hi - d (K - 1) - 1) // s + 1
    transposed conv: out = (in - 1) s - 2 p + d (K - 1) + output_padding + 1
The transposed convolution's forward is the convolution's backward-data and vice versa, so the
two share ``im2col`` (a strided view, no copy) and ``col2im`` (strided-slice accumulation).
Reference: torch.nn.Conv2d / torch.nn.ConvTranspose2d docs; Dumoulin & Visin (2016).
"""
from . import accurate_sum, check_dout
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
            out[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return out


def _crop(x, pads, hw):
    (pt, _), (pl, _) = pads
    return x[:, :, pt:pt + hw[0], pl:pl + hw[1]]


def _to_nchw(t, n):
    """(C, N*H*W)-shaped channel-major data as a contiguous (N, C, H, W) array."""
    return get_xp(t).ascontiguousarray(t.transpose(1, 0, 2, 3))


# Layout: the column matrix is channel-major, cols (C*KH*KW, N*OH*OW).  Gathering it from the
# window view keeps whole output rows contiguous (4x faster than the (N*OH*OW, C*KH*KW) layout on
# the CPU here), and every GEMM below has a C-contiguous first operand: OpenBLAS 0.3.31 takes ~40x
# longer for a^T b with a tall a (measured 1.75 s vs 40 ms for a (32 x 100352) x (100352 x 288)).

def conv2d_forward(x, weight, bias, stride, pads, dilation):
    """y[n,o] = b[o] + sum_{c,i,j} W[o,c,i,j] xpad[n, c, oh*sh + i*dh, ow*sw + j*dw].

    x (N, C, H, W), W (O, C, KH, KW), b (O,) or None, pads ((top, bottom), (left, right))
    -> y (N, O, OH, OW).  As a GEMM: y2 = W2 cols with W2 (O, C*KH*KW), cols (C*KH*KW, N*OH*OW).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out_hw = (conv_out_size(h, kh, stride[0], *pads[0], dilation[0]),
              conv_out_size(w, kw, stride[1], *pads[1], dilation[1]))
    xpad = pad2d(x, pads)
    win = im2col(xpad, (kh, kw), stride, dilation, out_hw)          # (N, C, KH, KW, OH, OW) view
    cols = win.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, -1)  # (C*KH*KW, N*OH*OW) copy
    y2 = weight.reshape(o, -1) @ cols                                 # (O, N*OH*OW)
    if bias is not None:
        y2 += bias[:, None]
    y = _to_nchw(y2.reshape(o, n, *out_hw), n)                       # (N, O, OH, OW)
    return y, (cols, weight, bias is not None, x.shape, xpad.shape[2:], stride, pads, dilation, out_hw)


def conv2d_backward(dy, cache, param_grads=True):
    """With dy2 = dy as (O, N*OH*OW):
        dcols = W2^T dy2       -> dx = crop(col2im(dcols))      (backward-data)
        dW2   = dy2 cols^T                                        (backward-filter)
        db    = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False.
    """
    cols, weight, has_bias, x_shape, padded_hw, stride, pads, dilation, out_hw = cache
    n, c, h, w = x_shape
    o, _, kh, kw = weight.shape
    check_dout("conv2d_backward", dy, (n, o) + tuple(out_hw))
    dy2 = dy.transpose(1, 0, 2, 3).reshape(o, -1)                    # (O, N*OH*OW)
    dcols = weight.reshape(o, -1).T @ dy2                             # (C*KH*KW, N*OH*OW)
    dcols = dcols.reshape(c, kh, kw, n, *out_hw).transpose(0, 3, 1, 2, 4, 5)   # (C, N, KH, KW, OH, OW) view
    dxpad = col2im(dcols, padded_hw, stride, dilation)                # (C, N, Hp, Wp)
    dx = _to_nchw(_crop(dxpad, pads, (h, w)), n)
    if not param_grads:
        return dx, None, None
    dweight = (dy2 @ cols.T).reshape(weight.shape)                    # (O, C, KH, KW)
    dbias = accurate_sum(dy2, 1) if has_bias else None
    return dx, dweight, dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_padding):
    """The adjoint of conv2d in its input:  y = crop(col2im(W2^T x2)) + b.

    x (N, Ci, H, W), W (Ci, Co, KH, KW) (torch layout), b (Co,) or None -> y (N, Co, OH, OW):
    y[n, o, h*sh + i*dh - ph, w*sw + j*dw - pw] += sum_c x[n, c, h, w] W[c, o, i, j].
    """
    n, ci, h, w = x.shape
    _, co, kh, kw = weight.shape
    out_hw = tuple(conv_transpose_out_size(s, k, st, p, d, op) for s, k, st, p, d, op
                   in zip((h, w), (kh, kw), stride, padding, dilation, output_padding))
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    padded_hw = (out_hw[0] + 2 * padding[0], out_hw[1] + 2 * padding[1])
    x2 = x.transpose(1, 0, 2, 3).reshape(ci, -1)                      # (Ci, N*H*W)
    cols = weight.reshape(ci, -1).T @ x2                              # (Co*KH*KW, N*H*W)
    cols = cols.reshape(co, kh, kw, n, h, w).transpose(0, 3, 1, 2, 4, 5)   # (Co, N, KH, KW, H, W) view
    y = _crop(col2im(cols, padded_hw, stride, dilation), pads, out_hw)    # (Co, N, OH, OW)
    if bias is not None:
        y = y + bias.reshape(co, 1, 1, 1)
    return _to_nchw(y, n), (x2, weight, bias is not None, x.shape, stride, pads, dilation, out_hw)


def conv_transpose2d_backward(dy, cache, param_grads=True):
    """With dcols = im2col(pad(dy)) as (Co*KH*KW, N*H*W) (a convolution of dy):
        dx2 = W2 dcols;   dW2 = x2 dcols^T;   db = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False.
    """
    x2, weight, has_bias, x_shape, stride, pads, dilation, out_hw = cache
    n, ci, h, w = x_shape
    _, co, kh, kw = weight.shape
    check_dout("conv_transpose2d_backward", dy, (n, co) + tuple(out_hw))
    win = im2col(pad2d(dy, pads), (kh, kw), stride, dilation, (h, w))  # (N, Co, KH, KW, H, W) view
    dcols = win.transpose(1, 2, 3, 0, 4, 5).reshape(co * kh * kw, -1)  # (Co*KH*KW, N*H*W) copy
    dx = _to_nchw((weight.reshape(ci, -1) @ dcols).reshape(ci, n, h, w), n)
    if not param_grads:
        return dx, None, None
    dweight = (x2 @ dcols.T).reshape(weight.shape)                    # (Ci, Co, KH, KW)
    dbias = accurate_sum(dy, (0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
