"""Pooling and resampling: average pooling and nearest-neighbour upsampling (NCHW)."""
from . import check_dout
from .conv import col2im, conv_out_size, im2col, pad2d
from ..backend import get_xp


def _channels_last(x):
    """True when x (N, C, H, W) has channels-last memory (as convolution outputs do here)."""
    return x.shape[1] > 1 and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _tiles(x, channels_last, kh, kw, oh, ow):
    """Non-overlapping KH x KW tiles of x[:, :, :OH*KH, :OW*KW] as a view, in x's memory order:
    (N, OH, KH, OW, KW, C) for channels-last memory, else (N, C, OH, KH, OW, KW).
    None when no such view exists (the general window path is taken then)."""
    n, c = x.shape[:2]
    if channels_last:
        xn = x.transpose(0, 2, 3, 1)[:, :oh * kh, :ow * kw, :]
        return xn.reshape(n, oh, kh, ow, kw, c) if xn.flags.c_contiguous else None
    xc = x[:, :, :oh * kh, :ow * kw]
    return xc.reshape(n, c, oh, kh, ow, kw) if xc.flags.c_contiguous else None


def avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """y[n,c,oh,ow] = (1 / D) sum_{i,j} xpad[n, c, oh*sh + i, ow*sw + j], where D = KH*KW, or,
    with count_include_pad=False, the number of taps that fall inside the unpadded input.
    x (N, C, H, W) -> y (N, C, OH, OW).  Reference: torch.nn.AvgPool2d (ceil_mode=False).
    Non-overlapping windows without padding (kernel = stride, the common 2x2 case) are summed as
    tiles of a reshaped view in x's own memory order: no window view, no col2im in backward."""
    n, c, h, w = x.shape
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    out_hw = (conv_out_size(h, kernel[0], stride[0], *pads[0], 1),
              conv_out_size(w, kernel[1], stride[1], *pads[1], 1))
    if tuple(kernel) == tuple(stride) and tuple(padding) == (0, 0):
        divisor = kernel[0] * kernel[1]
        cl = _channels_last(x)
        t = _tiles(x, cl, *kernel, *out_hw)
        if t is not None:
            if cl:
                y = (t.sum(axis=(2, 4)) / divisor).transpose(0, 3, 1, 2)              # NCHW view of NHWC
            else:
                y = t.sum(axis=(3, 5)) / divisor                                      # (N, C, OH, OW)
            return y, (x.shape, pads, kernel, stride, out_hw, divisor, "tiles")
    win = im2col(pad2d(x, pads), kernel, stride, (1, 1), out_hw)      # (N, C, KH, KW, OH, OW) view
    if count_include_pad or padding == (0, 0):
        divisor = kernel[0] * kernel[1]
    else:
        ones = get_xp(x).ones((1, 1, h, w), dtype=x.dtype)
        divisor = im2col(pad2d(ones, pads), kernel, stride, (1, 1), out_hw).sum(axis=(2, 3))  # (1, 1, OH, OW)
    y = win.sum(axis=(2, 3)) / divisor
    return y, (x.shape, pads, kernel, stride, out_hw, divisor, "windows")


def avg_pool2d_backward(dy, cache):
    """dx = crop(col2im(dy / D broadcast to every tap of its window)); for non-overlapping tiles
    dx is dy / D repeated over each tile (zero in the rows/columns the floor left out)."""
    x_shape, pads, (kh, kw), stride, out_hw, divisor, how = cache
    n, c, h, w = x_shape
    check_dout("avg_pool2d_backward", dy, (n, c) + tuple(out_hw))
    xp = get_xp(dy)
    g = dy / divisor                                                  # (N, C, OH, OW)
    if how == "tiles":
        oh, ow = out_hw
        if _channels_last(g):                                         # keep the memory order
            gn = g.transpose(0, 2, 3, 1)[:, :, None, :, None, :]
            dxn = xp.zeros((n, h, w, c), dtype=dy.dtype)
            dxn[:, :oh * kh, :ow * kw, :] = xp.broadcast_to(gn, (n, oh, kh, ow, kw, c)).reshape(n, oh * kh, ow * kw, c)
            return dxn.transpose(0, 3, 1, 2)
        dx = xp.zeros((n, c, h, w), dtype=dy.dtype)
        dx[:, :, :oh * kh, :ow * kw] = xp.broadcast_to(g[:, :, :, None, :, None],
                                                       (n, c, oh, kh, ow, kw)).reshape(n, c, oh * kh, ow * kw)
        return dx
    cols = get_xp(dy).broadcast_to(g[:, :, None, None], (n, c, kh, kw) + tuple(out_hw))
    padded_hw = (h + 2 * pads[0][0], w + 2 * pads[1][0])
    dxpad = col2im(cols, padded_hw, stride, (1, 1))
    return dxpad[:, :, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w]


def upsample_nearest_forward(x, scale):
    """y[n, c, h*sh + a, w*sw + b] = x[n, c, h, w] for integer factors (sh, sw).
    x (N, C, H, W) -> y (N, C, H*sh, W*sw), in x's memory order (NCHW or channels-last).
    Reference: torch.nn.Upsample(mode='nearest')."""
    n, c, h, w = x.shape
    sh, sw = scale
    xp = get_xp(x)
    if _channels_last(x):
        xn = x.transpose(0, 2, 3, 1)[:, :, None, :, None, :]
        y = xp.broadcast_to(xn, (n, h, sh, w, sw, c)).reshape(n, h * sh, w * sw, c).transpose(0, 3, 1, 2)
    else:
        y = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)
    return y, (x.shape, scale)


def upsample_nearest_backward(dy, cache):
    """dx[n, c, h, w] = sum_{a, b} dy[n, c, h*sh + a, w*sw + b]."""
    (n, c, h, w), (sh, sw) = cache
    check_dout("upsample_nearest_backward", dy, (n, c, h * sh, w * sw))
    if _channels_last(dy):
        return dy.transpose(0, 2, 3, 1).reshape(n, h, sh, w, sw, c).sum(axis=(2, 4)).transpose(0, 3, 1, 2)
    return dy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))


# ---------------------------------------------------------------- tangents
# Both ops are linear in x: the tangent of the forward is the forward of the tangent, and the
# tangent of the backward (linear in dy, independent of x) is the backward of dy_dot.

def avg_pool2d_jvp(x_dot, kernel, stride, padding, count_include_pad=True):
    """y_dot = avg_pool2d(x_dot)   (None: zero)"""
    return None if x_dot is None else avg_pool2d_forward(x_dot, kernel, stride, padding, count_include_pad)[0]


def avg_pool2d_backward_jvp(dy_dot, cache):
    """dx_dot = avg_pool2d_backward(dy_dot)"""
    return None if dy_dot is None else avg_pool2d_backward(dy_dot, cache)


def upsample_nearest_jvp(x_dot, scale):
    """y_dot = upsample(x_dot)"""
    return None if x_dot is None else upsample_nearest_forward(x_dot, scale)[0]


def upsample_nearest_backward_jvp(dy_dot, cache):
    """dx_dot = upsample_nearest_backward(dy_dot)"""
    return None if dy_dot is None else upsample_nearest_backward(dy_dot, cache)
