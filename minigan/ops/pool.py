"""Pooling and resampling: average pooling and nearest-neighbour upsampling (NCHW)."""
from . import check_dout
from .conv import col2im, conv_out_size, im2col, pad2d
from ..backend import get_xp


def avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """y[n,c,oh,ow] = (1 / D) sum_{i,j} xpad[n, c, oh*sh + i, ow*sw + j], where D = KH*KW, or,
    with count_include_pad=False, the number of taps that fall inside the unpadded input.
    x (N, C, H, W) -> y (N, C, OH, OW).  Reference: torch.nn.AvgPool2d (ceil_mode=False)."""
    n, c, h, w = x.shape
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    out_hw = (conv_out_size(h, kernel[0], stride[0], *pads[0], 1),
              conv_out_size(w, kernel[1], stride[1], *pads[1], 1))
    win = im2col(pad2d(x, pads), kernel, stride, (1, 1), out_hw)      # (N, C, KH, KW, OH, OW) view
    if count_include_pad or padding == (0, 0):
        divisor = kernel[0] * kernel[1]
    else:
        ones = get_xp(x).ones((1, 1, h, w), dtype=x.dtype)
        divisor = im2col(pad2d(ones, pads), kernel, stride, (1, 1), out_hw).sum(axis=(2, 3))  # (1, 1, OH, OW)
    y = win.sum(axis=(2, 3)) / divisor
    return y, (x.shape, pads, kernel, stride, out_hw, divisor)


def avg_pool2d_backward(dy, cache):
    """dx = crop(col2im(dy / D broadcast to every tap of its window))."""
    x_shape, pads, (kh, kw), stride, out_hw, divisor = cache
    n, c, h, w = x_shape
    check_dout("avg_pool2d_backward", dy, (n, c) + tuple(out_hw))
    g = dy / divisor                                                  # (N, C, OH, OW)
    cols = get_xp(dy).broadcast_to(g[:, :, None, None], (n, c, kh, kw) + tuple(out_hw))
    padded_hw = (h + 2 * pads[0][0], w + 2 * pads[1][0])
    dxpad = col2im(cols, padded_hw, stride, (1, 1))
    return dxpad[:, :, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w]


def upsample_nearest_forward(x, scale):
    """y[n, c, h*sh + a, w*sw + b] = x[n, c, h, w] for integer factors (sh, sw).
    x (N, C, H, W) -> y (N, C, H*sh, W*sw).  Reference: torch.nn.Upsample(mode='nearest')."""
    n, c, h, w = x.shape
    sh, sw = scale
    xp = get_xp(x)
    y = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)
    return y, (x.shape, scale)


def upsample_nearest_backward(dy, cache):
    """dx[n, c, h, w] = sum_{a, b} dy[n, c, h*sh + a, w*sw + b]."""
    (n, c, h, w), (sh, sw) = cache
    check_dout("upsample_nearest_backward", dy, (n, c, h * sh, w * sw))
    return dy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))
