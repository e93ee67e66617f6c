"""Affine layers: Linear, Conv2d, ConvTranspose2d.  Math: ``minigan.ops.linear`` / ``minigan.ops.conv``."""
import math

import numpy as np

from ..ops import check_dout
from ..ops import conv as conv_ops
from ..ops.linear import linear_backward, linear_forward
from .base import Layer, LayerInputError, _check_input, _grads, _pair, _positive_int, _uniform


class Linear(Layer):
    """y = x W^T + b over the last axis.  W (out_features, in_features), b (out_features,)."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = _positive_int(in_features, "Linear in_features")
        self.out_features = _positive_int(out_features, "Linear out_features")
        self.bias = bool(bias)

    def _repr_args(self):
        return [str(self.in_features), str(self.out_features)] + ([] if self.bias else ["bias=False"])

    def init(self, rng, dtype, scheme="torch"):
        shape, fan_in = (self.out_features, self.in_features), self.in_features
        p = _init_affine(rng, shape, fan_in, self.out_features, self.bias, dtype, scheme)
        return p, {}

    def apply(self, params, state, x, train, rng):
        _check_input(self, x, range(2, 33), dtype=params["weight"].dtype, layout="(N, ..., in_features)")
        if x.shape[-1] != self.in_features:
            raise LayerInputError(self, f"expected last axis of size {self.in_features}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        y, cache = linear_forward(x.reshape(-1, self.in_features), params["weight"], params.get("bias"))
        return y.reshape(lead + (self.out_features,)), (cache, lead)

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        cache, lead = cache
        check_dout("Linear backward", dy, lead + (self.out_features,))
        dx, dw, db = linear_backward(dy.reshape(-1, self.out_features), cache, param_grads, input_grad)
        return None if dx is None else dx.reshape(lead + (self.in_features,)), _grads(weight=dw, bias=db)


def _init_affine(rng, w_shape, fan_in, n_bias, bias, dtype, scheme):
    """torch default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a = sqrt 5);
    "dcgan" (Radford et al. 2016): W ~ N(0, 0.02), b = 0."""
    if scheme == "dcgan":
        p = {"weight": rng.normal(0.0, 0.02, size=w_shape).astype(dtype)}
        if bias:
            p["bias"] = np.zeros(n_bias, dtype)
        return p
    bound = 1 / math.sqrt(fan_in)
    p = {"weight": _uniform(rng, w_shape, bound, dtype)}
    if bias:
        p["bias"] = _uniform(rng, (n_bias,), bound, dtype)
    return p


def _conv_padding(padding, kernel, stride, dilation, layer_name):
    """int / pair / 'valid' / 'same' -> ((top, bottom), (left, right)).  'same' puts the odd
    extra pixel at the bottom/right, as torch does, and needs stride 1."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{layer_name}: padding='same' needs stride 1, got stride {stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ValueError(f"{layer_name}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding, f"{layer_name} padding")
    return ((ph, ph), (pw, pw))


