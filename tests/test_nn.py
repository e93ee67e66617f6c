"""The Sequential contract (issue #3) and the errors users see for bad input."""
import numpy as np
import pytest

import minigan


def contract_net(dtype=np.float64, seed=0):
    return minigan.Sequential(minigan.Conv2d(1, 8, 4, stride=2, padding=1), minigan.LeakyReLU(0.2),
                              minigan.Flatten(), minigan.Linear(8 * 16 * 16, 1), dtype=dtype, seed=seed)


def test_contract():
    net = contract_net()
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert sd["0.weight"].shape == (8, 1, 4, 4) and sd["3.weight"].shape == (1, 2048)
    net.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32))
    y, tape = net.forward(x, train=True)
    assert y.shape == (2, 1) and y.dtype == np.float64
    dx, grads = net.backward(np.ones_like(y), tape)
    assert dx.shape == x.shape and list(grads) == list(net.parameters())
    assert all(grads[k].shape == sd[k].shape for k in grads)
    dx2, none = net.backward(np.ones_like(y), tape, param_grads=False)
    np.testing.assert_array_equal(dx, dx2)
    params = net.parameters()
    params["3.bias"] += 1.0                       # live arrays: in-place changes reach the net
    assert net.state_dict()["3.bias"] == sd["3.bias"] + 1.0


def test_default_dtype_and_seed_reproducibility():
    a, b, c = contract_net(None or np.float32, 1), contract_net(np.float32, 1), contract_net(np.float32, 2)
    assert minigan.Sequential(minigan.Linear(2, 2)).dtype == np.float32
    for k, v in a.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, b.state_dict()[k])
    assert not np.array_equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])


def test_state_dict_is_a_copy_and_load_is_strict():
    net = contract_net()
    sd = net.state_dict()
    sd["0.bias"][:] = 7
    assert not np.any(net.parameters()["0.bias"] == 7)
    missing = dict(sd)
    del missing["3.bias"]
    with pytest.raises(minigan.StateDictError, match=r"missing keys \['3.bias'\]"):
        net.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['4.weight'\]"):
        net.load_state_dict({**sd, "4.weight": np.zeros(1)})
    before = net.state_dict()
    bad = {**sd, "3.weight": np.zeros((2, 2048))}
    with pytest.raises(ValueError, match=r"3.weight: expected shape \(1, 2048\), got \(2, 2048\)"):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():        # nothing was written by the failed load
        np.testing.assert_array_equal(v, before[k])
    net.load_state_dict(sd)
    np.testing.assert_array_equal(net.parameters()["0.bias"], 7)
    assert net.load_state_dict(missing, strict=False) == (["3.bias"], [])


def test_load_casts_dtype_and_accepts_torch_tensors():
    import torch

    net = contract_net(np.float32)
    sd64 = {k: torch.from_numpy(v.astype(np.float64)) for k, v in contract_net(np.float64, 5).state_dict().items()}
    net.load_state_dict(sd64)
    assert net.parameters()["0.weight"].dtype == np.float32
    np.testing.assert_allclose(net.parameters()["0.weight"], sd64["0.weight"].numpy(), rtol=1e-7)


def test_batchnorm_state_and_eval_mode():
    net = minigan.Sequential(minigan.BatchNorm2d(3), dtype=np.float64)
    assert list(net.state_dict()) == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                                      "0.num_batches_tracked"]
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)) * 3 + 1
    net.forward(x, train=True)
    assert int(net.state_dict()["0.num_batches_tracked"]) == 1
    y_eval = net(x)                                # eval: running statistics, no update
    assert int(net.state_dict()["0.num_batches_tracked"]) == 1
    rm, rv = net.buffers()["0.running_mean"], net.buffers()["0.running_var"]
    np.testing.assert_allclose(y_eval, (x - rm.reshape(1, 3, 1, 1)) / np.sqrt(rv.reshape(1, 3, 1, 1) + 1e-5))


