"""The PyTorch twin of a minigan network: same hyperparameters, parameter names and state.
Shared by the tests (the oracle) and the benchmarks (the competitor); imports torch, never pytest."""
import numpy as np
import torch

import minigan
from minigan import nn


def torch_twin(layer):
    """The torch.nn module with the same hyperparameters (and parameter names) as ``layer``."""
    tnn = torch.nn
    if isinstance(layer, nn.Sequential):
        return tnn.Sequential(*[torch_twin(m) for m in layer.layers])
    if isinstance(layer, nn.SpectralNorm):
        return tnn.utils.spectral_norm(torch_twin(layer.layer), "weight", layer.n_power_iterations, layer.eps, layer.dim)
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


class _TorchReshape(torch.nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


class _TorchResidual(torch.nn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


def torch_d_loss(name, r, f):
    """The GAN objectives' D loss on logits, written in torch (the oracle of minigan.gan.losses)."""
    F = torch.nn.functional
    if name in ("minimax", "non_saturating"):
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if name == "wasserstein":
        return f.mean() - r.mean()
    if name == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean()


def torch_g_loss(name, f):
    """The G loss on fake logits, in torch."""
    F = torch.nn.functional
    if name == "minimax":
        return -F.softplus(f).mean()
    if name == "non_saturating":
        return F.softplus(-f).mean()
    if name == "least_squares":
        return 0.5 * ((f - 1) ** 2).mean()
    return -f.mean()


def torch_net_like(net):
    """A torch.nn.Sequential twin of ``net`` holding exactly ``net``'s current state."""
    tnet = torch_twin(net).to(torch.float64 if net.dtype == np.float64 else torch.float32)
    tnet.load_state_dict({k: torch.from_numpy(minigan.asnumpy(v)) for k, v in net.state_dict().items()}, strict=True)
    return tnet


def torch_augment(x, params):
    """The transforms as the module's docstring defines them, one sample at a time with slices: translation
    by (a, b) moves pixel (h, w) to (h + a, w + b), zero where nothing lands; cutout zeroes the rows
    [r, r + side) and columns [c, c + side) clipped to the image."""
    out = []
    h, w = x.shape[2:]
    for n in range(len(x)):
        y = x[n]
        if "shift" in params:
            a, b = (int(v) for v in params["shift"][n])
            moved = torch.zeros_like(y)
            moved[:, max(a, 0):h + min(a, 0), max(b, 0):w + min(b, 0)] = \
                y[:, max(-a, 0):h + min(-a, 0), max(-b, 0):w + min(-b, 0)]
            y = moved
        if "corner" in params:
            (r, c), sr, sc = params["corner"][n], int(h / 2 + 0.5), int(w / 2 + 0.5)    # side: round(size / 2)
            mask = torch.ones_like(y)
            mask[:, max(int(r), 0):max(int(r + sr), 0), max(int(c), 0):max(int(c + sc), 0)] = 0
            y = y * mask
        out.append(y)
    return torch.stack(out)
