"""Layers (hyperparameters only) and ``Sequential`` (the arrays: parameters and state).

A layer is anything with three methods (duck-typed, no registry):
    init(rng, dtype, scheme)                      -> (params, state)   nested dicts of numpy arrays
    apply(params, state, x, train, rng)           -> (y, cache)        state (BN stats) updated in place
    apply_backward(params, dy, cache, param_grads) -> (dx, grads)      grads nested like params
Linear, Conv2d, ConvTranspose2d and Sequential also take ``input_grad=False`` (dx None, its work skipped).
The math lives in ``minigan.ops``; a layer checks its input, calls the op and names the gradients.
Parameter names, layouts, defaults and initialisation follow PyTorch.
"""
import math
from typing import NamedTuple

import numpy as np

from .backend import get_backend, get_xp, is_cupy_array, to_backend
from .ops import activations as act
from .ops import check_dout
from .ops import conv as conv_ops
from .ops import norm as norm_ops
from .ops import pool as pool_ops
from .ops.linear import linear_backward, linear_forward

INIT_SCHEMES = ("torch", "dcgan")


class LayerInputError(ValueError, TypeError):
    """Bad input to a layer: names the layer (and its path in the net), what it got, what it expected."""

    def __init__(self, layer, message, path=()):
        self.layer, self.message, self.path = layer, message, tuple(path)
        where = f"layer {'.'.join(self.path)} " if self.path else ""
        super().__init__(f"{where}{layer!r}: {message}")

    def at(self, name):
        """The same error one level further out, its path prefixed with ``name``."""
        return LayerInputError(self.layer, self.message, (str(name),) + self.path)


class StateDictError(KeyError, ValueError):
    """A state dict that does not fit the network (missing/unexpected keys, wrong shapes)."""

    def __str__(self):
        return str(self.args[0])


# ---------------------------------------------------------------- helpers

