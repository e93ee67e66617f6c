"""Normalisation: BatchNorm (statistics over every axis but the channel axis 1) and LayerNorm
(statistics over the trailing axes). Both are one normalisation core plus an affine map.

References: Ioffe & Szegedy (2015); Ba, Kiros & Hinton (2016); torch.nn.BatchNorm2d / LayerNorm docs.
"""
from . import _cupy, _numba, accurate_sum, add, check_dout, fast_twin, scaled
from .. import parallel
from ..backend import get_xp


def normalize_forward(x, axes, eps, total=None):
    """xhat = (x - mean) * invstd,  mean = E[x],  var = E[(x - mean)^2] (biased),
    invstd = 1 / sqrt(var + eps); the statistics are taken over ``axes`` (kept as size-1 axes).
    ``total`` (data-parallel BatchNorm): sums and the count over every rank's batch (minigan.parallel)."""
    total = total or (lambda a: a)
    m = total(x.size // _reduced_size(x, axes))
    mean = total(accurate_sum(x, axes, keepdims=True)) / m
    xhat = x - mean                                   # x - mean for now, scaled in place below
    var = total(accurate_sum(xhat * xhat, axes, keepdims=True)) / m
    invstd = 1 / (var + eps) ** 0.5
    xhat *= invstd
    return xhat, mean, var, invstd


def normalize_backward(dxhat, xhat, invstd, sum_dxhat, sum_dxhat_xhat, m=None):
    """Gradient through xhat = (x - mean) invstd, with M = the number of elements reduced and the
    per-statistic sums S1 = sum(dxhat), S2 = sum(dxhat * xhat) supplied by the caller (BatchNorm
    gets them from its dgamma/dbeta sums for free):
        dvar  = -1/2 invstd^2 S2                     (d var, using x - mean = xhat / invstd)
        dmean = -invstd S1                           (the dvar term vanishes: sum(x - mean) = 0)
        dx    = dxhat invstd + dvar 2 (x - mean) / M + dmean / M
    ``m``: M when the sums span more than this xhat (data-parallel BatchNorm).
    """
    m = xhat.size // invstd.size if m is None else m
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


@fast_twin(_numba.batch_norm_forward, _cupy.batch_norm_forward)
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
        total = parallel.total if parallel.synced() else None      # K ranks: statistics of the global batch
        xhat, mean, var, invstd = normalize_forward(x, axes, eps, total)
        if running_mean is not None:
            count = x.size // x.shape[1]
            _update_running(running_mean, running_var, mean.reshape(-1), var.reshape(-1), momentum,
                            count if total is None else total(count))
    else:
        invstd = (1 / (running_var + eps) ** 0.5).reshape(shape)
        xhat = (x - running_mean.reshape(shape)) * invstd
    y = xhat
    if weight is not None:
        y = xhat * weight.reshape(shape)
        y += bias.reshape(shape)
    return y, (xhat, invstd, weight, train, axes)


@fast_twin(_numba.batch_norm_backward, _cupy.batch_norm_backward)
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
        m = None
        if parallel.synced():          # K ranks: dx needs the global sums; dgamma, dbeta stay this rank's
            s1, s2, m = parallel.total(s1), parallel.total(s2), parallel.total(xhat.size // invstd.size)
        dx = normalize_backward(dxhat, xhat, invstd, s1, s2, m)
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


# ---------------------------------------------------------------- tangents
# The normalisation's Jacobian is symmetric: d xhat = invstd P(dx) with the projection
# P(u) = u - mean(u) - xhat mean(xhat u), the same P as in normalize_backward (dx = invstd P(dxhat)).

def _mean(u, axes, m):
    return accurate_sum(u, axes, keepdims=True) / m


def normalize_jvp(x_dot, xhat, invstd, axes):
    """The tangent of normalize_forward along x_dot, with M elements per statistic:
        mean_dot   = mean(x_dot)
        var_dot    = 2 mean((x - mean) x_dot) = 2 mean(xhat x_dot) / invstd
        invstd_dot = -1/2 invstd^3 var_dot = -invstd^2 mean(xhat x_dot)
        xhat_dot   = (x_dot - mean_dot) invstd + (x - mean) invstd_dot = invstd P(x_dot)
    -> (xhat_dot, invstd_dot); both None when x_dot is None."""
    if x_dot is None:
        return None, None
    m = xhat.size // invstd.size
    c = _mean(xhat * x_dot, axes, m)                     # mean(xhat x_dot)
    xhat_dot = (x_dot - _mean(x_dot, axes, m) - xhat * c) * invstd
    return xhat_dot, -invstd * invstd * c


def normalize_backward_jvp(dxhat, dxhat_dot, xhat, xhat_dot, invstd, invstd_dot, axes):
    """The tangent of dx = invstd P(dxhat), P(u) = u - mean(u) - xhat mean(xhat u), along
    (dxhat_dot, xhat_dot, invstd_dot):
        dx_dot = invstd_dot P(dxhat)
               + invstd [ dxhat_dot - mean(dxhat_dot) - xhat_dot mean(xhat dxhat)
                          - xhat (mean(xhat_dot dxhat) + mean(xhat dxhat_dot)) ]
    None tangents are zero; None when all are."""
    if dxhat_dot is None and xhat_dot is None:
        return None
    m = xhat.size // invstd.size
    inner = 0
    if dxhat_dot is not None:
        inner = dxhat_dot - _mean(dxhat_dot, axes, m) - xhat * _mean(xhat * dxhat_dot, axes, m)
    if xhat_dot is not None:
        inner = inner - xhat_dot * _mean(xhat * dxhat, axes, m) - xhat * _mean(xhat_dot * dxhat, axes, m)
    dx_dot = inner * invstd
    if invstd_dot is not None:
        dx_dot += (dxhat - _mean(dxhat, axes, m) - xhat * _mean(xhat * dxhat, axes, m)) * invstd_dot
    return dx_dot


def _affine_jvp(xhat, xhat_dot, gamma, gamma_dot, beta_dot):
    """y = gamma xhat + beta  ->  y_dot = gamma xhat_dot + gamma_dot xhat + beta_dot
    (gamma None: no affine map; gamma, gamma_dot, beta_dot already shaped to broadcast)."""
    y_dot = None if xhat_dot is None else (xhat_dot if gamma is None else xhat_dot * gamma)
    y_dot = add(y_dot, None if gamma_dot is None else xhat * gamma_dot)
    if beta_dot is not None:
        y_dot = get_xp(xhat).zeros_like(xhat) + beta_dot if y_dot is None else y_dot + beta_dot
    return y_dot


def batch_norm_jvp(x_dot, w_dot, b_dot, cache):
    """The tangent of batch_norm_forward along (x_dot, gamma_dot, beta_dot), per channel:
        train: xhat_dot, invstd_dot = normalize_jvp(x_dot)  (batch statistics move with x)
        eval:  xhat_dot = x_dot invstd,  invstd_dot = 0      (running statistics are constants)
        y_dot = gamma xhat_dot + gamma_dot xhat + beta_dot
    -> (y_dot, (xhat_dot, invstd_dot)) (the second part is the tangent cache for the backward's tangent).
    The running statistics are buffers, not functions of the parameters: they have no tangent."""
    xhat, invstd, weight, train, axes = cache
    if train:
        xhat_dot, invstd_dot = normalize_jvp(x_dot, xhat, invstd, axes)
    else:
        xhat_dot, invstd_dot = scaled(x_dot, invstd), None
    shape = invstd.shape
    resh = (lambda a: None if a is None else a.reshape(shape))
    return _affine_jvp(xhat, xhat_dot, resh(weight), resh(w_dot), resh(b_dot)), (xhat_dot, invstd_dot)


def batch_norm_backward_jvp(dy, dy_dot, w_dot, cache, tangent_cache, param_grads=True, input_grad=True):
    """The tangent of batch_norm_backward along (x_dot, gamma_dot, beta_dot, dy_dot):
        dxhat_dot  = gamma dy_dot + gamma_dot dy
        train: dx_dot = normalize_backward_jvp(...);   eval: dx_dot = dxhat_dot invstd
        dgamma_dot = sum(dy_dot xhat + dy xhat_dot);   dbeta_dot = sum(dy_dot)
    -> (dx_dot, dgamma_dot, dbeta_dot), None for a zero (or not asked for) result."""
    xhat, invstd, weight, train, axes = cache
    xhat_dot, invstd_dot = tangent_cache
    gamma = None if weight is None else weight.reshape(invstd.shape)
    dxhat = dy if gamma is None else dy * gamma
    dxhat_dot = add(scaled(dy_dot, 1 if gamma is None else gamma),
                    None if w_dot is None else dy * w_dot.reshape(invstd.shape))
    dx_dot = None
    if input_grad:
        if train:
            dx_dot = normalize_backward_jvp(dxhat, dxhat_dot, xhat, xhat_dot, invstd, invstd_dot, axes)
        else:
            dx_dot = scaled(dxhat_dot, invstd)
    if not param_grads or weight is None:
        return dx_dot, None, None
    dgamma_dot = add(None if dy_dot is None else dy_dot * xhat, None if xhat_dot is None else dy * xhat_dot)
    dgamma_dot = None if dgamma_dot is None else accurate_sum(dgamma_dot, axes)
    dbeta_dot = None if dy_dot is None else accurate_sum(dy_dot, axes)
    return dx_dot, dgamma_dot, dbeta_dot


def layer_norm_jvp(x_dot, w_dot, b_dot, cache):
    """The tangent of layer_norm_forward (statistics per sample):
        xhat_dot, invstd_dot = normalize_jvp(x_dot);   y_dot = gamma xhat_dot + gamma_dot xhat + beta_dot
    -> (y_dot, (xhat_dot, invstd_dot))."""
    xhat, invstd, weight, _, axes = cache
    xhat_dot, invstd_dot = normalize_jvp(x_dot, xhat, invstd, axes)
    return _affine_jvp(xhat, xhat_dot, weight, w_dot, b_dot), (xhat_dot, invstd_dot)


def layer_norm_backward_jvp(dy, dy_dot, w_dot, cache, tangent_cache, param_grads=True, input_grad=True):
    """The tangent of layer_norm_backward:
        dxhat_dot = gamma dy_dot + gamma_dot dy;   dx_dot = normalize_backward_jvp(...)
        dgamma_dot = sum_batch(dy_dot xhat + dy xhat_dot);   dbeta_dot = sum_batch(dy_dot)
    -> (dx_dot, dgamma_dot, dbeta_dot), None for a zero (or not asked for) result."""
    xhat, invstd, weight, has_bias, axes = cache
    xhat_dot, invstd_dot = tangent_cache
    dxhat = dy if weight is None else dy * weight
    dxhat_dot = add(scaled(dy_dot, 1 if weight is None else weight), None if w_dot is None else dy * w_dot)
    dx_dot = normalize_backward_jvp(dxhat, dxhat_dot, xhat, xhat_dot, invstd, invstd_dot, axes) if input_grad else None
    if not param_grads:
        return dx_dot, None, None
    batch_axes = tuple(range(xhat.ndim - len(axes)))
    dgamma_dot = None
    if weight is not None:
        dgamma_dot = add(None if dy_dot is None else dy_dot * xhat, None if xhat_dot is None else dy * xhat_dot)
        dgamma_dot = None if dgamma_dot is None else accurate_sum(dgamma_dot, batch_axes)
    dbeta_dot = accurate_sum(dy_dot, batch_axes) if has_bias and dy_dot is not None else None
    return dx_dot, dgamma_dot, dbeta_dot
