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

    cols (N, C, KH, KW, OH, OW) -> (N, C, Hp, Wp) with out[n, c, oh*sh + i*dh, ow*sw + j*dw] += cols[n, c, i, j, oh, ow].
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


def conv2d_forward(x, weight, bias, stride, pads, dilation):
    """y[n,o] = b[o] + sum_{c,i,j} W[o,c,i,j] xpad[n, c, oh*sh + i*dh, ow*sw + j*dw].

    x (N, C, H, W), W (O, C, KH, KW), b (O,) or None, pads ((top, bottom), (left, right))
    -> y (N, O, OH, OW).  As a GEMM: y2 = cols W2^T with cols (N*OH*OW, C*KH*KW), W2 (O, C*KH*KW).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out_hw = (conv_out_size(h, kh, stride[0], *pads[0], dilation[0]),
              conv_out_size(w, kw, stride[1], *pads[1], dilation[1]))
    xpad = pad2d(x, pads)
    win = im2col(xpad, (kh, kw), stride, dilation, out_hw)          # (N, C, KH, KW, OH, OW) view
    cols = win.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_hw[0] * out_hw[1], c * kh * kw)
    y2 = cols @ weight.reshape(o, -1).T                              # (N*OH*OW, O)
    if bias is not None:
        y2 += bias
    y = y2.reshape(n, out_hw[0], out_hw[1], o).transpose(0, 3, 1, 2)  # (N, O, OH, OW)
    return y, (cols, weight, bias is not None, x.shape, xpad.shape[2:], stride, pads, dilation, out_hw)


def conv2d_backward(dy, cache, param_grads=True):
    """With dy2 = dy as (N*OH*OW, O):
        dcols = dy2 W2         -> dx = crop(col2im(dcols))      (backward-data)
        dW2   = dy2^T cols                                        (backward-filter)
        db    = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False.
    """
    cols, weight, has_bias, x_shape, padded_hw, stride, pads, dilation, out_hw = cache
    n, c, h, w = x_shape
    o, _, kh, kw = weight.shape
    check_dout("conv2d_backward", dy, (n, o) + tuple(out_hw))
    dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, o)                    # (N*OH*OW, O)
    dcols = dy2 @ weight.reshape(o, -1)                               # (N*OH*OW, C*KH*KW)
    dcols = dcols.reshape(n, out_hw[0], out_hw[1], c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dx = _crop(col2im(dcols, padded_hw, stride, dilation), pads, (h, w))
    if not param_grads:
        return dx, None, None
    dweight = (dy2.T @ cols).reshape(weight.shape)                    # (O, C, KH, KW)
    dbias = accurate_sum(dy2, 0) if has_bias else None
    return dx, dweight, dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_padding):
    """The adjoint of conv2d in its input:  y = crop(col2im(x2 W2)) + b.

    x (N, Ci, H, W), W (Ci, Co, KH, KW) (torch layout), b (Co,) or None -> y (N, Co, OH, OW):
    y[n, o, h*sh + i*dh - ph, w*sw + j*dw - pw] += sum_c x[n, c, h, w] W[c, o, i, j].
    """
    n, ci, h, w = x.shape
    _, co, kh, kw = weight.shape
    out_hw = tuple(conv_transpose_out_size(s, k, st, p, d, op) for s, k, st, p, d, op
                   in zip((h, w), (kh, kw), stride, padding, dilation, output_padding))
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    padded_hw = (out_hw[0] + 2 * padding[0], out_hw[1] + 2 * padding[1])
    x2 = x.transpose(0, 2, 3, 1).reshape(n * h * w, ci)               # (N*H*W, Ci)
    cols = x2 @ weight.reshape(ci, -1)                                # (N*H*W, Co*KH*KW)
    cols = cols.reshape(n, h, w, co, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    y = _crop(col2im(cols, padded_hw, stride, dilation), pads, out_hw)
    if bias is not None:
        y = y + bias.reshape(1, co, 1, 1)
    return y, (x2, weight, bias is not None, x.shape, stride, pads, dilation, out_hw)


def conv_transpose2d_backward(dy, cache, param_grads=True):
    """With dcols = im2col(pad(dy)) as (N*H*W, Co*KH*KW) (a convolution of dy):
        dx2 = dcols W2^T;   dW2 = x2^T dcols;   db = sum_{n,oh,ow} dy
    Returns (dx, dW, db); dW, db are None when ``param_grads`` is False.
    """
    x2, weight, has_bias, x_shape, stride, pads, dilation, out_hw = cache
    n, ci, h, w = x_shape
    _, co, kh, kw = weight.shape
    check_dout("conv_transpose2d_backward", dy, (n, co) + tuple(out_hw))
    win = im2col(pad2d(dy, pads), (kh, kw), stride, dilation, (h, w))  # (N, Co, KH, KW, H, W) view
    dcols = win.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, co * kh * kw)
    dx = (dcols @ weight.reshape(ci, -1).T).reshape(n, h, w, ci).transpose(0, 3, 1, 2)
    if not param_grads:
        return dx, None, None
    dweight = (x2.T @ dcols).reshape(weight.shape)                    # (Ci, Co, KH, KW)
    dbias = accurate_sum(dy, (0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
