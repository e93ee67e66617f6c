"""The torch twin of a single minigan layer, for benchmarks (no pytest involved)."""


def torch_module(layer):
    import torch

    import minigan
    tnn = torch.nn
    if isinstance(layer, minigan.Conv2d):
        m = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                       layer.dilation, bias=layer.bias)
    elif isinstance(layer, minigan.ConvTranspose2d):
        m = tnn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                layer.padding, layer.output_padding, bias=layer.bias, dilation=layer.dilation)
    elif isinstance(layer, minigan.BatchNorm2d):
        m = tnn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum)
    elif isinstance(layer, minigan.Linear):
        m = tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    else:
        raise TypeError(f"no torch twin for {layer!r}")
    return tnn.Sequential(m)


def torch_sequential(net):
    """A torch.nn.Sequential twin of a minigan Sequential (same names) holding its current state."""
    import torch

    import minigan
    tnn = torch.nn
    simple = {minigan.ReLU: tnn.ReLU, minigan.Tanh: tnn.Tanh, minigan.Sigmoid: tnn.Sigmoid}
    mods = []
    for layer in net.layers:
        if type(layer) in simple:
            mods.append(simple[type(layer)]())
        elif isinstance(layer, minigan.LeakyReLU):
            mods.append(tnn.LeakyReLU(layer.negative_slope))
        else:
            mods.append(torch_module(layer)[0])
    t = tnn.Sequential(*mods)
    t.load_state_dict({k: torch.from_numpy(minigan.asnumpy(v)) for k, v in net.state_dict().items()})
    return t