def _pair(value, what, allow_zero=True):
    """An int or a pair of ints -> (a, b), validated."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    lo = 0 if allow_zero else 1
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= lo for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints >= {lo}, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _positive_int(value, what):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _grads(**named):
    """Keep the gradients that were computed (drop None)."""
    return {k: v for k, v in named.items() if v is not None}


def _check_input(layer, x, ndim, channels=None, dtype=None, layout=""):
    """Rank, channel count (axis 1) and dtype checks shared by the layers."""
    shape = tuple(x.shape)
    if x.ndim not in ndim:
        want = f"an input of at least {ndim.start} dimensions" if isinstance(ndim, range) else \
            f"a {' or '.join(f'{n}-d' for n in ndim)} input"
        raise LayerInputError(layer, f"expected {want} {layout}, got shape {shape}")
    if channels is not None and shape[1] != channels:
        raise LayerInputError(layer, f"expected {channels} channels (axis 1) {layout}, got shape {shape}")
    if dtype is not None and x.dtype != dtype:
        raise LayerInputError(layer, f"expected dtype {dtype}, got {x.dtype} (convert the input, or "
                                     f"build the network with dtype={x.dtype})")


def _uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Layer:
    """Base for the built-in layers: no parameters, no state."""

    def init(self, rng, dtype, scheme="torch"):
        return {}, {}

    def __repr__(self):
        args = ", ".join(self._repr_args())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return []


# ---------------------------------------------------------------- affine layers

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


# ---------------------------------------------------------------- normalisation

class _BatchNorm(Layer):
    _ndims = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        self.num_features = _positive_int(num_features, f"{type(self).__name__} num_features")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps!r}")
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)

    def _repr_args(self):
        a = [str(self.num_features)]
        if self.eps != 1e-5:
            a.append(f"eps={self.eps}")
        if self.momentum != 0.1:
            a.append(f"momentum={self.momentum}")
        return a + ([] if self.affine else ["affine=False"]) + ([] if self.track_running_stats else ["track_running_stats=False"])

    def init(self, rng, dtype, scheme="torch"):
        c = self.num_features
        params = {}
        if self.affine:
            # torch: gamma = 1, beta = 0;  dcgan: gamma ~ N(1, 0.02), beta = 0
            gamma = rng.normal(1.0, 0.02, size=c).astype(dtype) if scheme == "dcgan" else np.ones(c, dtype)
            params = {"weight": gamma, "bias": np.zeros(c, dtype)}
        state = {}
        if self.track_running_stats:
            state = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype),
                     "num_batches_tracked": np.zeros((), np.int64)}
        return params, state

    def apply(self, params, state, x, train, rng):
        dtype = params["weight"].dtype if self.affine else (state["running_mean"].dtype if state else None)
        _check_input(self, x, self._ndims, self.num_features, dtype, self._layout)
        use_batch = train or not self.track_running_stats
        if use_batch and x.size // x.shape[1] < 2:
            raise LayerInputError(self, f"expected more than 1 value per channel when training, got shape {tuple(x.shape)}")
        momentum = self.momentum
        update = train and self.track_running_stats
        if update:
            state["num_batches_tracked"] += 1
            if momentum is None:        # cumulative moving average, as torch
                momentum = 1.0 / int(state["num_batches_tracked"])
        return norm_ops.batch_norm_forward(
            x, params.get("weight"), params.get("bias"),
            state.get("running_mean") if update or not use_batch else None,
            state.get("running_var") if update or not use_batch else None,
            use_batch, momentum, self.eps)

    def apply_backward(self, params, dy, cache, param_grads):
        dx, dw, db = norm_ops.batch_norm_backward(dy, cache, param_grads)
        return dx, _grads(weight=dw, bias=db)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) input; statistics per channel C."""
    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) input; statistics per channel C."""
    _ndims = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Layer):
    """Normalises each sample over its trailing ``normalized_shape`` axes; gamma/beta have that shape."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        self.normalized_shape = tuple(_positive_int(s, "LayerNorm normalized_shape") for s in shape)
        if not shape:
            raise ValueError("LayerNorm normalized_shape must not be empty")
        self.eps, self.elementwise_affine, self.bias = float(eps), bool(elementwise_affine), bool(bias)

    def _repr_args(self):
        return [str(self.normalized_shape)] + ([f"eps={self.eps}"] if self.eps != 1e-5 else [])

    def init(self, rng, dtype, scheme="torch"):
        if not self.elementwise_affine:
            return {}, {}
        p = {"weight": np.ones(self.normalized_shape, dtype)}
        if self.bias:
            p["bias"] = np.zeros(self.normalized_shape, dtype)
        return p, {}

    def apply(self, params, state, x, train, rng):
        k = len(self.normalized_shape)
        w = params.get("weight")
        _check_input(self, x, range(k + 1, 33), dtype=None if w is None else w.dtype, layout=f"(N, ..., {self.normalized_shape})")
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise LayerInputError(self, f"expected trailing axes {self.normalized_shape}, got shape {tuple(x.shape)}")
        return norm_ops.layer_norm_forward(x, w, params.get("bias"), k, self.eps)

    def apply_backward(self, params, dy, cache, param_grads):
        dx, dw, db = norm_ops.layer_norm_backward(dy, cache, param_grads)
        return dx, _grads(weight=dw, bias=db)


# ---------------------------------------------------------------- elementwise

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


# ---------------------------------------------------------------- shape

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


# ---------------------------------------------------------------- containers

