"""Hypothesis strategies: one draws a (layer, input shape) pair per layer type."""
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from minigan import nn

small = st.integers(1, 3)


@st.composite
def linear_case(draw):
    i, o = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    return nn.Linear(i, o, bias=draw(st.booleans())), tuple(lead) + (i,)


@st.composite
def conv_case(draw):
    cin, cout, n = draw(small), draw(small), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(small), draw(small))
    kind = draw(st.sampled_from(["pair", "int", "same", "valid"]))
    s = (1, 1) if kind == "same" else (draw(small), draw(small))
    if kind == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    elif kind == "int":
        padding = draw(st.integers(0, 3))
    else:
        padding = kind
    layer = nn.Conv2d(cin, cout, k if draw(st.booleans()) or k[0] != k[1] else k[0], s, padding, d,
                      bias=draw(st.booleans()))
    (pt, pb), (pl, pr) = layer.pads
    hw = []
    for lo, hi, kk, dd in ((pt, pb, k[0], d[0]), (pl, pr, k[1], d[1])):
        need = max(1, dd * (kk - 1) + 1 - lo - hi)
        hw.append(draw(st.integers(need, need + 5)))
    return layer, (n, cin, hw[0], hw[1])


@st.composite
def conv_transpose_case(draw):
    cin, cout, n = draw(small), draw(small), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s, d = (draw(small), draw(small)), (draw(small), draw(small))
    op = tuple(draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    layer = nn.ConvTranspose2d(cin, cout, k, s, p, op, bias=draw(st.booleans()), dilation=d)
    oh, ow = layer.output_hw(h, w)
    assume(oh >= 1 and ow >= 1)
    return layer, (n, cin, h, w)


@st.composite
def batch_norm_case(draw):
    ndim = draw(st.sampled_from([2, 3, 4]))
    c = draw(small)
    shape = (draw(st.integers(1, 4)), c) + tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2))
    per_channel = 1
    for s in shape[:1] + shape[2:]:
        per_channel *= s
    assume(per_channel >= 3)   # with 2 values per channel xhat = +-1 whatever x is: dx ~ 0, a degenerate check
    cls = nn.BatchNorm2d if ndim == 4 else nn.BatchNorm1d
    layer = cls(c, eps=draw(st.sampled_from([1e-5, 1e-3])), momentum=draw(st.sampled_from([0.1, 0.5, None])),
                affine=draw(st.booleans()), track_running_stats=draw(st.booleans()))
    return layer, shape


@st.composite
def layer_norm_case(draw):
    norm_shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    size = 1
    for s in norm_shape:
        size *= s
    assume(size >= 3)          # (as for BatchNorm: 2 normalised values make xhat constant)
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    affine = draw(st.booleans())
    layer = nn.LayerNorm(norm_shape if len(norm_shape) > 1 or draw(st.booleans()) else norm_shape[0],
                         eps=draw(st.sampled_from([1e-5, 1e-3])), elementwise_affine=affine,
                         bias=draw(st.booleans()))
    return layer, lead + norm_shape


@st.composite
def avg_pool_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(small), draw(small))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h = draw(st.integers(max(1, k[0] - 2 * p[0]), k[0] + 5))
    w = draw(st.integers(max(1, k[1] - 2 * p[1]), k[1] + 5))
    layer = nn.AvgPool2d(k, s if draw(st.booleans()) else None, p, count_include_pad=draw(st.booleans()))
    return layer, (draw(st.integers(1, 2)), draw(small), h, w)


@st.composite
def upsample_case(draw):
    sf = draw(small) if draw(st.booleans()) else (draw(small), draw(small))
    return nn.Upsample(sf), (draw(st.integers(1, 2)), draw(small), draw(st.integers(1, 4)), draw(st.integers(1, 4)))


@st.composite
def activation_case(draw):
    layer = draw(st.sampled_from([nn.ReLU(), nn.LeakyReLU(0.2), nn.LeakyReLU(), nn.LeakyReLU(-0.3), nn.LeakyReLU(1.5), nn.Tanh(), nn.Sigmoid()]))
    return layer, tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))


@st.composite
def residual_case(draw):
    c, c2 = draw(small), draw(small)
    body = nn.Sequential(nn.Conv2d(c, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),
                         nn.Conv2d(c2, c2, 3, padding=1), _init=False)
    shortcut = None if c == c2 and draw(st.booleans()) else nn.Conv2d(c, c2, 1)
    return nn.Residual(body, shortcut), (draw(st.integers(2, 3)), c, draw(st.integers(2, 4)), draw(st.integers(2, 4)))


@st.composite
def shape_case(draw):
    n, c, h, w = draw(st.integers(1, 3)), draw(small), draw(small), draw(small)
    if draw(st.booleans()):
        return [nn.Flatten(), nn.Linear(c * h * w, 2)], (n, c, h, w)
    return [nn.Linear(3, c * h * w), nn.Reshape(c, h, w), nn.Tanh()], (n, 3)


ALL_CASES = {
    "linear": linear_case(), "conv": conv_case(), "conv_transpose": conv_transpose_case(),
    "batch_norm": batch_norm_case(), "layer_norm": layer_norm_case(), "avg_pool": avg_pool_case(),
    "upsample": upsample_case(), "activation": activation_case(), "residual": residual_case(),
    "shape": shape_case(),
}


@st.composite
def spectral_norm_case(draw):
    inner, shape = draw(st.one_of(linear_case(), conv_case(), conv_transpose_case()))
    # a one-element weight has W_sn = +-1 whatever W is: every derivative is 0, a degenerate check
    assume(inner.init(np.random.default_rng(0), np.float64)[0]["weight"].size > 1)
    return nn.SpectralNorm(inner, n_power_iterations=draw(st.integers(1, 3)),
                           eps=draw(st.sampled_from([1e-12, 1e-4]))), shape


@st.composite
def dropout_case(draw):
    return [nn.Linear(3, 4), nn.Tanh(), nn.Dropout(draw(st.sampled_from([0.0, 0.3, 0.7]))), nn.Linear(4, 2)], \
        (draw(st.integers(1, 4)), 3)


# the layers with tangents (jvp / backward_jvp): every layer; dropout has no torch parity (masks differ)
SECOND_ORDER_CASES = {**ALL_CASES, "spectral_norm": spectral_norm_case(), "dropout": dropout_case()}