def test_nested_residual_names_read_like_torch():
    block = minigan.Residual(minigan.Sequential(minigan.Conv2d(4, 4, 3, padding=1), minigan.BatchNorm2d(4), _init=False),
                             minigan.Conv2d(4, 4, 1, bias=False))
    net = minigan.Sequential(minigan.Conv2d(1, 4, 3), minigan.ReLU(), minigan.ReLU(), block, dtype=np.float64)
    assert list(net.parameters()) == ["0.weight", "0.bias", "3.body.0.weight", "3.body.0.bias",
                                      "3.body.1.weight", "3.body.1.bias", "3.shortcut.weight"]
    assert "3.body.1.running_var" in net.state_dict()
    listed = minigan.Residual([minigan.Linear(3, 3), minigan.Tanh()])
    assert list(minigan.Sequential(listed).parameters()) == ["0.body.0.weight", "0.body.0.bias"]


BAD_INPUTS = [
    (minigan.Sequential(minigan.Conv2d(1, 8, 4)), np.zeros((3, 28, 28), np.float32),
     r"layer 0 Conv2d\(1, 8, .*\): expected a 4-d input \(N, C, H, W\), got shape \(3, 28, 28\)"),
    (minigan.Sequential(minigan.Conv2d(1, 8, 4)), np.zeros((2, 3, 28, 28), np.float32),
     r"layer 0 Conv2d.*expected 1 channels .*got shape \(2, 3, 28, 28\)"),
    (minigan.Sequential(minigan.Conv2d(1, 8, 5, dilation=2)), np.zeros((2, 1, 6, 6), np.float32),
     r"Conv2d.*spatial size \(6, 6\) is too small: the \(dilated\) kernel spans \(9, 9\) but the padded input is only \(6, 6\)"),
    (minigan.Sequential(minigan.ReLU(), minigan.Linear(4, 2)), np.zeros((2, 5), np.float32),
     r"layer 1 Linear\(4, 2\): expected last axis of size 4, got shape \(2, 5\)"),
    (minigan.Sequential(minigan.Linear(4, 2)), np.zeros((2, 4), np.float64),
     r"expected input of dtype float32, got float64"),
    (minigan.Sequential(minigan.BatchNorm2d(3)), np.zeros((1, 3, 1, 1), np.float32),
     r"BatchNorm2d\(3\): expected more than 1 value per channel when training"),
    (minigan.Sequential(minigan.Linear(2, 4), minigan.Reshape(3, 3)), np.zeros((2, 2), np.float32),
     r"layer 1 Reshape\(3, 3\): cannot reshape \(2, 4\) to \(N, 3, 3\)"),
    (minigan.Sequential(minigan.Residual([minigan.Linear(3, 3), minigan.Conv2d(3, 3, 1)])), np.zeros((2, 3), np.float32),
     r"layer 0.body.1 Conv2d"),
    (minigan.Sequential(minigan.ConvTranspose2d(2, 2, 1, padding=2)), np.zeros((1, 2, 3, 3), np.float32),
     r"ConvTranspose2d.*gives an output of -1x-1"),
    (minigan.Sequential(minigan.LayerNorm(4)), np.zeros((2, 5), np.float32),
     r"LayerNorm\(\(4,\)\): expected trailing axes \(4,\), got shape \(2, 5\)"),
]


@pytest.mark.parametrize("net,x,pattern", BAD_INPUTS)
def test_bad_input_names_layer_got_and_expected(net, x, pattern):
    with pytest.raises(minigan.LayerInputError, match=pattern):
        net.forward(x)