class Residual(Layer):
    """y = body(x) + shortcut(x); shortcut None is the identity.  Parameters are named
    ``body.<...>`` and ``shortcut.<...>`` (e.g. "3.body.0.weight").   dx = dbody + dshortcut."""

    def __init__(self, body, shortcut=None):
        self.body = body if not isinstance(body, (list, tuple)) else Sequential(*body, _init=False)
        self.shortcut = shortcut if not isinstance(shortcut, (list, tuple)) else Sequential(*shortcut, _init=False)
        for name, part in (("body", self.body), ("shortcut", self.shortcut)):
            if part is not None and not _is_layer(part):
                raise TypeError(f"Residual {name} must be a layer (init/apply/apply_backward), got {part!r}")

    def __repr__(self):
        return f"Residual(body={self.body!r}, shortcut={self.shortcut!r})"

    def init(self, rng, dtype, scheme="torch"):
        pb, sb = self.body.init(rng, dtype, scheme)
        params, state = {"body": pb}, {"body": sb}
        if self.shortcut is not None:
            params["shortcut"], state["shortcut"] = self.shortcut.init(rng, dtype, scheme)
        return params, state

    def apply(self, params, state, x, train, rng):
        try:
            yb, cb = self.body.apply(params["body"], state["body"], x, train, rng)
        except LayerInputError as e:
            raise e.at("body") from None
        if self.shortcut is None:
            ys, cs = x, None
        else:
            try:
                ys, cs = self.shortcut.apply(params["shortcut"], state["shortcut"], x, train, rng)
            except LayerInputError as e:
                raise e.at("shortcut") from None
        if yb.shape != ys.shape:
            raise LayerInputError(self, f"body output {tuple(yb.shape)} and shortcut output {tuple(ys.shape)} differ")
        return yb + ys, (cb, cs)

    def apply_backward(self, params, dy, cache, param_grads):
        cb, cs = cache
        dxb, gb = self.body.apply_backward(params["body"], dy, cb, param_grads)
        grads = {"body": gb} if param_grads else {}
        if self.shortcut is None:
            return dxb + dy, grads
        dxs, gs = self.shortcut.apply_backward(params["shortcut"], dy, cs, param_grads)
        if param_grads:
            grads["shortcut"] = gs
        return dxb + dxs, grads


def _is_layer(obj):
    return all(callable(getattr(obj, m, None)) for m in ("init", "apply", "apply_backward"))


