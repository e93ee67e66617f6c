"""Affine layers: Linear, Conv2d, ConvTranspose2d.  Math: ``minigan.ops.linear`` / ``minigan.ops.conv``."""
import math

import numpy as np

from ..backend import get_xp
from ..ops import check_dout
from ..ops import conv as conv_ops
from ..ops.embedding import embedding_backward, embedding_backward_jvp, embedding_forward, embedding_jvp
from ..ops.linear import linear_backward, linear_backward_jvp, linear_forward, linear_jvp
from .base import Layer, LayerInputError, _check_input, _grads, _pair, _positive_int, _uniform


class Linear(Layer):
    """y = x W^T + b over the last axis.  W (out_features, in_features), b (out_features,)."""
    skips_input_grad = True

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

    def apply_jvp(self, params, params_dot, x_dot, cache):
        """-> (y_dot, x_dot as (N, in_features)); math in ops.linear.linear_jvp."""
        cache, lead = cache
        x_dot = None if x_dot is None else x_dot.reshape(-1, self.in_features)
        y_dot = linear_jvp(x_dot, params_dot.get("weight"), params_dot.get("bias"), cache)
        return (None if y_dot is None else y_dot.reshape(lead + (self.out_features,))), x_dot

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, x_dot, param_grads=True, input_grad=True):
        cache, lead = cache
        rows = (lambda a: None if a is None else a.reshape(-1, self.out_features))
        dx, dw, db = linear_backward_jvp(rows(dy), rows(dy_dot), x_dot, params_dot.get("weight"), cache,
                                         param_grads, input_grad)
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


class _ConvMath(Layer):
    """The backward and the tangents of a convolution layer, naming the op's results: the ops
    (``_bwd``, ``_jvp``, ``_bjvp`` from minigan.ops.conv) are set by each subclass.  The tangent
    cache is x_dot (the backward's tangent needs it for dW_dot)."""
    _bwd = _jvp = _bjvp = None
    skips_input_grad = True

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        dx, dw, db = type(self)._bwd(dy, cache, param_grads, input_grad)
        return dx, _grads(weight=dw, bias=db)

    def apply_jvp(self, params, params_dot, x_dot, cache):
        return type(self)._jvp(x_dot, params_dot.get("weight"), params_dot.get("bias"), cache), x_dot

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, x_dot, param_grads=True, input_grad=True):
        dx, dw, db = type(self)._bjvp(dy, dy_dot, x_dot, params_dot.get("weight"), cache, param_grads, input_grad)
        return dx, _grads(weight=dw, bias=db)


class Conv2d(_ConvMath):
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

    _bwd, _jvp, _bjvp = conv_ops.conv2d_backward, conv_ops.conv2d_jvp, conv_ops.conv2d_backward_jvp


class ConvTranspose2d(_ConvMath):
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

    _bwd, _jvp, _bjvp = (conv_ops.conv_transpose2d_backward, conv_ops.conv_transpose2d_jvp,
                         conv_ops.conv_transpose2d_backward_jvp)


# ---------------------------------------------------------------- spectral normalisation

def _l2_normalize(a, eps):
    """a / max(||a||, eps)   (torch.nn.functional.normalize)"""
    return a / max(float((a * a).sum()) ** 0.5, eps)


