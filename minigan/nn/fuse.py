"""Fused layer pairs: two adjacent layers run as one cheaper op with the same math.

The fast twin of a pair of layers, as ops/_numba.py holds the fast twins of ops: ``Sequential``
looks for these pairs when it runs forward, and the layers, their parameters (names, layouts,
state dicts) and their reference math stay as they are.  Which pairs, and why they are equal:

  Upsample(2) -> Conv2d 3x3 (stride 1, padding 1)
      is ConvTranspose2d(k 4, stride 2, padding 1) with Wt = A W A^T on each kernel axis:
      up[2i + a] = x[i], so out[2i] = W0 x[i-1] + (W1 + W2) x[i] and out[2i+1] = (W0 + W1) x[i] + W2 x[i+1],
      and a transposed conv with taps Wt0..Wt3 gives out[2i] = Wt3 x[i-1] + Wt1 x[i],
      out[2i+1] = Wt2 x[i] + Wt0 x[i+1].  4 taps per output pixel instead of 9: 2.25x fewer MACs.
  Conv2d 3x3 (stride 1, padding 1) -> AvgPool2d(2) (stride 2, padding 0)
      is Conv2d(k 4, stride 2, padding 1) with K = B W B^T on each axis:
      out[j] = (y[2j] + y[2j+1]) / 2 = sum_k W_k (x[2j+k-1] + x[2j+k]) / 2, i.e. taps x[2j-1 .. 2j+2]
      weighted W0/2, (W0+W1)/2, (W1+W2)/2, W2/2.  16 MACs per output pixel instead of 36.
  Upsample -> Conv2d 1x1 (stride 1, padding 0)   and   Conv2d 1x1 -> AvgPool2d (padding 0)
      a 1x1 convolution acts on each pixel alone, so it commutes with nearest upsampling and with
      unpadded average pooling (bias included): the conv runs on the smaller image.

Every map is linear in the weight, so the backward and the tangents come from the layers' own:
the weight gradient maps back by the adjoint (dW = A^T dWt A) and a weight tangent maps forward
like the weight.  Results equal the unfused pair up to rounding (sums in another order), not
bit for bit.  Fusion is on for NumPy arrays and off for CuPy until it has run on a GPU;
``set_fusion`` switches it per backend (off: the layers run one by one, the reference).
"""
import contextlib

import numpy as np

from ..backend import get_xp, is_cupy_array
from .affine import Conv2d, ConvTranspose2d
from .base import layer_backward
from .shape import AvgPool2d, Upsample

_ENABLED = {"numpy": True, "cupy": False}     # cupy: owed a device run (session 35)


def set_fusion(numpy=None, cupy=None):
    """Switch fused pairs on or off per backend (None leaves one as it is) -> the settings before the
    call, {"numpy": bool, "cupy": bool} (with no arguments: the current ones)."""
    given = {name: value for name, value in (("numpy", numpy), ("cupy", cupy)) if value is not None}
    for name, value in given.items():
        if not isinstance(value, bool):
            raise TypeError(f"set_fusion: {name} must be True, False or None, got {value!r}")
    before = dict(_ENABLED)
    _ENABLED.update(given)
    return before


@contextlib.contextmanager
def fusion(numpy=None, cupy=None):
    """``with fusion(numpy=False): ...`` runs the block with those settings, then restores them."""
    before = set_fusion(numpy, cupy)
    try:
        yield
    finally:
        _ENABLED.update(before)


# The 1-D maps, taps in kernel order (row p of the fused kernel from taps k of the 3-tap one).
_UP = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))                    # Wt = A W A^T
_POOL = ((.5, 0, 0), (.5, .5, 0), (0, .5, .5), (0, 0, .5))             # K = B W B^T


def _map(m, w):
    """(.., 3, 3) -> (.., 4, 4):  M w M^T on the last two axes, as one product with kron(M, M):
    (M w M^T)[p, q] = sum_{k, l} M[p, k] M[q, l] w[k, l]."""
    xp = get_xp(w)
    mm = xp.asarray(np.kron(m, m), dtype=w.dtype)                      # (16, 9)
    return (w.reshape(-1, 9) @ mm.T).reshape(w.shape[:-2] + (4, 4))


def _unmap(m, g):
    """The adjoint, (.., 4, 4) -> (.., 3, 3):  M^T g M (a gradient of the fused weight -> of the 3x3 one)."""
    xp = get_xp(g)
    mm = xp.asarray(np.kron(m, m), dtype=g.dtype)                      # (16, 9)
    return (xp.ascontiguousarray(g).reshape(-1, 16) @ mm).reshape(g.shape[:-2] + (3, 3))


def _is_conv(layer, k, pads):
    return (type(layer) is Conv2d and layer.kernel_size == (k, k) and layer.stride == (1, 1)
            and layer.pads == pads and (k == 1 or layer.dilation == (1, 1)))


def _is_pool(layer, size=None):
    return (type(layer) is AvgPool2d and layer.padding == (0, 0)
            and (size is None or (layer.kernel_size == layer.stride == (size, size))))


