"""Fused layer pairs (minigan.nn.fuse): Sequential runs Upsample(2) + 3x3 conv, 3x3 conv + AvgPool2d(2),
Upsample + 1x1 conv and 1x1 conv + AvgPool2d as one cheaper op.  Here: each fused pair gives what the
layers run one by one give (forward, backward, input_grad=False, tangents; float64, shapes drawn by
hypothesis), the pairs that must not fuse do not, bad input names the layer the reference path
names, and the switch.  Finite differences and torch check the fused pairs as the "fused_pair" case
of tests/strategies.py (test_layers.py, test_second_order.py)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan import nn
from minigan.nn.containers import _FREED, _FUSED, _Fused
from minigan.nn.fuse import fusion, set_fusion

from strategies import fused_pair_case

TOL = 1e-12


def _all_caches(caches):
    """Every cache slot of a tape, the Residuals' nested Sequentials included."""
    for c in caches:
        yield c
        if isinstance(c, tuple) and len(c) == 2 and all(isinstance(p, list) or p is None for p in c):
            for part in c:
                yield from _all_caches(part or [])


def _run(net, x, dy, x_dot, p_dot, dy_dot):
    y, tape = net.forward(x, train=True)
    fused = sum(isinstance(c, _Fused) for c in _all_caches(tape.caches))
    dx, grads = net.backward(dy, tape)
    _, grads_only = net.backward(dy, net.forward(x, train=True)[1], input_grad=False)
    dx_only, _ = net.backward(dy, net.forward(x, train=True)[1], param_grads=False)
    y_dot, ttape = net.jvp(tape, x_dot, p_dot)
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
    _, grads_dot_only = net.backward_jvp(dy, tape, ttape, dy_dot, input_grad=False)
    out = {"y": y, "dx": dx, "dx (param_grads=False)": dx_only, "y_dot": y_dot, "dx_dot": dx_dot}
    for name, tree in (("grad", grads), ("grad (input_grad=False)", grads_only), ("grad_dot", grads_dot),
                       ("grad_dot (input_grad=False)", grads_dot_only)):
        out.update({f"{name} {k}": v for k, v in tree.items()})
    return out, fused


def _compare(layers, shape, seed=0):
    net = minigan.Sequential(*layers, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y = net(x)
    dy, dy_dot, x_dot = rng.standard_normal(y.shape), rng.standard_normal(y.shape), rng.standard_normal(shape)
    p_dot = {k: rng.standard_normal(v.shape) for k, v in net.parameters().items()}
    with fusion(numpy=True):
        fused, n_fused = _run(net, x, dy, x_dot, p_dot, dy_dot)
    with fusion(numpy=False):
        plain, n_plain = _run(net, x, dy, x_dot, p_dot, dy_dot)
    assert n_plain == 0
    assert set(fused) == set(plain)
    for k in plain:
        scale = max(1.0, float(np.abs(plain[k]).max()))
        err = float(np.abs(fused[k] - plain[k]).max()) / scale
        assert err <= TOL, f"{k}: fused and plain differ by {err:.2e}"
    return n_fused


@given(data=st.data())
def test_a_fused_pair_computes_what_its_layers_compute(data):
    case = data.draw(fused_pair_case())
    assert _compare(case.layers, case.shape, data.draw(st.integers(0, 99))) == 1


def test_resnet_blocks_fuse_in_body_and_shortcut():
    """The resnet-mnist blocks: both Residual branches of G's up block and of D's down block fuse,
    with BatchNorm before the pair; all four pairs at once give the plain numbers."""
    from minigan.gan.models import _res_down, _res_up
    layers = [_res_up(3, 4), _res_down(4, 2), _res_down(2, 2, first=True)]
    assert _compare(layers, (2, 3, 6, 6)) == 6


@pytest.mark.parametrize("layers", [
    [nn.Upsample(3), nn.Conv2d(2, 2, 3, padding=1)],              # 3x upsampling: no 4-tap form
    [nn.Upsample((2, 1)), nn.Conv2d(2, 2, 3, padding=1)],
    [nn.Upsample(2), nn.Conv2d(2, 2, 3, padding=0)],
    [nn.Upsample(2), nn.Conv2d(2, 2, 3, padding=1, dilation=2)],
    [nn.Upsample(2), nn.Conv2d(2, 2, 3, stride=2, padding=1)],
    [nn.Upsample(2), nn.Conv2d(2, 2, 1, padding=1)],              # the padding's border would differ
    [nn.Upsample(2), nn.SpectralNorm(nn.Conv2d(2, 2, 3, padding=1))],
    [nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(3)],
    [nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(2, stride=1)],
    [nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(2, padding=1)],
    [nn.Conv2d(2, 2, 3, padding=2, dilation=2), nn.AvgPool2d(2)],
    [nn.Conv2d(2, 2, 1), nn.AvgPool2d(2, padding=1)],             # pooled zero padding is not W 0 + b
    [nn.Conv2d(2, 2, 1, stride=2), nn.AvgPool2d(2)],
    [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)],
])
def test_pairs_without_an_equal_fused_form_run_as_written(layers):
    net = minigan.Sequential(*layers, dtype=np.float64, seed=0)
    _, tape = net.forward(np.random.default_rng(0).standard_normal((1, 2, 6, 6)))
    assert not any(isinstance(c, _Fused) or c is _FUSED for c in tape.caches)


