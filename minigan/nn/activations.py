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


class _Elementwise(Layer):
    _fwd = _bwd = None

    def apply(self, params, state, x, train, rng):
        return type(self)._fwd(x)

    def apply_backward(self, params, dy, cache, param_grads):
        return type(self)._bwd(dy, cache), {}


class ReLU(_Elementwise):
    """y = max(x, 0)"""
    _fwd, _bwd = act.relu_forward, act.relu_backward


class Tanh(_Elementwise):
    """y = tanh(x)"""
    _fwd, _bwd = act.tanh_forward, act.tanh_backward


class Sigmoid(_Elementwise):
    """y = 1 / (1 + e^-x)"""
    _fwd, _bwd = act.sigmoid_forward, act.sigmoid_backward


class LeakyReLU(Layer):
    """y = x if x > 0 else negative_slope * x"""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def _repr_args(self):
        return [str(self.negative_slope)]

    def apply(self, params, state, x, train, rng):
        return act.leaky_relu_forward(x, self.negative_slope)

    def apply_backward(self, params, dy, cache, param_grads):
        return act.leaky_relu_backward(dy, cache), {}
