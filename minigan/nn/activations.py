"""Elementwise layers: Dropout, ReLU, LeakyReLU, Tanh, Sigmoid.  Math: ``minigan.ops.activations``."""
from ..backend import get_xp
from ..ops import activations as act
from ..ops import check_dout
from .base import Layer


class Dropout(Layer):
    """train: y = x * m / (1 - p) with m ~ Bernoulli(1 - p) per element (drawn from the net's rng);
    eval: y = x.   dx = dy * m / (1 - p)."""

    def __init__(self, p=0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)

    def _repr_args(self):
        return [f"p={self.p}"]

    def apply(self, params, state, x, train, rng):
        if not train or self.p == 0:
            return x, None
        keep = rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1 else 1 / (1 - self.p)
        mask = get_xp(x).asarray(keep * scale, dtype=x.dtype)
        return x * mask, mask

    def apply_backward(self, params, dy, mask, param_grads):
        if mask is None:
            return dy, {}
        check_dout("dropout_backward", dy, mask.shape)
        return dy * mask, {}

    def apply_jvp(self, params, params_dot, x_dot, mask):
        """y_dot = x_dot m / (1 - p) with the tape's mask (x_dot in eval)."""
        return (x_dot if mask is None or x_dot is None else x_dot * mask), None

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, mask, tcache, param_grads=True, input_grad=True):
        """dx_dot = dy_dot m / (1 - p)"""
        return (dy_dot if mask is None or dy_dot is None else dy_dot * mask), {}


class _Elementwise(Layer):
    """An op y = f(x) from ops.activations: forward, backward and their tangents; the tangent
    cache is y_dot (what the backward's tangent needs for curved f: tanh, sigmoid)."""
    _fwd = _bwd = _jvp = _bjvp = None

    def apply(self, params, state, x, train, rng):
        return type(self)._fwd(x)

    def apply_backward(self, params, dy, cache, param_grads):
        return type(self)._bwd(dy, cache), {}

    def apply_jvp(self, params, params_dot, x_dot, cache):
        y_dot = type(self)._jvp(x_dot, cache)
        return y_dot, y_dot

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, y_dot, param_grads=True, input_grad=True):
        return type(self)._bjvp(dy, dy_dot, cache, y_dot), {}


class ReLU(_Elementwise):
    """y = max(x, 0)"""
    _fwd, _bwd, _jvp, _bjvp = act.relu_forward, act.relu_backward, act.relu_jvp, act.relu_backward_jvp


class Tanh(_Elementwise):
    """y = tanh(x)"""
    _fwd, _bwd, _jvp, _bjvp = act.tanh_forward, act.tanh_backward, act.tanh_jvp, act.tanh_backward_jvp


class Sigmoid(_Elementwise):
    """y = 1 / (1 + e^-x)"""
    _fwd, _bwd, _jvp, _bjvp = act.sigmoid_forward, act.sigmoid_backward, act.sigmoid_jvp, act.sigmoid_backward_jvp


class LeakyReLU(_Elementwise):
    """y = x if x > 0 else negative_slope * x"""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def _repr_args(self):
        return [str(self.negative_slope)]

    _bwd, _jvp, _bjvp = act.leaky_relu_backward, act.leaky_relu_jvp, act.leaky_relu_backward_jvp

    def apply(self, params, state, x, train, rng):
        return act.leaky_relu_forward(x, self.negative_slope)