def pair_runner(first, second, x):
    """The fused twin of ``first`` then ``second`` for input ``x``, or None when there is none
    (or fusion is off for x's backend)."""
    if not _ENABLED["cupy" if is_cupy_array(x) else "numpy"]:
        return None
    if type(first) is Upsample:
        if first.scale_factor == (2, 2) and _is_conv(second, 3, ((1, 1), (1, 1))):
            return _UpConv(second)
        if _is_conv(second, 1, ((0, 0), (0, 0))):
            return _Swapped(first, second)
    elif _is_conv(first, 3, ((1, 1), (1, 1))) and _is_pool(second, 2):
        return _ConvPool(first)
    elif _is_conv(first, 1, ((0, 0), (0, 0))) and _is_pool(second):
        return _Swapped(first, second)
    return None


class _Remapped:
    """A 3x3 conv run as another conv layer (``self.as_layer``) whose weight is M W M^T.
    Params and grads are the pair's: (params of the first layer, params of the second)."""
    conv_index = None          # which of the pair holds the conv (0 or 1)
    m = None                   # the 4x3 map
    transpose = False          # the stand-in's weight has the other channel order (ConvTranspose2d)

    def _to(self, w):
        if w is None:
            return None
        w4 = _map(self.m, w)                                           # (C_out, C_in, 4, 4)
        return w4.transpose(1, 0, 2, 3) if self.transpose else w4

    def _back(self, g):
        if g is None:
            return {}
        if "weight" in g:
            g = dict(g, weight=_unmap(self.m, g["weight"].transpose(1, 0, 2, 3) if self.transpose else g["weight"]))
        return g

    def _dots(self, pair):
        """The conv's entry of a pair of params (or of params_dot: None for a zero weight tangent), its
        weight mapped."""
        d = pair[self.conv_index]
        return {**d, "weight": self._to(d.get("weight"))} if d else {}

    def _split(self, g):
        return (self._back(g), {}) if self.conv_index == 0 else ({}, self._back(g))

    def apply(self, params, x, train, rng):
        p4 = self._dots(params)
        y, cache = self.as_layer.apply(p4, {}, x, train, rng)
        return y, (p4, cache)                                          # (the mapped params, for the rest)

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        p4, cache = cache
        dx, g = self.as_layer.apply_backward(p4, dy, cache, param_grads, input_grad)
        return dx, self._split(g)

    def apply_jvp(self, params, params_dot, x_dot, cache):
        p4, cache = cache
        return self.as_layer.apply_jvp(p4, self._dots(params_dot), x_dot, cache)

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        p4, cache = cache
        dx, g = self.as_layer.apply_backward_jvp(p4, self._dots(params_dot), dy, dy_dot, cache, tcache,
                                                 param_grads, input_grad)
        return dx, self._split(g)


class _UpConv(_Remapped):
    """Upsample(2) -> Conv2d 3x3 (pad 1)  =  ConvTranspose2d(k 4, s 2, p 1), Wt[i, o] = A W[o, i] A^T;
    dW[o, i] = A^T dWt[i, o] A;  W_dot maps as W."""
    conv_index, m, transpose = 1, _UP, True

    def __init__(self, conv):
        self.as_layer = ConvTranspose2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1, bias=conv.bias)


class _ConvPool(_Remapped):
    """Conv2d 3x3 (pad 1) -> AvgPool2d(2)  =  Conv2d(k 4, s 2, p 1), K = B W B^T;  dW = B^T dK B;
    W_dot maps as W."""
    conv_index, m = 0, _POOL

    def __init__(self, conv):
        self.as_layer = Conv2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1, bias=conv.bias)


class _Swapped:
    """A 1x1 conv and a parameter-free resampling, written (first, second), run as (second, first):
    the conv runs on the smaller image.  Params, params_dot and grads are in the written order;
    the cache is (second's, first's)."""

    def __init__(self, first, second):
        self.run = (second, first)

    def apply(self, params, x, train, rng):
        (a, b), (pa, pb) = self.run, params[::-1]
        y, ca = a.apply(pa, {}, x, train, rng)
        y, cb = b.apply(pb, {}, y, train, rng)
        return y, (ca, cb)

    def apply_backward(self, params, dy, cache, param_grads, input_grad=True):
        (a, b), (pa, pb), (ca, cb) = self.run, params[::-1], cache
        a_needs = input_grad or bool(pa)                  # a's weight gradient needs its dy too
        dy, gb = layer_backward(b, pb, dy, cb, param_grads, a_needs)
        dx, ga = layer_backward(a, pa, dy, ca, param_grads, input_grad) if a_needs else (None, {})
        return dx, (gb, ga)

    def apply_jvp(self, params, params_dot, x_dot, cache):
        (a, b), (pa, pb), (da, db), (ca, cb) = self.run, params[::-1], params_dot[::-1], cache
        y_dot, ta = a.apply_jvp(pa, da, x_dot, ca)
        y_dot, tb = b.apply_jvp(pb, db, y_dot, cb)
        return y_dot, (ta, tb)

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        (a, b), (pa, pb), (da, db), (ca, cb), (ta, tb) = self.run, params[::-1], params_dot[::-1], cache, tcache
        a_needs = input_grad or bool(pa)
        dy_mid_dot, gb = b.apply_backward_jvp(pb, db, dy, dy_dot, cb, tb, param_grads, a_needs)
        if not a_needs:
            return None, (gb, {})
        dy_mid, _ = b.apply_backward(pb, dy, cb, False)
        dx_dot, ga = a.apply_backward_jvp(pa, da, dy_mid, dy_mid_dot, ca, ta, param_grads, input_grad)
        return dx_dot, (gb, ga)