def test_bad_construction_and_backward_errors():
    with pytest.raises(ValueError, match="output_padding"):
        minigan.ConvTranspose2d(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        minigan.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        minigan.Conv2d(1, 1, 0)
    with pytest.raises(TypeError, match="argument 1 is not a layer"):
        minigan.Sequential(minigan.ReLU(), "relu")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        minigan.Sequential(minigan.ReLU(), dtype=np.int32)
    with pytest.raises(ValueError, match="Upsample scale_factor"):
        minigan.Upsample(1.5)
    with pytest.raises(ValueError, match="Dropout probability"):
        minigan.Dropout(1.5)
    net = contract_net()
    y, tape = net.forward(np.zeros((2, 1, 32, 32)))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 2\), but the forward output had shape \(2, 1\)"):
        net.backward(np.zeros((2, 2)), tape)
    with pytest.raises(TypeError, match="dy has dtype float32, but the network computes in float64"):
        net.backward(np.zeros((2, 1), np.float32), tape)
    with pytest.raises(ValueError, match="not made by this network"):
        contract_net().backward(np.zeros((2, 1)), tape)


def test_grads_accumulate_across_two_tapes():
    net = minigan.Sequential(minigan.Linear(3, 2), dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    ya, ta = net.forward(a)
    yb, tb = net.forward(b)
    _, g = net.backward(np.ones_like(ya), ta)
    _, g = net.backward(np.ones_like(yb), tb, grads=g)
    _, gab = net.backward(np.ones((9, 2)), net.forward(np.concatenate([a, b]))[1])
    for k in g:
        np.testing.assert_allclose(g[k], gab[k], rtol=1e-12)


def test_linear_accepts_leading_axes_and_repr():
    net = minigan.Sequential(minigan.Linear(3, 2), dtype=np.float64)
    y, tape = net.forward(np.ones((2, 4, 3)))
    assert y.shape == (2, 4, 2) and net.backward(np.ones_like(y), tape)[0].shape == (2, 4, 3)
    assert "(0): Linear(3, 2)" in repr(net)
    assert net.num_parameters() == 8


INPUT_GRAD_NETS = [
    # (layers, input shape): the first layer with parameters is a conv, a transposed conv, a Linear
    # behind parameter-free layers, a BatchNorm (computes dx, which is dropped) and a Residual
    ([minigan.Conv2d(1, 4, 3, stride=2, padding=1), minigan.BatchNorm2d(4), minigan.LeakyReLU(0.2),
      minigan.Flatten(), minigan.Linear(4 * 4 * 4, 1)], (3, 1, 8, 8)),
    ([minigan.ConvTranspose2d(5, 3, 4, stride=2, padding=1, bias=False), minigan.ReLU(),
      minigan.Conv2d(3, 2, 3)], (2, 5, 3, 3)),
    ([minigan.Dropout(0.0), minigan.Reshape(12), minigan.Linear(12, 6), minigan.Tanh(), minigan.Linear(6, 2)],
     (4, 3, 4)),
    ([minigan.BatchNorm2d(2), minigan.Conv2d(2, 3, 1)], (3, 2, 4, 4)),
    ([minigan.Residual([minigan.Conv2d(2, 2, 3, padding=1), minigan.ReLU()]), minigan.Flatten(),
      minigan.Linear(2 * 16, 1)], (2, 2, 4, 4)),
    ([minigan.Sequential(minigan.Linear(3, 4), minigan.ReLU(), _init=False), minigan.Linear(4, 1)], (5, 3)),
]


@pytest.mark.parametrize("layers,shape", INPUT_GRAD_NETS)
def test_input_grad_false_gives_the_same_parameter_grads_and_no_dx(layers, shape):
    net = minigan.Sequential(*layers, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal(shape)
    y, tape = net.forward(x, train=True)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx, grads = net.backward(dy, tape)
    none, grads2 = net.backward(dy, tape, input_grad=False)
    assert dx.shape == x.shape and none is None
    assert list(grads2) == list(grads) == list(net.parameters())
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])
    with pytest.raises(ValueError, match="nothing to compute"):
        net.backward(dy, tape, param_grads=False, input_grad=False)