def flatten_tree(tree, prefix=""):
    """{"0": {"weight": a}} -> {"0.weight": a}"""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten_tree(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _merge_trees(params, state):
    """One tree holding params then buffers at every level (torch's state_dict order)."""
    out = {}
    for k in list(params) + [k for k in state if k not in params]:
        p, s = params.get(k), state.get(k)
        if isinstance(p, dict) or isinstance(s, dict):
            out[k] = _merge_trees(p or {}, s or {})
        else:
            out[k] = p if p is not None else s
    return out


class Tape(NamedTuple):
    """What a forward pass leaves for its backward: the layers' caches and the output shape."""
    owner: int
    caches: list
    out_shape: tuple


_FREED = object()   # a cache entry released by backward(free_tape=True)


class Sequential(Layer):
    """A chain of layers that owns their arrays.

    net = Sequential(Linear(2, 8), ReLU(), Linear(8, 1), dtype=np.float64, seed=0)
    y, tape = net.forward(x, train=True)
    dx, grads = net.backward(dy, tape)              # grads keyed like net.parameters()
    The arrays live on the backend current at construction; ``net.to("cupy")`` moves them.
    ``init="dcgan"`` draws conv/linear weights from N(0, 0.02) and BN scales from N(1, 0.02).
    A tape references (does not copy) layer inputs and outputs its backward needs: do not modify
    them in place before the backward, and drop the tape after it to free that memory.
    """

    def __init__(self, *layers, dtype=np.float32, seed=None, init="torch", _init=True):
        for i, layer in enumerate(layers):
            if not _is_layer(layer):
                raise TypeError(f"Sequential: argument {i} is not a layer (needs init/apply/apply_backward): {layer!r}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"Sequential: init must be one of {INIT_SCHEMES}, got {init!r}")
        self.layers = list(layers)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"Sequential: dtype must be float32 or float64, got {self.dtype}")
        self.rng = np.random.default_rng(seed)
        self.params, self.state, self._flat = {}, {}, {}
        self.backend = get_backend()
        if _init:
            params, state = self.init(self.rng, self.dtype, init)
            self._set_arrays(to_backend(params, self.backend), to_backend(state, self.backend))

    # ---- the layer protocol (so that Sequentials nest) ----
    def init(self, rng, dtype, scheme="torch"):
        params, state = {}, {}
        for i, layer in enumerate(self.layers):
            params[str(i)], state[str(i)] = layer.init(rng, dtype, scheme)
        return params, state

    def apply(self, params, state, x, train, rng):
        caches = []
        for i, layer in enumerate(self.layers):
            try:
                x, cache = layer.apply(params[str(i)], state[str(i)], x, train, rng)
            except LayerInputError as e:
                raise e.at(i) from None
            caches.append(cache)
        return x, caches

    def apply_backward(self, params, dy, caches, param_grads, input_grad=True, free_caches=False):
        """Layers from last to first.  ``input_grad=False``: the layers before the first one with
        parameters are not run at all, and that one is asked to skip its input gradient when it
        can (Linear, Conv2d, ConvTranspose2d, Sequential; any other layer computes it and it is
        dropped); dx is then None.  ``free_caches``: each entry of ``caches`` is released as soon
        as its layer's backward has run (the list is changed in place)."""
        grads, first = {}, 0
        if not input_grad:
            first = next((i for i in range(len(self.layers)) if flatten_tree(params[str(i)])), len(self.layers))
            if not param_grads:
                first = len(self.layers)
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer, args = self.layers[i], (params[str(i)], dy, caches[i], param_grads)
            if i > first or input_grad:
                dy, g = layer.apply_backward(*args)
            elif isinstance(layer, _SKIPS_INPUT_GRAD):
                dy, g = layer.apply_backward(*args, input_grad=False)
            else:
                dy, g = layer.apply_backward(*args)
                dy = None
            if free_caches:
                caches[i] = _FREED
            if g:
                grads[str(i)] = g
        if free_caches:
            caches[:] = [_FREED] * len(caches)
        return (dy if input_grad else None), grads

    def __repr__(self):
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"

    # ---- the network API ----
    def _set_arrays(self, params, state):
        self.params, self.state = params, state
        self._flat = flatten_tree(params)

    def parameters(self):
        """{name: array}: the live trainable arrays that optimizers update in place."""
        return dict(self._flat)

    def buffers(self):
        """{name: array}: the live non-trainable state (BatchNorm running statistics)."""
        return flatten_tree(self.state)

    def num_parameters(self):
        return int(sum(p.size for p in self._flat.values()))

    def forward(self, x, train=True, rng=None):
        """-> (y, tape).  ``train`` picks batch statistics and active dropout; ``rng`` (a numpy
        Generator) overrides the net's own for dropout masks."""
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"Sequential.forward: expected an array, got {type(x).__name__}")
        if x.dtype != self.dtype:
            raise LayerInputError(self._short(), f"expected input of dtype {self.dtype}, got {x.dtype} "
                                                 f"(shape {tuple(x.shape)})")
        if is_cupy_array(x) != (self.backend == "cupy"):
            get_xp(x, *self._flat.values())   # raises the mixed-backend error when params exist
            raise LayerInputError(self._short(), f"the input lives on {'cupy' if is_cupy_array(x) else 'numpy'} "
                                                 f"but the network on {self.backend}; call net.to(...) or move the input")
        y, caches = self.apply(self.params, self.state, x, train, self.rng if rng is None else rng)
        return y, Tape(id(self), caches, tuple(y.shape))

    def __call__(self, x, train=False):
        """The output alone (eval mode by default): y = net(x)."""
        return self.forward(x, train=train)[0]

    def backward(self, dy, tape, param_grads=True, grads=None, input_grad=True, free_tape=False):
        """-> (dx, grads).  ``param_grads=False`` computes dx only (no weight-gradient work);
        ``input_grad=False`` computes the parameter gradients only and returns dx None (no work for
        the gradient of the input, e.g. of real images or of z; as torch for a tensor without
        requires_grad); ``grads`` (a dict from an earlier backward) is accumulated into in place
        and returned.  ``free_tape=True`` releases each layer's cache as soon as its backward has
        run, which lowers the peak memory (as torch frees its graph during backward unless
        retain_graph); the tape cannot be used again."""
        if not isinstance(tape, Tape) or tape.owner != id(self):
            raise ValueError("Sequential.backward: the tape was not made by this network's forward")
        if any(c is _FREED for c in tape.caches):
            raise ValueError("Sequential.backward: this tape was freed by an earlier backward(free_tape=True); "
                             "run the forward again, or keep the tape with free_tape=False")
        if tuple(dy.shape) != tape.out_shape:
            raise ValueError(f"Sequential.backward: dy has shape {tuple(dy.shape)}, but the forward output "
                             f"had shape {tape.out_shape}")
        if dy.dtype != self.dtype:
            raise TypeError(f"Sequential.backward: dy has dtype {dy.dtype}, but the network computes in "
                            f"{self.dtype}; gradients would silently change precision")
        if not (param_grads or input_grad):
            raise ValueError("Sequential.backward: param_grads=False and input_grad=False leave nothing to compute")
        dx, nested = self.apply_backward(self.params, dy, tape.caches, param_grads, input_grad, free_tape)
        flat = flatten_tree(nested)
        new = {k: flat[k] for k in self._flat if k in flat}      # in parameter order
        if grads is None:
            return dx, new
        for k, g in new.items():
            if k in grads:
                grads[k] += g
            else:
                grads[k] = g
        return dx, grads

    def _short(self):
        return _Named(f"Sequential({len(self.layers)} layers, {self.dtype}, {self.backend})")

    def state_dict(self):
        """{name: copy}: parameters and buffers, in torch's names, order and layouts."""
        return {k: v.copy() for k, v in flatten_tree(_merge_trees(self.params, self.state)).items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays in (cast to the net's dtype, moved to its backend); validates everything
        before writing anything.  Missing ``num_batches_tracked`` is tolerated, as in torch.
        strict=False loads the matching keys and returns (missing, unexpected)."""
        live = flatten_tree(_merge_trees(self.params, self.state))
        src = {k: _to_array(v) for k, v in dict(state_dict).items()}
        missing = [k for k in live if k not in src and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in src if k not in live]
        wrong = [f"{k}: expected shape {tuple(live[k].shape)}, got {tuple(src[k].shape)}"
                 for k in live if k in src and tuple(src[k].shape) != tuple(live[k].shape)]
        problems = ([f"missing keys {missing}"] if missing and strict else []) + \
                   ([f"unexpected keys {unexpected}"] if unexpected and strict else []) + wrong
        if problems:
            raise StateDictError("load_state_dict: " + "; ".join(problems))
        for k, v in src.items():
            if k in live:
                live[k][...] = to_backend(v, self.backend).astype(live[k].dtype, copy=False)
        return missing, unexpected

    def to(self, backend):
        """Move parameters and state to ``"numpy"`` or ``"cupy"`` (in place); returns self."""
        params, state = to_backend(self.params, backend), to_backend(self.state, backend)
        self._set_arrays(params, state)
        self.backend = backend
        return self


class _Named:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _to_array(v):
    """numpy/cupy arrays pass through; torch tensors (duck-typed, no import) become numpy."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        return v.detach().cpu().numpy()
    return v if hasattr(v, "dtype") and hasattr(v, "shape") else np.asarray(v)


# layers whose apply_backward takes input_grad=False (skip the input gradient's work)
_SKIPS_INPUT_GRAD = (Linear, Conv2d, ConvTranspose2d, Sequential)