class SpectralNorm(Layer):
    """W_sn = W / sigma(W) for the wrapped Linear, Conv2d or ConvTranspose2d, with the semantics of
    ``torch.nn.utils.spectral_norm`` (Miyato et al. 2018):

    W_mat = W with axis ``dim`` first, flattened to (h, w) (dim 0; 1 for ConvTranspose2d);
    train: n_power_iterations of  v <- normalize(W_mat^T u),  u <- normalize(W_mat v)  (state, in place);
    sigma = u^T W_mat v (train and eval), then the wrapped layer runs with W_sn.
    u and v are constants of the backward (as torch computes them under no_grad):
        dW = (G - <G, W_sn> u v^T) / sigma,   G = dL/dW_sn
    and of the tangents:
        sigma_dot = u^T W_dot v,   W_sn_dot = (W_dot - sigma_dot W_sn) / sigma
        dW_dot = (G_dot - (<G_dot, W_sn> + <G, W_sn_dot>) u v^T) / sigma - dW sigma_dot / sigma
    Parameters ``weight_orig`` (and the layer's ``bias``), state ``weight_u`` (h,) and ``weight_v`` (w,),
    in torch's order, so torch's state_dict of ``spectral_norm(layer)`` loads as it is."""
    skips_input_grad = True

    def __init__(self, layer, n_power_iterations=1, eps=1e-12, dim=None):
        if not isinstance(layer, (Linear, Conv2d, ConvTranspose2d)):
            raise TypeError(f"SpectralNorm wraps a layer with a weight (Linear, Conv2d or ConvTranspose2d), "
                            f"got {layer!r}")
        self.layer = layer
        self.n_power_iterations = _positive_int(n_power_iterations, "SpectralNorm n_power_iterations")
        if not eps > 0:
            raise ValueError(f"SpectralNorm: eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self.dim = (1 if isinstance(layer, ConvTranspose2d) else 0) if dim is None else int(dim)
        if self.dim not in (0, 1):
            raise ValueError(f"SpectralNorm: dim must be 0 or 1, got {dim!r}")

    def __repr__(self):
        return f"SpectralNorm({self.layer!r}, n_power_iterations={self.n_power_iterations}, dim={self.dim})"

    def init(self, rng, dtype, scheme="torch"):
        p, _ = self.layer.init(rng, dtype, scheme)
        w = p["weight"]
        h = w.shape[self.dim]
        u = _l2_normalize(rng.normal(size=h), self.eps).astype(dtype)
        v = _l2_normalize(rng.normal(size=w.size // h), self.eps).astype(dtype)
        params = ({"bias": p["bias"]} if "bias" in p else {}) | {"weight_orig": w}
        return params, {"weight_u": u, "weight_v": v}

    def _matrix(self, w):
        """W (torch layout) -> W_mat (h, w): a view for dim 0 (a copy for dim 1)."""
        return get_xp(w).moveaxis(w, self.dim, 0).reshape(w.shape[self.dim], -1)

    def _from_matrix(self, m, shape):
        """The inverse of ``_matrix``: (h, w) -> an array of the weight's shape."""
        moved = (shape[self.dim],) + tuple(s for i, s in enumerate(shape) if i != self.dim)
        return get_xp(m).ascontiguousarray(get_xp(m).moveaxis(m.reshape(moved), 0, self.dim))

    def _inner(self, params, weight):
        return {"weight": weight} | ({"bias": params["bias"]} if "bias" in params else {})

    def apply(self, params, state, x, train, rng):
        w, u, v = params["weight_orig"], state["weight_u"], state["weight_v"]
        wm = self._matrix(w)
        if train:
            for _ in range(self.n_power_iterations):
                v[...] = _l2_normalize(wm.T @ u, self.eps)
                u[...] = _l2_normalize(wm @ v, self.eps)
        u, v = u.copy(), v.copy()                  # this forward's u, v (a later forward updates the state)
        sigma = u @ (wm @ v)
        w_sn = w / sigma
        y, cache = self.layer.apply(self._inner(params, w_sn), {}, x, train, rng)
        return y, (cache, u, v, sigma, w_sn)

    def _weight_grad(self, g, u, v, sigma, w_sn):
        """(G - <G, W_sn> u v^T) / sigma"""
        uv = self._from_matrix(get_xp(u).outer(u, v), w_sn.shape)
        return (g - (g * w_sn).sum() * uv) / sigma, uv

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        cache, u, v, sigma, w_sn = cache
        dx, g = self.layer.apply_backward(self._inner(params, w_sn), dy, cache, param_grads, input_grad)
        if not param_grads:
            return dx, {}
        dw, _ = self._weight_grad(g.pop("weight"), u, v, sigma, w_sn)
        return dx, g | {"weight_orig": dw}

    def apply_jvp(self, params, params_dot, x_dot, cache):
        cache, u, v, sigma, w_sn = cache
        w_dot = params_dot.get("weight_orig")
        w_sn_dot = sigma_dot = None
        if w_dot is not None:
            sigma_dot = u @ (self._matrix(w_dot) @ v)
            w_sn_dot = (w_dot - sigma_dot * w_sn) / sigma
        inner_dot = {k: a for k, a in (("weight", w_sn_dot), ("bias", params_dot.get("bias"))) if a is not None}
        y_dot, tcache = self.layer.apply_jvp(self._inner(params, w_sn), inner_dot, x_dot, cache)
        return y_dot, (tcache, inner_dot, sigma_dot)

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        cache, u, v, sigma, w_sn = cache
        tcache, inner_dot, sigma_dot = tcache
        inner = self._inner(params, w_sn)
        dx_dot, g_dot = self.layer.apply_backward_jvp(inner, inner_dot, dy, dy_dot, cache, tcache, param_grads,
                                                      input_grad)
        if not param_grads:
            return dx_dot, {}
        _, g = self.layer.apply_backward(inner, dy, cache, True, input_grad=False)     # G = dL/dW_sn
        dw, uv = self._weight_grad(g["weight"], u, v, sigma, w_sn)
        gd, w_sn_dot = g_dot.pop("weight", None), inner_dot.get("weight")
        c_dot = (0 if gd is None else (gd * w_sn).sum()) + (0 if w_sn_dot is None else (g["weight"] * w_sn_dot).sum())
        dw_dot = ((0 if gd is None else gd) - c_dot * uv) / sigma
        if sigma_dot is not None:
            dw_dot = dw_dot - dw * (sigma_dot / sigma)
        return dx_dot, g_dot | {"weight_orig": dw_dot}


# ---------------------------------------------------------------- embeddings

class Embedding(Layer):
    """y = W[idx]: integer indices (N, ...) in [0, num_embeddings) -> vectors (N, ..., embedding_dim).
    W (num_embeddings, embedding_dim) ~ N(0, 1) as torch.nn.Embedding.  As the first layer of a
    Sequential it takes the integer input (the index has no gradient: dx is None)."""
    takes_indices = True
    skips_input_grad = True

    def __init__(self, num_embeddings, embedding_dim):
        self.num_embeddings = _positive_int(num_embeddings, "Embedding num_embeddings")
        self.embedding_dim = _positive_int(embedding_dim, "Embedding embedding_dim")

    def _repr_args(self):
        return [str(self.num_embeddings), str(self.embedding_dim)]

    def init(self, rng, dtype, scheme="torch"):
        return {"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)}, {}

    def apply(self, params, state, x, train, rng):
        if x.dtype.kind not in "iu":
            raise LayerInputError(self, f"expected integer indices, got dtype {x.dtype}")
        if x.size and (int(x.min()) < 0 or int(x.max()) >= self.num_embeddings):
            raise LayerInputError(self, f"indices must lie in [0, {self.num_embeddings}), got "
                                        f"[{int(x.min())}, {int(x.max())}]")
        return embedding_forward(x, params["weight"])

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        return None, ({"weight": embedding_backward(dy, cache)} if param_grads else {})

    def apply_jvp(self, params, params_dot, x_dot, cache):
        return embedding_jvp(params_dot.get("weight"), cache), None

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        return None, (_grads(weight=embedding_backward_jvp(dy_dot, cache)) if param_grads else {})
