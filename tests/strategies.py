"""Hypothesis strategies: each draws a Case per layer type.

A Case holds the minigan layer(s), the input shape and the torch twin, the latter two built from
the arguments hypothesis drew, never from minigan's parsed attributes (``layer.stride``,
``layer.pads``, ...): a parsing bug in a layer (a stride pair stored reversed, a wrong 'same'
padding) then makes the twin and the layer disagree instead of being copied into the oracle."""
from typing import Callable, NamedTuple

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

from minigan import nn

tnn = torch.nn
small = st.integers(1, 3)


class Case(NamedTuple):
    layers: object          # a minigan layer, or a list of layers
    shape: tuple            # the input shape
    twin: Callable          # () -> the torch module(s) made from the drawn arguments, same parameter names

    def torch_net(self, net):
        """A torch.nn.Sequential of the twin holding ``net``'s current state (net's dtype)."""
        twins = self.twin()
        tnet = tnn.Sequential(*(twins if isinstance(twins, list) else [twins]))
        tnet = tnet.to(torch.float64 if net.dtype == np.float64 else torch.float32)
        tnet.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()}, strict=True)
        return tnet


def _out(size, k, s, lo, hi, d):
    """conv output length, written here again from torch's formula (not minigan's helper)"""
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


@st.composite
def linear_case(draw):
    i, o, bias = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.booleans())
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    return Case(nn.Linear(i, o, bias=bias), tuple(lead) + (i,), lambda: tnn.Linear(i, o, bias=bias))


