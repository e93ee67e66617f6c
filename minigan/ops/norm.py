"""Normalisation: BatchNorm (statistics over every axis but the channel axis 1) and LayerNorm
(statistics over the trailing axes). Both are one normalisation core plus an affine map.

References: Ioffe & Szegedy (2015); Ba, Kiros & Hinton (2016); torch.nn.BatchNorm2d / LayerNorm docs.
"""
from . import _numba, accurate_sum, check_dout, fast_twin


def normalize_forward(x, axes, eps):
    """xhat = (x - mean) * invstd,  mean = E[x],  var = E[(x - mean)^2] (biased),
    invstd = 1 / sqrt(var + eps); the statistics are taken over ``axes`` (kept as size-1 axes)."""
    m = x.size // _reduced_size(x, axes)
    mean = accurate_sum(x, axes, keepdims=True) / m
    xhat = x - mean                                   # x - mean for now, scaled in place below
    var = accurate_sum(xhat * xhat, axes, keepdims=True) / m
    invstd = 1 / (var + eps) ** 0.5
    xhat *= invstd
    return xhat, mean, var, invstd


def normalize_backward(dxhat, xhat, invstd, sum_dxhat, sum_dxhat_xhat):
    """Gradient through xhat = (x - mean) invstd, with M = the number of elements reduced and the
    per-statistic sums S1 = sum(dxhat), S2 = sum(dxhat * xhat) supplied by the caller (BatchNorm
    gets them from its dgamma/dbeta sums for free):
        dvar  = -1/2 invstd^2 S2                     (d var, using x - mean = xhat / invstd)
        dmean = -invstd S1                           (the dvar term vanishes: sum(x - mean) = 0)
        dx    = dxhat invstd + dvar 2 (x - mean) / M + dmean / M
    """
    m = xhat.size // invstd.size
    dvar = -0.5 * invstd * invstd * sum_dxhat_xhat
    dmean = -invstd * sum_dxhat
    # the same sum with per-statistic coefficients, in place: (x - mean) = xhat / invstd
    dx = dxhat * invstd
    dx += xhat * (dvar * (2 / m) / invstd)
    dx += dmean / m
    return dx


def _reduced_size(x, axes):
    """The number of statistics: the product of the axes that are *not* reduced."""
    n = 1
    for i, s in enumerate(x.shape):
        if i not in axes:
            n *= s
    return n


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


@fast_twin(_numba.batch_norm_forward)
def batch_norm_forward(x, weight, bias, running_mean, running_var, train, momentum, eps):
    """y = gamma xhat + beta, per channel (axis 1).

    train: xhat from the batch statistics; if running buffers are given they are updated in place
        r_mean <- (1 - m) r_mean + m mean,   r_var <- (1 - m) r_var + m var * M / (M - 1)
        (the unbiased variance, as torch does; M = elements per channel).
    eval:  xhat = (x - r_mean) / sqrt(r_var + eps).
    x (N, C, ...), gamma/beta/running stats (C,) or None.
    """
    shape = _channel_shape(x)
    axes = (0,) + tuple(range(2, x.ndim))
    if train:
        xhat, mean, var, invstd = normalize_forward(x, axes, eps)
        if running_mean is not None:
            _update_running(running_mean, running_var, mean.reshape(-1), var.reshape(-1), momentum, x.size // x.shape[1])
    else:
        invstd = (1 / (running_var + eps) ** 0.5).reshape(shape)
        xhat = (x - running_mean.reshape(shape)) * invstd
    y = xhat
    if weight is not None:
        y = xhat * weight.reshape(shape)
        y += bias.reshape(shape)
    return y, (xhat, invstd, weight, train, axes)


@fast_twin(_numba.batch_norm_backward)
def batch_norm_backward(dy, cache, param_grads=True):
    """dgamma = sum(dy xhat);  dbeta = sum(dy);  dxhat = dy gamma; then
    train: dx = normalize_backward(dxhat)  (batch statistics depend on x);
    eval:  dx = dxhat invstd               (running statistics are constants).
    Returns (dx, dgamma, dbeta); the last two are None without affine or ``param_grads``.
    """
    xhat, invstd, weight, train, axes = cache
    check_dout("batch_norm_backward", dy, xhat.shape)
    gamma = None if weight is None else weight.reshape(invstd.shape)
    dxhat = dy * gamma if gamma is not None else dy
    dgamma = dbeta = None
    if train:
        # sum(dxhat) = gamma sum(dy) = gamma dbeta and sum(dxhat xhat) = gamma dgamma: one pair of sums
        dbeta = accurate_sum(dy, axes, keepdims=True)
        dgamma = accurate_sum(dy * xhat, axes, keepdims=True)
        s1, s2 = (dbeta, dgamma) if gamma is None else (gamma * dbeta, gamma * dgamma)
        dx = normalize_backward(dxhat, xhat, invstd, s1, s2)
    else:
        dx = dxhat * invstd
    if not param_grads or weight is None:
        return dx, None, None
    if dgamma is None:
        dbeta, dgamma = accurate_sum(dy, axes, keepdims=True), accurate_sum(dy * xhat, axes, keepdims=True)
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)


def _update_running(running_mean, running_var, mean, var, momentum, m_count):
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * var * (m_count / (m_count - 1))


def layer_norm_forward(x, weight, bias, n_axes, eps):
    """y = gamma xhat + beta with xhat normalised over the last ``n_axes`` axes of each sample;
    gamma, beta have the shape of those axes (or are None)."""
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    xhat, _, _, invstd = normalize_forward(x, axes, eps)
    y = xhat
    if weight is not None:
        y = xhat * weight
    if bias is not None:
        y = y + bias
    return y, (xhat, invstd, weight, bias is not None, axes)


def layer_norm_backward(dy, cache, param_grads=True):
    """dgamma = sum_batch(dy xhat);  dbeta = sum_batch(dy);  dx = normalize_backward(dy gamma)."""
    xhat, invstd, weight, has_bias, axes = cache
    check_dout("layer_norm_backward", dy, xhat.shape)
    dxhat = dy * weight if weight is not None else dy
    dx = normalize_backward(dxhat, xhat, invstd, accurate_sum(dxhat, axes, keepdims=True),
                            accurate_sum(dxhat * xhat, axes, keepdims=True))
    if not param_grads:
        return dx, None, None
    batch_axes = tuple(range(xhat.ndim - len(axes)))
    dweight = accurate_sum(dy * xhat, batch_axes) if weight is not None else None
    dbias = accurate_sum(dy, batch_axes) if has_bias else None
    return dx, dweight, dbias