class Conv2d(Layer):
    """2-D cross-correlation over NCHW input.  W (out_channels, in_channels, KH, KW), b (out_channels,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        self.in_channels = _positive_int(in_channels, "Conv2d in_channels")
        self.out_channels = _positive_int(out_channels, "Conv2d out_channels")
        self.kernel_size = _pair(kernel_size, "Conv2d kernel_size", allow_zero=False)
        self.stride = _pair(stride, "Conv2d stride", allow_zero=False)
        self.dilation = _pair(dilation, "Conv2d dilation", allow_zero=False)
        self.padding = padding if isinstance(padding, str) else _pair(padding, "Conv2d padding")
        self.pads = _conv_padding(padding, self.kernel_size, self.stride, self.dilation, "Conv2d")
        self.bias = bool(bias)

    def _repr_args(self):
        a = [str(self.in_channels), str(self.out_channels), f"kernel_size={self.kernel_size}", f"stride={self.stride}"]
        if self.padding not in ((0, 0), "valid"):
            a.append(f"padding={self.padding!r}")
        if self.dilation != (1, 1):
            a.append(f"dilation={self.dilation}")
        return a + ([] if self.bias else ["bias=False"])

    def init(self, rng, dtype, scheme="torch"):
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        return _init_affine(rng, shape, self.in_channels * kh * kw, self.out_channels, self.bias, dtype, scheme), {}

    def output_hw(self, h, w):
        return tuple(conv_ops.conv_out_size(s, k, st, lo, hi, d) for s, k, st, (lo, hi), d
                     in zip((h, w), self.kernel_size, self.stride, self.pads, self.dilation))

    def apply(self, params, state, x, train, rng):
        _check_input(self, x, (4,), self.in_channels, params["weight"].dtype, "(N, C, H, W)")
        oh, ow = self.output_hw(*x.shape[2:])
        if oh < 1 or ow < 1:
            span = tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size))
            padded = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], self.pads))
            raise LayerInputError(self, f"input of spatial size {tuple(x.shape[2:])} is too small: the (dilated) "
                                        f"kernel spans {span} but the padded input is only {padded}")
        return conv_ops.conv2d_forward(x, params["weight"], params.get("bias"), self.stride, self.pads, self.dilation)

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        dx, dw, db = conv_ops.conv2d_backward(dy, cache, param_grads, input_grad)
        return dx, _grads(weight=dw, bias=db)


class ConvTranspose2d(Layer):
    """Transposed 2-D convolution (the input-gradient of Conv2d).  W (in_channels, out_channels, KH, KW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True, dilation=1):
        self.in_channels = _positive_int(in_channels, "ConvTranspose2d in_channels")
        self.out_channels = _positive_int(out_channels, "ConvTranspose2d out_channels")
        self.kernel_size = _pair(kernel_size, "ConvTranspose2d kernel_size", allow_zero=False)
        self.stride = _pair(stride, "ConvTranspose2d stride", allow_zero=False)
        self.padding = _pair(padding, "ConvTranspose2d padding")
        self.output_padding = _pair(output_padding, "ConvTranspose2d output_padding")
        self.dilation = _pair(dilation, "ConvTranspose2d dilation", allow_zero=False)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than "
                                 f"either stride {self.stride} or dilation {self.dilation} on each axis")
        self.bias = bool(bias)

    def _repr_args(self):
        a = [str(self.in_channels), str(self.out_channels), f"kernel_size={self.kernel_size}",
             f"stride={self.stride}"]
        for name in ("padding", "output_padding"):
            if getattr(self, name) != (0, 0):
                a.append(f"{name}={getattr(self, name)}")
        if self.dilation != (1, 1):
            a.append(f"dilation={self.dilation}")
        return a + ([] if self.bias else ["bias=False"])

    def init(self, rng, dtype, scheme="torch"):
        kh, kw = self.kernel_size
        shape = (self.in_channels, self.out_channels, kh, kw)
        # torch computes fan_in from weight.shape[1] * KH * KW, i.e. out_channels for this layout
        return _init_affine(rng, shape, self.out_channels * kh * kw, self.out_channels, self.bias, dtype, scheme), {}

    def output_hw(self, h, w):
        return tuple(conv_ops.conv_transpose_out_size(s, k, st, p, d, op) for s, k, st, p, d, op
                     in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding))

    def apply(self, params, state, x, train, rng):
        _check_input(self, x, (4,), self.in_channels, params["weight"].dtype, "(N, C, H, W)")
        oh, ow = self.output_hw(*x.shape[2:])
        if oh < 1 or ow < 1:
            raise LayerInputError(self, f"input of spatial size {tuple(x.shape[2:])} gives an output of "
                                        f"{oh}x{ow}: the padding is too large")
        return conv_ops.conv_transpose2d_forward(x, params["weight"], params.get("bias"), self.stride,
                                                 self.padding, self.dilation, self.output_padding)

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        dx, dw, db = conv_ops.conv_transpose2d_backward(dy, cache, param_grads, input_grad)
        return dx, _grads(weight=dw, bias=db)