@st.composite
def conv_case(draw):
    cin, cout, n = draw(small), draw(small), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(small), draw(small))
    kind = draw(st.sampled_from(["pair", "int", "same", "valid"]))
    s = (1, 1) if kind == "same" else (draw(small), draw(small))
    if kind == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        pads = [(p, p) for p in padding]
    elif kind == "int":
        padding = draw(st.integers(0, 3))
        pads = [(padding, padding)] * 2
    else:
        padding = kind
        totals = [dd * (kk - 1) for dd, kk in zip(d, k)] if kind == "same" else [0, 0]
        pads = [(t // 2, t - t // 2) for t in totals]     # torch puts the odd pixel at the end
    kernel = k if draw(st.booleans()) or k[0] != k[1] else k[0]
    bias = draw(st.booleans())
    hw = []
    for (lo, hi), kk, dd in zip(pads, k, d):
        need = max(1, dd * (kk - 1) + 1 - lo - hi)
        hw.append(draw(st.integers(need, need + 5)))
    return Case(nn.Conv2d(cin, cout, kernel, s, padding, d, bias=bias), (n, cin, hw[0], hw[1]),
                lambda: tnn.Conv2d(cin, cout, kernel, s, padding, d, bias=bias))


@st.composite
def conv_output_side_case(draw):
    """Stride-1 convolutions with at most half as many output channels as input ones and at least
    half-'same' padding: the geometry minigan runs as a transposed convolution of the flipped
    kernel (ops/conv.py, _output_side; tests/test_conv_reference.py checks every draw takes it)."""
    cin, n = draw(st.integers(2, 6)), draw(st.integers(1, 2))
    cout = draw(st.integers(1, cin // 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(small), draw(small))
    reach = [dd * (kk - 1) for dd, kk in zip(d, k)]
    if all(r % 2 == 0 for r in reach) and draw(st.booleans()):
        padding = "same"
        pads = [(r // 2, r // 2) for r in reach]
    else:
        padding = tuple(draw(st.integers((r + 1) // 2, r)) for r in reach)
        pads = [(pp, pp) for pp in padding]
    kernel = k if draw(st.booleans()) or k[0] != k[1] else k[0]
    bias = draw(st.booleans())
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return Case(nn.Conv2d(cin, cout, kernel, 1, padding, d, bias=bias), (n, cin, h, w),
                lambda: tnn.Conv2d(cin, cout, kernel, 1, padding, d, bias=bias))


@st.composite
def conv_transpose_case(draw):
    cin, cout, n = draw(small), draw(small), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s, d = (draw(small), draw(small)), (draw(small), draw(small))
    op = tuple(draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    bias = draw(st.booleans())
    assume(all((size - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1 >= 1
               for size, ss, pp, dd, kk, oo in zip((h, w), s, p, d, k, op)))
    return Case(nn.ConvTranspose2d(cin, cout, k, s, p, op, bias=bias, dilation=d), (n, cin, h, w),
                lambda: tnn.ConvTranspose2d(cin, cout, k, s, p, op, bias=bias, dilation=d))


@st.composite
def batch_norm_case(draw):
    ndim = draw(st.sampled_from([2, 3, 4]))
    c = draw(small)
    shape = (draw(st.integers(1, 4)), c) + tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2))
    assume(int(np.prod(shape)) // c >= 3)   # with 2 values per channel xhat = +-1 whatever x is: dx ~ 0
    cls, tcls = (nn.BatchNorm2d, tnn.BatchNorm2d) if ndim == 4 else (nn.BatchNorm1d, tnn.BatchNorm1d)
    eps, momentum = draw(st.sampled_from([1e-5, 1e-3])), draw(st.sampled_from([0.1, 0.5, None]))
    affine, track = draw(st.booleans()), draw(st.booleans())
    return Case(cls(c, eps=eps, momentum=momentum, affine=affine, track_running_stats=track), shape,
                lambda: tcls(c, eps, momentum, affine, track))


@st.composite
def layer_norm_case(draw):
    norm_shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    assume(int(np.prod(norm_shape)) >= 3)   # (as for BatchNorm: 2 normalised values make xhat constant)
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    affine, bias, eps = draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([1e-5, 1e-3]))
    arg = norm_shape if len(norm_shape) > 1 or draw(st.booleans()) else norm_shape[0]
    return Case(nn.LayerNorm(arg, eps=eps, elementwise_affine=affine, bias=bias), lead + norm_shape,
                lambda: tnn.LayerNorm(arg, eps, affine, bias=bias))


@st.composite
def avg_pool_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(small), draw(small)) if draw(st.booleans()) else None
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h = draw(st.integers(max(1, k[0] - 2 * p[0]), k[0] + 5))
    w = draw(st.integers(max(1, k[1] - 2 * p[1]), k[1] + 5))
    cip = draw(st.booleans())
    return Case(nn.AvgPool2d(k, s, p, count_include_pad=cip), (draw(st.integers(1, 2)), draw(small), h, w),
                lambda: tnn.AvgPool2d(k, s, p, count_include_pad=cip))


@st.composite
def upsample_case(draw):
    sf = draw(small) if draw(st.booleans()) else (draw(small), draw(small))
    shape = (draw(st.integers(1, 2)), draw(small), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return Case(nn.Upsample(sf), shape,
                lambda: tnn.Upsample(scale_factor=sf))


_ACTIVATIONS = [(lambda: nn.ReLU(), tnn.ReLU), (lambda: nn.LeakyReLU(0.2), lambda: tnn.LeakyReLU(0.2)),
                (lambda: nn.LeakyReLU(), tnn.LeakyReLU), (lambda: nn.LeakyReLU(-0.3), lambda: tnn.LeakyReLU(-0.3)),
                (lambda: nn.LeakyReLU(1.5), lambda: tnn.LeakyReLU(1.5)), (lambda: nn.Tanh(), tnn.Tanh),
                (lambda: nn.Sigmoid(), tnn.Sigmoid)]


@st.composite
def activation_case(draw):
    ours, theirs = draw(st.sampled_from(_ACTIVATIONS))
    return Case(ours(), tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))), theirs)


@st.composite
def fused_pair_case(draw):
    """A pair of layers that Sequential runs as one op (minigan.nn.fuse), wrapped in activations
    half the time: Upsample(2) + 3x3 conv, 3x3 conv + AvgPool2d(2), Upsample + 1x1 conv, 1x1 conv +
    AvgPool2d; odd and even sizes, with and without bias."""
    cin, cout, n, bias = draw(small), draw(small), draw(st.integers(1, 2)), draw(st.booleans())
    kind = draw(st.sampled_from(["up_conv3", "conv3_pool", "up_conv1", "conv1_pool"]))
    if kind.startswith("up"):
        sf = 2 if kind == "up_conv3" else draw(st.sampled_from([1, 2, 3, (1, 2)]))
        k, pad = (3, 1) if kind == "up_conv3" else (1, 0)
        pair = ([nn.Upsample(sf), nn.Conv2d(cin, cout, k, padding=pad, bias=bias)],
                lambda: [tnn.Upsample(scale_factor=sf), tnn.Conv2d(cin, cout, k, padding=pad, bias=bias)])
        hw = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    else:
        pk = 2 if kind == "conv3_pool" else draw(st.sampled_from([2, 3, (2, 1)]))
        ps = None if kind == "conv3_pool" else draw(st.sampled_from([None, 1, 2]))
        k, pad = (3, 1) if kind == "conv3_pool" else (1, 0)
        pair = ([nn.Conv2d(cin, cout, k, padding=pad, bias=bias), nn.AvgPool2d(pk, ps)],
                lambda: [tnn.Conv2d(cin, cout, k, padding=pad, bias=bias), tnn.AvgPool2d(pk, ps)])
        hw = (draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    layers, twin = pair
    if draw(st.booleans()):
        layers = [nn.LeakyReLU(0.2)] + layers + [nn.Tanh()]
        twin = (lambda t: lambda: [tnn.LeakyReLU(0.2)] + t() + [tnn.Tanh()])(twin)
    return Case(layers, (n, cin) + hw, twin)


class TorchResidual(tnn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


@st.composite
def residual_case(draw):
    c, c2 = draw(small), draw(small)
    body = nn.Sequential(nn.Conv2d(c, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),
                         nn.Conv2d(c2, c2, 3, padding=1), _init=False)
    identity = c == c2 and draw(st.booleans())
    shortcut = None if identity else nn.Conv2d(c, c2, 1)

    def twin():
        tbody = tnn.Sequential(tnn.Conv2d(c, c2, 3, padding=1, bias=False), tnn.BatchNorm2d(c2), tnn.LeakyReLU(0.2),
                               tnn.Conv2d(c2, c2, 3, padding=1))
        return TorchResidual(tbody, None if identity else tnn.Conv2d(c, c2, 1))
    return Case(nn.Residual(body, shortcut), (draw(st.integers(2, 3)), c, draw(st.integers(2, 4)),
                                              draw(st.integers(2, 4))), twin)


class TorchReshape(tnn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


@st.composite
def shape_case(draw):
    n, c, h, w = draw(st.integers(1, 3)), draw(small), draw(small), draw(small)
    if draw(st.booleans()):
        return Case([nn.Flatten(), nn.Linear(c * h * w, 2)], (n, c, h, w),
                    lambda: [tnn.Flatten(), tnn.Linear(c * h * w, 2)])
    return Case([nn.Linear(3, c * h * w), nn.Reshape(c, h, w), nn.Tanh()], (n, 3),
                lambda: [tnn.Linear(3, c * h * w), TorchReshape((c, h, w)), tnn.Tanh()])


ALL_CASES = {
    "linear": linear_case(), "conv": conv_case(), "conv_output_side": conv_output_side_case(),
    "conv_transpose": conv_transpose_case(),
    "batch_norm": batch_norm_case(), "layer_norm": layer_norm_case(), "avg_pool": avg_pool_case(),
    "upsample": upsample_case(), "activation": activation_case(), "residual": residual_case(),
    "shape": shape_case(), "fused_pair": fused_pair_case(),
}


@st.composite
def spectral_norm_case(draw):
    inner = draw(st.one_of(linear_case(), conv_case(), conv_transpose_case()))
    # a one-element weight has W_sn = +-1 whatever W is: every derivative is 0, a degenerate check
    assume(inner.layers.init(np.random.default_rng(0), np.float64)[0]["weight"].size > 1)
    n_iter, eps = draw(st.integers(1, 3)), draw(st.sampled_from([1e-12, 1e-4]))
    dim = 1 if isinstance(inner.layers, nn.ConvTranspose2d) else 0
    return Case(nn.SpectralNorm(inner.layers, n_power_iterations=n_iter, eps=eps), inner.shape,
                lambda: tnn.utils.spectral_norm(inner.twin(), "weight", n_iter, eps, dim))


@st.composite
def dropout_case(draw):
    p = draw(st.sampled_from([0.0, 0.3, 0.7]))
    return Case([nn.Linear(3, 4), nn.Tanh(), nn.Dropout(p), nn.Linear(4, 2)], (draw(st.integers(1, 4)), 3),
                lambda: [tnn.Linear(3, 4), tnn.Tanh(), tnn.Dropout(p), tnn.Linear(4, 2)])


# the layers with tangents (jvp / backward_jvp): every layer; dropout has no torch parity (masks differ)
SECOND_ORDER_CASES = {**ALL_CASES, "spectral_norm": spectral_norm_case(), "dropout": dropout_case()}
