"""Shape and resampling layers: Flatten, Reshape, Upsample, AvgPool2d.  Math: ``minigan.ops.pool``."""
import numpy as np

from ..ops import pool as pool_ops
from .base import Layer, LayerInputError, _check_input, _pair


class Flatten(Layer):
    """Merges axes start_dim..end_dim (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def apply(self, params, state, x, train, rng):
        s, e = self.start_dim % max(x.ndim, 1), self.end_dim % max(x.ndim, 1)
        if x.ndim < 1 or s > e:
            raise LayerInputError(self, f"cannot flatten axes {self.start_dim}..{self.end_dim} of shape {tuple(x.shape)}")
        shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
        return x.reshape(shape), x.shape

    def apply_backward(self, params, dy, in_shape, param_grads):
        return dy.reshape(in_shape), {}

    def apply_jvp(self, params, params_dot, x_dot, in_shape):
        """Linear: y_dot = flatten(x_dot)."""
        return (None if x_dot is None else self.apply(params, {}, x_dot, False, None)[0]), None

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, in_shape, tcache, param_grads=True, input_grad=True):
        return (None if dy_dot is None else dy_dot.reshape(in_shape)), {}


class Reshape(Layer):
    """x (N, ...) -> (N, *shape); ``shape`` excludes the batch axis (one entry may be -1)."""

    def __init__(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape or any(not isinstance(s, (int, np.integer)) or (s < 1 and s != -1) for s in shape) \
                or sum(s == -1 for s in shape) > 1:
            raise ValueError(f"Reshape needs positive ints (at most one -1), got {shape!r}")
        self.shape = tuple(int(s) for s in shape)

    def _repr_args(self):
        return [str(s) for s in self.shape]

    def apply(self, params, state, x, train, rng):
        per_sample = int(np.prod(x.shape[1:])) if x.ndim else 0
        known = int(np.prod([s for s in self.shape if s != -1]))
        if x.ndim < 1 or (per_sample != known if -1 not in self.shape else per_sample % known):
            raise LayerInputError(self, f"cannot reshape {tuple(x.shape)} to (N, {', '.join(map(str, self.shape))})")
        return x.reshape((x.shape[0],) + self.shape), x.shape

    def apply_backward(self, params, dy, in_shape, param_grads):
        return dy.reshape(in_shape), {}

    apply_jvp, apply_backward_jvp = Flatten.apply_jvp, Flatten.apply_backward_jvp


class Upsample(Layer):
    """Nearest-neighbour upsampling by an integer ``scale_factor`` (int or pair)."""

    def __init__(self, scale_factor=2, mode="nearest"):
        if mode != "nearest":
            raise ValueError(f"Upsample supports mode='nearest' only, got {mode!r}")
        pair = (scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor)
        if len(pair) != 2 or any(float(s) != int(s) or int(s) < 1 for s in pair):
            raise ValueError(f"Upsample scale_factor must be a positive integer or a pair of them, got {scale_factor!r}")
        self.scale_factor = (int(pair[0]), int(pair[1]))
        self.mode = mode

    def _repr_args(self):
        return [f"scale_factor={self.scale_factor}"]

    def apply(self, params, state, x, train, rng):
        _check_input(self, x, (4,), layout="(N, C, H, W)")
        return pool_ops.upsample_nearest_forward(x, self.scale_factor)

    def apply_backward(self, params, dy, cache, param_grads):
        return pool_ops.upsample_nearest_backward(dy, cache), {}

    def apply_jvp(self, params, params_dot, x_dot, cache):
        return pool_ops.upsample_nearest_jvp(x_dot, self.scale_factor), None

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        return pool_ops.upsample_nearest_backward_jvp(dy_dot, cache), {}


class AvgPool2d(Layer):
    """Average over KHxKW windows (ceil_mode=False)."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        self.kernel_size = _pair(kernel_size, "AvgPool2d kernel_size", allow_zero=False)
        self.stride = self.kernel_size if stride is None else _pair(stride, "AvgPool2d stride", allow_zero=False)
        self.padding = _pair(padding, "AvgPool2d padding")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"AvgPool2d: padding {self.padding} must be at most half of kernel_size {self.kernel_size}")
        self.count_include_pad = bool(count_include_pad)

    def _repr_args(self):
        return [f"kernel_size={self.kernel_size}", f"stride={self.stride}", f"padding={self.padding}"]

    def apply(self, params, state, x, train, rng):
        _check_input(self, x, (4,), layout="(N, C, H, W)")
        h, w = x.shape[2:]
        if any(s + 2 * p < k for s, p, k in zip((h, w), self.padding, self.kernel_size)):
            raise LayerInputError(self, f"input of spatial size {(h, w)} is smaller than the kernel {self.kernel_size}")
        return pool_ops.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def apply_backward(self, params, dy, cache, param_grads):
        return pool_ops.avg_pool2d_backward(dy, cache), {}

    def apply_jvp(self, params, params_dot, x_dot, cache):
        return pool_ops.avg_pool2d_jvp(x_dot, self.kernel_size, self.stride, self.padding, self.count_include_pad), None

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        return pool_ops.avg_pool2d_backward_jvp(dy_dot, cache), {}