def test_bad_input_to_a_fused_pair_names_the_layer_the_plain_path_names():
    for layers, shape in (([nn.ReLU(), nn.Upsample(2), nn.Conv2d(3, 2, 3, padding=1)], (1, 2, 4, 4)),   # channels
                          ([nn.Conv2d(3, 2, 3, padding=1), nn.AvgPool2d(2)], (1, 3, 1, 5)),           # 1 row
                          ([nn.Conv2d(3, 2, 1), nn.AvgPool2d(2)], (1, 3, 5)),                         # rank
                          ([nn.Upsample(2), nn.Conv2d(3, 2, 1)], (1, 4, 2, 2))):
        net = minigan.Sequential(*layers, dtype=np.float64, seed=0)
        x = np.zeros(shape)
        errors = []
        for on in (True, False):
            with fusion(numpy=on), pytest.raises(nn.LayerInputError) as e:
                net.forward(x)
            errors.append((str(e.value), e.value.path))
        assert errors[0] == errors[1]


def test_a_freed_tape_of_a_fused_pair_refuses_a_second_backward():
    net = minigan.Sequential(nn.Upsample(2), nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    y, tape = net.forward(x)
    dy = np.ones_like(y)
    dx, g = net.backward(dy, tape, free_tape=True)
    assert tape.caches[0] is _FREED and tape.caches[1] is _FREED
    with fusion(numpy=False):
        dx2, g2 = net.backward(dy, net.forward(x)[1])
    np.testing.assert_allclose(dx, dx2, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="freed"):
        net.backward(dy, tape)


def test_input_grad_false_stops_at_a_fused_pair_holding_the_first_parameters():
    """The first layer with parameters is the pair's second (Upsample, Conv2d): the pair still runs, its
    input gradient is skipped, and the layer before it is not run backward at all."""
    class Boom(nn.ReLU):
        def apply_backward(self, *a):
            raise AssertionError("a layer before the first parameters ran backward")

    net = minigan.Sequential(Boom(), nn.Upsample(2), nn.Conv2d(2, 2, 3, padding=1), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    y, tape = net.forward(x)
    assert isinstance(tape.caches[1], _Fused)
    dx, g = net.backward(np.ones_like(y), tape, input_grad=False)
    assert dx is None and set(g) == {"2.weight", "2.bias"}


def test_set_fusion_switches_and_restores():
    before = set_fusion(numpy=False)
    try:
        assert before["numpy"] is True and before["cupy"] is False
        net = minigan.Sequential(nn.Upsample(2), nn.Conv2d(1, 1, 3, padding=1), dtype=np.float64, seed=0)
        _, tape = net.forward(np.zeros((1, 1, 2, 2)))
        assert not isinstance(tape.caches[0], _Fused)
        with fusion(numpy=True):
            assert isinstance(net.forward(np.zeros((1, 1, 2, 2)))[1].caches[0], _Fused)
        assert set_fusion()["numpy"] is False
    finally:
        set_fusion(**before)
    with pytest.raises(TypeError, match="cupy must be True, False or None"):
        set_fusion(numpy=False, cupy="yes")
    assert set_fusion() == before                       # nothing half-applied
