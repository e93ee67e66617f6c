"""Normalisation layers: BatchNorm1d/2d, LayerNorm.  Math: ``minigan.ops.norm``."""
import numpy as np

from ..ops import norm as norm_ops
from .base import Layer, LayerInputError, _check_input, _grads, _positive_int


class _NormMath(Layer):
    """The backward and the tangents of a normalisation layer (gamma "weight", beta "bias"): the ops
    (``_bwd``, ``_jvp``, ``_bjvp`` from minigan.ops.norm) are set by each subclass."""
    _bwd = _jvp = _bjvp = None

    def apply_backward(self, params, dy, cache, param_grads):
        dx, dw, db = type(self)._bwd(dy, cache, param_grads)
        return dx, _grads(weight=dw, bias=db)

    def apply_jvp(self, params, params_dot, x_dot, cache):
        return type(self)._jvp(x_dot, params_dot.get("weight"), params_dot.get("bias"), cache)

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        dx, dw, db = type(self)._bjvp(dy, dy_dot, params_dot.get("weight"), cache, tcache, param_grads, input_grad)
        return dx, _grads(weight=dw, bias=db)


class _BatchNorm(_NormMath):
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

    _bwd, _jvp, _bjvp = norm_ops.batch_norm_backward, norm_ops.batch_norm_jvp, norm_ops.batch_norm_backward_jvp


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) input; statistics per channel C."""
    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) input; statistics per channel C."""
    _ndims = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(_NormMath):
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

    _bwd, _jvp, _bjvp = norm_ops.layer_norm_backward, norm_ops.layer_norm_jvp, norm_ops.layer_norm_backward_jvp
