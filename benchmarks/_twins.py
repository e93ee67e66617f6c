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
