"""Shared test helpers: backends, the PyTorch twin of a minigan net, tolerances, shared data."""
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minigan
from minigan import nn

settings.register_profile("default", max_examples=int(os.environ.get("MINIGAN_EXAMPLES", "25")), deadline=None,
                          derandomize=bool(os.environ.get("CI")),
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("default")

BACKENDS = ["numpy"] + (["cupy"] if minigan.has_cupy() else [])
SHARED = Path(os.environ.get("MINIGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def shared_data(*parts):
    """A path under ../shared/data; in CI a missing file fails the test instead of skipping it."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing in CI: {path}")
        pytest.skip(f"shared data not found: {path}")
    return path


def assert_rel(actual, expected, tol, what="", floor=0.0):
    err = minigan.gradcheck.rel_error(minigan.asnumpy(actual), np.asarray(expected), floor)
    assert err <= tol, f"{what}: max relative error {err:.3e} > {tol:g}"
    return err


# ---------------------------------------------------------------- the torch twin

def torch_twin(layer):
    """The torch.nn module with the same hyperparameters (and parameter names) as ``layer``."""
    import torch

    tnn = torch.nn
    if isinstance(layer, nn.Sequential):
        return tnn.Sequential(*[torch_twin(m) for m in layer.layers])
    if isinstance(layer, nn.Linear):
        return tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, nn.Conv2d):
        return tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.padding, layer.dilation, bias=layer.bias)
    if isinstance(layer, nn.ConvTranspose2d):
        return tnn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                   layer.padding, layer.output_padding, bias=layer.bias, dilation=layer.dilation)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(layer, nn.BatchNorm1d) else tnn.BatchNorm2d
        return cls(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if isinstance(layer, nn.LayerNorm):
        return tnn.LayerNorm(layer.normalized_shape, layer.eps, layer.elementwise_affine, bias=layer.bias)
    if isinstance(layer, nn.Dropout):
        return tnn.Dropout(layer.p)
    if isinstance(layer, nn.LeakyReLU):
        return tnn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, nn.Flatten):
        return tnn.Flatten(layer.start_dim, layer.end_dim)
    if isinstance(layer, nn.Reshape):
        return _TorchReshape(layer.shape)
    if isinstance(layer, nn.Upsample):
        return tnn.Upsample(scale_factor=layer.scale_factor, mode="nearest")
    if isinstance(layer, nn.AvgPool2d):
        return tnn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, count_include_pad=layer.count_include_pad)
    if isinstance(layer, nn.Residual):
        return _TorchResidual(torch_twin(layer.body), None if layer.shortcut is None else torch_twin(layer.shortcut))
    simple = {nn.ReLU: tnn.ReLU, nn.Tanh: tnn.Tanh, nn.Sigmoid: tnn.Sigmoid}
    return simple[type(layer)]()


def _torch_module_classes():
    import torch

    class TorchReshape(torch.nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.shape = shape

        def forward(self, x):
            return x.reshape((x.shape[0],) + self.shape)

    class TorchResidual(torch.nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    return TorchReshape, TorchResidual


def _TorchReshape(shape):
    return _torch_module_classes()[0](shape)


def _TorchResidual(body, shortcut):
    return _torch_module_classes()[1](body, shortcut)


def torch_net_like(net):
    """A torch.nn.Sequential twin of ``net`` holding exactly ``net``'s current state."""
    import torch

    tnet = torch_twin(net).to(torch.float64 if net.dtype == np.float64 else torch.float32)
    tnet.load_state_dict({k: torch.from_numpy(minigan.asnumpy(v)) for k, v in net.state_dict().items()}, strict=True)
    return tnet


def _torch_run(tnet, x, dy, train):
    """Forward + backward through a torch net -> {quantity: numpy array} (state read after the step)."""
    import torch

    tnet.train(train)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)     # x and dy carry the net's dtype
    for p in tnet.parameters():
        p.grad = None
    yt = tnet(xt)
    yt.backward(torch.from_numpy(dy))
    out = {"output": yt.detach().numpy(), "input gradient": xt.grad.numpy()}
    out.update({f"gradient of {k}": p.grad.numpy() for k, p in tnet.named_parameters()})
    out.update({f"state {k}": v.numpy() for k, v in tnet.state_dict().items()})
    return out


def compare_with_torch(net, tnet, xs, train, tol, rng, reference=None):
    """Run forward + backward on each x in ``xs`` through both nets; compare outputs, input grads,
    every parameter grad and (after each step) the whole state dict.

    Without ``reference``: each quantity within ``tol`` (relative) of torch's.
    With ``reference`` (a float64 torch twin holding the same values): for float32, where sums with
    cancellation make any fixed bound arbitrary, minigan's error against the float64 reference must
    stay within max(tol, 20 x torch's own float32 error against it)."""
    for x in xs:
        y, tape = net.forward(x, train=train)
        dy = rng.standard_normal(y.shape).astype(net.dtype)
        dx, grads = net.backward(dy, tape)
        assert y.dtype == dx.dtype == net.dtype and all(g.dtype == net.dtype for g in grads.values()), \
            "a result left the network's dtype"
        ours = {"output": y, "input gradient": dx}
        ours.update({f"gradient of {k}": g for k, g in grads.items()})
        sd = net.state_dict()
        ours.update({f"state {k}": v for k, v in sd.items()})
        theirs = _torch_run(tnet, x, dy, train)
        assert set(ours) == set(theirs), f"names differ: {sorted(ours)} vs {sorted(theirs)}"
        assert list(sd) == [k[6:] for k in theirs if k.startswith("state ")], "state_dict order differs"
        ref = None if reference is None else _torch_run(reference, x.astype(np.float64), dy.astype(np.float64), train)
        for what, value in ours.items():
            if ref is None:
                assert_rel(value, theirs[what], tol, what)
            else:
                err = minigan.gradcheck.rel_error(minigan.asnumpy(value), ref[what])
                torch_err = minigan.gradcheck.rel_error(theirs[what], ref[what])
                assert err <= max(tol, 20 * torch_err), \
                    f"{what}: error {err:.3e} against float64, torch float32's is {torch_err:.3e}"