def test_input_grad_false_skips_the_input_gradient_work(monkeypatch):
    """The first conv's backward-data (GEMM + col2im) and the layers in front of it never run."""
    from minigan.ops import conv as conv_ops

    net = minigan.Sequential(minigan.Reshape(1, 8, 8), minigan.Conv2d(1, 4, 3, stride=2, padding=1),
                             minigan.ReLU(), minigan.ConvTranspose2d(4, 2, 2, stride=2), dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((2, 64))
    y, tape = net.forward(x, train=True)

    def forbidden(*a, **k):
        raise AssertionError("col2im ran for an input gradient nobody asked for")

    monkeypatch.setattr(conv_ops, "scatter_windows", forbidden)
    monkeypatch.setattr(type(net.layers[0]), "apply_backward", forbidden)
    dx, grads = net.backward(np.ones_like(y), tape, input_grad=False)
    assert dx is None and list(grads) == ["1.weight", "1.bias", "3.weight", "3.bias"]
    with pytest.raises(AssertionError, match="nobody asked"):
        net.backward(np.ones_like(y), tape)


@pytest.mark.parametrize("name", [n for n in minigan.nn.__all__
                                  if isinstance(getattr(minigan.nn, n), type)
                                  and issubclass(getattr(minigan.nn, n), minigan.nn.Layer) and n != "Layer"])
def test_skips_input_grad_flag_matches_the_backward_signature(name):
    """Sequential (and a fused pair) pass input_grad=False exactly to the layers whose flag says so:
    a flag without the keyword would be a TypeError there, a keyword without the flag wasted work."""
    import inspect

    cls = getattr(minigan.nn, name)
    assert ("input_grad" in inspect.signature(cls.apply_backward).parameters) == cls.skips_input_grad
    assert "input_grad" in inspect.signature(cls.apply_backward_jvp).parameters   # every one (Sequential passes it on)


class _DuckScale:
    """y = w x with one parameter, written against the protocol only (no minigan.nn.Layer base)."""

    def init(self, rng, dtype, scheme="torch"):
        return {"w": np.full((), 1.5, dtype)}, {}

    def apply(self, params, state, x, train, rng):
        return params["w"] * x, x

    def apply_backward(self, params, dy, x, param_grads):
        return params["w"] * dy, ({"w": (dy * x).sum()} if param_grads else {})


def test_a_duck_typed_layer_with_params_first_takes_input_grad_false_through_sequential():
    net = minigan.Sequential(_DuckScale(), minigan.Linear(3, 2), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3))
    y, tape = net.forward(x, train=True)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = net.backward(dy, tape)
    none, grads2 = net.backward(dy, tape, input_grad=False)
    assert none is None and dx.shape == x.shape and list(grads2) == list(grads) == ["0.w", "1.weight", "1.bias"]
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])


class _Probe(minigan.nn.Layer):
    """Identity whose cache is a fresh object; its backward records which probes' caches are still alive."""

    def __init__(self, refs, seen):
        self.refs, self.seen = refs, seen

    def init(self, rng, dtype, scheme="torch"):
        return {}, {}

    def apply(self, params, state, x, train, rng):
        import weakref

        class Marker:
            pass
        marker = Marker()
        self.refs.append(weakref.ref(marker))
        return x, marker

    def apply_backward(self, params, dy, cache, param_grads):
        self.seen.append([r() is not None for r in self.refs])
        return dy, {}


def test_free_tape_releases_each_cache_during_the_backward_and_gives_the_same_grads():
    refs, seen = [], []
    layers = [_Probe(refs, seen), minigan.Linear(3, 4), minigan.ReLU(), _Probe(refs, seen), minigan.Linear(4, 2)]
    net = minigan.Sequential(*layers, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    y, tape = net.forward(x, train=True)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = net.backward(dy, tape)                   # kept: both caches alive throughout
    assert seen == [[True, True], [True, True]]
    seen.clear()
    dx2, grads2 = net.backward(dy, tape, free_tape=True)
    assert seen == [[True, True], [True, False]]         # the later probe's cache is gone by the first's turn
    np.testing.assert_array_equal(dx2, dx)
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])
    assert all(r() is None for r in refs)
    with pytest.raises(ValueError, match="freed by an earlier backward"):
        net.backward(dy, tape)
