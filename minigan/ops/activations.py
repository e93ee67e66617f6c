"""Elementwise nonlinearities. Each cache holds what its derivative needs and nothing more."""
from . import _cupy, _numba, add, check_dout, fast_twin
from ..backend import get_xp


def relu_forward(x):
    """y = max(x, 0); the cache is y itself ([y > 0] = [x > 0]).  (Against an array of zeros, not the
    scalar 0: numpy 2's maximum runs ~5x slower with a scalar operand; the same bits.)"""
    xp = get_xp(x)
    y = xp.zeros_like(x)
    xp.maximum(x, y, out=y)
    return y, y


def relu_backward(dy, y):
    """dx = dy * [x > 0] = dy * [y > 0]   (the subgradient at 0 is 0, as in torch)"""
    check_dout("relu_backward", dy, y.shape)
    return gate(dy, y, dy.dtype.type(0))


@fast_twin(_numba.gate, _cupy.gate)
def gate(dy, y, s):
    """dx = dy where y > 0, s dy elsewhere (s >= 0): ReLU's (s = 0) and LeakyReLU's backward, and,
    their Jacobians being diagonal, their tangents too.  One multiply per element, bit-exact."""
    xp = get_xp(dy)
    if s == 0:
        return dy * (y > 0)                                   # ReLU's: dy times the 0/1 mask
    scale = (y > 0).astype(dy.dtype)
    if s <= 1:                                                # 1 where y > 0, slope elsewhere
        # (against an array of s, not the scalar s: numpy 2's maximum runs ~5x slower with a scalar)
        xp.maximum(scale, xp.full_like(scale, s), out=scale)
    else:
        scale = xp.where(scale > 0, scale, s)
    return dy * scale


@fast_twin(_numba.leaky_relu, _cupy.leaky_relu)
def leaky_relu(x, s):
    """y = x if x > 0 else s x  =  max(x, s x) for s <= 1 (min for s > 1), s in x's dtype.
    Branch-free on purpose: ``where`` with a random mask runs ~20x slower than two arithmetic
    passes on the CPU here (branch mispredictions).  A negative slope takes the definition itself:
    max(+0, -0) is a tie whose sign numpy and CuPy break differently (-0 and +0), while the
    definition gives s * (+0) = -0 and s * (-0) = +0 on both, as the fast twins do."""
    xp = get_xp(x)
    y = x * s
    if s < 0:
        xp.copyto(y, x, where=x > 0)                          # (y keeps x's memory order)
        return y
    (xp.maximum if s <= 1 else xp.minimum)(x, y, out=y)
    return y


def leaky_relu_forward(x, negative_slope=0.01):
    """y = leaky_relu(x).  For slope >= 0 the cache is y itself ([y > 0] = [x > 0] then, and the
    next layer usually keeps y alive anyway): no extra memory; else dy/dx itself."""
    s = x.dtype.type(negative_slope)
    y = leaky_relu(x, s)
    if negative_slope >= 0:
        return y, (y, s)
    return y, (None, get_xp(x).where(x > 0, x.dtype.type(1), s))     # a negative slope: keep dy/dx itself


def leaky_relu_backward(dy, cache):
    """dx = dy * (1 if x > 0 else slope), with [x > 0] = [y > 0] when slope >= 0."""
    y, s = cache
    if y is None:                                             # s holds dy/dx
        check_dout("leaky_relu_backward", dy, s.shape)
        return dy * s
    check_dout("leaky_relu_backward", dy, y.shape)
    return gate(dy, y, s)


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


# ---------------------------------------------------------------- tangents
# ReLU and LeakyReLU have diagonal, piecewise-constant Jacobians: the tangent of the forward is the
# backward's product applied to x_dot, and the backward's tangent is that product applied to dy_dot
# (their second derivative is 0 away from the kink).  Tanh and Sigmoid have curvature: their
# backward's tangent gains a term in dy y_dot.  None tangents are zero; a zero result is None.

def relu_jvp(x_dot, y):
    """y_dot = x_dot [x > 0]"""
    return None if x_dot is None else gate(x_dot, y, x_dot.dtype.type(0))


def relu_backward_jvp(dy, dy_dot, y, y_dot):
    """dx_dot = dy_dot [x > 0]   (d[x > 0] = 0 almost everywhere)"""
    return relu_jvp(dy_dot, y)


def leaky_relu_jvp(x_dot, cache):
    """y_dot = x_dot (1 if x > 0 else slope)"""
    return None if x_dot is None else leaky_relu_backward(x_dot, cache)


def leaky_relu_backward_jvp(dy, dy_dot, cache, y_dot):
    """dx_dot = dy_dot (1 if x > 0 else slope)"""
    return leaky_relu_jvp(dy_dot, cache)


def tanh_jvp(x_dot, y):
    """y_dot = x_dot (1 - y^2)"""
    return None if x_dot is None else x_dot * (1 - y * y)


def tanh_backward_jvp(dy, dy_dot, y, y_dot):
    """dx = dy (1 - y^2)  ->  dx_dot = dy_dot (1 - y^2) - 2 dy y y_dot"""
    dx_dot = tanh_jvp(dy_dot, y)
    if y_dot is None:
        return dx_dot
    return add(dx_dot, -2 * dy * y * y_dot)


def sigmoid_jvp(x_dot, y):
    """y_dot = x_dot y (1 - y)"""
    return None if x_dot is None else x_dot * y * (1 - y)


def sigmoid_backward_jvp(dy, dy_dot, y, y_dot):
    """dx = dy y (1 - y)  ->  dx_dot = dy_dot y (1 - y) + dy (1 - 2 y) y_dot"""
    dx_dot = sigmoid_jvp(dy_dot, y)
    if y_dot is None:
        return dx_dot
    return add(dx_dot, dy * (1 - 2 * y) * y_dot)
