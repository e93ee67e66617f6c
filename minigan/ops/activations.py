"""Elementwise nonlinearities. Each cache holds what its derivative needs and nothing more."""
from . import check_dout
from ..backend import get_xp


def relu_forward(x):
    """y = max(x, 0)"""
    mask = x > 0
    return x * mask, mask


def relu_backward(dy, mask):
    """dx = dy * [x > 0]   (the subgradient at 0 is 0, as in torch)"""
    check_dout("relu_backward", dy, mask.shape)
    return dy * mask


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x if x > 0 else slope * x"""
    xp = get_xp(x)
    scale = xp.where(x > 0, x.dtype.type(1), x.dtype.type(negative_slope))
    return x * scale, scale


def leaky_relu_backward(dy, scale):
    """dx = dy * (1 if x > 0 else slope)"""
    check_dout("leaky_relu_backward", dy, scale.shape)
    return dy * scale


def tanh_forward(x):
    """y = tanh(x)"""
    y = get_xp(x).tanh(x)
    return y, y


def tanh_backward(dy, y):
    """dx = dy * (1 - y^2)"""
    check_dout("tanh_backward", dy, y.shape)
    return dy * (1 - y * y)


def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), evaluated without overflow for logits of any size."""
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))                   # in (0, 1]: never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), stable for any x."""
    xp = get_xp(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid_forward(x):
    """y = σ(x)"""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy, y):
    """dx = dy * y (1 - y)"""
    check_dout("sigmoid_backward", dy, y.shape)
    return dy * y * (1 - y)
